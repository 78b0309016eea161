//! The Arti client: bootstrap, dialling with per-destination isolation.

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

use arti_client::config::{BoolOrAuto, CfgPath};
use arti_client::{IsolationToken, StreamPrefs, TorClient, TorClientConfig};
use tokio::sync::watch;
use tokio::task::JoinHandle;
use tor_rtcompat::PreferredRuntime;

use crate::bootstrap::{BootstrapProgress, follow};
use crate::perms::{check_key_permissions, create_private_dir};
use crate::{BoxedStream, TorConfig, TorError};

/// How long [`TorTransport::dial`] waits for a stream by default.
pub const DEFAULT_DIAL_TIMEOUT: Duration = Duration::from_secs(60);

/// How long `start` waits for Arti's status to catch up with its bootstrap.
const STATUS_LAG: Duration = Duration::from_secs(5);

/// An embedded, bootstrapped Arti client. Create one per process.
///
/// Every method is non-generic: Arti is instantiated once, in this crate.
pub struct TorTransport {
    /// The Arti client.
    client: Arc<TorClient<PreferredRuntime>>,
    /// Arti's state directory (keystore and persistent state).
    state_dir: PathBuf,
    /// One isolation token per destination host.
    isolation: IsolationMap,
    /// How long a dial may take.
    dial_timeout: Duration,
    /// Latest bootstrap progress.
    progress: watch::Receiver<BootstrapProgress>,
    /// Most streams one rendezvous circuit may hold open on our onion
    /// services ([`TorConfig::max_streams_per_circuit`]).
    max_streams_per_circuit: u32,
    /// Forwards Arti's bootstrap events into `progress`.
    progress_task: JoinHandle<()>,
}

impl std::fmt::Debug for TorTransport {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("TorTransport")
            .field("state_dir", &self.state_dir)
            .field("dial_timeout", &self.dial_timeout)
            .finish_non_exhaustive()
    }
}

impl TorTransport {
    /// Create the Arti client and bootstrap it onto the network `config`
    /// names, logging progress. See [`TorTransport::start_with_progress`].
    pub async fn start(config: &TorConfig) -> Result<TorTransport, TorError> {
        let (tx, _rx) = watch::channel(BootstrapProgress::default());
        Self::start_with_progress(config, tx).await
    }

    /// Create the Arti client with its state (keystore included) in
    /// `config.state_dir` and its directory cache in `config.cache_dir`, and
    /// bootstrap it onto `config`'s network. Both directories are created
    /// with mode 0700 if missing.
    ///
    /// Progress is published on `progress` and logged while bootstrapping
    /// and afterwards, with a warning every `config.bootstrap_warning`
    /// while the client is not ready, saying how long and why. There is no
    /// overall timeout: wrap the call in `tokio::time::timeout` if one is
    /// wanted.
    ///
    /// Refuses to start if the keystore under `state_dir` is readable by
    /// anyone but its owner ([`TorError::InsecurePermissions`]). Arti's own
    /// permission checks on its directories are enforced and cannot be
    /// switched off through the environment.
    pub async fn start_with_progress(
        config: &TorConfig,
        progress: watch::Sender<BootstrapProgress>,
    ) -> Result<TorTransport, TorError> {
        let state_dir = config.state_dir.as_path();
        let max_streams_per_circuit = config.max_streams_per_circuit;
        create_private_dir(state_dir)?;
        create_private_dir(&config.cache_dir)?;
        check_key_permissions(state_dir)?;
        let warn_every = config.bootstrap_warning;
        let arti_config = client_config(config)?;
        let client = TorClient::builder()
            .config(arti_config)
            .create_unbootstrapped()
            .map_err(TorError::Create)?;
        let progress_rx = progress.subscribe();
        let events = client.bootstrap_events();
        let progress_task = tokio::spawn(follow(events, progress, warn_every));
        let transport = TorTransport {
            client,
            state_dir: state_dir.to_owned(),
            isolation: IsolationMap::default(),
            dial_timeout: DEFAULT_DIAL_TIMEOUT,
            progress: progress_rx,
            max_streams_per_circuit,
            progress_task,
        };
        // On error `transport` drops here, which stops the progress task.
        transport
            .client
            .bootstrap()
            .await
            .map_err(TorError::Bootstrap)?;
        // Arti's status reports lag a little behind `bootstrap()`: give them
        // a moment, so that a started transport reads as ready.
        let mut ready = transport.progress.clone();
        if tokio::time::timeout(STATUS_LAG, ready.wait_for(|p| p.ready))
            .await
            .is_err()
        {
            tracing::debug!("bootstrapped, but Arti's status does not say ready yet");
        }
        Ok(transport)
    }

    /// Set how long [`TorTransport::dial`] may take before it fails with
    /// [`TorError::DialTimeout`].
    #[must_use]
    pub fn with_dial_timeout(mut self, timeout: Duration) -> Self {
        self.dial_timeout = timeout;
        self
    }

    /// The latest bootstrap progress; it keeps updating after start (for
    /// example if the network is lost and regained).
    pub fn progress(&self) -> watch::Receiver<BootstrapProgress> {
        self.progress.clone()
    }

    /// The state directory this client was started with.
    pub fn state_dir(&self) -> &Path {
        &self.state_dir
    }

