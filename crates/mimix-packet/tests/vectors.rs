//! Every reference vector, valid and invalid, at every hop.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod common;

use std::collections::{HashMap, HashSet};

use common::*;
use mimix_packet::crypto::{cfb8, digest};
use mimix_packet::layout::{BODY_OFFSET, SECTION_LEN};
use mimix_packet::{Outcome, Packet, PeelError, Peeled, PublicKey, RemailerConf, TimeWindow};
use mimix_packet::{dearmour, peel};
use serde_json::Value;

fn window() -> TimeWindow {
    TimeWindow::new(VECTOR_DAY, 14)
}

fn peel_text(text: &str, key: &str) -> Result<Peeled, String> {
    let keys = vec![secret(key)];
    let packet = dearmour(text).map_err(|e| format!("armour: {e}"))?;
    peel(&packet, &keys, &window(), &mut rng(1)).map_err(|e| format!("peel: {e}"))
}

#[test]
fn primitives() {
    let p = json("primitives.json");
    for (name, k) in p["keyids"].as_object().unwrap() {
        let pem = k["public_pem"].as_str().unwrap();
        let public = PublicKey::from_pem(pem).unwrap();
        assert_eq!(public.pem(), pem, "{name}: canonical PEM");
        assert_eq!(public.key_id().to_hex(), k["keyid"].as_str().unwrap());
        assert_eq!(public.bits() as u64, k["modulus_bits"].as_u64().unwrap());
        // The secret key yields the same public key and ID.
        let s = secret(name);
        assert_eq!(s.public().pem(), pem);
    }
    let aes = &p["aes_cfb8"];
    let key: [u8; 32] = unhex(aes["key"].as_str().unwrap()).try_into().unwrap();
    let iv: [u8; 16] = unhex(aes["iv"].as_str().unwrap()).try_into().unwrap();
    let plain = unhex(aes["plaintext"].as_str().unwrap());
    let mut buf = plain.clone();
    cfb8::encrypt(&key, &iv, &mut buf);
    assert_eq!(hex::encode(&buf), aes["ciphertext"].as_str().unwrap());
    assert_ne!(
        hex::encode(&buf),
        aes["NOT_this_cfb128_ciphertext"].as_str().unwrap()
    );
    cfb8::decrypt(&key, &iv, &mut buf);
    assert_eq!(buf, plain);

    for (name, r) in p["rsa_oaep"].as_object().unwrap() {
        let ct = unhex(r["ciphertext"].as_str().unwrap());
        assert_eq!(ct.len() as u64, r["ciphertext_len"].as_u64().unwrap());
        let pt = secret(name).decrypt_header_key(&ct).unwrap();
        assert_eq!(hex::encode(*pt), r["plaintext"].as_str().unwrap());
    }
    let h = &p["sha512_header_digest"];
    assert_eq!(
        hex::encode(digest::sha512(&unhex(h["input_hex"].as_str().unwrap()))),
        h["sha512"].as_str().unwrap()
    );
    let packet = dearmour(&read("valid/v02-three-hops/packet.txt")).unwrap();
    let b = packet.as_bytes();
    assert_eq!(
        hex::encode(digest::sha256(&[&b[1024..2048], &b[10240..]])),
        p["sha256_antitag"]["sha256"].as_str().unwrap()
    );
    assert_eq!(
        hex::encode(digest::sha256(&[b"abc"])),
        p["sha256_small"]["sha256"].as_str().unwrap()
    );
    assert_eq!(
        hex::encode(digest::md5(b"abc")),
        p["md5_keyid_of_string_abc"].as_str().unwrap()
    );
    assert_eq!(
        p["timestamp"]["days_since_epoch_today"].as_u64().unwrap(),
        VECTOR_DAY
    );
}

