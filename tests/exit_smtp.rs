//! Exit delivery against a real, independent SMTP server: Python's
//! `aiosmtpd` (Debian package `python3-aiosmtpd`), started per test on a
//! free loopback port by `tests/support/smtp_sink.py` (see
//! `tests/support/smtp.rs`).

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod support;

use std::sync::Arc;
use std::time::{Duration, UNIX_EPOCH};

use mimix::clock::ManualClock;
use mimix::exit::mx::{MxAnswer, MxFuture, MxRecord, MxResolver};
use mimix::exit::policy::PolicyError;
use mimix::exit::smtp::{FailureKind, SmtpMode};
use mimix::exit::{Delivery, DeliveryResult, Exit, ExitConfig};
use rand::SeedableRng;
use rand::rngs::StdRng;
use support::smtp::SmtpSink;

fn config(port: u16) -> ExitConfig {
    let mut c = ExitConfig::default();
    c.policy.from = "Anonymous Remailer <remailer@mix.example>".into();
    c.smtp.host = "127.0.0.1".into();
    c.smtp.port = port;
    c.smtp.connect_timeout = Duration::from_secs(10);
    c.smtp.command_timeout = Duration::from_secs(10);
    c.smtp.session_timeout = Duration::from_secs(30);
    c
}

fn exit(config: &ExitConfig) -> Exit {
    // 2001-09-09T01:46:40Z.
    let clock = ManualClock::new(UNIX_EPOCH + Duration::from_secs(1_000_000_000));
    Exit::new(config, Arc::new(clock)).unwrap()
}

fn prepare(exit: &Exit, payload: &[u8]) -> Delivery {
    exit.prepare(payload, &mut StdRng::seed_from_u64(3))
        .unwrap()
}

fn header_block(content: &[u8]) -> String {
    let end = content.windows(4).position(|w| w == b"\r\n\r\n").unwrap();
    String::from_utf8(content[..end + 2].to_vec()).unwrap()
}

const BODY: &[u8] = b"Hello,\r\n.a line starting with a dot\r\n..two dots\r\n.\r\n\r\n\
caf\xc3\xa9 \t trailing whitespace \r\nlast line without a newline";

#[tokio::test]
async fn relay_delivers_the_policed_message_with_the_exact_body() {
    let sink = SmtpSink::start();
    let exit = exit(&config(sink.port));
    let mut payload = b"From: Real Name <real@home.example>\r\n\
X-Mailer: Leaky 1.0\r\n\
Received: from laptop (10.1.2.3)\r\n\
Message-ID: <leak@laptop>\r\n\
To: Alice <alice@example.org>\r\n\
Bcc: bob@example.net\r\n\
Subject: test message\r\n\
Reply-To: nym@nym.example\r\n\
Content-Type: text/plain; charset=utf-8\r\n\
\r\n"
        .to_vec();
    payload.extend_from_slice(BODY);

    let mut delivery = prepare(&exit, &payload);
    let sent = delivery.message.clone();
    assert_eq!(exit.deliver(&mut delivery).await, DeliveryResult::Delivered);
    assert!(delivery.envelope_to.is_empty());

    let got = sink.received();
    assert_eq!(got.len(), 1);
    let m = &got[0];
    assert_eq!(
        m.content, sent,
        "the server stores exactly what the exit built"
    );
    assert_eq!(m.mail_from, "remailer@mix.example");
    assert_eq!(m.rcpt_tos, ["alice@example.org", "bob@example.net"]);
    assert_eq!(m.helo, "mix.example");

    let end = m.content.windows(4).position(|w| w == b"\r\n\r\n").unwrap();
    let mut expected_body = BODY.to_vec();
    expected_body.extend_from_slice(b"\r\n");
    assert_eq!(&m.content[end + 4..], expected_body.as_slice());

    let head = header_block(&m.content);
    assert!(head.starts_with("From: Anonymous Remailer <remailer@mix.example>\r\n"));
    assert!(head.contains("Date: Sun, 09 Sep 2001 01:46:40 +0000\r\n"));
    assert!(head.contains("Comments: This message was sent through an anonymous remailer."));
    assert!(head.contains("\r\nTo: Alice <alice@example.org>\r\n"));
    assert!(head.contains("\r\nSubject: test message\r\n"));
    assert!(head.contains("\r\nReply-To: nym@nym.example\r\n"));
    for gone in [
        "real@home.example",
        "X-Mailer",
        "Received",
        "leak@laptop",
        "Bcc",
        "bob@",
    ] {
        assert!(!head.contains(gone), "{gone} reached the recipient");
    }
    assert_eq!(exit.counts().delivered_recipients, 2);
}

