//! The shapes of a log line: on a terminal, redirected, for the journal,
//! and in the log file.
//!
//! ```text
//! terminal, redirected, file:  2026-12-01T14:04:22.907931Z  INFO mimix::node: mimix node started: ...
//! journal:                     <6>INFO mimix::node: mimix node started: ...
//! ```
//!
//! In the journal form every line of a multi-line message carries the
//! priority, so the journal does not record the continuation lines at the
//! default priority.

use std::fs::{File, OpenOptions};
use std::io::{self, IsTerminal, Write};
use std::os::unix::fs::{MetadataExt, OpenOptionsExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};

use tracing::{Event, Level, Subscriber};
use tracing_subscriber::Layer;
use tracing_subscriber::fmt::format::{self, Format, Full, Writer};
use tracing_subscriber::fmt::{FmtContext, FormatEvent, FormatFields};
use tracing_subscriber::registry::LookupSpan;

use super::LoggingError;

/// How standard error is written.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Output {
    /// A terminal: timestamps and colours.
    Terminal,
    /// A file or a pipe: timestamps, no colours.
    Plain,
    /// The systemd journal: priority prefixes, no timestamps or colours.
    Journal,
}

impl Output {
    /// Looks at standard error and `JOURNAL_STREAM`.
    pub fn detect() -> Self {
        let journal = std::env::var("JOURNAL_STREAM")
            .ok()
            .is_some_and(|v| names_stderr(&v));
        match (journal, io::stderr().is_terminal()) {
            (true, _) => Self::Journal,
            (false, true) => Self::Terminal,
            (false, false) => Self::Plain,
        }
    }
}

/// Whether `journal_stream` (`<device>:<inode>`, as systemd sets it) is
/// the file standard error is connected to. A child that inherited the
/// variable but had its standard error redirected sees another file.
fn names_stderr(journal_stream: &str) -> bool {
    let Some((dev, ino)) = journal_stream.split_once(':') else {
        return false;
    };
    let (Ok(dev), Ok(ino)) = (dev.trim().parse::<u64>(), ino.trim().parse::<u64>()) else {
        return false;
    };
    use std::os::fd::AsFd;
    let Ok(fd) = io::stderr().as_fd().try_clone_to_owned() else {
        return false;
    };
    File::from(fd)
        .metadata()
        .is_ok_and(|m| m.dev() == dev && m.ino() == ino)
}

/// The syslog priority of a level (`sd-daemon(3)`).
pub fn priority(level: Level) -> u8 {
    match level {
        Level::ERROR => 3,
        Level::WARN => 4,
        Level::INFO => 6,
        Level::DEBUG | Level::TRACE => 7,
    }
}

/// The journal form: the default format without time or colours, each
/// line prefixed with `<priority>`.
#[derive(Debug)]
pub struct JournalFormat {
    inner: Format<Full, ()>,
}

impl Default for JournalFormat {
    fn default() -> Self {
        Self {
            inner: format().without_time().with_ansi(false),
        }
    }
}

fn format() -> Format<Full> {
    format::Format::default()
}

impl<S, N> FormatEvent<S, N> for JournalFormat
where
    S: Subscriber + for<'a> LookupSpan<'a>,
    N: for<'a> FormatFields<'a> + 'static,
{
    fn format_event(
        &self,
        ctx: &FmtContext<'_, S, N>,
        mut writer: Writer<'_>,
        event: &Event<'_>,
    ) -> std::fmt::Result {
        let mut line = String::new();
        self.inner
            .format_event(ctx, Writer::new(&mut line), event)?;
        let prio = priority(*event.metadata().level());
        for (i, l) in line.lines().enumerate() {
            // The level is padded to five characters: drop the padding.
            let l = if i == 0 { l.trim_start() } else { l };
            writeln!(writer, "<{prio}>{l}")?;
        }
        Ok(())
    }
}

/// The layer writing standard error in the form `output` asks for.
pub fn stderr_layer<S>(output: Output) -> Box<dyn Layer<S> + Send + Sync>
where
    S: Subscriber + for<'a> LookupSpan<'a>,
{
    let layer = tracing_subscriber::fmt::layer().with_writer(io::stderr);
    match output {
        Output::Terminal => Box::new(layer.with_ansi(true)),
        Output::Plain => Box::new(layer.with_ansi(false)),
        Output::Journal => Box::new(
            layer
                .with_ansi(false)
                .event_format(JournalFormat::default()),
        ),
    }
}

/// The layer writing the log file.
pub fn file_layer<S>(file: Arc<LogFile>) -> impl Layer<S> + Send + Sync
where
    S: Subscriber + for<'a> LookupSpan<'a>,
{
    tracing_subscriber::fmt::layer()
        .with_ansi(false)
        .with_writer(file)
}

/// The log file: appended to, created with mode 0600, opened again on
/// request (after a rotation). A line that cannot be written is lost; the
/// node does not stop for it.
#[derive(Debug)]
pub struct LogFile {
    file: Mutex<Option<File>>,
}

impl LogFile {
    /// Opens (or creates, 0600) `path` for appending.
    pub fn open(path: &Path) -> Result<Self, LoggingError> {
        Ok(Self {
            file: Mutex::new(Some(open_append(path)?)),
        })
    }

