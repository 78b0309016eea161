//! [`Exit::prepare_outgoing`]: compressed payloads and posts.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::sync::Arc;
use std::time::{Duration, UNIX_EPOCH};

use proptest::prelude::*;
use rand::SeedableRng;
use rand::rngs::StdRng;

use super::*;
use crate::clock::ManualClock;
use crate::sender::compress;

fn config() -> ExitConfig {
    let mut c = ExitConfig::default();
    c.policy.from = "Anonymous Remailer <remailer@mix.example>".into();
    c
}

fn exit(config: &ExitConfig) -> Exit {
    let clock = ManualClock::new(UNIX_EPOCH + Duration::from_secs(1_000_000_000));
    Exit::new(config, Arc::new(clock)).unwrap()
}

fn prepare(exit: &Exit, payload: &[u8]) -> Result<Outgoing, PolicyError> {
    exit.prepare_outgoing(payload, &mut StdRng::seed_from_u64(1))
}

fn news_config() -> ExitConfig {
    let mut c = config();
    c.news.mode = news::NewsMode::Nntp;
    c.news.nntp.host = "news.example.net".into();
    c.news.nntp.port = Some(1119);
    c
}

#[test]
fn a_compressed_payload_is_delivered_as_the_plain_one() {
    let exit = exit(&config());
    let mut message = b"To: alice@example.org\r\nSubject: big\r\n\r\n".to_vec();
    message.extend(b"the same line again and again\r\n".repeat(2000));
    let plain = prepare(&exit, &message).unwrap();
    assert_eq!(prepare(&exit, &compress(&message)).unwrap(), plain);
    assert_eq!(route_hint(&compress(&message)), "example.org");
    assert_eq!(exit.counts().rejected, 0);
}

#[test]
fn bombs_and_corrupt_streams_are_refused_and_counted() {
    let mut c = config();
    c.max_decompressed_size = 100_000;
    let exit = exit(&c);
    let mut bomb = b"To: alice@example.org\r\n\r\n".to_vec();
    bomb.resize(100_001, b'x');
    let gz = compress(&bomb);
    assert!(gz.len() < 1024, "{}", gz.len());
    let e = prepare(&exit, &gz).unwrap_err();
    assert_eq!(
        e,
        PolicyError::Gzip(gzip::GzipError::TooLarge { limit: 100_000 })
    );
    assert_eq!(e.counter().as_deref(), Some("gzip_refused_too_large"));
    bomb.truncate(100_000);
    assert!(prepare(&exit, &compress(&bomb)).is_ok(), "at the limit");
    let mut corrupt = compress(&bomb);
    let at = corrupt.len() - 6;
    corrupt[at] ^= 1;
    let e = prepare(&exit, &corrupt).unwrap_err();
    assert_eq!(e.counter().as_deref(), Some("gzip_refused_corrupt"));
    assert_eq!(exit.counts().rejected, 2);
    assert!(
        ExitConfig {
            max_decompressed_size: gzip::DEFAULT_LIMIT + 1,
            ..config()
        }
        .validate()
        .is_err()
    );
}

#[test]
fn posts_go_to_the_news_policy_only_when_posting_is_on() {
    let post = b"Newsgroups: alt.test\r\nSubject: s\r\n\r\nbody\r\n";
    let off = exit(&config());
    assert_eq!(prepare(&off, post), Err(PolicyError::NoRecipients));
    let mixed = b"To: alice@example.org\r\nNewsgroups: alt.test\r\n\r\nbody\r\n";
    let Outgoing::Mail(d) = prepare(&off, mixed).unwrap() else {
        panic!("mail");
    };
    assert!(!String::from_utf8_lossy(&d.message).contains("Newsgroups"));

    let on = exit(&news_config());
    let Outgoing::Post(p) = prepare(&on, &compress(post)).unwrap() else {
        panic!("a post");
    };
    assert_eq!(p.groups, ["alt.test"]);
    let e = prepare(&on, mixed).unwrap_err();
    assert_eq!(e.counter().as_deref(), Some("news_refused_with_recipients"));
    let e = prepare(&on, b"Newsgroups: control.cancel\r\n\r\nx").unwrap_err();
    assert_eq!(e.counter().as_deref(), Some("news_refused_control"));
    assert_eq!(on.counts().rejected, 2);
    assert!(matches!(
        prepare(&on, b"To: alice@example.org\r\n\r\nmail\r\n"),
        Ok(Outgoing::Mail(_))
    ));
}

