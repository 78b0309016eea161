//! The sections of the configuration file, one struct per TOML table.
//!
//! Every struct denies unknown fields (a typo is an error) and fills missing
//! fields with the defaults documented on each field and in
//! `mimix.example.toml`. Paths that default to a place under the data
//! directory are empty right after parsing and are filled in by
//! [`Config::load`](super::Config::load) and friends.

use std::net::{Ipv4Addr, SocketAddr, SocketAddrV4};
use std::path::PathBuf;
use std::time::Duration;

use serde::{Deserialize, Serialize};

use super::serde_helpers::{duration, path, size};

/// One day.
pub(crate) const DAY: Duration = Duration::from_secs(86_400);

const fn days(n: u64) -> Duration {
    Duration::from_secs(n * 86_400)
}

const fn minutes(n: u64) -> Duration {
    Duration::from_secs(n * 60)
}

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
    #[serde(with = "path")]
    pub data_dir: PathBuf,
    /// The published base URL (`http://host[:port]`, no path). Optional:
    /// with the Tor transport it is filled with the onion address at run
    /// time.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub address: Option<String>,
    /// Whether this node delivers mail (an exit, `SMTP: Yes`) or only
    /// forwards packets (a middle node).
    pub smtp_exit: bool,
    /// Log filter, in `tracing_subscriber::EnvFilter` syntax.
    pub log: String,
}

impl Default for NodeConfig {
    fn default() -> Self {
        Self {
            name: "mimix".into(),
            data_dir: PathBuf::new(),
            address: None,
            smtp_exit: false,
            log: "info".into(),
        }
    }
}

/// Which transport carries packets between remailers.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum TransportKind {
    /// HTTP over an embedded Tor client and a v3 onion service.
    #[default]
    Tor,
    /// Plain HTTP over TCP on loopback, without Tor. **Insecure**: no
    /// anonymity at all; for development and tests only.
    Direct,
}

/// `[transport]`: the HTTP transport between remailers.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct TransportConfig {
    /// Tor (the default) or direct (insecure loopback HTTP, for tests).
    pub kind: TransportKind,
    /// The address the direct transport listens on (loopback only). Not
    /// used by the Tor transport.
    pub listen: SocketAddr,
    /// Whether next hops may be clearnet hosts (still reached over Tor).
    /// Without it only `.onion` hops are contacted.
    pub allow_clearnet_hops: bool,
    /// Time allowed to open a stream to a peer.
    #[serde(with = "duration")]
    pub connect_timeout: Duration,
    /// Time allowed for one HTTP exchange once the stream is open.
    #[serde(with = "duration")]
    pub request_timeout: Duration,
    /// Time a peer gets to send a request head.
    #[serde(with = "duration")]
    pub header_read_timeout: Duration,
    /// Time a peer gets to send a request body.
    #[serde(with = "duration")]
    pub body_read_timeout: Duration,
    /// Largest request body accepted, in bytes (an armoured packet posted as
    /// a form is about 30 KB).
    #[serde(with = "size")]
    pub max_body: u64,
    /// Largest `remailer-conf.txt` fetched from a peer, in bytes.
    #[serde(with = "size")]
    pub max_conf_size: u64,
    /// Most inbound connections served at once.
    pub max_connections: usize,
}

impl Default for TransportConfig {
    fn default() -> Self {
        Self {
            kind: TransportKind::Tor,
            listen: SocketAddr::V4(SocketAddrV4::new(Ipv4Addr::LOCALHOST, 8080)),
            allow_clearnet_hops: false,
            connect_timeout: Duration::from_secs(60),
            request_timeout: Duration::from_secs(120),
            header_read_timeout: Duration::from_secs(30),
            body_read_timeout: Duration::from_secs(60),
            max_body: 64 * 1024,
            max_conf_size: 64 * 1024,
            max_connections: 64,
        }
    }
}

/// Which Tor network the embedded client joins.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum TorNetworkKind {
    /// The public Tor network, with Arti's built-in authorities.
    #[default]
    Public,
    /// A private network given by `authorities` and `fallbacks`.
    Custom,
}

/// A directory authority of a custom Tor network.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TorAuthority {
    /// The authority's v3 identity: 40 hex digits, the `fingerprint` of its
    /// `authority_certificate`.
    pub v3ident: String,
    /// Its directory ports (uploads, downloads and votes); at least one.
    pub dirports: Vec<SocketAddr>,
}

/// A relay the Tor client first fetches the directory from.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TorFallback {
    /// RSA identity fingerprint, 40 hex digits.
    pub rsa_identity: String,
    /// Ed25519 identity, unpadded base64 (43 characters).
    pub ed_identity: String,
    /// Its onion-router ports; at least one.
    pub orports: Vec<SocketAddr>,
}

/// `[tor]`: the embedded Tor client and onion service.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct TorConfig {
    /// Public or custom network.
    pub network: TorNetworkKind,
    /// Custom network only: its directory authorities (at least one).
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub authorities: Vec<TorAuthority>,
    /// Custom network only: its fallback directory relays (at least one).
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub fallbacks: Vec<TorFallback>,
    /// Custom network only: onion-service time period, whole minutes, when
    /// the network overrides it (C tor with `TestingTorNetwork`: 120m).
    #[serde(
        default,
        with = "duration::option",
        skip_serializing_if = "Option::is_none"
    )]
    pub hsdir_interval: Option<Duration>,
    /// Nickname of our onion service; its key, hence the onion address,
    /// is stored under this name (letters, digits, `-`, `_`).
    pub service_nickname: String,
    /// Tor's persistent state, including the onion service key. Default:
    /// `<data_dir>/tor/state`.
    #[serde(with = "path")]
    pub state_dir: PathBuf,
    /// Tor's directory cache. Default: `<data_dir>/tor/cache`.
    #[serde(with = "path")]
    pub cache_dir: PathBuf,
}

