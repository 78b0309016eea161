//! The exit's side of the node: exit chunks released by the pool are
//! reassembled into the mail queue, and the mail queue is served by the
//! [`queue`](crate::queue) worker (at most `concurrency` deliveries at
//! once, `per_destination` to the relay or to one recipient domain).
//!
//! A message's first attempt runs the header policy and blocklist on the
//! sender's bytes ([`Exit::prepare_outgoing`]: a compressed payload is
//! inflated, a Usenet post policed as news). When some recipients are
//! deferred, the prepared delivery to just those recipients replaces the
//! message in the queue (in the same batch as the retry), flagged as
//! prepared, so a retry never re-sends to recipients that already have it
//! and never runs sender bytes past the policy as if they were prepared.
//! A post for the news server is kept the same way, prepared, so its
//! retries carry the same Message-ID. Inflating, parsing and the blocklist
//! run on the blocking pool; only the SMTP and NNTP sessions run on the
//! runtime.
//!
//! Besides the store's mail counters, posts are counted as `news_posted`
//! and `news_dropped`, and refusals with a reason of their own under
//! [`PolicyError::counter`].

use std::sync::Arc;
use std::time::{Duration, SystemTime};

use tokio_util::sync::CancellationToken;
use tracing::debug;

use super::{Shared, blocking, every};
use crate::exit::reassembly;
use crate::exit::{DeliveryResult, Exit, ExitCounts, Outgoing, PolicyError};
use crate::queue::{Attempt, Due, Outcome, Queue, Recorded, Skip, Worker};
use crate::store::{Change, MailId, StoreError, counter};

/// How often the exit queue is looked at.
const TICK: Duration = Duration::from_millis(500);
/// Exit chunks reassembled per tick.
const CHUNKS_PER_TICK: usize = 256;
/// Posts accepted by the news server or the mail2news gateway's SMTP
/// server.
pub(crate) const NEWS_POSTED: &str = "news_posted";
/// Posts given up on (a permanent failure, or the retry period over).
pub(crate) const NEWS_DROPPED: &str = "news_dropped";

/// A queued message: the sender's bytes, or a prepared delivery.
pub(crate) struct Mail {
    payload: Vec<u8>,
    prepared: bool,
}

/// The mail queue as the worker sees it.
pub(crate) struct MailQueue {
    shared: Arc<Shared>,
    exit: Arc<Exit>,
}

impl MailQueue {
    /// The worker serving the mail queue of `shared` through `exit`.
    pub fn worker(shared: &Arc<Shared>, exit: Arc<Exit>) -> Worker<Self> {
        let c = &shared.config.exit.retry;
        Worker::new(
            Arc::new(Self {
                shared: shared.clone(),
                exit,
            }),
            c.retry(),
            c.caps(),
            shared.clock.clone(),
        )
        .with_waker(shared.mail_wake.clone())
    }

    /// The policy and blocklist, on the blocking pool.
    async fn prepare(&self, mail: &Mail) -> Result<Outgoing, PolicyError> {
        let (exit, payload, prepared) = (self.exit.clone(), mail.payload.clone(), mail.prepared);
        let job = move || {
            if prepared {
                let mut out = Outgoing::decode(&payload)?;
                exit.recheck(&mut out);
                Ok(out)
            } else {
                exit.prepare_outgoing(&payload, &mut rand::rng())
            }
        };
        tokio::task::spawn_blocking(job)
            .await
            .unwrap_or(Err(PolicyError::Unparseable))
    }

    fn count(&self, name: &str) {
        self.shared.tally.add(name, 1);
    }
}

impl Queue for MailQueue {
    type Item = Mail;
    /// The delivery to the recipients still pending.
    type State = Vec<u8>;

