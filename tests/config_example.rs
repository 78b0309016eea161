//! The shipped `mimix.example.toml` parses, shows the real defaults, and
//! typical mistakes are reported clearly.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::path::{Path, PathBuf};
use std::time::Duration;

use mimix::config::{Config, ConfigError, EXAMPLE_TOML};
use mimix::transport::TransportKind;
use mimix_tor::NetworkKind as TorNetworkKind;

fn example_path() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("mimix.example.toml")
}

/// The example with `config_version` and one extra snippet appended to
/// (or replacing text in) it, written to a temporary file and loaded.
fn load_text(text: &str) -> Result<Config, ConfigError> {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("mimix.toml");
    std::fs::write(&path, text).unwrap();
    Config::load(&path)
}

fn example_with(from: &str, to: &str) -> String {
    assert!(EXAMPLE_TOML.contains(from), "example lacks {from:?}");
    EXAMPLE_TOML.replacen(from, to, 1)
}

#[test]
fn example_file_is_the_embedded_template() {
    let on_disk = std::fs::read_to_string(example_path()).unwrap();
    assert_eq!(on_disk, EXAMPLE_TOML);
}

#[test]
fn example_equals_the_defaults() {
    let loaded = Config::load(&example_path()).unwrap();
    let data_dir = mimix::config::default_data_dir().expect("HOME is set in tests");
    assert_eq!(loaded.node.data_dir, data_dir);
    assert_eq!(loaded, Config::default_for(&data_dir));

    // Spot-check the values the example spells out, so that a wrong default
    // in both places would still be caught.
    assert_eq!(loaded.config_version, 1);
    assert_eq!(loaded.node.name, "mimix");
    assert!(!loaded.node.smtp_exit);
    assert_eq!(loaded.node.address, None);
    assert_eq!(loaded.transport.kind, TransportKind::Tor);
    assert_eq!(loaded.transport.listen, "127.0.0.1:8080".parse().unwrap());
    assert_eq!(loaded.transport.max_body, 65_536);
    assert_eq!(loaded.tor.network, TorNetworkKind::Public);
    assert_eq!(loaded.tor.state_dir, data_dir.join("tor/state"));
    assert_eq!(loaded.pool.interval, Duration::from_secs(15 * 60));
    assert_eq!(loaded.pool.min, 45);
    assert_eq!(loaded.pool.rate, 0.65);
    assert_eq!(loaded.dummies.per_inbound_mean, 1.0 / 32.0);
    assert_eq!(loaded.dummies.per_round_mean, 1.0 / 9.0);
    assert_eq!(loaded.dummies.chain_length, 4);
    assert_eq!(loaded.replay.retention, Duration::from_secs(28 * 86_400));
    assert_eq!(loaded.replay.max_age_days(), 14);
    assert_eq!(loaded.keys.bits, 4096);
    assert_eq!(loaded.keys.lifetime_days(), 270);
    assert_eq!(loaded.keys.renew_before_days(), 28);
    assert_eq!(loaded.keys.grace_days(), 7);
    assert_eq!(loaded.outbound.retry_max, Duration::from_secs(6 * 3600));
    assert_eq!(
        loaded.exit.policy.from,
        "Anonymous Remailer <nobody@localhost>"
    );
    assert_eq!(loaded.exit.policy.max_message_size, 255 * 10_240 + 16_384);
    assert_eq!(loaded.exit.blocklist, data_dir.join("blocklist.txt"));
    assert_eq!(loaded.exit.smtp.port, 25);
    assert_eq!(
        loaded.exit.retry.give_up_after,
        Duration::from_secs(5 * 86_400)
    );
    assert_eq!(loaded.exit.reassembly.max_partial_sets, 256);
    assert_eq!(loaded.exit.max_decompressed_size, 2_610_180);
    assert_eq!(loaded.exit.news.mode, mimix::exit::news::NewsMode::Off);
    assert_eq!(loaded.exit.news.max_groups, 3);
    assert_eq!(
        loaded.exit.news.blocklist,
        data_dir.join("newsgroup-blocklist.txt")
    );
    assert_eq!(loaded.exit.news.nntp.port(), 119);
    assert_eq!(loaded.exit.rate_limit.per_address, 20);
    assert_eq!(loaded.exit.rate_limit.per_domain, 200);
    assert_eq!(loaded.exit.abuse_contact, None);
    assert!(loaded.node.randhop);
    assert_eq!(loaded.node.randhop_chain_length, 2);
    assert!(loaded.directory.remailers.is_empty());
    assert_eq!(loaded.admin.listen, mimix::admin::AdminListen::Unix);
    assert!(!loaded.admin.metrics);
}

#[test]
fn default_config_validates() {
    let config = Config::default_for(Path::new("/srv/mimix"));
    config.validate().unwrap();
    assert_eq!(config.store_dir(), Path::new("/srv/mimix/store"));
    assert_eq!(config.keys_dir(), Path::new("/srv/mimix/keys"));
}

