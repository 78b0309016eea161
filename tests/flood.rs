//! A flood far over the caps against a real `mimix run` process: while its
//! next hop refuses everything, the outbound queue and then the pool fill
//! to their caps and every further packet is refused with 503 and
//! Retry-After before any RSA work; the node's memory (VmRSS, sampled from
//! `/proc`) stays under a stated bound and its store under its byte caps;
//! once the next hop answers again, everything accepted is delivered and
//! new packets are taken again.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod support;

use std::io::{Read, Write};
use std::net::TcpStream;
use std::time::{Duration, Instant};

use mimix::transport::form::encode_packet_form;
use support::hop::{Mode, StandIn};
use support::net::{counter, post_packet, wait_until};
use support::proc::{RssSampler, disk_bytes};
use support::solo::Solo;

/// Packets posted in the flood: far over the caps below (300 + 300).
const FLOOD: usize = 4000;
/// The caps.
const POOL_MAX: usize = 300;
const QUEUE_MAX: usize = 300;
const CAP_BYTES: u64 = 16 * 1024 * 1024;
/// The node's memory must stay under this (it is about 30-40 MiB idle,
/// with a 2048-bit key, in a debug build).
const RSS_BOUND_MIB: u64 = 100;
/// What the store may take beyond the pool's and the queue's byte caps:
/// fjall's journal (at most 64 MiB) and its tables' overhead.
const STORE_SLACK: u64 = 80 * 1024 * 1024;

/// Posts `packets` from `clients` threads; returns (200s, 503s, others).
fn flood(port: u16, packets: &[String], clients: usize) -> (usize, usize, usize) {
    let next = std::sync::atomic::AtomicUsize::new(0);
    let tally = std::sync::Mutex::new((0, 0, 0));
    std::thread::scope(|s| {
        for _ in 0..clients {
            s.spawn(|| {
                loop {
                    let i = next.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
                    let Some(p) = packets.get(i) else { break };
                    let status = post_packet(port, p).map_or(0, |(s, _)| s);
                    let mut t = tally.lock().unwrap();
                    match status {
                        200 => t.0 += 1,
                        503 => t.1 += 1,
                        _ => t.2 += 1,
                    }
                }
            });
        }
    });
    tally.into_inner().unwrap()
}

/// The head of the answer to one post.
fn response_head(port: u16, armoured: &str) -> String {
    let body = encode_packet_form(armoured);
    let mut s = TcpStream::connect(("127.0.0.1", port)).unwrap();
    write!(
        s,
        "POST /collector.py/msg HTTP/1.1\r\nHost: x\r\n\
         Content-Type: application/x-www-form-urlencoded\r\n\
         Content-Length: {}\r\nConnection: close\r\n\r\n{body}",
        body.len()
    )
    .unwrap();
    let mut raw = String::new();
    s.read_to_string(&mut raw).unwrap();
    raw.split("\r\n\r\n").next().unwrap().to_owned()
}

