//! What an operator reads in the logs of real `mimix run` processes: the
//! start and stop lines (free of addresses and sizes), a log file that
//! SIGHUP opens again after a rotation, SIGHUP reloading the exit's
//! blocklist without a restart and naming the settings that wait for one;
//! and, with a Tor network that cannot be reached, bootstrap progress and
//! a periodic plain-words warning in a redirected log, then a clean exit
//! on SIGTERM.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod support;

use std::fs;
use std::path::Path;
use std::process::{Command, Stdio};
use std::time::Duration;

use support::net::{MIMIX, Network, START_TIMEOUT, free_port, wait_until};

fn read(path: &Path) -> String {
    fs::read_to_string(path).unwrap_or_default()
}

fn line_with<'a>(text: &'a str, needle: &str) -> &'a str {
    text.lines()
        .find(|l| l.contains(needle))
        .unwrap_or_else(|| panic!("no line with {needle:?} in:\n{text}"))
}

/// Neither a loopback address, a URL nor a port of the test network.
fn assert_no_address(line: &str, port: u16) {
    for bad in ["127.0.0.1", "http://", ".onion", &port.to_string()] {
        assert!(!line.contains(bad), "{bad:?} in {line:?}");
    }
}

fn kill(signal: &str, pid: u32) {
    let ok = Command::new("kill")
        .args([signal, &pid.to_string()])
        .status()
        .unwrap();
    assert!(ok.success());
}

#[test]
fn log_file_reopened_blocklist_reloaded_start_and_stop_lines() {
    let mut net = Network::start(&[("x", true)], free_port(), false);
    let root = net.root.path().to_owned();
    let log_file = root.join("x-file.log");
    let x = net.node("x");
    x.terminate();
    let config = read(&x.config);
    let with_file = config.replacen(
        "log = \"info\"\n",
        &format!("log = \"info\"\nlog_file = \"{}\"\n", log_file.display()),
        1,
    );
    assert_ne!(config, with_file);
    fs::write(&x.config, &with_file).unwrap();
    x.start();
    let pid = x.pid().unwrap();

    let text = read(&log_file);
    let start = line_with(&text, "mimix node started");
    assert!(
        start.contains(
            "mimix node started: \"x\", an exit node (direct transport: no Tor); \
             pool every 1s keeping 0, sending at most 100%; key valid "
        ),
        "{start}"
    );
    assert!(start.contains(", next key on "), "{start}");
    assert_no_address(start, x.port);
    let mode = fs::metadata(&log_file).unwrap();
    assert_eq!(
        std::os::unix::fs::PermissionsExt::mode(&mode.permissions()) & 0o777,
        0o600
    );
    // Redirected standard error has timestamps too (RFC 3339).
    let stderr = x.log_text();
    let l = line_with(&stderr, "mimix node started");
    assert!(l.as_bytes()[4] == b'-' && l.contains('T'), "{l}");

    // logrotate: move the file away, then SIGHUP. The blocklist, a fixed
    // setting and the log filter change at the same time.
    let rotated = root.join("x-file.log.1");
    fs::rename(&log_file, &rotated).unwrap();
    fs::write(
        x.data_dir.join("blocklist.txt"),
        "one@example.com\n@two.example\n",
    )
    .unwrap();
    let changed = with_file
        .replacen("interval = \"1s\"", "interval = \"2s\"", 1)
        .replacen("log = \"info\"", "log = \"debug\"", 1);
    fs::write(&x.config, &changed).unwrap();
    kill("-HUP", pid);
    let reloaded = wait_until(
        START_TIMEOUT,
        Duration::from_millis(50),
        "the reload",
        || {
            let t = read(&log_file);
            t.contains("changed settings that take effect").then_some(t)
        },
    );
    line_with(&reloaded, "log file opened again");
    let r = line_with(&reloaded, "configuration reloaded");
    assert!(r.contains("blocklist read again (2 entries)"), "{r}");
    let kept = line_with(&reloaded, "changed settings that take effect");
    assert!(kept.contains("WARN"), "{kept}");
    assert!(
        kept.ends_with("at the next restart: pool.interval"),
        "{kept}"
    );
    // The old file ends with the SIGHUP; what follows is in the new one.
    let old = read(&rotated);
    assert!(
        old.trim_end()
            .ends_with("SIGHUP: reading the configuration again"),
        "{old}"
    );
    assert_eq!(x.pid(), Some(pid), "no restart");
    x.assert_running();
    // The new filter is in force: debug lines follow.
    wait_until(
        START_TIMEOUT,
        Duration::from_millis(50),
        "a debug line",
        || read(&log_file).contains(" DEBUG ").then_some(()),
    );

    // A second edit of the blocklist is read at the next SIGHUP, whatever
    // its time stamps.
    fs::write(
        x.data_dir.join("blocklist.txt"),
        "one@example.com\n@two.example\nthree@example.org\n",
    )
    .unwrap();
    kill("-HUP", pid);
    wait_until(
        START_TIMEOUT,
        Duration::from_millis(50),
        "a second reload",
        || {
            read(&log_file)
                .contains("blocklist read again (3 entries)")
                .then_some(())
        },
    );

    x.terminate();
    let text = read(&log_file);
    let stop = line_with(&text, "mimix node stopped after ");
    assert!(
        stop.contains(": 0 packets in, 0 out, 0 mails delivered"),
        "{stop}"
    );
    assert_no_address(stop, x.port);
}

