#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use proptest::prelude::*;

use super::super::*;
use super::*;

/// 2026-05-01 12:00:00 UTC.
const NOW: u64 = 20_574 * 86_400 + 12 * 3600;

fn onion(c: char) -> String {
    format!("http://{}.onion", c.to_string().repeat(56))
}

fn hist(s: &str, value: fn(u8) -> Option<Option<u8>>) -> Vec<Option<u8>> {
    s.bytes().map(|b| value(b).unwrap()).collect()
}

#[allow(clippy::too_many_arguments)]
fn row(
    name: &str,
    address: String,
    lat: (&str, Option<u32>),
    rel: (&str, Option<u16>),
    exit: bool,
    seen: Option<u64>,
    status: Status,
) -> StatsRow {
    StatsRow {
        name: name.into(),
        address,
        exit,
        key_valid_to: Some(21_056),
        last_seen: seen,
        status,
        latency_secs: lat.1,
        reliability_permille: rel.1,
        latency_history: hist(lat.0, latency_value),
        reliability_history: hist(rel.0, reliability_value),
    }
}

fn sample() -> StatsDocument {
    let rows = vec![
        row(
            "gamma",
            onion('c'),
            ("????????????", None),
            ("??0000000000", Some(0)),
            false,
            None,
            Status::Dead,
        ),
        row(
            "alpha",
            onion('a'),
            ("??0000000000", Some(252)),
            ("??++++++++98", Some(986)),
            true,
            Some(NOW - 120),
            Status::Alive,
        ),
        row(
            "delta",
            "http://127.0.0.1:9004".into(),
            ("????????????", None),
            ("????????????", None),
            false,
            None,
            Status::New,
        ),
        row(
            "beta",
            onion('b'),
            ("111112211111", Some(3340)),
            ("999+99999+99", Some(947)),
            false,
            Some(NOW - 1500),
            Status::Alive,
        ),
        row(
            "epsilon-long.name",
            onion('e'),
            ("0000000000AH", Some(41_000)),
            ("++++++++++53", Some(803)),
            true,
            Some(NOW - 36_000),
            Status::Alive,
        ),
    ];
    StatsDocument::new(rows, NOW, 12)
}

const SAMPLE: &str = "\
Stats-Version: 1.0
Generated: 2026-05-01 12:00:00 UTC
History-Days: 12

Name              Latent-Hist    Latent Uptime-Hist  Uptime Exit Key-Valid  Last-Seen         Status Address
------------------------------------------------------------------------------------------------------------
alpha             ??0000000000  0:04:12 ??++++++++98  98.6% yes  2027-08-26 2026-05-01T11:58Z alive  http://aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa.onion
beta              111112211111  0:55:40 999+99999+99  94.7% no   2027-08-26 2026-05-01T11:35Z alive  http://bbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbb.onion
delta             ????????????        ? ????????????      ? no   2027-08-26 never             new    http://127.0.0.1:9004
epsilon-long.name 0000000000AH 11:23:20 ++++++++++53  80.3% yes  2027-08-26 2026-05-01T02:00Z alive  http://eeeeeeeeeeeeeeeeeeeeeeeeeeeeeeeeeeeeeeeeeeeeeeeeeeeeeeee.onion
gamma             ????????????        ? ??0000000000   0.0% no   2027-08-26 never             dead   http://cccccccccccccccccccccccccccccccccccccccccccccccccccccccc.onion
";

#[test]
fn renders_the_documented_layout() {
    let text = render_text(&sample());
    assert!(text.starts_with(SAMPLE), "{text}");
    assert_eq!(parse_text(&text), Ok(sample()));
    let table: Vec<&str> = text.lines().skip(4).take(7).collect();
    // Short names keep lines under 160 characters; the longest name
    // widens the name column of every row alike.
    let alpha = table.iter().find(|l| l.starts_with("alpha")).unwrap();
    assert_eq!(alpha.len(), 170);
    assert_eq!(
        alpha.len() - ("epsilon-long.name".len() - "alpha".len()),
        158
    );
}

