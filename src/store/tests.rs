//! Store tests, on fjall databases in temporary directories.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::sync::Arc;
use std::time::Duration;

use super::*;
use crate::clock::{Clock, ManualClock};

/// Records one outbound outcome; whether the packet was queued.
fn outbound_one(store: &Store, id: OutboundId, change: Change) -> Result<bool, StoreError> {
    Ok(store.outbound_record(vec![(id, change)])? == 1)
}

/// Records one mail outcome; whether the message was queued.
fn mail_one(store: &Store, id: MailId, change: Change) -> Result<bool, StoreError> {
    Ok(store.mail_record(vec![(id, change)])? == 1)
}

const DAY: Duration = Duration::from_secs(86_400);

fn fwd(hop: &str, fill: u8) -> PoolItem {
    PoolItem::Forward {
        next_hop: hop.to_owned(),
        packet: vec![fill; 20480],
    }
}

fn exit_item(fill: u8) -> PoolItem {
    PoolItem::Exit {
        msg_id: [fill; 16],
        chunk: 1,
        chunks: 1,
        exit_type: mimix_packet::ExitType::Smtp,
        payload: vec![fill; 100],
    }
}

fn inbound(id: u8, clock: &ManualClock, item: PoolItem) -> Inbound {
    Inbound {
        packet_id: [id; 16],
        replay_expires: clock.now() + 28 * DAY,
        digest: None,
        item,
    }
}

#[test]
fn accept_then_replay_is_rejected() {
    let dir = tempfile::tempdir().unwrap();
    let store = Store::open(dir.path()).unwrap();
    let clock = ManualClock::at_epoch_day(20_000);
    let p = inbound(1, &clock, fwd("http://a.onion", 7));

    let Accepted::New(id) = store.accept(&p).unwrap() else {
        panic!("first accept must be new");
    };
    assert_eq!(store.pool_get(id).unwrap(), Some(p.item.clone()));
    assert!(store.replay_contains(&[1; 16]).unwrap());

    let again = inbound(1, &clock, fwd("http://other.onion", 9));
    assert_eq!(store.accept(&again).unwrap(), Accepted::Replay);
    assert_eq!(store.pool_count().unwrap(), 1);
    assert_eq!(store.pool_get(id).unwrap(), Some(p.item));
    assert_eq!(store.counter(counter::ACCEPTED).unwrap(), 1);
    assert_eq!(store.counter(counter::REPLAYS).unwrap(), 1);
}

#[test]
fn replay_rejected_after_reopen_and_ids_stay_unique() {
    let dir = tempfile::tempdir().unwrap();
    let clock = ManualClock::at_epoch_day(20_000);
    let first = {
        let store = Store::open(dir.path()).unwrap();
        let Accepted::New(id) = store.accept(&inbound(3, &clock, exit_item(3))).unwrap() else {
            panic!("new");
        };
        id
    };
    let store = Store::open(dir.path()).unwrap();
    assert_eq!(
        store.accept(&inbound(3, &clock, exit_item(4))).unwrap(),
        Accepted::Replay
    );
    assert_eq!(store.pool_ids().unwrap(), vec![first]);
    let Accepted::New(second) = store.accept(&inbound(4, &clock, exit_item(4))).unwrap() else {
        panic!("new");
    };
    assert_ne!(first, second);
    assert_eq!(store.pool_get(first).unwrap(), Some(exit_item(3)));
    assert_eq!(store.pool_count().unwrap(), 2);
    assert_eq!(store.counter(counter::ACCEPTED).unwrap(), 2);
}

