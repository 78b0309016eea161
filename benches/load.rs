//! Load run on loopback, in one go:
//!
//! * the store alone: one fsync per packet against one per batch;
//! * the node's ingest rate over loopback HTTP (dearmour, RSA-4096 peel,
//!   replay log and pool written with fsync before the 200), one client and
//!   32 at once, against the same process's single-thread hop rate: the
//!   ratio of ingest to cores x hop rate (goal >= 0.8);
//! * forwarding through a single next hop (a counting HTTP server in this
//!   process answering 200): how fast the outbound queue drains a pool
//!   round into it, and end to end (post, peel, pool, forward) as packets
//!   stream in, each against the ingest rate (goal >= 0.8);
//! * RSS and disk growth of a real node process (the `mimix` binary) per
//!   1,000 pooled packets;
//! * RSS across repeated load runs of a real node process, with fjall's own
//!   memory defaults (as before the `[store]` table) and with mimix's. The
//!   node runs the `mimix` binary as built, with jemalloc (glibc's malloc
//!   kept growing: see `src/main.rs`).
//!
//! `cargo bench --bench load` runs it in full (`-- forwarding`, say, runs
//! one part: `store`, `forwarding`, `growth`, `rss`); without `--bench`
//! (as `cargo test --benches` does) it runs a quick check.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod common;

use std::convert::Infallible;
use std::path::Path;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use hyper::{Request, Response};
use hyper_util::rt::TokioIo;
use mimix::clock::{Clock, SystemClock};
use mimix::config::Config;
use mimix::node::Node;
use mimix::store::{Inbound, PoolItem, Store, StoreConfig};
use mimix::transport::TransportKind;
use mimix::transport::{ClientLimits, LoopbackDialer, post_packet_form};
use mimix_packet::{ExitType, Hop, Outcome, RemailerConf, TimeWindow, armour, build_message};
use mimix_packet::{dearmour, peel};

const MIB: u64 = 1024 * 1024;

fn rss_kib() -> u64 {
    std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|s| {
            s.lines()
                .find(|l| l.starts_with("VmRSS:"))
                .and_then(|l| l.split_whitespace().nth(1).and_then(|v| v.parse().ok()))
        })
        .unwrap_or(0)
}

fn disk_bytes(dir: &Path) -> u64 {
    use std::os::unix::fs::MetadataExt;
    let mut total = 0;
    let mut stack = vec![dir.to_path_buf()];
    while let Some(d) = stack.pop() {
        for e in std::fs::read_dir(&d).into_iter().flatten().flatten() {
            let Ok(m) = e.metadata() else { continue };
            if m.is_dir() {
                stack.push(e.path());
            } else {
                total += m.blocks() * 512;
            }
        }
    }
    total
}

fn store_rates(quick: bool) {
    let dir = tempfile::tempdir().unwrap();
    let store = Store::open(dir.path()).unwrap();
    let n = if quick { 64 } else { 2000 };
    let item = |i: u64| Inbound {
        packet_id: {
            let mut id = [0u8; 16];
            id[..8].copy_from_slice(&i.to_be_bytes());
            id
        },
        replay_expires: SystemClock.now() + Duration::from_secs(86400),
        digest: Some([7u8; 32]),
        item: PoolItem::Forward {
            next_hop: "http://x.onion".into(),
            packet: vec![7u8; 20480],
        },
    };
    let t = Instant::now();
    for i in 0..n {
        store.accept(&item(i)).unwrap();
    }
    let single = n as f64 / t.elapsed().as_secs_f64();
    let t = Instant::now();
    let items: Vec<Inbound> = (n..2 * n).map(item).collect();
    for chunk in items.chunks(64) {
        store.accept_batch(chunk).unwrap();
    }
    let batched = n as f64 / t.elapsed().as_secs_f64();
    println!("store accept, fsync per packet:       {single:>8.0} packets/s");
    println!("store accept, fsync per 64 packets:   {batched:>8.0} packets/s");
}

