//! Start-up wiring: the data directory, the store and our keys, the
//! transport (a loopback listener, or Arti with our onion service), then
//! the node's jobs. The admin listener starts right after the store, so
//! that it reports the Tor bootstrap while it happens.

use std::path::PathBuf;
use std::sync::Arc;

use mimix_settings::fs::private_dir;
use mimix_tor::{IncomingStreams, OnionService, TorTransport};
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;
use tracing::{debug, info, warn};

use super::shared::{Pages, Parts};
use super::{ADDRESS_FILE, NodeError, Shared, intake, mail, maintenance, outbound, pinger, rounds};
use crate::admin::Admin;
use crate::clock::Clock;
use crate::config::Config;
use crate::directory::Directory;
use crate::directory::fetch::{Count, Fetches};
use crate::exit::Exit;
use crate::keystore::{KeyGenerator, Keystore};
use crate::store::Store;
use crate::transport::{Dialer, LoopbackDialer, Server, Source, TorDialer, TransportKind};

/// Where the node's packets come in.
pub(super) enum Listener {
    /// The direct transport's TCP listener.
    Tcp(tokio::net::TcpListener),
    /// Our onion service.
    Onion {
        tor: Arc<TorTransport>,
        incoming: IncomingStreams,
        service: Arc<OnionService>,
    },
}

/// What [`start`] hands the node.
pub(super) struct Started {
    pub shared: Arc<Shared>,
    pub listen: Option<std::net::SocketAddr>,
    pub tasks: Vec<JoinHandle<()>>,
    pub exit: Option<Arc<Exit>>,
    pub tor: Option<(Arc<TorTransport>, Arc<OnionService>)>,
}

/// Opens the node's state, starts its transport and its jobs.
pub(super) async fn start(
    config: Config,
    clock: Arc<dyn Clock>,
    keygen: &mut dyn KeyGenerator,
    stop: &CancellationToken,
) -> Result<Started, NodeError> {
    config.node.check_named().map_err(NodeError::Unnamed)?;
    private_dir(config.data_dir())?;
    crate::transport::raise_open_files(config.transport.max_connections);
    let store = Store::open_with(&config.store_dir(), &config.store)?;
    // Stopped with the node, or at once if the start fails.
    let admin_stop = stop.child_token();
    let admin_guard = admin_stop.clone().drop_guard();
    let admin = Admin::start(&config, store.clone(), clock.clone(), admin_stop).await?;
    let mut keys = Keystore::open(&config.keys_dir(), store.clone(), config.keys)?;
    keys.rotate(clock.epoch_day(), keygen)?;
    let exit = match config.node.smtp_exit {
        true => Some(Arc::new(
            Exit::new(&config.exit, clock.clone())
                .map_err(|e| NodeError::Exit(e.to_string()))?
                .with_store(store.clone()),
        )),
        false => None,
    };
    let (dialer, listener, address) = open_transport(&config, admin.tor_progress()).await?;
    let now = crate::directory::pinger::unix(clock.now());
    let (directory, errors) = Directory::open(
        &config.directory,
        store.clone(),
        Some(&address),
        dialer.policy(),
        now,
    )?;
    for e in errors {
        warn!("{e}");
    }
    let server_limits = config.transport.server_limits();
    let pages = read_pages(&config)?;
    let shared = Shared::new(Parts {
        store,
        keys,
        directory: Arc::new(directory),
        pages,
        clock,
        config,
        address,
        dialer,
    })?;
    let onion = match &listener {
        Listener::Onion { service, .. } => Some(service.clone()),
        Listener::Tcp(_) => None,
    };
    admin.attach(shared.clone(), onion);
    let server = Server::new(
        intake::Intake::start(shared.clone()),
        server_limits,
        stop.clone(),
    );
    let Serving { listen, tor, task } = serve(server, listener, stop.clone());
    let mut tasks = spawn_jobs(&shared, exit.clone(), stop);
    tasks.push(task);
    tasks.extend(admin.into_tasks());
    admin_guard.disarm();
    Ok(Started {
        shared,
        listen,
        tasks,
        exit,
        tor,
    })
}

