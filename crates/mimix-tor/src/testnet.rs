//! A private Tor network on 127.0.0.1, for tests and local experiments.
//!
//! [`TestNetwork::start`] runs C tor (Debian's `tor` package, which also
//! ships `tor-gencert`): directory authorities and relays that are all
//! Guard, Exit and HSDir, with a 10-second voting schedule. It waits until
//! a consensus lists every node and returns the custom [`TorConfig`] that
//! points Arti at it. There are no C-tor clients or onion services; those
//! are Arti.
//!
//! Everything lives in a fresh temporary directory on free ports; dropping
//! the [`TestNetwork`] kills the tor processes, reaps them and removes the
//! directory. Starting takes 10-30 s, most of it waiting for the first
//! consensus. Fewer than 5 nodes does not work: the onion service never
//! gets introduction points.

mod torrc;

use std::ffi::OsString;
use std::fs;
use std::net::TcpListener;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use tokio::io::AsyncWriteExt;

use self::torrc::{
    Node, consensus_counts, consensus_flags, parse_ed25519, parse_list_fingerprint, parse_v3ident,
};
use crate::{Authority, FallbackRelay, NetworkKind, TorConfig};

/// C tor's onion-service time period on a `TestingTorNetwork`.
const TESTING_HSDIR_INTERVAL: Duration = Duration::from_secs(120 * 60);

/// How often readiness is polled.
const POLL: Duration = Duration::from_millis(200);

/// Errors from starting a test network.
#[derive(Debug, thiserror::Error)]
pub enum TestnetError {
    /// Fewer than one authority, or fewer than 5 nodes in all.
    #[error("a test network needs at least 1 authority and 5 nodes, not {authorities}+{relays}")]
    TooSmall {
        /// Authorities asked for.
        authorities: usize,
        /// Relays asked for.
        relays: usize,
    },
    /// A program could not be started (is the `tor` package installed?).
    #[error("cannot run {}: {source}", program.display())]
    Spawn {
        /// The program.
        program: PathBuf,
        /// The underlying error.
        #[source]
        source: std::io::Error,
    },
    /// A key-generation command failed.
    #[error("{program} failed for {nick}: {detail}")]
    Keygen {
        /// `tor-gencert` or `tor --list-fingerprint`.
        program: &'static str,
        /// The node.
        nick: String,
        /// Exit status and output.
        detail: String,
    },
    /// A file system operation failed.
    #[error("cannot {op} {}: {source}", path.display())]
    Io {
        /// What we were doing.
        op: &'static str,
        /// The path involved.
        path: PathBuf,
        /// The underlying error.
        #[source]
        source: std::io::Error,
    },
    /// No free loopback port could be reserved.
    #[error("cannot reserve a loopback port: {0}")]
    Ports(#[source] std::io::Error),
    /// A tor process exited while the network was starting.
    #[error("tor node {nick} exited ({status}); last log lines:\n{log}")]
    NodeExited {
        /// The node.
        nick: String,
        /// Its exit status.
        status: String,
        /// The end of its log.
        log: String,
    },
    /// No consensus listing every node appeared in time.
    #[error(
        "no consensus with all {expected} nodes after {waited:?} ({listed} listed, {flagged} fully flagged); last consensus:\n{last}"
    )]
    NotReady {
        /// Nodes in the network.
        expected: usize,
        /// How long we waited.
        waited: Duration,
        /// Nodes in the last consensus seen.
        listed: usize,
        /// Nodes with every needed flag in it.
        flagged: usize,
        /// Each node of the last consensus seen, with its flags.
        last: String,
    },
}

/// How to build a test network.
#[derive(Debug, Clone)]
pub struct TestNetConfig {
    /// Directory authorities (also relays). At least 1.
    pub authorities: usize,
    /// Plain relays. Authorities plus relays must be at least 5.
    pub relays: usize,
    /// How long to wait for a consensus listing every node.
    pub ready_timeout: Duration,
    /// The `tor` program.
    pub tor: PathBuf,
    /// The `tor-gencert` program.
    pub tor_gencert: PathBuf,
}

impl Default for TestNetConfig {
    /// 1 authority and 4 relays, 120 s to get ready, programs from `PATH`.
    fn default() -> Self {
        Self {
            authorities: 1,
            relays: 4,
            ready_timeout: Duration::from_secs(120),
            tor: PathBuf::from("tor"),
            tor_gencert: PathBuf::from("tor-gencert"),
        }
    }
}

