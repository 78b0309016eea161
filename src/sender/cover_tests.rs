#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::sync::Mutex;
use std::time::{SystemTime, UNIX_EPOCH};

use mimix_packet::RemailerConf;
use rand::SeedableRng;

use super::*;
use crate::sender::outbox::meta;

/// The day the test vectors were made.
const DAY: u64 = 20_786;
const NAMES: [&str; 4] = ["alpha", "beta", "gamma", "delta"];
/// Ticks per run: about 30 hours of sending at the default mean.
const TICKS: usize = 60;

fn directory() -> Directory {
    let confs: Vec<RemailerConf> = NAMES
        .iter()
        .map(|n| {
            let text = std::fs::read_to_string(format!(
                "{}/tests/vectors/remailers/{n}/remailer-conf.txt",
                env!("CARGO_MANIFEST_DIR")
            ))
            .unwrap();
            RemailerConf::parse_valid(&text, DAY).unwrap()
        })
        .collect();
    Box::new(move |_| Ok(Remailers::from_confs(&confs)))
}

/// Wall-clock time that moves with tokio's (paused) clock.
struct PausedClock {
    start: Instant,
    base: SystemTime,
}

impl Clock for PausedClock {
    fn now(&self) -> SystemTime {
        self.base + self.start.elapsed()
    }
}

fn clock() -> Arc<dyn Clock> {
    Arc::new(PausedClock {
        start: Instant::now(),
        base: UNIX_EPOCH + Duration::from_secs(DAY * 86_400 + 3600),
    })
}

/// Records when packets were posted; fails the posts whose number is in
/// `fail`.
#[derive(Clone)]
struct Recorder {
    posts: Arc<Mutex<Vec<Instant>>>,
    fail: Arc<dyn Fn(usize) -> bool + Send + Sync>,
}

impl Default for Recorder {
    fn default() -> Self {
        Self {
            posts: Arc::default(),
            fail: Arc::new(|_| false),
        }
    }
}

impl Post for Recorder {
    async fn post(&self, _: &Planned) -> Result<(), String> {
        let mut posts = self.posts.lock().unwrap();
        posts.push(Instant::now());
        if (self.fail)(posts.len()) {
            return Err("refused".into());
        }
        Ok(())
    }
}

fn settings() -> Settings {
    Settings {
        dummy_chain: "*,*".into(),
        retry_initial: minutes(1),
        retry_max: minutes(10),
        ..Settings::default()
    }
}

fn message(n: usize) -> Vec<u8> {
    format!("To: alice@example.org\nSubject: {n}\n\nhello {n}\n").into_bytes()
}

/// Tick times, what each sent, the outbox and the directory holding it.
type Run = (Vec<f64>, Vec<Sent>, Outbox, tempfile::TempDir);

/// When messages are queued, relative to the start.
enum Queueing {
    None,
    /// All at once before the first tick.
    Burst(usize),
    /// One by one, at random times (from their own seed).
    Spread(usize, u64),
}

/// One run of [`TICKS`] ticks with the schedule seed 7: the tick times
/// (seconds from the start), what each sent, and the posts.
async fn run(queueing: Queueing, post: Recorder, s: Settings) -> Run {
    let dir = tempfile::tempdir().unwrap();
    let outbox = Outbox::open(&dir.path().join("outbox"), s.caps()).unwrap();
    let clock = clock();
    let (rng7, rng8) = (StdRng::seed_from_u64(7), StdRng::seed_from_u64(8));
    let mut cover = Cover::new(
        s,
        outbox.clone(),
        clock.clone(),
        directory(),
        post,
        rng7,
        rng8,
    );
    match queueing {
        Queueing::None => {}
        Queueing::Burst(n) => {
            for i in 0..n {
                let at = secs(clock.now());
                outbox.put(&message(i), &meta(at), i as u64).unwrap();
            }
        }
        Queueing::Spread(n, seed) => {
            let (outbox, clock) = (outbox.clone(), clock.clone());
            tokio::spawn(async move {
                let rng = &mut StdRng::seed_from_u64(seed);
                for i in 0..n {
                    let wait = rng.random_range(60..7200);
                    tokio::time::sleep(Duration::from_secs(wait)).await;
                    let at = secs(clock.now());
                    outbox.put(&message(i), &meta(at), i as u64).unwrap();
                }
            });
        }
    }
    let start = Instant::now();
    let mut times = Vec::new();
    let mut sent = Vec::new();
    for _ in 0..TICKS {
        let (at, what) = cover.step().await;
        times.push((at - start).as_secs_f64());
        sent.push(what);
    }
    (times, sent, outbox, dir)
}

fn count(sent: &[Sent], what: Sent) -> usize {
    sent.iter().filter(|s| **s == what).count()
}

/// The two-sample Kolmogorov–Smirnov statistic of `a` and `b`.
fn ks_two_sample(a: &[f64], b: &[f64]) -> f64 {
    let (mut a, mut b) = (a.to_vec(), b.to_vec());
    a.sort_by(f64::total_cmp);
    b.sort_by(f64::total_cmp);
    let (mut i, mut j, mut d) = (0, 0, 0.0f64);
    while i < a.len() && j < b.len() {
        let x = a[i].min(b[j]);
        while i < a.len() && a[i] <= x {
            i += 1;
        }
        while j < b.len() && b[j] <= x {
            j += 1;
        }
        d = d.max((i as f64 / a.len() as f64 - j as f64 / b.len() as f64).abs());
    }
    d
}

