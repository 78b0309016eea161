//! Four `mimix run` processes on loopback: messages cross a three-hop
//! chain (two middle nodes and the exit) and the exit delivers them to a
//! real SMTP server (aiosmtpd); dummies are discarded and counted.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod support;

use std::fmt::Write as _;
use std::time::{Duration, Instant};

use mimix_packet::layout::SECTION_LEN;
use mimix_packet::{armour, dearmour};
use support::net::{Network, assert_policed, counter, message, post_packet};
use support::smtp::{Received, SmtpSink};

/// Time allowed for the messages to arrive.
const DELIVERY_TIMEOUT: Duration = Duration::from_secs(90);

/// A body with awkward bytes: dot-leading lines (SMTP dot-stuffing), a
/// lone dot, blank lines, UTF-8, trailing white space.
const SHORT_BODY: &str = "Hello through three remailers,\r\n\
.a line starting with a dot\r\n\
..two dots\r\n\
.\r\n\
\r\n\
caf\u{e9} \t trailing white space \r\n\
-- \r\n\
last line\r\n";

/// A body of about 25 KB (three packets), each line numbered so that a
/// lost, repeated or reordered chunk shows.
fn long_body() -> String {
    let mut body = String::new();
    let mut x: u64 = 0x9e37_79b9_7f4a_7c15;
    let mut line = 0;
    while body.len() < 25_000 {
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        line += 1;
        let dot = if line % 50 == 0 { "." } else { "" };
        writeln!(
            body,
            "{dot}line {line:04} {x:016x} {:016x}\r",
            x.rotate_left(29)
        )
        .unwrap();
    }
    body
}

fn by_subject<'a>(got: &'a [Received], subject: &str) -> &'a Received {
    let line = format!("\r\nSubject: {subject}\r\n");
    let found: Vec<&Received> = got.iter().filter(|m| m.head().contains(&line)).collect();
    assert_eq!(found.len(), 1, "messages with subject {subject:?}");
    found[0]
}

#[test]
fn messages_cross_three_hops_and_dummies_are_discarded() {
    let started = Instant::now();
    let sink = SmtpSink::start();
    let mut net = Network::start(
        &[("n1", false), ("n2", false), ("n3", false), ("n4", true)],
        sink.port,
        false,
    );
    let up = started.elapsed();

    let long = long_body();
    let dir = net.root.path().to_owned();
    let short_file = dir.join("short.eml");
    let long_file = dir.join("long.eml");
    std::fs::write(&short_file, message("short one", SHORT_BODY)).unwrap();
    std::fs::write(&long_file, message("long one", &long)).unwrap();

    // Dummies first: one ending at the exit, one at a middle node that no
    // message passes through.
    assert_eq!(net.send(&["n1", "n2", "n4"], None)["packets"], 1);
    assert_eq!(net.send(&["n2", "n3"], None)["packets"], 1);
    assert_eq!(
        net.send(&["n1", "n2", "n4"], Some(&short_file))["packets"],
        1
    );
    assert_eq!(
        net.send(&["n2", "n1", "n4"], Some(&long_file))["packets"],
        3
    );

    let got = sink.wait_for(2, DELIVERY_TIMEOUT);
    let delivered = started.elapsed();

    let short = by_subject(&got, "short one");
    assert_policed(short, "short one");
    assert_eq!(
        String::from_utf8_lossy(short.body()),
        SHORT_BODY,
        "the body arrives byte for byte"
    );
    let long_got = by_subject(&got, "long one");
    assert_policed(long_got, "long one");
    assert!(
        long.len() > 2 * 10_240,
        "the long message needs three packets"
    );
    assert_eq!(
        String::from_utf8_lossy(long_got.body()),
        long,
        "three chunks reassembled byte for byte"
    );

    // The dummy to the exit is discarded there, the other one at n3.
    let exit = net.node("n4");
    let status = wait_counter(exit, "exit_dummies_discarded", 1);
    assert_eq!(counter(&status, "exit_dummies_discarded"), 1);
    assert_eq!(counter(&status, "mail_delivered"), 2);
    assert_eq!(counter(&status, "mail_queued"), 2);
    assert_eq!(counter(&status, "packets_accepted"), 5);
    assert_eq!(
        counter(&status, "chunks_stored"),
        2,
        "the third chunk completes the set"
    );
    assert_eq!(status["mail"], 0);
    assert_eq!(status["partials"], 0);
    let n3 = net.node("n3");
    let status = wait_counter(n3, "exit_dummies_discarded", 1);
    assert_eq!(counter(&status, "exit_dummies_discarded"), 1);
    assert_eq!(counter(&status, "exit_dropped_middle_node"), 0);
    for name in ["n1", "n2"] {
        let s = net.node(name).stopped_status();
        assert_eq!(counter(&s, "exit_dummies_discarded"), 0, "{name}");
        assert_eq!(
            (s["pool"].clone(), s["outbound"].clone()),
            (0.into(), 0.into())
        );
    }
    assert_eq!(sink.received().len(), 2, "nothing else was delivered");
    eprintln!(
        "multi_node: network up in {:.1?}, both messages delivered after {:.1?}, \
         whole test {:.1?}",
        up,
        delivered,
        started.elapsed()
    );
}