/// The single-thread hop rate: dearmour, peel (RSA-4096 and AES) and
/// re-armour, one packet after another.
fn hop_rate(quick: bool) -> f64 {
    let key = common::secret(4096);
    let text = armour(&common::packet_for(&key));
    let keys = vec![key];
    let window = TimeWindow::new(common::DAY, 14);
    let mut rng = common::rng();
    let n = if quick { 3 } else { 200 };
    let t = Instant::now();
    for _ in 0..n {
        let p = dearmour(&text).unwrap();
        match peel(&p, &keys, &window, &mut rng).unwrap().outcome {
            Outcome::Forward { packet, .. } => {
                std::hint::black_box(armour(&packet));
            }
            Outcome::Exit(_) => unreachable!(),
        }
    }
    n as f64 / t.elapsed().as_secs_f64()
}

/// A next hop that answers every post with 200 and counts them.
struct CountingHop {
    url: String,
    count: Arc<AtomicUsize>,
    /// When each post arrived, in arrival order.
    arrivals: Arc<std::sync::Mutex<Vec<Instant>>>,
}

async fn counting_hop() -> CountingHop {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("http://{}", listener.local_addr().unwrap());
    let count = Arc::new(AtomicUsize::new(0));
    let arrivals = Arc::new(std::sync::Mutex::new(Vec::new()));
    let (c, a) = (count.clone(), arrivals.clone());
    tokio::spawn(async move {
        loop {
            let Ok((stream, _)) = listener.accept().await else {
                continue;
            };
            let (c, a) = (c.clone(), a.clone());
            tokio::spawn(async move {
                let service =
                    hyper::service::service_fn(move |req: Request<hyper::body::Incoming>| {
                        let (c, a) = (c.clone(), a.clone());
                        async move {
                            // Only packets count: the node also fetches
                            // the next hop's remailer-conf when it first
                            // hears of it.
                            let post = req.method() == hyper::Method::POST;
                            let _ = req.into_body().collect().await;
                            if post {
                                a.lock().unwrap().push(Instant::now());
                                c.fetch_add(1, Ordering::SeqCst);
                            }
                            Ok::<_, Infallible>(Response::new(Full::new(Bytes::from_static(
                                b"Mimix message submitted",
                            ))))
                        }
                    });
                let _ = hyper::server::conn::http1::Builder::new()
                    .serve_connection(TokioIo::new(stream), service)
                    .await;
            });
        }
    });
    CountingHop {
        url,
        count,
        arrivals,
    }
}

/// A node on loopback with the given pool interval and store settings,
/// and packets for it whose next hop is `next`.
async fn start_node(dir: &Path, interval: Duration, store: StoreConfig) -> Node {
    let mut c = Config::default_for(&dir.join("node"));
    c.node.name = "bench".into();
    c.transport.kind = TransportKind::Direct;
    c.transport.listen = ([127, 0, 0, 1], 0).into();
    // All 32 clients come from 127.0.0.1.
    c.transport.max_connections_per_source = c.transport.max_connections;
    c.pool.interval = interval;
    c.pool.min = 0;
    c.pool.rate = 1.0;
    c.dummies.enabled = false;
    c.store = store;
    c.validate().unwrap();
    Node::start(c, Arc::new(SystemClock)).await.unwrap()
}

fn packets(node: &Node, next: &str, n: usize) -> Vec<String> {
    packets_for(&node.remailer_conf(), node.address(), next, n)
}

/// `n` packets for the remailer of `conf` at `address`, next hop `next`.
fn packets_for(conf: &str, address: &str, next: &str, n: usize) -> Vec<String> {
    let today = SystemClock.epoch_day();
    let conf = RemailerConf::parse_valid(conf, today).unwrap();
    let me = Hop {
        key: conf.key.clone(),
        address: address.to_owned(),
    };
    let next = Hop {
        key: conf.key,
        address: next.to_owned(),
    };
    let rng = &mut rand::rng();
    (0..n)
        .map(|i| {
            let body = format!("To: a@b.example\n\nload {i}");
            let p = build_message(
                rng,
                &[me.clone(), next.clone()],
                ExitType::Smtp,
                body.as_bytes(),
                today,
            )
            .unwrap();
            armour(&p[0])
        })
        .collect()
}