fn gaps(times: &[f64]) -> Vec<f64> {
    std::iter::once(times[0])
        .chain(times.windows(2).map(|w| w[1] - w[0]))
        .collect()
}

#[tokio::test(start_paused = true)]
async fn send_times_do_not_depend_on_when_messages_were_queued() {
    let (empty, sent, ..) = run(Queueing::None, Recorder::default(), settings()).await;
    assert_eq!(count(&sent, Sent::Dummy), TICKS, "only dummies: {sent:?}");

    let post = Recorder::default();
    let (spread, sent, outbox, _dir) = run(Queueing::Spread(10, 3), post.clone(), settings()).await;
    let messages = sent
        .iter()
        .filter(|s| matches!(s, Sent::Message { .. }))
        .count();
    assert_eq!(messages, 10, "every queued message went: {sent:?}");
    assert_eq!(count(&sent, Sent::Dummy), TICKS - 10);
    assert!(outbox.list().unwrap().is_empty());
    assert_eq!(post.posts.lock().unwrap().len(), TICKS, "one packet a tick");

    let (burst, sent, ..) = run(Queueing::Burst(20), Recorder::default(), settings()).await;
    assert_eq!(count(&sent, Sent::Message { packets: 1 }), 20);

    // Every third post refused: messages wait for retries, dummies fail.
    let flaky = Recorder {
        fail: Arc::new(|n| n % 3 == 0),
        ..Recorder::default()
    };
    let (failing, sent, ..) = run(Queueing::Spread(10, 4), flaky, settings()).await;
    assert!(count(&sent, Sent::MessageFailed) > 0, "{sent:?}");

    assert_eq!(empty, spread, "the same schedule with messages queued");
    assert_eq!(empty, burst, "the same schedule with a burst queued");
    assert_eq!(
        empty, failing,
        "the same schedule with failures and retries"
    );
    let d = ks_two_sample(&gaps(&empty), &gaps(&spread));
    let mean = empty.last().unwrap() / TICKS as f64;
    eprintln!(
        "cover schedule, seed 7, {TICKS} ticks: identical with no messages, 10 spread, \
         20 at once and with failures; two-sample KS D of the gaps = {d}; \
         mean gap {mean:.0} s (configured 1800 s)"
    );
    assert_eq!(d, 0.0);
    assert!((900.0..3600.0).contains(&mean), "mean gap {mean}");
}

#[test]
fn gaps_are_exponential_with_the_configured_mean() {
    const N: usize = 20_000;
    let mean = minutes(30).as_secs_f64();
    let mut schedule = Schedule::new(minutes(30), StdRng::seed_from_u64(11));
    let mut g: Vec<f64> = (0..N).map(|_| schedule.next_gap().as_secs_f64()).collect();
    g.sort_by(f64::total_cmp);
    let d = g
        .iter()
        .enumerate()
        .map(|(i, x)| {
            let f = 1.0 - (-x / mean).exp();
            (f - i as f64 / N as f64).max((i + 1) as f64 / N as f64 - f)
        })
        .fold(0.0f64, f64::max);
    let sample_mean = g.iter().sum::<f64>() / N as f64;
    // The 1 % critical value of the one-sample KS test: 1.63 / sqrt(N).
    let critical = 1.63 / (N as f64).sqrt();
    eprintln!(
        "cover gaps, seed 11, n = {N}: KS D against Exp(mean 1800 s) = {d:.5} \
         (1 % critical {critical:.5}); sample mean {sample_mean:.1} s"
    );
    assert!(d < critical, "D = {d}");
    assert!(
        (sample_mean / mean - 1.0).abs() < 0.03,
        "mean {sample_mean}"
    );
}

#[tokio::test(start_paused = true)]
async fn a_message_failing_for_its_whole_retry_period_is_given_up() {
    let never = Recorder {
        fail: Arc::new(|_| true),
        ..Recorder::default()
    };
    let s = Settings {
        give_up_after: hours(3),
        ..settings()
    };
    let (_, sent, outbox, _dir) = run(Queueing::Burst(1), never, s).await;
    let fails = count(&sent, Sent::MessageFailed);
    assert!(fails >= 2, "retried before giving up: {sent:?}");
    assert_eq!(count(&sent, Sent::GaveUp), 1, "{sent:?}");
    assert!(outbox.list().unwrap().is_empty());
    let failed = std::fs::read_dir(outbox.dir().join(super::super::outbox::FAILED)).unwrap();
    assert_eq!(failed.count(), 1, "kept for the sender to read");
}

#[test]
fn settings_defaults_validate_and_bad_values_are_named() {
    Settings::default().validate().unwrap();
    let bad = Settings {
        mean_interval: Duration::from_millis(10),
        ..Settings::default()
    };
    assert_eq!(bad.validate().unwrap_err().field, "mean_interval");
    let bad = Settings {
        dummy_chain: "*,a\u{7}".into(),
        ..Settings::default()
    };
    assert_eq!(bad.validate().unwrap_err().field, "dummy_chain");
    let bad = Settings {
        retry_max: Duration::from_secs(1),
        ..Settings::default()
    };
    assert_eq!(bad.validate().unwrap_err().field, "retry_max");
    let text = "mean_interval = \"5m\"\nmax_bytes = \"8MiB\"\n";
    let s: Settings = toml::from_str(text).unwrap();
    assert_eq!((s.mean_interval, s.max_bytes), (minutes(5), 8 << 20));
    assert!(toml::from_str::<Settings>("mean = \"5m\"").is_err());
}
