//! What a tampered copy of a packet can and cannot do, hop by hop: which
//! hop detects a flipped byte in each header section and in the body, and
//! what a tampered copy that arrives before the genuine packet does to it.
//!
//! Each hop runs `peel` and then records the packet ID in its own replay
//! log, as the node does (`peel` returns the ID only after every check).
//! The anti-tag of a hop covers header section 2 and the body as that hop
//! receives them, so a flip in section `k` (3..=10) of the packet sent to
//! hop 1 passes hops 1..k-2 and is caught by hop k-1, the first hop that
//! holds it as section 2; sections past the chain are random fill, which
//! nobody checks and nobody reads.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod common;

use std::collections::HashSet;

use common::*;
use mimix_packet::build::ExitParams;
use mimix_packet::layout::{BODY_OFFSET, SECTION_LEN};
use mimix_packet::{ExitType, Hop, Outcome, Packet, SecretKey, TimeWindow, build_packet, peel};

/// A four-hop chain: delta (RSA-1024) at every hop keeps the test fast;
/// the hops are told apart by their replay logs, as four nodes would be.
const HOPS: usize = 4;

/// What happened to one copy.
#[derive(Debug, PartialEq, Eq)]
enum Fate {
    /// Refused at this 1-based hop for this reason (nothing recorded there).
    Refused(usize, &'static str),
    /// Refused at this hop as a replay of an ID already recorded.
    Replay(usize),
    /// Delivered by the exit with this payload.
    Delivered(Vec<u8>),
}

struct Chain {
    key: SecretKey,
    /// One replay log per hop.
    logs: Vec<HashSet<[u8; 16]>>,
}

impl Chain {
    fn new() -> Self {
        Self {
            key: secret("delta"),
            logs: vec![HashSet::new(); HOPS],
        }
    }

    fn packet(&self, payload: &[u8]) -> Packet {
        let hop = |i: usize| Hop {
            key: self.key.public().clone(),
            address: format!("http://hop{i}.example.onion"),
        };
        let chain: Vec<Hop> = (1..=HOPS).map(hop).collect();
        let exit = ExitParams {
            chunk: 1,
            chunks: 1,
            msg_id: [7; 16],
            exit_type: ExitType::Smtp,
        };
        build_packet(&mut rng(1), &chain, &exit, payload, VECTOR_DAY).unwrap()
    }

    /// Sends `packet` to hop 1 and on along the chain.
    fn send(&mut self, packet: &Packet) -> Fate {
        let window = TimeWindow::new(VECTOR_DAY, 7);
        let keys = std::slice::from_ref(&self.key);
        let mut packet = packet.clone();
        for hop in 1..=HOPS {
            let peeled = match peel(&packet, keys, &window, &mut rng(hop as u64)) {
                Ok(p) => p,
                Err(e) => return Fate::Refused(hop, e.reason()),
            };
            if !self.logs[hop - 1].insert(peeled.packet_id) {
                return Fate::Replay(hop);
            }
            match peeled.outcome {
                Outcome::Forward { packet: next, .. } => packet = next,
                Outcome::Exit(chunk) => return Fate::Delivered(chunk.payload),
            }
        }
        panic!("the chain has no exit");
    }

