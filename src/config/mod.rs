//! The node configuration: a TOML file with one table per subsystem.
//!
//! The file starts with `config_version = 1`; every other table is optional
//! and every field has a default (see `mimix.example.toml`, which documents
//! them all and is embedded as [`EXAMPLE_TOML`]). Unknown fields are errors,
//! durations are human strings (`"15m"`, `"28d"`), sizes are bytes or human
//! sizes (`65536`, `"64KiB"`).
//!
//! Each table's type, defaults and validation live with the subsystem that
//! uses it ([`NodeConfig`], [`TransportConfig`], [`TorConfig`],
//! [`PoolConfig`], [`DummyConfig`], [`ReplayConfig`], [`StoreConfig`],
//! [`KeysConfig`], [`OutboundConfig`], [`ExitConfig`], [`DirectoryConfig`],
//! [`AdminConfig`]); this module
//! only aggregates them, resolves paths and checks the rules that span
//! tables. A new setting touches its subsystem and `mimix.example.toml`.
//!
//! [`Config::load`] reads, resolves and validates a file: paths default to
//! places under the data directory, `~/` is expanded and relative paths are
//! taken relative to the file's directory. [`Config::default_for`] is the
//! configuration used when there is no file at all.

mod validate;

#[cfg(test)]
mod tests;

use std::ffi::OsString;
use std::path::{Path, PathBuf};

use mimix_settings::Invalid;
use mimix_tor::TorConfig;
use serde::{Deserialize, Serialize};

use crate::admin::AdminConfig;
use crate::directory::DirectoryConfig;
use crate::directory::pinger::PingerConfig;
use crate::exit::ExitConfig;
use crate::keystore::KeysConfig;
use crate::node::{NodeConfig, OutboundConfig, ReplayConfig};
use crate::pool::{DummyConfig, PoolConfig};
use crate::store::StoreConfig;
use crate::transport::TransportConfig;

/// The only `config_version` this build reads.
pub const SUPPORTED_VERSION: u32 = 1;

/// The fully commented example configuration (`mimix.example.toml`); also
/// the template `mimix init` writes (see [`Config::init_template`]).
pub const EXAMPLE_TOML: &str = include_str!("../../mimix.example.toml");

/// The complete node configuration.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Config {
    /// Format version of the file; must be [`SUPPORTED_VERSION`].
    pub config_version: u32,
    /// `[node]`
    #[serde(default)]
    pub node: NodeConfig,
    /// `[transport]`
    #[serde(default)]
    pub transport: TransportConfig,
    /// `[tor]`
    #[serde(default)]
    pub tor: TorConfig,
    /// `[pool]`
    #[serde(default)]
    pub pool: PoolConfig,
    /// `[dummies]`
    #[serde(default)]
    pub dummies: DummyConfig,
    /// `[replay]`
    #[serde(default)]
    pub replay: ReplayConfig,
    /// `[store]`
    #[serde(default)]
    pub store: StoreConfig,
    /// `[keys]`
    #[serde(default)]
    pub keys: KeysConfig,
    /// `[outbound]`
    #[serde(default)]
    pub outbound: OutboundConfig,
    /// `[exit]`
    #[serde(default)]
    pub exit: ExitConfig,
    /// `[directory]`
    #[serde(default)]
    pub directory: DirectoryConfig,
    /// `[pinger]`
    #[serde(default)]
    pub pinger: PingerConfig,
    /// `[admin]`
    #[serde(default)]
    pub admin: AdminConfig,
}