/// Posts `texts` with `clients` concurrent clients; returns the rate.
/// The request bodies are form-encoded before the clock starts, so the
/// clients (in this process, on the same cores) cost the node as little
/// as a client can: one connection per packet, as peers post.
async fn post_all(base: &str, texts: Arc<Vec<String>>, clients: usize) -> f64 {
    let bodies: Arc<Vec<Bytes>> = Arc::new(
        texts
            .iter()
            .map(|t| Bytes::from(mimix::transport::form::encode_packet_form(t)))
            .collect(),
    );
    let t = Instant::now();
    let next = Arc::new(AtomicUsize::new(0));
    let mut tasks = Vec::new();
    for _ in 0..clients {
        let (bodies, base, next) = (bodies.clone(), base.to_owned(), next.clone());
        tasks.push(tokio::spawn(async move {
            loop {
                let i = next.fetch_add(1, Ordering::SeqCst);
                let Some(body) = bodies.get(i) else { break };
                post_packet_form(
                    &LoopbackDialer,
                    &base,
                    body.clone(),
                    &ClientLimits::default(),
                )
                .await
                .unwrap();
            }
        }));
    }
    for t in tasks {
        t.await.unwrap();
    }
    texts.len() as f64 / t.elapsed().as_secs_f64()
}

async fn wait_for(hop: &CountingHop, n: usize) {
    let t = Instant::now();
    while hop.count.load(Ordering::SeqCst) < n {
        assert!(t.elapsed() < Duration::from_secs(600), "forwarding stalled");
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
}

/// Ingest, forwarding and growth per 1,000 pooled packets.
async fn node_rates(quick: bool, hop_rate: f64) {
    let dir = tempfile::tempdir().unwrap();
    let hop = counting_hop().await;
    let n = if quick { 8 } else { 1000 };
    // The first round comes when every packet is in: the pool holds all
    // of them, then one round releases them at once.
    let interval = Duration::from_secs(if quick { 3 } else { 30 });
    let rss_before = rss_kib();
    let node = start_node(dir.path(), interval, StoreConfig::default()).await;
    let started = Instant::now();
    println!(
        "RSS of the bench process with an idle node (RSA-4096 key): {} MiB (before start {} MiB)",
        rss_kib() / 1024,
        rss_before / 1024
    );
    let texts = Arc::new(packets(&node, &hop.url, 2 * n));
    let one = Arc::new(texts[..n / 2].to_vec());
    let many = Arc::new(texts[n / 2..].to_vec());
    let single = post_all(node.address(), one, 1).await;
    let ingest = post_all(node.address(), many, 32).await;
    let overran = started.elapsed() >= interval;
    let cores = std::thread::available_parallelism().map_or(2, |n| n.get());
    let per_peer = mimix::node::OutboundConfig::default().per_peer;
    println!(
        "node accepts over loopback HTTP, 1 client:   {single:>6.0} packets/s (RSA-4096, fsync before 200)"
    );
    println!(
        "node accepts over loopback HTTP, 32 clients: {ingest:>6.0} packets/s (RSA-4096, fsync before 200)"
    );
    println!("single-thread hop rate (same process):       {hop_rate:>6.0} packets/s");
    println!(
        "ingest / ({cores} cores x hop rate):               {:>6.2} (goal >= 0.8)",
        ingest / (cores as f64 * hop_rate)
    );
    // The round releases the whole pool into the outbound queue: the
    // drain rate through one next hop (at most `outbound.per_peer` posts
    // at a time, the default).
    wait_for(&hop, texts.len()).await;
    let arrivals = hop.arrivals.lock().unwrap().clone();
    let drain = arrivals.len() as f64
        / arrivals
            .last()
            .unwrap()
            .duration_since(arrivals[0])
            .as_secs_f64()
            .max(1e-3);
    if overran {
        println!("forwarding, draining a round: not measured (ingest outlasted the first round)");
    } else {
        println!(
            "forwarding to one next hop (per_peer {per_peer}), draining a round: {drain:>6.0} packets/s \
             = {:.2} x ingest (goal >= 0.8)",
            drain / ingest
        );
    }
    node.stop_token().cancel();
    node.wait().await;

    // End to end as packets stream in: 1 s pool rounds while 32 clients
    // post; from the first post to the last packet at the next hop. The
    // pool holds each packet up to one round: a fixed delay, which a
    // stream of ten seconds or so amortises. Also the rate at which
    // packets reach the next hop while the stream lasts (after its first
    // two rounds): forwarding keeping up shows as that rate matching the
    // ingest.
    let n = 8 * n;
    let dir = tempfile::tempdir().unwrap();
    let hop = counting_hop().await;
    let node = start_node(dir.path(), Duration::from_secs(1), StoreConfig::default()).await;
    let texts = Arc::new(packets(&node, &hop.url, n));
    let t = Instant::now();
    let ingest2 = post_all(node.address(), texts.clone(), 32).await;
    let posted = Instant::now();
    wait_for(&hop, n).await;
    let e2e = n as f64 / t.elapsed().as_secs_f64();
    let from = t + Duration::from_secs(2);
    let during = hop
        .arrivals
        .lock()
        .unwrap()
        .iter()
        .filter(|a| (from..posted).contains(*a))
        .count() as f64
        / posted
            .saturating_duration_since(from)
            .as_secs_f64()
            .max(1e-3);
    println!(
        "end to end through one next hop ({n} packets, 1 s rounds): {e2e:>6.0} packets/s \
         = {:.2} x its ingest of {ingest2:.0}/s (goal >= 0.8; up to one pool interval of mixing delay included)",
        e2e / ingest2
    );
    println!(
        "  reaching the next hop while the stream lasts (after 2 s): {during:>6.0} packets/s = {:.2} x ingest",
        during / ingest2
    );
    node.stop_token().cancel();
    node.wait().await;
}

/// A real `mimix run` process (the release binary) on loopback, killed
/// when dropped.
struct NodeProcess {
    child: std::process::Child,
    port: u16,
    address: String,
    conf: String,
    store: std::path::PathBuf,
    _dir: tempfile::TempDir,
}

impl NodeProcess {
    /// Starts a middle node with `interval` pool rounds and `store`
    /// settings, and waits until it serves its conf.
    async fn start(interval: Duration, store: StoreConfig) -> Self {
        let dir = tempfile::tempdir().unwrap();
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap()
            .port();
        let data = dir.path().join("node");
        let config = format!(
            "config_version = 1\n[node]\nname = \"bench\"\ndata_dir = \"{}\"\nlog = \"warn\"\n\
             [transport]\nkind = \"direct\"\nlisten = \"127.0.0.1:{port}\"\n\
             max_connections_per_source = 1024\n\
             [pool]\ninterval = \"{}s\"\nmin = 0\nrate = 1.0\n[dummies]\nenabled = false\n\
             [store]\ncache_size = {}\nwrite_buffer = {}\n",
            data.display(),
            interval.as_secs(),
            store.cache_size,
            store.write_buffer
        );
        let path = dir.path().join("node.toml");
        std::fs::write(&path, config).unwrap();
        let child = std::process::Command::new(env!("CARGO_BIN_EXE_mimix"))
            .args(["run", "--config"])
            .arg(&path)
            .stdin(std::process::Stdio::null())
            .spawn()
            .unwrap();
        let address = format!("http://127.0.0.1:{port}");
        let t = Instant::now();
        let conf = loop {
            match mimix::transport::fetch_conf(&LoopbackDialer, &address, &ClientLimits::default())
                .await
            {
                Ok(conf) => break conf,
                Err(_) if t.elapsed() < Duration::from_secs(120) => {
                    tokio::time::sleep(Duration::from_millis(50)).await;
                }
                Err(e) => panic!("the node did not start: {e}"),
            }
        };
        Self {
            child,
            port,
            address,
            conf,
            store: data.join("store"),
            _dir: dir,
        }
    }

    fn rss_kib(&self) -> u64 {
        std::fs::read_to_string(format!("/proc/{}/status", self.child.id()))
            .ok()
            .and_then(|s| {
                s.lines()
                    .find(|l| l.starts_with("VmRSS:"))
                    .and_then(|l| l.split_whitespace().nth(1).and_then(|v| v.parse().ok()))
            })
            .unwrap_or(0)
    }
}

impl Drop for NodeProcess {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
        let _ = self.port;
    }
}