    fn name(&self) -> &'static str {
        "mail"
    }

    fn due(
        &self,
        now: SystemTime,
        limit: usize,
        skip: &mut Skip,
    ) -> Result<Vec<Due<Mail>>, StoreError> {
        let exit = &self.exit;
        let items = self.shared.store.mail_due(now, limit, &mut |id, domain| {
            skip.take(id, &exit.destination(domain))
        })?;
        Ok(items
            .into_iter()
            .map(|i| Due {
                id: i.id.0,
                destination: exit.destination(&i.destination),
                attempts: i.attempts,
                first_queued: i.first_queued,
                item: Mail {
                    payload: i.payload,
                    prepared: i.prepared,
                },
            })
            .collect())
    }

    async fn attempt(&self, due: &Due<Mail>) -> Attempt<Vec<u8>> {
        let mut out = match self.prepare(&due.item).await {
            Ok(o) => o,
            Err(e) => {
                debug!("exit: message dropped by policy: {e}");
                if let Some(name) = e.counter() {
                    self.count(&name);
                }
                return Attempt::Failed;
            }
        };
        let result = match &mut out {
            Outgoing::Mail(d) | Outgoing::News(d) => self.exit.send(d).await,
            Outgoing::Post(p) => self.exit.post(p).await,
        };
        let news = out.is_news();
        match result {
            DeliveryResult::Delivered => {
                if news {
                    self.count(NEWS_POSTED);
                }
                Attempt::Delivered
            }
            DeliveryResult::Failed(f) => {
                debug!(kind = ?f.kind, code = ?f.code, news, "exit: delivery failed permanently");
                let detail = crate::safelog::sensitive(&f.detail);
                debug!(%detail, "exit: the server's answer");
                if news {
                    self.count(NEWS_DROPPED);
                }
                Attempt::Failed
            }
            DeliveryResult::Retry(f) => {
                debug!(kind = ?f.kind, code = ?f.code, news, "exit: delivery deferred");
                Attempt::Retry(out.encode())
            }
        }
    }

    fn record(&self, outcomes: Vec<Recorded<Self>>) -> Result<(), StoreError> {
        let changes = outcomes
            .into_iter()
            .map(|(due, outcome)| {
                if matches!(outcome, Outcome::GaveUp)
                    && due.item.prepared
                    && Outgoing::is_news_encoding(&due.item.payload)
                {
                    self.count(NEWS_DROPPED);
                }
                let change = match outcome {
                    Outcome::Delivered => Change::Delivered,
                    Outcome::Failed | Outcome::GaveUp => Change::Dropped,
                    Outcome::Retry { at, state } => Change::RetryPrepared(at, state),
                };
                (MailId(due.id), change)
            })
            .collect();
        self.shared.store.mail_record(changes).map(drop)
    }
}

/// Reassembles exit chunks into the mail queue until `stop` is cancelled.
pub(crate) async fn reassemble(shared: Arc<Shared>, stop: CancellationToken) {
    every(TICK, Duration::ZERO, stop, || async {
        let s = shared.clone();
        let processed = blocking("reassembly", move || {
            let limits = &s.config.exit.reassembly;
            reassembly::process_exit_queue(&s.store, limits, s.clock.now(), CHUNKS_PER_TICK)
        })
        .await;
        if let Some(outcomes) = processed.filter(|o| !o.is_empty()) {
            debug!(n = outcomes.len(), "exit chunks processed");
            shared.mail_wake.notify_one();
        }
    })
    .await;
}

/// The exit's recipient counts since `last`, as store counters.
pub(crate) fn count_recipients(shared: &Shared, now: ExitCounts, last: ExitCounts) {
    let pairs = [
        (counter::EXIT_REJECTED, now.rejected, last.rejected),
        (
            counter::RECIPIENTS_BLOCKED,
            now.blocked_recipients,
            last.blocked_recipients,
        ),
        (
            counter::RECIPIENTS_DELIVERED,
            now.delivered_recipients,
            last.delivered_recipients,
        ),
        (
            counter::RECIPIENTS_FAILED,
            now.failed_recipients,
            last.failed_recipients,
        ),
        (
            counter::RECIPIENTS_DEFERRED,
            now.deferred_recipients,
            last.deferred_recipients,
        ),
        (
            counter::RECIPIENTS_RATE_LIMITED,
            now.rate_limited_recipients,
            last.rate_limited_recipients,
        ),
        (
            counter::RECIPIENTS_RATE_TABLE_FULL,
            now.rate_table_full,
            last.rate_table_full,
        ),
    ];
    for (name, now, last) in pairs {
        if now > last {
            shared.tally.add(name, now - last);
        }
    }
}
