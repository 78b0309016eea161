#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::time::{Duration, SystemTime, UNIX_EPOCH};

use rand::SeedableRng;
use rand::rngs::StdRng;

use super::*;
use crate::exit::policy::PolicyConfig;

fn y2k() -> SystemTime {
    UNIX_EPOCH + Duration::from_secs(946_684_800)
}

fn policy() -> Policy {
    Policy::new(&PolicyConfig {
        from: "Anonymous Remailer <remailer@mix.example>".into(),
        ..PolicyConfig::default()
    })
    .unwrap()
}

fn nntp() -> NewsConfig {
    NewsConfig {
        mode: NewsMode::Nntp,
        ..NewsConfig::default()
    }
}

fn prepare(news: &News, payload: &[u8]) -> Result<Outgoing, PolicyError> {
    news.prepare(&policy(), payload, y2k(), &mut StdRng::seed_from_u64(5))
}

fn post(news: &News, payload: &[u8]) -> Post {
    match prepare(news, payload).unwrap() {
        Outgoing::Post(p) => p,
        other => panic!("{other:?}"),
    }
}

fn head(message: &[u8]) -> String {
    let end = find(message, b"\r\n\r\n").unwrap();
    String::from_utf8(message[..end + 2].to_vec()).unwrap()
}

const GOOD: &[u8] = b"From: Real Name <real@home.example>\r\n\
Newsgroups: alt.test,\r\n misc.test , ALT.TEST\r\n\
Followup-To: alt.test\r\n\
Subject: a post\r\n\
References: <earlier@news.example>\r\n\
Path: forged!path\r\n\
Xref: forged alt.test:1\r\n\
NNTP-Posting-Host: 192.0.2.1\r\n\
X-Trace: leak\r\n\
Message-ID: <leak@laptop>\r\n\
\r\n\
.a dot line\r\nbody\r\n";

#[test]
fn a_post_is_policed_like_mail_and_its_groups_rewritten() {
    let news = News::new(&nntp()).unwrap().unwrap();
    let p = post(&news, GOOD);
    assert_eq!(p.groups, ["alt.test", "misc.test"]);
    let head = head(&p.message);
    assert!(
        head.starts_with("From: Anonymous Remailer <remailer@mix.example>\r\n"),
        "{head}"
    );
    assert!(head.contains("Date: Sat, 01 Jan 2000 00:00:00 +0000\r\n"));
    assert!(
        head.contains("@mix.example>\r\n"),
        "own Message-ID:\n{head}"
    );
    assert!(head.contains("\r\nComments: "));
    assert!(
        head.contains("\r\nNewsgroups: alt.test,misc.test\r\n"),
        "{head}"
    );
    assert!(head.contains("\r\nFollowup-To: alt.test\r\n"));
    assert!(head.contains("\r\nSubject: a post\r\n"));
    assert!(head.contains("\r\nReferences: <earlier@news.example>\r\n"));
    for gone in [
        "real@home",
        "forged",
        "NNTP-Posting",
        "192.0.2.1",
        "X-Trace",
        "leak@",
    ] {
        assert!(!head.contains(gone), "{gone} was posted:\n{head}");
    }
    assert!(p.message.ends_with(b"\r\n\r\n.a dot line\r\nbody\r\n"));
    assert_eq!(Post::decode(&p.encode()).unwrap(), p);
    assert_eq!(news.destination(), Ok("nntp:localhost:119".to_owned()));
}