#[test]
fn accept_batch_group_commit() {
    let dir = tempfile::tempdir().unwrap();
    let store = Store::open(dir.path()).unwrap();
    let clock = ManualClock::at_epoch_day(20_000);
    store.accept(&inbound(1, &clock, fwd("a", 1))).unwrap();
    let batch = vec![
        inbound(1, &clock, fwd("a", 2)),
        inbound(2, &clock, fwd("b", 3)),
        inbound(2, &clock, fwd("b", 4)),
        inbound(5, &clock, exit_item(5)),
    ];
    let res = store.accept_batch(&batch).unwrap();
    assert_eq!(res.len(), 4);
    assert_eq!(res[0], Accepted::Replay);
    assert!(matches!(res[1], Accepted::New(_)));
    assert_eq!(res[2], Accepted::Replay);
    let Accepted::New(id5) = res[3] else {
        panic!("new");
    };
    assert_eq!(store.pool_get(id5).unwrap(), Some(exit_item(5)));
    assert_eq!(store.pool_count().unwrap(), 3);
    assert_eq!(store.counter(counter::REPLAYS).unwrap(), 2);
    // An all-replay batch writes nothing but counts.
    let res = store.accept_batch(&batch[..1]).unwrap();
    assert_eq!(res, vec![Accepted::Replay]);
    assert_eq!(store.pool_count().unwrap(), 3);
    assert_eq!(store.counter(counter::REPLAYS).unwrap(), 3);
}

#[test]
fn concurrent_accepts_of_one_id_succeed_once() {
    let dir = tempfile::tempdir().unwrap();
    let store = Store::open(dir.path()).unwrap();
    let clock = Arc::new(ManualClock::at_epoch_day(20_000));
    let threads: Vec<_> = (0..8)
        .map(|i| {
            let store = store.clone();
            let clock = clock.clone();
            std::thread::spawn(move || store.accept(&inbound(9, &clock, fwd("x", i))).unwrap())
        })
        .collect();
    let results: Vec<Accepted> = threads.into_iter().map(|t| t.join().unwrap()).collect();
    let new = results
        .iter()
        .filter(|r| matches!(r, Accepted::New(_)))
        .count();
    assert_eq!(new, 1);
    assert_eq!(store.pool_count().unwrap(), 1);
}

#[test]
fn release_moves_items_to_outbound_and_exit_queues() {
    let dir = tempfile::tempdir().unwrap();
    let store = Store::open(dir.path()).unwrap();
    let clock = ManualClock::at_epoch_day(20_000);
    let ids = store
        .pool_insert(&[fwd("http://a", 1), exit_item(2), fwd("http://b", 3)])
        .unwrap();
    assert_eq!(store.counter(counter::DUMMIES_POOLED).unwrap(), 3);
    let r = store
        .release(&[ids[0], ids[1], PoolId(999_999), ids[0]], clock.now())
        .unwrap();
    assert_eq!(
        r,
        Released {
            forwarded: 1,
            exits: 1,
            missing: 2
        }
    );
    assert_eq!(store.pool_ids().unwrap(), vec![ids[2]]);

    let due = store
        .outbound_due(clock.now(), 10, &mut |_, _| true)
        .unwrap();
    assert_eq!(due.len(), 1);
    assert_eq!(due[0].next_hop, "http://a");
    assert_eq!(due[0].packet, vec![1; 20480]);
    assert_eq!(due[0].attempts, 0);
    assert_eq!(due[0].first_queued, clock.now());
    assert_eq!(due[0].next_attempt, clock.now());

    let jobs = store.exit_jobs(10).unwrap();
    assert_eq!(jobs.len(), 1);
    assert_eq!(jobs[0].1.msg_id, [2; 16]);
    assert_eq!(jobs[0].1.payload, vec![2; 100]);
    assert!(store.exit_job_done(jobs[0].0).unwrap());
    assert!(!store.exit_job_done(jobs[0].0).unwrap());
    assert!(store.exit_jobs(10).unwrap().is_empty());
    assert_eq!(store.counter(counter::RELEASED_FORWARD).unwrap(), 1);
    assert_eq!(store.counter(counter::RELEASED_EXIT).unwrap(), 1);
}