/// Why a configuration could not be loaded.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    /// The file could not be read.
    #[error("cannot read configuration file {}: {source}", path.display())]
    Read {
        /// The file.
        path: PathBuf,
        /// The I/O error.
        #[source]
        source: std::io::Error,
    },
    /// The text is not valid TOML, or a field is unknown, missing or of the
    /// wrong type or format.
    #[error("{}{}{message}", location(file.as_deref(), *line, *column), field_prefix(field.as_deref()))]
    Parse {
        /// The file, if the text came from one.
        file: Option<PathBuf>,
        /// Dotted path of the offending field (`pool.interval`), if known.
        field: Option<String>,
        /// 1-based line of the error, if known.
        line: Option<usize>,
        /// 1-based column of the error, if known.
        column: Option<usize>,
        /// What is wrong.
        message: String,
    },
    /// `config_version` is missing.
    #[error("{}config_version is missing: the file must start with `config_version = {SUPPORTED_VERSION}`", location(file.as_deref(), None, None))]
    MissingVersion {
        /// The file, if the text came from one.
        file: Option<PathBuf>,
    },
    /// `config_version` has a value this build does not read.
    #[error("{}config_version = {found} is not supported: this mimix reads config_version = {SUPPORTED_VERSION}", location(file.as_deref(), None, None))]
    UnsupportedVersion {
        /// The file, if the text came from one.
        file: Option<PathBuf>,
        /// The value found, as written.
        found: String,
    },
    /// A value is out of range or inconsistent with another.
    #[error("invalid configuration: {field}: {reason}")]
    Invalid {
        /// Dotted path of the field (`replay.retention`).
        field: String,
        /// Why the value is refused.
        reason: String,
    },
    /// No data directory was configured and none could be derived from the
    /// environment.
    #[error(
        "node.data_dir is not set and cannot be derived: neither XDG_DATA_HOME nor HOME is set"
    )]
    NoDataDir,
    /// The built-in example could not be filled in for `mimix init` (a
    /// bug: the example is tested).
    #[error("filling in the example configuration: {0}")]
    Template(String),
    /// A path cannot be written into TOML because it is not UTF-8.
    #[error("path {} is not valid UTF-8", path.display())]
    NonUtf8Path {
        /// The path.
        path: PathBuf,
    },
    /// The configuration could not be written as TOML.
    #[error("cannot write the configuration as TOML: {0}")]
    Serialize(#[from] toml::ser::Error),
}

/// `"file:line:column: "`, with whatever parts are known.
fn location(file: Option<&Path>, line: Option<usize>, column: Option<usize>) -> String {
    let mut s = file.map(|f| f.display().to_string()).unwrap_or_default();
    if let Some(line) = line {
        if !s.is_empty() {
            s.push_str(", ");
        }
        s.push_str(&format!("line {line}"));
        if let Some(column) = column {
            s.push_str(&format!(", column {column}"));
        }
    }
    if !s.is_empty() {
        s.push_str(": ");
    }
    s
}

/// `"field: "`, or nothing.
fn field_prefix(field: Option<&str>) -> String {
    field.map(|f| format!("{f}: ")).unwrap_or_default()
}

impl ConfigError {
    /// A validation error for `field`.
    pub(crate) fn invalid(field: impl Into<String>, reason: impl Into<String>) -> Self {
        Self::Invalid {
            field: field.into(),
            reason: reason.into(),
        }
    }
}

impl From<Invalid> for ConfigError {
    fn from(e: Invalid) -> Self {
        Self::Invalid {
            field: e.field,
            reason: e.reason,
        }
    }
}

/// The environment that path resolution depends on.
#[derive(Debug, Clone, Default)]
struct Env {
    home: Option<PathBuf>,
    xdg_data_home: Option<PathBuf>,
}

impl Env {
    fn from_process() -> Self {
        let non_empty = |v: Option<OsString>| v.filter(|v| !v.is_empty()).map(PathBuf::from);
        Self {
            home: non_empty(std::env::var_os("HOME")),
            xdg_data_home: non_empty(std::env::var_os("XDG_DATA_HOME")),
        }
    }

    /// `$XDG_DATA_HOME/mimix` (if absolute) or `$HOME/.local/share/mimix`.
    fn default_data_dir(&self) -> Option<PathBuf> {
        if let Some(xdg) = self.xdg_data_home.as_ref().filter(|p| p.is_absolute()) {
            return Some(xdg.join("mimix"));
        }
        self.home
            .as_ref()
            .map(|h| h.join(".local").join("share").join("mimix"))
    }
}

