//! Forwarding through real `mimix run` processes to stand-in next hops
//! (small real HTTP servers in this test that answer like a remailer and
//! count; see `support::hop`): a freed delivery slot is refilled at once,
//! not at the next tick; one next hop never holds more than its cap; a
//! next hop that accepts and never answers (a tarpit) does not delay the
//! others; a packet refused for its next hop stays refused.
//!
//! The rate itself is a benchmark claim (`cargo bench --bench load`); these
//! tests check what the rate rests on, without timing thresholds beyond
//! ones a tick-bound or head-of-line-blocked worker would miss by far.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod support;

use std::time::{Duration, Instant};

use support::hop::{Mode, StandIn};
use support::net::{counter, post_packet, wait_until};
use support::solo::Solo;

/// Posts every packet to `port` from `clients` threads; returns the
/// statuses in packet order.
fn post_all(port: u16, packets: &[String], clients: usize) -> Vec<u16> {
    let next = std::sync::atomic::AtomicUsize::new(0);
    let statuses = std::sync::Mutex::new(vec![0u16; packets.len()]);
    std::thread::scope(|s| {
        for _ in 0..clients {
            s.spawn(|| {
                loop {
                    let i = next.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
                    let Some(p) = packets.get(i) else { break };
                    let status = post_packet(port, p).map_or(0, |(s, _)| s);
                    statuses.lock().unwrap()[i] = status;
                }
            });
        }
    });
    statuses.into_inner().unwrap()
}

/// The median of `v` (which must not be empty).
fn median(mut v: Vec<Duration>) -> Duration {
    v.sort();
    v[v.len() / 2]
}

#[test]
fn evidence_forwarding_to_one_next_hop_refills_slots_at_once() {
    const N: usize = 200;
    const PER_PEER: usize = 4;
    // Each answer takes 50 ms, so the stand-in always has requests in
    // progress and a slot left empty shows as a gap.
    let hop = StandIn::start(Mode::Accept, Duration::from_millis(50));
    let solo = Solo::start(
        None,
        "request_timeout = \"20s\"",
        &format!(
            "[pool]\ninterval = \"1s\"\nmin = 0\nrate = 1.0\n\n\
             [outbound]\nretry_initial = \"1s\"\nretry_max = \"2s\"\nconcurrency = 8\n\
             per_peer = {PER_PEER}\n"
        ),
    );
    let packets = solo.packets_to(&hop.url(), N);
    let started = Instant::now();
    let statuses = post_all(solo.node.port, &packets, 8);
    let ingest = started.elapsed();
    assert!(statuses.iter().all(|&s| s == 200), "{statuses:?}");

    wait_until(
        Duration::from_secs(120),
        Duration::from_millis(50),
        "every packet at the next hop",
        || (hop.packets() == N).then_some(()),
    );
    let done = started.elapsed();
    let requests = hop.requests();
    // None lost, none twice: every packet posted once, answered 200.
    assert_eq!(requests.len(), N, "one request per packet, no retries");
    assert!(requests.iter().all(|r| r.status == Some(200)));
    // The per-peer cap is respected and used.
    assert_eq!(
        hop.max_in_flight(),
        PER_PEER,
        "per_peer slots in use, no more"
    );

    // A freed slot is refilled at once: the k-th answer is followed by
    // the (k + per_peer)-th request within milliseconds. The worker also
    // polls every second; a refill bound to that tick (or the old 500 ms
    // tick) would show gaps of hundreds of milliseconds.
    let mut starts: Vec<Instant> = requests.iter().map(|r| r.start).collect();
    let mut ends: Vec<Instant> = requests.iter().map(|r| r.end.unwrap()).collect();
    starts.sort();
    ends.sort();
    let gaps: Vec<Duration> = ends
        .iter()
        .zip(starts.iter().skip(PER_PEER))
        .map(|(end, start)| start.saturating_duration_since(*end))
        .collect();
    let refill = median(gaps);
    let busy = *ends.last().unwrap() - starts[0];
    eprintln!(
        "forwarding: {N} packets accepted in {ingest:.2?}, all at the next hop after {done:.2?}; \
         next hop busy {busy:.2?} for {N} requests of 50 ms on {PER_PEER} slots \
         (ideal {:.2?}); median refill gap {refill:?}",
        Duration::from_millis(50) * (N / PER_PEER) as u32
    );
    assert!(
        refill < Duration::from_millis(100),
        "slots wait {refill:?} to be refilled"
    );
    let s = solo_status(solo);
    assert_eq!(counter(&s, "packets_accepted"), N as u64, "{s}");
    assert_eq!(counter(&s, "outbound_delivered"), N as u64, "{s}");
    assert_eq!(counter(&s, "outbound_retried"), 0, "{s}");
}