#[tokio::test]
async fn a_5xx_recipient_fails_and_the_others_still_get_the_message() {
    let sink = SmtpSink::start();
    let exit = exit(&config(sink.port));

    let mut only_rejected = prepare(&exit, b"To: reject-me@example.org\r\n\r\nbody\r\n");
    match exit.deliver(&mut only_rejected).await {
        DeliveryResult::Failed(f) => {
            assert_eq!(f.kind, FailureKind::Rejected);
            assert_eq!(f.code, Some(550));
        }
        other => panic!("expected Failed, got {other:?}"),
    }
    assert!(only_rejected.envelope_to.is_empty());
    assert!(sink.received().is_empty());

    let mut mixed = prepare(
        &exit,
        b"To: reject-me@example.org, alice@example.org\r\n\r\nbody\r\n",
    );
    assert_eq!(exit.deliver(&mut mixed).await, DeliveryResult::Delivered);
    let got = sink.received();
    assert_eq!(got.len(), 1);
    assert_eq!(got[0].rcpt_tos, ["alice@example.org"]);
    let counts = exit.counts();
    assert_eq!(
        (counts.failed_recipients, counts.delivered_recipients),
        (2, 1)
    );
}

#[tokio::test]
async fn a_4xx_recipient_is_retried_alone() {
    let sink = SmtpSink::start();
    let exit = exit(&config(sink.port));
    let mut d = prepare(
        &exit,
        b"To: defer-me@example.org, alice@example.org\r\n\r\nbody\r\n",
    );
    match exit.deliver(&mut d).await {
        DeliveryResult::Retry(f) => {
            assert_eq!(f.kind, FailureKind::Deferred);
            assert_eq!(f.code, Some(451));
        }
        other => panic!("expected Retry, got {other:?}"),
    }
    let pending: Vec<String> = d.envelope_to.iter().map(ToString::to_string).collect();
    assert_eq!(pending, ["defer-me@example.org"]);
    assert_eq!(sink.received()[0].rcpt_tos, ["alice@example.org"]);
}

#[tokio::test]
async fn a_closed_port_is_retried() {
    let port = {
        let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        l.local_addr().unwrap().port()
    };
    let exit = exit(&config(port));
    let mut d = prepare(&exit, b"To: alice@example.org\r\n\r\nbody\r\n");
    match exit.deliver(&mut d).await {
        DeliveryResult::Retry(f) => assert_eq!(f.kind, FailureKind::Connection),
        other => panic!("expected Retry, got {other:?}"),
    }
    assert_eq!(d.envelope_to.len(), 1);
}

#[tokio::test]
async fn blocked_recipients_are_dropped_and_the_rest_delivered() {
    let sink = SmtpSink::start();
    let dir = tempfile::tempdir().unwrap();
    let list = dir.path().join("blocklist.txt");
    std::fs::write(
        &list,
        "# on request\nvictim@example.org\n@blocked.example\n",
    )
    .unwrap();
    let mut c = config(sink.port);
    c.blocklist = list;
    let exit = exit(&c);

    let mut d = prepare(
        &exit,
        b"To: victim@example.org, alice@example.org\r\nCc: x@blocked.example\r\n\r\nhi\r\n",
    );
    assert_eq!(exit.deliver(&mut d).await, DeliveryResult::Delivered);
    assert_eq!(sink.received()[0].rcpt_tos, ["alice@example.org"]);
    assert_eq!(exit.counts().blocked_recipients, 2);

    let all_blocked = exit.prepare(
        b"To: VICTIM@example.org\r\n\r\nhi\r\n",
        &mut StdRng::seed_from_u64(1),
    );
    assert_eq!(all_blocked, Err(PolicyError::AllRecipientsBlocked(1)));
    assert_eq!(exit.counts().rejected, 1);
}

#[tokio::test]
async fn a_server_refusing_ehlo_gets_helo_on_the_same_connection() {
    for reply in [
        "502 5.5.1 EHLO not implemented",
        "500 5.5.2 Error: command not recognized",
    ] {
        let sink = SmtpSink::refusing_ehlo(reply);
        let exit = exit(&config(sink.port));
        let mut payload = b"To: Alice <alice@example.org>\r\nSubject: helo\r\n\r\n".to_vec();
        payload.extend_from_slice(BODY);
        let mut d = prepare(&exit, &payload);
        let sent = d.message.clone();
        assert_eq!(
            exit.deliver(&mut d).await,
            DeliveryResult::Delivered,
            "{reply}"
        );
        let got = sink.received();
        assert_eq!(got.len(), 1, "{reply}");
        let m = &got[0];
        assert!(!m.esmtp, "the session used HELO after {reply:?}");
        assert_eq!(m.helo, "mix.example");
        assert_eq!(
            m.connections, 1,
            "HELO went on the connection EHLO was refused on"
        );
        assert_eq!(m.content, sent, "the message arrives exactly");
        assert_eq!(m.rcpt_tos, ["alice@example.org"]);
    }
    // An ESMTP server still gets EHLO.
    let sink = SmtpSink::start();
    let exit = exit(&config(sink.port));
    let mut d = prepare(&exit, b"To: alice@example.org\r\n\r\nhi\r\n");
    assert_eq!(exit.deliver(&mut d).await, DeliveryResult::Delivered);
    assert!(sink.received()[0].esmtp);
}

