#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::path::Path;
use std::time::{Duration, UNIX_EPOCH};

use super::*;

fn addr(s: &str) -> lettre::Address {
    s.parse().unwrap()
}

/// Writes `text` to `path` and gives it modification time `secs`, so that
/// successive versions differ even on a coarse-grained file system.
fn write_version(path: &Path, text: &str, secs: u64) {
    std::fs::write(path, text).unwrap();
    std::fs::File::options()
        .write(true)
        .open(path)
        .unwrap()
        .set_modified(UNIX_EPOCH + Duration::from_secs(secs))
        .unwrap();
}

const SAMPLE: &str = "\
# blocked on request
Harassed@Example.com      # ticket 12
@exact.example
subs.example
/^abuse-[0-9]+@/

/@(spam|junk)\\.example$/  # either
";

#[test]
fn every_entry_kind_matches_what_it_says() {
    let rules = Rules::parse(SAMPLE).unwrap();
    assert_eq!(rules.len(), 5);
    let cases = [
        ("harassed@example.com", true),
        ("HARASSED@EXAMPLE.COM", true),
        ("other@example.com", false),
        ("x@exact.example", true),
        ("x@EXACT.example", true),
        ("x@sub.exact.example", false),
        ("x@subs.example", true),
        ("x@a.b.subs.example", true),
        ("x@notsubs.example", false),
        ("abuse-42@anywhere.example", true),
        ("ABUSE-7@anywhere.example", true),
        ("abuse-x@anywhere.example", false),
        ("me@junk.example", true),
        ("me@junk.example.org", false),
    ];
    for (a, blocked) in cases {
        assert_eq!(rules.matches(a), blocked, "{a}");
    }
}

#[test]
fn comments_and_blank_lines_are_ignored() {
    let rules = Rules::parse("# only a comment\n\n   \n  # indented comment\n").unwrap();
    assert!(rules.is_empty());
    assert!(!rules.matches("a@example.com"));
}

#[test]
fn syntax_errors_name_the_line() {
    let line_of = |text: &str| match Rules::parse(text) {
        Err(BlocklistError::Syntax { line, .. }) => line,
        other => panic!("expected a syntax error, got {other:?}"),
    };
    assert_eq!(line_of("a@example.com\n# c\n/(unclosed/\n"), 3);
    assert_eq!(line_of("a@example.com trailing words\n"), 1);
    assert_eq!(line_of("ok.example\nbad..example\n"), 2);
    assert_eq!(line_of("/no closing slash\n"), 1);
    assert_eq!(line_of("//\n"), 1);
    assert_eq!(line_of("a@@example.com\n"), 1);
    // The error text never includes the line itself.
    let e = Rules::parse("x\nsecret@@victim.example\n").unwrap_err();
    assert!(!e.to_string().contains("victim"));
}

#[test]
fn missing_file_is_an_empty_list_and_a_bad_one_an_error() {
    let dir = tempfile::tempdir().unwrap();
    let list = Blocklist::load(dir.path().join("none.txt")).unwrap();
    assert!(list.rules().is_empty());

    let bad = dir.path().join("bad.txt");
    std::fs::write(&bad, "ok.example\n/[/\n").unwrap();
    assert!(matches!(
        Blocklist::load(&bad),
        Err(BlocklistError::Syntax { line: 2, .. })
    ));
    std::fs::write(&bad, b"ok.example\n\xff\n").unwrap();
    assert!(matches!(
        Blocklist::load(&bad),
        Err(BlocklistError::Syntax { line: 2, .. })
    ));
}

#[test]
fn edits_apply_without_restart_and_bad_edits_keep_the_last_good_list() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("blocklist.txt");
    write_version(&path, "one@example.com\n", 1_000);
    let list = Blocklist::load(&path).unwrap();
    assert!(list.is_blocked(&addr("one@example.com")));
    assert!(!list.is_blocked(&addr("two@example.com")));

    // A new version replaces the old one.
    write_version(&path, "two@example.com\n", 2_000);
    assert!(!list.is_blocked(&addr("one@example.com")));
    assert!(list.is_blocked(&addr("two@example.com")));

    // A broken version is ignored: the last good list stays.
    write_version(&path, "three@example.com\n/(/\n", 3_000);
    assert!(list.is_blocked(&addr("two@example.com")));
    assert!(!list.is_blocked(&addr("three@example.com")));
    assert!(list.is_blocked(&addr("two@example.com")));

    // Fixing it applies the fix.
    write_version(&path, "three@example.com\n", 4_000);
    assert!(!list.is_blocked(&addr("two@example.com")));
    assert!(list.is_blocked(&addr("three@example.com")));

    // Removing the file empties the list; recreating it loads it.
    std::fs::remove_file(&path).unwrap();
    assert!(!list.is_blocked(&addr("three@example.com")));
    write_version(&path, "four@example.com\n", 5_000);
    assert!(list.is_blocked(&addr("four@example.com")));
}

#[test]
fn reload_reads_the_file_at_once_and_keeps_the_list_on_error() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("blocklist.txt");
    let list = Blocklist::load(&path).unwrap();
    assert_eq!(list.reload().unwrap(), 0, "a missing file is empty");

    write_version(&path, "one@example.com\n@two.example\n", 1_000);
    assert_eq!(list.reload().unwrap(), 2);
    assert!(list.is_blocked(&addr("x@two.example")));

    write_version(&path, "/(/\n", 2_000);
    let err = list.reload().unwrap_err();
    assert!(
        matches!(err, BlocklistError::Syntax { line: 1, .. }),
        "{err}"
    );
    assert!(
        list.rules().matches("one@example.com"),
        "a bad file keeps the previous list (also on the next lookup)"
    );
}