    /// Opens `path` again (`None`: stop writing). On failure the file in
    /// use is kept.
    pub fn reopen(&self, path: Option<&Path>) -> Result<(), LoggingError> {
        let new = path.map(open_append).transpose()?;
        *self.file.lock().unwrap_or_else(|e| e.into_inner()) = new;
        Ok(())
    }
}

impl Write for &LogFile {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        let mut guard = self.file.lock().unwrap_or_else(|e| e.into_inner());
        match guard.as_mut() {
            Some(f) => f.write(buf),
            None => Ok(buf.len()),
        }
    }

    fn flush(&mut self) -> io::Result<()> {
        let mut guard = self.file.lock().unwrap_or_else(|e| e.into_inner());
        guard.as_mut().map_or(Ok(()), Write::flush)
    }
}

/// Opens `path` for appending, creating it with mode 0600; an existing
/// file that others may read is made 0600.
fn open_append(path: &Path) -> Result<File, LoggingError> {
    let err = |source| LoggingError::Open {
        path: PathBuf::from(path),
        source,
    };
    let file = OpenOptions::new()
        .append(true)
        .create(true)
        .mode(0o600)
        .open(path)
        .map_err(err)?;
    let mode = file.metadata().map_err(err)?.permissions().mode();
    if mode & 0o077 != 0 {
        file.set_permissions(std::fs::Permissions::from_mode(0o600))
            .map_err(err)?;
    }
    Ok(file)
}

/// Writes `text` into a `String` sink, for tests of the formats.
#[cfg(test)]
pub(crate) fn capture() -> (Arc<Mutex<String>>, impl Fn() -> Capture + Clone) {
    let sink = Arc::new(Mutex::new(String::new()));
    let s = sink.clone();
    (sink, move || Capture(s.clone()))
}

/// A writer into a shared `String` (tests).
#[cfg(test)]
pub(crate) struct Capture(Arc<Mutex<String>>);

#[cfg(test)]
impl Write for Capture {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        let mut s = self.0.lock().unwrap_or_else(|e| e.into_inner());
        s.push_str(&String::from_utf8_lossy(buf));
        Ok(buf.len())
    }

    fn flush(&mut self) -> io::Result<()> {
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

    use super::*;
    use tracing_subscriber::layer::SubscriberExt;

    #[test]
    fn journal_lines_carry_the_priority_and_no_time() {
        let (sink, make) = capture();
        let layer = tracing_subscriber::fmt::layer()
            .with_writer(make)
            .with_ansi(false)
            .event_format(JournalFormat::default());
        let subscriber = tracing_subscriber::registry().with(layer);
        tracing::subscriber::with_default(subscriber, || {
            tracing::info!(target: "mimix::node", "mimix node started");
            tracing::warn!(target: "tor_dirmgr", "first line\n  second line");
            tracing::error!(target: "mimix", "broken");
            tracing::debug!(target: "mimix", "detail");
        });
        let text = sink.lock().unwrap().clone();
        assert_eq!(
            text,
            "<6>INFO mimix::node: mimix node started\n\
             <4>WARN tor_dirmgr: first line\n\
             <4>  second line\n\
             <3>ERROR mimix: broken\n\
             <7>DEBUG mimix: detail\n"
        );
    }

    #[test]
    fn the_log_file_is_private_appended_and_reopened() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("mimix.log");
        std::fs::write(&path, "old\n").unwrap();
        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o644)).unwrap();
        let log = LogFile::open(&path).unwrap();
        (&log).write_all(b"one\n").unwrap();
        let mode = std::fs::metadata(&path).unwrap().permissions().mode() & 0o777;
        assert_eq!(mode, 0o600);
        assert_eq!(std::fs::read_to_string(&path).unwrap(), "old\none\n");

        // logrotate moves the file away; a reopen starts a new one.
        let rotated = dir.path().join("mimix.log.1");
        std::fs::rename(&path, &rotated).unwrap();
        (&log).write_all(b"two\n").unwrap();
        log.reopen(Some(&path)).unwrap();
        (&log).write_all(b"three\n").unwrap();
        assert_eq!(
            std::fs::read_to_string(&rotated).unwrap(),
            "old\none\ntwo\n"
        );
        assert_eq!(std::fs::read_to_string(&path).unwrap(), "three\n");
        let mode = std::fs::metadata(&path).unwrap().permissions().mode() & 0o777;
        assert_eq!(mode, 0o600, "a new file is created 0600");

        let bad = dir.path().join("no/such/dir/mimix.log");
        let err = log.reopen(Some(&bad)).unwrap_err();
        assert!(err.to_string().contains("no/such/dir"), "{err}");
        (&log).write_all(b"four\n").unwrap();
        assert_eq!(
            std::fs::read_to_string(&path).unwrap(),
            "three\nfour\n",
            "a failed reopen keeps the file in use"
        );
    }

    #[test]
    fn journal_stream_must_name_standard_error() {
        assert!(!names_stderr("not a pair"));
        assert!(!names_stderr("1:x"));
        // Whatever standard error is here, it is not inode 1 of device 1.
        assert!(!names_stderr("1:1"));
        assert_eq!(priority(Level::WARN), 4);
    }
}
