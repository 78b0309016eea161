//! `mimix status` without a reachable admin listener: it reads the store
//! of a stopped node, the status file of a running one, and tells a store
//! locked by a running node from one that cannot be opened at all. (A
//! live node's status is in `tests/admin.rs`.)
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::path::Path;
use std::process::{Command, Output};

use mimix::admin::{History, Source, StatusReport};
use mimix::clock::{Clock, SystemClock};
use mimix::config::Config;
use mimix::store::Store;

fn status(config: &Path) -> Output {
    Command::new(env!("CARGO_BIN_EXE_mimix"))
        .args(["status", "--json", "--config"])
        .arg(config)
        .output()
        .unwrap()
}

fn write_config(dir: &Path) -> std::path::PathBuf {
    let path = dir.join("mimix.toml");
    let data = dir.join("data");
    std::fs::write(
        &path,
        format!(
            "config_version = 1\n[node]\ndata_dir = {:?}\n",
            data.display().to_string()
        ),
    )
    .unwrap();
    path
}

#[test]
fn a_free_store_is_read_directly() {
    let dir = tempfile::tempdir().unwrap();
    let config = write_config(dir.path());
    let o = status(&config);
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    let doc: serde_json::Value = serde_json::from_slice(&o.stdout).unwrap();
    assert_eq!(doc["running"], false);
    assert_eq!(doc["source"], "store");
    assert_eq!(doc["pool"], 0);

    let table = Command::new(env!("CARGO_BIN_EXE_mimix"))
        .args(["status", "--config"])
        .arg(&config)
        .output()
        .unwrap();
    let text = String::from_utf8(table.stdout).unwrap();
    assert!(text.contains("not running: read from its store"), "{text}");
    assert!(text.contains("  pool              0 packets\n"), "{text}");
}

#[test]
fn a_locked_store_means_a_running_node_and_its_status_file() {
    let dir = tempfile::tempdir().unwrap();
    let config = write_config(dir.path());
    let loaded = Config::load(&config).unwrap();
    mimix_settings::fs::private_dir(loaded.data_dir()).unwrap();
    // This process plays the running node: it holds the store.
    let held = Store::open(&loaded.store_dir()).unwrap();

    let o = status(&config);
    assert!(!o.status.success());
    let err = String::from_utf8_lossy(&o.stderr);
    assert!(err.contains("locked by a running node"), "{err}");

    let mut report = StatusReport::from_store(
        &held,
        &loaded,
        SystemClock.now(),
        &History::default(),
        Source::StatusFile,
    )
    .unwrap();
    report.pool = 7;
    std::fs::write(
        loaded.data_dir().join(mimix::node::STATUS_FILE),
        serde_json::to_string(&report).unwrap(),
    )
    .unwrap();
    let o = status(&config);
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    let doc: serde_json::Value = serde_json::from_slice(&o.stdout).unwrap();
    assert_eq!(doc["running"], true);
    assert_eq!(doc["source"], "status_file");
    assert_eq!(doc["pool"], 7);
}

#[test]
fn a_store_that_cannot_be_opened_is_reported_as_such() {
    let dir = tempfile::tempdir().unwrap();
    let config = write_config(dir.path());
    let loaded = Config::load(&config).unwrap();
    mimix_settings::fs::private_dir(loaded.data_dir()).unwrap();
    // A file where the store's directory should be.
    std::fs::write(loaded.store_dir(), b"not a directory").unwrap();
    let o = status(&config);
    assert!(!o.status.success());
    let err = String::from_utf8_lossy(&o.stderr);
    assert!(err.contains("cannot open the store"), "{err}");
    assert!(!err.contains("running node"), "{err}");
}