#[test]
fn every_commented_out_example_setting_is_valid() {
    // Uncomment the optional settings (except those that only make sense
    // together with others) and check the file still loads.
    let text = EXAMPLE_TOML
        .replace("# comments = ", "comments = ")
        .replace("# envelope_from = ", "envelope_from = ")
        .replace("# message_id_domain = ", "message_id_domain = ")
        .replace("# helo_name = ", "helo_name = ")
        .replace("# deny_headers = ", "deny_headers = ")
        .replace("# blocklist = ", "blocklist = ")
        .replace("# state_dir = ", "state_dir = ")
        .replace("# cache_dir = ", "cache_dir = ")
        .replace("# [[directory.remailers]]", "[[directory.remailers]]")
        .replace("# name = \"alpha\"", "name = \"alpha\"")
        .replace("# address = \"http://alpha", "address = \"http://alpha")
        .replace("# conf = ", "conf = ");
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("mimix.toml");
    std::fs::write(&path, text).unwrap();
    let config = Config::load(&path).unwrap();
    let policy = &config.exit.policy;
    assert!(
        policy
            .comments
            .as_deref()
            .unwrap()
            .contains("anonymous remailer")
    );
    assert_eq!(policy.deny_headers.as_ref().unwrap().len(), 4);
    assert_eq!(policy.envelope_from.as_deref(), Some("bounces@example.org"));
    assert_eq!(policy.message_id_domain.as_deref(), Some("example.org"));
    assert_eq!(
        config.exit.smtp.helo_name.as_deref(),
        Some("mail.example.org")
    );
    let alpha = &config.directory.remailers[0];
    assert_eq!(alpha.name, "alpha");
    // Relative paths are taken relative to the file's directory.
    assert_eq!(
        alpha.conf.as_deref(),
        Some(dir.path().join("confs/alpha.txt").as_path())
    );
}

#[test]
fn unknown_field_is_rejected_with_its_name_and_line() {
    let text = example_with("min = 45", "min = 45\nintervall = \"10m\"");
    let err = load_text(&text).unwrap_err();
    let msg = err.to_string();
    match &err {
        ConfigError::Parse { line, field, .. } => {
            let expected = text
                .lines()
                .position(|l| l.starts_with("intervall"))
                .unwrap()
                + 1;
            assert_eq!(*line, Some(expected), "{msg}");
            assert!(field.as_deref().unwrap().starts_with("pool"), "{msg}");
        }
        other => panic!("wrong error: {other:?}"),
    }
    assert!(msg.contains("unknown field `intervall`"), "{msg}");
    assert!(msg.contains("mimix.toml"), "{msg}");
}

#[test]
fn wrong_config_version_is_rejected() {
    let text = example_with("config_version = 1", "config_version = 2");
    let err = load_text(&text).unwrap_err();
    assert!(
        matches!(&err, ConfigError::UnsupportedVersion { found, .. } if found == "2"),
        "{err:?}"
    );
    let msg = err.to_string();
    assert!(msg.contains("config_version = 2 is not supported"), "{msg}");
    assert!(msg.contains("config_version = 1"), "{msg}");

    let err = load_text(&example_with("config_version = 1", "")).unwrap_err();
    assert!(matches!(err, ConfigError::MissingVersion { .. }), "{err:?}");
}

#[test]
fn bad_duration_is_rejected_naming_the_field() {
    let text = example_with("retry_initial = \"1m\"", "retry_initial = \"1 fortnight\"");
    let err = load_text(&text).unwrap_err();
    let msg = err.to_string();
    assert!(
        matches!(&err, ConfigError::Parse { field: Some(f), .. } if f == "outbound.retry_initial"),
        "{err:?}"
    );
    assert!(msg.contains("outbound.retry_initial"), "{msg}");
}

#[test]
fn retention_shorter_than_max_age_is_rejected() {
    let text = example_with("retention = \"28d\"", "retention = \"10d\"");
    let err = load_text(&text).unwrap_err();
    assert!(
        matches!(&err, ConfigError::Invalid { field, .. } if field == "replay.retention"),
        "{err:?}"
    );
    let msg = err.to_string();
    assert!(msg.contains("replays"), "{msg}");

    // Exactly the bound is fine: 14d + 1d + 1d.
    let ok = load_text(&example_with("retention = \"28d\"", "retention = \"16d\"")).unwrap();
    assert_eq!(ok.replay.retention, Duration::from_secs(16 * 86_400));
}

#[test]
fn missing_file_names_the_path() {
    let err = Config::load(Path::new("/nonexistent/mimix.toml")).unwrap_err();
    assert!(matches!(err, ConfigError::Read { .. }), "{err:?}");
    assert!(err.to_string().contains("/nonexistent/mimix.toml"), "{err}");
}

#[test]
fn init_template_sets_the_data_dir() {
    let dir = tempfile::tempdir().unwrap();
    let data_dir = dir.path().join("data \"quoted\"");
    let text = Config::init_template(&data_dir).unwrap();
    let path = dir.path().join("mimix.toml");
    std::fs::write(&path, &text).unwrap();
    let config = Config::load(&path).unwrap();
    assert_eq!(config.node.data_dir, data_dir);
    assert_eq!(config, Config::default_for(&data_dir));
}

#[test]
fn the_admin_listener_is_loopback_only() {
    let tcp = load_text(&example_with(
        "listen = \"unix\"",
        "listen = \"127.0.0.1:9180\"\n",
    ))
    .unwrap();
    assert_eq!(
        tcp.admin.listen,
        mimix::admin::AdminListen::Tcp("127.0.0.1:9180".parse().unwrap())
    );
    let err = load_text(&example_with(
        "listen = \"unix\"",
        "listen = \"0.0.0.0:9180\"",
    ))
    .unwrap_err()
    .to_string();
    assert!(err.contains("admin.listen"), "{err}");
    assert!(err.contains("not a loopback address"), "{err}");
    let err = load_text(&example_with("listen = \"unix\"", "listen = \"9180\""))
        .unwrap_err()
        .to_string();
    assert!(err.contains("admin.listen"), "{err}");
    let long = format!("data_dir = \"/tmp/{}\"", "d".repeat(100));
    let err = load_text(&example_with(
        "# data_dir = \"~/.local/share/mimix\"",
        &long,
    ))
    .unwrap_err()
    .to_string();
    assert!(
        err.contains("admin.listen") && err.contains("unix"),
        "{err}"
    );
}
