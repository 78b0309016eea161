#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::time::Duration;

use proptest::prelude::*;

use super::*;

const DAY: u64 = SECS_PER_DAY;
const HOUR: u64 = 3600;
/// 2026-05-01 00:00:00 UTC.
const T0: u64 = 20_574 * DAY;

fn cfg() -> StatsConfig {
    StatsConfig::default()
}

fn remailer() -> RemailerStats {
    RemailerStats::new(
        "alpha".into(),
        "http://127.0.0.1:8080".into(),
        true,
        Some(21_056),
    )
}

/// `n` pings sent at `at`, the first `back` of them returning after `lat`.
fn pings(s: &mut RemailerStats, at: u64, n: u32, back: u32, lat: u64) {
    for i in 0..n {
        s.record_sent(at, &cfg());
        if i < back {
            assert!(s.record_returned(at, at + lat, &cfg()));
        }
    }
}

#[test]
fn record_sent_counts_on_the_send_day() {
    let mut s = remailer();
    s.record_sent(T0 + HOUR, &cfg());
    s.record_sent(T0 + 2 * HOUR, &cfg());
    s.record_sent(T0 + DAY, &cfg());
    let counts: Vec<_> = s.days.iter().map(|d| (d.day, d.sent, d.returned)).collect();
    assert_eq!(counts, [(20_574, 2, 0), (20_575, 1, 0)]);
}

#[test]
fn a_return_counts_on_the_send_day_and_updates_last_seen() {
    let mut s = remailer();
    let sent = T0 + 23 * HOUR;
    s.record_sent(sent, &cfg());
    assert!(s.record_returned(sent, sent + 2 * HOUR, &cfg()));
    assert_eq!(s.days.len(), 1);
    assert_eq!(s.days[0].day, 20_574);
    assert_eq!(s.days[0].returned, 1);
    assert_eq!(s.days[0].latency_ms, [7_200_000]);
    assert_eq!(s.last_seen, Some(sent + 2 * HOUR));
}

#[test]
fn returns_never_exceed_sends() {
    let mut s = remailer();
    s.record_sent(T0, &cfg());
    assert!(s.record_returned(T0, T0 + 60, &cfg()));
    assert!(
        !s.record_returned(T0, T0 + 120, &cfg()),
        "a replayed return"
    );
    assert_eq!(s.days[0].returned, 1);
    assert_eq!(s.last_seen, Some(T0 + 120), "it did answer, though");
    // A return for a day with no recorded send is not counted either.
    assert!(!s.record_returned(T0 - DAY, T0 + 180, &cfg()));
}

#[test]
fn prune_keeps_only_the_window() {
    let mut s = remailer();
    for day in 0..20 {
        s.record_sent(T0 + day * DAY, &cfg());
    }
    assert_eq!(s.days.len(), 12);
    assert_eq!(s.days.first().unwrap().day, 20_574 + 8);
    // A clock that went back drops the days "after" today.
    s.prune(20_574 + 10, &cfg());
    let days: Vec<u64> = s.days.iter().map(|d| d.day).collect();
    assert_eq!(days, (20_574 + 8..=20_574 + 10).collect::<Vec<_>>());
    // A return for a pruned day is not counted.
    assert!(!s.record_returned(T0, T0 + 19 * DAY, &cfg()));
}

#[test]
fn latency_samples_are_bounded_and_keep_the_middle() {
    let mut s = remailer();
    for i in 0..1000u64 {
        s.record_sent(T0, &cfg());
        // 0..999 seconds, in a scrambled order.
        let lat = i * 7919 % 1000;
        assert!(s.record_returned(T0, T0 + lat, &cfg()));
    }
    let d = &s.days[0];
    assert_eq!(d.latency_ms.len(), MAX_SAMPLES_PER_DAY);
    assert!(d.latency_ms.is_sorted());
    let median = s.summarize(0, T0 + DAY / 2, &cfg()).latency_secs.unwrap();
    assert!((400..=600).contains(&median), "median {median}");
}

#[test]
fn pings_in_flight_are_not_lost() {
    let mut s = remailer();
    pings(&mut s, T0 + HOUR, 10, 6, 600);
    let now = T0 + 2 * HOUR;
    let row = s.summarize(4, now, &cfg());
    assert_eq!(row.reliability_permille, Some(1000));
    assert_eq!(row.reliability_history.last(), Some(&Some(ALL_RETURNED)));
    let row = s.summarize(0, now, &cfg());
    assert_eq!(row.reliability_permille, Some(600));
    assert_eq!(row.reliability_history.last(), Some(&Some(6)));
}

