#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use super::*;
use crate::clock::{Clock, ManualClock};
use crate::store::PoolItem;

const DAY: Duration = Duration::from_secs(86_400);

fn chunk(id: u8, n: u8, of: u8, payload: &[u8]) -> ExitChunk {
    ExitChunk {
        msg_id: [id; 16],
        chunk: n,
        chunks: of,
        exit_type: ExitType::Smtp,
        payload: payload.to_vec(),
    }
}

/// Three distinguishable parts of a message: full chunks, short last.
fn parts() -> Vec<Vec<u8>> {
    vec![vec![b'a'; 10_240], vec![b'b'; 10_240], b"the end".to_vec()]
}

fn mail_payload(store: &Store, clock: &ManualClock, id: MailId) -> Vec<u8> {
    let due = store.mail_due(clock.now(), 100, &mut |_, _| true).unwrap();
    due.into_iter().find(|m| m.id == id).unwrap().payload
}

fn setup() -> (tempfile::TempDir, Store, ManualClock, ReassemblyConfig) {
    let dir = tempfile::tempdir().unwrap();
    let store = Store::open(dir.path()).unwrap();
    (
        dir,
        store,
        ManualClock::at_epoch_day(20_000),
        ReassemblyConfig::default(),
    )
}

#[test]
fn copies_of_a_completed_message_are_duplicates() {
    let (_d, store, clock, lim) = setup();
    let t = clock.now();
    let single = chunk(1, 1, 1, b"To: a@example.org\n\nhi");
    assert!(matches!(
        add_chunk(&store, &lim, &single, t).unwrap(),
        ChunkOutcome::Complete(_)
    ));
    assert_eq!(
        add_chunk(&store, &lim, &single, t).unwrap(),
        ChunkOutcome::Duplicate
    );
    let p = parts();
    for n in 1..=3u8 {
        add_chunk(&store, &lim, &chunk(2, n, 3, &p[usize::from(n) - 1]), t).unwrap();
    }
    // The second copy's chunks come after the first completed.
    for n in 1..=3u8 {
        assert_eq!(
            add_chunk(&store, &lim, &chunk(2, n, 3, &p[usize::from(n) - 1]), t).unwrap(),
            ChunkOutcome::Duplicate
        );
    }
    assert_eq!(store.mail_len().unwrap(), 2, "each message delivered once");
    assert_eq!(store.partial_count(), 0, "no set left open by the copies");
    // The record expires with the reassembly window.
    store.prune_replay(t + lim.expiry).unwrap();
    assert!(matches!(
        add_chunk(&store, &lim, &single, t + lim.expiry).unwrap(),
        ChunkOutcome::Complete(_)
    ));
}

#[test]
fn single_chunk_goes_straight_to_mail() {
    let (_d, store, clock, lim) = setup();
    let out = add_chunk(&store, &lim, &chunk(1, 1, 1, b"hello"), clock.now()).unwrap();
    let ChunkOutcome::Complete(id) = out else {
        panic!("{out:?}");
    };
    assert_eq!(mail_payload(&store, &clock, id), b"hello");
    assert_eq!(store.partial_count(), 0);
    assert_eq!(store.counter(counter::MAIL_QUEUED).unwrap(), 1);
}

fn assemble(order: &[u8]) {
    let (_d, store, clock, lim) = setup();
    let parts = parts();
    let mut result = None;
    for (i, &n) in order.iter().enumerate() {
        let c = chunk(7, n, 3, &parts[usize::from(n) - 1]);
        let out = add_chunk(&store, &lim, &c, clock.now()).unwrap();
        if i + 1 < order.len() {
            assert_eq!(
                out,
                ChunkOutcome::Stored {
                    have: i as u8 + 1,
                    chunks: 3
                }
            );
            assert_eq!(
                store.partial_set(&[7; 16]).unwrap().unwrap().have,
                i as u8 + 1
            );
        } else {
            result = Some(out);
        }
    }
    let Some(ChunkOutcome::Complete(id)) = result else {
        panic!("{result:?}");
    };
    assert_eq!(mail_payload(&store, &clock, id), parts.concat());
    assert_eq!(store.partial_set(&[7; 16]).unwrap(), None);
    assert!(store.partial_chunks(&[7; 16]).unwrap().is_empty());
    assert_eq!(store.partial_count(), 0);
    assert_eq!(store.counter(counter::CHUNKS_STORED).unwrap(), 2);
}

#[test]
fn reassembles_in_order() {
    assemble(&[1, 2, 3]);
}

#[test]
fn reassembles_out_of_order() {
    assemble(&[3, 1, 2]);
    assemble(&[2, 3, 1]);
    assemble(&[3, 2, 1]);
}