#[test]
fn control_approved_crossposts_and_bad_groups_are_refused() {
    let news = News::new(&nntp()).unwrap().unwrap();
    let refused = |extra: &str, groups: &str| {
        let payload = format!("Newsgroups: {groups}\r\n{extra}Subject: x\r\n\r\nbody\r\n");
        match prepare(&news, payload.as_bytes()) {
            Err(PolicyError::News(r)) => r,
            other => panic!("{extra:?} {groups:?}: {other:?}"),
        }
    };
    let control = NewsRefusal::Control;
    assert_eq!(refused("Control: cancel <a@b>\r\n", "alt.test"), control);
    assert_eq!(refused("Also-Control: newgroup x\r\n", "alt.test"), control);
    assert_eq!(refused("Supersedes: <a@b>\r\n", "alt.test"), control);
    assert_eq!(refused("control: cancel <a@b>\r\n", "alt.test"), control);
    assert_eq!(refused("", "alt.test,control.cancel"), control);
    assert_eq!(refused("", "control"), control);
    assert_eq!(
        refused("Approved: moderator@example.org\r\n", "alt.test"),
        NewsRefusal::Approved
    );
    assert_eq!(
        refused("", "a.one,a.two,a.three,a.four"),
        NewsRefusal::Crosspost { found: 4, max: 3 }
    );
    assert_eq!(
        refused("Followup-To: b.one,b.two,b.three,b.four\r\n", "alt.test"),
        NewsRefusal::Crosspost { found: 4, max: 3 }
    );
    for bad in ["", "alt..test", "junk", "to.node", "alt.test,", "poster"] {
        assert_eq!(refused("", bad), NewsRefusal::BadGroups, "{bad:?}");
    }
    assert_eq!(
        refused("Newsgroups: misc.test\r\n", "alt.test"),
        NewsRefusal::BadGroups
    );
    assert_eq!(
        refused("To: someone@example.org\r\n", "alt.test"),
        NewsRefusal::WithRecipients
    );
    // An old-style control message in the subject (and only the word).
    let cmsg = prepare(
        &news,
        b"Newsgroups: alt.test\r\nSubject: cmsg cancel <a@b>\r\n\r\nx",
    );
    assert_eq!(cmsg, Err(PolicyError::News(control)));
    assert!(prepare(&news, b"Newsgroups: alt.test\r\nSubject: cmsgs\r\n\r\nx").is_ok());
    // Followup-To: poster is kept as it is.
    let p = post(
        &news,
        b"Newsgroups: alt.test\r\nFollowup-To: poster\r\nSubject: s\r\n\r\nx",
    );
    assert!(head(&p.message).contains("\r\nFollowup-To: poster\r\n"));
    let reasons: std::collections::HashSet<&str> = [
        NewsRefusal::Control,
        NewsRefusal::Approved,
        NewsRefusal::Crosspost { found: 4, max: 3 },
        NewsRefusal::Blocked,
        NewsRefusal::BadGroups,
        NewsRefusal::WithRecipients,
    ]
    .iter()
    .map(NewsRefusal::reason)
    .collect();
    assert_eq!(reasons.len(), 6);
}

#[test]
fn the_newsgroup_blocklist_is_reloaded_when_it_changes() {
    let dir = tempfile::tempdir().unwrap();
    let list = dir.path().join("groups.txt");
    let news = News::new(&NewsConfig {
        blocklist: list.clone(),
        max_groups: 5,
        ..nntp()
    })
    .unwrap()
    .unwrap();
    let payload = b"Newsgroups: alt.test\r\nFollowup-To: alt.binaries.x\r\nSubject: s\r\n\r\nx";
    assert!(
        prepare(&news, payload).is_ok(),
        "a missing file blocks nothing"
    );
    std::fs::write(&list, "# no binaries\nalt.binaries.*\n").unwrap();
    assert_eq!(
        prepare(&news, payload),
        Err(PolicyError::News(NewsRefusal::Blocked))
    );
    let p = Post {
        groups: vec!["alt.binaries.x".into()],
        message: b"Newsgroups: alt.binaries.x\r\n\r\nx\r\n".to_vec(),
    };
    // Checked again before each attempt, without a connection.
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    match rt.block_on(news.post(&p)) {
        DeliveryResult::Failed(f) => assert_eq!(f.kind, FailureKind::Blocked),
        other => panic!("{other:?}"),
    }
    // A broken version is ignored; removing the file unblocks.
    std::fs::write(&list, "alt.binaries.*\nnot a pattern!\n").unwrap();
    assert!(prepare(&news, payload).is_err());
    std::fs::remove_file(&list).unwrap();
    assert!(prepare(&news, payload).is_ok());
}

#[test]
fn mail2news_sends_the_post_to_the_gateway() {
    let news = News::new(&NewsConfig {
        mode: NewsMode::Mail2news,
        gateway: Some("mail2news@gw.example".into()),
        ..NewsConfig::default()
    })
    .unwrap()
    .unwrap();
    let Outgoing::News(d) = prepare(&news, GOOD).unwrap() else {
        panic!("not a gateway delivery");
    };
    let to: Vec<String> = d.envelope_to.iter().map(ToString::to_string).collect();
    assert_eq!(to, ["mail2news@gw.example"]);
    assert_eq!(d.envelope_from.to_string(), "remailer@mix.example");
    let head = head(&d.message);
    assert!(
        head.contains("\r\nTo: <mail2news@gw.example>\r\n"),
        "{head}"
    );
    assert!(head.contains("\r\nNewsgroups: alt.test,misc.test\r\n"));
    assert_eq!(news.destination(), Err("gw.example".to_owned()));
}

#[test]
fn off_is_none_and_posts_are_recognised() {
    assert!(News::new(&NewsConfig::default()).unwrap().is_none());
    assert!(is_post(b"Subject: s\r\nnewsgroups: alt.test\r\n\r\nx"));
    assert!(is_post(b"Newsgroups:alt.test\n\nx"));
    assert!(!is_post(b"To: a@b.example\r\n\r\nNewsgroups: alt.test\r\n"));
    assert!(!is_post(b"X-Newsgroups: alt.test\r\n\r\nx"));
    assert!(!is_post(b""));
}
