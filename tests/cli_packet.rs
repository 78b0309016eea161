//! The `mimix packet` and `mimix keygen` commands, run as a real binary on
//! the reference vectors.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};

const DAY: &str = "2026-11-29"; // the day the vectors were made

fn vectors() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("tests/vectors")
}

fn mimix(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_mimix"))
        .args(args)
        .output()
        .unwrap()
}

/// Copies a vector key into `dir` with mode 0600 (git does not keep modes).
fn key(dir: &Path, name: &str) -> String {
    let p = dir.join(format!("{name}.pem"));
    std::fs::copy(vectors().join(format!("remailers/{name}/secret.pem")), &p).unwrap();
    std::fs::set_permissions(&p, std::fs::Permissions::from_mode(0o600)).unwrap();
    p.display().to_string()
}

fn json(o: &Output) -> serde_json::Value {
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    serde_json::from_slice(&o.stdout).unwrap()
}

#[test]
fn peel_walks_every_valid_vector() {
    let dir = tempfile::tempdir().unwrap();
    let exp: serde_json::Value = serde_json::from_str(
        &std::fs::read_to_string(vectors().join("valid/v03-dummy-four-hops/expected.json"))
            .unwrap(),
    )
    .unwrap();
    let mut packet = vectors().join("valid/v03-dummy-four-hops/packet.txt");
    for (k, hop) in exp["hops"].as_array().unwrap().iter().enumerate() {
        let keyfile = key(dir.path(), hop["remailer"].as_str().unwrap());
        let next = dir.path().join(format!("next-{k}.txt"));
        let out = json(&mimix(&[
            "packet",
            "peel",
            "--key",
            &keyfile,
            "--at",
            DAY,
            "--next",
            next.to_str().unwrap(),
            "--payload",
            dir.path().join("payload").to_str().unwrap(),
            packet.to_str().unwrap(),
        ]));
        for field in [
            "keyid",
            "packet_id",
            "type",
            "next_hop",
            "msg_id",
            "chunk",
            "chunks",
            "exit_type",
            "payload_len",
            "payload_sha256",
        ] {
            if hop.get(field).is_some() {
                assert_eq!(out[field], hop[field], "hop {} field {field}", k + 1);
            }
        }
        packet = next;
    }
    let payload = std::fs::read(dir.path().join("payload")).unwrap();
    assert_eq!(
        payload,
        std::fs::read(vectors().join("valid/v03-dummy-four-hops/payload.eml")).unwrap()
    );
}

#[test]
fn rejected_packets_exit_1_with_one_line_reason() {
    let dir = tempfile::tempdir().unwrap();
    let alpha = key(dir.path(), "alpha");
    for (case, reason) in [
        ("n02-header1-flip", "header digest mismatch"),
        ("n10-bad-base64", "invalid base64"),
        ("n12-rsa-length-too-big", "RSA length field 513"),
        ("n15-rsa-plaintext-16-bytes", "RSA plaintext is 16 bytes"),
    ] {
        let p = vectors().join(format!("invalid/{case}/packet.txt"));
        let o = mimix(&[
            "packet",
            "peel",
            "--key",
            &alpha,
            "--at",
            DAY,
            p.to_str().unwrap(),
        ]);
        assert_eq!(o.status.code(), Some(1), "{case}");
        assert!(o.stdout.is_empty());
        let err = String::from_utf8(o.stderr).unwrap();
        assert_eq!(err.lines().count(), 1, "{case}: {err}");
        assert!(err.contains(reason), "{case}: {err}");
    }
    // Outside the timestamp window.
    let p = vectors().join("valid/v02-three-hops/packet.txt");
    let o = mimix(&[
        "packet",
        "peel",
        "--key",
        &alpha,
        "--at",
        "2027-03-01",
        p.to_str().unwrap(),
    ]);
    assert_eq!(o.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&o.stderr).contains("days old"));
}

#[test]
fn build_then_peel_with_the_vector_confs_and_keygen() {
    let dir = tempfile::tempdir().unwrap();
    let msg = dir.path().join("msg.eml");
    std::fs::write(&msg, "To: bob@example.org\nSubject: hi\n\nhello\n").unwrap();
    let conf = |n: &str| {
        vectors()
            .join(format!("remailers/{n}/remailer-conf.txt"))
            .display()
            .to_string()
    };
    let out_dir = dir.path().join("out");
    let summary = json(&mimix(&[
        "packet",
        "build",
        "--conf",
        &conf("alpha"),
        "--conf",
        &conf("delta"),
        "--conf",
        &conf("gamma"),
        "--chain",
        "alpha,delta,gamma",
        "--message",
        msg.to_str().unwrap(),
        "--at",
        DAY,
        "--out",
        out_dir.to_str().unwrap(),
    ]));
    assert_eq!(summary["packets"], 1);
    let mut packet = out_dir.join("packet-1.txt");
    let text = std::fs::read_to_string(&packet).unwrap();
    assert!(text.starts_with("-----BEGIN MIMIX MESSAGE-----\nVersion: "));
    for (k, name) in ["alpha", "delta", "gamma"].iter().enumerate() {
        let next = dir.path().join(format!("h{k}"));
        let payload = dir.path().join("payload");
        let o = json(&mimix(&[
            "packet",
            "peel",
            "--key",
            &key(dir.path(), name),
            "--at",
            DAY,
            "--next",
            next.to_str().unwrap(),
            "--payload",
            payload.to_str().unwrap(),
            packet.to_str().unwrap(),
        ]));
        if k < 2 {
            assert_eq!(o["type"], "intermediate");
        } else {
            assert_eq!(o["type"], "exit");
            assert_eq!(
                std::fs::read(&payload).unwrap(),
                std::fs::read(&msg).unwrap()
            );
        }
        packet = next;
    }
    // An exit that does not deliver mail is refused for a message.
    let o = mimix(&[
        "packet",
        "build",
        "--conf",
        &conf("alpha"),
        "--chain",
        "alpha",
        "--message",
        msg.to_str().unwrap(),
        "--at",
        DAY,
        "--out",
        out_dir.to_str().unwrap(),
    ]);
    assert_eq!(o.status.code(), Some(1));

    let keyfile = dir.path().join("new.pem");
    let o = mimix(&[
        "keygen",
        "--bits",
        "2048",
        "--out",
        keyfile.to_str().unwrap(),
    ]);
    assert!(o.status.success());
    let id = String::from_utf8(o.stdout).unwrap();
    assert_eq!(id.trim().len(), 32);
    assert_eq!(
        std::fs::metadata(&keyfile).unwrap().permissions().mode() & 0o777,
        0o600
    );
    let pem = std::fs::read_to_string(&keyfile).unwrap();
    assert!(pem.starts_with("-----BEGIN RSA PRIVATE KEY-----"));
    assert_eq!(
        mimix_packet::SecretKey::from_pem(&pem)
            .unwrap()
            .key_id()
            .to_hex(),
        id.trim()
    );
    let again = mimix(&["keygen", "--out", keyfile.to_str().unwrap()]);
    assert_eq!(again.status.code(), Some(1), "keygen never overwrites");
}
