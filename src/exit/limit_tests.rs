#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::sync::Arc;
use std::time::Duration;

use lettre::Address;
use rand::SeedableRng;
use rand::rngs::StdRng;

use super::*;
use crate::clock::ManualClock;

const DAY: Duration = Duration::from_secs(86_400);

fn delivery(to: &[&str]) -> Delivery {
    Delivery {
        envelope_from: "remailer@mix.example".parse().unwrap(),
        envelope_to: to.iter().map(|a| a.parse::<Address>().unwrap()).collect(),
        message: b"To: x\r\n\r\nbody\r\n".to_vec(),
    }
}

fn config(per_address: u32, per_domain: u32, max_tracked: u64) -> RateLimitConfig {
    RateLimitConfig {
        per_address,
        per_domain,
        max_tracked,
    }
}

/// Sends one message to `to` through the limiter; returns who is left.
fn send(l: &RateLimiter, to: &[&str], rng: &mut StdRng) -> (Vec<String>, Limited) {
    let mut d = delivery(to);
    let limited = l.apply(&mut d, rng).unwrap();
    (
        d.envelope_to.iter().map(|a| a.to_string()).collect(),
        limited,
    )
}

#[test]
fn holds_under_a_burst_resets_the_next_day_and_survives_a_restart() {
    let dir = tempfile::tempdir().unwrap();
    let clock = ManualClock::at_epoch_day(20_000);
    let rng = &mut StdRng::seed_from_u64(1);
    let store = Store::open(dir.path()).unwrap();
    let l = RateLimiter::new(&config(20, 200, 1000), store, Arc::new(clock.clone())).unwrap();
    let mut delivered = 0;
    let mut limited = 0;
    for _ in 0..500 {
        let (left, lim) = send(&l, &["Victim@Example.org"], rng);
        delivered += left.len();
        limited += lim.over_limit;
    }
    assert_eq!((delivered, limited), (20, 480));
    // Any case of the address is the same address.
    assert!(send(&l, &["victim@EXAMPLE.ORG"], rng).0.is_empty());
    // The same domain still has room.
    assert_eq!(send(&l, &["other@example.org"], rng).0.len(), 1);
    drop(l);

    // Reopened (a restart): still over the limit today.
    let store = Store::open(dir.path()).unwrap();
    let l = RateLimiter::new(
        &config(20, 200, 1000),
        store.clone(),
        Arc::new(clock.clone()),
    )
    .unwrap();
    assert!(send(&l, &["victim@example.org"], rng).0.is_empty());
    assert_eq!(
        store.rate_entries(20_000).unwrap(),
        3,
        "2 addresses, 1 domain"
    );

    // The next day: counting starts again; yesterday's records are gone.
    clock.advance(DAY);
    let mut next_day = 0;
    for _ in 0..30 {
        next_day += send(&l, &["victim@example.org"], rng).0.len();
    }
    assert_eq!(next_day, 20);
    assert_eq!(store.rate_entries(20_000).unwrap(), 0);
    assert_eq!(store.rate_entries(20_001).unwrap(), 2);
}

#[test]
fn the_domain_limit_counts_every_recipient_there() {
    let dir = tempfile::tempdir().unwrap();
    let clock = ManualClock::at_epoch_day(20_000);
    let rng = &mut StdRng::seed_from_u64(2);
    let store = Store::open(dir.path()).unwrap();
    let l = RateLimiter::new(&config(5, 6, 1000), store, Arc::new(clock)).unwrap();
    let (left, _) = send(
        &l,
        &["a@big.example", "b@big.example", "c@big.example"],
        rng,
    );
    assert_eq!(left.len(), 3);
    let (left, _) = send(
        &l,
        &["d@big.example", "e@big.example", "f@small.example"],
        rng,
    );
    assert_eq!(left.len(), 3);
    // One delivery left at big.example: the first recipient gets it.
    let (left, lim) = send(
        &l,
        &["g@big.example", "h@big.example", "a@small.example"],
        rng,
    );
    assert_eq!(left, ["g@big.example", "a@small.example"]);
    assert_eq!(lim.over_limit, 1);
}

#[test]
fn a_full_table_refuses_new_recipients_but_counts_known_ones() {
    let dir = tempfile::tempdir().unwrap();
    let clock = ManualClock::at_epoch_day(20_000);
    let rng = &mut StdRng::seed_from_u64(3);
    let store = Store::open(dir.path()).unwrap();
    // Two counters (addresses only: no domain limit).
    let l = RateLimiter::new(&config(3, 0, 2), store.clone(), Arc::new(clock)).unwrap();
    assert_eq!(send(&l, &["a@one.example"], rng).0.len(), 1);
    assert_eq!(send(&l, &["b@one.example"], rng).0.len(), 1);
    let (left, lim) = send(&l, &["c@one.example"], rng);
    assert!(left.is_empty());
    assert_eq!(lim.table_full, 1);
    assert_eq!(
        send(&l, &["a@one.example"], rng).0.len(),
        1,
        "known: counted"
    );
    assert_eq!(
        store.rate_entries(20_000).unwrap(),
        2,
        "per_domain 0: addresses only"
    );
}

#[test]
fn no_limits_no_limiter() {
    let dir = tempfile::tempdir().unwrap();
    let store = Store::open(dir.path()).unwrap();
    let clock = Arc::new(ManualClock::at_epoch_day(1));
    assert!(RateLimiter::new(&config(0, 0, 10), store, clock).is_none());
    assert!(config(0, 0, 0).validate().is_err());
    assert!(RateLimitConfig::default().validate().is_ok());
}

#[test]
fn counters_hold_no_address_in_clear() {
    let dir = tempfile::tempdir().unwrap();
    let store = Store::open(dir.path()).unwrap();
    let clock = Arc::new(ManualClock::at_epoch_day(20_000));
    let l = RateLimiter::new(&config(2, 2, 100), store, clock).unwrap();
    send(
        &l,
        &["secret.person@hidden.example"],
        &mut StdRng::seed_from_u64(4),
    );
    drop(l);
    let mut found = false;
    for entry in walk(dir.path()) {
        let bytes = std::fs::read(entry).unwrap();
        found |= bytes
            .windows(b"hidden.example".len())
            .any(|w| w == b"hidden.example");
    }
    assert!(!found, "a recipient's domain is on disk in clear");
}

fn walk(dir: &std::path::Path) -> Vec<std::path::PathBuf> {
    let mut out = Vec::new();
    for e in std::fs::read_dir(dir).unwrap() {
        let p = e.unwrap().path();
        if p.is_dir() {
            out.extend(walk(&p));
        } else {
            out.push(p);
        }
    }
    out
}
