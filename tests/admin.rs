//! The admin listener of real `mimix run` processes: `mimix status` and
//! `mimix conf` read live from a node that processed traffic, then from
//! its store once it stopped; a `/metrics` scrape passes `promtool check
//! metrics` (Debian's `prometheus`); the status page renders its charts
//! with real numbers in headless Chromium (Debian's `chromium`). Both
//! tools must be installed: a missing one fails the test.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod support;

use std::collections::{BTreeSet, HashMap};
use std::io::Write as _;
use std::process::{Command, Stdio};
use std::time::Duration;

use mimix_packet::{armour, dearmour};
use support::net::{Network, NodeProc, free_port, http, message, mimix, post_packet, wait_until};
use support::smtp::SmtpSink;

/// Time allowed for traffic to cross the nodes.
const TRAFFIC_TIMEOUT: Duration = Duration::from_secs(60);

/// Time Chromium gets to load and render the page.
const BROWSER_TIMEOUT: Duration = Duration::from_secs(90);

fn status_json(node: &NodeProc) -> serde_json::Value {
    node.status()
}

/// `mimix <cmd> --config <node's config>`: stdout and stderr, which must
/// succeed.
fn run(cmd: &[&str], node: &NodeProc) -> (String, String) {
    let mut args = cmd.to_vec();
    args.extend(["--config", node.config.to_str().unwrap()]);
    let out = mimix(&args);
    let stdout = String::from_utf8(out.stdout).unwrap();
    let stderr = String::from_utf8(out.stderr).unwrap();
    assert!(out.status.success(), "mimix {cmd:?} failed: {stderr}");
    (stdout, stderr)
}

/// Waits until `node`'s live status satisfies `f`.
fn wait_status(node: &NodeProc, what: &str, f: impl Fn(&serde_json::Value) -> bool) {
    wait_until(TRAFFIC_TIMEOUT, Duration::from_millis(200), what, || {
        let s = status_json(node);
        f(&s).then_some(())
    });
}

/// A copy of `packet` with a flipped header bit: refused as `header_digest`.
fn tampered(packet: &str) -> String {
    let mut p = dearmour(packet).unwrap();
    p.as_bytes_mut()[700] ^= 0x20;
    armour(&p)
}

/// A copy of `packet` with a bit flipped in header section 10, which the
/// first hop does not check: the same packet ID in other bytes, a replay
/// (a byte-identical copy would be answered 200 again).
fn same_id(packet: &str) -> String {
    let mut p = dearmour(packet).unwrap();
    p.as_bytes_mut()[9 * 1024 + 100] ^= 0x20;
    armour(&p)
}

fn day(s: &serde_json::Value, field: &str) -> u64 {
    s["last_24h"][field].as_u64().unwrap_or(0)
}

