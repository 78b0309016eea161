//! Middle nodes as real `mimix run` processes on loopback, with a real SMTP
//! server (aiosmtpd) behind the exits:
//!
//! - a peer that retries a packet whose 200 it lost gets 200 again for a
//!   byte-identical copy, without RSA work, and 409 for a tampered copy
//!   with the same packet ID;
//! - mail packets whose chain ends at a middle node are re-encrypted by it
//!   to an exit it picks from the message ID ("randhop"): a one-packet
//!   message is delivered, a three-packet message arrives whole at one
//!   exit; a middle node that knows no exit drops and counts them.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod support;

use std::fmt::Write as _;
use std::time::Duration;

use mimix_packet::armour::armour_with_version;
use mimix_packet::{Packet, armour, dearmour};
use support::net::{Network, counter, post_packet};
use support::packets::{get, hop, is, mail_packets, wait_status};
use support::smtp::SmtpSink;

const TIMEOUT: Duration = Duration::from_secs(90);

fn message(subject: &str, body: &str) -> Vec<u8> {
    format!("To: alice@example.org\r\nSubject: {subject}\r\n\r\n{body}").into_bytes()
}

#[test]
fn a_byte_identical_copy_gets_200_without_rsa_and_a_tampered_one_409() {
    let sink = SmtpSink::start();
    let mut net = Network::start(&[("x", true), ("m", false)], sink.port, false);
    let (m_port, x_port) = (net.node("m").port, net.node("x").port);
    let chain = [hop(m_port), hop(x_port)];
    let packets = mail_packets(&chain, &message("once", "only once\r\n"), 1);
    let [text] = packets.as_slice() else {
        panic!("one packet")
    };

    let first = post_packet(m_port, text).unwrap();
    let second = post_packet(m_port, text).unwrap();
    assert_eq!((first.0, second.0), (200, 200), "{first:?} {second:?}");
    // The same packet in another armour (a Version line of its own): the
    // same bytes, the same answer.
    let packet = dearmour(text).unwrap();
    let rearmoured = armour_with_version(&packet, "other-implementation 9.9");
    assert_ne!(&rearmoured, text);
    assert_eq!(post_packet(m_port, &rearmoured).unwrap().0, 200);
    // A byte flipped in header section 10, which hop 1 does not check: the
    // same packet ID in a different packet.
    let mut bytes = packet.as_bytes().to_vec();
    bytes[9 * 1024 + 100] ^= 1;
    let tampered = armour(&Packet::from_bytes(&bytes).unwrap());
    let (status, body) = post_packet(m_port, &tampered).unwrap();
    assert_eq!(status, 409, "{body}");

    let got = sink.wait_for(1, TIMEOUT);
    let s = net.node("m").stopped_status();
    assert_eq!(counter(&s, "packets_accepted"), 1);
    assert_eq!(counter(&s, "packets_duplicate"), 2, "answered 200 again");
    assert_eq!(
        counter(&s, "packets_peeled"),
        2,
        "the first and the tampered one"
    );
    assert_eq!(counter(&s, "packets_replayed"), 1, "the tampered copy");
    eprintln!(
        "middle_node: 4 posts -> 200, 200, 200, 409; m counted packets_peeled {}, \
         packets_duplicate {}, packets_replayed {}, packets_accepted {}",
        counter(&s, "packets_peeled"),
        counter(&s, "packets_duplicate"),
        counter(&s, "packets_replayed"),
        counter(&s, "packets_accepted"),
    );
    // m forwarded one packet; the exit took one and delivered it once.
    assert_eq!(counter(&s, "outbound_delivered"), 1);
    wait_status(net.node("x"), TIMEOUT, "the delivery counted", |x| {
        is(x, "mail_delivered", 1)
    });
    let x = net.node("x").stopped_status();
    assert_eq!(counter(&x, "packets_accepted"), 1);
    assert_eq!(counter(&x, "mail_delivered"), 1);
    assert_eq!(got.len(), 1);
    assert_eq!(sink.received().len(), 1, "delivered exactly once");
}

/// A body of about 25 KB (three packets), each line numbered.
fn long_body() -> String {
    let mut body = String::new();
    let mut line = 0;
    while body.len() < 25_000 {
        line += 1;
        writeln!(
            body,
            "line {line:05} of a message that a middle node reroutes\r"
        )
        .unwrap();
    }
    body
}

