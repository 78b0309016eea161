//! Build-then-peel round trips: every chain length, key size, payload size
//! and exit type comes back out byte for byte.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod common;

use std::sync::OnceLock;

use common::*;
use mimix_packet::build::{BuildError, ExitParams, build_message_with};
use mimix_packet::layout::{BODY_LEN, MAX_MESSAGE_LEN};
use mimix_packet::{
    ExitType, Hop, Outcome, SecretKey, TimeWindow, armour, build_message, dearmour, peel,
};
use proptest::prelude::*;

/// Remailers of every key size: 4096 (three), 3072, 2048 and 1024 bits.
fn ring() -> &'static Vec<(String, SecretKey)> {
    static RING: OnceLock<Vec<(String, SecretKey)>> = OnceLock::new();
    RING.get_or_init(|| {
        let mut v: Vec<(String, SecretKey)> = ["alpha", "beta", "gamma", "delta"]
            .iter()
            .map(|n| (format!("http://{n}.example.onion"), secret(n)))
            .collect();
        for bits in [2048, 3072] {
            let pem = std::fs::read_to_string(vectors().join(format!("../keys/test-{bits}.pem")))
                .unwrap();
            v.push((
                format!("http://k{bits}.example.onion:8080"),
                SecretKey::from_pem(&pem).unwrap(),
            ));
        }
        v
    })
}

fn hop(i: usize) -> Hop {
    let (addr, key) = &ring()[i];
    Hop {
        key: key.public().clone(),
        address: addr.clone(),
    }
}

/// Pushes packets through their chains; returns the reassembled payload.
fn deliver(
    packets: Vec<mimix_packet::Packet>,
    chains: &[Vec<usize>],
    exit_type: ExitType,
) -> Vec<u8> {
    let window = TimeWindow::new(VECTOR_DAY, 7);
    let mut chunks = Vec::new();
    let mut msg_ids = std::collections::HashSet::new();
    for (packet, chain) in packets.into_iter().zip(chains) {
        // Cross the wire as armour at every hop.
        let mut text = armour(&packet);
        for (pos, &i) in chain.iter().enumerate() {
            let p = dearmour(&text).unwrap();
            let keys = std::slice::from_ref(&ring()[i].1);
            let peeled = peel(&p, keys, &window, &mut rng(pos as u64)).unwrap();
            assert_eq!(peeled.key_id, ring()[i].1.key_id());
            let ts = u64::from(peeled.timestamp);
            assert!(
                (VECTOR_DAY - 3..=VECTOR_DAY).contains(&ts),
                "backdated 0 to 3 days"
            );
            match peeled.outcome {
                Outcome::Forward { next_hop, packet } => {
                    assert!(pos + 1 < chain.len(), "forward from the exit");
                    assert_eq!(next_hop, ring()[chain[pos + 1]].0);
                    text = armour(&packet);
                }
                Outcome::Exit(chunk) => {
                    assert_eq!(pos + 1, chain.len(), "exit before the end of the chain");
                    assert_eq!(chunk.exit_type, exit_type);
                    msg_ids.insert(chunk.msg_id);
                    chunks.push((chunk.chunk, chunk.chunks, chunk.payload));
                }
            }
        }
    }
    assert_eq!(msg_ids.len(), 1, "all chunks share one message ID");
    let n = chunks.len();
    chunks.sort_by_key(|c| c.0);
    for (k, c) in chunks.iter().enumerate() {
        assert_eq!(usize::from(c.0), k + 1);
        assert_eq!(usize::from(c.1), n);
    }
    chunks.into_iter().flat_map(|c| c.2).collect()
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 24, .. ProptestConfig::default() })]

    #[test]
    fn build_then_peel_round_trips(
        chains in proptest::collection::vec(proptest::collection::vec(0usize..6, 1..=10), 1..=3),
        len_seed in any::<u32>(),
        seed in any::<u64>(),
        dummy in any::<bool>(),
    ) {
        // Between 1 byte and exactly as many chunks as there are chains.
        let chunks = chains.len();
        let len = 1 + (len_seed as usize) % (chunks * BODY_LEN);
        let len = len.max((chunks - 1) * BODY_LEN + 1);
        let payload: Vec<u8> = (0..len).map(|i| (i as u64).wrapping_mul(seed | 1) as u8).collect();
        // All chunks must end at one exit: use the first chain's exit.
        let exit = *chains[0].last().unwrap();
        let chains: Vec<Vec<usize>> = chains.into_iter().map(|mut c| { *c.last_mut().unwrap() = exit; c }).collect();
        let exit_type = if dummy { ExitType::Dummy } else { ExitType::Smtp };
        let packets = build_message_with(&mut rng(seed), exit_type, &payload, VECTOR_DAY, |n| {
            chains[usize::from(n) - 1].iter().map(|&i| hop(i)).collect()
        }).unwrap();
        prop_assert_eq!(packets.len(), chunks);
        prop_assert_eq!(deliver(packets, &chains, exit_type), payload);
    }
}

