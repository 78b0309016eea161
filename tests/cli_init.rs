//! `mimix init` and the paths and modes of what the commands write: a
//! name of its own is required, a relative `--data-dir` is resolved once
//! (no nested folders), every file and folder any command creates is for
//! the node's user alone whatever the shell's umask, and a node still
//! carrying the placeholder name refuses to start.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod support;

use std::os::unix::fs::PermissionsExt as _;
use std::path::Path;
use std::process::{Command, Output};

use support::net::Network;

const MIMIX: &str = env!("CARGO_BIN_EXE_mimix");

/// `mimix ARGS` in `cwd` under umask 022, as a shell would run it.
fn mimix_in(cwd: &Path, args: &[&str]) -> Output {
    let mut line = String::from("umask 022; exec \"$0\"");
    for (i, _) in args.iter().enumerate() {
        line.push_str(&format!(" \"${}\"", i + 1));
    }
    Command::new("sh")
        .arg("-c")
        .arg(line)
        .arg(MIMIX)
        .args(args)
        .current_dir(cwd)
        .env_remove("RUST_LOG")
        .output()
        .unwrap()
}

fn text(o: &Output) -> String {
    format!(
        "status {}\nstdout:\n{}\nstderr:\n{}",
        o.status,
        String::from_utf8_lossy(&o.stdout),
        String::from_utf8_lossy(&o.stderr)
    )
}

/// Every path under `dir` (itself included) with group or other bits.
fn loose(dir: &Path) -> Vec<String> {
    let mut out = Vec::new();
    let mut todo = vec![dir.to_owned()];
    while let Some(p) = todo.pop() {
        let meta = std::fs::symlink_metadata(&p).unwrap();
        let mode = meta.permissions().mode() & 0o7777;
        if mode & 0o077 != 0 {
            out.push(format!("{:o} {}", mode, p.display()));
        }
        if meta.is_dir() {
            for e in std::fs::read_dir(&p).unwrap() {
                todo.push(e.unwrap().path());
            }
        }
    }
    out
}

#[test]
fn init_needs_a_real_name_and_resolves_a_relative_data_dir_once() {
    let tmp = tempfile::tempdir().unwrap();
    let cwd = tmp.path();

    let o = mimix_in(cwd, &["init", "--data-dir", "keys"]);
    assert!(!o.status.success(), "{}", text(&o));
    assert!(text(&o).contains("--name <NAME>"), "{}", text(&o));
    let o = mimix_in(cwd, &["init", "--name", "Mimix", "--data-dir", "keys"]);
    assert!(!o.status.success(), "{}", text(&o));
    assert!(text(&o).contains("placeholder"), "{}", text(&o));
    let o = mimix_in(cwd, &["init", "--name", "no spaces", "--data-dir", "keys"]);
    assert!(!o.status.success(), "{}", text(&o));
    assert!(!cwd.join("keys").exists(), "a refused init creates nothing");

    let o = mimix_in(
        cwd,
        &["init", "--name", "alpha", "--exit", "--data-dir", "keys"],
    );
    assert!(o.status.success(), "{}", text(&o));
    let data = cwd.join("keys");
    let written = std::fs::read_to_string(data.join("mimix.toml")).unwrap();
    let config = mimix::config::Config::load(&data.join("mimix.toml")).unwrap();
    assert_eq!(config.data_dir(), data, "absolute, not keys/keys");
    assert_eq!(config.node.name, "alpha");
    assert!(config.node.smtp_exit);
    assert!(
        written.contains("# The remailer's name, published as \"Name:\""),
        "comments kept:\n{written}"
    );
    let keys: Vec<_> = std::fs::read_dir(data.join("keys"))
        .unwrap()
        .map(|e| e.unwrap().file_name().into_string().unwrap())
        .collect();
    assert_eq!(keys.len(), 1, "{keys:?}");
    assert!(keys[0].ends_with(".pem"), "{keys:?}");
    assert!(!data.join("keys").join("keys").exists());

    // The other commands find it by --data-dir, relative too, and write
    // nothing loose.
    let o = mimix_in(cwd, &["status", "--data-dir", "keys"]);
    assert!(o.status.success(), "{}", text(&o));
    assert!(
        text(&o).contains("node \"alpha\" (exit), not running"),
        "{}",
        text(&o)
    );
    let o = mimix_in(cwd, &["init", "--name", "beta", "--data-dir", "keys"]);
    assert!(!o.status.success(), "init never overwrites:\n{}", text(&o));
    assert_eq!(loose(&data), Vec::<String>::new());
}

#[test]
fn a_node_with_the_placeholder_name_refuses_to_start() {
    let tmp = tempfile::tempdir().unwrap();
    let config = tmp.path().join("mimix.toml");
    let data = tmp.path().join("data");
    std::fs::write(
        &config,
        format!(
            "config_version = 1\n[node]\ndata_dir = {:?}\n[transport]\nkind = \"direct\"\n\
             listen = \"127.0.0.1:{}\"\n",
            data.display().to_string(),
            support::net::free_port()
        ),
    )
    .unwrap();
    let o = mimix_in(tmp.path(), &["run", "--config", config.to_str().unwrap()]);
    assert!(!o.status.success(), "{}", text(&o));
    assert!(
        text(&o).contains("name: is still the placeholder \"mimix\""),
        "{}",
        text(&o)
    );
    assert!(!data.exists(), "nothing made before the check");
}

