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
    // A newcomer knowing one of them learns the whole network.
    let t_node = unix(clock.now());
    let newcomer = Node::start(
        config(dir.path(), N, &[nodes[7].address().to_owned()]),
        Arc::new(clock.clone()),
    )
    .await
    .unwrap();
    let joined = run_clock(
        &clock,
        Duration::from_secs(30),
        Duration::from_millis(100),
        Duration::from_secs(120),
        || {
            let known = newcomer.directory().addresses(unix(clock.now()));
            nodes.iter().all(|n| known.iter().any(|a| a == n.address()))
        },
    )
    .await;
    eprintln!(
        "discovery: a newcomer knowing one node learnt all {N} after {joined:.1?} ({} s of node time)",
        unix(clock.now()) - t_node
    );
    // Directory traffic: conf fetches per node per simulated day.
    let day_share = (unix(clock.now()) - (20_786 * 86_400 + 43_200)) as f64 / 86_400.0;
    let fetched: Vec<u64> = nodes
        .iter()
        .map(|n| {
            let s = n.directory().snapshot(unix(clock.now()));
            s.remailers.len() as u64
        })
        .collect();
    let conf_bytes: usize = nodes[0]
        .directory()
        .snapshot(unix(clock.now()))
        .remailers
        .iter()
        .map(|r| r.conf.len())
        .sum::<usize>()
        / N.max(1);
    eprintln!(
        "discovery: {} remailers each, mean conf {conf_bytes} bytes, over {day_share:.2} days of node time",
        fetched[0]
    );
    newcomer.stop_token().cancel();
    newcomer.wait().await;
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

/// A free port on 127.0.0.1.
fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_rotated_key_replaces_the_old_one_in_the_others_keyring() {
    let dir = tempfile::tempdir().unwrap();
    let clock = ManualClock::at_epoch_day(20_786);
    let (pa, pb) = (free_port(), free_port());
    let url = |p: u16| format!("http://127.0.0.1:{p}");
    let node = |i: usize, port: u16, seed: String| {
        let mut c = config(dir.path(), i, &[seed]);
        c.transport.listen = ([127, 0, 0, 1], port).into();
        c
    };
    let a = Node::start(node(0, pa, url(pb)), Arc::new(clock.clone()))
        .await
        .unwrap();
    let b = Node::start(node(1, pb, url(pa)), Arc::new(clock.clone()))
        .await
        .unwrap();
    let key_of_b = |a: &Node| a.directory().hop(&url(pb)).map(|h| h.key.key_id());
    run_clock(
        &clock,
        Duration::from_secs(30),
        Duration::from_millis(100),
        Duration::from_secs(60),
        || key_of_b(&a).is_some(),
    )
    .await;
    let old = key_of_b(&a).unwrap();
    // B is away until its key is due for renewal (28 days before it
    // expires); it makes its successor when it starts again.
    b.stop_token().cancel();
    b.wait().await;
    let keys = node(1, pb, url(pa)).keys;
    let renew_day = 20_786 + keys.lifetime_days() - keys.renew_before_days() + 1;
    clock.set(ManualClock::at_epoch_day(renew_day).now());
    let b = Node::start(node(1, pb, url(pa)), Arc::new(clock.clone()))
        .await
        .unwrap();
    run_clock(
        &clock,
        Duration::from_secs(30),
        Duration::from_millis(100),
        Duration::from_secs(60),
        || key_of_b(&a).is_some_and(|k| k != old),
    )
    .await;
    let retired = a.directory().with_keyring(|k| {
        k.get(&url(pb))
            .unwrap()
            .retired
            .iter()
            .map(|r| r.key_id.clone())
            .collect::<Vec<_>>()
    });
    assert_eq!(
        retired,
        vec![old.to_hex()],
        "the old key is remembered as retired"
    );
    for n in [a, b] {
        n.stop_token().cancel();
        n.wait().await;
    }
}

/// `GET path` from the node listening on `port`: status and body.
async fn get(port: u16, path: &str) -> (u16, String) {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let mut s = tokio::net::TcpStream::connect(("127.0.0.1", port))
        .await
        .unwrap();
    let req = format!("GET {path} HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\nConnection: close\r\n\r\n");
    s.write_all(req.as_bytes()).await.unwrap();
    let mut raw = Vec::new();
    s.read_to_end(&mut raw).await.unwrap();
    let text = String::from_utf8_lossy(&raw).into_owned();
    let (head, body) = text.split_once("\r\n\r\n").unwrap();
    (
        head.split(' ').nth(1).unwrap().parse().unwrap(),
        body.to_owned(),
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_public_pages_and_nothing_else() {
    let dir = tempfile::tempdir().unwrap();
    let clock = ManualClock::at_epoch_day(20_786);
    let key = dir.path().join("adminkey.asc");
    std::fs::write(&key, "-----BEGIN PGP PUBLIC KEY BLOCK-----\n...\n").unwrap();
    let mut c = config(dir.path(), 0, &[]);
    c.node.admin_key_file = Some(key);
    let with_key = Node::start(c, Arc::new(clock.clone())).await.unwrap();
    let bare = Node::start(config(dir.path(), 1, &[]), Arc::new(clock.clone()))
        .await
        .unwrap();
    let port = with_key.listen_addr().unwrap().port();
    let (status, help) = get(port, "/help.txt").await;
    assert_eq!(status, 200);
    assert!(help.contains("This is n0, a Mimix remailer"), "{help}");
    let (status, stats) = get(port, "/stats.txt").await;
    assert_eq!(status, 200);
    mimix::directory::stats::parse_text(&stats).unwrap();
    assert_eq!(get(port, "/adminkey.txt").await.0, 200);
    assert!(
        get(port, "/adminkey.txt")
            .await
            .1
            .starts_with("-----BEGIN PGP")
    );
    assert_eq!(get(port, "/remailer-conf.txt").await.0, 200);
    let bare_port = bare.listen_addr().unwrap().port();
    assert_eq!(
        get(bare_port, "/adminkey.txt").await.0,
        404,
        "no key configured"
    );
    for path in [
        "/",
        "/status.json",
        "/metrics",
        "/stats.txt/../keys",
        "/directory.json",
    ] {
        assert_eq!(get(port, path).await.0, 404, "{path}");
    }
    for n in [with_key, bare] {
        n.stop_token().cancel();
        n.wait().await;
    }
}