#[test]
fn status_and_conf_live_then_from_the_store() {
    let sink = SmtpSink::start();
    let mut net = Network::start(&[("a", false), ("x", true)], sink.port, false);
    let msg = net.root.path().join("msg.eml");
    std::fs::write(&msg, message("status", "counted\r\n")).unwrap();
    net.send(&["a", "x"], Some(&msg));
    net.send(&["a", "x"], None);
    let out = net.root.path().join("built");
    let built = net.build(&["a", "x"], None, &out);
    let packet = std::fs::read_to_string(&built[0]).unwrap();
    let a_port = net.node("a").port;
    assert_eq!(post_packet(a_port, &tampered(&packet)).unwrap().0, 400);
    assert_eq!(post_packet(a_port, &packet).unwrap().0, 200);
    assert_eq!(
        post_packet(a_port, &packet).unwrap().0,
        200,
        "the same bytes again"
    );
    assert_eq!(
        post_packet(a_port, &same_id(&packet)).unwrap().0,
        409,
        "a replay"
    );
    sink.wait_for(1, TRAFFIC_TIMEOUT);
    wait_status(net.node("a"), "a to forward 3 packets", |s| {
        day(s, "packets_out") == 3 && s["last_24h"]["rejects"]["header_digest"] == 1
    });
    wait_status(net.node("x"), "x to deliver and end the dummies", |s| {
        day(s, "mail_delivered") == 1
            && day(s, "recipients_delivered") == 1
            && day(s, "dummies_ended") == 2
    });

    let a = net.node("a");
    let s = status_json(a);
    assert_eq!(s["source"], "live", "{s}");
    assert_eq!(s["running"], true);
    assert_eq!(s["state"], "running");
    assert_eq!(s["address"], a.url());
    assert_eq!(day(&s, "packets_in"), 3, "{s}");
    assert_eq!(
        s["last_24h"]["rejects"],
        serde_json::json!({"header_digest": 1, "replay": 1})
    );
    assert!(s["uptime_secs"].as_u64().is_some(), "{s}");
    assert_eq!(s["keys"][0]["advertised"], true, "{s}");
    let (table, _) = run(&["status"], a);
    eprintln!("--- mimix status of a (running) ---\n{table}");
    for line in [
        "node \"a\" (middle), running",
        "live from the running node (unix:",
        "  uptime            ",
        "  packets in        3\n",
        "  packets out       3\n",
        "  refused           2: header_digest 1, replay 1\n",
        "  queues            outbound 0, mail 0, partial messages 0\n",
    ] {
        assert!(table.contains(line), "{line:?} in:\n{table}");
    }

    let x = net.node("x");
    let (table, _) = run(&["status"], x);
    eprintln!("--- mimix status of x (running exit) ---\n{table}");
    for line in [
        "node \"x\" (exit), running",
        "  packets in        3\n",
        "  dummies           0 made, 2 ended here\n",
        "  exit              1 messages delivered (1 recipients), 0 dropped, 0 refused\n",
    ] {
        assert!(table.contains(line), "{line:?} in:\n{table}");
    }

    // `mimix conf`: what the node serves, live and then from the store.
    // x fetched a's conf when it started (a was serving); the conf is
    // re-rendered every 5 s: wait until it lists a.
    let a_address = format!("http://127.0.0.1:{a_port}\n");
    let deadline = std::time::Instant::now() + Duration::from_secs(30);
    let served = loop {
        let conf = support::net::get_conf(x.port).unwrap();
        if conf.contains(&a_address) {
            break conf;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "x never listed a:\n{conf}"
        );
        std::thread::sleep(Duration::from_millis(200));
    };
    let (conf, how) = run(&["conf"], x);
    assert_eq!(conf, served);
    assert!(how.contains("from the running node"), "{how}");
    x.terminate();
    let (conf, how) = run(&["conf"], x);
    assert_eq!(conf, served);
    assert!(how.contains("rendered from its store and keys"), "{how}");

    let (table, _) = run(&["status"], x);
    eprintln!("--- mimix status of x (stopped) ---\n{table}");
    assert!(table.contains("node \"x\" (exit), not running"), "{table}");
    assert!(table.contains("read from its store"), "{table}");
    assert!(
        table.contains("  packets in        3\n"),
        "from the history:\n{table}"
    );
    assert!(!table.contains("uptime"), "{table}");
    assert!(
        !x.data_dir.join("admin.sock").exists(),
        "the socket is removed at stop"
    );
}

/// `promtool check metrics` of `scrape`: its complaints, if any.
fn promtool(scrape: &str) -> String {
    let mut child = Command::new("promtool")
        .args(["check", "metrics"])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("promtool is needed (Debian package prometheus)");
    child
        .stdin
        .take()
        .unwrap()
        .write_all(scrape.as_bytes())
        .unwrap();
    let out = child.wait_with_output().unwrap();
    let said = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(
        out.status.success() || !said.is_empty(),
        "promtool failed silently"
    );
    said
}

/// The page's DOM after its script ran, from headless Chromium.
fn chromium_dom(url: &str) -> String {
    let profile = tempfile::tempdir().unwrap();
    let mut child = Command::new("chromium")
        .args([
            "--headless",
            "--no-sandbox",
            "--disable-gpu",
            "--disable-quic",
            "--no-first-run",
            "--disable-background-networking",
            "--disable-component-update",
            "--disable-sync",
        ])
        .arg(format!("--user-data-dir={}", profile.path().display()))
        .args(["--dump-dom", url])
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .expect("chromium is needed (Debian package chromium)");
    let mut stdout = child.stdout.take().unwrap();
    let reader = std::thread::spawn(move || {
        let mut s = String::new();
        std::io::Read::read_to_string(&mut stdout, &mut s).unwrap();
        s
    });
    let start = std::time::Instant::now();
    let status = loop {
        if let Some(status) = child.try_wait().unwrap() {
            break status;
        }
        if start.elapsed() > BROWSER_TIMEOUT {
            let _ = child.kill();
            let _ = child.wait();
            panic!("chromium did not finish within {BROWSER_TIMEOUT:?}");
        }
        std::thread::sleep(Duration::from_millis(100));
    };
    assert!(status.success(), "chromium exited with {status}");
    reader.join().unwrap()
}

