//! A real, independent news server for the tests: INN (Debian package
//! `inn2`), started per test in its own temporary directory on a free
//! loopback port by `tests/support/inn_server.py`, and a small blocking
//! NNTP reader to fetch articles back from it. The tests must run as root
//! (as CI does): the script sets the spool up for the `news` user that
//! innd switches to.

use std::io::{BufRead, BufReader, Write};
use std::net::TcpStream;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

const INND: &str = "/usr/lib/news/bin/innd";

/// What the server is set up with.
#[derive(Debug, Clone, Default)]
pub struct InnOptions {
    /// Groups to create: name and whether posting is allowed.
    pub groups: Vec<(String, bool)>,
    /// Users that must authenticate: name, password, INN access letters
    /// (`RP` read and post, `R` read only). Empty: no authentication.
    pub users: Vec<(String, String, String)>,
    /// Offer STARTTLS and an implicit-TLS port, with a self-signed
    /// certificate for `localhost`.
    pub tls: bool,
    /// Listen on this port (0: one the kernel picks).
    pub port: u16,
}

impl InnOptions {
    /// Posting allowed in each of `groups`, no authentication, no TLS.
    pub fn groups(groups: &[&str]) -> Self {
        Self {
            groups: groups.iter().map(|g| ((*g).to_owned(), true)).collect(),
            ..Self::default()
        }
    }
}

/// A running innd, killed on drop (also when a test fails).
pub struct InnServer {
    child: Option<Child>,
    /// The plain NNTP port on 127.0.0.1 (innd; `MODE READER` reaches nnrpd).
    pub port: u16,
    /// The implicit-TLS port on 127.0.0.1, with [`InnOptions::tls`].
    pub tls_port: Option<u16>,
    /// A user allowed to read, for [`InnServer::reader`].
    reader_login: Option<(String, String)>,
    dir: tempfile::TempDir,
    /// How long the server took from spawn to its first greeting.
    pub startup: Duration,
}

impl InnServer {
    /// Starts the server and waits until it greets a client.
    pub fn start(options: &InnOptions) -> Self {
        assert!(
            Path::new(INND).exists(),
            "INN is not installed (apt-get install inn2)"
        );
        let began = Instant::now();
        let dir = tempfile::tempdir().unwrap();
        let script = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("tests/support/inn_server.py");
        let mut cmd = Command::new(super::smtp::python());
        cmd.arg(&script).arg(dir.path());
        for (g, post) in &options.groups {
            cmd.arg("--group")
                .arg(format!("{g}={}", if *post { "y" } else { "n" }));
        }
        for (u, p, a) in &options.users {
            cmd.arg("--user").arg(format!("{u}:{p}:{a}"));
        }
        if options.tls {
            cmd.arg("--tls");
        }
        if options.port != 0 {
            cmd.arg("--port").arg(options.port.to_string());
        }
        let mut child = cmd.stdout(Stdio::piped()).spawn().unwrap();
        let mut out = BufReader::new(child.stdout.take().unwrap());
        let mut port_line = |what: &str| {
            let mut line = String::new();
            out.read_line(&mut line).unwrap();
            line.trim()
                .parse::<u16>()
                .unwrap_or_else(|_| panic!("inn_server.py printed no {what} port: {line:?}"))
        };
        let port = port_line("NNTP");
        let tls_port = options.tls.then(|| port_line("TLS"));
        let reader_login = options
            .users
            .iter()
            .find(|(_, _, a)| a.contains('R'))
            .map(|(u, p, _)| (u.clone(), p.clone()));
        let mut server = Self {
            child: Some(child),
            port,
            tls_port,
            reader_login,
            dir,
            startup: Duration::ZERO,
        };
        drop(NewsReader::connect(port).greeting);
        server.startup = began.elapsed();
        server
    }

    /// The server's directory (configuration, spool, logs).
    pub fn dir(&self) -> &Path {
        self.dir.path()
    }