/// Starts the node's jobs.
fn spawn_jobs(
    shared: &Arc<Shared>,
    exit: Option<Arc<Exit>>,
    stop: &CancellationToken,
) -> Vec<JoinHandle<()>> {
    let s = shared;
    let tally = s.clone();
    let count: Count = Arc::new(move |name: &str, n: u64| {
        if n > 0 {
            tally.tally.add(name, n);
        }
    });
    let fetches = Fetches::worker(
        s.directory.clone(),
        s.dialer.clone(),
        s.client_limits.clone(),
        s.clock.clone(),
        &s.config.directory,
        count,
        s.fetch_wake.clone(),
    );
    let mut tasks = vec![
        tokio::spawn(rounds::run(s.clone(), stop.clone())),
        tokio::spawn(outbound::Outbound::worker(s).run(stop.clone())),
        tokio::spawn(fetches.run(stop.clone())),
        tokio::spawn(pinger::run(s.clone(), stop.clone())),
        tokio::spawn(maintenance::run(s.clone(), stop.clone())),
        tokio::spawn(maintenance::directory(s.clone(), stop.clone())),
        tokio::spawn(maintenance::conf(s.clone(), stop.clone())),
        tokio::spawn(maintenance::flush_counters(
            s.clone(),
            exit.clone(),
            stop.clone(),
        )),
    ];
    if let Some(exit) = exit {
        tasks.push(tokio::spawn(mail::reassemble(s.clone(), stop.clone())));
        tasks.push(tokio::spawn(
            mail::MailQueue::worker(s, exit).run(stop.clone()),
        ));
    }
    tasks
}

/// The texts of `/help.txt`, `/adminkey.txt` and `/blockme.txt` (at start
/// and on reload).
pub(super) fn read_pages(config: &Config) -> Result<Pages, NodeError> {
    let read = |path: &std::path::Path| {
        std::fs::read_to_string(path).map_err(|source| NodeError::Io {
            op: "reading",
            path: path.to_owned(),
            source,
        })
    };
    let n = &config.node;
    let help = match &n.help_file {
        Some(path) => read(path)?,
        None => default_help(config),
    };
    let admin_key = n.admin_key_file.as_deref().map(read).transpose()?;
    let contact = config.exit.published_contact(n.smtp_exit);
    let blockme = crate::exit::optout::page(&n.name, n.smtp_exit, contact.as_deref());
    Ok(Pages {
        help,
        admin_key,
        blockme,
    })
}

/// The help page when the operator wrote none.
fn default_help(config: &Config) -> String {
    let role = if config.node.smtp_exit {
        "an exit: it delivers mail by SMTP"
    } else {
        "a middle node: it forwards packets to other remailers"
    };
    format!(
        "This is {name}, a Mimix remailer ({role}).\n\n\
         Mimix is an anonymous remailer network: a message is split into fixed-size\n\
         packets, each encrypted in layers for a chain of remailers that each peel\n\
         one layer, hold it in a pool among other packets and pass it on.\n\n\
         To send through it, use a Mimix client, e.g. `mimix send --chain '*,*,*'`.\n\
         Our key: /remailer-conf.txt. Our measurements of the network: /stats.txt.\n\
         Not wanting mail from this remailer: /blockme.txt.\n\
         Packets are posted to /collector.py/msg.\n",
        name = config.node.name
    )
}

/// The server task and what it serves on.
struct Serving {
    /// The TCP address (direct transport).
    listen: Option<std::net::SocketAddr>,
    /// The Tor client and our onion service, kept alive with the node.
    tor: Option<(Arc<TorTransport>, Arc<OnionService>)>,
    /// The task accepting connections.
    task: JoinHandle<()>,
}

