//! What the node's jobs share: the store, our keys and conf, the known
//! remailers, the transport, the clock and the configuration.

use std::fmt;
use std::future::Future;
use std::sync::{Arc, RwLock};
use std::time::Duration;

use mimix_packet::{Hop, build_dummy};
use tokio::sync::Notify;
use tokio_util::sync::CancellationToken;
use tracing::warn;

use crate::clock::Clock;
use crate::config::Config;
use crate::directory::Directory;
use crate::directory::chain::{self, Candidate};
use crate::keystore::{Keystore, KeystoreError};
use crate::pool::{self, DummyPolicy, DummySource};
use crate::store::{PoolItem, Store, Tally};
use crate::transport::{ClientLimits, Dialer};

/// No remailer twice within this many hops of a dummy's chain (the
/// draft: two others between repeats).
const DUMMY_DISTANCE: usize = 2;

/// State shared by the node's tasks.
pub(crate) struct Shared {
    pub store: Store,
    pub keys: RwLock<Keystore>,
    pub directory: Arc<Directory>,
    pub clock: Arc<dyn Clock>,
    pub config: Config,
    pub address: String,
    pub dialer: Arc<dyn Dialer>,
    pub client_limits: ClientLimits,
    /// Counters of events that are not written with a batch of their own
    /// (rejected packets, say), flushed to the store now and then.
    pub tally: Tally,
    /// Wakes the outbound queue's worker when packets are queued.
    pub outbound_wake: Arc<Notify>,
    /// Wakes the mail queue's worker when messages are queued.
    pub mail_wake: Arc<Notify>,
    /// Wakes the conf fetcher when new remailers are heard of.
    pub fetch_wake: Arc<Notify>,
    /// The public pages besides the conf, read at start and on reload.
    pages: RwLock<Arc<Pages>>,
    conf_text: RwLock<String>,
}

/// The texts of `/help.txt`, `/adminkey.txt` and `/blockme.txt`.
#[derive(Debug, Default)]
pub(crate) struct Pages {
    /// `/help.txt`.
    pub help: String,
    /// `/adminkey.txt`, if the operator configured one.
    pub admin_key: Option<String>,
    /// `/blockme.txt`: how recipients opt out.
    pub blockme: String,
}

impl fmt::Debug for Shared {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Shared").finish_non_exhaustive()
    }
}

/// The parts [`Shared::new`] puts together.
pub(crate) struct Parts {
    pub store: Store,
    pub keys: Keystore,
    pub directory: Arc<Directory>,
    pub pages: Pages,
    pub clock: Arc<dyn Clock>,
    pub config: Config,
    pub address: String,
    pub dialer: Arc<dyn Dialer>,
}

impl Shared {
    /// Puts the parts together and renders our first conf.
    pub fn new(p: Parts) -> Result<Arc<Self>, KeystoreError> {
        let client_limits = p.config.transport.client_limits();
        let shared = Arc::new(Self {
            store: p.store,
            keys: RwLock::new(p.keys),
            directory: p.directory,
            clock: p.clock,
            config: p.config,
            address: p.address,
            dialer: p.dialer,
            client_limits,
            tally: Tally::default(),
            outbound_wake: Arc::new(Notify::new()),
            mail_wake: Arc::new(Notify::new()),
            fetch_wake: Arc::new(Notify::new()),
            pages: RwLock::new(Arc::new(p.pages)),
            conf_text: RwLock::new(String::new()),
        });
        shared.refresh_conf()?;
        Ok(shared)
    }

    /// The time in Unix seconds, as the directory counts it.
    pub fn unix_now(&self) -> u64 {
        crate::directory::pinger::unix(self.clock.now())
    }

    /// The pages served besides the conf.
    pub fn pages(&self) -> Arc<Pages> {
        self.pages.read().unwrap_or_else(|e| e.into_inner()).clone()
    }

    /// Serves `pages` from now on.
    pub fn set_pages(&self, pages: Pages) {
        *self.pages.write().unwrap_or_else(|e| e.into_inner()) = Arc::new(pages);
    }

    /// Our current `remailer-conf.txt`.
    pub fn conf_text(&self) -> String {
        self.conf_text
            .read()
            .unwrap_or_else(|e| e.into_inner())
            .clone()
    }

    /// Renders our conf for today (the advertised key changes with the
    /// day).
    pub fn refresh_conf(&self) -> Result<(), KeystoreError> {
        let today = self.clock.epoch_day();
        let text = self
            .keys
            .read()
            .unwrap_or_else(|e| e.into_inner())
            .remailer_conf(
                &self.config.node.name,
                &self.address,
                self.config.node.smtp_exit,
                self.config
                    .exit
                    .published_contact(self.config.node.smtp_exit)
                    .as_deref(),
                &self.directory.addresses(self.unix_now()),
                today,
            )?;
        *self.conf_text.write().unwrap_or_else(|e| e.into_inner()) = text;
        Ok(())
    }

