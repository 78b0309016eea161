//! Crash safety of real `mimix run` processes: nodes SIGKILLed again and
//! again (more than 20 kills) while packets flow lose nothing and process
//! nothing twice; replays are refused across a restart (and byte-identical
//! copies answered 200 again); a tampered copy of a packet is refused
//! without burning the genuine packet's ID.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod support;

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::sync::Mutex;
use std::time::{Duration, Instant, SystemTime};

use mimix::clock::{Clock, SystemClock};
use mimix_packet::layout::BODY_OFFSET;
use mimix_packet::{armour, dearmour};
use support::net::{Network, counter, post_packet, wait_until};
use support::smtp::SmtpSink;

/// Messages sent through the crashing network.
const MESSAGES: usize = 40;
/// Rounds of SIGKILL and restart: the middle node and the exit every
/// round, the entry every third, so 28 kills in all.
const ROUNDS: usize = 12;
/// Pause between two submissions by the sender: sending lasts about as
/// long as the kill rounds, so every kill happens under load.
const PACE: Duration = Duration::from_millis(350);
/// Time allowed for all messages to be accepted, and then delivered.
const TIMEOUT: Duration = Duration::from_secs(120);
/// Longest time between the SMTP server storing a message and the exit
/// recording the delivery, under load: a SIGKILL of the exit inside it is
/// the one case where SMTP delivers a message again (the exit cannot know
/// that the server has it).
const HANDOFF_WINDOW: Duration = Duration::from_secs(2);

/// Some bits that differ between runs, for markers and jitter.
fn nonce() -> u64 {
    let t = SystemClock
        .now()
        .duration_since(SystemTime::UNIX_EPOCH)
        .unwrap();
    t.as_nanos() as u64 ^ u64::from(std::process::id()).rotate_left(32)
}

/// How a sender's submissions ended.
#[derive(Debug, Default)]
struct Sent {
    ok: usize,
    replay: usize,
    failed_attempts: usize,
}