#[test]
fn evidence_a_flood_over_the_caps_is_refused_cheaply_and_service_resumes() {
    let hop = StandIn::start(Mode::Unavailable, Duration::ZERO);
    let solo = Solo::start(
        None,
        "request_timeout = \"10s\"",
        &format!(
            "[pool]\ninterval = \"2s\"\nmin = 0\nrate = 1.0\nmax_packets = {POOL_MAX}\n\
             max_bytes = {CAP_BYTES}\n\n\
             [outbound]\nretry_initial = \"1s\"\nretry_max = \"2s\"\n\
             max_queued = {QUEUE_MAX}\nmax_queued_bytes = {CAP_BYTES}\n"
        ),
    );
    let pid = solo.node.pid().unwrap();
    let store = solo.node.data_dir.join("store");
    let idle_kib = support::proc::rss_kib(pid).unwrap();
    let packets = solo.packets_to(&hop.url(), FLOOD + 20);
    let (flood_packets, after) = packets.split_at(FLOOD);

    // Two waves, a pool round apart: the first fills the pool, the round
    // moves it to the outbound queue (which cannot deliver), the second
    // fills the pool again.
    let sampler = RssSampler::start(pid, Duration::from_millis(20));
    let started = Instant::now();
    let (first, second) = flood_packets.split_at(FLOOD / 2);
    let (ok1, refused1, other1) = flood(solo.node.port, first, 16);
    std::thread::sleep(Duration::from_millis(2500));
    let (ok2, refused2, other2) = flood(solo.node.port, second, 16);
    let (ok, refused, other) = (ok1 + ok2, refused1 + refused2, other1 + other2);
    let flood_time = started.elapsed();
    let peak_kib = sampler.peak_kib();
    let store_bytes = disk_bytes(&store);
    assert_eq!(other, 0, "only 200 and 503");
    assert_eq!(ok + refused, FLOOD);
    assert!(
        ok <= POOL_MAX + QUEUE_MAX + 64,
        "{ok} accepted, caps {POOL_MAX} + {QUEUE_MAX}"
    );
    assert!(ok >= POOL_MAX, "{ok} accepted: the pool filled up");
    assert!(refused >= FLOOD - POOL_MAX - QUEUE_MAX - 64);
    // A refusal says when to come back.
    let head = response_head(solo.node.port, &after[0]);
    assert!(head.starts_with("HTTP/1.1 503"), "{head}");
    assert!(head.contains("retry-after: "), "{head}");

    eprintln!(
        "flood: {FLOOD} packets in two waves ({flood_time:.2?}) from 16 clients: {ok} accepted, {refused} \
         refused with 503 (caps: pool {POOL_MAX}, outbound {QUEUE_MAX}); node RSS idle {} MiB, \
         peak {} MiB (bound {RSS_BOUND_MIB} MiB); store {:.1} MiB on disk",
        idle_kib / 1024,
        peak_kib / 1024,
        store_bytes as f64 / 1048576.0
    );
    assert!(
        peak_kib < RSS_BOUND_MIB * 1024,
        "peak RSS {} MiB",
        peak_kib / 1024
    );
    assert!(
        store_bytes < 2 * CAP_BYTES + STORE_SLACK,
        "store {store_bytes} bytes"
    );

    // The next hop answers again: everything accepted is delivered, and
    // new packets are taken (posted until accepted: the queues drain in a
    // few pool rounds).
    hop.set_mode(Mode::Accept);
    wait_until(
        Duration::from_secs(120),
        Duration::from_millis(100),
        "every accepted packet at the next hop",
        || (hop.packets() == ok).then_some(()),
    );
    for p in &after[1..] {
        wait_until(
            Duration::from_secs(60),
            Duration::from_millis(200),
            "a new packet accepted after the flood",
            || (post_packet(solo.node.port, p).map(|r| r.0) == Some(200)).then_some(()),
        );
    }
    wait_until(
        Duration::from_secs(60),
        Duration::from_millis(100),
        "the new packets at the next hop",
        || (hop.packets() == ok + after.len() - 1).then_some(()),
    );
    drop(sampler);
    let mut solo = solo;
    let s = solo.node.stopped_status();
    let accepted = (ok + after.len() - 1) as u64;
    assert_eq!(counter(&s, "packets_accepted"), accepted, "{s}");
    assert_eq!(counter(&s, "outbound_delivered"), accepted, "{s}");
    assert_eq!(counter(&s, "outbound_given_up"), 0, "{s}");
    let full = counter(&s, "rejected_pool_full") + counter(&s, "rejected_outbound_full");
    assert!(full >= refused as u64, "refusals counted as full: {s}");
    assert!(counter(&s, "rejected_outbound_full") > 0, "{s}");
    assert_eq!(s["pool"], 0, "{s}");
    assert_eq!(s["outbound"], 0, "{s}");
}
