#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

//! Unit tests: parsing, error texts, name clashes, completeness, uniformity
//! and dummy chains.

use std::collections::BTreeMap;

use rand::SeedableRng;
use rand::rngs::StdRng;

use super::*;

/// The node's dummy chains.
mod dummies;

/// Remailer `n` at `http://r{n}.onion`: reliable, fast, measured.
fn cand(name: &str, n: usize, exit: bool) -> Candidate {
    Candidate {
        name: name.to_owned(),
        address: format!("http://r{n}.onion"),
        exit,
        reliability: Some(1.0),
        latency: Some(Duration::from_secs(60)),
    }
}

fn rng(seed: u64) -> StdRng {
    StdRng::seed_from_u64(seed)
}

fn spec(s: &str) -> ChainSpec {
    s.parse().unwrap()
}

fn names(chain: &[&Candidate]) -> Vec<String> {
    chain.iter().map(|c| c.name.clone()).collect()
}

fn mail(s: &str, known: &[Candidate], seed: u64) -> Result<Vec<String>, ChainError> {
    let chains = select(
        &spec(s),
        known,
        &Filters::default(),
        Exit::Required,
        1,
        &mut rng(seed),
    )?;
    Ok(names(&chains[0]))
}

fn err_text(s: &str, known: &[Candidate]) -> String {
    mail(s, known, 1).unwrap_err().to_string()
}

#[test]
fn parses_hops_and_prints_them_back() {
    let s = spec(" alpha ,*,\tHTTP://XyZ.onion ,my remailer");
    let want = [
        Hop::Name("alpha".into()),
        Hop::Random,
        Hop::Address("HTTP://XyZ.onion".into()),
        Hop::Name("my remailer".into()),
    ];
    assert_eq!(s.hops(), want);
    assert_eq!(s.to_string(), "alpha,*,HTTP://XyZ.onion,my remailer");
    assert_eq!(spec(&s.to_string()), s);
    assert_eq!(spec("*,*,*"), ChainSpec::random(3).unwrap());
    assert_eq!(spec(&["*"; 10].join(",")).hops().len(), 10);
}

#[test]
fn parse_errors_are_clear() {
    let cases = [
        (
            "",
            "hop 1 of the chain is empty; use `*` for a random remailer",
        ),
        (
            "a,,b",
            "hop 2 of the chain is empty; use `*` for a random remailer",
        ),
        (
            "a,b, ",
            "hop 3 of the chain is empty; use `*` for a random remailer",
        ),
        (
            "a*b",
            "hop 1 of the chain contains '*', which no remailer name or address may contain",
        ),
        (
            "*,a\u{7}",
            "hop 2 of the chain contains '\\u{7}', which no remailer name or address may contain",
        ),
        (
            "http://a b.onion",
            "hop 1 of the chain contains ' ', which no remailer name or address may contain",
        ),
    ];
    for (text, want) in cases {
        let got = text.parse::<ChainSpec>().unwrap_err().to_string();
        assert_eq!(got, want, "{text:?}");
    }
    let eleven = ["*"; 11].join(",");
    let err = eleven.parse::<ChainSpec>().unwrap_err();
    assert_eq!(
        err.to_string(),
        "the chain has 11 hops; a packet carries at most 10"
    );
    let long = "x".repeat(81);
    let err = long.parse::<ChainSpec>().unwrap_err();
    assert_eq!(
        err.to_string(),
        "hop 1 of the chain is longer than 80 bytes"
    );
    let huge = ",".repeat(2000);
    assert!(matches!(
        huge.parse::<ChainSpec>(),
        Err(ChainError::SpecTooLong { len: 2000 })
    ));
    assert!(matches!(ChainSpec::random(0), Err(ChainError::NoHops)));
    assert!(matches!(
        ChainSpec::random(11),
        Err(ChainError::TooManyHops { hops: 11 })
    ));
}