impl Default for TorConfig {
    fn default() -> Self {
        Self {
            network: TorNetworkKind::Public,
            authorities: Vec::new(),
            fallbacks: Vec::new(),
            hsdir_interval: None,
            service_nickname: "mimix".into(),
            state_dir: PathBuf::new(),
            cache_dir: PathBuf::new(),
        }
    }
}

/// `[pool]`: the timed dynamic pool mix (draft 3.1).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct PoolConfig {
    /// Mixing interval `t`.
    #[serde(with = "duration")]
    pub interval: Duration,
    /// Messages always kept in the pool.
    pub min: usize,
    /// Largest fraction of the pool sent in one round, in (0, 1].
    pub rate: f64,
}

impl Default for PoolConfig {
    fn default() -> Self {
        Self {
            interval: minutes(15),
            min: 45,
            rate: 0.65,
        }
    }
}

/// `[dummies]`: dummy traffic (draft 3.2).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct DummyConfig {
    /// Whether dummies are made at all.
    pub enabled: bool,
    /// Mean number of dummies added per accepted inbound packet.
    pub per_inbound_mean: f64,
    /// Mean number of dummies added before each pool round.
    pub per_round_mean: f64,
    /// Hops in a dummy's chain (1 to 10).
    pub chain_length: u8,
}

impl Default for DummyConfig {
    fn default() -> Self {
        Self {
            enabled: true,
            per_inbound_mean: 1.0 / 32.0,
            per_round_mean: 1.0 / 9.0,
            chain_length: 4,
        }
    }
}

/// `[replay]`: packet timestamps and the replay log.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct ReplayConfig {
    /// Oldest packet timestamp accepted, whole days before today. At least
    /// 4 days: senders may backdate by up to 3.
    #[serde(with = "duration")]
    pub timestamp_max_age: Duration,
    /// Furthest packet timestamp accepted, whole days after today.
    #[serde(with = "duration")]
    pub timestamp_max_future: Duration,
    /// How long a packet ID stays in the replay log. Must cover
    /// `timestamp_max_age + timestamp_max_future + 1d`, the longest time a
    /// packet stays acceptable.
    #[serde(with = "duration")]
    pub retention: Duration,
}

impl ReplayConfig {
    /// `timestamp_max_age` in days.
    pub fn max_age_days(&self) -> u64 {
        self.timestamp_max_age.as_secs() / DAY.as_secs()
    }

    /// `timestamp_max_future` in days.
    pub fn max_future_days(&self) -> u64 {
        self.timestamp_max_future.as_secs() / DAY.as_secs()
    }
}

impl Default for ReplayConfig {
    fn default() -> Self {
        Self {
            timestamp_max_age: days(14),
            timestamp_max_future: days(1),
            retention: days(28),
        }
    }
}

/// `[keys]`: our RSA keys and their rotation.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct KeysConfig {
    /// Modulus size of new keys: 2048 to 4096, a multiple of 256.
    pub bits: u32,
    /// How long a key is valid (whole days).
    #[serde(with = "duration")]
    pub lifetime: Duration,
    /// How long before the current key expires its successor is made and
    /// published (whole days, at least 1, less than `lifetime`).
    #[serde(with = "duration")]
    pub renew_before: Duration,
    /// How long after expiry a key still decrypts packets in flight (whole
    /// days).
    #[serde(with = "duration")]
    pub grace: Duration,
}

impl KeysConfig {
    /// `lifetime` in days.
    pub fn lifetime_days(&self) -> u64 {
        self.lifetime.as_secs() / DAY.as_secs()
    }

    /// `renew_before` in days.
    pub fn renew_before_days(&self) -> u64 {
        self.renew_before.as_secs() / DAY.as_secs()
    }

    /// `grace` in days.
    pub fn grace_days(&self) -> u64 {
        self.grace.as_secs() / DAY.as_secs()
    }
}

impl Default for KeysConfig {
    fn default() -> Self {
        Self {
            bits: 4096,
            lifetime: days(270),
            renew_before: days(28),
            grace: days(7),
        }
    }
}

/// `[outbound]`: delivery of packets to next hops.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct OutboundConfig {
    /// Wait before the first retry; doubled after each failure.
    #[serde(with = "duration")]
    pub retry_initial: Duration,
    /// Longest wait between retries.
    #[serde(with = "duration")]
    pub retry_max: Duration,
    /// A packet not delivered this long after it was queued is dropped.
    #[serde(with = "duration")]
    pub give_up_after: Duration,
    /// Most deliveries in progress at once.
    pub concurrency: usize,
}

impl Default for OutboundConfig {
    fn default() -> Self {
        Self {
            retry_initial: minutes(1),
            retry_max: minutes(6 * 60),
            give_up_after: days(7),
            concurrency: 8,
        }
    }
}

/// A remailer known from the configuration.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct KnownRemailer {
    /// Its name, as in its `remailer-conf.txt`.
    pub name: String,
    /// Its base URL (`http://host[:port]`).
    pub address: String,
    /// A local copy of its `remailer-conf.txt`; without it the conf is
    /// fetched from `<address>/remailer-conf.txt`.
    #[serde(
        default,
        with = "path::option",
        skip_serializing_if = "Option::is_none"
    )]
    pub conf: Option<PathBuf>,
}

/// `[directory]`: the remailers this node knows about.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct DirectoryConfig {
    /// Known remailers, used for dummy chains and peer checks.
    pub remailers: Vec<KnownRemailer>,
}
