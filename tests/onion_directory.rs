//! The directory over a private Tor network on 127.0.0.1: `mimix run`
//! processes that each know one seed learn each other, refuse a conf that
//! names another onion than the one it came from, measure each other with
//! pings, publish it at `/stats.txt`, and carry a message sent with
//! `mimix send --chain '*,*,*'` to a real SMTP server (aiosmtpd); a
//! stopped remailer is shown dead.
//!
//! Needs `tor` and `tor-gencert` (Debian package `tor`): without them it
//! fails, saying so. Timings are printed on stderr (`--nocapture`).

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod support;

use std::path::Path;
use std::sync::Arc;
use std::time::{Duration, Instant};

use mimix::config::Config;
use mimix::directory::stats::{StatsDocument, Status, parse_text};
use mimix::transport::{ClientLimits, Dialer, STATS_PATH, TorDialer, TransportKind, fetch_page};
use mimix_tor::testnet::{TestNetConfig, TestNetwork, find_tor};
use mimix_tor::{TorConfig, TorTransport};
use support::net::{EXIT_FROM, NodeProc, message, mimix, wait_until};
use support::smtp::SmtpSink;

/// The remailers; the last one is the exit.
const NAMES: [&str; 4] = ["d1", "d2", "d3", "d4"];
/// A dead remailer: one whose conf could not be fetched and whose pings
/// did not return for this long.
const DEAD_AFTER: Duration = Duration::from_secs(40);
const CONNECT_TIMEOUT: Duration = Duration::from_secs(10);

/// A node's config: fast pools, short directory and ping schedules.
fn config(
    dir: &Path,
    name: &str,
    tor: &TorConfig,
    smtp_port: u16,
    seeds: &[String],
    address: Option<&str>,
) -> Config {
    let mut c = Config::default_for(&dir.join(name));
    c.node.name = name.into();
    c.node.smtp_exit = name == NAMES[3];
    c.node.address = address.map(str::to_owned);
    c.transport.kind = TransportKind::Tor;
    c.transport.connect_timeout = CONNECT_TIMEOUT;
    c.transport.request_timeout = Duration::from_secs(30);
    c.tor = tor
        .clone()
        .with_dirs(c.tor.state_dir.clone(), c.tor.cache_dir.clone());
    c.keys.bits = 2048;
    c.pool.interval = Duration::from_secs(1);
    c.pool.min = 0;
    c.pool.rate = 1.0;
    c.dummies.enabled = false;
    c.outbound.retry_initial = Duration::from_secs(1);
    c.outbound.retry_max = Duration::from_secs(4);
    c.directory.seeds = seeds.to_vec();
    c.directory.refresh = Duration::from_secs(15);
    c.directory.dead_after = DEAD_AFTER;
    c.directory.forget_after = Duration::from_secs(600);
    c.pinger.interval = Duration::from_secs(4);
    c.pinger.timeout = Duration::from_secs(30);
    c.exit.policy.from = EXIT_FROM.into();
    c.exit.smtp.host = "127.0.0.1".into();
    c.exit.smtp.port = smtp_port;
    c.exit.retry.initial = Duration::from_secs(1);
    c.validate().unwrap();
    c
}

/// Starts a node process with `c` and waits for its onion service.
fn launch(dir: &Path, c: &Config) -> (NodeProc, String) {
    let name = &c.node.name;
    let path = dir.join(format!("{name}.toml"));
    std::fs::write(&path, c.to_toml().unwrap()).unwrap();
    let mut node = NodeProc::new(
        name,
        0,
        path,
        c.data_dir().to_owned(),
        dir.join(format!("{name}.log")),
    );
    let address_file = c.data_dir().join("address");
    let _ = std::fs::remove_file(&address_file);
    node.spawn();
    let address = wait_until(
        Duration::from_secs(90),
        Duration::from_millis(50),
        "an onion address",
        || {
            node.assert_running();
            std::fs::read_to_string(&address_file)
                .ok()
                .filter(|a| a.ends_with('\n'))
        },
    );
    (node, address.trim().to_owned())
}

/// `/stats.txt` of the node at `address`, parsed.
fn stats(
    rt: &tokio::runtime::Runtime,
    dialer: &dyn Dialer,
    address: &str,
) -> Option<StatsDocument> {
    let limits = ClientLimits::default();
    let text = rt
        .block_on(fetch_page(dialer, address, STATS_PATH, 1 << 20, &limits))
        .ok()?;
    parse_text(&text).ok()
}

/// The addresses the node at `address` lists in its statistics.
fn listed(doc: &StatsDocument) -> Vec<String> {
    doc.remailers.iter().map(|r| r.address.clone()).collect()
}

