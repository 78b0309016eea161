//! Usenet posting and compressed payloads end to end, through real `mimix`
//! node processes on loopback (`tests/support/net.rs`): a post crosses a
//! three-hop chain and arrives at a real INN server (Debian `inn2`, see
//! `tests/support/nntp.rs`), read back with `ARTICLE`; posts the news
//! policy refuses are counted by reason; a letter sent with
//! `mimix send --gzip` reaches the SMTP sink (aiosmtpd) byte for byte in
//! fewer packets.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod support;

use std::time::{Duration, Instant};

use support::net::{EXIT_FROM, Network, NodeProc, counter, free_port, wait_until};
use support::nntp::{InnOptions, InnServer, body, header};
use support::smtp::SmtpSink;

/// Time allowed for a message to cross the chain and be delivered.
const TIMEOUT: Duration = Duration::from_secs(90);

/// The exit's news settings: NNTP to 127.0.0.1:`port`, the newsgroup
/// blocklist `blocklist`, fast timeouts.
fn news_table(port: u16, blocklist: &std::path::Path) -> String {
    format!(
        "[exit.news]\nmode = \"nntp\"\nblocklist = \"{}\"\nmax_groups = 3\n\n\
         [exit.news.nntp]\nhost = \"127.0.0.1\"\nport = {port}\n\
         connect_timeout = \"5s\"\ncommand_timeout = \"10s\"\nsession_timeout = \"20s\"\n",
        blocklist.display()
    )
}

/// A post with identifying headers the exit must remove, and a body of
/// about 15 KB (two packets) with lines NNTP must dot-stuff.
fn good_post() -> (String, String) {
    let mut body = String::from(".a line starting with a dot\r\n..two dots\r\n.\r\n\r\n");
    let mut n = 0;
    while body.len() < 15_000 {
        n += 1;
        body.push_str(&format!("line {n:04} of a post that needs two packets\r\n"));
    }
    body.push_str("last line\r\n");
    let post = format!(
        "From: Real Name <real.sender@home.example>\r\n\
         Newsgroups: local.test, local.other\r\n\
         Followup-To: local.test\r\n\
         Subject: through three remailers\r\n\
         X-Newsreader: Identifying Reader 1.0\r\n\
         Path: laptop.home.example!not-for-mail\r\n\
         NNTP-Posting-Host: 192.0.2.7\r\n\
         Message-ID: <leak-123@laptop.home.example>\r\n\
         \r\n{body}"
    );
    (post, body)
}

/// Polls the running node's status until `done` holds.
fn wait_status(node: &NodeProc, what: &str, done: impl Fn(&serde_json::Value) -> bool) {
    wait_until(TIMEOUT, Duration::from_millis(300), what, || {
        let s = node.status();
        done(&s).then_some(())
    });
}