/// How long the phases of [`TestNetwork::start`] took.
#[derive(Debug, Clone, Copy, Default)]
pub struct StartTimings {
    /// Generating every node's keys.
    pub keygen: Duration,
    /// From launching tor to a consensus listing every node.
    pub consensus: Duration,
}

/// A running private Tor network. Dropping it stops the network and
/// removes its files.
#[derive(Debug)]
pub struct TestNetwork {
    /// The tor processes, killed and reaped on drop.
    children: Vec<(String, Child)>,
    /// The `[tor]` settings for this network (directories unset).
    network: TorConfig,
    /// Start-up timings.
    timings: StartTimings,
    /// The network's files; removed on drop, after the processes are gone.
    dir: tempfile::TempDir,
}

impl TestNetwork {
    /// Generate keys, start every node and wait for a consensus that lists
    /// all of them.
    pub async fn start(config: &TestNetConfig) -> Result<TestNetwork, TestnetError> {
        let (na, nr) = (config.authorities, config.relays);
        if na < 1 || na + nr < 5 {
            return Err(TestnetError::TooSmall {
                authorities: na,
                relays: nr,
            });
        }
        let dir = tempfile::Builder::new()
            .prefix("mimix-testnet-")
            .tempdir()
            .map_err(|source| TestnetError::Io {
                op: "create",
                path: std::env::temp_dir(),
                source,
            })?;
        let ports = free_ports(2 * (na + nr))?;
        let started = Instant::now();
        let keygens = (0..na + nr).map(|i| {
            let authority = i < na;
            let nick = if authority {
                format!("a{i}")
            } else {
                format!("r{}", i - na)
            };
            let node_dir = dir.path().join(&nick);
            let (orport, dirport) = (ports[2 * i], ports[2 * i + 1]);
            async move { make_keys(config, nick, node_dir, orport, dirport, authority).await }
        });
        let nodes = futures::future::try_join_all(keygens).await?;
        let keygen = started.elapsed();

        let mut net = TestNetwork {
            children: Vec::with_capacity(nodes.len()),
            network: TorConfig::default(),
            timings: StartTimings {
                keygen,
                consensus: Duration::ZERO,
            },
            dir,
        };
        let authorities: Vec<&Node> = nodes.iter().filter(|n| n.v3ident.is_some()).collect();
        let launched = Instant::now();
        for node in &nodes {
            let node_dir = net.dir.path().join(&node.nick);
            let torrc_path = node_dir.join("torrc");
            write(&torrc_path, &torrc::torrc(node, &node_dir, &authorities))?;
            let child = spawn_tor(&config.tor, &torrc_path, &node_dir)?;
            net.children.push((node.nick.clone(), child));
        }
        net.wait_for_consensus(&authorities, nodes.len(), config.ready_timeout, launched)
            .await?;
        net.timings.consensus = launched.elapsed();
        net.network = TorConfig {
            network: NetworkKind::Custom,
            authorities: authorities
                .iter()
                .map(|a| Authority {
                    v3ident: a.v3ident.clone().unwrap_or_default(),
                    dirports: vec![([127, 0, 0, 1], a.dirport).into()],
                })
                .collect(),
            fallbacks: authorities
                .iter()
                .map(|a| FallbackRelay {
                    rsa_identity: a.rsa_fp.clone(),
                    ed_identity: a.ed_id.clone(),
                    orports: vec![([127, 0, 0, 1], a.orport).into()],
                })
                .collect(),
            hsdir_interval: Some(TESTING_HSDIR_INTERVAL),
            ..TorConfig::default()
        };
        Ok(net)
    }

    /// The `[tor]` settings for this network, with Arti's directories
    /// unset: give each client its own with [`TorConfig::with_dirs`].
    pub fn network(&self) -> &TorConfig {
        &self.network
    }

    /// The directory holding every node's data directory and torrc.
    pub fn dir(&self) -> &Path {
        self.dir.path()
    }

    /// The process ids of the tor nodes.
    pub fn pids(&self) -> Vec<u32> {
        self.children.iter().map(|(_, c)| c.id()).collect()
    }

    /// How long start-up took.
    pub fn timings(&self) -> StartTimings {
        self.timings
    }