#[test]
fn name_claimed_twice_is_an_error_naming_both() {
    let known = [
        cand("alpha", 1, true),
        cand("ALPHA", 2, true),
        cand("beta", 3, true),
    ];
    assert_eq!(
        err_text("alpha,*", &known),
        "hop 1: the name \"alpha\" is used by 2 remailers (http://r1.onion, http://r2.onion); \
         give the address instead"
    );
    let chain = mail("http://r2.onion,beta", &known, 1).unwrap();
    assert_eq!(chain, ["ALPHA", "beta"]);
}

#[test]
fn names_and_addresses_match_loosely_but_must_exist() {
    let known = [cand("Alpha", 1, false), cand("beta", 2, true)];
    assert_eq!(
        mail(" ALPHA , BETA ", &known, 1).unwrap(),
        ["Alpha", "beta"]
    );
    assert_eq!(
        mail("HTTP://R1.onion/,beta", &known, 1).unwrap(),
        ["Alpha", "beta"]
    );
    assert_eq!(
        err_text("gamma,beta", &known),
        "hop 1: no known remailer is named \"gamma\""
    );
    assert_eq!(
        err_text("*,http://r9.onion", &known),
        "hop 2: no known remailer has the address http://r9.onion"
    );
}

#[test]
fn named_exit_must_deliver_mail_unless_none_is_needed() {
    let known = [cand("alpha", 1, false), cand("beta", 2, true)];
    assert_eq!(
        err_text("beta,alpha", &known),
        "hop 2 (exit): alpha does not deliver mail; name an exit remailer or use `*`"
    );
    let f = Filters::default();
    let chains = select(&spec("beta,alpha"), &known, &f, Exit::Any, 1, &mut rng(1)).unwrap();
    assert_eq!(names(&chains[0]), ["beta", "alpha"]);
}

#[test]
fn named_hops_too_close_are_refused() {
    let known: Vec<Candidate> = (0..5).map(|i| cand(&format!("r{i}"), i, true)).collect();
    assert_eq!(
        err_text("r1,*,r1", &known),
        "hops 1 and 3 are both r1; a remailer may not repeat within 2 hops"
    );
    assert!(matches!(
        mail("r1,r1", &known, 1),
        Err(ChainError::NamedTooClose {
            first: 1,
            second: 2,
            distance: 2,
            ..
        })
    ));
    let chain = mail("r1,*,*,r1", &known, 1).unwrap();
    assert_eq!(
        (chain.len(), chain[0].as_str(), chain[3].as_str()),
        (4, "r1", "r1")
    );
    assert!(!chain[1..3].contains(&"r1".to_owned()));
    let loose = Filters {
        distance: 0,
        ..Filters::default()
    };
    let chains = select(
        &spec("r1,r1"),
        &known,
        &loose,
        Exit::Required,
        1,
        &mut rng(1),
    )
    .unwrap();
    assert_eq!(names(&chains[0]), ["r1", "r1"]);
}

#[test]
fn too_few_qualify_explains_each_filter() {
    let hour = Duration::from_secs(3600);
    let mut known = Vec::new();
    for i in 0..5 {
        known.push(cand(&format!("relay{i}"), i, false));
    }
    for i in 5..9 {
        known.push(Candidate {
            reliability: Some(0.985),
            ..cand(&format!("flaky{i}"), i, true)
        });
    }
    for i in 9..11 {
        known.push(Candidate {
            latency: Some(3 * hour),
            ..cand(&format!("slow{i}"), i, true)
        });
    }
    known.push(cand("good", 11, true));
    let filters = Filters {
        final_min_reliability: 0.99,
        ..Filters::default()
    };
    let err = select(
        &spec("*,good,*"),
        &known,
        &filters,
        Exit::Required,
        2,
        &mut rng(1),
    )
    .unwrap_err();
    assert_eq!(
        err.to_string(),
        "no remailer qualifies for hop 3 (exit): 12 known, 5 not exit-capable, \
         4 below relfinal 99%, 2 over maxlat 2h, 1 used within distance 2"
    );
}

