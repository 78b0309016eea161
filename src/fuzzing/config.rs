//! The configuration file ([`Config::from_toml_str`]).
//!
//! Properties: an accepted configuration validates, and its effective TOML
//! ([`Config::to_toml`]) parses back to an equal configuration; a refused
//! one says where: a parse error names the field or the line, a
//! validation error names a field under one of the known tables, with a
//! reason. Version errors are the only other outcomes text can reach.

use super::{Violation, ensure};
use crate::config::{Config, ConfigError};

const TARGET: &str = "config";

/// The top-level keys a validation error may name.
/// (A test below checks it against the tables a config has.)
const TABLES: [&str; 14] = [
    "config_version",
    "node",
    "transport",
    "tor",
    "pool",
    "dummies",
    "replay",
    "store",
    "keys",
    "outbound",
    "exit",
    "directory",
    "pinger",
    "admin",
];

/// Runs one configuration text; names the outcome: `accepted`, `syntax`
/// (a parse error with a line but no field), `field` (a parse error
/// naming a field), `too_deep` (nested past the parser's limit),
/// `invalid`, `no_version`, `version` or `no_data_dir`
/// (when neither `HOME` nor `XDG_DATA_HOME` is set).
pub fn check(data: &[u8]) -> Result<&'static str, Violation> {
    let text = String::from_utf8_lossy(data);
    match Config::from_toml_str(&text) {
        Ok(config) => round_trip(&config).map(|()| "accepted"),
        Err(e) => refusal(&e),
    }
}

fn round_trip(config: &Config) -> Result<(), Violation> {
    let fail = |what: String| Violation::Property {
        target: TARGET,
        what,
    };
    config
        .validate()
        .map_err(|e| fail(format!("accepted config does not validate: {e}")))?;
    let toml = config
        .to_toml()
        .map_err(|e| fail(format!("accepted config does not serialise: {e}")))?;
    let again = Config::from_toml_str(&toml)
        .map_err(|e| fail(format!("effective TOML does not parse back: {e}")))?;
    ensure(again == *config, TARGET, || {
        "effective TOML parses back to a different config".into()
    })
}

fn refusal(e: &ConfigError) -> Result<&'static str, Violation> {
    let what = || format!("refused without saying where: {e}");
    match e {
        ConfigError::Parse {
            field,
            line,
            message,
            ..
        } => {
            // The parser's recursion limit is the one error it gives no
            // position; the message says what it is.
            let deep = message.starts_with("nested too deeply");
            ensure(
                (field.is_some() || line.is_some() || deep) && !message.is_empty(),
                TARGET,
                what,
            )?;
            Ok(match (field.is_some(), deep) {
                (true, _) => "field",
                (false, true) => "too_deep",
                (false, false) => "syntax",
            })
        }
        ConfigError::Invalid { field, reason } => {
            let top = field.split(['.', '[']).next().unwrap_or_default();
            ensure(TABLES.contains(&top) && !reason.is_empty(), TARGET, what)?;
            Ok("invalid")
        }
        ConfigError::MissingVersion { .. } => Ok("no_version"),
        ConfigError::UnsupportedVersion { .. } => Ok("version"),
        ConfigError::NoDataDir => Ok("no_data_dir"),
        ConfigError::Read { .. }
        | ConfigError::NonUtf8Path { .. }
        | ConfigError::Serialize(_)
        | ConfigError::Template(_) => Err(Violation::Property {
            target: TARGET,
            what: format!("text gave an error only files or output can give: {e}"),
        }),
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]

    use super::TABLES;
    use crate::config::Config;

    #[test]
    fn every_table_of_a_config_may_be_named() {
        let config = Config::from_toml_str("config_version = 1\n").unwrap();
        let text = config.to_toml().unwrap();
        let doc: toml::Table = text.parse().unwrap();
        for key in doc.keys() {
            assert!(TABLES.contains(&key.as_str()), "{key} missing from TABLES");
        }
    }
}