    /// Poll the authorities' consensus files until each lists `expected`
    /// nodes with every needed flag.
    async fn wait_for_consensus(
        &mut self,
        authorities: &[&Node],
        expected: usize,
        timeout: Duration,
        launched: Instant,
    ) -> Result<(), TestnetError> {
        let files: Vec<PathBuf> = authorities
            .iter()
            .map(|a| {
                self.dir
                    .path()
                    .join(&a.nick)
                    .join("cached-microdesc-consensus")
            })
            .collect();
        loop {
            self.check_alive()?;
            let mut worst = (usize::MAX, usize::MAX);
            let mut last = String::new();
            for f in &files {
                // Missing until the first vote has passed.
                let text = fs::read_to_string(f).unwrap_or_default();
                let counts = consensus_counts(&text);
                if counts.1 < worst.1 {
                    last = consensus_flags(&text);
                }
                worst = (worst.0.min(counts.0), worst.1.min(counts.1));
            }
            if worst.0 >= expected && worst.1 >= expected {
                return Ok(());
            }
            if launched.elapsed() > timeout {
                return Err(TestnetError::NotReady {
                    expected,
                    waited: launched.elapsed(),
                    listed: worst.0,
                    flagged: worst.1,
                    last,
                });
            }
            tokio::time::sleep(POLL).await;
        }
    }

    /// Fail if any tor process has exited.
    fn check_alive(&mut self) -> Result<(), TestnetError> {
        for (nick, child) in &mut self.children {
            if let Ok(Some(status)) = child.try_wait() {
                let log = fs::read_to_string(self.dir.path().join(&*nick).join("notice.log"))
                    .unwrap_or_default();
                let tail: Vec<&str> = log.lines().rev().take(10).collect();
                return Err(TestnetError::NodeExited {
                    nick: nick.clone(),
                    status: status.to_string(),
                    log: tail.into_iter().rev().collect::<Vec<_>>().join("\n"),
                });
            }
        }
        Ok(())
    }
}

impl Drop for TestNetwork {
    fn drop(&mut self) {
        for (_, child) in &mut self.children {
            // Already-exited children make kill fail; wait reaps either way.
            let _ = child.kill();
        }
        for (_, child) in &mut self.children {
            let _ = child.wait();
        }
        // `dir` is removed when the fields drop, after this.
    }
}

/// Reserve `n` distinct free TCP ports on 127.0.0.1.
fn free_ports(n: usize) -> Result<Vec<u16>, TestnetError> {
    let listeners = (0..n)
        .map(|_| TcpListener::bind("127.0.0.1:0"))
        .collect::<Result<Vec<_>, _>>()
        .map_err(TestnetError::Ports)?;
    listeners
        .iter()
        .map(|l| l.local_addr().map(|a| a.port()))
        .collect::<Result<Vec<_>, _>>()
        .map_err(TestnetError::Ports)
}

/// The `tor` and `tor-gencert` programs, if installed: from `PATH`, else
/// from `/usr/sbin` or `/usr/bin` (Debian's locations).
pub fn find_tor() -> Option<(PathBuf, PathBuf)> {
    let find = |name: &str| -> Option<PathBuf> {
        let path = std::env::var_os("PATH").unwrap_or_default();
        std::env::split_paths(&path)
            .chain([PathBuf::from("/usr/sbin"), PathBuf::from("/usr/bin")])
            .map(|d| d.join(name))
            .find(|p| is_executable(p))
    };
    Some((find("tor")?, find("tor-gencert")?))
}

fn is_executable(p: &Path) -> bool {
    use std::os::unix::fs::PermissionsExt;
    fs::metadata(p).is_ok_and(|m| m.is_file() && m.permissions().mode() & 0o111 != 0)
}