#[test]
fn other_explanations() {
    assert_eq!(
        err_text("*,*", &[]),
        "no remailer qualifies for hop 1: no remailers known"
    );
    let one = [cand("solo", 1, true)];
    assert_eq!(
        err_text("*,*", &one),
        "hops 1 to 2 must be different remailers (distance 2), \
         but their 2 random hops have only 1 to choose from"
    );
    let two = [cand("a", 1, true), cand("b", 2, true)];
    assert_eq!(
        err_text("*,*,*,*", &two),
        "hops 1 to 3 must be different remailers (distance 2), \
         but their 3 random hops have only 2 to choose from"
    );
    // The named hop takes one of the two.
    assert_eq!(
        err_text("*,*,a", &two),
        "hops 1 to 3 must be different remailers (distance 2), \
         but their 2 random hops have only 1 to choose from"
    );
    let unmeasured = [Candidate {
        reliability: None,
        latency: None,
        ..cand("new", 1, true)
    }];
    let strict = Filters {
        require_measured: true,
        ..Filters::default()
    };
    let err = select(
        &spec("*"),
        &unmeasured,
        &strict,
        Exit::Required,
        1,
        &mut rng(1),
    )
    .unwrap_err();
    assert_eq!(
        err.to_string(),
        "no remailer qualifies for hop 1 (exit): 1 known, 1 not measured yet"
    );
    let flaky = [Candidate {
        reliability: Some(0.5),
        ..cand("flaky", 1, true)
    }];
    let err = select(
        &spec("*"),
        &flaky,
        &Filters::default(),
        Exit::Any,
        1,
        &mut rng(1),
    );
    assert_eq!(
        err.unwrap_err().to_string(),
        "no remailer qualifies for hop 1: 1 known, 1 below relfinal 95%"
    );
    let err = select(
        &spec("*,flaky"),
        &flaky,
        &Filters::default(),
        Exit::Any,
        1,
        &mut rng(1),
    );
    assert_eq!(
        err.unwrap_err().to_string(),
        "no remailer qualifies for hop 1: 1 known, 1 below minrel 90%"
    );
    let slow = Filters {
        max_latency: Duration::from_secs(5400),
        ..Filters::default()
    };
    let late = [Candidate {
        latency: Some(Duration::from_secs(9000)),
        ..cand("late", 1, true)
    }];
    let err = select(&spec("*"), &late, &slow, Exit::Any, 1, &mut rng(1)).unwrap_err();
    assert_eq!(
        err.to_string(),
        "no remailer qualifies for hop 1: 1 known, 1 over maxlat 1h 30m"
    );
}

#[test]
fn unmeasured_remailers_are_allowed_by_default() {
    let known = [
        Candidate {
            reliability: None,
            latency: None,
            ..cand("new1", 1, true)
        },
        Candidate {
            reliability: None,
            latency: None,
            ..cand("new2", 2, false)
        },
    ];
    assert_eq!(mail("*,*", &known, 3).unwrap(), ["new2", "new1"]);
}

#[test]
fn bad_arguments_are_refused() {
    let known = [cand("a", 1, true)];
    let s = spec("*");
    let f = Filters::default();
    for chunks in [0, MAX_CHUNKS + 1] {
        let err = select(&s, &known, &f, Exit::Required, chunks, &mut rng(1)).unwrap_err();
        assert_eq!(
            err.to_string(),
            format!("a message has 1 to 255 chunks, not {chunks}")
        );
    }
    for bad in [f64::NAN, -0.1, 1.5] {
        let f = Filters {
            final_min_reliability: bad,
            ..Filters::default()
        };
        let err = select(&s, &known, &f, Exit::Required, 1, &mut rng(1)).unwrap_err();
        assert_eq!(
            err.to_string(),
            "final_min_reliability must be between 0 and 1"
        );
    }
}

#[test]
fn finds_the_chain_greedy_picking_misses() {
    // One exit and two relays: a greedy pick of the exit at hop 1 or 2
    // leaves no exit for hop 3; the search must never fail.
    let known = [
        cand("exit", 0, true),
        cand("a", 1, false),
        cand("b", 2, false),
    ];
    let all_exits: Vec<Candidate> = (0..3).map(|i| cand(&format!("e{i}"), i, true)).collect();
    for seed in 0..200 {
        let chain = mail("*,*,*", &known, seed).unwrap();
        assert_eq!(chain[2], "exit");
        assert_ne!(chain[0], chain[1]);
        let chain = mail("*,*,*,*", &all_exits, seed).unwrap();
        assert_eq!(
            chain[3], chain[0],
            "three remailers, distance 2: hop 4 repeats hop 1"
        );
    }
}

