//! Replays the committed fuzz corpus (`fuzz/corpus/<target>/seed-*`)
//! through the same checks as the cargo-fuzz targets, so the corpus runs on
//! the stable toolchain without libFuzzer.
//!
//! `write_seed_corpus` (ignored) regenerates the hand-made seeds from the
//! reference vectors; seeds found by fuzzing are kept as they are.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};
use std::sync::OnceLock;

use mimix_packet::crypto::cfb8;
use mimix_packet::crypto::digest::sha256;
use mimix_packet::dearmour;
use mimix_packet::fuzzing::{
    self, FIX_ANTITAG, FIX_INNER_DIGEST, FIX_PAYLOAD_DIGEST, FIX_TIMESTAMP, FuzzRng, PeelHarness,
    RAW_FIX_DIGEST, VECTOR_DAY,
};
use mimix_packet::layout::{ExitInfo, ExitType, InnerHeader, IntermediateInfo, PacketKind};
use rand_core::Rng;
use zeroize::Zeroizing;

/// delta (RSA-1024), alpha and gamma (RSA-4096), as the peel target uses.
const KEYS: [&str; 3] = [
    include_str!("../../../tests/vectors/remailers/delta/secret.pem"),
    include_str!("../../../tests/vectors/remailers/alpha/secret.pem"),
    include_str!("../../../tests/vectors/remailers/gamma/secret.pem"),
];

fn root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../..")
}

fn harness() -> &'static PeelHarness {
    static HARNESS: OnceLock<PeelHarness> = OnceLock::new();
    HARNESS.get_or_init(|| PeelHarness::new(&KEYS).unwrap())
}

/// Every committed seed of `target`, sorted by name.
fn seeds(target: &str) -> Vec<(String, Vec<u8>)> {
    let dir = root().join("fuzz/corpus").join(target);
    let mut out: Vec<(String, Vec<u8>)> = std::fs::read_dir(&dir)
        .unwrap_or_else(|e| panic!("read {}: {e}", dir.display()))
        .map(|e| e.unwrap().path())
        .filter(|p| file_name(p).starts_with("seed-"))
        .map(|p| (file_name(&p), std::fs::read(&p).unwrap()))
        .collect();
    out.sort();
    out
}

fn file_name(p: &Path) -> String {
    p.file_name().unwrap().to_string_lossy().into_owned()
}

fn replay<T>(target: &str, check: impl Fn(&[u8]) -> Result<T, fuzzing::Violation>) -> Vec<T> {
    let seeds = seeds(target);
    assert!(seeds.len() >= 5, "{target}: only {} seeds", seeds.len());
    seeds
        .into_iter()
        .map(|(name, data)| check(&data).unwrap_or_else(|e| panic!("{target}/{name}: {e}")))
        .collect()
}

/// Replays `target`; its corpus must reach every outcome in `want`.
fn replay_covers(
    target: &str,
    check: impl Fn(&[u8]) -> Result<&'static str, fuzzing::Violation>,
    want: &[&str],
) {
    let outcomes: BTreeSet<&str> = replay(target, check).into_iter().collect();
    for w in want {
        assert!(
            outcomes.contains(w),
            "{target}: no seed ends in {w}: {outcomes:?}"
        );
    }
}

#[test]
fn armour_corpus() {
    replay_covers("armour", fuzzing::check_armour, &["accepted", "refused"]);
}

#[test]
fn conf_corpus() {
    replay_covers(
        "conf",
        fuzzing::check_conf,
        &[
            "accepted",
            "accepted with fixed KeyID",
            "refused",
            "refused with fixed KeyID",
        ],
    );
}

#[test]
fn peel_corpus_reaches_every_check() {
    replay_covers(
        "peel",
        |d| harness().check(d),
        &[
            "header_digest",
            "unknown_key",
            "rsa_length",
            "rsa",
            "rsa_plaintext_length",
            "inner_digest",
            "malformed",
            "too_old",
            "from_future",
            "antitag",
            "payload_digest",
            "forward",
            "exit",
        ],
    );
}