    /// A reader connection in reader mode, logged in if users are set up.
    pub fn reader(&self) -> NewsReader {
        let mut r = NewsReader::connect(self.port);
        r.mode_reader();
        if let Some((u, p)) = &self.reader_login {
            r.login(u, p);
        }
        r
    }

    /// Stops the server now (SIGKILL) and waits for it to exit.
    pub fn stop(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}

impl Drop for InnServer {
    fn drop(&mut self) {
        self.stop();
    }
}

/// A blocking NNTP reader for checking what the server stored.
pub struct NewsReader {
    io: BufReader<TcpStream>,
    /// The server's greeting line.
    pub greeting: String,
}

impl NewsReader {
    /// Connects and reads the greeting (waiting up to 20 s for it).
    pub fn connect(port: u16) -> Self {
        let stream = TcpStream::connect(("127.0.0.1", port)).unwrap();
        stream
            .set_read_timeout(Some(Duration::from_secs(20)))
            .unwrap();
        let mut r = Self {
            io: BufReader::new(stream),
            greeting: String::new(),
        };
        r.greeting = r.line();
        assert!(r.greeting.starts_with("20"), "greeting {:?}", r.greeting);
        r
    }

    fn line(&mut self) -> String {
        let mut line = String::new();
        self.io.read_line(&mut line).unwrap();
        line
    }

    /// Sends a command and returns the reply line.
    pub fn command(&mut self, cmd: &str) -> String {
        write!(self.io.get_mut(), "{cmd}\r\n").unwrap();
        self.line()
    }

    /// `MODE READER`.
    pub fn mode_reader(&mut self) {
        let r = self.command("MODE READER");
        assert!(r.starts_with("20"), "MODE READER: {r:?}");
    }

    /// `AUTHINFO USER/PASS`.
    pub fn login(&mut self, user: &str, pass: &str) {
        let r = self.command(&format!("AUTHINFO USER {user}"));
        assert!(r.starts_with("381"), "AUTHINFO USER: {r:?}");
        let r = self.command(&format!("AUTHINFO PASS {pass}"));
        assert!(r.starts_with("281"), "AUTHINFO PASS: {r:?}");
    }

    /// `ARTICLE <spec>` (a Message-ID in angle brackets or a number in the
    /// current group): the article with CRLF line ends, dot-stuffing
    /// undone, or `None` for a 423/430.
    pub fn article(&mut self, spec: &str) -> Option<Vec<u8>> {
        let r = self.command(&format!("ARTICLE {spec}"));
        if r.starts_with("423") || r.starts_with("430") {
            return None;
        }
        assert!(r.starts_with("220"), "ARTICLE: {r:?}");
        let mut article = Vec::new();
        loop {
            let mut line = Vec::new();
            self.io.read_until(b'\n', &mut line).unwrap();
            assert!(line.ends_with(b"\r\n"), "truncated article");
            if line == b".\r\n" {
                return Some(article);
            }
            article.extend_from_slice(line.strip_prefix(b".").unwrap_or(&line));
        }
    }

    /// `GROUP name`: the article count, first and last numbers.
    pub fn group(&mut self, name: &str) -> (u64, u64, u64) {
        let r = self.command(&format!("GROUP {name}"));
        let f: Vec<u64> = r
            .split(' ')
            .skip(1)
            .take(3)
            .map(|n| n.parse().unwrap())
            .collect();
        assert!(r.starts_with("211") && f.len() == 3, "GROUP: {r:?}");
        (f[0], f[1], f[2])
    }
}

/// The body of an article: everything after the first blank line.
pub fn body(article: &[u8]) -> &[u8] {
    let at = article
        .windows(4)
        .position(|w| w == b"\r\n\r\n")
        .expect("no end of headers");
    &article[at + 4..]
}

/// The value of a header field (first occurrence, unfolded lines only).
pub fn header<'a>(article: &'a [u8], name: &str) -> Option<&'a str> {
    let head = std::str::from_utf8(&article[..article.len() - body(article).len()]).ok()?;
    head.lines().find_map(|l| {
        let (k, v) = l.split_once(':')?;
        k.eq_ignore_ascii_case(name).then(|| v.trim())
    })
}
