//! Where the node's log lines go and what they look like.
//!
//! [`init`] installs the process's `tracing` subscriber:
//!
//! * **Standard error**, always, in one of three forms, chosen at start:
//!   on a terminal with timestamps and colours; redirected (a file, a
//!   pipe) with timestamps and no colours; and **under systemd**, when
//!   `JOURNAL_STREAM` names standard error (as `systemd.exec(5)` says to
//!   check), without timestamps or colours and with each line prefixed by
//!   its syslog priority (`<3>` error, `<4>` warning, `<6>` info, `<7>`
//!   debug and trace, as `sd-daemon(3)` describes), so that the journal
//!   records the priority (`journalctl -p warning`) and its own time.
//!   See [`format`].
//! * **A log file**, when `node.log_file` is set: appended, created 0600,
//!   with timestamps. [`Logging::reopen`] opens it again (after
//!   `logrotate` moved it away: the node does this on SIGHUP).
//!
//! The filter is `node.log` (an `EnvFilter`), or `RUST_LOG`, which wins;
//! [`Logging::set_filter`] changes it while the node runs. The storage
//! engine's info lines are always filtered out, and [`noise`] rewords or
//! lowers a few misleading Arti messages.

pub mod format;
mod noise;

use std::path::{Path, PathBuf};
use std::sync::Arc;

use tracing_subscriber::layer::SubscriberExt;
use tracing_subscriber::util::SubscriberInitExt;
use tracing_subscriber::{EnvFilter, Registry, reload};

pub use format::{LogFile, Output};
pub use noise::ArtiNoise;

/// Directives always placed before the configured filter.
const BASE_DIRECTIVES: &str = "fjall=warn,lsm_tree=warn";

/// Errors setting up or changing the logs.
#[derive(Debug, thiserror::Error)]
pub enum LoggingError {
    /// The filter is not valid `EnvFilter` syntax.
    #[error("not a valid log filter {filter:?}: {source}")]
    Filter {
        /// The filter given.
        filter: String,
        /// Why it is not valid.
        source: tracing_subscriber::filter::ParseError,
    },
    /// The log file could not be opened.
    #[error("opening log file {path}: {source}")]
    Open {
        /// The file.
        path: PathBuf,
        /// The cause.
        source: std::io::Error,
    },
    /// Another subscriber is already installed in this process.
    #[error("installing the logger: {0}")]
    Install(#[from] tracing_subscriber::util::TryInitError),
    /// The running filter could not be replaced.
    #[error("changing the log filter: {0}")]
    Reload(#[from] reload::Error),
}

/// How to log.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct LogSettings {
    /// `EnvFilter` directives (`node.log`).
    pub filter: String,
    /// `RUST_LOG`, read by the caller, which wins over `filter` when set
    /// (also after [`Logging::set_filter`]).
    pub env_filter: Option<String>,
    /// A file to append the log to as well (`node.log_file`).
    pub file: Option<PathBuf>,
    /// Whether the node joins a small private Tor network, where Arti's
    /// warnings about too few relays are expected and lowered to debug.
    pub small_network: bool,
}

/// What a filter change did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum FilterChange {
    /// The filter is now the one given.
    Set,
    /// `RUST_LOG` is set and wins: the filter was left alone.
    EnvWins,
}

/// The installed logger: the handles that change it while it runs.
#[derive(Debug)]
pub struct Logging {
    filter: reload::Handle<EnvFilter, Registry>,
    /// Whether `RUST_LOG` chose the filter.
    from_env: bool,
    file: Option<Arc<LogFile>>,
    output: Output,
}

/// Installs the logger for this process (see the module documentation).
pub fn init(settings: &LogSettings) -> Result<Logging, LoggingError> {
    let env = settings
        .env_filter
        .as_deref()
        .filter(|v| !v.trim().is_empty());
    let from_env = env.is_some();
    let filter = match env {
        Some(directives) => parse_filter(directives)?,
        None => parse_filter(&settings.filter)?,
    };
    let (filter, handle) = reload::Layer::new(filter);
    let file = settings
        .file
        .as_deref()
        .map(LogFile::open)
        .transpose()?
        .map(Arc::new);
    let output = Output::detect();
    tracing_subscriber::registry()
        .with(filter)
        .with(ArtiNoise::new(settings.small_network))
        .with(format::stderr_layer(output))
        .with(file.clone().map(format::file_layer))
        .try_init()?;
    Ok(Logging {
        filter: handle,
        from_env,
        file,
        output,
    })
}

/// The filter for `directives`, after the base directives.
pub fn parse_filter(directives: &str) -> Result<EnvFilter, LoggingError> {
    let all = match directives.trim() {
        "" => BASE_DIRECTIVES.to_owned(),
        d => format!("{BASE_DIRECTIVES},{d}"),
    };
    EnvFilter::builder()
        .parse(&all)
        .map_err(|source| LoggingError::Filter {
            filter: directives.to_owned(),
            source,
        })
}

impl LogSettings {
    /// Logging to standard error only with `filter`, `RUST_LOG` winning:
    /// what the commands other than `mimix run` use.
    pub fn stderr(filter: &str) -> Self {
        Self {
            filter: filter.to_owned(),
            env_filter: std::env::var("RUST_LOG").ok(),
            ..Self::default()
        }
    }
}

impl Logging {
    /// Replaces the filter with `directives`, unless `RUST_LOG` chose it.
    pub fn set_filter(&self, directives: &str) -> Result<FilterChange, LoggingError> {
        if self.from_env {
            return Ok(FilterChange::EnvWins);
        }
        let filter = parse_filter(directives)?;
        self.filter.reload(filter)?;
        Ok(FilterChange::Set)
    }

    /// Opens the log file again at `path` (the same path after a rotation,
    /// or a new one; `None` stops writing it). Returns whether a file is
    /// written; `false` with `Some(path)` means there was no log file at
    /// start, which only a restart adds.
    pub fn reopen(&self, path: Option<&Path>) -> Result<bool, LoggingError> {
        match &self.file {
            Some(file) => {
                file.reopen(path)?;
                Ok(path.is_some())
            }
            None => Ok(false),
        }
    }

    /// Whether a log file was set up at start.
    pub fn has_file(&self) -> bool {
        self.file.is_some()
    }

    /// How standard error is written.
    pub fn output(&self) -> Output {
        self.output
    }
}
