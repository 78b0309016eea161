#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

//! Property tests: every chain returned keeps every rule, and on small
//! instances a brute-force search agrees on whether any chain exists.

use proptest::prelude::*;
use rand::SeedableRng;
use rand::rngs::StdRng;

use super::*;

/// A generated hop, printed into the chain text.
#[derive(Debug, Clone)]
enum Gen {
    Random,
    Name(usize, bool),
    Twin(bool),
    Missing,
    Address(usize, bool),
}

impl Gen {
    fn text(&self) -> String {
        match self {
            Self::Random => "*".into(),
            Self::Name(i, up) => cased(&format!("r{i}"), *up),
            Self::Twin(up) => cased("twin", *up),
            Self::Missing => "nobody".into(),
            Self::Address(i, slash) => {
                format!("http://r{i}.onion{}", if *slash { "/" } else { "" })
            }
        }
    }
}

fn cased(s: &str, upper: bool) -> String {
    if upper {
        s.to_uppercase()
    } else {
        s.to_owned()
    }
}

/// Mostly random hops; named ones mostly name one of the `known` remailers.
fn hop_gen(known: usize) -> impl Strategy<Value = Gen> {
    let index = 0..known + 1;
    prop_oneof![
        24 => Just(Gen::Random),
        3 => (index.clone(), any::<bool>()).prop_map(|(i, u)| Gen::Name(i, u)),
        1 => any::<bool>().prop_map(Gen::Twin),
        1 => Just(Gen::Missing),
        3 => (index, any::<bool>()).prop_map(|(i, s)| Gen::Address(i, s)),
    ]
}

fn fraction() -> impl Strategy<Value = f64> {
    (0u32..=100).prop_map(|p| f64::from(p) / 100.0)
}

fn minutes() -> impl Strategy<Value = Duration> {
    (0u64..=240).prop_map(|m| Duration::from_secs(m * 60))
}

/// Remailer `i`: named `r{i}`, or `Twin`/`twin` for some (a shared name).
fn candidate(i: usize) -> impl Strategy<Value = Candidate> {
    let rel = prop_oneof![1 => Just(None), 3 => fraction().prop_map(Some)];
    let lat = prop_oneof![1 => Just(None), 3 => minutes().prop_map(Some)];
    (0u8..10, any::<bool>(), rel, lat).prop_map(move |(kind, exit, reliability, latency)| {
        Candidate {
            name: match kind {
                0 => "Twin".into(),
                1 => "twin".into(),
                _ => format!("r{i}"),
            },
            address: format!("http://r{i}.onion"),
            exit,
            reliability,
            latency,
        }
    })
}

/// Up to `max_known` remailers and a chain of 1 to `max_hops` hops.
fn instance(
    max_known: usize,
    max_hops: usize,
) -> impl Strategy<Value = (Vec<Candidate>, Vec<Gen>)> {
    (0..=max_known).prop_flat_map(move |n| {
        let known: Vec<_> = (0..n).map(candidate).collect();
        (known, prop::collection::vec(hop_gen(n), 1..=max_hops))
    })
}

fn filters() -> impl Strategy<Value = Filters> {
    (fraction(), fraction(), minutes(), any::<bool>(), 0usize..5).prop_map(
        |(min_reliability, final_min_reliability, max_latency, require_measured, distance)| {
            Filters {
                min_reliability,
                final_min_reliability,
                max_latency,
                require_measured,
                distance,
            }
        },
    )
}

fn exit_rule() -> impl Strategy<Value = Exit> {
    prop_oneof![Just(Exit::Required), Just(Exit::Any)]
}

/// The candidates a hop names, found independently of the module.
fn named<'a>(hop: &Hop, known: &'a [Candidate]) -> Vec<&'a Candidate> {
    let key = |s: &str| s.trim_end_matches('/').to_lowercase();
    known
        .iter()
        .filter(|c| match hop {
            Hop::Random => false,
            Hop::Name(n) => c.name.to_lowercase() == n.to_lowercase(),
            Hop::Address(a) => key(&c.address) == key(a),
        })
        .collect()
}

fn passes(c: &Candidate, f: &Filters, last: bool, exit: Exit) -> bool {
    let min = if last {
        f.final_min_reliability
    } else {
        f.min_reliability
    };
    let rel = match c.reliability {
        None => !f.require_measured,
        Some(r) => r >= min,
    };
    let exit_ok = !(last && exit == Exit::Required) || c.exit;
    rel && exit_ok && c.latency.is_none_or(|l| l <= f.max_latency)
}

/// The remailers each hop may be; a named hop's are the named ones.
fn options<'a>(
    spec: &ChainSpec,
    known: &'a [Candidate],
    f: &Filters,
    exit: Exit,
) -> Vec<Vec<&'a Candidate>> {
    let n = spec.hops().len();
    let hops = spec.hops().iter().enumerate();
    hops.map(|(i, hop)| match hop {
        Hop::Random => known
            .iter()
            .filter(|c| passes(c, f, i + 1 == n, exit))
            .collect(),
        _ => named(hop, known),
    })
    .collect()
}

fn distance_ok(chain: &[&Candidate], d: usize) -> bool {
    chain.iter().enumerate().all(|(i, a)| {
        chain
            .iter()
            .skip(i + 1)
            .take(d)
            .all(|b| a.address != b.address)
    })
}

/// Brute force: does any chain keep every rule?
fn exists(opts: &[Vec<&Candidate>], d: usize, exit: Exit, prefix: &mut Vec<Candidate>) -> bool {
    let Some(here) = opts.get(prefix.len()) else {
        let refs: Vec<&Candidate> = prefix.iter().collect();
        let last_ok = exit == Exit::Any || refs.last().is_some_and(|c| c.exit);
        return last_ok && distance_ok(&refs, d);
    };
    here.iter().any(|c| {
        prefix.push((*c).clone());
        let found = exists(opts, d, exit, prefix);
        prefix.pop();
        found
    })
}