    /// Packet IDs recorded at each hop.
    fn recorded(&self) -> Vec<usize> {
        self.logs.iter().map(HashSet::len).collect()
    }
}

/// `packet` with one bit flipped at `offset`.
fn flipped(packet: &Packet, offset: usize) -> Packet {
    let mut p = packet.clone();
    p.as_bytes_mut()[offset] ^= 1;
    p
}

/// Offset 700 of header section `k` (1-based), inside the encrypted data.
fn in_section(k: usize) -> usize {
    (k - 1) * SECTION_LEN + 700
}

#[test]
fn each_section_is_checked_by_the_hop_that_holds_it_as_section_2() {
    const PAYLOAD: &[u8] = b"To: a@example.org\n\nhello\n";
    let genuine = Chain::new().packet(PAYLOAD);
    let cases = [
        (in_section(1), Fate::Refused(1, "header_digest")),
        (in_section(2), Fate::Refused(1, "antitag")),
        (in_section(3), Fate::Refused(2, "antitag")),
        (in_section(4), Fate::Refused(3, "antitag")),
        // Sections 5..10 are random fill for a four-hop chain: the exit
        // never reads them, so a flip there changes nothing.
        (in_section(5), Fate::Delivered(PAYLOAD.to_vec())),
        (in_section(10), Fate::Delivered(PAYLOAD.to_vec())),
        (BODY_OFFSET + 3, Fate::Refused(1, "antitag")),
    ];
    for (offset, want) in cases {
        let mut chain = Chain::new();
        assert_eq!(
            chain.send(&flipped(&genuine, offset)),
            want,
            "offset {offset}"
        );
    }
}

#[test]
fn a_copy_tampered_in_section_3_burns_the_genuine_packet() {
    const PAYLOAD: &[u8] = b"To: a@example.org\n\nthe genuine message\n";
    let mut chain = Chain::new();
    let genuine = chain.packet(PAYLOAD);

    // The tampered copy arrives first: hop 1 finds nothing wrong with it,
    // records its packet ID (the node answers 200) and forwards it; hop 2
    // detects the tampering and records nothing.
    let tampered = flipped(&genuine, in_section(3));
    assert_eq!(chain.send(&tampered), Fate::Refused(2, "antitag"));
    assert_eq!(chain.recorded(), [1, 0, 0, 0]);

    // The genuine packet now has a known ID at hop 1: a replay (409).
    assert_eq!(chain.send(&genuine), Fate::Replay(1));
    assert_eq!(chain.recorded(), [1, 0, 0, 0]);
}

#[test]
fn a_copy_tampered_where_hop_1_checks_does_not_burn_it() {
    const PAYLOAD: &[u8] = b"To: a@example.org\n\nthe genuine message\n";
    let mut chain = Chain::new();
    let genuine = chain.packet(PAYLOAD);
    for offset in [in_section(1), in_section(2), BODY_OFFSET + 9_000] {
        assert!(matches!(
            chain.send(&flipped(&genuine, offset)),
            Fate::Refused(1, _)
        ));
    }
    assert_eq!(chain.recorded(), [0, 0, 0, 0]);
    assert_eq!(chain.send(&genuine), Fate::Delivered(PAYLOAD.to_vec()));
    assert_eq!(chain.recorded(), [1, 1, 1, 1]);
}

#[test]
fn the_exit_checks_only_the_payload_bytes_of_the_body() {
    const PAYLOAD: &[u8] = b"To: a@example.org\n\nexit\n";
    let genuine = Chain::new().packet(PAYLOAD);
    // Walk the genuine packet to the exit, then flip bytes of what the
    // exit receives.
    let window = TimeWindow::new(VECTOR_DAY, 7);
    let key = secret("delta");
    let keys = std::slice::from_ref(&key);
    let mut at_exit = genuine;
    for hop in 1..HOPS {
        match peel(&at_exit, keys, &window, &mut rng(hop as u64))
            .unwrap()
            .outcome
        {
            Outcome::Forward { packet, .. } => at_exit = packet,
            Outcome::Exit(_) => panic!("exit too early"),
        }
    }
    let outcome = |p: &Packet| peel(p, keys, &window, &mut rng(9)).map(|p| p.outcome);
    let payload_flip = flipped(&at_exit, BODY_OFFSET + 2);
    assert_eq!(
        outcome(&payload_flip).unwrap_err().reason(),
        "payload_digest"
    );
    // The padding after the payload and the unused sections are not
    // covered: the exit delivers the same payload.
    for offset in [BODY_OFFSET + PAYLOAD.len() + 10, in_section(2)] {
        match outcome(&flipped(&at_exit, offset)).unwrap() {
            Outcome::Exit(c) => assert_eq!(c.payload, PAYLOAD),
            Outcome::Forward { .. } => panic!("not an exit"),
        }
    }
}
