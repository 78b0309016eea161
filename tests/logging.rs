//! The process's logger as `mimix run` installs it (its own test binary,
//! since a process has one global logger), writing a log file: Arti's
//! misleading messages reworded or lowered, the filter changed while it
//! runs, the file reopened after a rotation.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use mimix::logging::{FilterChange, LogSettings, init};

fn read(path: &std::path::Path) -> String {
    std::fs::read_to_string(path).unwrap()
}

#[test]
fn the_installed_logger_rewords_arti_reloads_and_reopens() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("mimix.log");
    let log = init(&LogSettings {
        filter: "debug".into(),
        env_filter: None,
        file: Some(path.clone()),
        small_network: true,
    })
    .unwrap();
    assert!(log.has_file());

    tracing::warn!(target: "tor_circmgr::mgr", "Reached circuit build retry limit, exiting...");
    tracing::warn!(target: "tor_circmgr::mgr", "Request failed");
    let n = 36;
    tracing::warn!(target: "tor_netdir", "Requested {n} relays, but only 0 were usable, and only 0 were chosen after weighting Guard.");
    tracing::warn!(target: "tor_dirmgr", "Unable to download a usable directory.");
    let text = read(&path);
    let lines: Vec<&str> = text.lines().collect();
    assert_eq!(lines.len(), 4, "{text}");
    assert!(
        lines[0].ends_with(
            " DEBUG mimix::tor: Tor gave up one circuit request after repeated failures \
             (the node keeps running and Tor keeps trying)"
        ),
        "{text}"
    );
    assert!(
        lines[1].ends_with(" DEBUG mimix::tor: Tor: a circuit request failed"),
        "{text}"
    );
    assert!(
        lines[2].contains(" DEBUG mimix::tor: Tor (small network): Requested 36 relays"),
        "{text}"
    );
    assert!(
        lines[3].ends_with("  WARN tor_dirmgr: Unable to download a usable directory."),
        "{text}"
    );
    assert!(!text.contains("exiting"), "{text}");
    // Every line starts with a timestamp (RFC 3339, UTC).
    for l in &lines {
        assert!(
            l.len() > 27 && l.as_bytes()[4] == b'-' && l.contains('T'),
            "{l}"
        );
    }

    // A filter change applies at once: debug lines stop, and the lowered
    // Arti messages go with them.
    assert_eq!(log.set_filter("info").unwrap(), FilterChange::Set);
    tracing::debug!(target: "mimix::node", "hidden");
    tracing::warn!(target: "tor_circmgr::mgr", "Reached circuit build retry limit, exiting...");
    tracing::info!(target: "mimix::node", "shown");
    let text = read(&path);
    assert!(!text.contains("hidden"), "{text}");
    assert_eq!(text.lines().count(), 5, "{text}");
    assert!(text.ends_with("  INFO mimix::node: shown\n"), "{text}");
    assert!(log.set_filter("info,=").is_err(), "a bad filter is refused");

    // logrotate moves the file; SIGHUP reopens it.
    let rotated = dir.path().join("mimix.log.1");
    std::fs::rename(&path, &rotated).unwrap();
    assert!(log.reopen(Some(&path)).unwrap());
    tracing::info!(target: "mimix::node", "after rotation");
    assert!(read(&path).ends_with("  INFO mimix::node: after rotation\n"));
    assert!(!read(&rotated).contains("after rotation"));
}