#[test]
fn chunks_share_one_exit_and_vary_otherwise() {
    let known: Vec<Candidate> = (0..8)
        .map(|i| cand(&format!("r{i}"), i, i % 2 == 0))
        .collect();
    let chains = select(
        &spec("*,*,*"),
        &known,
        &Filters::default(),
        Exit::Required,
        40,
        &mut rng(7),
    )
    .unwrap();
    assert_eq!(chains.len(), 40);
    let exit = &chains[0][2].address;
    assert!(chains.iter().all(|c| &c[2].address == exit && c[2].exit));
    let firsts: std::collections::BTreeSet<&str> =
        chains.iter().map(|c| c[0].name.as_str()).collect();
    assert!(
        firsts.len() > 3,
        "entries should vary between chunks: {firsts:?}"
    );
}

#[test]
fn picks_are_spread_uniformly() {
    let mut known: Vec<Candidate> = (0..6).map(|i| cand(&format!("r{i}"), i, true)).collect();
    known.push(Candidate {
        reliability: Some(0.5),
        ..cand("flaky", 6, true)
    });
    known.push(cand("relay", 7, false));
    let mut counts: BTreeMap<(usize, String), usize> = BTreeMap::new();
    let draws = 3000;
    let mut r = rng(42);
    let s = spec("*,*,*");
    for _ in 0..draws {
        let chain = &select(&s, &known, &Filters::default(), Exit::Required, 1, &mut r).unwrap()[0];
        for (hop, c) in chain.iter().enumerate() {
            *counts.entry((hop, c.name.clone())).or_default() += 1;
        }
    }
    assert!(counts.keys().all(|(_, name)| name != "flaky"));
    assert!(!counts.contains_key(&(2, "relay".to_owned())));
    let exits: Vec<usize> = (0..6).map(|i| counts[&(2, format!("r{i}"))]).collect();
    let expected = draws / 6;
    assert!(
        exits
            .iter()
            .all(|&n| n * 10 > expected * 8 && n * 10 < expected * 12),
        "{exits:?}"
    );
    // Every eligible remailer shows up at every hop it may take.
    for hop in 0..2 {
        for name in (0..6).map(|i| format!("r{i}")).chain(["relay".to_owned()]) {
            assert!(
                counts.get(&(hop, name.clone())).copied().unwrap_or(0) > 100,
                "{hop} {name}"
            );
        }
    }
}

#[test]
fn duplicate_addresses_count_once() {
    let known = [cand("a", 1, true), cand("a", 1, true), cand("b", 2, true)];
    assert_eq!(mail("a,b", &known, 1).unwrap(), ["a", "b"]);
    let err = select(
        &spec("*,*,*"),
        &known,
        &Filters::default(),
        Exit::Required,
        1,
        &mut rng(1),
    );
    assert!(
        matches!(
            err,
            Err(ChainError::Repeats {
                needed: 3,
                available: 2,
                ..
            })
        ),
        "{err:?}"
    );
}

#[test]
fn pigeonhole_fails_quickly() {
    let known: Vec<Candidate> = (0..9).map(|i| cand(&format!("r{i}"), i, true)).collect();
    let f = Filters {
        distance: 9,
        ..Filters::default()
    };
    let start = std::time::Instant::now();
    let err = select(
        &ChainSpec::random(10).unwrap(),
        &known,
        &f,
        Exit::Required,
        1,
        &mut rng(1),
    );
    assert!(matches!(
        err,
        Err(ChainError::Repeats {
            first: 1,
            last: 10,
            needed: 10,
            available: 9,
            distance: 9
        })
    ));
    let nine = select(
        &ChainSpec::random(9).unwrap(),
        &known,
        &f,
        Exit::Required,
        1,
        &mut rng(1),
    );
    assert_eq!(nine.unwrap()[0].len(), 9);
    assert!(
        start.elapsed() < Duration::from_secs(20),
        "took {:?}",
        start.elapsed()
    );
}