#[test]
fn a_running_node_writes_nothing_loose() {
    // The harness starts nodes from this test process (umask 022 unless
    // the runner's is stricter).
    let mut net = Network::start(&[("a", false)], support::net::free_port(), false);
    let a = net.node("a");
    a.terminate();
    let data = a.data_dir.clone();
    assert!(data.join("store").is_dir() && data.join("keys").is_dir());
    assert_eq!(loose(&data), Vec::<String>::new());
}

/// The node's address as `mimix address` prints it.
fn address(cwd: &Path, data: &str) -> String {
    let o = mimix_in(cwd, &["address", "--data-dir", data]);
    assert!(o.status.success(), "{}", text(&o));
    String::from_utf8(o.stdout).unwrap().trim().to_owned()
}

/// The names of the PEM files in `dir`, sorted.
fn pems(dir: &Path) -> Vec<String> {
    let mut names: Vec<String> = std::fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap().file_name().into_string().unwrap())
        .filter(|n| n.ends_with(".pem"))
        .collect();
    names.sort();
    names
}

#[test]
fn a_key_backup_restores_the_same_keys_and_onion_address_into_a_fresh_node() {
    let tmp = tempfile::tempdir().unwrap();
    let cwd = tmp.path();
    // A Tor node (the default transport): init makes its onion identity
    // offline, so its address is known before the first start.
    let o = mimix_in(cwd, &["init", "--name", "alpha", "--data-dir", "a"]);
    assert!(o.status.success(), "{}", text(&o));
    let onion = address(cwd, "a");
    assert!(
        onion.starts_with("http://") && onion.ends_with(".onion"),
        "{onion}"
    );
    assert!(
        text(&o).contains(&onion),
        "init prints the address:\n{}",
        text(&o)
    );

    let o = mimix_in(cwd, &["keys", "export", "backup.json", "--data-dir", "a"]);
    assert!(o.status.success(), "{}", text(&o));
    assert!(text(&o).contains(&onion), "{}", text(&o));
    let mode = std::fs::metadata(cwd.join("backup.json"))
        .unwrap()
        .permissions()
        .mode();
    assert_eq!(mode & 0o777, 0o600);
    let o = mimix_in(cwd, &["keys", "export", "backup.json", "--data-dir", "a"]);
    assert!(
        !o.status.success(),
        "a backup is never overwritten:\n{}",
        text(&o)
    );

    // A fresh data directory with a copy of the config and no keys: the
    // restore gives it alpha's keys and address.
    let a = cwd.join("a");
    let b = cwd.join("b");
    std::fs::create_dir(&b).unwrap();
    let config = std::fs::read_to_string(a.join("mimix.toml")).unwrap();
    let config = config.replace(a.to_str().unwrap(), b.to_str().unwrap());
    std::fs::write(b.join("mimix.toml"), config).unwrap();
    // As an operator would make them (the test's own umask is 022).
    let mode = |p: &Path, m| std::fs::set_permissions(p, std::fs::Permissions::from_mode(m));
    mode(&b, 0o700).unwrap();
    mode(&b.join("mimix.toml"), 0o600).unwrap();
    let o = mimix_in(cwd, &["keys", "import", "backup.json", "--data-dir", "b"]);
    assert!(o.status.success(), "{}", text(&o));
    assert!(
        text(&o).contains("restored 1 remailer key(s)"),
        "{}",
        text(&o)
    );
    assert_eq!(address(cwd, "b"), onion);
    assert_eq!(pems(&b.join("keys")), pems(&a.join("keys")));
    let o = mimix_in(cwd, &["status", "--data-dir", "b"]);
    assert!(o.status.success(), "{}", text(&o));
    for pem in pems(&a.join("keys")) {
        let id = pem.trim_end_matches(".pem");
        assert!(
            text(&o).contains(id),
            "status names key {id}:\n{}",
            text(&o)
        );
    }
    assert_eq!(loose(&b), Vec::<String>::new());

    // Never into a node with keys of its own, never a damaged backup.
    let o = mimix_in(cwd, &["keys", "import", "backup.json", "--data-dir", "b"]);
    assert!(!o.status.success(), "{}", text(&o));
    assert!(text(&o).contains("already has keys"), "{}", text(&o));
    let backup = std::fs::read_to_string(cwd.join("backup.json")).unwrap();
    let c = cwd.join("c");
    std::fs::create_dir(&c).unwrap();
    let config = std::fs::read_to_string(a.join("mimix.toml")).unwrap();
    std::fs::write(
        c.join("mimix.toml"),
        config.replace(a.to_str().unwrap(), c.to_str().unwrap()),
    )
    .unwrap();
    let id = pems(&a.join("keys"))[0].trim_end_matches(".pem").to_owned();
    let wrong = id.replacen(&id[..1], if &id[..1] == "0" { "1" } else { "0" }, 1);
    std::fs::write(cwd.join("damaged.json"), backup.replace(&id, &wrong)).unwrap();
    let o = mimix_in(cwd, &["keys", "import", "damaged.json", "--data-dir", "c"]);
    assert!(!o.status.success(), "{}", text(&o));
    assert!(
        text(&o).contains("run: chmod 600 damaged.json"),
        "{}",
        text(&o)
    );
    mode(&cwd.join("damaged.json"), 0o600).unwrap();
    let o = mimix_in(cwd, &["keys", "import", "damaged.json", "--data-dir", "c"]);
    assert!(!o.status.success(), "{}", text(&o));
    assert!(text(&o).contains("another key ID"), "{}", text(&o));
    assert!(
        !c.join("keys").exists(),
        "nothing written from a damaged backup"
    );
}