/// The data directory used when the configuration names none:
/// `$XDG_DATA_HOME/mimix` or `~/.local/share/mimix`.
pub fn default_data_dir() -> Option<PathBuf> {
    Env::from_process().default_data_dir()
}

/// Only `config_version`, read before the full parse so that a file of
/// another version gets a version error, not a confusing field error.
#[derive(Deserialize)]
struct VersionProbe {
    config_version: Option<toml::Value>,
}

impl Config {
    /// Read, resolve and validate the configuration file at `path`.
    /// Relative paths in it are taken relative to the file's directory.
    pub fn load(path: &Path) -> Result<Config, ConfigError> {
        let text = std::fs::read_to_string(path).map_err(|source| ConfigError::Read {
            path: path.to_owned(),
            source,
        })?;
        // Resolved once, against the file's directory as it is now: the
        // configuration holds only absolute paths afterwards.
        let file = std::path::absolute(path).map_err(|source| ConfigError::Read {
            path: path.to_owned(),
            source,
        })?;
        Self::from_toml_with(&text, Some(path), file.parent(), &Env::from_process())
    }

    /// Parse, resolve and validate configuration text. Relative paths stay
    /// relative to the working directory.
    pub fn from_toml_str(text: &str) -> Result<Config, ConfigError> {
        Self::from_toml_with(text, None, None, &Env::from_process())
    }

    fn from_toml_with(
        text: &str,
        file: Option<&Path>,
        base: Option<&Path>,
        env: &Env,
    ) -> Result<Config, ConfigError> {
        let mut config = parse(text, file)?;
        config.resolve(base, env)?;
        config.validate()?;
        Ok(config)
    }

    /// The built-in configuration, used when `mimix run` has no file: every
    /// default, with `data_dir` and the paths under it filled in.
    pub fn default_for(data_dir: &Path) -> Config {
        let mut config = Config {
            config_version: SUPPORTED_VERSION,
            node: NodeConfig::default(),
            transport: TransportConfig::default(),
            tor: TorConfig::default(),
            pool: PoolConfig::default(),
            dummies: DummyConfig::default(),
            replay: ReplayConfig::default(),
            store: StoreConfig::default(),
            keys: KeysConfig::default(),
            outbound: OutboundConfig::default(),
            exit: ExitConfig::default(),
            directory: DirectoryConfig::default(),
            pinger: PingerConfig::default(),
            admin: AdminConfig::default(),
        };
        config.node.data_dir = data_dir.to_owned();
        config.fill_derived_paths();
        config
    }

    /// Check every value and the rules between them (called by
    /// [`Config::load`] and [`Config::from_toml_str`]).
    pub fn validate(&self) -> Result<(), ConfigError> {
        Ok(validate::validate(self)?)
    }

    /// The data directory.
    pub fn data_dir(&self) -> &Path {
        &self.node.data_dir
    }

    /// Where the durable store lives: `<data_dir>/store`.
    pub fn store_dir(&self) -> PathBuf {
        self.node.data_dir.join("store")
    }

    /// Where our secret keys live: `<data_dir>/keys`.
    pub fn keys_dir(&self) -> PathBuf {
        self.node.data_dir.join("keys")
    }

    /// The effective configuration as TOML (every field, defaults
    /// included, without comments).
    pub fn to_toml(&self) -> Result<String, ConfigError> {
        Ok(toml::to_string(self)?)
    }