#[test]
fn constructed_mode_flags_matter() {
    // Without the anti-tag fix the same header is refused by the anti-tag
    // check; without the inner digest fix, by the inner digest check.
    let seed = constructed_intermediate(0, "http://alpha.example.onion", 0, 512);
    assert_eq!(harness().check(&seed).unwrap(), "forward");
    let mut no_antitag = seed.clone();
    no_antitag[1] &= !FIX_ANTITAG;
    assert_eq!(harness().check(&no_antitag).unwrap(), "antitag");
    let mut no_digest = seed.clone();
    no_digest[1] &= !FIX_INNER_DIGEST;
    no_digest[fuzzing::CONSTRUCTED_INNER] ^= 1;
    assert_eq!(harness().check(&no_digest).unwrap(), "inner_digest");
    assert_eq!(harness().check(&[1]).unwrap(), "short");
}

// ---------------------------------------------------------------------------
// Seed generation.

fn vector(rel: &str) -> Vec<u8> {
    let p = root().join("tests/vectors").join(rel);
    std::fs::read(&p).unwrap_or_else(|e| panic!("read {}: {e}", p.display()))
}

/// A raw-mode peel input from an armoured vector.
fn raw(rel: &str, flags: u8) -> Vec<u8> {
    let text = String::from_utf8(vector(rel)).unwrap();
    let packet = dearmour(&text).unwrap();
    let mut out = vec![0, flags];
    out.extend_from_slice(packet.as_bytes());
    out
}

fn constructed(key: u8, flags: u8, inner: &[u8], rest: &[u8]) -> Vec<u8> {
    let mut out = vec![1, flags, key];
    out.extend_from_slice(&[0x11; 16]);
    out.extend_from_slice(inner);
    out.extend_from_slice(rest);
    out
}

fn inner(kind: PacketKind, hop_key: [u8; 32], info: [u8; 256], timestamp: u16) -> Vec<u8> {
    InnerHeader {
        packet_id: [0x22; 16],
        hop_key: Zeroizing::new(hop_key),
        kind,
        info,
        timestamp,
    }
    .to_bytes(&[0; 13])
    .to_vec()
}

const ALL: u8 = FIX_INNER_DIGEST | FIX_ANTITAG | FIX_PAYLOAD_DIGEST | FIX_TIMESTAMP;

/// An intermediate header to `key` with `rest_len` bytes of sections and
/// body, dated `days` from [`VECTOR_DAY`] (0: the timestamp flag is set).
fn constructed_intermediate(key: u8, next_hop: &str, days: i32, rest_len: usize) -> Vec<u8> {
    let mut rng = FuzzRng::new(u64::from(key) + rest_len as u64);
    let mut ivs = [[0u8; 16]; 9];
    for iv in &mut ivs {
        rng.fill_bytes(iv);
    }
    let info = IntermediateInfo {
        ivs,
        next_hop: next_hop.to_owned(),
        antitag: [0; 32],
    }
    .to_bytes();
    let mut rest = vec![0u8; rest_len];
    rng.fill_bytes(&mut rest);
    let ts = (VECTOR_DAY as i32 + days) as u16;
    let flags = if days == 0 { ALL } else { ALL & !FIX_TIMESTAMP };
    constructed(
        key,
        flags,
        &inner(PacketKind::Intermediate, [7; 32], info, ts),
        &rest,
    )
}

/// An exit header to `key` whose body starts with `payload`.
fn constructed_exit(key: u8, exit_type: ExitType, chunk: (u8, u8), payload: &[u8]) -> Vec<u8> {
    let hop_key = [9u8; 32];
    let body_iv = [3u8; 16];
    let info = ExitInfo {
        chunk: chunk.0,
        chunks: chunk.1,
        msg_id: [0x33; 16],
        body_iv,
        exit_type,
        payload_len: payload.len() as u16,
        payload_digest: sha256(&[payload]),
    }
    .to_bytes(&[0; 187]);
    let mut rest = vec![0u8; 9 * 1024];
    let mut body = payload.to_vec();
    cfb8::encrypt(&hop_key, &body_iv, &mut body);
    rest.extend_from_slice(&body);
    let ts = VECTOR_DAY as u16;
    constructed(key, ALL, &inner(PacketKind::Exit, hop_key, info, ts), &rest)
}

