//! One real `mimix run` process on loopback with settings of the test's
//! choosing, and packets built for it whose next hop is a server of the
//! test's (a [`StandIn`](super::hop::StandIn)).

use std::path::{Path, PathBuf};

use mimix::clock::{Clock, SystemClock};
use mimix_packet::{ExitType, Hop, RemailerConf, armour, build_message};

use super::net::{NodeProc, free_port, get_conf};

/// A single middle node and the directory it lives in.
pub struct Solo {
    /// The node.
    pub node: NodeProc,
    /// Holds its files (and whatever else the test puts there).
    pub root: tempfile::TempDir,
}

/// The config of a middle node `name` in `data_dir` on `port`:
/// the direct transport (with `transport` added to its table), 2048-bit
/// keys, no dummies, and `tables` (whole tables such as `[pool]`).
pub fn config(name: &str, data_dir: &Path, port: u16, transport: &str, tables: &str) -> String {
    format!(
        r#"config_version = 1

[node]
name = "{name}"
data_dir = "{data_dir}"
log = "info"

[transport]
kind = "direct"
listen = "127.0.0.1:{port}"
connect_timeout = "5s"
{transport}

[dummies]
enabled = false

[keys]
bits = 2048

{tables}
"#,
        data_dir = data_dir.display(),
    )
}

impl Solo {
    /// Starts a node whose data lives in `data_dir` (a fresh temporary
    /// directory if `None`), with `transport` and `tables` as in
    /// [`config`].
    pub fn start(data_dir: Option<PathBuf>, transport: &str, tables: &str) -> Self {
        let root = tempfile::tempdir().unwrap();
        let data = data_dir.unwrap_or_else(|| root.path().join("node"));
        let port = free_port();
        let path = root.path().join("node.toml");
        std::fs::write(&path, config("solo", &data, port, transport, tables)).unwrap();
        let log = root.path().join("node.log");
        let mut node = NodeProc::new("solo", port, path, data, log);
        node.start();
        Self { node, root }
    }

    /// A packet for this node whose next hop is `next` (any base URL).
    pub fn packets_to(&self, next: &str, n: usize) -> Vec<String> {
        let today = SystemClock.epoch_day();
        let conf = get_conf(self.node.port).expect("the node serves its conf");
        let conf = RemailerConf::parse_valid(&conf, today).unwrap();
        let me = Hop {
            key: conf.key.clone(),
            address: self.node.url(),
        };
        // The next hop never decrypts anything: any key will do.
        let next = Hop {
            key: conf.key,
            address: next.to_owned(),
        };
        let rng = &mut rand::rng();
        (0..n)
            .map(|i| {
                let body = format!("To: a@b.example\n\npacket {i}");
                let packets = build_message(
                    rng,
                    &[me.clone(), next.clone()],
                    ExitType::Smtp,
                    body.as_bytes(),
                    today,
                )
                .unwrap();
                armour(&packets[0])
            })
            .collect()
    }
}