#[test]
fn duplicates_are_ignored_and_do_not_block() {
    let (_d, store, clock, lim) = setup();
    let p = parts();
    let t = clock.now();
    add_chunk(&store, &lim, &chunk(2, 2, 3, &p[1]), t).unwrap();
    let dup = add_chunk(&store, &lim, &chunk(2, 2, 3, b"evil"), t).unwrap();
    assert_eq!(dup, ChunkOutcome::Duplicate);
    add_chunk(&store, &lim, &chunk(2, 1, 3, &p[0]), t).unwrap();
    assert_eq!(
        add_chunk(&store, &lim, &chunk(2, 1, 3, &p[0]), t).unwrap(),
        ChunkOutcome::Duplicate
    );
    let out = add_chunk(&store, &lim, &chunk(2, 3, 3, &p[2]), t).unwrap();
    let ChunkOutcome::Complete(id) = out else {
        panic!("{out:?}");
    };
    assert_eq!(mail_payload(&store, &clock, id), p.concat());
    assert_eq!(store.counter(counter::CHUNKS_DUPLICATE).unwrap(), 2);
}

#[test]
fn disagreeing_counts_are_rejected() {
    let (_d, store, clock, lim) = setup();
    let t = clock.now();
    add_chunk(&store, &lim, &chunk(3, 1, 2, b"one "), t).unwrap();
    for bad in [chunk(3, 2, 3, b"x"), chunk(3, 1, 1, b"y")] {
        assert_eq!(
            add_chunk(&store, &lim, &bad, t).unwrap(),
            ChunkOutcome::Rejected(Rejection::CountMismatch)
        );
    }
    assert_eq!(store.counter(counter::CHUNKS_COUNT_MISMATCH).unwrap(), 2);
    let out = add_chunk(&store, &lim, &chunk(3, 2, 2, b"two"), t).unwrap();
    let ChunkOutcome::Complete(id) = out else {
        panic!("{out:?}");
    };
    assert_eq!(mail_payload(&store, &clock, id), b"one two");
}

#[test]
fn invalid_chunks_dummies_and_unknown_types() {
    let (_d, store, clock, lim) = setup();
    let t = clock.now();
    let bad_number = ChunkOutcome::Rejected(Rejection::BadChunkNumber);
    for (n, of) in [(0, 3), (4, 3), (0, 0), (1, 0)] {
        assert_eq!(
            add_chunk(&store, &lim, &chunk(4, n, of, b"x"), t).unwrap(),
            bad_number
        );
    }
    let big = chunk(4, 1, 2, &[0; MAX_CHUNK_PAYLOAD + 1]);
    assert_eq!(
        add_chunk(&store, &lim, &big, t).unwrap(),
        ChunkOutcome::Rejected(Rejection::TooLarge)
    );
    assert_eq!(store.counter(counter::CHUNKS_INVALID).unwrap(), 5);

    let mut dummy = chunk(5, 1, 1, b"From: dummy@dummy\n\npayload");
    dummy.exit_type = ExitType::Dummy;
    assert_eq!(
        add_chunk(&store, &lim, &dummy, t).unwrap(),
        ChunkOutcome::Dummy
    );
    assert_eq!(store.counter(counter::EXIT_DUMMIES).unwrap(), 1);
    assert_eq!(store.mail_len().unwrap(), 0);
    assert_eq!(store.partial_count(), 0);
}

#[test]
fn open_sets_are_bounded() {
    let (_d, store, clock, _) = setup();
    let lim = ReassemblyConfig {
        max_partial_sets: 2,
        ..ReassemblyConfig::default()
    };
    let t = clock.now();
    add_chunk(&store, &lim, &chunk(1, 1, 2, b"a"), t).unwrap();
    add_chunk(&store, &lim, &chunk(2, 1, 3, b"b"), t).unwrap();
    assert_eq!(
        add_chunk(&store, &lim, &chunk(3, 1, 2, b"c"), t).unwrap(),
        ChunkOutcome::Rejected(Rejection::TooManyPartials)
    );
    assert_eq!(store.counter(counter::CHUNKS_OVER_LIMIT).unwrap(), 1);
    // Existing sets still grow; single chunks need no set.
    assert!(matches!(
        add_chunk(&store, &lim, &chunk(2, 2, 3, b"b"), t).unwrap(),
        ChunkOutcome::Stored { have: 2, chunks: 3 }
    ));
    assert!(matches!(
        add_chunk(&store, &lim, &chunk(9, 1, 1, b"z"), t).unwrap(),
        ChunkOutcome::Complete(_)
    ));
    // Completing a set frees a slot.
    assert!(matches!(
        add_chunk(&store, &lim, &chunk(1, 2, 2, b"a"), t).unwrap(),
        ChunkOutcome::Complete(_)
    ));
    assert_eq!(store.partial_count(), 1);
    assert!(matches!(
        add_chunk(&store, &lim, &chunk(3, 1, 2, b"c"), t).unwrap(),
        ChunkOutcome::Stored { .. }
    ));
}

