//! The `[exit.news]` table: whether and how the exit posts to Usenet.

use std::path::PathBuf;

use mimix_settings::{Checked, check, path};
use serde::{Deserialize, Serialize};

use crate::exit::address::recipient;
use crate::exit::nntp::NntpConfig;

/// Default crosspost limit.
pub const DEFAULT_MAX_GROUPS: usize = 3;

/// Largest `max_groups` accepted.
const MAX_GROUPS: usize = 20;

/// How posts leave the exit.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum NewsMode {
    /// No posting: a payload with `Newsgroups:` is mail like any other
    /// (the header is removed by the default deny list).
    #[default]
    Off,
    /// By mail to a mail2news gateway, through `[exit.smtp]`.
    Mail2news,
    /// With `POST` to the news server of `[exit.news.nntp]`.
    Nntp,
}

/// `[exit.news]`: Usenet posting (off by default).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct NewsConfig {
    /// `off` (default), `mail2news` or `nntp`.
    pub mode: NewsMode,
    /// `mail2news`: the gateway's address.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub gateway: Option<String>,
    /// File of blocked newsgroup patterns; a missing file blocks nothing.
    /// Empty: none (the node's configuration fills in
    /// `<data_dir>/newsgroup-blocklist.txt`).
    #[serde(with = "path", skip_serializing_if = "path::is_unset")]
    pub blocklist: PathBuf,
    /// Most groups a post may name in `Newsgroups:` (and in
    /// `Followup-To:`).
    pub max_groups: usize,
    /// `[exit.news.nntp]`: the news server, in `nntp` mode.
    pub nntp: NntpConfig,
}

impl Default for NewsConfig {
    fn default() -> Self {
        Self {
            mode: NewsMode::Off,
            gateway: None,
            blocklist: PathBuf::new(),
            max_groups: DEFAULT_MAX_GROUPS,
            nntp: NntpConfig::default(),
        }
    }
}

impl NewsConfig {
    /// Checks the settings without touching files or the network; fields
    /// are named relative to the table.
    pub fn validate(&self) -> Checked {
        check(
            (1..=MAX_GROUPS).contains(&self.max_groups),
            "max_groups",
            || format!("must be 1 to {MAX_GROUPS}, got {}", self.max_groups),
        )?;
        if let Some(g) = &self.gateway {
            check(recipient(g, false).is_ok(), "gateway", || {
                format!("{g:?} is not a mail address with a dotted domain")
            })?;
        }
        if self.mode == NewsMode::Mail2news {
            check(self.gateway.is_some(), "gateway", || {
                "mode = \"mail2news\" needs the gateway's address".into()
            })?;
        }
        self.nntp.validate().map_err(|e| e.within("nntp"))
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]
    use super::*;

    #[test]
    fn off_by_default_and_checked() {
        let c = NewsConfig::default();
        assert_eq!((c.mode, c.max_groups), (NewsMode::Off, 3));
        c.validate().unwrap();
        let parsed: NewsConfig =
            toml::from_str("mode = \"mail2news\"\ngateway = \"mail2news@example.net\"\n").unwrap();
        parsed.validate().unwrap();
        assert!(toml::from_str::<NewsConfig>("mode = \"usenet\"").is_err());
        assert!(toml::from_str::<NewsConfig>("groups = 3").is_err());
        let field = |c: NewsConfig| c.validate().unwrap_err().field;
        let no_gateway = NewsConfig {
            mode: NewsMode::Mail2news,
            ..NewsConfig::default()
        };
        assert_eq!(field(no_gateway), "gateway");
        let bad_gateway = NewsConfig {
            gateway: Some("not an address".into()),
            ..NewsConfig::default()
        };
        assert_eq!(field(bad_gateway), "gateway");
        for n in [0, 21] {
            let c = NewsConfig {
                max_groups: n,
                ..NewsConfig::default()
            };
            assert_eq!(field(c), "max_groups");
        }
        let mut bad_nntp = NewsConfig::default();
        bad_nntp.nntp.port = Some(0);
        assert_eq!(field(bad_nntp), "nntp.port");
    }
}
