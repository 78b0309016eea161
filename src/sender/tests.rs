#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use mimix_packet::{Outcome, SecretKey, TimeWindow, peel};
use rand::SeedableRng;
use rand::rngs::StdRng;

use super::*;

/// The day the test vectors were made.
const DAY: u64 = 20_786;
const NAMES: [&str; 4] = ["alpha", "beta", "gamma", "delta"];

fn vector(name: &str, file: &str) -> String {
    std::fs::read_to_string(format!(
        "{}/tests/vectors/remailers/{name}/{file}",
        env!("CARGO_MANIFEST_DIR")
    ))
    .unwrap()
}

fn remailers() -> Remailers {
    let confs: Vec<RemailerConf> = NAMES
        .iter()
        .map(|n| RemailerConf::parse_valid(&vector(n, "remailer-conf.txt"), DAY).unwrap())
        .collect();
    Remailers::from_confs(&confs)
}

fn keys() -> Vec<SecretKey> {
    NAMES
        .iter()
        .map(|n| SecretKey::from_pem(&vector(n, "secret.pem")).unwrap())
        .collect()
}

/// Peels `packet` hop by hop along `chain`; returns the exit chunk.
fn walk(packet: &Packet, chain: &[String], keys: &[SecretKey]) -> mimix_packet::ExitChunk {
    let window = TimeWindow::new(DAY, 14);
    let rng = &mut StdRng::seed_from_u64(1);
    let mut packet = packet.clone();
    for (i, _) in chain.iter().enumerate() {
        let peeled = peel(&packet, keys, &window, rng).unwrap();
        match peeled.outcome {
            Outcome::Forward {
                next_hop,
                packet: next,
            } => {
                assert_eq!(canonical(&next_hop).as_ref(), chain.get(i + 1));
                packet = next;
            }
            Outcome::Exit(chunk) => {
                assert_eq!(i + 1, chain.len(), "exit at the last hop");
                return chunk;
            }
        }
    }
    panic!("no exit");
}

#[test]
fn a_long_message_goes_out_in_copies_through_chains_to_one_exit() {
    let mut message = b"To: alice@example.org\nSubject: long\n\n".to_vec();
    message.extend((0..25_000).map(|i| b'a' + (i % 26) as u8));
    let rng = &mut StdRng::seed_from_u64(7);
    let spec: ChainSpec = "*,*,*".parse().unwrap();
    let planned = plan(
        rng,
        &message,
        &spec,
        &remailers(),
        &Filters::default(),
        2,
        DAY,
    )
    .unwrap();
    assert_eq!(planned.len(), 3 * 2);
    let exits: std::collections::HashSet<&String> =
        planned.iter().map(|p| p.chain.last().unwrap()).collect();
    assert_eq!(exits.len(), 1, "every chunk and copy ends at one exit");
    let keys = keys();
    let mut got: Vec<(u8, Vec<u8>, [u8; 16])> = planned
        .iter()
        .map(|p| {
            let c = walk(&p.packet, &p.chain, &keys);
            assert_eq!(c.chunks, 3);
            (c.chunk, c.payload, c.msg_id)
        })
        .collect();
    got.sort_by_key(|g| g.0);
    let ids: std::collections::HashSet<[u8; 16]> = got.iter().map(|g| g.2).collect();
    assert_eq!(ids.len(), 1, "copies share the message ID");
    let once: Vec<u8> = got.iter().step_by(2).flat_map(|g| g.1.clone()).collect();
    assert_eq!(
        once, message,
        "the payload is the message as given, no From added"
    );
}

#[test]
fn bad_messages_are_refused_with_clear_reasons() {
    let rng = &mut StdRng::seed_from_u64(8);
    let spec: ChainSpec = "*,*".parse().unwrap();
    let (r, f) = (remailers(), Filters::default());
    assert!(matches!(
        plan(rng, b"", &spec, &r, &f, 1, DAY),
        Err(SendError::Empty)
    ));
    let no_to = b"Subject: hi\n\nbody";
    assert!(matches!(
        plan(rng, no_to, &spec, &r, &f, 1, DAY),
        Err(SendError::NoRecipient)
    ));
    let mut huge = b"To: a@example.org\n\n".to_vec();
    huge.resize(MAX_MESSAGE_LEN + 1, b'x');
    let err = plan(rng, &huge, &spec, &r, &f, 1, DAY).unwrap_err();
    assert!(err.to_string().contains("at most 2611200 bytes"), "{err}");
    let ok = b"To: a@example.org\n\nhi";
    assert!(matches!(
        plan(rng, ok, &spec, &r, &f, 11, DAY),
        Err(SendError::Copies)
    ));
    let unknown: ChainSpec = "*,nobody".parse().unwrap();
    assert!(matches!(
        plan(rng, ok, &unknown, &r, &f, 1, DAY),
        Err(SendError::Chain(_))
    ));
}

#[test]
fn a_dummy_needs_no_exit() {
    let rng = &mut StdRng::seed_from_u64(9);
    let spec: ChainSpec = "alpha,*".parse().unwrap();
    let d = plan_dummy(rng, &spec, &remailers(), &Filters::default(), DAY).unwrap();
    assert_eq!(d.chain.len(), 2);
    assert_eq!(d.first_hop(), "http://alpha.example.onion");
    let c = walk(&d.packet, &d.chain, &keys());
    assert_eq!(c.exit_type, ExitType::Dummy);
}

#[test]
fn a_compressed_message_takes_fewer_packets_and_inflates_back() {
    let mut message = b"Newsgroups: alt.test\nSubject: long\n\n".to_vec();
    for i in 0..3_000 {
        message.extend_from_slice(format!("line {i} of a repetitive letter\n").as_bytes());
    }
    let rng = &mut StdRng::seed_from_u64(10);
    let spec: ChainSpec = "*,*".parse().unwrap();
    let (r, f) = (remailers(), Filters::default());
    let (planned, c) = plan_compressed(rng, &message, &spec, &r, &f, 1, DAY).unwrap();
    assert_eq!(c.plain_len, message.len());
    assert!(c.packets_before() >= 9, "{}", c.packets_before());
    assert_eq!((planned.len(), c.packets_after()), (1, 1));
    assert_eq!(c.packets_saved(), c.packets_before() as i64 - 1);
    let chunk = walk(&planned[0].packet, &planned[0].chain, &keys());
    assert_eq!(chunk.payload, c.payload);
    let inflate = crate::exit::gzip::DEFAULT_LIMIT;
    assert_eq!(
        crate::exit::gzip::decompress(&chunk.payload, inflate).unwrap(),
        message
    );

    // As large as an exit inflates: one packet instead of 255.
    let limit = crate::exit::gzip::DEFAULT_LIMIT;
    let mut big = b"To: a@example.org\n\n".to_vec();
    big.resize(limit, b'x');
    let (planned, c) = plan_compressed(rng, &big, &spec, &r, &f, 1, DAY).unwrap();
    assert_eq!((planned.len(), c.packets_before()), (1, 255));
    // Past the exits' inflation limit, or naming nobody: refused.
    big.resize(limit + 1, b'x');
    assert!(matches!(
        plan_compressed(rng, &big, &spec, &r, &f, 1, DAY),
        Err(SendError::TooLarge { .. })
    ));
    assert!(matches!(
        plan_compressed(rng, b"Subject: x\n\nhi", &spec, &r, &f, 1, DAY),
        Err(SendError::NoRecipient)
    ));
}