#[test]
fn released_items_survive_reopen() {
    let dir = tempfile::tempdir().unwrap();
    let clock = ManualClock::at_epoch_day(20_000);
    {
        let store = Store::open(dir.path()).unwrap();
        let ids = store.pool_insert(&[fwd("h", 1), exit_item(2)]).unwrap();
        store.release(&ids, clock.now()).unwrap();
    }
    let store = Store::open(dir.path()).unwrap();
    assert_eq!(store.pool_count().unwrap(), 0);
    assert_eq!(
        store
            .outbound_due(clock.now(), 10, &mut |_, _| true)
            .unwrap()
            .len(),
        1
    );
    assert_eq!(store.exit_jobs(10).unwrap().len(), 1);
    // New IDs do not collide with the queued ones.
    let id = store.outbound_enqueue("h2", b"p", clock.now()).unwrap();
    assert_eq!(store.outbound_len().unwrap(), 2);
    assert!(outbound_one(&store, id, Change::Delivered).unwrap());
    assert_eq!(store.outbound_len().unwrap(), 1);
}

#[test]
fn outbound_due_order_and_retry() {
    let dir = tempfile::tempdir().unwrap();
    let store = Store::open(dir.path()).unwrap();
    let clock = ManualClock::at_epoch_day(20_000);
    let t0 = clock.now();
    let late = store
        .outbound_enqueue("late", b"1", t0 + Duration::from_secs(60))
        .unwrap();
    let early = store.outbound_enqueue("early", b"2", t0).unwrap();
    let mid = store
        .outbound_enqueue("mid", b"3", t0 + Duration::from_secs(30))
        .unwrap();

    let hops = |now, limit| -> Vec<String> {
        store
            .outbound_due(now, limit, &mut |_, _| true)
            .unwrap()
            .into_iter()
            .map(|i| i.next_hop)
            .collect()
    };
    assert_eq!(hops(t0, 10), vec!["early"]);
    assert_eq!(
        hops(t0 + Duration::from_secs(60), 10),
        vec!["early", "mid", "late"]
    );
    assert_eq!(hops(t0 + Duration::from_secs(60), 2), vec!["early", "mid"]);

    assert!(outbound_one(&store, early, Change::Retry(t0 + Duration::from_secs(120))).unwrap());
    assert_eq!(hops(t0 + Duration::from_secs(60), 10), vec!["mid", "late"]);
    let all = store
        .outbound_due(t0 + Duration::from_secs(120), 10, &mut |_, _| true)
        .unwrap();
    assert_eq!(all.len(), 3);
    assert_eq!(all[2].id, early);
    assert_eq!(all[2].attempts, 1);
    assert_eq!(all[2].first_queued, t0);
    assert_eq!(all[2].next_attempt, t0 + Duration::from_secs(120));

    assert!(outbound_one(&store, mid, Change::Delivered).unwrap());
    assert!(!outbound_one(&store, mid, Change::Delivered).unwrap());
    assert!(outbound_one(&store, late, Change::Dropped).unwrap());
    assert_eq!(hops(t0 + DAY, 10), vec!["early"]);
    assert_eq!(store.counter(counter::OUTBOUND_DELIVERED).unwrap(), 1);
    assert_eq!(store.counter(counter::OUTBOUND_GIVEN_UP).unwrap(), 1);
    assert_eq!(store.counter(counter::OUTBOUND_RETRIED).unwrap(), 1);
    assert!(!outbound_one(&store, mid, Change::Retry(t0)).unwrap());
}

#[test]
fn mail_queue_operations() {
    let dir = tempfile::tempdir().unwrap();
    let store = Store::open(dir.path()).unwrap();
    let clock = ManualClock::at_epoch_day(20_000);
    let t0 = clock.now();
    let a = store
        .mail_enqueue("example.org", b"To: a@example.org\n\nA", t0)
        .unwrap();
    let b = store
        .mail_enqueue("example.org", b"To: b@example.org\n\nB", t0)
        .unwrap();
    let due = store.mail_due(t0, 10, &mut |_, _| true).unwrap();
    assert_eq!(due.iter().map(|m| m.id).collect::<Vec<_>>(), vec![a, b]);
    assert_eq!(due[0].payload, b"To: a@example.org\n\nA");

    assert!(mail_one(&store, a, Change::Retry(t0 + Duration::from_secs(600))).unwrap());
    let due = store.mail_due(t0, 10, &mut |_, _| true).unwrap();
    assert_eq!(due.iter().map(|m| m.id).collect::<Vec<_>>(), vec![b]);
    assert!(mail_one(&store, b, Change::Delivered).unwrap());
    let due = store
        .mail_due(t0 + Duration::from_secs(600), 10, &mut |_, _| true)
        .unwrap();
    assert_eq!(due.len(), 1);
    assert_eq!(due[0].attempts, 1);
    assert!(mail_one(&store, a, Change::Dropped).unwrap());
    assert_eq!(store.mail_len().unwrap(), 0);
    assert_eq!(store.counter(counter::MAIL_QUEUED).unwrap(), 2);
    assert_eq!(store.counter(counter::MAIL_DELIVERED).unwrap(), 1);
    assert_eq!(store.counter(counter::MAIL_DROPPED).unwrap(), 1);
}