    /// Open a stream to `host:port` over Tor (`host` may be a `.onion`
    /// address).
    ///
    /// Streams to the same host share an isolation token, streams to
    /// different hosts never share a circuit. Fails with
    /// [`TorError::DialTimeout`] after the dial timeout
    /// ([`DEFAULT_DIAL_TIMEOUT`] unless changed).
    pub async fn dial(&self, host: &str, port: u16) -> Result<BoxedStream, TorError> {
        let mut prefs = StreamPrefs::new();
        prefs
            .set_isolation(self.isolation.token_for(host))
            .connect_to_onion_services(BoolOrAuto::Explicit(true));
        let connect = self.client.connect_with_prefs((host, port), &prefs);
        let result = match tokio::time::timeout(self.dial_timeout, connect).await {
            Ok(Ok(stream)) => return Ok(Box::new(stream)),
            Ok(Err(e)) => TorError::Connect(e),
            Err(_) => TorError::DialTimeout(self.dial_timeout),
        };
        // The next dial to this host gets a new token, and so new circuits:
        // a circuit to a peer that restarted can stay unusable.
        self.isolation.reset(host);
        Err(result)
    }

    /// The Arti client, for the onion-service code of this crate.
    pub(crate) fn client(&self) -> &Arc<TorClient<PreferredRuntime>> {
        &self.client
    }

    /// Most streams one rendezvous circuit may hold open on our onion
    /// services.
    pub(crate) fn max_streams_per_circuit(&self) -> u32 {
        self.max_streams_per_circuit
    }
}

impl Drop for TorTransport {
    fn drop(&mut self) {
        self.progress_task.abort();
    }
}

/// One isolation token per destination host (case-insensitive).
///
/// It grows with the number of distinct hosts dialled, which for a remailer
/// is the number of peers.
#[derive(Debug, Default)]
struct IsolationMap(Mutex<HashMap<String, IsolationToken>>);

impl IsolationMap {
    /// The token for streams to `host`, created on first use.
    fn token_for(&self, host: &str) -> IsolationToken {
        let mut map = self.0.lock().unwrap_or_else(PoisonError::into_inner);
        *map.entry(host.to_ascii_lowercase())
            .or_insert_with(IsolationToken::new)
    }

    /// Forgets the token for `host`; the next dial gets a fresh one.
    fn reset(&self, host: &str) {
        let mut map = self.0.lock().unwrap_or_else(PoisonError::into_inner);
        map.remove(&host.to_ascii_lowercase());
    }
}

/// Build Arti's configuration.
pub(crate) fn client_config(config: &TorConfig) -> Result<TorClientConfig, TorError> {
    let mut b = TorClientConfig::builder();
    b.storage()
        .cache_dir(CfgPath::new_literal(&config.cache_dir))
        .state_dir(CfgPath::new_literal(&config.state_dir));
    // Keep fs-mistrust's checks on, whatever ARTI_FS_DISABLE_PERMISSION_CHECKS
    // or FS_MISTRUST_DISABLE_PERMISSIONS_CHECKS say.
    b.storage().permissions().ignore_environment();
    config.apply(&mut b)?;
    b.build().map_err(|e| TorError::Config(e.to_string()))
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

    use super::*;
    use std::os::unix::fs::PermissionsExt;

    #[test]
    fn public_config_builds() {
        let tmp = tempfile::tempdir().unwrap();
        client_config(&TorConfig::public(
            tmp.path().join("s"),
            tmp.path().join("c"),
        ))
        .unwrap();
    }

    #[tokio::test]
    async fn refuses_a_readable_keystore() {
        let tmp = tempfile::tempdir().unwrap();
        let state = tmp.path().join("state");
        let key_dir = state.join("keystore").join("hss").join("node");
        create_private_dir(&key_dir).unwrap();
        let key = key_dir.join("ks_hs_id.ed25519_expanded_private");
        std::fs::write(&key, b"k").unwrap();
        std::fs::set_permissions(&key, std::fs::Permissions::from_mode(0o640)).unwrap();
        let err = TorTransport::start(&TorConfig::public(state, tmp.path().join("cache")))
            .await
            .unwrap_err();
        assert!(
            matches!(&err, TorError::InsecurePermissions { path, .. } if *path == key),
            "{err}"
        );
    }

    #[tokio::test]
    async fn arti_rejects_a_world_writable_cache_dir() {
        // Our own check covers the keystore; Arti's fs-mistrust covers the
        // rest and must stay on.
        let tmp = tempfile::tempdir().unwrap();
        let cache = tmp.path().join("cache");
        create_private_dir(&cache).unwrap();
        std::fs::set_permissions(&cache, std::fs::Permissions::from_mode(0o777)).unwrap();
        let state = tmp.path().join("state");
        let config = TorConfig::public(state, cache);
        let result = TorTransport::start(&config);
        let err = tokio::time::timeout(Duration::from_secs(30), result)
            .await
            .expect("fails fast, without touching the network")
            .unwrap_err();
        assert!(
            matches!(err, TorError::Create(_) | TorError::Bootstrap(_)),
            "{err}"
        );
    }

    #[test]
    fn isolation_tokens_are_per_host() {
        let map = IsolationMap::default();
        let a = map.token_for("aaaa.onion");
        assert_eq!(map.token_for("AAAA.onion"), a);
        assert_eq!(map.token_for("aaaa.onion"), a);
        assert_ne!(map.token_for("bbbb.onion"), a);
        let b = map.token_for("bbbb.onion");
        map.reset("AAAA.onion");
        assert_ne!(
            map.token_for("aaaa.onion"),
            a,
            "a failed host gets a new token"
        );
        assert_eq!(map.token_for("bbbb.onion"), b, "other hosts keep theirs");
    }
}
