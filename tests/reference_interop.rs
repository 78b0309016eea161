//! Packets built by `mimix packet build`, on keys generated here, must be
//! accepted end to end by the reference implementation's own decoder.
//!
//! Needs the reference environment (`../shared/tools/reference/README.md`):
//! set `MIMIX_REF` to the reference work tree and `PYTHON2` to its Python 2.7
//! with PyCrypto 2.6.1, then build and run the tests. Without them (CI has
//! no copy of the reference) the test is reported as ignored; with them, a
//! missing tool is a failure.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::path::{Path, PathBuf};
use std::process::Command;

use base64::Engine;
use mimix::clock::{Clock, SystemClock};
use mimix_packet::{RemailerConf, SecretKey};

fn reference() -> Option<(PathBuf, PathBuf, PathBuf)> {
    let r = std::env::var_os("MIMIX_REF")?;
    let py = std::env::var_os("PYTHON2")?;
    let tool =
        PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../shared/tools/reference/ref_peel.py");
    let tool = std::env::var_os("MIMIX_REF_PEEL")
        .map(PathBuf::from)
        .unwrap_or(tool);
    tool.exists()
        .then(|| (PathBuf::from(r), PathBuf::from(py), tool))
}

fn make_remailer(dir: &Path, name: &str, bits: usize, smtp: bool, today: u64) {
    let (key, pem) = SecretKey::generate(bits).unwrap();
    let d = dir.join("remailers").join(name);
    mimix_settings::fs::create_private_dir(&d).unwrap();
    std::fs::write(d.join("secret.pem"), pem.as_bytes()).unwrap();
    let conf = RemailerConf {
        name: name.into(),
        address: format!("http://{name}{bits}.example.onion"),
        key: key.public().clone(),
        valid_from: today,
        valid_to: today + 270,
        smtp,
        abuse: None,
        known: vec![],
    };
    std::fs::write(d.join("remailer-conf.txt"), conf.to_text()).unwrap();
}

fn build(dir: &Path, chain: &str, message: Option<&Path>, out: &str) -> Vec<PathBuf> {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_mimix"));
    cmd.args(["packet", "build", "--chain", chain, "--out"])
        .arg(dir.join(out));
    for n in ["east", "west", "north"] {
        cmd.arg("--conf")
            .arg(dir.join("remailers").join(n).join("remailer-conf.txt"));
    }
    match message {
        Some(m) => cmd.arg("--message").arg(m),
        None => cmd.arg("--dummy"),
    };
    let o = cmd.output().unwrap();
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    let summary: serde_json::Value = serde_json::from_slice(&o.stdout).unwrap();
    summary["files"]
        .as_array()
        .unwrap()
        .iter()
        .map(|f| PathBuf::from(f.as_str().unwrap()))
        .collect()
}

#[test]
#[cfg_attr(
    not(mimix_reference),
    ignore = "needs the reference decoder: set MIMIX_REF and PYTHON2 (shared/tools/reference)"
)]
fn reference_decoder_accepts_our_packets() {
    let (refdir, python, tool) = reference()
        .expect("MIMIX_REF and PYTHON2 are set but the reference tool ref_peel.py is not there");
    let dir = tempfile::tempdir().unwrap();
    let today = SystemClock.epoch_day();
    make_remailer(dir.path(), "east", 4096, false, today);
    make_remailer(dir.path(), "west", 2048, true, today);
    make_remailer(dir.path(), "north", 3072, true, today);

    let small = dir.path().join("small.eml");
    std::fs::write(
        &small,
        "To: someone@example.org\nSubject: hello\n\nHello from mimix.\n",
    )
    .unwrap();
    let mut big = String::from("To: someone@example.org\nSubject: big\n\n");
    while big.len() < 25_000 {
        big.push_str("The quick brown fox jumps over the lazy dog.\n");
    }
    let big_path = dir.path().join("big.eml");
    std::fs::write(&big_path, &big).unwrap();

    let cases: Vec<(Vec<PathBuf>, Vec<u8>)> = vec![
        (
            build(dir.path(), "west", Some(&small), "one"),
            std::fs::read(&small).unwrap(),
        ),
        (
            build(dir.path(), "east,north,west", Some(&small), "three"),
            std::fs::read(&small).unwrap(),
        ),
        (
            build(
                dir.path(),
                "east,west,north,east,west,north,east,west,north,west",
                Some(&small),
                "ten",
            ),
            std::fs::read(&small).unwrap(),
        ),
        (
            build(dir.path(), "north,east,west", Some(&big_path), "chunks"),
            big.clone().into_bytes(),
        ),
        (
            build(dir.path(), "east,north,west,east", None, "dummy"),
            mimix_packet::build::DUMMY_PAYLOAD.to_vec(),
        ),
    ];
    for (files, payload) in cases {
        let out = Command::new(&python)
            .arg(&tool)
            .arg("--keys")
            .arg(dir.path())
            .arg("--no-detail")
            .args(&files)
            .env("MIMIX_REF", &refdir)
            .current_dir(tool.parent().unwrap())
            .output()
            .unwrap();
        let doc: serde_json::Value = serde_json::from_slice(&out.stdout)
            .unwrap_or_else(|_| panic!("ref_peel: {}", String::from_utf8_lossy(&out.stderr)));
        assert!(out.status.success(), "reference rejected: {doc:#}");
        let mut joined = Vec::new();
        for p in doc["packets"].as_array().unwrap() {
            assert!(p["error"].is_null(), "{p:#}");
            let b64: String = p["exit_payload_b64"]
                .as_str()
                .unwrap()
                .split_whitespace()
                .collect();
            joined.extend(
                base64::engine::general_purpose::STANDARD
                    .decode(b64)
                    .unwrap(),
            );
        }
        assert_eq!(
            joined, payload,
            "reference exit payloads reassemble to the message"
        );
    }
}
