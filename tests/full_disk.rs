//! A real `mimix run` process whose data directory is on a small tmpfs
//! that the test fills to the last byte: the node refuses new packets with
//! 503 (never 500), does not hammer its next hop with repeated deliveries
//! it cannot record, and recovers by itself when the space comes back (no
//! restart); nothing it acknowledged is lost.
//!
//! Mounting needs root (CI runs as root). The test fails, it does not
//! skip, when the mount fails.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod support;

use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

use support::hop::{Mode, StandIn};
use support::net::{counter, get_conf, post_packet, wait_until};
use support::solo::Solo;

/// Size of the file system.
const TMPFS: &str = "160m";
/// How long the disk stays full.
const FULL_FOR: Duration = Duration::from_secs(15);

/// A tmpfs mounted for the test, unmounted when dropped.
struct Tmpfs(PathBuf);

impl Tmpfs {
    fn mount(at: &Path) -> Self {
        mimix_settings::fs::create_private_dir(at).unwrap();
        let out = Command::new("mount")
            .args(["-t", "tmpfs", "-o", &format!("size={TMPFS},mode=0700")])
            .arg("tmpfs")
            .arg(at)
            .output()
            .expect("running mount");
        assert!(
            out.status.success(),
            "this test needs to mount a tmpfs (run it as root, as CI does): mount -t tmpfs \
             failed: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        Self(at.to_owned())
    }
}

impl Drop for Tmpfs {
    fn drop(&mut self) {
        let _ = Command::new("umount").arg("-l").arg(&self.0).status();
    }
}

/// Fills the file system holding `dir` to the last byte with a file
/// there; returns the file.
fn fill(dir: &Path) -> PathBuf {
    let path = dir.join("ballast");
    let mut f = std::fs::File::create(&path).unwrap();
    let chunk = vec![0x5au8; 1 << 16];
    loop {
        match f.write(&chunk) {
            Ok(0) => break,
            Ok(_) => {}
            Err(e) if e.raw_os_error() == Some(28) => break,
            Err(e) => panic!("filling the disk: {e}"),
        }
    }
    // The last partial chunk.
    for _ in 0..64 {
        if f.write(&chunk[..1024]).is_err() {
            break;
        }
    }
    let _ = f.sync_all();
    path
}

/// Free bytes on the file system of `dir`.
fn free(dir: &Path) -> u64 {
    let s = rustix::fs::statvfs(dir).unwrap();
    s.f_bavail * s.f_frsize
}

/// Posts each packet until it is accepted (200, or 409: accepted by an
/// earlier attempt whose answer was lost); panics on any answer but those
/// and 503.
fn post_until_accepted(port: u16, packets: &[String], timeout: Duration) {
    for p in packets {
        wait_until(
            timeout,
            Duration::from_millis(250),
            "a packet accepted",
            || match post_packet(port, p) {
                Some((200 | 409, _)) => Some(()),
                Some((503, _)) | None => None,
                Some((status, body)) => panic!("refused with {status}: {body}"),
            },
        );
    }
}

#[test]
fn evidence_a_full_disk_is_refused_with_503_and_recovered_from_without_a_restart() {
    let base = tempfile::tempdir().unwrap();
    let mnt = Tmpfs::mount(&base.path().join("disk"));
    let hop = StandIn::start(Mode::Accept, Duration::ZERO);
    let solo = Solo::start(
        Some(mnt.0.join("node")),
        "request_timeout = \"10s\"",
        "[pool]\ninterval = \"1s\"\nmin = 0\nrate = 1.0\n\n\
         [outbound]\nretry_initial = \"1s\"\nretry_max = \"2s\"\n\n\
         [store]\nmin_free_space = \"8MiB\"\n",
    );
    let port = solo.node.port;
    let packets = solo.packets_to(&hop.url(), 60);
    let (before, rest) = packets.split_at(20);
    let (queued, after) = rest.split_at(20);

    // Normal service.
    post_until_accepted(port, before, Duration::from_secs(20));
    wait_until(
        Duration::from_secs(30),
        Duration::from_millis(50),
        "the first 20 delivered",
        || (hop.packets() == 20).then_some(()),
    );

    // 20 more are accepted while the next hop is down, so they sit in the
    // outbound queue when the disk fills.
    hop.set_mode(Mode::Unavailable);
    post_until_accepted(port, queued, Duration::from_secs(20));
    wait_until(
        Duration::from_secs(30),
        Duration::from_millis(50),
        "the 20 queued",
        || (hop.requests().len() >= 40).then_some(()),
    );
    let ballast = fill(&mnt.0);
    let left = free(&mnt.0);
    let full_at = Instant::now();
    let requests_before = hop.requests().len();
    hop.set_mode(Mode::Accept);

    // While the disk is full: 503 for new packets, the conf still served.
    let mut statuses = Vec::new();
    while full_at.elapsed() < FULL_FOR {
        let p = &after[statuses.len() % after.len()];
        statuses.push(post_packet(port, p).map_or(0, |r| r.0));
        std::thread::sleep(Duration::from_millis(200));
    }
    assert!(
        get_conf(port).is_some(),
        "the conf is served while the disk is full"
    );
    let reposts = hop.requests().len() - requests_before;
    let refused = statuses.iter().filter(|&&s| s == 503).count();
    assert!(
        statuses.iter().all(|&s| s == 503),
        "only 503 while the disk is full: {statuses:?}"
    );
    solo_running(&solo);

    // Space comes back: the node takes packets again by itself.
    std::fs::remove_file(&ballast).unwrap();
    let freed_at = Instant::now();
    post_until_accepted(port, &after[..1], Duration::from_secs(60));
    let recovered = freed_at.elapsed();
    post_until_accepted(port, &after[1..], Duration::from_secs(60));
    wait_until(
        Duration::from_secs(60),
        Duration::from_millis(100),
        "every acknowledged packet at the next hop",
        || (hop.packets() == 60).then_some(()),
    );
    // Packets whose delivery could not be recorded are posted once more
    // (answered 409) as soon as the store records again; wait until the
    // next hop hears nothing new for 3 s.
    let mut last = (hop.requests().len(), Instant::now());
    wait_until(
        Duration::from_secs(60),
        Duration::from_millis(100),
        "quiet",
        || {
            let n = hop.requests().len();
            if n != last.0 {
                last = (n, Instant::now());
            }
            (last.1.elapsed() > Duration::from_secs(3)).then_some(())
        },
    );
    let duplicates = hop
        .requests()
        .iter()
        .filter(|r| r.status == Some(409))
        .count();
    eprintln!(
        "full disk: {TMPFS} tmpfs filled ({} bytes left) for {FULL_FOR:?}: {refused} posts \
         refused with 503, none with 500; the 20 queued packets were posted {reposts} times \
         meanwhile ({duplicates} duplicates answered 409 in all: deliveries the full disk kept \
         the node from recording); accepting again {recovered:.2?} after space came back, no \
         restart; all 60 acknowledged packets delivered",
        left
    );
    // Each queued packet is delivered, its removal fails and it is parked
    // (1 s, 2 s, 4 s, ...): a handful of posts each in 15 s, not one every
    // half second.
    assert!(
        reposts <= 20 * 6,
        "{reposts} posts of 20 undeliverable-to-record packets in {FULL_FOR:?}"
    );
    let mut solo = solo;
    let s = solo.node.stopped_status();
    assert_eq!(counter(&s, "packets_accepted"), 60, "{s}");
    assert_eq!(counter(&s, "outbound_delivered"), 60, "{s}");
    assert_eq!(counter(&s, "outbound_given_up"), 0, "{s}");
    assert_eq!(s["pool"], 0, "{s}");
    assert_eq!(s["outbound"], 0, "{s}");
    let log = std::fs::read_to_string(solo.root.path().join("node.log")).unwrap();
    assert!(!log.contains("panicked"), "{log}");
    // The disk really was full for the store: a write failed, fjall gave
    // up on the database, and the store reopened it by itself.
    assert!(log.contains("No space left on device"), "{log}");
    assert!(log.contains("store reopened after a failed write"), "{log}");
    drop(solo);
    drop(mnt);
}

fn solo_running(solo: &Solo) {
    let pid = solo.node.pid().unwrap();
    assert!(
        Path::new(&format!("/proc/{pid}")).exists(),
        "the node is still running"
    );
}