#[test]
fn evidence_killed_nodes_lose_nothing_and_deliver_each_message_once() {
    let started = Instant::now();
    let sink = SmtpSink::start();
    let mut net = Network::start(
        &[("n1", false), ("n2", false), ("x", true)],
        sink.port,
        false,
    );

    // Build every packet once; a retry posts the same file again. Every
    // fifth message is long enough for two packets.
    let run = nonce();
    let mut markers = Vec::new();
    let mut bodies = Vec::new();
    let mut packets = Vec::new();
    for i in 0..MESSAGES {
        let marker = format!("MARKER-{i:02}-{run:016x}");
        let mut body = String::new();
        if i % 5 == 4 {
            for line in 0..300 {
                body.push_str(&format!(
                    "{i:02} filler line {line:03} of a two-chunk message\r\n"
                ));
            }
        }
        body.push_str(&format!("body {marker} end\r\n"));
        let msg = net.root.path().join(format!("m{i}.eml"));
        std::fs::write(
            &msg,
            // One recipient per message: 30 to one address would pass
            // the exit's daily per-address limit.
            format!("To: alice{i:02}@example.org\r\nSubject: crash {i}\r\n\r\n{body}"),
        )
        .unwrap();
        let files = net.build(
            &["n1", "n2", "x"],
            Some(&msg),
            &net.root.path().join(format!("p{i}")),
        );
        assert_eq!(files.len(), if i % 5 == 4 { 2 } else { 1 });
        for f in files {
            packets.push(std::fs::read_to_string(f).unwrap());
        }
        markers.push(marker);
        bodies.push(body);
    }
    let total = packets.len();
    let entry = net.node("n1").port;

    // The sender posts every packet until it is accepted (200, also when a
    // previous attempt was stored but its answer lost: the same bytes get
    // 200 again; 409 would mean a copy in flight at the same time), while
    // the main thread kills and restarts nodes.
    let kills: Mutex<Vec<SystemTime>> = Mutex::new(Vec::new());
    let killed = std::sync::atomic::AtomicUsize::new(0);
    let sent = std::thread::scope(|s| {
        let sender = s.spawn(|| {
            let mut sent = Sent::default();
            let mut pending: Vec<usize> = (0..total).collect();
            let begun = Instant::now();
            while !pending.is_empty() {
                assert!(
                    begun.elapsed() < TIMEOUT,
                    "timed out after {TIMEOUT:?} submitting; {} packets never accepted",
                    pending.len()
                );
                let mut again = Vec::new();
                for i in pending {
                    match post_packet(entry, &packets[i]) {
                        Some((200, _)) => sent.ok += 1,
                        Some((409, _)) => sent.replay += 1,
                        None | Some((500..=599, _)) => {
                            sent.failed_attempts += 1;
                            again.push(i);
                        }
                        Some((status, body)) => {
                            panic!("packet {i} refused with {status}: {body}")
                        }
                    }
                    std::thread::sleep(PACE);
                }
                pending = again;
            }
            sent
        });
        let mut jitter = run;
        for round in 0..ROUNDS {
            jitter = jitter
                .wrapping_mul(6_364_136_223_846_793_005)
                .wrapping_add(1);
            std::thread::sleep(Duration::from_millis(400 + (jitter >> 33) % 400));
            let mut victims = vec!["n2", "x"];
            if round % 3 == 1 {
                victims.push("n1");
            }
            kills.lock().unwrap().push(SystemClock.now());
            for v in &victims {
                net.node(v).kill();
            }
            killed.fetch_add(victims.len(), std::sync::atomic::Ordering::SeqCst);
            std::thread::sleep(Duration::from_millis(200 + (jitter >> 40) % 300));
            for v in &victims {
                net.node(v).spawn();
            }
            for v in &victims {
                net.node(v).wait_ready();
            }
        }
        sender.join().unwrap()
    });
    assert_eq!(sent.ok + sent.replay, total);
    let submitted = started.elapsed();
    let killed = killed.into_inner();
    assert!(killed >= 20, "only {killed} kills");

    // Every marker arrives.
    let deadline = Instant::now() + TIMEOUT;
    wait_until(
        TIMEOUT,
        Duration::from_millis(200),
        "all markers at the SMTP server",
        || {
            let got = sink.received();
            markers
                .iter()
                .all(|m| got.iter().any(|r| contains(&r.content, m)))
                .then_some(())
        },
    );
    let delivered = started.elapsed();

    // Then let every queue drain: stop the nodes, read their stores, run
    // them a little longer while anything is left.
    let statuses = loop {
        let statuses: BTreeMap<String, serde_json::Value> = ["n1", "n2", "x"]
            .iter()
            .map(|n| (n.to_string(), net.node(n).stopped_status()))
            .collect();
        let idle = statuses
            .values()
            .all(|s| s["pool"] == 0 && s["outbound"] == 0 && s["mail"] == 0 && s["partials"] == 0);
        if idle {
            break statuses;
        }
        assert!(
            Instant::now() < deadline,
            "queues not empty after {TIMEOUT:?}: {statuses:?}"
        );
        for n in ["n1", "n2", "x"] {
            net.node(n).start();
        }
        std::thread::sleep(Duration::from_secs(2));
    };

    // Exactly once at every hop.
    let (n1, n2, x) = (&statuses["n1"], &statuses["n2"], &statuses["x"]);
    assert_eq!(counter(n1, "packets_accepted"), total as u64, "n1: {n1}");
    assert_eq!(
        counter(n1, "packets_replayed"),
        sent.replay as u64,
        "n1: {n1}"
    );
    assert_eq!(counter(n2, "packets_accepted"), total as u64, "n2: {n2}");
    for (name, s) in [("n1", n1), ("n2", n2)] {
        assert_eq!(
            counter(s, "outbound_delivered"),
            total as u64,
            "{name}: {s}"
        );
        assert_eq!(counter(s, "outbound_given_up"), 0, "{name}: {s}");
    }
    assert_eq!(counter(x, "packets_accepted"), total as u64, "x: {x}");
    assert_eq!(counter(x, "chunks_duplicate"), 0, "x: {x}");
    assert_eq!(counter(x, "mail_queued"), MESSAGES as u64, "x: {x}");
    assert_eq!(counter(x, "mail_delivered"), MESSAGES as u64, "x: {x}");
    assert_eq!(counter(x, "mail_dropped"), 0, "x: {x}");

    // Exactly once at the SMTP server, but for a message whose SMTP
    // hand-off a SIGKILL of the exit interrupted: the exit sends that one
    // again (at-least-once; the alternative would lose mail).
    let got = sink.received_with_times();
    let kills = kills.into_inner().unwrap();
    let mut extra = 0;
    for (m, body) in markers.iter().zip(&bodies) {
        let copies: Vec<SystemTime> = got
            .iter()
            .filter(|(r, _)| contains(&r.content, m))
            .inspect(|(r, _)| assert_eq!(String::from_utf8_lossy(r.body()), *body))
            .map(|(_, t)| *t)
            .collect();
        assert!(!copies.is_empty(), "{m} was lost");
        if copies.len() > 1 {
            let first = copies.iter().min().unwrap();
            let explained = kills
                .iter()
                .any(|k| k.duration_since(*first).is_ok_and(|d| d <= HANDOFF_WINDOW));
            assert!(
                copies.len() == 2 && explained,
                "{m} delivered {} times, not explained by a SIGKILL of the exit during \
                 its SMTP hand-off (kills at {kills:?}, copies at {copies:?})",
                copies.len()
            );
            extra += 1;
            eprintln!(
                "crash_safety: {m} delivered twice: the exit was killed during its SMTP hand-off"
            );
        }
    }
    assert_eq!(
        got.len(),
        MESSAGES + extra,
        "nothing but the markers was delivered"
    );
    eprintln!(
        "crash_safety: {MESSAGES} messages in {total} packets, {ROUNDS} kill rounds, {killed} \
         SIGKILLs; 0 lost, {extra} delivered twice (exit killed during the SMTP hand-off); \
         sender: {} accepted with 200, \
         {} with 409, {} failed attempts retried; n2 refused {} replays, the exit {}; \
         submitted after {submitted:.1?}, all delivered after {delivered:.1?}, whole test {:.1?}",
        sent.ok,
        sent.replay,
        sent.failed_attempts,
        counter(n2, "packets_replayed"),
        counter(x, "packets_replayed"),
        started.elapsed()
    );
}