/// Peels `first` and the following hop files, checking each hop against
/// `hops` and our output against the next file. Returns the exit payload.
fn walk(
    dir: &str,
    files: &[String],
    hops: &[Value],
    keys: &HashMap<String, mimix_packet::SecretKey>,
) -> Vec<u8> {
    let mut payload = None;
    for (k, hop) in hops.iter().enumerate() {
        let name = hop["remailer"].as_str().unwrap();
        let text = read(&format!("{dir}/{}", files[k]));
        let packet = dearmour(&text).unwrap();
        let key = &keys[name];
        let peeled = peel(
            &packet,
            std::slice::from_ref(key),
            &window(),
            &mut rng(k as u64),
        )
        .unwrap_or_else(|e| panic!("{dir} hop {}: {e}", k + 1));
        assert_eq!(peeled.key_id.to_hex(), hop["keyid"].as_str().unwrap());
        assert_eq!(
            hex::encode(peeled.packet_id),
            hop["packet_id"].as_str().unwrap()
        );
        assert_eq!(
            u64::from(peeled.timestamp),
            hop["detail"]["timestamp_days"].as_u64().unwrap()
        );
        match (peeled.outcome, hop["type"].as_str().unwrap()) {
            (
                Outcome::Forward {
                    next_hop,
                    packet: next,
                },
                "intermediate",
            ) => {
                assert_eq!(next_hop, hop["next_hop"].as_str().unwrap());
                let expected = dearmour(&read(&format!("{dir}/{}", files[k + 1]))).unwrap();
                let (a, b) = (next.as_bytes(), expected.as_bytes());
                assert_eq!(
                    a[..9 * SECTION_LEN],
                    b[..9 * SECTION_LEN],
                    "{dir} hop {}",
                    k + 1
                );
                assert_eq!(
                    a[BODY_OFFSET..],
                    b[BODY_OFFSET..],
                    "{dir} hop {} body",
                    k + 1
                );
            }
            (Outcome::Exit(chunk), "exit") => {
                assert_eq!(k + 1, hops.len(), "exit must be the last hop");
                assert_eq!(hex::encode(chunk.msg_id), hop["msg_id"].as_str().unwrap());
                assert_eq!(u64::from(chunk.chunk), hop["chunk"].as_u64().unwrap());
                assert_eq!(u64::from(chunk.chunks), hop["chunks"].as_u64().unwrap());
                assert_eq!(chunk.exit_type.name(), hop["exit_type"].as_str().unwrap());
                assert_eq!(
                    chunk.payload.len() as u64,
                    hop["payload_len"].as_u64().unwrap()
                );
                assert_eq!(
                    hex::encode(digest::sha256(&[&chunk.payload])),
                    hop["payload_sha256"].as_str().unwrap()
                );
                payload = Some(chunk.payload);
            }
            (_, t) => panic!("{dir} hop {}: expected {t}", k + 1),
        }
    }
    payload.expect("chain ends at an exit")
}

fn hop_files(prefix: &str, first: &str, n: usize) -> Vec<String> {
    let mut files = vec![first.to_owned()];
    files.extend((2..=n).map(|k| format!("{prefix}hop-{k}.txt")));
    files
}

#[test]
fn valid_vectors_every_hop() {
    let keys = secrets();
    let mut seen = 0;
    for entry in std::fs::read_dir(vectors().join("valid")).unwrap() {
        let case = entry.unwrap().file_name().into_string().unwrap();
        let dir = format!("valid/{case}");
        let exp = json(&format!("{dir}/expected.json"));
        let eml = read(&format!("{dir}/payload.eml")).into_bytes();
        if let Some(packets) = exp["packets"].as_array() {
            let mut chunks = Vec::new();
            for p in packets {
                let file = p["file"].as_str().unwrap();
                let stem = file.trim_end_matches(".txt");
                let hops = p["hops"].as_array().unwrap();
                let files = hop_files(&format!("{stem}."), file, hops.len());
                let payload = walk(&dir, &files, hops, &keys);
                let last = hops.last().unwrap();
                chunks.push((last["chunk"].as_u64().unwrap(), payload));
            }
            chunks.sort_by_key(|c| c.0);
            let joined: Vec<u8> = chunks.into_iter().flat_map(|c| c.1).collect();
            assert_eq!(
                joined.len() as u64,
                exp["reassembled_len"].as_u64().unwrap()
            );
            assert_eq!(
                hex::encode(digest::sha256(&[&joined])),
                exp["reassembled_sha256"].as_str().unwrap()
            );
            assert_eq!(joined, eml);
        } else {
            let hops = exp["hops"].as_array().unwrap();
            let payload = walk(&dir, &hop_files("", "packet.txt", hops.len()), hops, &keys);
            assert_eq!(payload, eml, "{case}: exit payload is payload.eml");
        }
        seen += 1;
    }
    assert_eq!(seen, 7);
}

/// The result of pushing an invalid vector through its chain: the 1-based
/// hop where it stopped and why, or `None` if it reached the exit.
fn run_chain(text: &str, chain: &[&str], log: &mut HashSet<[u8; 16]>) -> Option<(usize, String)> {
    let mut text = text.to_owned();
    for (i, name) in chain.iter().enumerate() {
        match peel_text(&text, name) {
            Err(e) => return Some((i + 1, e)),
            Ok(p) => {
                if !log.insert(p.packet_id) {
                    return Some((i + 1, "replay".into()));
                }
                match p.outcome {
                    Outcome::Forward { packet, .. } => text = mimix_packet::armour(&packet),
                    Outcome::Exit(_) => return None,
                }
            }
        }
    }
    None
}

