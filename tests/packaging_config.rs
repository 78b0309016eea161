//! The configuration the Debian package installs as `/etc/mimix/mimix.toml`
//! (`packaging/mimix.toml`) is exactly what `mimix init` writes for the data
//! directory `/var/lib/mimix`, and everything the node writes lands under
//! that directory, the only one its systemd unit may write to.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::path::{Path, PathBuf};

use mimix::config::Config;
use mimix::transport::TransportKind;
use mimix_tor::NetworkKind as TorNetworkKind;

/// The state directory of the packaged service (`StateDirectory=mimix`).
const STATE_DIR: &str = "/var/lib/mimix";

fn packaged_path() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("packaging/mimix.toml")
}

#[test]
fn packaged_config_is_the_init_template_for_var_lib() {
    let expected = Config::init_template(Path::new(STATE_DIR)).unwrap();
    let on_disk = std::fs::read_to_string(packaged_path()).unwrap();
    if on_disk != expected {
        let fresh = Path::new(env!("CARGO_TARGET_TMPDIR")).join("mimix.toml");
        std::fs::write(&fresh, &expected).unwrap();
        panic!(
            "packaging/mimix.toml is out of date with mimix.example.toml; \
             the expected file is at {}: copy it to packaging/mimix.toml",
            fresh.display()
        );
    }
}

#[test]
fn packaged_config_keeps_all_state_under_var_lib() {
    let config = Config::load(&packaged_path()).unwrap();
    let state = Path::new(STATE_DIR);
    assert_eq!(config.data_dir(), state);
    for (what, path) in [
        ("store", config.store_dir()),
        ("keys", config.keys_dir()),
        ("tor.state_dir", config.tor.state_dir.clone()),
        ("tor.cache_dir", config.tor.cache_dir.clone()),
        ("exit.blocklist", config.exit.blocklist.clone()),
        ("exit.news.blocklist", config.exit.news.blocklist.clone()),
    ] {
        assert!(path.starts_with(state), "{what} is {}", path.display());
    }
}

#[test]
fn packaged_config_is_a_public_tor_middle_node() {
    let config = Config::load(&packaged_path()).unwrap();
    assert_eq!(config.transport.kind, TransportKind::Tor);
    assert_eq!(config.tor.network, TorNetworkKind::Public);
    assert!(!config.node.smtp_exit);
}
