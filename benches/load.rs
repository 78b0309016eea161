//! Load run on loopback: how many packets per second one node accepts
//! (HTTP, dearmour, RSA-4096 peel, replay log and pool written with fsync
//! before the 200), one client at a time and many at once (when the
//! committer writes several packets per fsync); and the store alone, one
//! fsync per packet against one per batch.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::sync::Arc;
use std::time::{Duration, Instant};

use mimix::clock::{Clock, SystemClock};
use mimix::config::Config;
use mimix::node::Node;
use mimix::store::{Inbound, PoolItem, Store};
use mimix::transport::TransportKind;
use mimix::transport::{ClientLimits, LoopbackDialer, post_packet};
use mimix_packet::{ExitType, Hop, RemailerConf, armour, build_message};

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
        replay_expires: mimix::clock::Clock::now(&mimix::clock::SystemClock)
            + Duration::from_secs(86400),
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

async fn node_rates(quick: bool) {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("node");
    let mut c = Config::default_for(&data);
    c.transport.kind = TransportKind::Direct;
    c.transport.listen = ([127, 0, 0, 1], 0).into();
    c.transport.max_connections = 256;
    c.pool.interval = Duration::from_secs(3600);
    c.dummies.enabled = false;
    c.validate().unwrap();
    let rss_before = rss_kib();
    let node = Node::start(c, Arc::new(SystemClock)).await.unwrap();
    println!(
        "RSS of the bench process with an idle node (RSA-4096 key): {} MiB (before start {} MiB)",
        rss_kib() / 1024,
        rss_before / 1024
    );
    let base = node.address().to_owned();
    let today = SystemClock.epoch_day();
    let conf = RemailerConf::parse_valid(&node.remailer_conf(), today).unwrap();
    let hop = Hop {
        key: conf.key.clone(),
        address: base.clone(),
    };
    let next = Hop {
        key: conf.key,
        address: "http://127.0.0.1:9".into(),
    };
    let n = if quick { 8 } else { 600 };
    let rng = &mut rand::rng();
    let texts: Vec<String> = (0..2 * n)
        .map(|_| {
            armour(
                &build_message(
                    rng,
                    &[hop.clone(), next.clone()],
                    ExitType::Smtp,
                    b"To: a@b.example\n\nx",
                    today,
                )
                .unwrap()[0],
            )
        })
        .collect();
    let texts = Arc::new(texts);
    for (label, conc, range) in [("1 client ", 1usize, 0..n), ("32 clients", 32, n..2 * n)] {
        let t = Instant::now();
        let next_i = Arc::new(std::sync::atomic::AtomicUsize::new(range.start));
        let mut tasks = Vec::new();
        for _ in 0..conc {
            let (texts, base, next_i, end) =
                (texts.clone(), base.clone(), next_i.clone(), range.end);
            tasks.push(tokio::spawn(async move {
                loop {
                    let i = next_i.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
                    if i >= end {
                        break;
                    }
                    post_packet(&LoopbackDialer, &base, &texts[i], &ClientLimits::default())
                        .await
                        .unwrap();
                }
            }));
        }
        for t in tasks {
            t.await.unwrap();
        }
        let rate = n as f64 / t.elapsed().as_secs_f64();
        println!(
            "node accepts over loopback HTTP, {label}: {rate:>6.0} packets/s (RSA-4096, fsync before 200)"
        );
    }
    println!("RSS after the load: {} MiB", rss_kib() / 1024);
    node.stop_token().cancel();
    node.wait().await;
}

fn main() {
    let quick = !std::env::args().any(|a| a == "--bench");
    println!(
        "\nLoad run on loopback ({})",
        if quick { "quick check" } else { "full" }
    );
    store_rates(quick);
    let rt = tokio::runtime::Runtime::new().unwrap();
    rt.block_on(node_rates(quick));
}
