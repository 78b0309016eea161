//! The exit's NNTP client against a real INN server (Debian package
//! `inn2`), started per test by `support::nntp::InnServer`.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod support;

use std::time::Duration;

use mimix::exit::nntp::{Article, NntpClient, NntpConfig, NntpError, NntpTls, Step};
use support::nntp::{InnOptions, InnServer, body, header};

fn config(port: u16) -> NntpConfig {
    NntpConfig {
        host: "127.0.0.1".into(),
        port: Some(port),
        connect_timeout: Duration::from_secs(10),
        command_timeout: Duration::from_secs(20),
        session_timeout: Duration::from_secs(60),
        ..NntpConfig::default()
    }
}

/// A message with dot lines that need stuffing and a body of about 300 KB.
fn message(group: &str, id: &str) -> (Vec<u8>, Vec<u8>) {
    let mut body = b".leading dot\r\n..two dots\r\n.\r\n. space\r\n\r\n".to_vec();
    for i in 0..3000 {
        body.extend_from_slice(format!("{i:05} {}\r\n", "abcdefghij".repeat(i % 10)).as_bytes());
    }
    body.extend_from_slice(b"last line, then a dot line\r\n.\r\n");
    let mut msg = format!(
        "From: Nobody <nobody@test.invalid>\r\nNewsgroups: {group}\r\n\
         Subject: dot-stuffing test\r\nMessage-ID: <{id}@test.invalid>\r\n\r\n"
    )
    .into_bytes();
    msg.extend_from_slice(&body);
    (msg, body)
}

async fn post(config: NntpConfig, msg: &[u8]) -> Result<(), NntpError> {
    NntpClient::new(config)
        .unwrap()
        .post(&Article::new(msg).unwrap())
        .await
}

#[test]
fn server_starts_and_greets() {
    let server = InnServer::start(&InnOptions::groups(&["local.test"]));
    eprintln!("innd answered {:?} after spawn", server.startup);
    let mut reader = server.reader();
    assert_eq!(reader.group("local.test"), (0, 1, 0));
    assert!(reader.article("<none@test.invalid>").is_none());
    assert!(server.dir().join("etc/inn.conf").exists());
}

#[tokio::test]
async fn posted_article_reads_back_byte_for_byte() {
    let server = InnServer::start(&InnOptions::groups(&["local.test", "local.other"]));
    let (msg, want) = message("local.test", "a1");
    post(config(server.port), &msg).await.unwrap();

    // innd greets loopback clients as a peer: posting needed MODE READER.
    let mut reader = server.reader();
    assert!(
        reader.greeting.contains("transit mode"),
        "{}",
        reader.greeting
    );
    let by_id = reader.article("<a1@test.invalid>").unwrap();
    assert_eq!(body(&by_id), &want[..]);
    assert_eq!(header(&by_id, "Subject"), Some("dot-stuffing test"));
    assert_eq!(header(&by_id, "Newsgroups"), Some("local.test"));
    let (count, first, _) = reader.group("local.test");
    assert_eq!(count, 1);
    assert_eq!(reader.article(&first.to_string()).unwrap(), by_id);
    assert_eq!(reader.group("local.other").0, 0);
}

#[tokio::test]
async fn refused_posts_are_permanent() {
    let mut options = InnOptions::groups(&["local.test"]);
    options.groups.push(("local.closed".into(), false));
    let server = InnServer::start(&options);
    let (ok, _) = message("local.test", "dup");
    post(config(server.port), &ok).await.unwrap();
    for (group, id) in [
        ("local.nosuch", "n1"),
        ("local.closed", "c1"),
        ("local.test", "dup"),
    ] {
        let (msg, _) = message(group, id);
        let e = post(config(server.port), &msg).await.unwrap_err();
        assert!(
            matches!(
                e,
                NntpError::Reply {
                    step: Step::Article,
                    code: 441,
                    ..
                }
            ),
            "{group}: {e:?}"
        );
        assert!(e.is_permanent());
    }
    let mut reader = server.reader();
    assert!(reader.article("<n1@test.invalid>").is_none());
    assert_eq!(reader.group("local.test").0, 1);
}

#[tokio::test]
async fn authinfo_is_required_and_checked() {
    let server = InnServer::start(&InnOptions {
        groups: vec![("local.test".into(), true)],
        users: vec![
            ("poster".into(), "right pw".into(), "RP".into()),
            ("lurker".into(), "lurk".into(), "R".into()),
        ],
        tls: false,
        port: 0,
    });
    let dir = tempfile::tempdir().unwrap();
    let login = |user: &str, pw: &str| {
        let path = dir.path().join(user);
        std::fs::write(&path, format!("{pw}\n")).unwrap();
        NntpConfig {
            username: Some(user.into()),
            password_file: Some(path),
            ..config(server.port)
        }
    };
    let (msg, want) = message("local.test", "auth1");
    post(login("poster", "right pw"), &msg).await.unwrap();
    let stored = server.reader().article("<auth1@test.invalid>").unwrap();
    assert_eq!(body(&stored), &want[..]);

    let (msg, _) = message("local.test", "auth2");
    let cases = [
        (
            post(config(server.port), &msg).await,
            Step::Post,
            480,
            false,
        ),
        (
            post(login("poster", "wrong"), &msg).await,
            Step::Auth,
            481,
            false,
        ),
        (
            post(login("lurker", "lurk"), &msg).await,
            Step::Post,
            440,
            true,
        ),
    ];
    for (result, step, code, permanent) in cases {
        let e = result.unwrap_err();
        assert!(
            matches!(&e, NntpError::Reply { step: s, code: c, .. } if *s == step && *c == code),
            "{e:?}"
        );
        assert_eq!(e.is_permanent(), permanent, "{e:?}");
    }
}

#[tokio::test]
async fn tls_both_ways() {
    let server = InnServer::start(&InnOptions {
        tls: true,
        ..InnOptions::groups(&["local.test"])
    });
    let tls_port = server.tls_port.unwrap();
    let tls = |mode, port, accept| NntpConfig {
        host: "localhost".into(),
        tls: mode,
        accept_invalid_certs: accept,
        ..config(port)
    };
    let (msg, _) = message("local.test", "t1");
    post(tls(NntpTls::Starttls, server.port, true), &msg)
        .await
        .unwrap();
    let (msg, _) = message("local.test", "t2");
    post(tls(NntpTls::Tls, tls_port, true), &msg).await.unwrap();
    let mut reader = server.reader();
    assert!(reader.article("<t1@test.invalid>").is_some());
    assert!(reader.article("<t2@test.invalid>").is_some());

    // The self-signed certificate is refused unless allowed.
    let (msg, _) = message("local.test", "t3");
    for (mode, port) in [(NntpTls::Starttls, server.port), (NntpTls::Tls, tls_port)] {
        let e = post(tls(mode, port, false), &msg).await.unwrap_err();
        assert!(matches!(e, NntpError::Tls(_)), "{e:?}");
        assert!(e.is_temporary());
    }
}

#[tokio::test]
async fn a_stopped_server_is_a_temporary_failure() {
    let mut server = InnServer::start(&InnOptions::groups(&["local.test"]));
    let port = server.port;
    server.stop();
    let (msg, _) = message("local.test", "s1");
    let e = post(config(port), &msg).await.unwrap_err();
    assert!(matches!(e, NntpError::Connect(_)), "{e:?}");
    assert!(e.is_temporary());
}