#[test]
fn remailers_learn_each_other_measure_each_other_and_carry_mail() {
    let (tor, tor_gencert) =
        find_tor().expect("tor and tor-gencert are needed (Debian package `tor`)");
    let wall = Instant::now();
    let sink = SmtpSink::start();
    let root = tempfile::tempdir().unwrap();
    let dir = root.path();
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();
    let net_config = TestNetConfig {
        tor,
        tor_gencert,
        relays: 7,
        ..TestNetConfig::default()
    };
    let net = rt.block_on(TestNetwork::start(&net_config)).unwrap();
    let tor_net = net.network().clone();
    eprintln!(
        "onion_directory: Tor test network ready in {:.1?}",
        wall.elapsed()
    );

    // A liar: first run to learn its real onion, then it claims another.
    let liar_cfg = config(dir, "liar", &tor_net, sink.port, &[], None);
    let (mut liar, liar_real) = launch(dir, &liar_cfg);
    liar.terminate();
    let fake = "http://aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa.onion";
    let liar_cfg = config(dir, "liar", &tor_net, sink.port, &[], Some(fake));
    let (liar, _) = launch(dir, &liar_cfg);

    // d1 first; every other node knows only d1 (and d2 also the liar's
    // real onion, to fetch its lying conf).
    let (d1, a1) = launch(dir, &config(dir, NAMES[0], &tor_net, sink.port, &[], None));
    let mut nodes = vec![d1];
    let mut addresses = vec![a1.clone()];
    for name in &NAMES[1..] {
        let mut seeds = vec![a1.clone()];
        if *name == NAMES[1] {
            seeds.push(liar_real.clone());
        }
        let (n, a) = launch(dir, &config(dir, name, &tor_net, sink.port, &seeds, None));
        nodes.push(n);
        addresses.push(a);
    }
    let started = Instant::now();
    eprintln!(
        "onion_directory: {} nodes launched after {:.1?}",
        NAMES.len(),
        wall.elapsed()
    );

    let client_tor = tor_net
        .clone()
        .with_dirs(dir.join("client/state"), dir.join("client/cache"));
    let client = rt.block_on(TorTransport::start(&client_tor)).unwrap();
    let dialer = TorDialer::new(Arc::new(client.with_dial_timeout(CONNECT_TIMEOUT)));

    // Everyone learns everyone, from one seed, within a bounded time.
    wait_until(
        Duration::from_secs(240),
        Duration::from_secs(2),
        "every node to know the others",
        || {
            addresses
                .iter()
                .all(|a| {
                    let Some(doc) = stats(&rt, &dialer, a) else {
                        return false;
                    };
                    let l = listed(&doc);
                    addresses.iter().filter(|b| *b != a).all(|b| l.contains(b))
                })
                .then_some(())
        },
    );
    eprintln!(
        "onion_directory: {} nodes knowing one seed learnt each other in {:.1?}",
        NAMES.len(),
        started.elapsed()
    );
    // The liar's conf was refused: nobody lists it, by either onion.
    for a in &addresses {
        let l = listed(&stats(&rt, &dialer, a).unwrap());
        assert!(
            !l.contains(&liar_real) && !l.iter().any(|x| x == fake),
            "{a} lists the liar"
        );
    }

    // A sender fills its state from one seed and sends through `*,*,*`.
    let client_cfg = dir.join("client.toml");
    std::fs::write(
        &client_cfg,
        format!(
            "config_version = 1\n\n{}",
            Config::tor_table(&tor_net).unwrap()
        ),
    )
    .unwrap();
    let state = dir.join("sender");
    let cfg = client_cfg.display().to_string();
    let st = state.display().to_string();
    let out = mimix(&[
        "remailers",
        "update",
        "--seed",
        &a1,
        "--config",
        &cfg,
        "--state",
        &st,
    ]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    eprintln!(
        "onion_directory: {}",
        String::from_utf8_lossy(&out.stdout).trim()
    );
    let table = mimix(&["remailers", "--state", &st]);
    assert!(table.status.success());
    eprintln!(
        "onion_directory: mimix remailers:\n{}",
        String::from_utf8_lossy(&table.stdout)
    );
    let body = "Through three random remailers.\r\n.a dot line\r\nthe end\r\n";
    let msg = dir.join("msg.eml");
    std::fs::write(&msg, message("star chain", body)).unwrap();
    let sent_at = Instant::now();
    let out = mimix(&[
        "send",
        "--config",
        &cfg,
        "--state",
        &st,
        "--chain",
        "*,*,*",
        "--verbose",
        &msg.display().to_string(),
    ]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    eprintln!(
        "onion_directory: mimix send:\n{}",
        String::from_utf8_lossy(&out.stdout).trim()
    );
    let got = sink.wait_for(1, Duration::from_secs(180));
    assert_eq!(
        String::from_utf8_lossy(got[0].body()),
        body,
        "the body arrives byte for byte"
    );
    eprintln!(
        "onion_directory: delivered {:.1?} after sending",
        sent_at.elapsed()
    );

    // Pings came back: d1 measures the others as reliable.
    let measured = wait_until(
        Duration::from_secs(120),
        Duration::from_secs(2),
        "pings to return",
        || {
            let doc = stats(&rt, &dialer, &a1)?;
            let others: Vec<_> = doc
                .remailers
                .iter()
                .filter(|r| r.address != a1)
                .cloned()
                .collect();
            others
                .iter()
                .all(|r| r.reliability_permille.is_some_and(|p| p > 0))
                .then_some(doc)
        },
    );
    eprintln!(
        "onion_directory: d1's /stats.txt:\n{}",
        mimix::directory::stats::render_text(&measured)
    );

    // d3 stops: d1 shows it dead once nothing came back for DEAD_AFTER.
    let d3 = addresses[2].clone();
    nodes[2].terminate();
    let stopped = Instant::now();
    let dead = wait_until(
        DEAD_AFTER * 4,
        Duration::from_secs(2),
        "d3 to be shown dead",
        || {
            let doc = stats(&rt, &dialer, &a1)?;
            let row = doc.remailers.iter().find(|r| r.address == d3)?.clone();
            (row.status == Status::Dead).then_some(row)
        },
    );
    eprintln!(
        "onion_directory: stopped d3 shown dead after {:.1?} (reliability {:?} permille)",
        stopped.elapsed(),
        dead.reliability_permille
    );

    // The refusal is counted where the liar's conf was fetched.
    nodes[1].terminate();
    let d2 = nodes[1].status();
    assert!(
        support::net::counter(&d2, "directory_refused_address_mismatch") >= 1,
        "{d2}"
    );
    drop(liar);
    drop(nodes);
    drop(net);
    eprintln!("onion_directory: wall time {:.1?}", wall.elapsed());
}