#[test]
fn evidence_a_tarpit_next_hop_does_not_delay_the_others() {
    const INTERVAL: Duration = Duration::from_secs(3);
    const TARPITTED: usize = 149;
    let tarpit = StandIn::start(Mode::Tarpit, Duration::ZERO);
    let hop = StandIn::start(Mode::Accept, Duration::ZERO);
    // The default request timeout (120 s) and caps: the tarpit can hold
    // its `per_peer` slots for two minutes each.
    let cap = mimix::node::OutboundConfig::default().per_peer;
    let solo = Solo::start(None, "", "[pool]\ninterval = \"3s\"\nmin = 0\nrate = 1.0\n");
    let stuck = solo.packets_to(&tarpit.url(), TARPITTED);
    let ordinary = solo.packets_to(&hop.url(), 5);
    assert!(
        post_all(solo.node.port, &stuck, 8)
            .iter()
            .all(|&s| s == 200)
    );
    wait_until(
        INTERVAL * 3,
        Duration::from_millis(50),
        "the tarpit holding its slots",
        || (tarpit.in_flight() == cap).then_some(()),
    );
    let posted = Instant::now();
    assert!(
        post_all(solo.node.port, &ordinary, 1)
            .iter()
            .all(|&s| s == 200)
    );
    let deadline = INTERVAL * 2;
    let delay = wait_until(
        deadline,
        Duration::from_millis(20),
        "the ordinary packets at their next hop within 2 pool intervals",
        || (hop.packets() == 5).then(|| posted.elapsed()),
    );
    eprintln!(
        "tarpit: {TARPITTED} packets queued for a next hop that never answers \
         (holding {} of its {cap} slots); 5 ordinary packets delivered {delay:.2?} after \
         they were posted (pool interval {INTERVAL:?})",
        tarpit.in_flight()
    );
    assert!(
        tarpit.max_in_flight() <= cap,
        "the tarpit got more than its cap"
    );
    assert_eq!(hop.requests().len(), 5);
}

#[test]
fn a_packet_refused_for_its_next_hop_is_refused_again_as_a_replay() {
    let solo = Solo::start(None, "", "[pool]\ninterval = \"1s\"\nmin = 0\nrate = 1.0\n");
    // The direct transport reaches loopback only.
    let packet = solo.packets_to("http://203.0.113.9", 1).remove(0);
    let (status, body) = post_packet(solo.node.port, &packet).unwrap();
    assert_eq!(
        (status, body.trim()),
        (400, "Invalid submission: next hop not allowed")
    );
    let (status, _) = post_packet(solo.node.port, &packet).unwrap();
    assert_eq!(status, 409, "its ID was logged");
    let s = solo_status(solo);
    assert_eq!(counter(&s, "rejected_next_hop"), 1, "{s}");
    assert_eq!(counter(&s, "packets_replayed"), 1, "{s}");
    assert_eq!(counter(&s, "packets_accepted"), 0, "{s}");
}

/// Stops the node and returns its status.
fn solo_status(mut solo: Solo) -> serde_json::Value {
    solo.node.stopped_status()
}