fn contains(haystack: &[u8], needle: &str) -> bool {
    haystack
        .windows(needle.len())
        .any(|w| w == needle.as_bytes())
}

#[test]
fn replays_after_a_restart_and_tampered_copies_are_refused() {
    // No exit: the SMTP port is never used.
    let mut net = Network::start(&[("n1", false), ("n2", false)], 9, false);
    let dir = net.root.path().to_owned();
    let first = read(net.build(&["n1", "n2"], None, &dir.join("a")));
    let entry = net.node("n1").port;
    assert_eq!(post_packet(entry, &first).unwrap().0, 200);

    // The replay log survives a crash of the entry: a copy with the same
    // packet ID (a bit flipped in header section 10, which the first hop
    // does not check) is a replay; the very same bytes are answered 200
    // again (a peer that lost our 200), and neither is stored twice.
    net.node("n1").kill();
    net.node("n1").start();
    let (status, body) = post_packet(entry, &same_id_copy(&first)).unwrap();
    assert_eq!((status, body.trim()), (409, "Packet already received"));
    assert_eq!(post_packet(entry, &first).unwrap().0, 200);

    // A copy with one flipped body bit fails the anti-tagging check, one
    // with a flipped header bit the header digest; neither burns the ID.
    let genuine = read(net.build(&["n1", "n2"], None, &dir.join("b")));
    for (offset, reason) in [(BODY_OFFSET + 4321, "antitag"), (700, "header_digest")] {
        let mut p = dearmour(&genuine).unwrap();
        p.as_bytes_mut()[offset] ^= 0x20;
        let (status, body) = post_packet(entry, &armour(&p)).unwrap();
        assert_eq!(status, 400, "{body}");
        assert_eq!(body.trim(), format!("Invalid submission: {reason}"));
    }
    assert_eq!(post_packet(entry, &genuine).unwrap().0, 200);
    assert_eq!(
        post_packet(entry, &genuine).unwrap().0,
        200,
        "the same bytes"
    );
    assert_eq!(post_packet(entry, &same_id_copy(&genuine)).unwrap().0, 409);

    // A next hop that already has a packet (as after a crash between its
    // 200 and our record of it) answers 409: that counts as delivered. The
    // copy n2 gets first is peeled offline with n1's key.
    let third = net.build(&["n1", "n2", "n1"], None, &dir.join("c"));
    let key = std::fs::read_dir(net.node("n1").data_dir.join("keys"))
        .unwrap()
        .map(|e| e.unwrap().path())
        .find(|p| p.extension().is_some_and(|x| x == "pem"))
        .unwrap();
    let next = dir.join("c-next.txt");
    let peeled = support::net::mimix(&[
        "packet",
        "peel",
        "--key",
        key.to_str().unwrap(),
        "--next",
        next.to_str().unwrap(),
        third[0].to_str().unwrap(),
    ]);
    assert!(peeled.status.success(), "{peeled:?}");
    let n2 = net.node("n2").port;
    let next = std::fs::read_to_string(&next).unwrap();
    assert_eq!(post_packet(n2, &next).unwrap().0, 200);
    assert_eq!(post_packet(entry, &read(third)).unwrap().0, 200);

    // A dummy whose last hop is a middle node is discarded there, but its
    // ID and digest are logged like any other packet's: replaying it must
    // not tell a previous hop that it was cover traffic ending here.
    let last = read(net.build(&["n2"], None, &dir.join("d")));
    assert_eq!(post_packet(n2, &last).unwrap().0, 200);
    assert_eq!(post_packet(n2, &last).unwrap().0, 200, "the same bytes");
    assert_eq!(post_packet(n2, &same_id_copy(&last)).unwrap().0, 409);

    let s = wait_drained(net.node("n1"));
    assert_eq!(counter(&s, "packets_accepted"), 3, "{s}");
    assert_eq!(counter(&s, "packets_replayed"), 2, "{s}");
    assert_eq!(counter(&s, "packets_duplicate"), 2, "{s}");
    assert_eq!(counter(&s, "rejected_antitag"), 1, "{s}");
    assert_eq!(counter(&s, "rejected_header_digest"), 1, "{s}");
    assert_eq!(counter(&s, "outbound_delivered"), 3, "{s}");
    assert_eq!(counter(&s, "outbound_given_up"), 0, "{s}");
    // n2 is the last hop of three dummies, and a middle hop of one, which
    // it took from us first and refused from n1.
    let s = net.node("n2").stopped_status();
    assert_eq!(counter(&s, "exit_dummies_discarded"), 3, "{s}");
    assert_eq!(counter(&s, "packets_accepted"), 1, "{s}");
    assert_eq!(counter(&s, "packets_replayed"), 2, "{s}");
    assert_eq!(counter(&s, "packets_duplicate"), 1, "{s}");
}

/// `packet` with a bit flipped in header section 10, which the first hop
/// does not check: the same packet ID in other bytes.
fn same_id_copy(packet: &str) -> String {
    let mut p = dearmour(packet).unwrap();
    p.as_bytes_mut()[9 * 1024 + 100] ^= 0x20;
    armour(&p)
}

/// Stops `node`; while its pool or outbound queue is not empty, runs it a
/// little longer. Returns its final status.
fn wait_drained(node: &mut support::net::NodeProc) -> serde_json::Value {
    let deadline = Instant::now() + TIMEOUT;
    loop {
        let s = node.stopped_status();
        if s["pool"] == 0 && s["outbound"] == 0 {
            return s;
        }
        assert!(
            Instant::now() < deadline,
            "{} still has queued packets after {TIMEOUT:?}: {s}",
            node.name
        );
        node.start();
        std::thread::sleep(Duration::from_secs(1));
    }
}

fn read(files: Vec<PathBuf>) -> String {
    assert_eq!(files.len(), 1);
    std::fs::read_to_string(&files[0]).unwrap()
}