#[test]
fn largest_message_is_255_chunks() {
    let payload: Vec<u8> = (0..MAX_MESSAGE_LEN).map(|i| (i % 253) as u8).collect();
    let chain = vec![3usize]; // the RSA-1024 exit keeps this test quick
    let packets =
        build_message(&mut rng(7), &[hop(3)], ExitType::Smtp, &payload, VECTOR_DAY).unwrap();
    assert_eq!(packets.len(), 255);
    let chains = vec![chain; 255];
    assert_eq!(deliver(packets, &chains, ExitType::Smtp), payload);

    let too_big = vec![0u8; MAX_MESSAGE_LEN + 1];
    assert!(matches!(
        build_message(&mut rng(7), &[hop(3)], ExitType::Smtp, &too_big, VECTOR_DAY),
        Err(BuildError::TooLarge(_))
    ));
}

#[test]
fn exactly_one_body_is_one_chunk() {
    let payload = vec![b'x'; BODY_LEN];
    let packets = build_message(
        &mut rng(3),
        &[hop(0), hop(1)],
        ExitType::Smtp,
        &payload,
        VECTOR_DAY,
    )
    .unwrap();
    assert_eq!(packets.len(), 1);
    assert_eq!(deliver(packets, &[vec![0, 1]], ExitType::Smtp), payload);
}

#[test]
fn bad_builds_are_refused() {
    let r = &mut rng(1);
    assert!(matches!(
        build_message(r, &[], ExitType::Smtp, b"x", VECTOR_DAY),
        Err(BuildError::ChainLength(0))
    ));
    let eleven: Vec<Hop> = (0..11).map(|i| hop(i % 4)).collect();
    assert!(matches!(
        build_message(r, &eleven, ExitType::Smtp, b"x", VECTOR_DAY),
        Err(BuildError::ChainLength(11))
    ));
    assert!(matches!(
        build_message(r, &[hop(0)], ExitType::Smtp, b"", VECTOR_DAY),
        Err(BuildError::Empty)
    ));
    let mut long = hop(1);
    long.address = format!("http://{}.onion", "a".repeat(80));
    assert!(matches!(
        build_message(r, &[hop(0), long], ExitType::Smtp, b"x", VECTOR_DAY),
        Err(BuildError::Address)
    ));
    let params = ExitParams {
        chunk: 2,
        chunks: 1,
        msg_id: [0; 16],
        exit_type: ExitType::Smtp,
    };
    assert!(matches!(
        mimix_packet::build_packet(r, &[hop(0)], &params, b"x", VECTOR_DAY),
        Err(BuildError::Chunk {
            chunk: 2,
            chunks: 1
        })
    ));
    let mismatch = build_message_with(
        r,
        ExitType::Smtp,
        &vec![1u8; BODY_LEN + 1],
        VECTOR_DAY,
        |n| vec![hop(usize::from(n))],
    );
    assert!(matches!(mismatch, Err(BuildError::ExitMismatch)));
}

#[test]
fn tampering_anywhere_covered_is_caught_before_the_packet_id() {
    // Flip one byte in each region of a 3-hop packet: the hop that covers
    // it must reject it (never return an ID for a tampered copy).
    let chain = [0usize, 1, 2];
    let hops: Vec<Hop> = chain.iter().map(|&i| hop(i)).collect();
    let packet = build_message(
        &mut rng(9),
        &hops,
        ExitType::Smtp,
        b"To: a@b\n\nhi",
        VECTOR_DAY,
    )
    .unwrap()
    .remove(0);
    let window = TimeWindow::new(VECTOR_DAY, 7);
    for offset in [
        0usize,
        17,
        100,
        530,
        600,
        950,
        1000,
        1500,
        2500,
        10240,
        15000,
        10240 + 5,
    ] {
        let mut p = packet.clone();
        p.as_bytes_mut()[offset] ^= 0x40;
        let mut cur = p;
        let mut rejected = false;
        for &i in &chain {
            match peel(
                &cur,
                std::slice::from_ref(&ring()[i].1),
                &window,
                &mut rng(0),
            ) {
                Err(_) => {
                    rejected = true;
                    break;
                }
                Ok(peeled) => match peeled.outcome {
                    Outcome::Forward { packet, .. } => cur = packet,
                    Outcome::Exit(c) => {
                        assert_ne!(c.payload, b"To: a@b\n\nhi", "offset {offset}");
                    }
                },
            }
        }
        assert!(rejected, "flip at {offset} went through");
    }
}
