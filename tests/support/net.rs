//! A network of real `mimix run` processes on loopback (the insecure
//! direct transport), each on a free port with its own data directory in a
//! temporary directory. Every process is killed when its [`NodeProc`] is
//! dropped, also when a test fails; its log is then printed.

use std::fs;
use std::io::{Read, Write};
use std::net::{TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::time::{Duration, Instant};

use mimix::transport::form::encode_packet_form;

/// The `mimix` binary under test.
pub const MIMIX: &str = env!("CARGO_BIN_EXE_mimix");

/// How long a node gets to start or stop.
pub const START_TIMEOUT: Duration = Duration::from_secs(30);

/// The operator's From: of the exit nodes.
pub const EXIT_FROM: &str = "Anonymous Test Remailer <remailer@mix.example>";

/// A free TCP port on 127.0.0.1 (bound, then released).
pub fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

/// Calls `f` every `every` until it returns `Some`; panics after `timeout`
/// naming `what`.
pub fn wait_until<T>(
    timeout: Duration,
    every: Duration,
    what: &str,
    mut f: impl FnMut() -> Option<T>,
) -> T {
    let start = Instant::now();
    loop {
        if let Some(v) = f() {
            return v;
        }
        assert!(
            start.elapsed() < timeout,
            "timed out after {timeout:?} waiting for {what}"
        );
        std::thread::sleep(every);
    }
}

/// One HTTP/1.1 exchange with 127.0.0.1:`port` on a fresh connection.
/// Returns the status and body, or `None` if the connection failed.
pub fn http(port: u16, request: &[u8]) -> Option<(u16, String)> {
    let mut s = TcpStream::connect(("127.0.0.1", port)).ok()?;
    s.set_read_timeout(Some(Duration::from_secs(30))).ok()?;
    s.set_write_timeout(Some(Duration::from_secs(30))).ok()?;
    s.write_all(request).ok()?;
    let mut raw = Vec::new();
    s.read_to_end(&mut raw).ok()?;
    let text = String::from_utf8_lossy(&raw).into_owned();
    let (head, body) = text.split_once("\r\n\r\n")?;
    let status = head.split(' ').nth(1)?.parse().ok()?;
    Some((status, body.to_owned()))
}

/// `GET /remailer-conf.txt`: the body if the answer is 200.
pub fn get_conf(port: u16) -> Option<String> {
    let req = format!(
        "GET /remailer-conf.txt HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\nConnection: close\r\n\r\n"
    );
    match http(port, req.as_bytes())? {
        (200, body) => Some(body),
        _ => None,
    }
}

/// Posts an armoured packet as the reference sender does; returns the
/// status and body, or `None` if the connection failed.
pub fn post_packet(port: u16, armoured: &str) -> Option<(u16, String)> {
    let body = encode_packet_form(armoured);
    let req = format!(
        "POST /collector.py/msg HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\n\
         Content-Type: application/x-www-form-urlencoded\r\n\
         Content-Length: {}\r\nConnection: close\r\n\r\n{body}",
        body.len()
    );
    http(port, req.as_bytes())
}

/// Runs `mimix` with `args` to completion.
pub fn mimix(args: &[&str]) -> Output {
    Command::new(MIMIX)
        .args(args)
        .env("RUST_LOG", "warn")
        .stdin(Stdio::null())
        .output()
        .unwrap()
}

/// One node: its config, its log, and the process while it runs.
pub struct NodeProc {
    /// The remailer's name.
    pub name: String,
    /// Its HTTP port on 127.0.0.1.
    pub port: u16,
    /// Its config file.
    pub config: PathBuf,
    /// Its data directory.
    pub data_dir: PathBuf,
    log: PathBuf,
    child: Option<Child>,
}

impl NodeProc {
    /// A node that is not started yet; its stderr goes to `log`. `port` is
    /// 0 for nodes not listening on TCP (the Tor transport).
    pub fn new(name: &str, port: u16, config: PathBuf, data_dir: PathBuf, log: PathBuf) -> Self {
        Self {
            name: name.to_owned(),
            port,
            config,
            data_dir,
            log,
            child: None,
        }
    }

    /// The process id while it runs.
    pub fn pid(&self) -> Option<u32> {
        self.child.as_ref().map(Child::id)
    }

    /// Panics with the log if the process has exited.
    pub fn assert_running(&mut self) {
        if let Some(status) = self.child.as_mut().and_then(|c| c.try_wait().unwrap()) {
            panic!(
                "node {} exited with {status}:\n{}",
                self.name,
                self.log_text()
            );
        }
    }

    /// Its base URL.
    pub fn url(&self) -> String {
        format!("http://127.0.0.1:{}", self.port)
    }

    /// Starts `mimix run` (its stderr appended to the log) without waiting.
    pub fn spawn(&mut self) {
        self.spawn_env(&[]);
    }

    /// [`spawn`](Self::spawn) with these environment variables set.
    pub fn spawn_env(&mut self, env: &[(&str, &Path)]) {
        assert!(self.child.is_none(), "{} is already running", self.name);
        let log = fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(&self.log)
            .unwrap();
        let child = Command::new(MIMIX)
            .arg("run")
            .arg("--config")
            .arg(&self.config)
            .env_remove("RUST_LOG")
            .envs(env.iter().copied())
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(log)
            .spawn()
            .unwrap();
        self.child = Some(child);
    }

    /// Waits until the node serves its remailer-conf.
    pub fn wait_ready(&mut self) -> String {
        let start = Instant::now();
        loop {
            if let Some(conf) = get_conf(self.port) {
                return conf;
            }
            if let Some(status) = self.child.as_mut().and_then(|c| c.try_wait().unwrap()) {
                panic!(
                    "node {} exited with {status} while starting:\n{}",
                    self.name,
                    self.log_text()
                );
            }
            assert!(
                start.elapsed() < START_TIMEOUT,
                "timed out after {START_TIMEOUT:?} waiting for node {} to serve its conf:\n{}",
                self.name,
                self.log_text()
            );
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    /// Starts the node and waits until it serves its remailer-conf.
    pub fn start(&mut self) -> String {
        self.spawn();
        self.wait_ready()
    }

    /// SIGKILL: the node dies at once, wherever it is.
    pub fn kill(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }

    /// SIGTERM, then waits for a clean exit (SIGKILL and a panic after
    /// [`START_TIMEOUT`]).
    pub fn terminate(&mut self) {
        let Some(mut c) = self.child.take() else {
            return;
        };
        let sent = Command::new("kill")
            .args(["-TERM", &c.id().to_string()])
            .status()
            .unwrap();
        assert!(sent.success(), "kill -TERM {} failed", c.id());
        let start = Instant::now();
        loop {
            if let Some(status) = c.try_wait().unwrap() {
                assert!(
                    status.success(),
                    "node {} exited with {status} after SIGTERM:\n{}",
                    self.name,
                    self.log_text()
                );
                return;
            }
            if start.elapsed() > START_TIMEOUT {
                let _ = c.kill();
                let _ = c.wait();
                panic!(
                    "node {} did not stop within {START_TIMEOUT:?} of SIGTERM:\n{}",
                    self.name,
                    self.log_text()
                );
            }
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    /// Whether the process runs.
    pub fn running(&self) -> bool {
        self.child.is_some()
    }

    /// `mimix status --json` (live from a running node; exact counters
    /// from the store when it is stopped).
    pub fn status(&self) -> serde_json::Value {
        let config = self.config.to_str().unwrap();
        let out = mimix(&["status", "--json", "--config", config]);
        assert!(
            out.status.success(),
            "mimix status for {} failed: {}",
            self.name,
            String::from_utf8_lossy(&out.stderr)
        );
        serde_json::from_slice(&out.stdout).unwrap()
    }

    /// Stops the node (SIGTERM) and reads its status from the store.
    pub fn stopped_status(&mut self) -> serde_json::Value {
        self.terminate();
        let s = self.status();
        assert_eq!(
            s["running"], false,
            "status of {} read from the store",
            self.name
        );
        s
    }

    /// The node's log so far (its last 100 lines).
    pub fn log_text(&self) -> String {
        let text = fs::read_to_string(&self.log).unwrap_or_default();
        let lines: Vec<&str> = text.lines().collect();
        lines[lines.len().saturating_sub(100)..].join("\n")
    }
}

impl Drop for NodeProc {
    fn drop(&mut self) {
        self.kill();
        if std::thread::panicking() {
            eprintln!("--- log of node {} ---\n{}", self.name, self.log_text());
        }
    }
}

/// A counter from a status document (0 when absent).
pub fn counter(status: &serde_json::Value, name: &str) -> u64 {
    status["counters"][name].as_u64().unwrap_or(0)
}

/// Node roles of a network: name and whether it is an exit.
pub type Role<'a> = (&'a str, bool);

/// A network of nodes, their remailer-confs as files, and a directory for
/// the test's own files. Dropping it kills every node.
pub struct Network {
    /// The nodes, in the order given.
    pub nodes: Vec<NodeProc>,
    /// The temporary directory holding everything.
    pub root: tempfile::TempDir,
}

impl Network {
    /// Writes the configs of `roles` (exits delivering to 127.0.0.1:
    /// `smtp_port`; nodes making dummies if `dummies`) and starts every node.
    pub fn start(roles: &[Role<'_>], smtp_port: u16, dummies: bool) -> Self {
        Self::start_with(roles, smtp_port, dummies, |_| String::new())
    }

    /// As [`Network::start`], with `tail(name)` appended to each node's
    /// config (extra tables, such as `[admin]`).
    pub fn start_with(
        roles: &[Role<'_>],
        smtp_port: u16,
        dummies: bool,
        tail: impl Fn(&str) -> String,
    ) -> Self {
        let root = tempfile::tempdir().unwrap();
        let ports: Vec<u16> = roles.iter().map(|_| free_port()).collect();
        let directory: Vec<String> = roles
            .iter()
            .zip(&ports)
            .map(|((name, _), port)| {
                format!("{{ name = \"{name}\", address = \"http://127.0.0.1:{port}\" }}")
            })
            .collect();
        let directory = directory.join(", ");
        let mut nodes = Vec::new();
        for ((name, exit), port) in roles.iter().zip(&ports) {
            let data_dir = root.path().join(name);
            let config = root.path().join(format!("{name}.toml"));
            let text = node_config(
                name, &data_dir, *port, *exit, smtp_port, &directory, dummies,
            ) + &tail(name);
            fs::write(&config, text).unwrap();
            nodes.push(NodeProc {
                name: (*name).to_owned(),
                port: *port,
                config,
                data_dir,
                log: root.path().join(format!("{name}.log")),
                child: None,
            });
        }
        let mut net = Self { nodes, root };
        // One after another: each node's first directory fetch then finds
        // the nodes before it serving (a failed fetch is retried a minute
        // later, longer than a test waits).
        for n in &mut net.nodes {
            n.spawn();
            n.wait_ready();
        }
        net.save_confs();
        net
    }

    /// Fetches every node's current remailer-conf into `<root>/<name>.conf`.
    pub fn save_confs(&self) {
        for n in &self.nodes {
            let conf = get_conf(n.port)
                .unwrap_or_else(|| panic!("node {} does not serve its conf", n.name));
            fs::write(self.conf_path(&n.name), conf).unwrap();
        }
    }

    fn conf_path(&self, name: &str) -> PathBuf {
        self.root.path().join(format!("{name}.conf"))
    }

    /// The node called `name`.
    pub fn node(&mut self, name: &str) -> &mut NodeProc {
        self.nodes
            .iter_mut()
            .find(|n| n.name == name)
            .unwrap_or_else(|| panic!("no node {name}"))
    }

    /// `--conf` arguments for every node.
    fn conf_args(&self) -> Vec<String> {
        self.nodes
            .iter()
            .flat_map(|n| {
                [
                    "--conf".to_owned(),
                    self.conf_path(&n.name).display().to_string(),
                ]
            })
            .collect()
    }

    /// `mimix send --insecure-direct` of a message file (or a dummy when
    /// `None`) through `chain`; returns its JSON answer, panicking on failure.
    pub fn send(&self, chain: &[&str], message: Option<&Path>) -> serde_json::Value {
        self.send_with(chain, message, &[]).0
    }

    /// [`Network::send`] with more `mimix send` arguments (such as
    /// `--gzip`); returns the JSON answer and what the command wrote to
    /// standard error.
    pub fn send_with(
        &self,
        chain: &[&str],
        message: Option<&Path>,
        extra: &[&str],
    ) -> (serde_json::Value, String) {
        let mut args = vec![
            "send".to_owned(),
            "--insecure-direct".to_owned(),
            "--json".to_owned(),
        ];
        args.extend(self.conf_args());
        args.push("--chain".into());
        args.push(chain.join(","));
        match message {
            Some(m) => args.extend(["--message".to_owned(), m.display().to_string()]),
            None => args.push("--dummy".into()),
        }
        args.extend(extra.iter().map(|a| (*a).to_owned()));
        let args: Vec<&str> = args.iter().map(String::as_str).collect();
        let out = mimix(&args);
        let stderr = String::from_utf8_lossy(&out.stderr).into_owned();
        assert!(
            out.status.success(),
            "mimix send through {chain:?} failed: {stderr}"
        );
        (serde_json::from_slice(&out.stdout).unwrap(), stderr)
    }

    /// `mimix packet build` of a message (or a dummy) through `chain` into
    /// `out`; returns the packet files.
    pub fn build(&self, chain: &[&str], message: Option<&Path>, out: &Path) -> Vec<PathBuf> {
        let mut args = vec!["packet".to_owned(), "build".to_owned()];
        args.extend(self.conf_args());
        args.push("--chain".into());
        args.push(chain.join(","));
        match message {
            Some(m) => args.extend(["--message".to_owned(), m.display().to_string()]),
            None => args.push("--dummy".into()),
        }
        args.extend(["--out".to_owned(), out.display().to_string()]);
        let args: Vec<&str> = args.iter().map(String::as_str).collect();
        let out = mimix(&args);
        assert!(
            out.status.success(),
            "mimix packet build through {chain:?} failed: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        let answer: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
        answer["files"]
            .as_array()
            .unwrap()
            .iter()
            .map(|f| PathBuf::from(f.as_str().unwrap()))
            .collect()
    }
}

/// A node's config: the direct transport, 1 s pool rounds releasing
/// everything, 2048-bit keys, fast retries.
fn node_config(
    name: &str,
    data_dir: &Path,
    port: u16,
    exit: bool,
    smtp_port: u16,
    directory: &str,
    dummies: bool,
) -> String {
    let transport = format!(
        "kind = \"direct\"\nlisten = \"127.0.0.1:{port}\"\nconnect_timeout = \"5s\"\nrequest_timeout = \"20s\""
    );
    config_toml(
        name, data_dir, exit, smtp_port, directory, dummies, &transport, "",
    )
}

/// A test node's config with the given `[transport]` body and text
/// appended at the end (e.g. a `[tor]` table): 1 s pool rounds releasing
/// everything, 2048-bit keys, fast retries, mail to the sink at
/// `smtp_port` from [`EXIT_FROM`].
#[allow(clippy::too_many_arguments)]
pub fn config_toml(
    name: &str,
    data_dir: &Path,
    exit: bool,
    smtp_port: u16,
    directory: &str,
    dummies: bool,
    transport: &str,
    tail: &str,
) -> String {
    format!(
        r#"config_version = 1

[node]
name = "{name}"
data_dir = "{data_dir}"
smtp_exit = {exit}
log = "info"

[transport]
{transport}

[pool]
interval = "1s"
min = 0
rate = 1.0

[dummies]
enabled = {dummies}

[keys]
bits = 2048

[outbound]
retry_initial = "1s"
retry_max = "2s"

[exit.policy]
from = "{EXIT_FROM}"

[exit.smtp]
host = "127.0.0.1"
port = {smtp_port}
connect_timeout = "5s"
command_timeout = "10s"
session_timeout = "20s"

[exit.retry]
initial = "1s"
max = "2s"

[directory]
remailers = [ {directory} ]

# Exact counters are checked: no pings at random times.
[pinger]
enabled = false

{tail}"#,
        data_dir = data_dir.display(),
    )
}

/// A message with identifying headers the exit's policy must remove.
pub fn message(subject: &str, body: &str) -> String {
    format!(
        "From: Real Name <real.sender@home.example>\r\n\
To: Alice <alice@example.org>\r\n\
Subject: {subject}\r\n\
X-Mailer: Identifying Client 1.0\r\n\
Received: from laptop.home.example (192.0.2.7)\r\n\
Message-ID: <leak-123@laptop.home.example>\r\n\
Content-Type: text/plain; charset=utf-8\r\n\
\r\n\
{body}"
    )
}

/// Checks the exit's header policy on a [`message`] as delivered.
pub fn assert_policed(m: &super::smtp::Received, subject: &str) {
    let head = m.head();
    assert!(
        head.starts_with(&format!("From: {EXIT_FROM}\r\n")),
        "the operator's From replaces the sender's:\n{head}"
    );
    assert!(
        head.contains("\r\nTo: Alice <alice@example.org>\r\n"),
        "{head}"
    );
    assert!(
        head.contains(&format!("\r\nSubject: {subject}\r\n")),
        "{head}"
    );
    assert!(
        head.contains("\r\nComments: "),
        "a Comments header:\n{head}"
    );
    assert!(head.contains("\r\nDate: "), "{head}");
    assert!(
        head.contains("@mix.example>\r\n"),
        "own Message-ID:\n{head}"
    );
    for gone in [
        "real.sender",
        "home.example",
        "X-Mailer",
        "Identifying Client",
        "Received",
        "192.0.2.7",
        "leak-123",
    ] {
        assert!(
            !head.contains(gone),
            "{gone:?} reached the recipient:\n{head}"
        );
    }
    assert_eq!(m.mail_from, "remailer@mix.example");
    assert_eq!(m.rcpt_tos, ["alice@example.org"]);
}