#[test]
fn invalid_vectors_fail_where_and_why_expected() {
    let expected_reason: &[(&str, &str)] = &[
        ("n01-body-flip", "peel: anti-tag digest mismatch"),
        ("n02-header1-flip", "peel: header digest mismatch"),
        ("n03-header2-flip", "peel: anti-tag digest mismatch"),
        ("n04-header3-flip", "peel: anti-tag digest mismatch"),
        ("n05-body-flip-at-exit", "peel: payload digest mismatch"),
        (
            "n07-unknown-keyid",
            "peel: unknown recipient key 7c6a6d9f7e54c83c6e4c2d1a0d0e64d0",
        ),
        ("n08-truncated-armour", "armour: no END MIMIX MESSAGE line"),
        (
            "n09-wrong-length",
            "armour: decoded packet is 20479 bytes, not 20480",
        ),
        ("n10-bad-base64", "armour: invalid base64 length or padding"),
        ("n11-rsa-ciphertext-flip", "peel: RSA decryption failed"),
        (
            "n12-rsa-length-too-big",
            "peel: RSA length field 513 does not match the 512-byte key",
        ),
        ("n13-no-version-line", "armour: no Version line"),
        (
            "n15-rsa-plaintext-16-bytes",
            "peel: RSA plaintext is 16 bytes, not 32",
        ),
    ];
    for (case, reason) in expected_reason {
        let dir = format!("invalid/{case}");
        let exp = json(&format!("{dir}/expected.json"));
        let chain: Vec<&str> = exp["chain"]
            .as_array()
            .unwrap()
            .iter()
            .map(|v| v.as_str().unwrap())
            .collect();
        let got = run_chain(
            &read(&format!("{dir}/packet.txt")),
            &chain,
            &mut HashSet::new(),
        );
        let (hop, why) = got.unwrap_or_else(|| panic!("{case} was accepted"));
        assert_eq!(hop as u64, exp["fails_at_hop"].as_u64().unwrap(), "{case}");
        if *case == "n07-unknown-keyid" {
            assert!(
                why.starts_with("peel: unknown recipient key"),
                "{case}: {why}"
            );
        } else {
            assert_eq!(&why, reason, "{case}");
        }
    }
}

#[test]
fn replay_padding_flip_and_lenient_armour() {
    // n06: the whole chain accepts the first copy; a replay log rejects the second.
    let exp = json("invalid/n06-replay/expected.json");
    let chain: Vec<&str> = exp["chain"]
        .as_array()
        .unwrap()
        .iter()
        .map(|v| v.as_str().unwrap())
        .collect();
    let text = read("invalid/n06-replay/packet.txt");
    let mut log = HashSet::new();
    assert_eq!(run_chain(&text, &chain, &mut log), None);
    assert_eq!(
        run_chain(&text, &chain, &mut log),
        Some((1, "replay".into()))
    );

    // n14: a flip in the exit body's padding is not covered by any digest.
    assert_eq!(
        run_chain(
            &read("invalid/n14-exit-padding-flip/packet.txt"),
            &["gamma"],
            &mut HashSet::new()
        ),
        None
    );

    // n16, n17: valid packets in armour the reference refuses; we accept them.
    for case in ["n16-crlf-line-endings", "n17-base64-64-columns"] {
        let exp = json(&format!("invalid/{case}/expected.json"));
        assert_eq!(exp["decoder_may_accept"], Value::Bool(true));
        let chain: Vec<&str> = exp["chain"]
            .as_array()
            .unwrap()
            .iter()
            .map(|v| v.as_str().unwrap())
            .collect();
        assert_eq!(
            run_chain(
                &read(&format!("invalid/{case}/packet.txt")),
                &chain,
                &mut HashSet::new()
            ),
            None,
            "{case}"
        );
    }
}

#[test]
fn timestamp_window_is_enforced() {
    let keys = vec![secret("gamma")];
    let packet = dearmour(&read("valid/v01-single-hop/packet.txt")).unwrap();
    let at =
        |today, age| peel(&packet, &keys, &TimeWindow::new(today, age), &mut rng(0)).map(|_| ());
    assert_eq!(at(VECTOR_DAY, 0), Ok(()));
    assert_eq!(at(VECTOR_DAY + 14, 14), Ok(()));
    assert_eq!(
        at(VECTOR_DAY + 15, 14),
        Err(PeelError::TooOld { age_days: 15 })
    );
    assert_eq!(at(VECTOR_DAY - 1, 14), Ok(()));
    assert_eq!(
        at(VECTOR_DAY - 2, 14),
        Err(PeelError::FromFuture { days_ahead: 2 })
    );
}

#[test]
fn remailer_confs_parse_and_round_trip() {
    let generation = json("generation.json");
    for r in generation["remailers"].as_array().unwrap() {
        let name = r["name"].as_str().unwrap();
        let text = read(&format!("remailers/{name}/remailer-conf.txt"));
        let conf = RemailerConf::parse_valid(&text, VECTOR_DAY).unwrap();
        assert_eq!(conf.name, name);
        assert_eq!(conf.address, r["address"].as_str().unwrap());
        assert_eq!(conf.smtp, r["smtp"].as_bool().unwrap());
        assert_eq!(conf.key.bits() as u64, r["rsa_bits"].as_u64().unwrap());
        assert_eq!(conf.known.len(), 3);
        assert_eq!(conf.to_text(), text, "{name}: emitted byte for byte");
        assert_eq!(conf.key.key_id(), secret(name).key_id());
        assert!(RemailerConf::parse_valid(&text, conf.valid_to + 1).is_err());
        assert!(RemailerConf::parse_valid(&text, conf.valid_from - 1).is_err());
        let tampered = text.replacen("KeyID: ", "KeyID: 0", 1).replacen(
            &conf.key.key_id().to_hex()[..1],
            "",
            1,
        );
        assert!(RemailerConf::parse(&tampered).is_err());
    }
    assert!(Packet::from_bytes(&[0u8; 3]).is_none());
}