    /// A `[tor]` table as TOML text (for configs written by programs, such
    /// as the test network's nodes). Its array tables come last, so other
    /// tables go after it.
    pub fn tor_table(tor: &TorConfig) -> Result<String, ConfigError> {
        #[derive(Serialize)]
        struct Table<'a> {
            tor: &'a TorConfig,
        }
        Ok(toml::to_string(&Table { tor })?)
    }

    /// The commented example configuration with `node.data_dir` set to
    /// `data_dir`: what `mimix init` writes.
    pub fn init_template(data_dir: &Path) -> Result<String, ConfigError> {
        let dir = data_dir.to_str().ok_or_else(|| ConfigError::NonUtf8Path {
            path: data_dir.to_owned(),
        })?;
        let line = format!("data_dir = {}", toml::Value::String(dir.to_owned()));
        let mut out = String::with_capacity(EXAMPLE_TOML.len() + line.len());
        let mut done = false;
        for l in EXAMPLE_TOML.lines() {
            if !done && l.starts_with("# data_dir = ") {
                out.push_str(&line);
                done = true;
            } else {
                out.push_str(l);
            }
            out.push('\n');
        }
        Ok(out)
    }

    /// What `mimix init` writes: the [`init_template`](Self::init_template)
    /// for `data_dir` with `[node] name` and `smtp_exit` set, every comment
    /// kept.
    pub fn init_file(data_dir: &Path, name: &str, exit: bool) -> Result<String, ConfigError> {
        let text = Self::init_template(data_dir)?;
        let mut doc: toml_edit::DocumentMut = text
            .parse()
            .map_err(|e: toml_edit::TomlError| ConfigError::Template(e.to_string()))?;
        let node = doc
            .get_mut("node")
            .and_then(toml_edit::Item::as_table_mut)
            .ok_or_else(|| ConfigError::Template("no [node] table".into()))?;
        for (key, value) in [
            ("name", toml_edit::value(name)),
            ("smtp_exit", toml_edit::value(exit)),
        ] {
            let decor = node
                .get(key)
                .and_then(toml_edit::Item::as_value)
                .map(|v| v.decor().clone());
            node[key] = value;
            if let (Some(decor), Some(v)) = (decor, node[key].as_value_mut()) {
                *v.decor_mut() = decor;
            }
        }
        let text = doc.to_string();
        // What is written must load, with these values.
        let config = Self::from_toml_str(&text)?;
        if config.node.name != name || config.node.smtp_exit != exit {
            return Err(ConfigError::Template("init values not applied".into()));
        }
        Ok(text)
    }

    /// Expand `~/`, make relative paths relative to `base`, derive the data
    /// directory from `env` if unset, and fill the paths under it.
    fn resolve(&mut self, base: Option<&Path>, env: &Env) -> Result<(), ConfigError> {
        let home = env.home.as_deref();
        let fix = |field: &str, p: &Path| expand(field, p, base, home);
        if self.node.data_dir.as_os_str().is_empty() {
            self.node.data_dir = env.default_data_dir().ok_or(ConfigError::NoDataDir)?;
        } else {
            self.node.data_dir = fix("node.data_dir", &self.node.data_dir)?;
        }
        self.tor.state_dir = fix("tor.state_dir", &self.tor.state_dir)?;
        self.tor.cache_dir = fix("tor.cache_dir", &self.tor.cache_dir)?;
        self.exit.blocklist = fix("exit.blocklist", &self.exit.blocklist)?;
        if let Some(p) = &self.exit.smtp.password_file {
            self.exit.smtp.password_file = Some(fix("exit.smtp.password_file", p)?);
        }
        let news = &mut self.exit.news;
        news.blocklist = fix("exit.news.blocklist", &news.blocklist)?;
        if let Some(p) = &news.nntp.password_file {
            news.nntp.password_file = Some(fix("exit.news.nntp.password_file", p)?);
        }
        if let Some(p) = &self.node.help_file {
            self.node.help_file = Some(fix("node.help_file", p)?);
        }
        if let Some(p) = &self.node.admin_key_file {
            self.node.admin_key_file = Some(fix("node.admin_key_file", p)?);
        }
        if let Some(p) = &self.node.log_file {
            self.node.log_file = Some(fix("node.log_file", p)?);
        }
        for (i, r) in self.directory.remailers.iter_mut().enumerate() {
            if let Some(p) = &r.conf {
                r.conf = Some(fix(&format!("directory.remailers[{i}].conf"), p)?);
            }
        }
        self.fill_derived_paths();
        Ok(())
    }

    /// Fill the unset paths that live under the data directory.
    fn fill_derived_paths(&mut self) {
        let data = self.node.data_dir.clone();
        let fill = |p: &mut PathBuf, default: PathBuf| {
            if p.as_os_str().is_empty() {
                *p = default;
            }
        };
        fill(&mut self.tor.state_dir, data.join("tor").join("state"));
        fill(&mut self.tor.cache_dir, data.join("tor").join("cache"));
        fill(&mut self.exit.blocklist, data.join("blocklist.txt"));
        fill(
            &mut self.exit.news.blocklist,
            data.join("newsgroup-blocklist.txt"),
        );
    }
}