fn write(target: &str, name: &str, data: &[u8]) {
    let dir = root().join("fuzz/corpus").join(target);
    #[allow(clippy::disallowed_methods, reason = "a scratch directory for a test")]
    std::fs::create_dir_all(&dir).unwrap();
    std::fs::write(dir.join(format!("seed-{name}")), data).unwrap();
}

#[test]
#[ignore = "writes fuzz/corpus/*/seed-*; run by hand to regenerate the seeds"]
fn write_seed_corpus() {
    // armour: valid packets, each armour defect, and a few small texts.
    for (name, rel) in [
        ("v01", "valid/v01-single-hop/packet.txt"),
        ("v05-hop2", "valid/v05-rsa1024-hop/hop-2.txt"),
        ("n08-truncated", "invalid/n08-truncated-armour/packet.txt"),
        ("n09-wrong-length", "invalid/n09-wrong-length/packet.txt"),
        ("n10-bad-base64", "invalid/n10-bad-base64/packet.txt"),
        ("n13-no-version", "invalid/n13-no-version-line/packet.txt"),
        ("n16-crlf", "invalid/n16-crlf-line-endings/packet.txt"),
        ("n17-64-columns", "invalid/n17-base64-64-columns/packet.txt"),
    ] {
        write("armour", name, &vector(rel));
    }
    let small = [
        ("empty", ""),
        (
            "short",
            "-----BEGIN MIMIX MESSAGE-----\nVersion: 1\n\nAAAA\n-----END MIMIX MESSAGE-----\n",
        ),
        (
            "headers",
            "junk\n-----BEGIN MIMIX MESSAGE-----\r\nComment: x\r\nVersion: 1\r\nQUJD\r\nRA==\r\n-----END MIMIX MESSAGE-----\r\ntrailer",
        ),
        (
            "no-end",
            "-----BEGIN MIMIX MESSAGE-----\nVersion: 1\n\nAAAA\n",
        ),
    ];
    for (name, text) in small {
        write("armour", name, text.as_bytes());
    }

    // peel, raw mode: packets to delta, alpha and gamma, valid and invalid.
    for (name, rel, flags) in [
        ("raw-v07-delta-entry", "valid/v07-full-body/packet.txt", 0),
        ("raw-v05-delta-middle", "valid/v05-rsa1024-hop/hop-2.txt", 0),
        (
            "raw-v03-delta-exit",
            "valid/v03-dummy-four-hops/hop-4.txt",
            0,
        ),
        ("raw-v06-delta-hop8", "valid/v06-ten-hops/hop-8.txt", 0),
        ("raw-v02-alpha-entry", "valid/v02-three-hops/packet.txt", 0),
        ("raw-v01-gamma-exit", "valid/v01-single-hop/packet.txt", 0),
        ("raw-n01-body-flip", "invalid/n01-body-flip/packet.txt", 0),
        (
            "raw-n02-header-flip",
            "invalid/n02-header1-flip/packet.txt",
            0,
        ),
        (
            "raw-n02-fixed",
            "invalid/n02-header1-flip/packet.txt",
            RAW_FIX_DIGEST,
        ),
        (
            "raw-n05-exit-flip",
            "invalid/n05-body-flip-at-exit/packet.txt",
            0,
        ),
        (
            "raw-n07-unknown-key",
            "invalid/n07-unknown-keyid/packet.txt",
            0,
        ),
        (
            "raw-n11-rsa-flip",
            "invalid/n11-rsa-ciphertext-flip/packet.txt",
            0,
        ),
        (
            "raw-n12-rsa-length",
            "invalid/n12-rsa-length-too-big/packet.txt",
            0,
        ),
        (
            "raw-n14-padding-flip",
            "invalid/n14-exit-padding-flip/packet.txt",
            0,
        ),
        (
            "raw-n15-rsa-16-bytes",
            "invalid/n15-rsa-plaintext-16-bytes/packet.txt",
            0,
        ),
    ] {
        write("peel", name, &raw(rel, flags));
    }
    let mut hdr_only = raw("valid/v07-full-body/packet.txt", RAW_FIX_DIGEST);
    hdr_only.truncate(2 + 1024);
    write("peel", "raw-delta-section1-only", &hdr_only);

    // peel, constructed mode.
    let addr80 = format!("http://{}.onion", "a".repeat(67));
    let constructed_seeds = [
        (
            "c-delta-forward",
            constructed_intermediate(0, "http://alpha.example.onion", 0, 512),
        ),
        (
            "c-delta-forward-80",
            constructed_intermediate(0, &addr80, 0, 64),
        ),
        (
            "c-delta-forward-old",
            constructed_intermediate(0, "http://b", -15, 64),
        ),
        (
            "c-delta-forward-future",
            constructed_intermediate(0, "http://b", 2, 64),
        ),
        (
            "c-alpha-forward",
            constructed_intermediate(1, "http://delta.example.onion:8080", 0, 64),
        ),
        (
            "c-delta-exit-smtp",
            constructed_exit(0, ExitType::Smtp, (1, 1), b"From: a@b\n\nhello\n"),
        ),
        (
            "c-delta-exit-dummy-2of3",
            constructed_exit(0, ExitType::Dummy, (2, 3), b"x"),
        ),
        (
            "c-delta-exit-empty",
            constructed_exit(0, ExitType::Smtp, (1, 1), b""),
        ),
        (
            "c-delta-exit-full",
            constructed_exit(0, ExitType::Smtp, (255, 255), &[0x41; 10240]),
        ),
        (
            "c-gamma-exit",
            constructed_exit(2, ExitType::Dummy, (1, 1), b"payload"),
        ),
    ];
    for (name, data) in constructed_seeds {
        write("peel", name, &data);
    }
    let mut bad_type = constructed_intermediate(0, "http://alpha.example.onion", 0, 0);
    bad_type[fuzzing::CONSTRUCTED_INNER + 48] = b'2';
    write("peel", "c-delta-bad-type", &bad_type);

    // conf: the four published confs and variants of one.
    for name in ["alpha", "beta", "gamma", "delta"] {
        write(
            "conf",
            name,
            &vector(&format!("remailers/{name}/remailer-conf.txt")),
        );
    }
    let delta = String::from_utf8(vector("remailers/delta/remailer-conf.txt")).unwrap();
    let (head, _) = delta.split_once("\n\nKnown").unwrap();
    let variants = [
        ("delta-crlf", delta.replace('\n', "\r\n")),
        ("delta-no-known", head.to_owned()),
        (
            "delta-lowercase",
            delta
                .replace("Name:", "name:")
                .replace("SMTP: Yes", "smtp: no"),
        ),
        (
            "delta-keyid-upper",
            delta.replace("f990844051c799eb", "F990844051C799EB"),
        ),
        (
            "delta-bad-date",
            delta.replace("Valid To: 2027", "Valid To: 2o27"),
        ),
        (
            "delta-known-dup",
            format!("{delta}http://alpha.example.onion\n  \nhttp://delta.example.onion:8080\n"),
        ),
        // KeyID mismatches: the check retries with the KeyID fixed.
        (
            "delta-keyid-zero",
            delta.replace("f990844051c799eb20e2fe498e89c2c2", &"0".repeat(32)),
        ),
        ("delta-pem-flip", delta.replacen("MIGf", "NIGf", 1)),
    ];
    for (name, text) in variants {
        write("conf", name, text.as_bytes());
    }
}
