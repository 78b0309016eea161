#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use mimix_packet::{PublicKey, SecretKey};

use super::*;

/// The day the test vectors were made, and a time on it.
const DAY: u64 = 20_786;
const NOW: u64 = DAY * 86_400 + 3600;

fn key(name: &str) -> PublicKey {
    let path = format!(
        "{}/tests/vectors/remailers/{name}/secret.pem",
        env!("CARGO_MANIFEST_DIR")
    );
    let pem = std::fs::read_to_string(path).unwrap();
    SecretKey::from_pem(&pem).unwrap().public().clone()
}

fn onion(n: usize) -> String {
    format!("http://{:0>56}.onion", format!("r{n}"))
}

fn conf(
    name: &str,
    address: &str,
    key: &PublicKey,
    from: u64,
    to: u64,
    known: &[String],
) -> String {
    RemailerConf {
        name: name.into(),
        address: address.into(),
        key: key.clone(),
        valid_from: from,
        valid_to: to,
        smtp: true,
        abuse: None,
        known: known.to_vec(),
    }
    .to_text()
}

fn ring() -> Keyring {
    Keyring::new(
        &DirectoryConfig::default(),
        Some("http://ours.onion"),
        Some(PeerPolicy::OnionOnly),
    )
}

#[test]
fn a_conf_is_accepted_only_from_its_own_address() {
    let mut k = ring();
    let (a, b) = (onion(1), onion(2));
    k.add_seed(&a, None, NOW).unwrap();
    k.add_seed(&b, None, NOW).unwrap();
    let alpha = key("alpha");
    // b serves a conf naming a: refused, and nothing is learnt.
    let planted = conf("alpha", &a, &alpha, DAY, DAY + 200, &[]);
    assert_eq!(
        k.accept(&b, &planted, NOW, NOW, false),
        Err(Refusal::AddressMismatch)
    );
    assert_eq!(
        k.get(&b).unwrap().last_refusal,
        Some(Refusal::AddressMismatch)
    );
    assert!(k.conf(&a).is_none() && k.conf(&b).is_none());
    // a serving its own conf is accepted (case and trailing slash aside).
    k.accept(
        &a.to_uppercase().replace("HTTP", "http"),
        &planted,
        NOW,
        NOW + 10,
        false,
    )
    .unwrap();
    assert_eq!(k.conf(&a).unwrap().name, "alpha");
    assert_eq!(k.standing(k.get(&a).unwrap(), NOW), Standing::Alive);
    assert_eq!(k.usable(NOW).len(), 1);
}

#[test]
fn invalid_confs_and_wrong_names_are_refused() {
    let mut k = ring();
    let a = onion(1);
    k.add_seed(&a, Some("alpha"), NOW).unwrap();
    let beta = key("beta");
    let expired = conf("alpha", &a, &beta, DAY - 300, DAY - 1, &[]);
    assert!(matches!(
        k.accept(&a, &expired, NOW, NOW, false),
        Err(Refusal::Invalid(_))
    ));
    assert!(matches!(
        k.accept(&a, "not a conf", NOW, NOW, false),
        Err(Refusal::Invalid(_))
    ));
    let renamed = conf("mallory", &a, &beta, DAY, DAY + 200, &[]);
    assert_eq!(
        k.accept(&a, &renamed, NOW, NOW, false),
        Err(Refusal::NameMismatch)
    );
    let right = conf("Alpha", &a, &beta, DAY, DAY + 200, &[]);
    k.accept(&a, &right, NOW, NOW, false).unwrap();
}

#[test]
fn a_hostile_known_list_adds_a_handful() {
    let mut k = ring();
    let hostile = onion(0);
    k.add_seed(&hostile, None, NOW).unwrap();
    // Ten thousand listed remailers do not even fit in a conf: refused.
    let fakes: Vec<String> = (1..=10_000).map(onion).collect();
    let huge = conf("hostile", &hostile, &key("gamma"), DAY, DAY + 200, &fakes);
    assert!(matches!(
        k.accept(&hostile, &huge, NOW, NOW, false),
        Err(Refusal::Invalid(_))
    ));
    assert_eq!(k.len(), 1);
    // As many as fit: a handful per fetch, and the cap in all.
    let text = conf(
        "hostile",
        &hostile,
        &key("gamma"),
        DAY,
        DAY + 200,
        &fakes[..900],
    );
    let c = DirectoryConfig::default();
    let mut total = 0;
    for round in 0..100 {
        let got = k.accept(&hostile, &text, NOW + round, NOW, false).unwrap();
        assert!(got.discovered <= c.max_new_per_fetch);
        total += got.discovered;
    }
    assert_eq!(total, c.max_candidates, "candidates are capped in all");
    assert_eq!(k.len(), 1 + c.max_candidates);
    // Unreachable, our own and malformed addresses are never candidates.
    assert!(k.hear_of("http://example.org", NOW).is_none());
    assert!(k.hear_of("http://ours.onion", NOW).is_none());
    assert!(k.hear_of("not a url", NOW).is_none());
    // Candidates never reached are dropped after their time to live.
    let gone = k.age(NOW + 100 + c.candidate_ttl.as_secs());
    assert_eq!(gone.len(), c.max_candidates);
    assert_eq!(k.len(), 1);
}

