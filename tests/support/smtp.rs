//! A real, independent SMTP server for the tests: Python's `aiosmtpd`
//! (Debian package `python3-aiosmtpd`), started per test on a free loopback
//! port by `tests/support/smtp_sink.py`.

use std::io::{BufRead, BufReader};
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant, SystemTime};

/// The interpreter to run the sink with: `$MIMIX_TEST_PYTHON`, else the
/// first of `python3`, `/usr/bin/python3` that can import aiosmtpd.
pub fn python() -> String {
    let mut candidates = Vec::new();
    if let Ok(p) = std::env::var("MIMIX_TEST_PYTHON") {
        candidates.push(p);
    }
    candidates.extend(["python3".to_owned(), "/usr/bin/python3".to_owned()]);
    for p in &candidates {
        let ok = Command::new(p)
            .args(["-c", "import aiosmtpd"])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .status()
            .is_ok_and(|s| s.success());
        if ok {
            return p.clone();
        }
    }
    panic!("no python3 with aiosmtpd found (install python3-aiosmtpd)");
}

/// A running aiosmtpd, killed on drop (also when a test fails).
pub struct SmtpSink {
    child: Child,
    /// The port it listens on, on 127.0.0.1.
    pub port: u16,
    dir: tempfile::TempDir,
}

/// One message as the server stored it.
#[derive(Debug, Clone)]
pub struct Received {
    /// The envelope sender.
    pub mail_from: String,
    /// The envelope recipients the server accepted.
    pub rcpt_tos: Vec<String>,
    /// The client's EHLO (or HELO) name.
    pub helo: String,
    /// Whether the session used EHLO (false: HELO).
    pub esmtp: bool,
    /// Connections the server had accepted when this message arrived.
    pub connections: u64,
    /// The message bytes, dot-stuffing undone.
    pub content: Vec<u8>,
}

impl Received {
    /// The header block, up to and including the CRLF of its last line.
    pub fn head(&self) -> String {
        let end = self.split();
        String::from_utf8(self.content[..end + 2].to_vec()).unwrap()
    }

    /// The body: everything after the blank line.
    pub fn body(&self) -> &[u8] {
        &self.content[self.split() + 4..]
    }

    fn split(&self) -> usize {
        self.content
            .windows(4)
            .position(|w| w == b"\r\n\r\n")
            .unwrap_or_else(|| panic!("no end of headers in a delivered message"))
    }
}

impl SmtpSink {
    /// Starts the server and waits for its port.
    pub fn start() -> Self {
        Self::start_args(&[])
    }

    /// Starts a server that answers every EHLO with `reply` (HELO works).
    pub fn refusing_ehlo(reply: &str) -> Self {
        Self::start_args(&[reply])
    }

    fn start_args(args: &[&str]) -> Self {
        let dir = tempfile::tempdir().unwrap();
        let script = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("tests/support/smtp_sink.py");
        let mut child = Command::new(python())
            .arg(&script)
            .arg(dir.path())
            .args(args)
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .spawn()
            .unwrap();
        let stdout = child.stdout.take().unwrap();
        let mut line = String::new();
        let read = BufReader::new(stdout).read_line(&mut line);
        let mut sink = Self {
            child,
            port: 0,
            dir,
        };
        read.unwrap();
        sink.port = line
            .trim()
            .parse()
            .unwrap_or_else(|_| panic!("bad port line {line:?}"));
        sink
    }

    /// The messages received so far, in arrival order.
    pub fn received(&self) -> Vec<Received> {
        self.received_with_times()
            .into_iter()
            .map(|(r, _)| r)
            .collect()
    }

    /// The messages received so far with the times the server stored them.
    pub fn received_with_times(&self) -> Vec<(Received, SystemTime)> {
        let mut names: Vec<PathBuf> = std::fs::read_dir(self.dir.path())
            .unwrap()
            .map(|e| e.unwrap().path())
            .filter(|p| p.extension().is_some_and(|x| x == "eml"))
            .collect();
        names.sort();
        names
            .into_iter()
            .map(|eml| {
                let meta: serde_json::Value =
                    serde_json::from_slice(&std::fs::read(eml.with_extension("json")).unwrap())
                        .unwrap();
                let text = |k: &str| meta[k].as_str().unwrap().to_owned();
                let stored = std::fs::metadata(&eml).unwrap().modified().unwrap();
                let received = Received {
                    mail_from: text("mail_from"),
                    helo: text("helo"),
                    esmtp: meta["esmtp"].as_bool().unwrap(),
                    connections: meta["connections"].as_u64().unwrap(),
                    rcpt_tos: meta["rcpt_tos"]
                        .as_array()
                        .unwrap()
                        .iter()
                        .map(|v| v.as_str().unwrap().to_owned())
                        .collect(),
                    content: std::fs::read(&eml).unwrap(),
                };
                (received, stored)
            })
            .collect()
    }

    /// Waits until at least `n` messages have arrived; panics after
    /// `timeout`.
    pub fn wait_for(&self, n: usize, timeout: Duration) -> Vec<Received> {
        let start = Instant::now();
        loop {
            let got = self.received();
            if got.len() >= n {
                return got;
            }
            assert!(
                start.elapsed() < timeout,
                "timed out after {timeout:?} waiting for {n} messages at the SMTP sink ({} arrived)",
                got.len()
            );
            std::thread::sleep(Duration::from_millis(100));
        }
    }
}

impl Drop for SmtpSink {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}
