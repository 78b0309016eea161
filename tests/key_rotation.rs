//! Key rotation as a running node sees it, with the node library on a
//! manual clock: a packet to a rotated-out key that is still valid (or in
//! its grace period) is accepted, one to a deleted key refused.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use mimix::clock::{Clock, ManualClock};
use mimix::config::Config;
use mimix::keystore::KeyGenerator;
use mimix::node::Node;
use mimix::transport::TransportKind;
use mimix::transport::{ClientError, ClientLimits, LoopbackDialer, fetch_conf, post_packet};
use mimix_packet::crypto::KeyGenError;
use mimix_packet::{ExitType, Hop, PublicKey, RemailerConf, SecretKey, armour, build_message};
use zeroize::Zeroizing;

/// The first day of the test (2024-10-04).
const D: u64 = 20_000;

/// Hands out pre-generated test keys instead of generating new ones.
struct TestKeys(Vec<String>);

impl TestKeys {
    fn new() -> Self {
        let root = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("tests");
        let files = ["keys/test-3072.pem", "keys/test-2048.pem"];
        Self(
            files
                .iter()
                .map(|f| std::fs::read_to_string(root.join(f)).unwrap())
                .collect(),
        )
    }
}

impl KeyGenerator for TestKeys {
    fn generate(&mut self, _bits: usize) -> Result<(SecretKey, Zeroizing<String>), KeyGenError> {
        let pem = self.0.pop().ok_or(KeyGenError::Failed)?;
        Ok((SecretKey::from_pem(&pem).unwrap(), Zeroizing::new(pem)))
    }
}

/// An exit node on a free loopback port whose SMTP server does not exist:
/// accepted mail just waits in its queue.
fn config(data_dir: &Path) -> Config {
    let mut c = Config::default_for(data_dir);
    c.node.name = "rot".into();
    c.node.smtp_exit = true;
    c.transport.kind = TransportKind::Direct;
    c.transport.listen = ([127, 0, 0, 1], 0).into();
    c.keys.bits = 2048;
    c.dummies.enabled = false;
    c.exit.smtp.host = "127.0.0.1".into();
    c.exit.smtp.port = 9;
    c.validate().unwrap();
    c
}

/// Starts the node at `day`; retries while the previous run still holds
/// the store.
async fn start(data_dir: &Path, clock: &ManualClock, day: u64, keys: &mut TestKeys) -> Node {
    clock.set(ManualClock::at_epoch_day(day).now());
    assert_eq!(clock.epoch_day(), day);
    let mut tries = 0;
    loop {
        match Node::start_with(config(data_dir), Arc::new(clock.clone()), keys).await {
            Ok(node) => return node,
            Err(e) if tries < 50 => {
                tries += 1;
                eprintln!("starting the node: {e}; retrying");
                tokio::time::sleep(Duration::from_millis(100)).await;
            }
            Err(e) => panic!("starting the node at day {day}: {e}"),
        }
    }
}

async fn stop(node: Node) {
    node.stop_token().cancel();
    tokio::time::timeout(Duration::from_secs(30), node.wait())
        .await
        .expect("the node stops within 30 s");
}

/// One single-chunk message to `key`, built on `today`, posted to the node:
/// `Ok` for 200, else the status and reason.
async fn submit(node: &Node, key: &PublicKey, today: u64) -> Result<String, (u16, String)> {
    let hop = Hop {
        key: key.clone(),
        address: node.address().to_owned(),
    };
    let payload = format!("To: alice@example.org\r\nSubject: day {today}\r\n\r\nhello\r\n");
    let packets = build_message(
        &mut rand::rng(),
        &[hop],
        ExitType::Smtp,
        payload.as_bytes(),
        today,
    )
    .unwrap();
    assert_eq!(packets.len(), 1);
    let text = armour(&packets[0]);
    post(node, &text).await.map(|()| text)
}

/// `text` with a bit flipped in header section 10, which no hop of a
/// one-hop packet checks: the same packet ID in other bytes.
fn same_id(text: &str) -> String {
    let mut p = mimix_packet::dearmour(text).unwrap();
    p.as_bytes_mut()[9 * 1024 + 100] ^= 0x20;
    armour(&p)
}

async fn post(node: &Node, text: &str) -> Result<(), (u16, String)> {
    match post_packet(
        &LoopbackDialer,
        node.address(),
        text,
        &ClientLimits::default(),
    )
    .await
    {
        Ok(()) => Ok(()),
        Err(ClientError::Rejected { status, reason }) => Err((status.as_u16(), reason)),
        Err(e) => panic!("posting to the node failed: {e}"),
    }
}

/// The node's remailer-conf as a client fetches it over HTTP.
async fn published(node: &Node, today: u64) -> RemailerConf {
    let text = fetch_conf(&LoopbackDialer, node.address(), &ClientLimits::default())
        .await
        .unwrap();
    assert_eq!(text, node.remailer_conf());
    RemailerConf::parse_valid(&text, today).unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_rotated_out_key_is_accepted_until_it_is_deleted() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("node");
    let clock = ManualClock::at_epoch_day(D);
    let mut keys = TestKeys::new();

    // Day D: the first key, valid for 270 days.
    let node = start(&data, &clock, D, &mut keys).await;
    let first = published(&node, D).await;
    assert_eq!((first.valid_from, first.valid_to), (D, D + 270));
    let old = first.key.clone();
    let text = submit(&node, &old, D).await.unwrap();
    assert_eq!(
        post(&node, &text).await,
        Ok(()),
        "the same bytes: 200 again"
    );
    assert_eq!(
        post(&node, &same_id(&text)).await,
        Err((409, "Packet already received".into()))
    );
    stop(node).await;

    // 27 days before it expires, a successor is published; the old key
    // still decrypts.
    let day = D + 270 - 27;
    let node = start(&data, &clock, day, &mut keys).await;
    let second = published(&node, day).await;
    assert_ne!(second.key.key_id(), old.key_id(), "a new key is advertised");
    assert_eq!((second.valid_from, second.valid_to), (day, day + 270));
    let text = submit(&node, &old, day).await.unwrap();
    assert_eq!(
        post(&node, &same_id(&text)).await.unwrap_err().0,
        409,
        "it was stored"
    );
    submit(&node, &second.key, day).await.unwrap();
    stop(node).await;

    // Still in the 7-day grace period after expiry.
    let day = D + 270 + 7;
    let node = start(&data, &clock, day, &mut keys).await;
    submit(&node, &old, day).await.unwrap();
    stop(node).await;

    // Past the grace period the old key is deleted.
    let day = D + 270 + 8;
    let node = start(&data, &clock, day, &mut keys).await;
    assert_eq!(
        submit(&node, &old, day).await.unwrap_err(),
        (400, "Invalid submission: unknown_key".into())
    );
    assert_eq!(
        published(&node, day).await.key.key_id(),
        second.key.key_id()
    );
    submit(&node, &second.key, day).await.unwrap();
    stop(node).await;
    assert!(keys.0.is_empty(), "exactly two keys were generated");
    let files = std::fs::read_dir(config(&data).keys_dir()).unwrap().count();
    assert_eq!(files, 1, "the old key file is gone");
}
