//! Slow-loris against a real `mimix run` process with its default
//! transport limits: a thousand real TCP connections that trickle a byte a
//! second (half of them their request head, half their body after a
//! prompt head), reconnecting whenever the node drops them, while
//! legitimate posts keep arriving. Once from a thousand different
//! addresses (as a thousand Tor circuits would be), once from one address.
//! Every legitimate post must be served, with a bounded delay.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod support;

use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use support::hop::{Mode, StandIn};
use support::net::{counter, post_packet, wait_until};
use support::solo::Solo;
use tokio::io::AsyncWriteExt;

/// Slow connections kept open.
const SLOW: usize = 1000;
/// Legitimate posts made during each attack.
const POSTS: usize = 20;
/// The longest a legitimate post may take, retries on 503 included.
const BOUND: Duration = Duration::from_secs(10);

const HEAD: &[u8] = b"POST /collector.py/msg HTTP/1.1\r\nHost: x\r\n\
Content-Type: application/x-www-form-urlencoded\r\nContent-Length: 30000\r\n\r\n";

/// What the attackers did.
#[derive(Default)]
struct Attack {
    stop: AtomicBool,
    open: AtomicUsize,
    peak: AtomicUsize,
    connections: AtomicUsize,
}

/// One attacker: connects from `source`, trickles a byte a second (the
/// head, or after a prompt head the body), and starts over when dropped.
async fn loris(node: SocketAddr, source: IpAddr, slow_head: bool, attack: Arc<Attack>) {
    while !attack.stop.load(Ordering::SeqCst) {
        let socket = tokio::net::TcpSocket::new_v4().unwrap();
        socket.bind(SocketAddr::new(source, 0)).unwrap();
        let Ok(mut conn) = socket.connect(node).await else {
            tokio::time::sleep(Duration::from_millis(200)).await;
            continue;
        };
        attack.connections.fetch_add(1, Ordering::SeqCst);
        let now = attack.open.fetch_add(1, Ordering::SeqCst) + 1;
        attack.peak.fetch_max(now, Ordering::SeqCst);
        if !slow_head && conn.write_all(HEAD).await.is_err() {
            attack.open.fetch_sub(1, Ordering::SeqCst);
            continue;
        }
        let trickle: &[u8] = if slow_head { HEAD } else { &[b'a'; 30_000] };
        for b in trickle {
            if attack.stop.load(Ordering::SeqCst) || conn.write_all(&[*b]).await.is_err() {
                break;
            }
            tokio::time::sleep(Duration::from_secs(1)).await;
        }
        attack.open.fetch_sub(1, Ordering::SeqCst);
    }
}

/// Runs `SLOW` attackers from `source(i)` while `POSTS` legitimate posts
/// are made from 127.0.0.1; returns each post's delay and what the
/// attackers did.
fn under_attack(
    solo: &Solo,
    packets: &[String],
    source: impl Fn(usize) -> IpAddr,
) -> (Vec<Duration>, Arc<Attack>) {
    let rt = tokio::runtime::Runtime::new().unwrap();
    let attack = Arc::new(Attack::default());
    let node: SocketAddr = ([127, 0, 0, 1], solo.node.port).into();
    for i in 0..SLOW {
        rt.spawn(loris(node, source(i), i % 2 == 0, attack.clone()));
    }
    wait_until(
        Duration::from_secs(20),
        Duration::from_millis(50),
        "the slow connections open",
        || (attack.connections.load(Ordering::SeqCst) >= SLOW).then_some(()),
    );
    std::thread::sleep(Duration::from_secs(1));
    let mut delays = Vec::new();
    for p in packets {
        let t = Instant::now();
        wait_until(
            BOUND,
            Duration::from_millis(100),
            "a legitimate post served",
            || match post_packet(solo.node.port, p) {
                Some((200, _)) => Some(()),
                Some((503, _)) | None => None,
                Some((status, body)) => panic!("refused with {status}: {body}"),
            },
        );
        delays.push(t.elapsed());
        std::thread::sleep(Duration::from_millis(300));
    }
    attack.stop.store(true, Ordering::SeqCst);
    rt.shutdown_timeout(Duration::from_secs(2));
    (delays, attack)
}

fn summary(delays: &[Duration]) -> (Duration, Duration) {
    let mut d = delays.to_vec();
    d.sort();
    (d[d.len() / 2], *d.last().unwrap())
}

#[test]
fn evidence_a_thousand_slow_connections_do_not_keep_legitimate_posts_out() {
    let files = support::proc::raise_open_files();
    assert!(
        files >= 4 * SLOW as u64,
        "need more open files than {files}"
    );
    let hop = StandIn::start(Mode::Accept, Duration::ZERO);
    // The default [transport] limits: 1024 connections, 32 per source,
    // 1 KiB/s after 5 s.
    let solo = Solo::start(None, "", "[pool]\ninterval = \"1s\"\nmin = 0\nrate = 1.0\n");
    let packets = solo.packets_to(&hop.url(), 2 * POSTS);

    // A thousand sources (127.1.0.1 ...): like a thousand Tor circuits.
    let many = |i: usize| IpAddr::V4(Ipv4Addr::new(127, 1, (i / 250) as u8, (i % 250 + 1) as u8));
    let (delays, attack) = under_attack(&solo, &packets[..POSTS], many);
    let (median, max) = summary(&delays);
    eprintln!(
        "slow loris, {SLOW} addresses: {} of {POSTS} legitimate posts served, median {median:.2?}, \
         longest {max:.2?}; at most {} slow connections open at once, {} made in all (the node \
         drops them after ~5 s below 1 KiB/s)",
        delays.len(),
        attack.peak.load(Ordering::SeqCst),
        attack.connections.load(Ordering::SeqCst)
    );
    assert_eq!(delays.len(), POSTS);
    assert!(
        attack.connections.load(Ordering::SeqCst) > SLOW,
        "the node dropped slow connections (they reconnected)"
    );

    // A thousand from one address: that source gets its 32 slots.
    let one = |_| IpAddr::V4(Ipv4Addr::new(127, 0, 0, 2));
    let (delays, attack) = under_attack(&solo, &packets[POSTS..], one);
    let (median1, max1) = summary(&delays);
    eprintln!(
        "slow loris, 1 address: {} of {POSTS} legitimate posts served, median {median1:.2?}, \
         longest {max1:.2?}; {} connections made in all",
        delays.len(),
        attack.connections.load(Ordering::SeqCst)
    );
    assert_eq!(delays.len(), POSTS);

    wait_until(
        Duration::from_secs(30),
        Duration::from_millis(100),
        "the legitimate packets at the next hop",
        || (hop.packets() == 2 * POSTS).then_some(()),
    );
    let mut solo = solo;
    let s = solo.node.stopped_status();
    assert_eq!(counter(&s, "packets_accepted"), 2 * POSTS as u64, "{s}");
}