#[test]
fn in_flight_pings_come_out_of_the_newest_unanswered_first() {
    let mut s = remailer();
    pings(&mut s, T0, 10, 5, 60);
    pings(&mut s, T0 + DAY, 4, 4, 60);
    let now = T0 + DAY + HOUR;
    let row = s.summarize(3, now, &cfg());
    // Yesterday: 5 of 7 resolved pings returned; today all 4.
    assert_eq!(row.reliability_history[10..], [Some(7), Some(ALL_RETURNED)]);
    // More in flight than unanswered: nothing is lost.
    let row = s.summarize(100, now, &cfg());
    assert_eq!(row.reliability_permille, Some(1000));
}

#[test]
fn recent_days_weigh_more() {
    let now = T0 + DAY + 12 * HOUR;
    let mut s = remailer();
    pings(&mut s, T0, 10, 0, 60);
    pings(&mut s, T0 + DAY, 10, 10, 60);
    // Weights 11 (yesterday) and 12 (today): 1000 * 120 / 230.
    assert_eq!(s.summarize(0, now, &cfg()).reliability_permille, Some(522));
    let mut s = remailer();
    pings(&mut s, T0, 10, 10, 60);
    pings(&mut s, T0 + DAY, 10, 0, 60);
    assert_eq!(s.summarize(0, now, &cfg()).reliability_permille, Some(478));
}

#[test]
fn latency_is_a_median_not_a_mean() {
    let mut s = remailer();
    pings(&mut s, T0, 3, 3, 60);
    pings(&mut s, T0, 1, 1, 10 * HOUR);
    let row = s.summarize(0, T0 + 11 * HOUR, &cfg());
    assert_eq!(row.latency_secs, Some(60));
    assert_eq!(row.latency_history.last(), Some(&Some(0)));
}

#[test]
fn latency_is_capped_for_publication() {
    let mut s = remailer();
    pings(&mut s, T0, 1, 1, 5 * DAY);
    let row = s.summarize(0, T0 + 6 * DAY, &cfg());
    assert_eq!(row.latency_secs, Some(MAX_LATENCY_SECS));
    assert_eq!(row.latency_history[5], Some(MAX_LATENCY_CLASS));
}

#[test]
fn nothing_measured_gives_none() {
    let row = remailer().summarize(0, T0, &cfg());
    assert_eq!(row.latency_secs, None);
    assert_eq!(row.reliability_permille, None);
    assert_eq!(row.latency_history, vec![None; 12]);
    assert_eq!(row.reliability_history, vec![None; 12]);
    assert_eq!(row.status, Status::New);
    assert_eq!(row.last_seen, None);
    // Sent but all in flight: still nothing measured.
    let mut s = remailer();
    pings(&mut s, T0, 3, 0, 0);
    let row = s.summarize(3, T0 + 60, &cfg());
    assert_eq!(row.reliability_permille, None);
    assert_eq!(row.status, Status::New);
}

#[test]
fn history_is_oldest_first() {
    let mut s = remailer();
    pings(&mut s, T0, 2, 1, 30 * 60); // 11 days ago: 50 %, class 1
    pings(&mut s, T0 + 11 * DAY, 4, 4, 60); // today: all, class 0
    let row = s.summarize(0, T0 + 11 * DAY + HOUR, &cfg());
    let mut lat = vec![None; 12];
    lat[0] = Some(1);
    lat[11] = Some(0);
    assert_eq!(row.latency_history, lat);
    let mut rel = vec![None; 12];
    rel[0] = Some(5);
    rel[11] = Some(ALL_RETURNED);
    assert_eq!(row.reliability_history, rel);
}

#[test]
fn status_follows_last_return_and_first_ping() {
    let c = StatsConfig {
        dead_after: Duration::from_secs(2 * DAY),
        ..cfg()
    };
    let now = T0 + 10 * DAY + 12 * HOUR;
    let mut s = remailer();
    s.last_seen = Some(now - HOUR);
    assert_eq!(s.summarize(0, now, &c).status, Status::Alive);
    s.last_seen = Some(now - 2 * DAY);
    assert_eq!(s.summarize(0, now, &c).status, Status::Dead);

    // Never answered: judged from the end of the first day pinged.
    let mut s = remailer();
    s.record_sent(now - HOUR, &c);
    assert_eq!(s.summarize(0, now, &c).status, Status::New);
    s.record_sent(now - 3 * DAY, &c);
    assert_eq!(s.summarize(0, now, &c).status, Status::Dead);
    // The day of a ping two days ago ended 1.5 days ago: not dead yet.
    let mut s = remailer();
    s.record_sent(now - 2 * DAY, &c);
    assert_eq!(s.summarize(0, now, &c).status, Status::New);
}