/// The names in a scrape's `# TYPE` lines.
fn families(scrape: &str) -> BTreeSet<String> {
    scrape
        .lines()
        .filter_map(|l| l.strip_prefix("# TYPE "))
        .map(|l| l.split(' ').next().unwrap().to_owned())
        .collect()
}

#[test]
fn metrics_pass_promtool_and_the_page_renders_in_chromium() {
    let ports: HashMap<String, u16> = ["a", "b"]
        .iter()
        .map(|n| ((*n).to_owned(), free_port()))
        .collect();
    let mut net = Network::start_with(&[("a", false), ("b", false)], free_port(), false, |name| {
        format!(
            "\n[admin]\nlisten = \"127.0.0.1:{}\"\nmetrics = true\n",
            ports[name]
        )
    });
    net.send(&["a", "b"], None);
    let a_port = net.node("a").port;
    let built = net.build(&["a", "b"], None, &net.root.path().join("built"));
    let packet = std::fs::read_to_string(&built[0]).unwrap();
    assert_eq!(post_packet(a_port, &tampered(&packet)).unwrap().0, 400);
    wait_status(net.node("a"), "a to forward the dummy", |s| {
        day(s, "packets_out") == 1 && s["last_24h"]["rejects"]["header_digest"] == 1
    });
    let admin = ports["a"];
    let get = |port: u16, path: &str, host: &str| {
        let req = format!("GET {path} HTTP/1.1\r\nHost: {host}\r\nConnection: close\r\n\r\n");
        http(port, req.as_bytes()).unwrap()
    };

    let (code, scrape) = get(admin, "/metrics", "127.0.0.1");
    assert_eq!(code, 200);
    let lint = promtool(&scrape);
    eprintln!(
        "--- promtool check metrics ---\n{lint}(end; {} lines scraped)",
        scrape.lines().count()
    );
    assert_eq!(lint, "", "promtool's complaints");
    for line in [
        "mimix_packets_accepted_total 1\n",
        "mimix_packets_rejected_total{reason=\"header_digest\"} 1\n",
        "mimix_packets_rejected_total{reason=\"replay\"} 0\n",
        "mimix_outbound_total{outcome=\"delivered\"} 1\n",
        "mimix_running 1\n",
        "mimix_tor_bootstrap_percent 0\n",
    ] {
        assert!(scrape.contains(line), "{line:?} in:\n{scrape}");
    }
    // Every series is there from the start: b saw no traffic of its own.
    let (_, idle) = get(ports["b"], "/metrics", "localhost");
    assert_eq!(families(&idle), families(&scrape));
    assert!(families(&scrape).len() >= 25, "{scrape}");

    // Only this machine's names are served; the transport serves none of it.
    assert_eq!(get(admin, "/status.json", "evil.example").0, 403);
    assert_eq!(get(a_port, "/status.json", "127.0.0.1").0, 404);
    assert_eq!(get(a_port, "/metrics", "127.0.0.1").0, 404);

    let dom = chromium_dom(&format!("http://127.0.0.1:{admin}/"));
    // What the script drew, not the data embedded for it.
    let drawn = dom.split("<script").next().unwrap().replace("><", ">\n<");
    eprintln!("--- the page's DOM (before its scripts) ---\n{drawn}");
    for part in [
        "<span id=\"state\" class=\"badge running\">running</span>",
        "<th>packets in</th>\n<td class=\"num\">1</td>",
        "<th>packets out</th>\n<td class=\"num\">1</td>",
        "<th>refused: header_digest</th>\n<td class=\"num\">1</td>",
        "<th>address</th>\n<td>http://127.0.0.1:",
        "<svg id=\"chart-traffic\"",
        "fill=\"#3a7bd5\" data-value=\"1\"",
        "<svg id=\"chart-rejects\"",
        "fill=\"#d62828\" data-value=\"1\"",
        "<path d=\"M",
        "not available: this node runs no pinger",
    ] {
        assert!(drawn.contains(part), "{part:?} in:\n{drawn}");
    }
}