/// RSS and disk growth of a node process per 1,000 packets it pools.
async fn pooled_growth(quick: bool) {
    let hop = counting_hop().await;
    // No round during the run: every packet stays in the pool.
    let node = NodeProcess::start(Duration::from_secs(3600), StoreConfig::default()).await;
    let n = if quick { 20 } else { 3000 };
    let texts = Arc::new(packets_for(&node.conf, &node.address, &hop.url, n));
    tokio::time::sleep(Duration::from_millis(500)).await;
    let (rss0, disk0) = (node.rss_kib(), disk_bytes(&node.store));
    post_all(&node.address, texts, 32).await;
    tokio::time::sleep(Duration::from_millis(500)).await;
    let (rss1, disk1) = (node.rss_kib(), disk_bytes(&node.store));
    let per = n as f64 / 1000.0;
    println!(
        "node process, {n} packets pooled: RSS {} -> {} MiB ({:+.1} MiB per 1,000), \
         store {:.1} -> {:.1} MiB ({:+.1} MiB per 1,000)",
        rss0 / 1024,
        rss1 / 1024,
        (rss1 as f64 - rss0 as f64) / 1024.0 / per,
        disk0 as f64 / MIB as f64,
        disk1 as f64 / MIB as f64,
        (disk1 as f64 - disk0 as f64) / MIB as f64 / per
    );
}