/// Serves `listener` with `server` until `stop` is cancelled.
fn serve<C: crate::transport::Collector>(
    server: Server<C>,
    listener: Listener,
    stop: CancellationToken,
) -> Serving {
    match listener {
        Listener::Tcp(l) => Serving {
            listen: l.local_addr().ok(),
            tor: None,
            task: tokio::spawn(async move { server.serve_tcp(l).await }),
        },
        Listener::Onion {
            tor,
            mut incoming,
            service,
        } => {
            let task = tokio::spawn(async move {
                loop {
                    let stream = tokio::select! {
                        _ = stop.cancelled() => break,
                        s = incoming.accept_with_circuit() => s,
                    };
                    let Some((stream, circuit)) = stream else {
                        break;
                    };
                    let server = server.clone();
                    let source = Source::Circuit(circuit.0);
                    tokio::spawn(async move {
                        if let Err(e) = server.serve_connection_from(stream, source).await {
                            debug!("onion connection: {e}");
                        }
                    });
                }
            });
            Serving {
                listen: None,
                tor: Some((tor, service)),
                task,
            }
        }
    }
}

/// Opens the configured transport: the dialer for peers, where packets
/// come in, and our published address.
async fn open_transport(
    config: &Config,
    progress: tokio::sync::watch::Sender<mimix_tor::BootstrapProgress>,
) -> Result<(Arc<dyn Dialer>, Listener, String), NodeError> {
    let t = &config.transport;
    match t.kind {
        TransportKind::Direct => {
            warn!(
                "transport is 'direct': plain HTTP without Tor, NOT anonymous (development and tests only)"
            );
            let io = |source| NodeError::Io {
                op: "listening on",
                path: PathBuf::from(t.listen.to_string()),
                source,
            };
            let listener = tokio::net::TcpListener::bind(t.listen).await.map_err(io)?;
            let local = listener.local_addr().map_err(io)?;
            let address = config
                .node
                .address
                .clone()
                .unwrap_or_else(|| format!("http://{local}"));
            Ok((Arc::new(LoopbackDialer), Listener::Tcp(listener), address))
        }
        TransportKind::Tor => open_tor(config, progress).await,
    }
}

/// Starts Arti (publishing its bootstrap on `tx`) and our onion service.
async fn open_tor(
    config: &Config,
    tx: tokio::sync::watch::Sender<mimix_tor::BootstrapProgress>,
) -> Result<(Arc<dyn Dialer>, Listener, String), NodeError> {
    let t = &config.transport;
    info!("starting the embedded Tor client");
    let progress = tokio::spawn(show_progress(tx.subscribe()));
    let started = TorTransport::start_with_progress(&config.tor, tx).await;
    progress.abort();
    let tor = Arc::new(
        started
            .map_err(|e| NodeError::Transport(e.to_string()))?
            .with_dial_timeout(t.connect_timeout),
    );
    let (onion, incoming, service) = tor
        .launch_onion_service(&config.tor.service_nickname)
        .await
        .map_err(|e| NodeError::Transport(e.to_string()))?;
    let address = config
        .node
        .address
        .clone()
        .unwrap_or_else(|| format!("http://{onion}"));
    let path = config.data_dir().join(ADDRESS_FILE);
    std::fs::write(&path, format!("{address}\n")).map_err(|source| NodeError::Io {
        op: "writing",
        path,
        source,
    })?;
    info!("onion service launched");
    let dialer: Arc<dyn Dialer> = if t.allow_clearnet_hops {
        Arc::new(TorDialer::allowing_clearnet(tor.clone()))
    } else {
        Arc::new(TorDialer::new(tor.clone()))
    };
    let listener = Listener::Onion {
        tor,
        incoming,
        service: Arc::new(service),
    };
    Ok((dialer, listener, address))
}

/// Shows bootstrap progress on a terminal (the Tor crate also logs it).
async fn show_progress(mut rx: tokio::sync::watch::Receiver<mimix_tor::BootstrapProgress>) {
    use std::io::{IsTerminal, Write};
    if !std::io::stderr().is_terminal() {
        return;
    }
    while rx.changed().await.is_ok() {
        let p = rx.borrow().clone();
        let mut err = std::io::stderr();
        let _ = write!(
            err,
            "\rTor bootstrap: {:>3}% {:<60}",
            p.percent, p.description
        );
        if p.ready {
            let _ = writeln!(err);
        }
        let _ = err.flush();
    }
}