    /// The dummy policy in effect: none while no remailer is known.
    pub fn dummy_policy(&self, source: &Dummies) -> DummyPolicy {
        if source.hops.is_empty() {
            DummyPolicy::disabled()
        } else {
            self.config.dummies.policy()
        }
    }

    /// Builds dummies through today's known remailers.
    pub fn dummy_source(&self) -> Dummies {
        let hops = self.directory.hops(self.unix_now());
        let candidates = hops
            .iter()
            .map(|h| Candidate {
                name: h.address.clone(),
                address: h.address.clone(),
                exit: false,
                reliability: None,
                latency: None,
            })
            .collect();
        Dummies {
            hops,
            candidates,
            today: self.clock.epoch_day(),
            len: usize::from(self.config.dummies.chain_length),
        }
    }

    /// Notes a next hop we forwarded to: a remailer we did not know is a
    /// new candidate (in the background), fetched soon.
    pub fn hear_of(self: &Arc<Self>, address: String) {
        if self.directory.knows(&address) {
            return;
        }
        let s = self.clone();
        tokio::task::spawn_blocking(move || {
            if s.directory.hear_of(&address, s.unix_now()) {
                s.fetch_wake.notify_one();
            }
        });
    }

    /// Adds the dummies drawn for one inbound packet (in the background).
    pub fn inbound_dummies(self: &Arc<Self>) {
        let mut source = self.dummy_source();
        let policy = self.dummy_policy(&source);
        if policy == DummyPolicy::disabled() {
            return;
        }
        let store = self.store.clone();
        tokio::task::spawn_blocking(move || {
            if let Err(e) =
                pool::add_inbound_dummies(&store, &policy, &mut source, &mut rand::rng())
            {
                warn!("adding dummies: {e}");
            }
        });
    }
}

/// Builds dummy packets through random chains of known remailers.
pub(crate) struct Dummies {
    hops: Vec<Hop>,
    candidates: Vec<Candidate>,
    today: u64,
    len: usize,
}

/// A dummy could not be built.
#[derive(Debug, thiserror::Error)]
pub enum DummyError {
    /// No remailer with a valid key is known.
    #[error("no known remailers for dummy chains")]
    NoRemailers,
    /// Building the packet failed.
    #[error(transparent)]
    Build(#[from] mimix_packet::BuildError),
}

impl DummySource for Dummies {
    type Error = DummyError;

    fn make_dummy(&mut self) -> Result<PoolItem, DummyError> {
        let rng = &mut rand::rng();
        let picked = chain::dummy_chain(&self.candidates, self.len, DUMMY_DISTANCE, rng)
            .ok_or(DummyError::NoRemailers)?;
        let chain: Vec<Hop> = picked
            .iter()
            .filter_map(|c| self.hops.iter().find(|h| h.address == c.address).cloned())
            .collect();
        let first = chain
            .first()
            .ok_or(DummyError::NoRemailers)?
            .address
            .clone();
        let packet = build_dummy(rng, &chain, self.today)?;
        Ok(PoolItem::Forward {
            next_hop: first,
            packet: packet.as_bytes().to_vec(),
        })
    }
}

/// Runs `job` every `period`, the first time `first` from now, until
/// `stop` is cancelled; a run that takes longer delays the next one.
pub(crate) async fn every<F, Fut>(
    period: Duration,
    first: Duration,
    stop: CancellationToken,
    mut job: F,
) where
    F: FnMut() -> Fut,
    Fut: Future<Output = ()>,
{
    let mut tick = tokio::time::interval_at(tokio::time::Instant::now() + first, period);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tokio::select! {
            _ = stop.cancelled() => break,
            _ = tick.tick() => job().await,
        }
    }
}

/// Runs a store operation on the blocking pool. A failure is logged as
/// `what` and gives `None`: the caller tries again on its next tick.
pub(crate) async fn blocking<T, E, F>(what: &str, f: F) -> Option<T>
where
    T: Send + 'static,
    E: fmt::Display + Send + 'static,
    F: FnOnce() -> Result<T, E> + Send + 'static,
{
    match tokio::task::spawn_blocking(f).await {
        Ok(Ok(v)) => Some(v),
        Ok(Err(e)) => {
            warn!("{what}: {e}");
            None
        }
        Err(_) => {
            warn!("{what}: task failed");
            None
        }
    }
}