#[test]
fn the_whole_keyring_is_capped() {
    let config = DirectoryConfig {
        max_remailers: 10,
        max_candidates: 10,
        max_new_per_fetch: 10,
        ..DirectoryConfig::default()
    };
    let mut k = Keyring::new(&config, None, None);
    for n in 0..30 {
        k.hear_of(&onion(n), NOW);
    }
    assert_eq!(k.len(), 10);
}

#[test]
fn keys_roll_over_only_inside_the_rotation_rules() {
    let mut k = ring();
    let a = onion(1);
    k.add_seed(&a, None, NOW).unwrap();
    let (old, new) = (key("alpha"), key("beta"));
    k.accept(
        &a,
        &conf("a", &a, &old, DAY - 100, DAY + 170, &[]),
        NOW,
        NOW,
        false,
    )
    .unwrap();
    // A new key while the old one has 170 days left: refused, old kept.
    let early = conf("a", &a, &new, DAY, DAY + 270, &[]);
    assert_eq!(
        k.accept(&a, &early, NOW, NOW, false),
        Err(Refusal::KeyChangedEarly)
    );
    assert_eq!(k.conf(&a).unwrap().key.key_id(), old.key_id());
    // An older key: a rollback, refused.
    let older = conf("a", &a, &new, DAY - 200, DAY + 70, &[]);
    assert_eq!(
        k.accept(&a, &older, NOW, NOW, false),
        Err(Refusal::KeyRollback)
    );
    // 150 days on, the old key expires within the window: accepted, and
    // the old key is remembered as retired.
    let later = NOW + 150 * 86_400;
    let rotated = conf("a", &a, &new, DAY + 145, DAY + 415, &[]);
    let got = k.accept(&a, &rotated, later, later, false).unwrap();
    assert!(got.new_key);
    assert_eq!(k.conf(&a).unwrap().key.key_id(), new.key_id());
    assert_eq!(k.get(&a).unwrap().retired[0].key_id, old.key_id().to_hex());
}

#[test]
fn remailers_die_and_are_forgotten_but_seeds_stay() {
    let c = DirectoryConfig::default();
    let mut k = ring();
    let (seed, found) = (onion(1), onion(2));
    k.add_seed(&seed, None, NOW).unwrap();
    k.hear_of(&found, NOW).unwrap();
    for a in [&seed, &found] {
        k.accept(
            a,
            &conf("x", a, &key("delta"), DAY, DAY + 100, &[]),
            NOW,
            NOW,
            false,
        )
        .unwrap();
    }
    let dead = NOW + c.dead_after.as_secs();
    assert_eq!(k.standing(k.get(&found).unwrap(), dead), Standing::Dead);
    assert!(k.usable(dead).is_empty());
    assert!(k.alive_addresses(dead).is_empty());
    assert!(k.age(dead).is_empty(), "dead is not forgotten yet");
    let gone = k.age(NOW + c.forget_after.as_secs());
    assert_eq!(gone, vec![canonical(&found).unwrap()]);
    assert!(k.get(&seed).is_some());
}

#[test]
fn a_name_claimed_twice_is_a_clash_resolved_by_address() {
    let mut k = ring();
    let (a, b) = (onion(1), onion(2));
    for (addr, key) in [(&a, key("alpha")), (&b, key("beta"))] {
        k.add_seed(addr, None, NOW).unwrap();
        k.accept(
            addr,
            &conf("twin", addr, &key, DAY, DAY + 100, &[]),
            NOW,
            NOW,
            false,
        )
        .unwrap();
    }
    let clashes = k.clashes();
    let mut both = vec![canonical(&a).unwrap(), canonical(&b).unwrap()];
    both.sort();
    assert_eq!(clashes.get("twin"), Some(&both));
    assert_eq!(k.usable(NOW).len(), 2, "both stay usable by address");
}

#[test]
fn fetch_schedule() {
    let mut k = ring();
    let a = onion(1);
    k.add_seed(&a, None, NOW).unwrap();
    assert_eq!(k.due(NOW).len(), 1);
    k.failed(&a, NOW + 60);
    assert!(k.due(NOW).is_empty());
    assert_eq!(k.next_due(), Some(NOW + 60));
    assert_eq!(k.get(&a).unwrap().failures, 1);
    k.accept(
        &a,
        &conf("a", &a, &key("alpha"), DAY, DAY + 9, &[]),
        NOW,
        NOW + 999,
        false,
    )
    .unwrap();
    assert_eq!(k.get(&a).unwrap().failures, 0);
    assert_eq!(k.next_due(), Some(NOW + 999));
}

#[test]
fn our_own_address_is_never_a_seed_nor_restored() {
    let ours = onion(0);
    let mut k = Keyring::new(
        &DirectoryConfig::default(),
        Some(&ours),
        Some(PeerPolicy::OnionOnly),
    );
    assert!(k.is_ours(&ours));
    assert!(k.add_seed(&ours, Some("self"), NOW).is_none());
    assert!(k.add_seed(&onion(1), None, NOW).is_some());
    let mut other = ring();
    let stored = other.add_seed(&ours, None, NOW).unwrap().clone();
    k.restore(stored);
    assert_eq!(
        k.entries().map(|e| e.address.clone()).collect::<Vec<_>>(),
        vec![onion(1)]
    );
}