#[test]
fn a_post_crosses_three_hops_to_inn_and_forged_ones_are_refused() {
    let started = Instant::now();
    let sink = SmtpSink::start();
    let nntp_port = free_port();
    let root = tempfile::tempdir().unwrap();
    let blocklist = root.path().join("newsgroup-blocklist.txt");
    std::fs::write(&blocklist, "# groups nobody may post to\nlocal.blocked*\n").unwrap();
    let tail = |name: &str| {
        if name == "exit" {
            news_table(nntp_port, &blocklist)
        } else {
            String::new()
        }
    };
    let mut net = Network::start_with(
        &[("m1", false), ("m2", false), ("exit", true)],
        sink.port,
        false,
        tail,
    );
    let chain = ["m1", "m2", "exit"];
    let dir = net.root.path().to_owned();

    // The news server is down when the post arrives: it is kept and retried.
    let (post, want_body) = good_post();
    std::fs::write(dir.join("good.eml"), &post).unwrap();
    assert_eq!(net.send(&chain, Some(&dir.join("good.eml")))["packets"], 2);
    wait_status(net.node("exit"), "a failed post attempt", |s| {
        counter(s, "mail_retried") >= 1
    });
    let mut groups = InnOptions::groups(&["local.test", "local.other", "local.blocked"]);
    groups.port = nntp_port;
    let inn = InnServer::start(&groups);
    let article = wait_until(
        TIMEOUT,
        Duration::from_millis(300),
        "the post at INN",
        || {
            let mut reader = inn.reader();
            let (count, first, _) = reader.group("local.test");
            (count > 0).then(|| reader.article(&first.to_string()).unwrap())
        },
    );
    let arrived = started.elapsed();

    assert_eq!(
        body(&article),
        want_body.as_bytes(),
        "the body, byte for byte"
    );
    assert_eq!(
        header(&article, "Newsgroups"),
        Some("local.test,local.other")
    );
    assert_eq!(header(&article, "Followup-To"), Some("local.test"));
    assert_eq!(header(&article, "From"), Some(EXIT_FROM));
    assert_eq!(header(&article, "Subject"), Some("through three remailers"));
    let id = header(&article, "Message-ID").unwrap().to_owned();
    assert!(
        id.ends_with("@mix.example>"),
        "the exit's own Message-ID: {id}"
    );
    assert!(header(&article, "Comments").is_some());
    let head = String::from_utf8_lossy(&article[..article.len() - body(&article).len()]);
    for gone in [
        "real.sender",
        "home.example",
        "Identifying Reader",
        "192.0.2.7",
        "leak-123",
    ] {
        assert!(!head.contains(gone), "{gone:?} was posted:\n{head}");
    }
    let mut reader = inn.reader();
    assert_eq!(
        reader.group("local.other").0,
        1,
        "crossposted to both groups"
    );
    assert_eq!(reader.article(&id).unwrap(), article);

    // Forged and abusive posts: each refused at the exit with its reason.
    let refused = [
        (
            "control",
            "Control: cancel <victim@news.example>\r\n",
            "local.test",
        ),
        (
            "approved",
            "Approved: moderator@news.example\r\n",
            "local.test",
        ),
        ("crosspost", "", "local.test,local.other,local.a,local.b"),
        ("blocked", "", "local.test,local.blocked"),
    ];
    for (reason, extra, groups) in refused {
        let file = dir.join(format!("{reason}.eml"));
        let text = format!("Newsgroups: {groups}\r\n{extra}Subject: {reason}\r\n\r\nbody\r\n");
        std::fs::write(&file, text).unwrap();
        assert_eq!(net.send(&chain, Some(&file))["packets"], 1);
    }
    wait_status(net.node("exit"), "the four refusals", |s| {
        refused
            .iter()
            .all(|(r, _, _)| counter(s, &format!("news_refused_{r}")) >= 1)
    });
    let s = net.node("exit").stopped_status();
    for (r, _, _) in refused {
        assert_eq!(counter(&s, &format!("news_refused_{r}")), 1, "{r}");
    }
    assert_eq!(counter(&s, "news_posted"), 1);
    assert_eq!(counter(&s, "news_dropped"), 0);
    assert_eq!(counter(&s, "exit_rejected"), 4);
    assert!(counter(&s, "mail_retried") >= 1);
    assert_eq!(counter(&s, "mail_delivered"), 1);
    assert_eq!(s["mail"], 0, "nothing left in the queue");
    let mut reader = inn.reader();
    assert_eq!(reader.group("local.test").0, 1, "only the good post");
    assert_eq!(reader.group("local.blocked").0, 0);
    assert!(sink.received().is_empty(), "no post went out as mail");
    eprintln!(
        "usenet: post at INN after {arrived:.1?} (news server started late), \
         whole test {:.1?}",
        started.elapsed()
    );
}

#[test]
fn a_letter_sent_with_gzip_arrives_byte_for_byte_in_fewer_packets() {
    let sink = SmtpSink::start();
    let net = Network::start(&[("g1", false), ("g2", true)], sink.port, false);
    let letter =
        std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/data/autumn-letter.eml");
    let plain = std::fs::read(&letter).unwrap();
    let (answer, stderr) = net.send_with(&["g1", "g2"], Some(&letter), &["--gzip"]);
    let gzip = &answer["gzip"];
    eprintln!("{}", stderr.trim());
    eprintln!("gzip: {gzip}");
    assert_eq!(gzip["bytes_before"], plain.len());
    assert_eq!(answer["packets"], gzip["packets_after"]);
    let (before, after) = (
        gzip["packets_before"].as_u64().unwrap(),
        gzip["packets_after"].as_u64().unwrap(),
    );
    assert_eq!((before, after), (3, 2));
    assert_eq!(gzip["packets_saved"], 1);
    assert!(
        stderr.contains(&format!("{before} -> {after} packets (saved 1)")),
        "{stderr}"
    );

    let got = sink.wait_for(1, TIMEOUT);
    let m = &got[0];
    let text = String::from_utf8(plain).unwrap();
    let (_, plain_body) = text.split_once("\n\n").unwrap();
    let want = plain_body.replace('\n', "\r\n");
    assert_eq!(
        m.body(),
        want.as_bytes(),
        "the letter's body, byte for byte"
    );
    assert!(
        m.head()
            .contains("\r\nSubject: Chair's autumn letter: the season")
    );
    assert_eq!(m.rcpt_tos, ["members@lists.elmrow-allotments.org.uk"]);
    assert!(m.head().starts_with(&format!("From: {EXIT_FROM}\r\n")));
}