#[test]
fn rows_that_cannot_be_published_are_left_out() {
    let mut rows = sample().remailers;
    let mut bad = rows[0].clone();
    bad.name = "two words".into();
    let mut dup = rows[0].clone();
    dup.exit = !dup.exit;
    rows.extend([bad, dup]);
    let doc = StatsDocument {
        remailers: rows,
        ..sample()
    };
    assert_eq!(parse_text(&render_text(&doc)), Ok(sample()));
}

#[test]
fn json_carries_the_same_figures() {
    let json = render_json(&sample());
    assert_eq!(json["version"], serde_json::json!({"major": 1, "minor": 0}));
    assert_eq!(json["remailers"][0]["name"], "alpha");
    assert_eq!(json["remailers"][0]["status"], "alive");
    assert_eq!(json["remailers"][0]["reliability_permille"], 986);
    assert_eq!(
        serde_json::from_value::<StatsDocument>(json).unwrap(),
        sample()
    );
}

fn table_text(rows: &[&str]) -> String {
    let mut t = String::from(
        "Stats-Version: 1.0\nGenerated: 2026-05-01 12:00:00 UTC\nHistory-Days: 12\n\nName x\n---\n",
    );
    for r in rows {
        t.push_str(r);
        t.push('\n');
    }
    t
}

const GOOD: &str = "alpha ??0000000000 0:04:12 ??++++++++98 98.6% yes 2027-08-26 \
                    2026-05-01T11:58Z alive http://127.0.0.1:1";

#[test]
fn readers_ignore_extensions() {
    let text = format!(
        "Stats-Version: 1.7\nGenerated: 2026-05-01 12:00:00 UTC\nPinger: x: y\nHistory-Days: 12\n\n\
         Name Latent-Hist Future-Column\n-----\n{GOOD} 42 more\r\n\nAnything: at all\n\u{1}\n"
    );
    let doc = parse_text(&text).unwrap();
    assert_eq!(doc.version, Version { major: 1, minor: 7 });
    assert_eq!(doc.generated_at, NOW);
    assert_eq!(doc.remailers.len(), 1);
    assert_eq!(doc.remailers[0].last_seen, Some(NOW - 120));
}

#[test]
fn rows_are_sorted_on_reading() {
    let other = GOOD.replacen("alpha", "Zed", 1);
    let doc = parse_text(&table_text(&[GOOD, &other])).unwrap();
    let names: Vec<&str> = doc.remailers.iter().map(|r| r.name.as_str()).collect();
    assert_eq!(names, ["Zed", "alpha"]);
}

#[test]
fn versions_are_checked() {
    use StatsParseError::*;
    let with = |v: &str| parse_text(&table_text(&[]).replacen("1.0", v, 1));
    assert_eq!(with("2.0"), Err(UnsupportedVersion { major: 2 }));
    assert_eq!(with("0.9"), Err(UnsupportedVersion { major: 0 }));
    assert_eq!(with("2.0.1"), Err(UnsupportedVersion { major: 2 }));
    for bad in ["1", "01.0", "1.", "1.x", "1.0.1", "99999999.0"] {
        assert_eq!(with(bad), Err(BadVersion), "{bad}");
    }
    assert_eq!(parse_text(""), Err(MissingVersion));
    assert_eq!(
        parse_text("Generated: 2026-05-01 12:00:00 UTC\n"),
        Err(MissingVersion)
    );
}