#[test]
fn prune_replay_by_time() {
    let dir = tempfile::tempdir().unwrap();
    let store = Store::open(dir.path()).unwrap();
    let clock = ManualClock::at_epoch_day(20_000);
    let t0 = clock.now();
    for (i, days) in [(1u8, 1u32), (2, 2), (3, 3), (4, 2)] {
        let p = Inbound {
            packet_id: [i; 16],
            replay_expires: t0 + DAY * days,
            digest: Some([i; 32]),
            item: fwd("h", i),
        };
        assert!(matches!(store.accept(&p).unwrap(), Accepted::New(_)));
    }
    assert_eq!(store.prune_replay(t0).unwrap(), 0);
    assert_eq!(store.prune_replay(t0 + DAY * 2).unwrap(), 3);
    assert!(!store.replay_contains(&[1; 16]).unwrap());
    assert!(!store.replay_contains(&[2; 16]).unwrap());
    assert!(!store.replay_contains(&[4; 16]).unwrap());
    // The digests go with their packet IDs.
    assert!(!store.digest_known(&[1; 32]).unwrap());
    assert!(!store.digest_known(&[4; 32]).unwrap());
    assert!(store.digest_known(&[3; 32]).unwrap());
    assert!(store.replay_contains(&[3; 16]).unwrap());
    assert_eq!(store.prune_replay(t0 + DAY * 2).unwrap(), 0);
    assert_eq!(store.counter(counter::REPLAY_PRUNED).unwrap(), 3);
    // A pruned ID is accepted again.
    let p = inbound(1, &clock, fwd("h", 1));
    assert!(matches!(store.accept(&p).unwrap(), Accepted::New(_)));
}

#[test]
fn meta_and_counters_persist() {
    let dir = tempfile::tempdir().unwrap();
    {
        let store = Store::open(dir.path()).unwrap();
        assert_eq!(store.meta_get("key").unwrap(), None);
        store.meta_put("key", b"value").unwrap();
        store.meta_put("gone", b"x").unwrap();
        store.meta_delete("gone").unwrap();
        store.incr("custom", 5).unwrap();
        store.incr("custom", 2).unwrap();
    }
    let store = Store::open(dir.path()).unwrap();
    assert_eq!(store.meta_get("key").unwrap(), Some(b"value".to_vec()));
    assert_eq!(store.meta_get("gone").unwrap(), None);
    assert_eq!(store.counter("custom").unwrap(), 7);
    assert_eq!(store.counters().unwrap().get("custom"), Some(&7));
}

#[test]
fn corrupt_records_give_errors() {
    let dir = tempfile::tempdir().unwrap();
    let store = Store::open(dir.path()).unwrap();
    let e = store.engine().unwrap();
    let ks = &e.ks;
    ks.pool
        .insert(7u64.to_be_bytes(), [0xff, 0xff, 0xff])
        .unwrap();
    ks.counters.insert("bad", [1u8, 2]).unwrap();
    let err = store.pool_get(PoolId(7)).unwrap_err();
    assert!(
        matches!(err, StoreError::Corrupt { what: "pool", .. }),
        "{err}"
    );
    assert!(err.to_string().contains("corrupt pool record"));
    assert!(matches!(
        store.release(&[PoolId(7)], SystemTime::UNIX_EPOCH),
        Err(StoreError::Corrupt { .. })
    ));
    assert!(matches!(
        store.counter("bad"),
        Err(StoreError::Corrupt { .. })
    ));
}