#[test]
fn latency_classes_follow_echolot() {
    let cases = [
        (0, 0),
        (1199, 0),
        (1200, 1),
        (3599, 1),
        (3600, 2),
        (9 * 3600 - 1, 9),
        (9 * 3600, 10),
        (48 * 3600 - 1, 16),
        (48 * 3600, 17),
        (u32::MAX, 17),
    ];
    for (secs, class) in cases {
        assert_eq!(latency_class(secs), class, "{secs} s");
    }
}

#[test]
fn config_clamps_the_window() {
    let c = |history_days| StatsConfig {
        history_days,
        ..cfg()
    };
    assert_eq!(c(0).days(), 1);
    assert_eq!(c(500).days(), MAX_HISTORY_DAYS);
    assert_eq!(remailer().summarize(0, T0, &c(0)).latency_history.len(), 1);
}

#[test]
fn names_and_addresses() {
    assert!(is_valid_name("a") && is_valid_name("Node-1.x_y"));
    assert!(!is_valid_name("") && !is_valid_name("a b") && !is_valid_name(&"a".repeat(33)));
    assert!(is_valid_address("http://127.0.0.1:9000"));
    assert!(is_valid_address(&format!(
        "http://{}.onion",
        "a".repeat(56)
    )));
    assert!(!is_valid_address("http://") && !is_valid_address("https://x.onion"));
    assert!(!is_valid_address("http:///") && !is_valid_address("http://:80"));
    assert!(!is_valid_address("http://a b") && !is_valid_address("http://é"));
}

fn onion() -> impl Strategy<Value = String> {
    prop_oneof![
        "[a-z2-7]{56}".prop_map(|h| format!("http://{h}.onion")),
        (1u16..).prop_map(|p| format!("http://127.0.0.1:{p}")),
    ]
}

/// Ping events: (seconds after T0 sent, latency if it returned).
fn events() -> impl Strategy<Value = Vec<(u64, Option<u64>)>> {
    prop::collection::vec((0..20 * DAY, prop::option::of(0..3 * DAY)), 0..80)
}

/// Replays pings in time order; returns the stats and pings in flight at
/// `now` for a one-day timeout.
fn replay(mut s: RemailerStats, evs: &[(u64, Option<u64>)], now: u64) -> (RemailerStats, u32) {
    let mut timeline: Vec<(u64, Option<u64>)> = Vec::new();
    for &(sent, lat) in evs {
        timeline.push((T0 + sent, None));
        if let Some(l) = lat {
            timeline.push((T0 + sent + l, Some(T0 + sent)));
        }
    }
    timeline.sort();
    let mut in_flight = 0;
    for (at, returned) in timeline.into_iter().filter(|e| e.0 <= now) {
        match returned {
            None => s.record_sent(at, &cfg()),
            Some(sent) => {
                s.record_returned(sent, at, &cfg());
            }
        }
    }
    for &(sent, lat) in evs {
        let (sent, back) = (T0 + sent, lat.map(|l| T0 + sent + l));
        if sent <= now && sent + DAY > now && back.is_none_or(|b| b > now) {
            in_flight += 1;
        }
    }
    (s, in_flight)
}

proptest! {
    #[test]
    fn published_figures_survive_text(
        remailers in prop::collection::vec(("[A-Za-z0-9._-]{1,32}", onion(), any::<bool>(), events()), 0..6),
        now in 0..21 * DAY,
        key in prop::option::of(0..MAX_DAY),
    ) {
        let now = T0 + now;
        let mut rows = Vec::new();
        for (name, address, exit, evs) in remailers {
            let (s, in_flight) = replay(RemailerStats::new(name, address, exit, key), &evs, now);
            prop_assert!(s.days.len() <= usize::from(DEFAULT_HISTORY_DAYS));
            prop_assert!(s.days.iter().all(|d| d.returned <= d.sent
                && d.latency_ms.len() <= MAX_SAMPLES_PER_DAY));
            let row = s.summarize(in_flight, now, &cfg());
            prop_assert!(row.reliability_permille.is_none_or(|p| p <= 1000));
            rows.push(row);
        }
        let doc = StatsDocument::new(rows.clone(), now, DEFAULT_HISTORY_DAYS);
        // Every (distinct) summarised row is published unchanged.
        rows.sort_by(|a, b| (&a.name, &a.address).cmp(&(&b.name, &b.address)));
        rows.dedup_by(|a, b| a.name == b.name && a.address == b.address);
        prop_assert_eq!(&doc.remailers, &rows);
        let text = render_text(&doc);
        prop_assert_eq!(parse_text(&text), Ok(doc.clone()));
        let json = render_json(&doc);
        prop_assert_eq!(serde_json::from_value::<StatsDocument>(json).unwrap(), doc);
    }
}
