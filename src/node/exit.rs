//! The exit's side of the node: exit chunks released by the pool are
//! reassembled into the mail queue, and queued mail is delivered.
//!
//! A message's first attempt runs the header policy and blocklist on the
//! sender's bytes. When some recipients are deferred, the prepared
//! delivery to just those recipients replaces the message in the queue (in
//! the same batch as the retry), flagged as prepared, so a retry never
//! re-sends to recipients that already have it and never runs sender bytes
//! past the policy as if they were prepared.

use std::sync::Arc;
use std::time::Duration;

use rand::RngExt;
use tokio_util::sync::CancellationToken;
use tracing::{debug, info};

use super::outbound::backoff;
use super::{Shared, blocking};
use crate::clock::Clock;
use crate::config::{self, Config};
use crate::exit::reassembly::{self, ReassemblyLimits};
use crate::exit::smtp::{Password, RelayTls, SmtpMode};
use crate::exit::{self as exitmod, Delivery, DeliveryResult, Exit, ExitError};
use crate::store::MailItem;

/// How often the exit and mail queues are looked at.
const TICK: Duration = Duration::from_millis(500);
/// Exit chunks reassembled per tick.
const CHUNKS_PER_TICK: usize = 256;
/// Messages handed to SMTP per tick.
const MAIL_PER_TICK: usize = 16;

/// The exit module's settings from the `[exit]` table.
pub fn exit_config(c: &config::ExitConfig) -> Result<exitmod::ExitConfig, ExitError> {
    let p = &c.policy;
    let mut policy = exitmod::policy::PolicyConfig {
        from: p.from.clone(),
        envelope_from: p.envelope_from.clone(),
        message_id_domain: p.message_id_domain.clone(),
        allow_headers: p.allow_headers.clone(),
        max_message_size: usize::try_from(p.max_message_size).unwrap_or(usize::MAX),
        max_recipients: p.max_recipients,
        ..Default::default()
    };
    if let Some(text) = &p.comments {
        policy.comments = text.clone();
    }
    if let Some(deny) = &p.deny_headers {
        policy.deny_headers = deny.clone();
    }
    let s = &c.smtp;
    let smtp = exitmod::smtp::SmtpConfig {
        mode: match s.mode {
            config::SmtpMode::Relay => SmtpMode::Relay,
            config::SmtpMode::Mx => SmtpMode::Mx,
        },
        host: s.host.clone(),
        port: s.port,
        tls: match s.tls {
            config::SmtpTls::None => RelayTls::None,
            config::SmtpTls::Starttls => RelayTls::Starttls,
            config::SmtpTls::Tls => RelayTls::Tls,
        },
        accept_invalid_certs: s.accept_invalid_certs,
        username: s.username.clone(),
        password: None::<Password>,
        password_file: s.password_file.clone(),
        helo_name: s.helo_name.clone(),
        connect_timeout: s.connect_timeout,
        command_timeout: s.command_timeout,
        session_timeout: s.session_timeout,
        dns_timeout: s.dns_timeout,
    };
    let out = exitmod::ExitConfig {
        policy,
        smtp,
        blocklist: Some(c.blocklist.clone()).filter(|p| !p.as_os_str().is_empty()),
    };
    out.validate()?;
    Ok(out)
}

/// The exit's delivery machinery and its limits.
pub struct ExitWorker {
    exit: Exit,
    limits: ReassemblyLimits,
    retry: config::MailRetryConfig,
}

impl std::fmt::Debug for ExitWorker {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ExitWorker").finish_non_exhaustive()
    }
}

impl ExitWorker {
    /// Sets up the exit from the configuration.
    pub fn new(config: &Config, clock: Arc<dyn Clock>) -> Result<Self, ExitError> {
        let exit = Exit::new(&exit_config(&config.exit)?, clock)?;
        Ok(Self {
            exit,
            limits: ReassemblyLimits {
                max_partial_sets: config.exit.reassembly.max_partial_sets,
                expiry: config.exit.reassembly.expiry,
            },
            retry: config.exit.retry.clone(),
        })
    }
}

/// Runs reassembly and mail delivery until `stop` is cancelled.
pub(crate) async fn run(shared: Arc<Shared>, worker: ExitWorker, stop: CancellationToken) {
    let worker = Arc::new(worker);
    let mut tick = tokio::time::interval(TICK);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tokio::select! {
            _ = stop.cancelled() => break,
            _ = tick.tick() => {}
        }
        let (s, w) = (shared.clone(), worker.clone());
        let processed = blocking("reassembly", move || {
            reassembly::process_exit_queue(&s.store, &w.limits, s.clock.now(), CHUNKS_PER_TICK)
        })
        .await;
        if let Some(outcomes) = processed.filter(|o| !o.is_empty()) {
            debug!(n = outcomes.len(), "exit chunks processed");
        }
        let store = shared.store.clone();
        let now = shared.clock.now();
        let Some(due) = blocking("reading the mail queue", move || {
            store.mail_due(now, MAIL_PER_TICK)
        })
        .await
        else {
            continue;
        };
        for item in due {
            deliver(&shared, &worker, item).await;
        }
    }
}

enum Next {
    Delivered,
    Retry(Option<Vec<u8>>),
    Drop,
}

async fn deliver(shared: &Shared, worker: &ExitWorker, item: MailItem) {
    let prepared = if item.prepared {
        Delivery::decode(&item.payload)
    } else {
        worker.exit.prepare(&item.payload, &mut rand::rng())
    };
    let next = match prepared {
        Err(e) => {
            info!("exit: message dropped by policy: {}", e);
            Next::Drop
        }
        Ok(mut delivery) => match worker.exit.deliver(&mut delivery).await {
            DeliveryResult::Delivered => Next::Delivered,
            DeliveryResult::Failed(f) => {
                info!(kind = ?f.kind, code = ?f.code, "exit: delivery failed permanently");
                Next::Drop
            }
            DeliveryResult::Retry(f) => {
                debug!(kind = ?f.kind, code = ?f.code, "exit: delivery deferred");
                Next::Retry(Some(delivery.encode()))
            }
        },
    };
    let now = shared.clock.now();
    let retry = &worker.retry;
    let next = match next {
        Next::Retry(_)
            if now.duration_since(item.first_queued).unwrap_or_default() >= retry.give_up_after =>
        {
            info!("exit: giving up on a message after its retry period");
            Next::Drop
        }
        other => other,
    };
    let store = shared.store.clone();
    let id = item.id;
    let jitter = rand::rng().random_range(0.75..1.25);
    let when = now + backoff(retry.initial, retry.max, item.attempts, jitter);
    blocking("updating the mail queue", move || match next {
        Next::Delivered => store.mail_delivered(id),
        Next::Drop => store.mail_drop(id),
        Next::Retry(Some(bytes)) => store.mail_retry_prepared(id, when, &bytes),
        Next::Retry(None) => store.mail_retry_at(id, when),
    })
    .await;
}