/// Create one node's data directory and keys.
async fn make_keys(
    config: &TestNetConfig,
    nick: String,
    dir: PathBuf,
    orport: u16,
    dirport: u16,
    authority: bool,
) -> Result<Node, TestnetError> {
    let keys = dir.join("keys");
    mimix_settings::fs::create_private_dir(&keys).map_err(|source| TestnetError::Io {
        op: "create",
        path: keys.clone(),
        source,
    })?;
    let v3ident = if authority {
        let mut args: Vec<OsString> = vec![
            "--create-identity-key".into(),
            "--passphrase-fd".into(),
            "0".into(),
            "-m".into(),
            "12".into(),
        ];
        for (flag, file) in [
            ("-i", "authority_identity_key"),
            ("-s", "authority_signing_key"),
            ("-c", "authority_certificate"),
        ] {
            args.push(flag.into());
            args.push(keys.join(file).into());
        }
        args.push("-a".into());
        args.push(format!("127.0.0.1:{dirport}").into());
        run(&config.tor_gencert, &args, b"\n", "tor-gencert", &nick).await?;
        let cert_path = keys.join("authority_certificate");
        let cert = read(&cert_path)?;
        Some(parse_v3ident(&cert).ok_or_else(|| bad_output("tor-gencert", &nick, &cert))?)
    } else {
        None
    };
    let args: Vec<OsString> = vec![
        "--ignore-missing-torrc".into(),
        "-f".into(),
        "/dev/null".into(),
        "--DataDirectory".into(),
        dir.clone().into(),
        "--ORPort".into(),
        "1".into(),
        "--Nickname".into(),
        nick.clone().into(),
        "--list-fingerprint".into(),
    ];
    let out = run(&config.tor, &args, b"", "tor --list-fingerprint", &nick).await?;
    let rsa_fp = parse_list_fingerprint(&out)
        .ok_or_else(|| bad_output("tor --list-fingerprint", &nick, &out))?;
    let ed_file = read(&dir.join("fingerprint-ed25519"))?;
    let ed_id = parse_ed25519(&ed_file)
        .ok_or_else(|| bad_output("tor --list-fingerprint", &nick, &ed_file))?;
    Ok(Node {
        nick,
        orport,
        dirport,
        rsa_fp,
        ed_id,
        v3ident,
    })
}

/// Run a key-generation command to completion with `stdin` as its input;
/// return its standard output.
async fn run(
    program: &Path,
    args: &[OsString],
    stdin: &[u8],
    what: &'static str,
    nick: &str,
) -> Result<String, TestnetError> {
    let spawn_err = |source| TestnetError::Spawn {
        program: program.to_owned(),
        source,
    };
    let mut child = tokio::process::Command::new(program)
        .args(args)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .kill_on_drop(true)
        .spawn()
        .map_err(spawn_err)?;
    if let Some(mut input) = child.stdin.take() {
        input.write_all(stdin).await.map_err(spawn_err)?;
    }
    let out = child.wait_with_output().await.map_err(spawn_err)?;
    let stdout = String::from_utf8_lossy(&out.stdout).into_owned();
    if !out.status.success() {
        return Err(TestnetError::Keygen {
            program: what,
            nick: nick.to_owned(),
            detail: format!(
                "{}: {}{}",
                out.status,
                stdout,
                String::from_utf8_lossy(&out.stderr)
            ),
        });
    }
    Ok(stdout)
}

/// Start one tor node in the foreground, its output going to files in
/// its data directory.
fn spawn_tor(tor: &Path, torrc: &Path, dir: &Path) -> Result<Child, TestnetError> {
    let log = |name: &str| {
        let path = dir.join(name);
        fs::File::create(&path).map_err(|source| TestnetError::Io {
            op: "create",
            path,
            source,
        })
    };
    Command::new(tor)
        .arg("-f")
        .arg(torrc)
        .stdin(Stdio::null())
        .stdout(log("stdout.log")?)
        .stderr(log("stderr.log")?)
        .spawn()
        .map_err(|source| TestnetError::Spawn {
            program: tor.to_owned(),
            source,
        })
}

/// A key-generation command printed something we cannot parse.
fn bad_output(program: &'static str, nick: &str, output: &str) -> TestnetError {
    TestnetError::Keygen {
        program,
        nick: nick.to_owned(),
        detail: format!("unexpected output: {output}"),
    }
}

/// Read a text file.
fn read(path: &Path) -> Result<String, TestnetError> {
    fs::read_to_string(path).map_err(|source| TestnetError::Io {
        op: "read",
        path: path.to_owned(),
        source,
    })
}

/// Write a text file.
fn write(path: &Path, text: &str) -> Result<(), TestnetError> {
    fs::write(path, text).map_err(|source| TestnetError::Io {
        op: "write",
        path: path.to_owned(),
        source,
    })
}