#[test]
fn mail_ending_at_a_middle_node_reaches_one_exit_the_middle_picks() {
    let sink = SmtpSink::start();
    // The middle starts last: its first conf fetches find both exits.
    let mut net = Network::start(
        &[("x1", true), ("x2", true), ("m", false)],
        sink.port,
        false,
    );
    let ports: Vec<u16> = ["x1", "x2", "m"].iter().map(|n| net.node(n).port).collect();
    let (x1, x2, m) = (hop(ports[0]), hop(ports[1]), hop(ports[2]));
    wait_status(net.node("m"), TIMEOUT, "both exits known", |_| {
        let (_, stats) = get(ports[2], "/stats.txt");
        [&x1.address, &x2.address].iter().all(|a| {
            stats
                .lines()
                .any(|l| l.ends_with(a.as_str()) && l.split_whitespace().nth(5) == Some("yes"))
        })
    });

    // One packet through x2 to m, three through x1 to m.
    let short = message("short", "rerouted by the middle\r\n");
    let long = long_body();
    let short_packets = mail_packets(&[x2.clone(), m.clone()], &short, 11);
    let long_packets = mail_packets(&[x1.clone(), m.clone()], &message("long", &long), 12);
    assert_eq!((short_packets.len(), long_packets.len()), (1, 3));
    for p in &short_packets {
        assert_eq!(post_packet(ports[1], p).unwrap().0, 200);
    }
    for p in &long_packets {
        assert_eq!(post_packet(ports[0], p).unwrap().0, 200);
    }

    let got = sink.wait_for(2, TIMEOUT);
    let body_of = |subject: &str| {
        let line = format!("\r\nSubject: {subject}\r\n");
        let found: Vec<_> = got.iter().filter(|r| r.head().contains(&line)).collect();
        assert_eq!(found.len(), 1, "{subject}");
        String::from_utf8_lossy(found[0].body()).into_owned()
    };
    assert_eq!(body_of("short"), "rerouted by the middle\r\n");
    assert_eq!(
        body_of("long"),
        long,
        "three chunks reassembled byte for byte"
    );

    let s = wait_status(net.node("m"), TIMEOUT, "the reroutes", |s| {
        is(s, "randhop_rerouted", 4)
    });
    assert_eq!(counter(&s, "exit_dropped_middle_node"), 0);
    assert_eq!(counter(&s, "randhop_no_exit"), 0);
    // Every chunk of the long message went to one exit: the exit that
    // stored two chunks and completed the set with the third; the other
    // stored none.
    let exits: Vec<serde_json::Value> = ["x1", "x2"]
        .iter()
        .map(|n| {
            wait_status(net.node(n), TIMEOUT, "its deliveries counted", |s| {
                counter(s, "mail_delivered") == counter(s, "mail_queued")
            });
            net.node(n).stopped_status()
        })
        .collect();
    let stored: Vec<u64> = exits.iter().map(|s| counter(s, "chunks_stored")).collect();
    assert!(
        stored == [2, 0] || stored == [0, 2],
        "chunks stored per exit: {stored:?}"
    );
    let queued: u64 = exits.iter().map(|s| counter(s, "mail_queued")).sum();
    let delivered: u64 = exits.iter().map(|s| counter(s, "mail_delivered")).sum();
    assert_eq!((queued, delivered), (2, 2));
    eprintln!(
        "middle_node: m rerouted {} packets; chunks stored at x1, x2: {stored:?}; \
         mail delivered by x1, x2: {:?}",
        counter(&s, "randhop_rerouted"),
        exits
            .iter()
            .map(|s| counter(s, "mail_delivered"))
            .collect::<Vec<_>>()
    );
    assert_eq!(sink.received().len(), 2);
}

#[test]
fn a_middle_node_that_knows_no_exit_drops_and_counts() {
    let sink = SmtpSink::start();
    let mut net = Network::start(&[("lone", false)], sink.port, false);
    let port = net.node("lone").port;
    let packets = mail_packets(&[hop(port)], &message("nowhere", "x\r\n"), 21);
    assert_eq!(post_packet(port, &packets[0]).unwrap().0, 200);
    let s = net.node("lone").stopped_status();
    assert_eq!(counter(&s, "randhop_no_exit"), 1);
    assert_eq!(counter(&s, "randhop_rerouted"), 0);
    assert_eq!(
        (s["pool"].clone(), s["outbound"].clone()),
        (0.into(), 0.into())
    );
}