/// `~/x` becomes `$HOME/x`; a relative path is joined to `base`; an empty
/// path (unset) stays empty.
fn expand(
    field: &str,
    p: &Path,
    base: Option<&Path>,
    home: Option<&Path>,
) -> Result<PathBuf, ConfigError> {
    if p.as_os_str().is_empty() {
        return Ok(PathBuf::new());
    }
    if let Ok(rest) = p.strip_prefix("~") {
        let home =
            home.ok_or_else(|| ConfigError::invalid(field, "starts with ~ but HOME is not set"))?;
        return Ok(home.join(rest));
    }
    match base {
        Some(base) if p.is_relative() => Ok(base.join(p)),
        _ => Ok(p.to_owned()),
    }
}

/// Check the version, then deserialise every field.
fn parse(text: &str, file: Option<&Path>) -> Result<Config, ConfigError> {
    let probe: VersionProbe =
        toml::from_str(text).map_err(|e| parse_error(text, file, None, &e))?;
    match probe.config_version {
        None => {
            return Err(ConfigError::MissingVersion {
                file: file.map(Path::to_owned),
            });
        }
        Some(toml::Value::Integer(v)) if v == i64::from(SUPPORTED_VERSION) => {}
        Some(other) => {
            return Err(ConfigError::UnsupportedVersion {
                file: file.map(Path::to_owned),
                found: other.to_string(),
            });
        }
    }
    let de = toml::Deserializer::parse(text).map_err(|e| parse_error(text, file, None, &e))?;
    serde_path_to_error::deserialize(de).map_err(|e| {
        let field = e.path().to_string();
        let field = (field != ".").then_some(field);
        parse_error(text, file, field, e.inner())
    })
}

fn parse_error(
    text: &str,
    file: Option<&Path>,
    field: Option<String>,
    e: &toml::de::Error,
) -> ConfigError {
    let (line, column) = match e.span() {
        Some(span) => {
            let (l, c) = line_column(text, span.start);
            (Some(l), Some(c))
        }
        None => (None, None),
    };
    let message = match e.message().trim_end() {
        // The parser gives this one no position.
        "recursion limit" => {
            "nested too deeply (keys, tables or arrays past the TOML parser's recursion limit)"
                .to_owned()
        }
        m => m.to_owned(),
    };
    ConfigError::Parse {
        file: file.map(Path::to_owned),
        field,
        line,
        column,
        message,
    }
}

/// 1-based line and column (in characters) of byte `offset` in `text`.
fn line_column(text: &str, offset: usize) -> (usize, usize) {
    let mut end = offset.min(text.len());
    while !text.is_char_boundary(end) {
        end -= 1;
    }
    let before = text.get(..end).unwrap_or_default();
    let line = before.matches('\n').count() + 1;
    let line_start = before.rfind('\n').map_or(0, |i| i + 1);
    let column = before.get(line_start..).unwrap_or_default().chars().count() + 1;
    (line, column)
}