/// The armoured packet of a one-packet message with `subject` through
/// `chain`, and a copy with one bit flipped in header section `section`.
fn packet_and_tampered(
    net: &Network,
    chain: &[&str],
    subject: &str,
    section: usize,
) -> [String; 2] {
    let dir = net.root.path().join(subject);
    std::fs::create_dir(&dir).unwrap();
    let msg = dir.join("msg.eml");
    std::fs::write(&msg, message(subject, "one packet\r\n")).unwrap();
    let files = net.build(chain, Some(&msg), &dir);
    assert_eq!(files.len(), 1);
    let genuine = std::fs::read_to_string(&files[0]).unwrap();
    let mut packet = dearmour(&genuine).unwrap();
    packet.as_bytes_mut()[(section - 1) * SECTION_LEN + 700] ^= 1;
    [genuine, armour(&packet)]
}

#[test]
fn a_copy_tampered_in_section_3_and_posted_first_burns_the_genuine_packet() {
    // The anti-tag of hop 1 covers header section 2 and the body only:
    // hop 1 accepts a copy with section 3 flipped, recording its packet
    // ID, and hop 2 catches it. A copy tampered where hop 1 checks is
    // refused before its ID is recorded, so the genuine packet still goes.
    let sink = SmtpSink::start();
    let mut net = Network::start(
        &[("t1", false), ("t2", false), ("t3", true)],
        sink.port,
        false,
    );
    let chain = ["t1", "t2", "t3"];
    let port = net.node("t1").port;
    let status = |text: &str| post_packet(port, text).unwrap().0;

    let [kept, kept_tampered] = packet_and_tampered(&net, &chain, "kept", 2);
    assert_eq!(status(&kept_tampered), 400, "hop 1 checks section 2");
    assert_eq!(status(&kept), 200, "nothing was recorded for the copy");

    let [burned, burned_tampered] = packet_and_tampered(&net, &chain, "burned", 3);
    assert_eq!(status(&burned_tampered), 200, "hop 1 cannot see section 3");
    assert_eq!(status(&burned), 409, "the genuine packet is now a replay");

    let got = sink.wait_for(1, DELIVERY_TIMEOUT);
    assert_policed(by_subject(&got, "kept"), "kept");
    let t2 = wait_counter(net.node("t2"), "rejected_antitag", 1);
    assert_eq!(counter(&t2, "rejected_antitag"), 1, "hop 2 caught the copy");
    assert_eq!(counter(&t2, "packets_accepted"), 1, "only the kept packet");
    let t1 = wait_counter(net.node("t1"), "outbound_given_up", 1);
    assert_eq!(counter(&t1, "packets_accepted"), 2);
    assert_eq!(counter(&t1, "packets_replayed"), 1);
    assert_eq!(counter(&t1, "rejected_antitag"), 1);
    assert_eq!(counter(&t1, "outbound_delivered"), 1);
    let t3 = wait_counter(net.node("t3"), "mail_delivered", 1);
    assert_eq!(counter(&t3, "packets_accepted"), 1);
    assert_eq!(sink.received().len(), 1, "the burned message never arrives");
}

/// Stops `node` and reads its counters; while `name` is below `want`, runs
/// it a little longer (its pool may still hold the packet).
fn wait_counter(node: &mut support::net::NodeProc, name: &str, want: u64) -> serde_json::Value {
    let start = Instant::now();
    loop {
        let status = node.stopped_status();
        if counter(&status, name) >= want {
            return status;
        }
        assert!(
            start.elapsed() < DELIVERY_TIMEOUT,
            "timed out after {DELIVERY_TIMEOUT:?} waiting for {name} >= {want} on {}: {status}",
            node.name
        );
        node.start();
        std::thread::sleep(Duration::from_millis(1500));
    }
}
