//! The `[node]` table: who this node is and where it keeps its data.

use std::path::PathBuf;

use mimix_settings::{Checked, Invalid, check, path};
use serde::{Deserialize, Serialize};
use tracing_subscriber::EnvFilter;

use crate::directory::is_remailer_name;

/// `[node]`: who this node is and where it keeps its data.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct NodeConfig {
    /// The remailer's name, published as `Name:` in `remailer-conf.txt`
    /// (ASCII letters, digits, `-`, `_`, `.`; at most 32 characters).
    pub name: String,
    /// Where the node keeps its store, keys and Tor state. When the file
    /// leaves it out, it is `$XDG_DATA_HOME/mimix` or
    /// `~/.local/share/mimix`, resolved at load time.
    #[serde(with = "path", skip_serializing_if = "path::is_unset")]
    pub data_dir: PathBuf,
    /// The published base URL (`http://host[:port]`, no path). Optional:
    /// with the Tor transport it is filled with the onion address at run
    /// time.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub address: Option<String>,
    /// Whether this node delivers mail (an exit, `SMTP: Yes`) or only
    /// forwards packets (a middle node).
    pub smtp_exit: bool,
    /// Log filter, in `tracing_subscriber::EnvFilter` syntax; changed
    /// live on SIGHUP.
    pub log: String,
    /// A file the log is appended to as well as standard error (created
    /// 0600, opened again on SIGHUP, for `logrotate`); unset: none. See
    /// [`logging`](crate::logging).
    #[serde(
        default,
        with = "path::option",
        skip_serializing_if = "Option::is_none"
    )]
    pub log_file: Option<PathBuf>,
    /// Whether identifying values (packet IDs, addresses, sizes,
    /// recipients) are scrubbed from debug logs (see
    /// [`safelog`](crate::safelog)). Turn it off only to debug a test
    /// network.
    pub safe_logging: bool,
    /// The text served as `/help.txt`; unset: a built-in page saying what
    /// this remailer is and how to use it. Read again on SIGHUP.
    #[serde(
        default,
        with = "path::option",
        skip_serializing_if = "Option::is_none"
    )]
    pub help_file: Option<PathBuf>,
    /// The operator's OpenPGP public key, served as `/adminkey.txt`;
    /// unset: 404. Read again on SIGHUP.
    #[serde(
        default,
        with = "path::option",
        skip_serializing_if = "Option::is_none"
    )]
    pub admin_key_file: Option<PathBuf>,
}

impl Default for NodeConfig {
    fn default() -> Self {
        Self {
            name: "mimix".into(),
            data_dir: PathBuf::new(),
            address: None,
            smtp_exit: false,
            log: "info".into(),
            log_file: None,
            safe_logging: true,
            help_file: None,
            admin_key_file: None,
        }
    }
}

impl NodeConfig {
    /// Checks every value; fields are named relative to the table. Whether
    /// `address` suits the transport is checked by the configuration, which
    /// sees both tables.
    pub fn validate(&self) -> Checked {
        check(is_remailer_name(&self.name), "name", || {
            format!(
                "{:?} must be 1 to 32 ASCII letters, digits, '-', '_' or '.'",
                self.name
            )
        })?;
        check(!self.data_dir.as_os_str().is_empty(), "data_dir", || {
            "must not be empty".into()
        })?;
        EnvFilter::builder()
            .parse(&self.log)
            .map(drop)
            .map_err(|e| Invalid::new("log", format!("not a valid log filter: {e}")))
    }
}