#[test]
fn headers_are_checked() {
    use StatsParseError::*;
    let base = table_text(&[GOOD]);
    let edit = |from: &str, to: &str| parse_text(&base.replacen(from, to, 1));
    assert_eq!(
        edit("Generated: 2026-05-01 12:00:00 UTC\n", ""),
        Err(MissingHeader("Generated"))
    );
    assert_eq!(
        edit("History-Days: 12\n", ""),
        Err(MissingHeader("History-Days"))
    );
    let twice = "History-Days: 12\nHistory-Days: 12\n";
    assert_eq!(
        edit("History-Days: 12\n", twice),
        Err(DuplicateHeader {
            line: 4,
            field: "History-Days"
        })
    );
    let again = "History-Days: 12\nStats-Version: 1.0\n";
    assert_eq!(
        edit("History-Days: 12\n", again),
        Err(DuplicateHeader {
            line: 4,
            field: "Stats-Version"
        })
    );
    for days in ["0", "32", "012", "x"] {
        let r = edit("History-Days: 12", &format!("History-Days: {days}"));
        assert_eq!(
            r,
            Err(BadHeader {
                line: 3,
                field: "History-Days"
            }),
            "{days}"
        );
    }
    for g in [
        "2026-02-30 12:00:00 UTC",
        "2026-05-01 24:00:00 UTC",
        "1969-12-31 23:59:59 UTC",
        "2026-05-01T12:00:00Z",
    ] {
        let r = edit("2026-05-01 12:00:00 UTC", g);
        assert_eq!(
            r,
            Err(BadHeader {
                line: 2,
                field: "Generated"
            }),
            "{g}"
        );
    }
    assert_eq!(
        edit("History-Days: 12", "History-Days 12"),
        Err(BadHeaderLine { line: 3 })
    );
    assert_eq!(
        edit("History-Days: 12", "Bad key: 12"),
        Err(BadHeaderLine { line: 3 })
    );
    assert_eq!(
        parse_text("Stats-Version: 1.0\nHistory-Days: 12\n"),
        Err(MissingTable)
    );
}

#[test]
fn the_table_header_is_checked() {
    use StatsParseError::*;
    let base = table_text(&[GOOD]);
    assert_eq!(
        parse_text(&base.replacen("Name x", "Nom x", 1)),
        Err(BadTableHeader { line: 5 })
    );
    assert_eq!(
        parse_text(&base.replacen("---", "-=-", 1)),
        Err(BadTableHeader { line: 6 })
    );
    assert_eq!(
        parse_text(&base.replacen("---\n", "\n", 1)),
        Err(BadTableHeader { line: 6 })
    );
    let cut = base.split("---").next().unwrap();
    assert_eq!(parse_text(cut), Err(MissingTable));
}

#[test]
fn every_field_is_checked() {
    let cases = [
        (0, "al/pha", "Name"),
        (0, &"a".repeat(33), "Name"),
        (1, "??000000000", "Latent-Hist"),
        (1, "??000000000I", "Latent-Hist"),
        (2, "0:4:12", "Latent"),
        (2, "00:04:12", "Latent"),
        (2, "100:00:00", "Latent"),
        (2, "0:60:00", "Latent"),
        (2, "0:04", "Latent"),
        (3, "??++++++++9A", "Uptime-Hist"),
        (3, "??++++++++9", "Uptime-Hist"),
        (4, "100.1%", "Uptime"),
        (4, "98.6", "Uptime"),
        (4, "98.60%", "Uptime"),
        (4, "098.6%", "Uptime"),
        (4, "-1.0%", "Uptime"),
        (5, "Yes", "Exit"),
        (6, "2027-02-29", "Key-Valid"),
        (6, "27-08-26", "Key-Valid"),
        (7, "2026-05-01T11:58:00Z", "Last-Seen"),
        (7, "2026-05-01T11:58", "Last-Seen"),
        (8, "up", "Status"),
        (9, "https://127.0.0.1:1", "Address"),
        (9, &format!("http://{}", "a".repeat(122)), "Address"),
    ];
    for (i, bad, field) in cases {
        let mut fields: Vec<&str> = GOOD.split(' ').collect();
        fields[i] = bad;
        let r = parse_text(&table_text(&[&fields.join(" ")]));
        assert_eq!(r, Err(StatsParseError::BadRow { line: 7, field }), "{bad}");
    }
    let short = GOOD.rsplit_once(' ').unwrap().0;
    let r = parse_text(&table_text(&[short]));
    assert_eq!(
        r,
        Err(StatsParseError::BadRow {
            line: 7,
            field: "Address"
        })
    );
}

#[test]
fn repeated_remailers_are_refused() {
    let r = parse_text(&table_text(&[GOOD, GOOD]));
    assert_eq!(r, Err(StatsParseError::DuplicateRow { line: 8 }));
    // The same name at another address is another row.
    let other = GOOD.replace(":1", ":2");
    assert_eq!(
        parse_text(&table_text(&[GOOD, &other]))
            .unwrap()
            .remailers
            .len(),
        2
    );
}

