//! The exit's abuse controls on a real `mimix run` process delivering to a
//! real SMTP server (aiosmtpd): the per-address and per-domain rate limit
//! under a burst and across a SIGKILL, the operator's `mimix block add`
//! and `remove` taking effect on the running node, the opt-out page, and
//! the abuse contact in the remailer-conf and in every mail. (The
//! limiter's next-day reset on a manual clock is tested in
//! `src/exit/limit_tests.rs`, on the real store.)

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod support;

use std::time::{Duration, Instant};

use support::net::{EXIT_FROM, Network, counter, mimix, post_packet};
use support::packets::{get, hop, is, mail_packets, wait_status};
use support::smtp::SmtpSink;

/// Time allowed for a batch of messages to be settled.
const TIMEOUT: Duration = Duration::from_secs(120);

/// The burst.
const BURST: usize = 500;

const TAIL: &str = r#"
[exit]
abuse_contact = "abuse@mix.example"

[exit.rate_limit]
per_address = 20
per_domain = 30
"#;

/// A message without a From: header.
fn message(to: &str, subject: &str) -> Vec<u8> {
    format!("To: {to}\r\nSubject: {subject}\r\n\r\nHello {subject}.\r\n").into_bytes()
}

/// Posts every packet to `port` from 8 threads; each must get 200.
fn post_all(port: u16, packets: &[String]) {
    std::thread::scope(|s| {
        for part in packets.chunks(packets.len().div_ceil(8)) {
            s.spawn(move || {
                for p in part {
                    let (status, body) = post_packet(port, p).unwrap();
                    assert_eq!(status, 200, "{body}");
                }
            });
        }
    });
}

/// Waits until the exit has settled `queued` messages in all.
fn settled(net: &mut Network, queued: u64, what: &str) -> serde_json::Value {
    wait_status(net.node("x"), TIMEOUT, what, |s| {
        is(s, "mail_queued", queued)
            && s["mail"] == 0
            && counter(s, "mail_delivered") + counter(s, "mail_dropped") == queued
    })
}