/// A custom Tor network whose only authority and relay listen nowhere.
fn unreachable_tor(data_dir: &Path) -> String {
    let dead = free_port();
    format!(
        r#"config_version = 1

[node]
name = "offline"
data_dir = "{data}"
log = "info"

[transport]
kind = "tor"

[keys]
bits = 2048

[tor]
network = "custom"
bootstrap_warning = "2s"

[[tor.authorities]]
v3ident = "0123456789ABCDEF0123456789ABCDEF01234567"
dirports = ["127.0.0.1:{dead}"]

[[tor.fallbacks]]
rsa_identity = "0123456789ABCDEF0123456789ABCDEF01234567"
ed_identity = "AQIDBAUGBwgJCgsMDQ4PEBESExQVFhcYGRobHB0eHyA"
orports = ["127.0.0.1:{dead}"]
"#,
        data = data_dir.display(),
    )
}

#[test]
fn unreachable_tor_warns_with_a_reason_and_sigterm_exits_cleanly() {
    let dir = tempfile::tempdir().unwrap();
    let config = dir.path().join("offline.toml");
    fs::write(&config, unreachable_tor(&dir.path().join("data"))).unwrap();
    let log = dir.path().join("offline.log");
    let mut child = Command::new(MIMIX)
        .arg("run")
        .arg("--config")
        .arg(&config)
        .env_remove("RUST_LOG")
        .env_remove("JOURNAL_STREAM")
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(fs::File::create(&log).unwrap())
        .spawn()
        .unwrap();
    let text = wait_until(
        Duration::from_secs(60),
        Duration::from_millis(100),
        "two bootstrap warnings",
        || {
            let t = read(&log);
            (t.matches("Tor has not finished bootstrapping for").count() >= 2).then_some(t)
        },
    );
    line_with(&text, "Tor bootstrap: ");
    let warning = line_with(&text, "Tor has not finished bootstrapping for");
    assert!(warning.contains(" WARN "), "{warning}");
    assert!(warning.contains("; still trying"), "{warning}");
    assert!(!text.contains("exiting"), "{text}");
    // SIGHUP while bootstrapping does not end the process.
    kill("-HUP", child.id());
    wait_until(
        START_TIMEOUT,
        Duration::from_millis(50),
        "the early reload",
        || {
            read(&log)
                .contains("the node is still starting: only the log settings were reloaded")
                .then_some(())
        },
    );
    assert!(child.try_wait().unwrap().is_none(), "{}", read(&log));

    kill("-TERM", child.id());
    let status = wait_until(START_TIMEOUT, Duration::from_millis(50), "the exit", || {
        child.try_wait().unwrap()
    });
    let text = read(&log);
    assert!(status.success(), "{status}:\n{text}");
    line_with(&text, "stopped by a signal before the node had started");
    eprintln!("{text}");
}