fn check_chain(
    chain: &[&Candidate],
    spec: &ChainSpec,
    known: &[Candidate],
    f: &Filters,
    exit: Exit,
) {
    assert_eq!(chain.len(), spec.hops().len());
    let opts = options(spec, known, f, exit);
    for ((c, hop), allowed) in chain.iter().zip(spec.hops()).zip(&opts) {
        assert!(
            allowed.iter().any(|a| a.address == c.address),
            "{hop:?} got {c:?}"
        );
        if *hop != Hop::Random {
            assert_eq!(allowed.len(), 1, "{hop:?} must name exactly one remailer");
        }
    }
    if exit == Exit::Required {
        assert!(chain.last().unwrap().exit);
    }
    assert!(distance_ok(chain, f.distance), "{chain:?}");
}

/// Checks one `select` outcome; `brute` also confirms "no chain" answers
/// and that a chain is found whenever one exists.
fn check(
    spec: &ChainSpec,
    known: &[Candidate],
    f: &Filters,
    exit: Exit,
    chunks: usize,
    seed: u64,
    brute: bool,
) {
    let result = select(
        spec,
        known,
        f,
        exit,
        chunks,
        &mut StdRng::seed_from_u64(seed),
    );
    let hop_of = |h: usize| spec.hops().get(h - 1).unwrap().clone();
    let resolvable = spec
        .hops()
        .iter()
        .all(|h| *h == Hop::Random || named(h, known).len() == 1);
    let opts = options(spec, known, f, exit);
    let possible = (brute && resolvable).then(|| exists(&opts, f.distance, exit, &mut Vec::new()));
    match &result {
        Ok(chains) => {
            assert_eq!(chains.len(), chunks);
            for chain in chains {
                check_chain(chain, spec, known, f, exit);
                assert_eq!(
                    chain.last().unwrap().address,
                    chains[0].last().unwrap().address
                );
            }
        }
        Err(ChainError::UnknownName { hop, .. } | ChainError::UnknownAddress { hop, .. }) => {
            assert!(named(&hop_of(*hop), known).is_empty());
        }
        Err(ChainError::NameClash { hop, addresses, .. }) => {
            assert!(addresses.len() >= 2);
            assert_eq!(named(&hop_of(*hop), known).len(), addresses.len());
        }
        Err(ChainError::NotExit { hop, .. }) => {
            assert_eq!(*hop, spec.hops().len());
            assert!(exit == Exit::Required && !named(&hop_of(*hop), known)[0].exit);
        }
        Err(ChainError::NamedTooClose {
            first,
            second,
            distance,
            ..
        }) => {
            assert!(second > first && second - first <= *distance);
            let (a, b) = (
                named(&hop_of(*first), known),
                named(&hop_of(*second), known),
            );
            assert_eq!(a[0].address, b[0].address);
        }
        Err(e @ (ChainError::NoneQualify { .. } | ChainError::Repeats { .. })) => {
            assert!(resolvable, "{e}");
            if let ChainError::NoneQualify { excluded: x, .. } = e {
                let sum = x.not_exit + x.unmeasured + x.below_reliability + x.over_latency;
                assert_eq!(sum + x.within_distance, x.known, "{e}");
            }
            assert_ne!(possible, Some(true), "{e}, but a chain exists");
        }
        Err(e) => panic!("unexpected error {e}"),
    }
    if possible == Some(true) {
        assert!(result.is_ok(), "a chain exists, but select said {result:?}");
    }
}

fn spec_of(hops: &[Gen]) -> ChainSpec {
    let text: Vec<String> = hops.iter().map(Gen::text).collect();
    text.join(" , ").parse().unwrap()
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(512))]

    #[test]
    fn chains_keep_every_rule(
        (known, hops) in instance(30, MAX_HOPS),
        f in filters(),
        exit in exit_rule(),
        chunks in 1usize..=5,
        seed in any::<u64>(),
    ) {
        let spec = spec_of(&hops);
        let small = known.len() <= 7 && hops.len() <= 6;
        check(&spec, &known, &f, exit, chunks, seed, small);
    }

    #[test]
    fn search_is_complete_on_small_instances(
        (known, hops) in instance(7, 6),
        f in filters(),
        exit in exit_rule(),
        chunks in 1usize..=3,
        seed in any::<u64>(),
    ) {
        check(&spec_of(&hops), &known, &f, exit, chunks, seed, true);
    }

    #[test]
    fn dummy_chains_keep_the_distance(
        (known, _) in instance(12, 1),
        len in 0usize..14,
        d in 0usize..5,
        seed in any::<u64>(),
    ) {
        let distinct = known.len();
        match dummy_chain(&known, len, d, &mut StdRng::seed_from_u64(seed)) {
            None => prop_assert!(len == 0 || distinct == 0),
            Some(chain) => {
                let want = if distinct > d { len.min(MAX_HOPS) } else { len.min(distinct) };
                prop_assert_eq!(chain.len(), want);
                prop_assert!(distance_ok(&chain, d));
            }
        }
    }

    #[test]
    fn parse_never_panics_and_round_trips(text in "[ -~\\t\u{7}é]{0,120}") {
        if let Ok(spec) = text.parse::<ChainSpec>() {
            prop_assert!((1..=MAX_HOPS).contains(&spec.hops().len()));
            prop_assert_eq!(spec.to_string().parse::<ChainSpec>().unwrap(), spec);
        }
    }
}
