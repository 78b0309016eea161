//! The node's dummy chains: shorter when remailers are few, spread over
//! small sets, never a remailer twice too close.

use super::*;

#[test]
fn dummy_chains_shorten_when_remailers_are_few() {
    let mut r = rng(3);
    assert!(dummy_chain(&[], 4, 2, &mut r).is_none());
    let one = [cand("a", 1, false)];
    assert!(dummy_chain(&one, 0, 2, &mut r).is_none());
    assert_eq!(names(&dummy_chain(&one, 4, 2, &mut r).unwrap()), ["a"]);
    assert_eq!(
        names(&dummy_chain(&one, 3, 0, &mut r).unwrap()),
        ["a", "a", "a"]
    );
    let two = [
        cand("a", 1, false),
        cand("b", 2, false),
        cand("a", 1, false),
    ];
    let chain = dummy_chain(&two, 4, 2, &mut r).unwrap();
    assert_eq!(chain.len(), 2);
    assert_ne!(chain[0].address, chain[1].address);
    let three: Vec<Candidate> = (0..3).map(|i| cand(&format!("r{i}"), i, false)).collect();
    let mut firsts = std::collections::BTreeSet::new();
    for _ in 0..100 {
        let c = dummy_chain(&three, 4, 2, &mut r).unwrap();
        assert_eq!(c[3].address, c[0].address);
        firsts.insert(c[0].name.clone());
    }
    assert_eq!(firsts.len(), 3);
    assert_eq!(dummy_chain(&three, 25, 2, &mut r).unwrap().len(), MAX_HOPS);
}

/// Candidates named by the numbers given (repeats are the same remailer).
fn numbered(ids: &[usize]) -> Vec<Candidate> {
    ids.iter()
        .map(|i| Candidate {
            name: format!("r{i}"),
            address: format!("http://r{i}.onion"),
            exit: false,
            reliability: None,
            latency: None,
        })
        .collect()
}

fn separated(c: &[&Candidate]) -> bool {
    c.iter().enumerate().all(|(i, h)| {
        (1..=2).all(|back| i < back || c.get(i - back).map(|p| &p.address) != Some(&h.address))
    })
}

proptest::proptest! {
    #[test]
    fn node_dummy_chains_separate_repeats(seed: u64, n in 1usize..8, len in 0usize..8, dup in 0usize..3) {
        let mut rng = StdRng::seed_from_u64(seed);
        let mut ids: Vec<usize> = (0..n).collect();
        ids.extend((0..dup.min(n)).map(|i| i % n));
        let candidates = numbered(&ids);
        match dummy_chain(&candidates, len, 2, &mut rng) {
            None => proptest::prop_assert_eq!(len, 0),
            Some(c) => {
                proptest::prop_assert_eq!(c.len(), if n >= 3 { len } else { len.min(n) });
                proptest::prop_assert!(separated(&c));
            }
        }
    }
}

#[test]
fn node_dummy_chains_on_small_sets_spread() {
    let mut rng = StdRng::seed_from_u64(0x5eed_0003);
    assert!(dummy_chain(&[], 4, 2, &mut rng).is_none());
    let one = numbered(&[1]);
    assert_eq!(dummy_chain(&one, 4, 2, &mut rng).unwrap().len(), 1);
    let two = numbered(&[1, 2, 1]);
    let c = dummy_chain(&two, 4, 2, &mut rng).unwrap();
    assert_eq!(c.len(), 2);
    assert_ne!(c[0].address, c[1].address);
    // With three remailers every hop is forced by the first two, and every
    // remailer shows up as the first hop.
    let three = numbered(&[1, 2, 3]);
    let mut firsts = std::collections::BTreeSet::new();
    for _ in 0..200 {
        let c = dummy_chain(&three, 4, 2, &mut rng).unwrap();
        assert_eq!(c[3].address, c[0].address);
        firsts.insert(c[0].address.clone());
    }
    assert_eq!(firsts.len(), 3);
}