#[test]
fn open_fails_cleanly_on_a_file() {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("not-a-dir");
    std::fs::write(&file, b"x").unwrap();
    let err = Store::open(&file).unwrap_err();
    assert!(err.to_string().contains("not-a-dir"), "{err}");
}

#[test]
fn an_unknown_exit_type_byte_is_a_corrupt_record() {
    let chunk = ExitChunk {
        msg_id: [3; 16],
        chunk: 1,
        chunks: 1,
        exit_type: mimix_packet::ExitType::Dummy,
        payload: b"x".to_vec(),
    };
    let mut bytes = postcard::to_stdvec(&chunk).unwrap();
    assert_eq!(postcard::from_bytes::<ExitChunk>(&bytes).unwrap(), chunk);
    // msg_id (16 bytes), chunk, chunks, then the exit type.
    assert_eq!(bytes[18], 1);
    bytes[18] = 7;
    assert!(postcard::from_bytes::<ExitChunk>(&bytes).is_err());
}

#[test]
fn usage_follows_every_change_and_matches_a_fresh_count() {
    let dir = tempfile::tempdir().unwrap();
    let clock = ManualClock::at_epoch_day(20_000);
    let store = Store::open(dir.path()).unwrap();
    let items: Vec<Inbound> = (0..6)
        .map(|i| {
            let item = if i % 3 == 2 {
                exit_item(i)
            } else {
                fwd("http://a.onion", i)
            };
            inbound(i, &clock, item)
        })
        .collect();
    store.accept_batch(&items).unwrap();
    store.pool_insert(&[fwd("http://d.onion", 9)]).unwrap();
    let u = store.usage();
    assert_eq!(u.pool.count, 7);
    assert!(u.pool.bytes > 5 * 20_480, "{u:?}");
    let ids = store.pool_ids().unwrap();
    store.release(&ids[..5], clock.now()).unwrap();
    let now = clock.now();
    let due = store.outbound_due(now, 10, &mut |_, _| true).unwrap();
    outbound_one(&store, due[0].id, Change::Delivered).unwrap();
    outbound_one(
        &store,
        due[1].id,
        Change::Retry(now + Duration::from_secs(1)),
    )
    .unwrap();
    let jobs = store.exit_jobs(10).unwrap();
    assert!(store.exit_job_done(jobs[0].0).unwrap());
    let m = store
        .mail_enqueue("example.org", b"To: a@example.org\n\nA", now)
        .unwrap();
    store
        .mail_enqueue("example.org", b"To: b@example.org\n\nB", now)
        .unwrap();
    let longer = b"a much longer prepared delivery than before".to_vec();
    mail_one(&store, m, Change::RetryPrepared(now, longer)).unwrap();
    let u = store.usage();
    assert_eq!(store.pool_count().unwrap(), 2);
    assert_eq!(u.outbound.count as usize, store.outbound_len().unwrap());
    assert_eq!(u.mail.count, 2);
    drop(store);
    let fresh = Store::open(dir.path()).unwrap().usage();
    assert_eq!(fresh, u, "in-memory usage agrees with a count of the disk");
}

#[test]
fn a_pool_snapshot_is_consistent_and_streams_in_key_order() {
    let dir = tempfile::tempdir().unwrap();
    let store = Store::open(dir.path()).unwrap();
    let ids = store
        .pool_insert(
            &(0..300u32)
                .map(|i| fwd("http://a.onion", i as u8))
                .collect::<Vec<_>>(),
        )
        .unwrap();
    let snap = store.pool_snapshot().unwrap();
    assert_eq!(snap.len(), 300);
    // Items added or released after the snapshot do not change it.
    store.pool_insert(&[fwd("http://late.onion", 1)]).unwrap();
    store.release(&ids[..10], SystemTime::UNIX_EPOCH).unwrap();
    let seen: Vec<PoolId> = snap.map(Result::unwrap).collect();
    assert_eq!(seen, ids);
    assert_eq!(store.pool_count().unwrap(), 291);
}