#[test]
fn sizes_are_bounded() {
    use StatsParseError::*;
    let huge = "x".repeat(MAX_TEXT_LEN + 1);
    assert_eq!(
        parse_text(&huge),
        Err(TooLarge {
            len: MAX_TEXT_LEN + 1,
            max: MAX_TEXT_LEN
        })
    );
    let long = table_text(&[&format!("{GOOD} {}", "x".repeat(MAX_LINE_LEN))]);
    assert_eq!(
        parse_text(&long),
        Err(LineTooLong {
            line: 7,
            max: MAX_LINE_LEN
        })
    );
    let rows: Vec<String> = (0..=MAX_ROWS)
        .map(|i| GOOD.replacen("alpha", &format!("r{i}"), 1))
        .collect();
    let refs: Vec<&str> = rows.iter().map(String::as_str).collect();
    assert_eq!(
        parse_text(&table_text(&refs[..MAX_ROWS]))
            .unwrap()
            .remailers
            .len(),
        MAX_ROWS
    );
    assert_eq!(
        parse_text(&table_text(&refs)),
        Err(TooManyRows { max: MAX_ROWS })
    );
}

fn any_row() -> impl Strategy<Value = StatsRow> {
    let history = |max: u8| prop::collection::vec(prop::option::of(0..=max), 1..=31);
    (
        ("[A-Za-z0-9._-]{1,32}", "[a-z2-7]{56}", any::<bool>()),
        (
            prop::option::of(0..=MAX_DAY),
            prop::option::of(0..=MAX_TIMESTAMP),
        ),
        prop_oneof![Just(Status::Alive), Just(Status::Dead), Just(Status::New)],
        (
            prop::option::of(0..=MAX_LATENCY_SECS),
            prop::option::of(0..=1000u16),
        ),
        (history(MAX_LATENCY_CLASS), history(ALL_RETURNED)),
    )
        .prop_map(
            |((name, host, exit), (key, seen), status, (lat, rel), (lh, rh))| StatsRow {
                name,
                address: format!("http://{host}.onion"),
                exit,
                key_valid_to: key,
                last_seen: seen,
                status,
                latency_secs: lat,
                reliability_permille: rel,
                latency_history: lh,
                reliability_history: rh,
            },
        )
}

proptest! {
    #[test]
    fn any_publishable_document_survives_text(
        rows in prop::collection::vec(any_row(), 0..8),
        generated in 0..=MAX_TIMESTAMP,
        days in 1..=MAX_HISTORY_DAYS,
    ) {
        let doc = StatsDocument::new(rows, generated, days);
        let text = render_text(&doc);
        prop_assert_eq!(parse_text(&text), Ok(doc.clone()));
        prop_assert_eq!(render_text(&parse_text(&text).unwrap()), text);
    }

    #[test]
    fn arbitrary_text_never_panics(text in "\\PC{0,400}") {
        let _ = parse_text(&text);
    }

    #[test]
    fn damaged_documents_never_panic(
        rows in prop::collection::vec(any_row(), 1..4),
        edits in prop::collection::vec((any::<prop::sample::Index>(), any::<char>()), 1..6),
    ) {
        let mut text: Vec<char> = render_text(&StatsDocument::new(rows, NOW, 12)).chars().collect();
        for (at, c) in edits {
            if text.is_empty() {
                break;
            }
            let i = at.index(text.len());
            if c.is_ascii_digit() { text.truncate(i) } else { text[i] = c }
        }
        let text: String = text.into_iter().collect();
        if let Ok(doc) = parse_text(&text) {
            prop_assert!(doc.remailers.iter().all(|r| is_valid_name(&r.name)));
        }
    }
}

#[test]
fn the_module_docs_show_real_output() {
    let docs: String = include_str!("stats_text.rs")
        .lines()
        .skip_while(|l| *l != "//! ```text")
        .skip(1)
        .take_while(|l| !l.starts_with("//! (..."))
        .map(|l| format!("{}\n", l.trim_start_matches("//!").trim_start_matches(' ')))
        .collect();
    let rows = sample().remailers;
    let shown = rows
        .into_iter()
        .filter(|r| r.name == "alpha" || r.name == "delta");
    let text = render_text(&StatsDocument::new(shown.collect(), NOW, 12));
    assert!(text.starts_with(&docs), "{docs}");
    assert!(docs.lines().count() > 8);
}