#[test]
fn posts_are_capped_per_news_server() {
    assert_eq!(
        route_hint(b"Newsgroups: alt.test\r\n\r\nx"),
        news::NEWS_HINT
    );
    assert_eq!(
        route_hint(b"Newsgroups: alt.test\r\nTo: a@Example.org\r\n\r\nx"),
        "example.org"
    );
    let nntp = exit(&news_config());
    assert_eq!(
        nntp.destination(news::NEWS_HINT),
        "nntp:news.example.net:1119"
    );
    assert_eq!(nntp.destination("example.org"), "localhost");
    let mut c = config();
    c.news.mode = news::NewsMode::Mail2news;
    c.news.gateway = Some("mail2news@gw.example".into());
    c.smtp.mode = SmtpMode::Mx;
    let gw =
        Exit::with_resolver(&c, Arc::new(ManualClock::new(UNIX_EPOCH)), Arc::new(NoDns)).unwrap();
    assert_eq!(gw.destination(news::NEWS_HINT), "gw.example");
    assert_eq!(gw.destination("example.org"), "example.org");
}

/// A resolver that is never asked.
struct NoDns;

impl MxResolver for NoDns {
    fn lookup_mx<'a>(&'a self, _: &'a str) -> mx::MxFuture<'a> {
        Box::pin(async { Err("no DNS in this test".to_owned()) })
    }
}

fn body() -> impl Strategy<Value = Vec<u8>> {
    let words = prop::sample::select(vec![
        "mix ",
        "chain\r\n",
        "exit ",
        ".dot\r\n",
        "\u{e9}t\u{e9} ",
    ]);
    prop_oneof![
        prop::collection::vec(words, 0..3000).prop_map(|w| w.concat().into_bytes()),
        prop::collection::vec(any::<u8>(), 0..20_000),
    ]
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(32))]

    /// Random messages, mail and posts, come out of the exit the same
    /// whether their sender compressed them or not.
    #[test]
    fn compressed_and_plain_messages_round_trip_alike(body in body(), news in any::<bool>()) {
        let exit = exit(&news_config());
        let head: &[u8] = if news {
            b"Newsgroups: alt.test\r\nSubject: s\r\n\r\n"
        } else {
            b"To: alice@example.org\r\nSubject: s\r\n\r\n"
        };
        let message = [head, &body].concat();
        let plain = prepare(&exit, &message);
        let compressed = prepare(&exit, &compress(&message));
        prop_assert_eq!(&compressed, &plain);
        let out = plain.unwrap();
        prop_assert_eq!(out.is_news(), news);
        let text = match &out {
            Outgoing::Mail(d) | Outgoing::News(d) => d.message.clone(),
            Outgoing::Post(p) => p.message.clone(),
        };
        let sent_body = text.windows(4).position(|w| w == b"\r\n\r\n").unwrap() + 4;
        // Every line end, bare LF, bare CR or CRLF, becomes CRLF.
        let mut crlf = Vec::new();
        let mut bytes = body.iter().copied().peekable();
        while let Some(b) = bytes.next() {
            match b {
                b'\r' => {
                    bytes.next_if_eq(&b'\n');
                    crlf.extend_from_slice(b"\r\n");
                }
                b'\n' => crlf.extend_from_slice(b"\r\n"),
                _ => crlf.push(b),
            }
        }
        if !crlf.is_empty() && !crlf.ends_with(b"\r\n") {
            crlf.extend_from_slice(b"\r\n");
        }
        prop_assert_eq!(&text[sent_body..], &crlf[..]);
    }
}