/// Runs `runs` load runs of `n` packets each through one next hop against
/// a node process with `store` settings and prints its RSS after each.
async fn rss_runs(label: &str, store: StoreConfig, runs: usize, n: usize) {
    let hop = counting_hop().await;
    let node = NodeProcess::start(Duration::from_secs(1), store).await;
    let mut rss = vec![node.rss_kib() / 1024];
    for run in 0..runs {
        let texts = Arc::new(packets_for(&node.conf, &node.address, &hop.url, n));
        post_all(&node.address, texts, 32).await;
        wait_for(&hop, (run + 1) * n).await;
        // Let the last records land.
        tokio::time::sleep(Duration::from_millis(500)).await;
        rss.push(node.rss_kib() / 1024);
    }
    let rss: Vec<String> = rss.iter().map(|r| format!("{r}")).collect();
    println!(
        "node process RSS (MiB) idle, then after each of {runs} runs of {n} packets, {label}: {}",
        rss.join(", ")
    );
}

/// The two store configurations compared across repeated runs.
fn store_config(name: &str) -> StoreConfig {
    match name {
        // What fjall uses when not told otherwise (and mimix used before
        // the [store] table): a 32 MiB block cache, 64 MiB write buffers.
        "fjall-defaults" => StoreConfig {
            cache_size: 32 * MIB,
            write_buffer: 64 * MIB,
            ..StoreConfig::default()
        },
        _ => StoreConfig::default(),
    }
}

/// What each configuration is.
fn store_label(name: &str) -> &'static str {
    match name {
        "fjall-defaults" => "fjall's defaults (32 MiB cache, 64 MiB write buffers)",
        _ => "[store] defaults (8 MiB cache, 4 MiB write buffers)",
    }
}

fn main() {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let quick = !args.iter().any(|a| a == "--bench");
    // `cargo bench --bench load -- forwarding rss` runs only those parts.
    let parts: Vec<&str> = args
        .iter()
        .map(String::as_str)
        .filter(|a| ["store", "forwarding", "growth", "rss"].contains(a))
        .collect();
    let want = |part| parts.is_empty() || parts.contains(&part);
    let (runs, per_run) = if quick { (2, 8) } else { (12, 300) };
    println!(
        "\nLoad run on loopback ({})",
        if quick { "quick check" } else { "full" }
    );
    if want("store") {
        store_rates(quick);
    }
    let rt = tokio::runtime::Runtime::new().unwrap();
    rt.block_on(async {
        if want("forwarding") {
            node_rates(quick, hop_rate(quick)).await;
        }
        if want("growth") {
            pooled_growth(quick).await;
        }
        if want("rss") {
            // Each store configuration in a fresh node process.
            for name in ["fjall-defaults", "bounded"] {
                rss_runs(store_label(name), store_config(name), runs, per_run).await;
            }
        }
    });
}