#[test]
fn a_burst_to_one_address_delivers_exactly_the_limit_and_the_rest_is_counted() {
    let sink = SmtpSink::start();
    let mut net = Network::start_with(&[("x", true)], sink.port, false, |_| TAIL.into());
    let port = net.node("x").port;
    let exit = hop(port);

    // The opt-out page and the abuse contact in the conf.
    let (status, page) = get(port, "/blockme.txt");
    assert_eq!(status, 200);
    assert!(page.contains("abuse@mix.example"), "{page}");
    assert!(page.contains("by itself"), "{page}");
    let (_, conf) = get(port, "/remailer-conf.txt");
    assert!(
        conf.contains("\nSMTP: Yes\nAbuse: abuse@mix.example\n\n"),
        "{conf}"
    );

    // 500 messages to one address, as fast as we can post them.
    let started = Instant::now();
    let packets: Vec<String> = (0..BURST)
        .flat_map(|i| {
            let m = message("Victim@example.org", &format!("burst {i}"));
            mail_packets(std::slice::from_ref(&exit), &m, i as u64)
        })
        .collect();
    post_all(port, &packets);
    let posted = started.elapsed();
    settled(&mut net, BURST as u64, "the burst");
    let s = wait_status(net.node("x"), TIMEOUT, "the counts", |st| {
        counter(st, "exit_recipients_rate_limited") >= 480
    });
    let got = sink.received();
    assert_eq!(got.len(), 20, "exactly the per-address limit is delivered");
    assert_eq!(counter(&s, "mail_delivered"), 20);
    assert_eq!(counter(&s, "mail_dropped"), 480);
    assert_eq!(counter(&s, "exit_recipients_rate_limited"), 480);
    assert_eq!(counter(&s, "exit_recipients_delivered"), 20);
    eprintln!(
        "exit_abuse: {BURST} packets posted in {posted:.1?}, settled after {:.1?}: \
         delivered {}, rate limited {}, dropped {}",
        started.elapsed(),
        counter(&s, "mail_delivered"),
        counter(&s, "exit_recipients_rate_limited"),
        counter(&s, "mail_dropped"),
    );
    for m in &got {
        let head = m.head();
        assert!(
            head.starts_with(&format!("From: {EXIT_FROM}\r\n")),
            "a message without From: gets the exit's:\n{head}"
        );
        let unfolded = head.replace("\r\n ", " ");
        assert!(
            unfolded.contains("anonymous remailer")
                && unfolded.contains("Abuse: abuse@mix.example"),
            "{head}"
        );
        assert_eq!(m.rcpt_tos, ["Victim@example.org"]);
    }

    // The domain limit: example.org has 10 deliveries left today.
    let others: Vec<String> = (0..15)
        .flat_map(|i| {
            let m = message(&format!("other{i}@example.org"), &format!("other {i}"));
            mail_packets(std::slice::from_ref(&exit), &m, 1000 + i)
        })
        .collect();
    post_all(port, &others);
    let s = settled(&mut net, 515, "the domain's messages");
    assert_eq!(counter(&s, "mail_delivered"), 30);
    assert_eq!(sink.wait_for(30, TIMEOUT).len(), 30);

    // The operator blocks an address while the node runs; it applies to
    // the next message at once.
    let config = net.node("x").config.display().to_string();
    let out = mimix(&["block", "add", "friend@example.net", "--config", &config]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let out = mimix(&["block", "list", "--config", &config]);
    assert_eq!(String::from_utf8_lossy(&out.stdout), "friend@example.net\n");
    let m = b"To: friend@example.net, ok@example.net\r\nSubject: blocked\r\n\r\nx\r\n";
    post_all(port, &mail_packets(std::slice::from_ref(&exit), m, 2000));
    settled(&mut net, 516, "the blocked message");
    let got = sink.wait_for(31, TIMEOUT);
    assert_eq!(got[30].rcpt_tos, ["ok@example.net"]);
    wait_status(net.node("x"), TIMEOUT, "the blocked count", |st| {
        is(st, "exit_recipients_blocked", 1)
    });

    // Unblocked again: the next message to the address is delivered.
    let out = mimix(&["block", "remove", "Friend@example.net", "--config", &config]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let out = mimix(&["block", "list", "--config", &config]);
    assert_eq!(String::from_utf8_lossy(&out.stdout), "");
    let out = mimix(&["block", "remove", "friend@example.net", "--config", &config]);
    assert!(!out.status.success(), "removing it twice fails");
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("no such entry"),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let m = b"To: friend@example.net\r\nSubject: unblocked\r\n\r\nx\r\n";
    post_all(port, &mail_packets(std::slice::from_ref(&exit), m, 2001));
    settled(&mut net, 517, "the unblocked message");
    let got = sink.wait_for(32, TIMEOUT);
    assert_eq!(got[31].rcpt_tos, ["friend@example.net"]);

    // SIGKILL and restart: the counters held, the limit still holds today.
    let node = net.node("x");
    node.kill();
    node.start();
    let again: Vec<String> = (0..5)
        .flat_map(|i| {
            let m = message("victim@EXAMPLE.org", &format!("after restart {i}"));
            mail_packets(std::slice::from_ref(&exit), &m, 3000 + i)
        })
        .collect();
    post_all(port, &again);
    settled(&mut net, 522, "the messages after the restart");
    let s = net.node("x").stopped_status();
    assert_eq!(counter(&s, "exit_recipients_rate_limited"), 480 + 5 + 5);
    assert_eq!(counter(&s, "mail_delivered"), 32);
    assert_eq!(counter(&s, "exit_recipients_blocked"), 1);
    assert_eq!(sink.received().len(), 32, "nothing more was delivered");
}
