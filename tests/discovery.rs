//! The directory learning a network by itself: in-process nodes on
//! loopback (the direct transport) sharing one manual clock that the test
//! moves forward quickly, so that hours of fetch and ping schedules pass
//! in seconds.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::path::Path;
use std::sync::Arc;
use std::time::{Duration, Instant};

use mimix::clock::{Clock, ManualClock};
use mimix::config::Config;
use mimix::directory::pinger::unix;
use mimix::node::Node;
use mimix::transport::TransportKind;

/// A node with fast pools and short schedules, seeded with `seeds`.
fn config(dir: &Path, i: usize, seeds: &[String]) -> Config {
    let mut c = Config::default_for(&dir.join(format!("n{i}")));
    c.node.name = format!("n{i}");
    c.transport.kind = TransportKind::Direct;
    c.transport.listen = ([127, 0, 0, 1], 0).into();
    c.keys.bits = 2048;
    c.pool.interval = Duration::from_secs(1);
    c.pool.min = 0;
    c.pool.rate = 1.0;
    c.dummies.enabled = false;
    c.directory.seeds = seeds.to_vec();
    c.directory.refresh = Duration::from_secs(120);
    c.directory.concurrency = 8;
    c.pinger.interval = Duration::from_secs(60);
    c.outbound.retry_initial = Duration::from_secs(1);
    c.validate().unwrap();
    c
}

/// Moves `clock` on by `step` every `every` of real time, until `done`.
async fn run_clock(
    clock: &ManualClock,
    step: Duration,
    every: Duration,
    limit: Duration,
    mut done: impl FnMut() -> bool,
) -> Duration {
    let started = Instant::now();
    while !done() {
        assert!(started.elapsed() < limit, "not done within {limit:?}");
        tokio::time::sleep(every).await;
        clock.advance(step);
    }
    started.elapsed()
}

/// How many other nodes each node knows alive.
fn known(nodes: &[Node], clock: &ManualClock) -> Vec<usize> {
    let now = unix(clock.now());
    nodes
        .iter()
        .map(|n| {
            let addresses = n.directory().addresses(now);
            nodes
                .iter()
                .filter(|m| {
                    m.address() != n.address() && addresses.iter().any(|a| a == m.address())
                })
                .count()
        })
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn twenty_one_nodes_from_one_seed_know_each_other() {
    const N: usize = 21;
    let dir = tempfile::tempdir().unwrap();
    let clock = ManualClock::at_epoch_day(20_786);
    let mut nodes = Vec::new();
    let first = Node::start(config(dir.path(), 0, &[]), Arc::new(clock.clone()))
        .await
        .unwrap();
    let seed = vec![first.address().to_owned()];
    nodes.push(first);
    for i in 1..N {
        let node = Node::start(config(dir.path(), i, &seed), Arc::new(clock.clone()))
            .await
            .unwrap();
        nodes.push(node);
    }
    let took = run_clock(
        &clock,
        Duration::from_secs(30),
        Duration::from_millis(100),
        Duration::from_secs(120),
        || known(&nodes, &clock).iter().all(|k| *k == N - 1),
    )
    .await;
    eprintln!(
        "discovery: {N} nodes from one seed know each other after {took:.1?} ({} s of node time)",
        unix(clock.now()) - 20_786 * 86_400 - 43_200
    );
    // Pings came back: every node has measured the seed.
    let now = unix(clock.now());
    for n in &nodes[1..] {
        let rows = n.directory().stats_rows(now);
        let seed = rows.get(nodes[0].address()).unwrap();
        assert!(
            seed.reliability_permille.is_some(),
            "{} measured nothing",
            n.address()
        );
    }
    for n in &nodes {
        n.stop_token().cancel();
    }
    for n in nodes {
        n.wait().await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_stopped_remailer_dies_then_is_forgotten() {
    let dir = tempfile::tempdir().unwrap();
    let clock = ManualClock::at_epoch_day(20_786);
    let a = Node::start(config(dir.path(), 0, &[]), Arc::new(clock.clone()))
        .await
        .unwrap();
    let seed = vec![a.address().to_owned()];
    let b = Node::start(config(dir.path(), 1, &seed), Arc::new(clock.clone()))
        .await
        .unwrap();
    let c = Node::start(config(dir.path(), 2, &seed), Arc::new(clock.clone()))
        .await
        .unwrap();
    let nodes = vec![a, b, c];
    run_clock(
        &clock,
        Duration::from_secs(30),
        Duration::from_millis(100),
        Duration::from_secs(60),
        || known(&nodes, &clock).iter().all(|k| *k == 2),
    )
    .await;
    let mut nodes = nodes;
    let gone = nodes.pop().unwrap();
    let gone_address = gone.address().to_owned();
    gone.stop_token().cancel();
    gone.wait().await;
    // Two days of failed fetches: dead for the others.
    let (dead_after, forget_after) = {
        let c = config(dir.path(), 9, &[]);
        (c.directory.dead_after, c.directory.forget_after)
    };
    let dead_at = unix(clock.now()) + dead_after.as_secs();
    run_clock(
        &clock,
        Duration::from_secs(600),
        Duration::from_millis(20),
        Duration::from_secs(60),
        || unix(clock.now()) > dead_at,
    )
    .await;
    let now = unix(clock.now());
    for n in &nodes {
        assert!(
            !n.directory().addresses(now).contains(&gone_address),
            "still alive"
        );
        assert!(
            n.directory().knows(&gone_address),
            "dead is not forgotten yet"
        );
    }
    // Forgotten by the node that learnt it, kept (dead) by... every node
    // learnt it by discovery, so both forget it after forget_after.
    let forget_at = now + forget_after.as_secs();
    clock.set(std::time::UNIX_EPOCH + Duration::from_secs(forget_at + 1));
    run_clock(
        &clock,
        Duration::from_secs(600),
        Duration::from_millis(50),
        Duration::from_secs(90),
        || nodes.iter().all(|n| !n.directory().knows(&gone_address)),
    )
    .await;
    for n in &nodes {
        n.stop_token().cancel();
    }
    for n in nodes {
        n.wait().await;
    }
}