#[test]
fn incomplete_sets_expire() {
    let (_d, store, clock, lim) = setup();
    add_chunk(&store, &lim, &chunk(1, 1, 2, b"old"), clock.now()).unwrap();
    clock.advance(DAY);
    add_chunk(&store, &lim, &chunk(2, 1, 2, b"newer"), clock.now()).unwrap();
    assert_eq!(store.partial_count(), 2);

    clock.advance(27 * DAY - Duration::from_secs(1));
    assert_eq!(prune(&store, clock.now()).unwrap(), 0);
    clock.advance(Duration::from_secs(1));
    assert_eq!(prune(&store, clock.now()).unwrap(), 1);
    assert_eq!(store.partial_set(&[1; 16]).unwrap(), None);
    assert!(store.partial_chunks(&[1; 16]).unwrap().is_empty());
    assert_eq!(store.partial_set(&[2; 16]).unwrap().unwrap().have, 1);
    assert_eq!(store.partial_count(), 1);
    assert_eq!(store.counter(counter::PARTIALS_EXPIRED).unwrap(), 1);

    // The late sibling of the expired set starts a new set.
    assert!(matches!(
        add_chunk(&store, &lim, &chunk(1, 2, 2, b"late"), clock.now()).unwrap(),
        ChunkOutcome::Stored { have: 1, chunks: 2 }
    ));
    clock.advance(DAY);
    assert_eq!(prune(&store, clock.now()).unwrap(), 1);
}

#[test]
fn partials_survive_reopen() {
    let dir = tempfile::tempdir().unwrap();
    let clock = ManualClock::at_epoch_day(20_000);
    let lim = ReassemblyConfig::default();
    {
        let store = Store::open(dir.path()).unwrap();
        add_chunk(&store, &lim, &chunk(8, 2, 2, b" world"), clock.now()).unwrap();
    }
    let store = Store::open(dir.path()).unwrap();
    assert_eq!(store.partial_count(), 1);
    let out = add_chunk(&store, &lim, &chunk(8, 1, 2, b"hello"), clock.now()).unwrap();
    let ChunkOutcome::Complete(id) = out else {
        panic!("{out:?}");
    };
    assert_eq!(mail_payload(&store, &clock, id), b"hello world");
    assert_eq!(store.partial_count(), 0);
}

#[test]
fn largest_message_reassembles() {
    let (_d, store, clock, lim) = setup();
    let t = clock.now();
    let mut last = None;
    for n in (1..=255u8).rev() {
        let c = chunk(9, n, 255, &[n; MAX_CHUNK_PAYLOAD]);
        last = Some(add_chunk(&store, &lim, &c, t).unwrap());
    }
    let Some(ChunkOutcome::Complete(id)) = last else {
        panic!("{last:?}");
    };
    let msg = mail_payload(&store, &clock, id);
    assert_eq!(msg.len(), MAX_MESSAGE);
    assert!(
        msg.chunks(MAX_CHUNK_PAYLOAD)
            .zip(1..=255u8)
            .all(|(c, n)| c.iter().all(|&b| b == n))
    );
}

#[test]
fn exit_queue_jobs_are_consumed_with_their_outcome() {
    let (_d, store, clock, lim) = setup();
    let exit = |n: u8, exit_type: ExitType, payload: &[u8]| PoolItem::Exit {
        msg_id: [1; 16],
        chunk: n,
        chunks: if exit_type == ExitType::Dummy { 1 } else { 2 },
        exit_type,
        payload: payload.to_vec(),
    };
    let ids = store
        .pool_insert(&[
            exit(2, ExitType::Smtp, b"B"),
            exit(1, ExitType::Smtp, b"A"),
            exit(1, ExitType::Dummy, b"D"),
        ])
        .unwrap();
    store.release(&ids, clock.now()).unwrap();
    let outcomes = process_exit_queue(&store, &lim, clock.now(), 10).unwrap();
    assert_eq!(outcomes.len(), 3);
    assert!(matches!(outcomes[0], ChunkOutcome::Stored { .. }));
    let ChunkOutcome::Complete(id) = outcomes[1] else {
        panic!("{outcomes:?}");
    };
    assert_eq!(outcomes[2], ChunkOutcome::Dummy);
    assert_eq!(mail_payload(&store, &clock, id), b"AB");
    assert!(store.exit_jobs(10).unwrap().is_empty());
    assert!(
        process_exit_queue(&store, &lim, clock.now(), 10)
            .unwrap()
            .is_empty()
    );
}