#[test]
fn outcomes_are_recorded_in_one_batch_with_their_counters_and_usage() {
    let dir = tempfile::tempdir().unwrap();
    let store = Store::open(dir.path()).unwrap();
    let t0 = ManualClock::at_epoch_day(20_000).now();
    let ids: Vec<_> = (0..4u8)
        .map(|i| {
            store
                .outbound_enqueue("http://a.onion", &[i; 100], t0)
                .unwrap()
        })
        .collect();
    let later = t0 + Duration::from_secs(60);
    let changes = vec![
        (ids[0], Change::Delivered),
        (ids[1], Change::Dropped),
        // A packet's payload is never replaced: a prepared retry is a
        // plain retry for it.
        (ids[2], Change::RetryPrepared(later, b"other".to_vec())),
        // Twice in one batch, and an item no longer queued: each passed
        // over.
        (ids[0], Change::Delivered),
        (OutboundId(999_999), Change::Delivered),
    ];
    assert_eq!(store.outbound_record(changes).unwrap(), 3);
    assert_eq!(store.counter(counter::OUTBOUND_DELIVERED).unwrap(), 1);
    assert_eq!(store.counter(counter::OUTBOUND_GIVEN_UP).unwrap(), 1);
    assert_eq!(store.counter(counter::OUTBOUND_RETRIED).unwrap(), 1);
    let due = store.outbound_due(later, 10, &mut |_, _| true).unwrap();
    let got: Vec<_> = due
        .iter()
        .map(|i| (i.id, i.attempts, i.packet[0]))
        .collect();
    assert_eq!(got, vec![(ids[3], 0, 3), (ids[2], 1, 2)]);
    let usage = store.usage();
    drop(store);
    let fresh = Store::open(dir.path()).unwrap().usage();
    assert_eq!(usage.outbound.count, 2);
    assert_eq!(
        fresh, usage,
        "in-memory usage agrees with a count of the disk"
    );
}

#[test]
fn a_due_scan_takes_only_what_each_destination_has_room_for() {
    let dir = tempfile::tempdir().unwrap();
    let store = Store::open(dir.path()).unwrap();
    let t0 = ManualClock::at_epoch_day(20_000).now();
    let mut queued = Vec::new();
    for i in 0..10u8 {
        for hop in ["http://a.onion", "http://b.onion"] {
            queued.push(store.outbound_enqueue(hop, &[i], t0).unwrap());
        }
    }
    // One post to a is in flight (its first item): a has room for one
    // more, b for two.
    let busy = [("http://a.onion".to_owned(), 1)].into_iter().collect();
    let mut skip = crate::queue::Skip::new([queued[0].0].into_iter().collect(), busy, 2);
    let due = store
        .outbound_due(t0, 8, &mut |id, hop| skip.take(id, hop))
        .unwrap();
    let got: Vec<_> = due.iter().map(|i| (i.next_hop.as_str(), i.id)).collect();
    assert_eq!(
        got,
        vec![
            ("http://b.onion", queued[1]),
            ("http://a.onion", queued[2]),
            ("http://b.onion", queued[3]),
        ]
    );
}

#[test]
fn byte_fields_are_stored_as_before_serde_bytes() {
    // Payloads are (de)serialised as byte strings rather than sequences
    // of u8 (much faster); postcard writes both the same way, so stores
    // written before read as they did.
    #[derive(serde::Serialize)]
    struct Before {
        destination: String,
        payload: Vec<u8>,
    }
    #[derive(serde::Serialize)]
    struct After {
        destination: String,
        #[serde(with = "serde_bytes")]
        payload: Vec<u8>,
    }
    let payload: Vec<u8> = (0..=255u8).cycle().take(20_480).collect();
    let before = Before {
        destination: "http://a.onion".into(),
        payload: payload.clone(),
    };
    let after = After {
        destination: "http://a.onion".into(),
        payload: payload.clone(),
    };
    assert_eq!(
        postcard::to_stdvec(&before).unwrap(),
        postcard::to_stdvec(&after).unwrap()
    );
    let item = PoolItem::Forward {
        next_hop: "http://a.onion".into(),
        packet: payload,
    };
    let bytes = postcard::to_stdvec(&item).unwrap();
    assert_eq!(postcard::from_bytes::<PoolItem>(&bytes).unwrap(), item);
}
