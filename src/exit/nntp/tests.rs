//! Sessions against a scripted server over an in-memory stream.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::time::Duration;

use tokio::io::{AsyncBufReadExt, AsyncWriteExt, BufReader, DuplexStream};

use super::*;

/// What the scripted server does on one command line.
enum Act {
    /// Expect a command starting with this text and send the reply.
    Reply(&'static str, &'static str),
    /// Read the article up to its `.` line, then send the reply.
    Article(&'static str),
    /// Expect a command starting with this text and hang up.
    Hangup(&'static str),
}

/// Plays a server: the greeting, then the script. Returns every line the
/// client sent.
async fn serve(
    stream: DuplexStream,
    greeting: &str,
    script: Vec<Act>,
    delay: Duration,
) -> Vec<String> {
    let mut io = BufReader::new(stream);
    let mut seen = Vec::new();
    tokio::time::sleep(delay).await;
    if io.get_mut().write_all(greeting.as_bytes()).await.is_err() {
        return seen;
    }
    for act in script {
        let mut line = String::new();
        if io.read_line(&mut line).await.unwrap_or(0) == 0 {
            break;
        }
        seen.push(line.clone());
        let reply = match act {
            Act::Reply(want, reply) => {
                assert!(line.starts_with(want), "expected {want:?}, got {line:?}");
                reply
            }
            Act::Hangup(want) => {
                assert!(line.starts_with(want), "expected {want:?}, got {line:?}");
                return seen;
            }
            Act::Article(reply) => {
                while line != ".\r\n" {
                    line.clear();
                    if io.read_line(&mut line).await.unwrap_or(0) == 0 {
                        return seen;
                    }
                    seen.push(line.clone());
                }
                reply
            }
        };
        tokio::time::sleep(delay).await;
        if io.get_mut().write_all(reply.as_bytes()).await.is_err() {
            break;
        }
    }
    seen
}

const MODE_SWITCHING: &str = "101 caps\r\nVERSION 2\r\nIHAVE\r\nMODE-READER\r\n.\r\n";
const READER: &str = "101 caps\r\nVERSION 2\r\nREADER\r\nPOST\r\n.\r\n";

fn config() -> NntpConfig {
    NntpConfig {
        connect_timeout: Duration::from_secs(4),
        command_timeout: Duration::from_secs(4),
        session_timeout: Duration::from_secs(60),
        ..NntpConfig::default()
    }
}

fn article() -> Article {
    Article::new(b"Newsgroups: a.b\r\nSubject: s\r\n\r\n.dot\r\nbody\r\n").unwrap()
}

async fn run(
    client: &NntpClient,
    greeting: &str,
    script: Vec<Act>,
) -> (Result<(), NntpError>, Vec<String>) {
    run_slow(client, greeting, script, Duration::ZERO).await
}

async fn run_slow(
    client: &NntpClient,
    greeting: &str,
    script: Vec<Act>,
    delay: Duration,
) -> (Result<(), NntpError>, Vec<String>) {
    let (ours, theirs) = tokio::io::duplex(4096);
    let greeting = greeting.to_owned();
    let server = tokio::spawn(async move { serve(theirs, &greeting, script, delay).await });
    let result = client.post_over(ours, &article()).await;
    (result, server.await.unwrap())
}

fn posting(caps: &'static str) -> Vec<Act> {
    vec![
        Act::Reply("CAPABILITIES", caps),
        Act::Reply("MODE READER", "200 reader\r\n"),
        Act::Reply("POST", "340 send\r\n"),
        Act::Article("240 ok\r\n"),
        Act::Reply("QUIT", "205 bye\r\n"),
    ]
}

#[tokio::test]
async fn posts_to_a_mode_switching_server() {
    let client = NntpClient::new(config()).unwrap();
    let (result, seen) = run(&client, "200 transit\r\n", posting(MODE_SWITCHING)).await;
    result.unwrap();
    let want = [
        "CAPABILITIES\r\n",
        "MODE READER\r\n",
        "POST\r\n",
        "Newsgroups: a.b\r\n",
        "Subject: s\r\n",
        "\r\n",
        "..dot\r\n",
        "body\r\n",
        ".\r\n",
        "QUIT\r\n",
    ];
    assert_eq!(seen, want);
}

#[tokio::test]
async fn reader_servers_and_old_servers_get_mode_reader_only_when_needed() {
    let client = NntpClient::new(config()).unwrap();
    let mut script = posting(READER);
    script.remove(1);
    let (result, seen) = run(&client, "200 reader\r\n", script).await;
    result.unwrap();
    assert!(!seen.iter().any(|l| l.starts_with("MODE")));

    let old = vec![
        Act::Reply("CAPABILITIES", "500 what?\r\n"),
        Act::Reply("MODE READER", "500 what?\r\n"),
        Act::Reply("POST", "340 send\r\n"),
        Act::Article("240 ok\r\n"),
    ];
    let (result, _) = run(&client, "201 no posting\r\n", old).await;
    result.unwrap();

    let auth_first = vec![
        Act::Reply("CAPABILITIES", "480 log in first\r\n"),
        Act::Reply("MODE READER", "480 log in first\r\n"),
        Act::Reply("POST", "480 log in first\r\n"),
    ];
    let (result, _) = run(&client, "200 hi\r\n", auth_first).await;
    let e = result.unwrap_err();
    assert!(
        matches!(
            e,
            NntpError::Reply {
                step: Step::Post,
                code: 480,
                ..
            }
        ),
        "{e:?}"
    );
    let gone = vec![
        Act::Reply("CAPABILITIES", "500 what?\r\n"),
        Act::Reply("MODE READER", "502 no reading for you\r\n"),
    ];
    let e = run(&client, "200 hi\r\n", gone).await.0.unwrap_err();
    assert!(e.is_permanent(), "{e:?}");
}

#[tokio::test]
async fn authenticates_without_showing_the_password() {
    let dir = tempfile::tempdir().unwrap();
    let pw = dir.path().join("pw");
    std::fs::write(&pw, "s3cret\n").unwrap();
    let client = NntpClient::new(NntpConfig {
        username: Some("poster".into()),
        password_file: Some(pw),
        ..config()
    })
    .unwrap();
    assert!(!format!("{client:?}").contains("s3cret"));
    let mut script = posting(READER);
    script.remove(1);
    script.insert(1, Act::Reply("AUTHINFO USER poster", "381 more\r\n"));
    script.insert(2, Act::Reply("AUTHINFO PASS s3cret", "281 ok\r\n"));
    let (result, _) = run(&client, "201 reader\r\n", script).await;
    result.unwrap();

    let refused = vec![
        Act::Reply("CAPABILITIES", READER),
        Act::Reply("AUTHINFO USER", "381 more\r\n"),
        Act::Reply("AUTHINFO PASS", "481 no\r\n"),
    ];
    let (result, _) = run(&client, "201 reader\r\n", refused).await;
    let e = result.unwrap_err();
    assert_eq!((e.code(), e.is_temporary()), (Some(481), true), "{e:?}");
    assert!(
        !e.to_string().contains("no"),
        "reply text kept out of Display"
    );
}

/// Runs a session whose last scripted act is a refusal.
async fn refusal(greeting: &str, script: Vec<Act>) -> NntpError {
    let client = NntpClient::new(config()).unwrap();
    run(&client, greeting, script).await.0.unwrap_err()
}

#[tokio::test]
async fn refusals_are_classified() {
    let caps = || Act::Reply("CAPABILITIES", READER);
    let post = || Act::Reply("POST", "340 send\r\n");
    let cases: Vec<(&str, Vec<Act>, u16, bool)> = vec![
        (
            "200 r\r\n",
            vec![caps(), post(), Act::Article("441 no such group\r\n")],
            441,
            true,
        ),
        (
            "200 r\r\n",
            vec![caps(), Act::Reply("POST", "440 not allowed\r\n")],
            440,
            true,
        ),
        ("502 go away\r\n", vec![], 502, true),
        (
            "200 r\r\n",
            vec![caps(), Act::Reply("POST", "502 no\r\n")],
            502,
            true,
        ),
        ("400 busy\r\n", vec![], 400, false),
        (
            "200 r\r\n",
            vec![caps(), Act::Reply("POST", "480 auth first\r\n")],
            480,
            false,
        ),
        (
            "200 r\r\n",
            vec![caps(), post(), Act::Article("403 disk full\r\n")],
            403,
            false,
        ),
        (
            "200 r\r\n",
            vec![caps(), Act::Reply("POST", "250 what\r\n")],
            250,
            false,
        ),
    ];
    for (greeting, script, code, permanent) in cases {
        let e = refusal(greeting, script).await;
        assert_eq!(
            (e.code(), e.is_permanent()),
            (Some(code), permanent),
            "{e:?}"
        );
    }
}

#[tokio::test]
async fn broken_sessions_are_temporary() {
    let long = format!("200 {}\r\n", "x".repeat(600));
    let e = refusal(&long, vec![]).await;
    assert!(
        matches!(
            e,
            NntpError::LineTooLong {
                step: Step::Greeting
            }
        ),
        "{e:?}"
    );
    let e = refusal(
        "200 r\r\n",
        vec![Act::Reply("CAPABILITIES", READER), Act::Hangup("POST")],
    )
    .await;
    assert!(matches!(e, NntpError::Closed { step: Step::Post }), "{e:?}");
    let e = refusal("200 r\r\n", vec![Act::Reply("CAPABILITIES", "400 bye\r\n")]).await;
    assert_eq!((e.code(), e.is_temporary()), (Some(400), true));
    let e = refusal("hello\r\n", vec![]).await;
    assert!(matches!(e, NntpError::Malformed { .. }));
    for e in [
        NntpError::Closed { step: Step::Post },
        NntpError::Malformed {
            step: Step::Greeting,
        },
    ] {
        assert!(e.is_temporary());
    }
    assert!(Article::new(b"").unwrap_err().is_permanent());
}

#[tokio::test]
async fn a_lost_quit_does_not_undo_the_post() {
    let client = NntpClient::new(config()).unwrap();
    let mut script = posting(READER);
    script.remove(1);
    script.pop();
    script.push(Act::Hangup("QUIT"));
    let (result, _) = run(&client, "200 r\r\n", script).await;
    result.unwrap();
}

#[tokio::test(start_paused = true)]
async fn timeouts_fire() {
    let client = NntpClient::new(config()).unwrap();
    let (result, _) = run_slow(&client, "200 r\r\n", vec![], Duration::from_secs(5)).await;
    assert!(matches!(
        result,
        Err(NntpError::Timeout {
            step: Step::Greeting
        })
    ));

    // Each reply inside the 4 s limits, the session over its 5 s.
    let client = NntpClient::new(NntpConfig {
        session_timeout: Duration::from_secs(5),
        ..config()
    })
    .unwrap();
    let slow = Duration::from_secs(3);
    let (result, _) = run_slow(&client, "200 r\r\n", posting(READER), slow).await;
    assert!(
        matches!(result, Err(NntpError::SessionTimeout)),
        "{result:?}"
    );
}

#[tokio::test]
async fn starttls_refuses_data_ahead_of_the_handshake() {
    let client = NntpClient::new(NntpConfig {
        tls: NntpTls::Starttls,
        ..config()
    })
    .unwrap();
    let script = vec![
        Act::Reply("CAPABILITIES", READER),
        Act::Reply("STARTTLS", "382 go\r\n240 injected\r\n"),
    ];
    let (result, _) = run(&client, "200 r\r\n", script).await;
    assert!(
        matches!(
            result,
            Err(NntpError::Unsolicited {
                step: Step::StartTls
            })
        ),
        "{result:?}"
    );

    let script = vec![
        Act::Reply("CAPABILITIES", READER),
        Act::Reply("STARTTLS", "580 no TLS here\r\n"),
    ];
    let (result, _) = run(&client, "200 r\r\n", script).await;
    let e = result.unwrap_err();
    assert_eq!((e.code(), e.is_permanent()), (Some(580), true));
}
