//! Sender cover traffic end to end: `mimix sender` (a real process, the
//! direct transport on loopback) sends dummies through the first hop while
//! its outbox is empty, and a message queued with `mimix send --queue` is
//! delivered through two `mimix run` nodes to a real SMTP server
//! (aiosmtpd); the outbox is bounded.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod support;

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use support::net::{
    MIMIX, Network, assert_policed, counter, free_port, message, mimix, wait_until,
};
use support::smtp::SmtpSink;

const TIMEOUT: Duration = Duration::from_secs(60);

/// A `mimix sender` process, killed when dropped.
struct Sender {
    child: Option<Child>,
    log: PathBuf,
}

impl Sender {
    fn log_text(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }

    /// SIGTERM, then a clean exit.
    fn terminate(&mut self) {
        let mut c = self.child.take().unwrap();
        let sent = Command::new("kill")
            .args(["-TERM", &c.id().to_string()])
            .status()
            .unwrap();
        assert!(sent.success());
        let status = wait_until(
            TIMEOUT,
            Duration::from_millis(50),
            "the sender to stop",
            || c.try_wait().unwrap(),
        );
        assert!(
            status.success(),
            "sender exited with {status}:\n{}",
            self.log_text()
        );
    }
}

impl Drop for Sender {
    fn drop(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
        if std::thread::panicking() {
            eprintln!("--- sender log ---\n{}", self.log_text());
        }
    }
}

fn conf_args(root: &Path) -> Vec<String> {
    ["a", "x"]
        .iter()
        .flat_map(|n| {
            [
                "--conf".to_owned(),
                root.join(format!("{n}.conf")).display().to_string(),
            ]
        })
        .collect()
}

/// `mimix send --queue` of `file` into the state directory `state`.
fn queue(root: &Path, state: &Path, file: &Path) -> std::process::Output {
    let mut args = vec![
        "send".to_owned(),
        "--queue".to_owned(),
        "--json".to_owned(),
        "--insecure-direct".to_owned(),
        "--state".to_owned(),
        state.display().to_string(),
        "--chain".to_owned(),
        "a,x".to_owned(),
    ];
    args.extend(conf_args(root));
    args.push(file.display().to_string());
    let args: Vec<&str> = args.iter().map(String::as_str).collect();
    mimix(&args)
}

fn queued(state: &Path) -> usize {
    std::fs::read_dir(state.join("outbox"))
        .unwrap()
        .filter(|e| {
            let p = e.as_ref().unwrap().path();
            p.extension().is_some_and(|x| x == "msg")
        })
        .count()
}

fn stderr(out: &std::process::Output) -> String {
    String::from_utf8_lossy(&out.stderr).into_owned()
}

#[test]
fn dummies_while_the_outbox_is_empty_and_a_queued_message_is_delivered() {
    let sink = SmtpSink::start();
    let admin = free_port();
    let mut net = Network::start_with(&[("a", false), ("x", true)], sink.port, false, |name| {
        if name == "a" {
            format!("\n[admin]\nlisten = \"127.0.0.1:{admin}\"\n")
        } else {
            String::new()
        }
    });
    let root = net.root.path().to_owned();
    let letter = root.join("letter.eml");
    std::fs::write(&letter, message("queued one", "sent at a random time\r\n")).unwrap();

    // Checked as `mimix send` checks, and bounded.
    let small = root.join("small-state");
    std::fs::create_dir(&small).unwrap();
    std::fs::write(small.join("sender.toml"), "max_messages = 1\n").unwrap();
    let nobody = root.join("nobody.eml");
    std::fs::write(&nobody, "Subject: to nobody\r\n\r\nhello\r\n").unwrap();
    let out = queue(&root, &small, &nobody);
    assert!(!out.status.success());
    assert!(
        stderr(&out).contains("no To, Cc, Bcc or Newsgroups"),
        "{}",
        stderr(&out)
    );
    assert!(queue(&root, &small, &letter).status.success());
    let out = queue(&root, &small, &letter);
    assert!(!out.status.success());
    assert!(
        stderr(&out).contains("the outbox is full: 1 messages queued, at most 1 (max_messages)"),
        "{}",
        stderr(&out)
    );
    assert_eq!(queued(&small), 1);

    // The sender: a send every 300 ms on average, dummies through a alone.
    let state = root.join("sender-state");
    std::fs::create_dir(&state).unwrap();
    std::fs::write(
        state.join("sender.toml"),
        "mean_interval = \"300ms\"\ndummy_chain = \"a\"\n",
    )
    .unwrap();
    let log = root.join("sender.log");
    let mut args = vec![
        "sender".to_owned(),
        "--insecure-direct".to_owned(),
        "--state".to_owned(),
        state.display().to_string(),
    ];
    args.extend(conf_args(&root));
    let child = Command::new(MIMIX)
        .args(&args)
        .env("RUST_LOG", "debug")
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(std::fs::File::create(&log).unwrap())
        .spawn()
        .unwrap();
    let mut sender = Sender {
        child: Some(child),
        log,
    };
    let started = Instant::now();
    let a = net.node("a");
    let dummies = |a: &mut support::net::NodeProc| counter(&a.status(), "exit_dummies_discarded");
    let before = wait_until(TIMEOUT, Duration::from_millis(200), "dummies at a", || {
        Some(dummies(a)).filter(|n| *n >= 3)
    });
    let first_dummies = started.elapsed();

    let out = queue(&root, &state, &letter);
    assert!(out.status.success(), "{}", stderr(&out));
    let answer: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(answer["outbox"], 1);
    let queued_at = Instant::now();
    let got = sink.wait_for(1, TIMEOUT);
    let delivered = queued_at.elapsed();
    assert_policed(&got[0], "queued one");
    assert_eq!(
        String::from_utf8_lossy(got[0].body()),
        "sent at a random time\r\n"
    );
    wait_until(
        TIMEOUT,
        Duration::from_millis(50),
        "the outbox to empty",
        || (queued(&state) == 0).then_some(()),
    );
    assert!(sender.log_text().contains("sent a queued message"));

    // The outbox is empty again: dummies go on.
    let a = net.node("a");
    let after = dummies(a);
    let more = wait_until(TIMEOUT, Duration::from_millis(200), "more dummies", || {
        Some(dummies(a)).filter(|n| *n >= after + 3)
    });
    let status = a.status();
    // Dummies ending at a are counted apart from the packets it forwards:
    // the message's one packet.
    assert_eq!(counter(&status, "packets_accepted"), 1, "{status}");
    assert!(
        counter(&status, "exit_dummies_discarded") >= more,
        "{status}"
    );
    sender.terminate();
    assert_eq!(sink.received().len(), 1, "one message, the rest dummies");
    eprintln!(
        "cover traffic: {before} dummies at the first hop after {first_dummies:?}; \
         the queued message delivered {delivered:?} after queueing; \
         {} dummies in all at the first hop, which forwarded 1 packet",
        counter(&status, "exit_dummies_discarded")
    );
}