#[tokio::test]
async fn a_4xx_to_ehlo_is_still_deferred() {
    let sink = SmtpSink::refusing_ehlo("421 4.3.2 Service not available, closing channel");
    let exit = exit(&config(sink.port));
    let mut d = prepare(&exit, b"To: alice@example.org\r\n\r\nhi\r\n");
    match exit.deliver(&mut d).await {
        DeliveryResult::Retry(f) => {
            assert_eq!(f.kind, FailureKind::Deferred);
            assert_eq!(f.code, Some(421));
        }
        other => panic!("expected Retry, got {other:?}"),
    }
    assert_eq!(d.envelope_to.len(), 1);
    assert!(sink.received().is_empty());
}

/// Answers MX queries from a fixed table.
struct FakeDns(Vec<(&'static str, MxAnswer)>);

impl MxResolver for FakeDns {
    fn lookup_mx<'a>(&'a self, domain: &'a str) -> MxFuture<'a> {
        let answer = self
            .0
            .iter()
            .find(|(d, _)| *d == domain)
            .map(|(_, a)| a.clone())
            .ok_or_else(|| "SERVFAIL".to_owned());
        Box::pin(async move { answer })
    }
}

#[tokio::test]
async fn mx_mode_tries_hosts_in_preference_order_and_groups_by_domain() {
    let sink = SmtpSink::start();
    let mut c = config(sink.port);
    c.smtp.mode = SmtpMode::Mx;
    // The sink is on loopback: allowed here, refused by default (below).
    c.smtp.allow_private_mx = true;
    let mx = |preference, exchange: &str| MxRecord {
        preference,
        exchange: exchange.to_owned(),
    };
    // 127.0.0.2 is loopback but nothing listens there: the preferred host
    // refuses, the next one (the sink) accepts.
    let dns = FakeDns(vec![
        (
            "example.org",
            MxAnswer::Records(vec![mx(20, "127.0.0.1."), mx(10, "127.0.0.2.")]),
        ),
        ("example.net", MxAnswer::Records(vec![mx(0, "127.0.0.1")])),
        ("gone.example", MxAnswer::NoSuchDomain),
    ]);
    let clock = ManualClock::new(UNIX_EPOCH + Duration::from_secs(1_000_000_000));
    let exit = Exit::with_resolver(&c, Arc::new(clock), Arc::new(dns)).unwrap();

    let mut d = prepare(
        &exit,
        b"To: a@example.org, b@example.net, c@EXAMPLE.org\r\n\r\nhi\r\n",
    );
    assert_eq!(exit.deliver(&mut d).await, DeliveryResult::Delivered);
    let got = sink.received();
    let mut rcpts: Vec<Vec<String>> = got.iter().map(|m| m.rcpt_tos.clone()).collect();
    rcpts.sort();
    assert_eq!(
        rcpts,
        [
            vec!["a@example.org", "c@EXAMPLE.org"],
            vec!["b@example.net"]
        ]
    );

    let mut nx = prepare(&exit, b"To: x@gone.example\r\n\r\nhi\r\n");
    match exit.deliver(&mut nx).await {
        DeliveryResult::Failed(f) => assert_eq!(f.kind, FailureKind::NoRoute),
        other => panic!("expected Failed, got {other:?}"),
    }
    let mut servfail = prepare(&exit, b"To: x@unknown.example\r\n\r\nhi\r\n");
    match exit.deliver(&mut servfail).await {
        DeliveryResult::Retry(f) => assert_eq!(f.kind, FailureKind::Dns),
        other => panic!("expected Retry, got {other:?}"),
    }
}

#[tokio::test]
async fn mx_answers_pointing_at_private_addresses_are_refused() {
    let sink = SmtpSink::start();
    let mut c = config(sink.port);
    c.smtp.mode = SmtpMode::Mx;
    assert!(!c.smtp.allow_private_mx, "refused by default");
    let mx = |exchange: &str| MxRecord {
        preference: 10,
        exchange: exchange.to_owned(),
    };
    // Each domain's exchangers resolve to the sink's loopback address or to
    // private ones: a sender could otherwise make the exit connect there.
    let dns = FakeDns(vec![
        ("loop.example", MxAnswer::Records(vec![mx("127.0.0.1.")])),
        (
            "lan.example",
            MxAnswer::Records(vec![mx("10.0.0.1"), mx("192.168.1.1"), mx("[::1]")]),
        ),
    ]);
    let clock = ManualClock::new(UNIX_EPOCH + Duration::from_secs(1_000_000_000));
    let exit = Exit::with_resolver(&c, Arc::new(clock), Arc::new(dns)).unwrap();
    for to in ["a@loop.example", "b@lan.example"] {
        let mut d = prepare(&exit, format!("To: {to}\r\n\r\nhi\r\n").as_bytes());
        match exit.deliver(&mut d).await {
            DeliveryResult::Failed(f) => {
                assert_eq!(f.kind, FailureKind::NoRoute, "{to}");
                assert!(f.detail.contains("PrivateAddress"), "{to}: {f:?}");
            }
            other => panic!("{to}: expected Failed, got {other:?}"),
        }
    }
    assert!(sink.received().is_empty(), "nothing reached the sink");
}
