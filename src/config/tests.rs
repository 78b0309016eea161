#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::path::{Path, PathBuf};
use std::time::Duration;

use super::*;
use crate::directory::KnownRemailer;
use crate::exit::smtp::RelayTls as SmtpTls;
use crate::transport::TransportKind;
use mimix_tor::NetworkKind as TorNetworkKind;

const V1: &str = "config_version = 1\n";

fn env(home: Option<&str>, xdg: Option<&str>) -> Env {
    Env {
        home: home.map(PathBuf::from),
        xdg_data_home: xdg.map(PathBuf::from),
    }
}

/// Parse `V1 + body` with a fixed environment and no base directory.
fn parse_body(body: &str) -> Result<Config, ConfigError> {
    Config::from_toml_with(
        &format!("{V1}{body}"),
        None,
        None,
        &env(Some("/home/u"), None),
    )
}

/// The field named by a validation error, or the error itself.
fn invalid_field(body: &str) -> String {
    match parse_body(body) {
        Err(ConfigError::Invalid { field, .. }) => field,
        other => panic!("expected a validation error for {body:?}, got {other:?}"),
    }
}

#[test]
fn data_dir_comes_from_xdg_then_home() {
    let c = Config::from_toml_with(V1, None, None, &env(Some("/home/u"), Some("/xdg"))).unwrap();
    assert_eq!(c.data_dir(), Path::new("/xdg/mimix"));
    assert_eq!(c.tor.state_dir, Path::new("/xdg/mimix/tor/state"));
    assert_eq!(c.tor.cache_dir, Path::new("/xdg/mimix/tor/cache"));
    assert_eq!(c.exit.blocklist, Path::new("/xdg/mimix/blocklist.txt"));

    // A relative XDG_DATA_HOME is ignored, as the XDG spec requires.
    let c = Config::from_toml_with(V1, None, None, &env(Some("/home/u"), Some("rel"))).unwrap();
    assert_eq!(c.data_dir(), Path::new("/home/u/.local/share/mimix"));

    let err = Config::from_toml_with(V1, None, None, &env(None, None)).unwrap_err();
    assert!(matches!(err, ConfigError::NoDataDir), "{err:?}");
}

#[test]
fn paths_are_expanded_and_made_relative_to_the_file() {
    let text = format!(
        "{V1}[node]\ndata_dir = \"~/mx\"\n[tor]\nstate_dir = \"tor-state\"\n\
         [exit]\nblocklist = \"/etc/mimix/block\"\n"
    );
    let c = Config::from_toml_with(
        &text,
        None,
        Some(Path::new("/etc/mimix")),
        &env(Some("/home/u"), None),
    )
    .unwrap();
    assert_eq!(c.data_dir(), Path::new("/home/u/mx"));
    assert_eq!(c.tor.state_dir, Path::new("/etc/mimix/tor-state"));
    assert_eq!(c.tor.cache_dir, Path::new("/home/u/mx/tor/cache"));
    assert_eq!(c.exit.blocklist, Path::new("/etc/mimix/block"));

    let err = Config::from_toml_with(&text, None, None, &env(None, None)).unwrap_err();
    assert!(
        matches!(&err, ConfigError::Invalid { field, .. } if field == "node.data_dir"),
        "{err:?}"
    );
}

#[test]
fn empty_paths_are_refused() {
    let err = parse_body("[node]\ndata_dir = \"\"\n").unwrap_err();
    assert!(
        matches!(&err, ConfigError::Parse { field: Some(f), .. } if f == "node.data_dir"),
        "{err:?}"
    );
    assert!(err.to_string().contains("must not be empty"), "{err}");
}

#[test]
fn sizes_accept_bytes_and_human_units() {
    let c = parse_body("[transport]\nmax_body = \"64KiB\"\nmax_conf_size = \"1 MB\"\n").unwrap();
    assert_eq!(c.transport.max_body, 65_536);
    assert_eq!(c.transport.max_conf_size, 1_000_000);
    let c = parse_body("[transport]\nmax_body = 40000\n").unwrap();
    assert_eq!(c.transport.max_body, 40_000);

    let err = parse_body("[transport]\nmax_body = \"lots\"\n").unwrap_err();
    assert!(
        matches!(&err, ConfigError::Parse { field: Some(f), line: Some(3), .. }
            if f == "transport.max_body"),
        "{err:?}"
    );
    assert!(err.to_string().contains("64KiB"), "{err}");
    assert!(parse_body("[transport]\nmax_body = -1\n").is_err());
}

#[test]
fn version_is_checked_before_the_fields() {
    // A future file with fields this build does not know gets a version
    // error, not an unknown-field error.
    let err = Config::from_toml_str("config_version = 2\n[pool]\nnew_knob = 1\n").unwrap_err();
    assert!(
        matches!(err, ConfigError::UnsupportedVersion { .. }),
        "{err:?}"
    );
    let err = Config::from_toml_str("config_version = \"1\"\n").unwrap_err();
    assert!(
        matches!(&err, ConfigError::UnsupportedVersion { found, .. } if found == "\"1\""),
        "{err:?}"
    );
    let err = Config::from_toml_str("[node]\nname = \"x\"\n").unwrap_err();
    assert!(matches!(err, ConfigError::MissingVersion { .. }), "{err:?}");

    let mut c = Config::default_for(Path::new("/d"));
    c.config_version = 3;
    let err = c.validate().unwrap_err();
    assert!(matches!(&err, ConfigError::Invalid { field, .. } if field == "config_version"));
}

#[test]
fn syntax_errors_have_a_position() {
    let err = Config::from_toml_str("config_version = 1\n[pool\n").unwrap_err();
    match err {
        ConfigError::Parse {
            line,
            column,
            field,
            ..
        } => {
            assert_eq!(line, Some(2));
            assert!(column.is_some());
            assert_eq!(field, None);
        }
        other => panic!("{other:?}"),
    }
}

#[test]
fn line_column_counts_characters() {
    let text = "ab\ncé d\n";
    assert_eq!(line_column(text, 0), (1, 1));
    assert_eq!(line_column(text, 3), (2, 1));
    // 'd' is at byte 7 (é is two bytes) but at character column 4.
    assert_eq!(line_column(text, 7), (2, 4));
    // Past the end and inside a character: no panic.
    assert_eq!(line_column(text, 100).0, 3);
    assert_eq!(line_column(text, 5), (2, 2));
}

#[test]
fn wrong_types_name_the_field() {
    for (body, field) in [
        ("[pool]\nmin = -3\n", "pool.min"),
        ("[pool]\ninterval = 15\n", "pool.interval"),
        ("[transport]\nkind = \"udp\"\n", "transport.kind"),
        ("[transport]\nlisten = \"localhost\"\n", "transport.listen"),
        ("[exit.smtp]\ntls = \"ssl\"\n", "exit.smtp.tls"),
        ("[keys]\nbits = 4096.0\n", "keys.bits"),
    ] {
        match parse_body(body) {
            Err(ConfigError::Parse {
                field: Some(f),
                line: Some(_),
                ..
            }) => {
                assert_eq!(f, field, "{body}")
            }
            other => panic!("{body}: {other:?}"),
        }
    }
}

#[test]
fn range_checks_name_the_field() {
    for (body, field) in [
        ("[node]\nname = \"has space\"\n", "node.name"),
        ("[node]\nlog = \"info,=[\"\n", "node.log"),
        ("[pool]\nrate = 0.0\n", "pool.rate"),
        ("[pool]\nrate = 1.5\n", "pool.rate"),
        ("[pool]\ninterval = \"0s\"\n", "pool.interval"),
        (
            "[dummies]\nper_round_mean = -0.5\n",
            "dummies.per_round_mean",
        ),
        ("[dummies]\nchain_length = 11\n", "dummies.chain_length"),
        ("[dummies]\nchain_length = 0\n", "dummies.chain_length"),
        ("[transport]\nmax_body = 1000\n", "transport.max_body"),
        (
            "[transport]\nmax_connections = 0\n",
            "transport.max_connections",
        ),
        (
            "[transport]\nconnect_timeout = \"0s\"\n",
            "transport.connect_timeout",
        ),
        ("[keys]\nbits = 1024\n", "keys.bits"),
        ("[keys]\nbits = 3000\n", "keys.bits"),
        ("[keys]\nbits = 8192\n", "keys.bits"),
        ("[keys]\nlifetime = \"36h\"\n", "keys.lifetime"),
        ("[keys]\nrenew_before = \"270d\"\n", "keys.renew_before"),
        ("[keys]\nrenew_before = \"0d\"\n", "keys.renew_before"),
        (
            "[replay]\ntimestamp_max_age = \"3d\"\n",
            "replay.timestamp_max_age",
        ),
        (
            "[replay]\ntimestamp_max_future = \"12h\"\n",
            "replay.timestamp_max_future",
        ),
        (
            "[replay]\ntimestamp_max_age = \"27d\"\n",
            "replay.retention",
        ),
        ("[outbound]\nretry_max = \"30s\"\n", "outbound.retry_max"),
        ("[outbound]\nconcurrency = 0\n", "outbound.concurrency"),
        (
            "[exit.policy]\nfrom = \"Remailer <nobody@example.org>\"\n",
            "exit.policy.from",
        ),
        (
            "[exit.policy]\nfrom = \"not a mailbox\"\n",
            "exit.policy.from",
        ),
        (
            "[exit.policy]\nfrom = \"Anonymous Rémailer <a@b.org>\"\n",
            "exit.policy.from",
        ),
        (
            "[exit.policy]\nenvelope_from = \"nope\"\n",
            "exit.policy.envelope_from",
        ),
        (
            "[exit.policy]\ncomments = \"two\\nlines\"\n",
            "exit.policy.comments",
        ),
        (
            "[exit.policy]\nmessage_id_domain = \"a b\"\n",
            "exit.policy.message_id_domain",
        ),
        (
            "[exit.policy]\ndeny_headers = [\"X-Bad:\"]\n",
            "exit.policy.deny_headers[0]",
        ),
        (
            "[exit.policy]\nallow_headers = [\"To\", \"*\"]\n",
            "exit.policy.allow_headers[1]",
        ),
        (
            "[exit.policy]\nmax_message_size = 10\n",
            "exit.policy.max_message_size",
        ),
        (
            "[exit.policy]\nmax_recipients = 0\n",
            "exit.policy.max_recipients",
        ),
        (
            "[exit.reassembly]\nmax_partial_sets = 0\n",
            "exit.reassembly.max_partial_sets",
        ),
        ("[exit.retry]\nmax = \"1m\"\n", "exit.retry.max"),
        (
            "[exit.smtp]\ncommand_timeout = \"0s\"\n",
            "exit.smtp.command_timeout",
        ),
        ("[exit.smtp]\nhost = \"smtp example\"\n", "exit.smtp.host"),
        ("[exit.smtp]\nhelo_name = \"-\"\n", "exit.smtp.helo_name"),
    ] {
        assert_eq!(invalid_field(body), field, "{body}");
    }
}

#[test]
fn smtp_credentials_rules() {
    let creds = "username = \"u\"\npassword_file = \"/etc/pw\"\n";
    // Credentials in the clear to a remote relay: refused.
    let body = format!("[exit.smtp]\nhost = \"mail.example.org\"\n{creds}");
    assert_eq!(invalid_field(&body), "exit.smtp.tls");
    // With STARTTLS, or to this host, they are accepted.
    let c = parse_body(&format!("{body}tls = \"starttls\"\nport = 587\n")).unwrap();
    assert_eq!(c.exit.smtp.tls, SmtpTls::Starttls);
    assert_eq!(
        c.exit.smtp.password_file.as_deref(),
        Some(Path::new("/etc/pw"))
    );
    parse_body(&format!("[exit.smtp]\n{creds}")).unwrap();
    // One without the other, or with MX delivery: refused.
    assert_eq!(
        invalid_field("[exit.smtp]\nusername = \"u\"\n"),
        "exit.smtp.username"
    );
    assert_eq!(
        invalid_field(&format!("[exit.smtp]\nmode = \"mx\"\n{creds}")),
        "exit.smtp.username"
    );
}

#[test]
fn addresses_must_suit_the_transport() {
    let onion = "[node]\naddress = \"http://abcdef.onion\"\n";
    assert_eq!(
        parse_body(onion).unwrap().node.address.as_deref(),
        Some("http://abcdef.onion")
    );
    assert_eq!(
        invalid_field("[node]\naddress = \"http://example.org\"\n"),
        "node.address"
    );
    assert_eq!(
        invalid_field("[node]\naddress = \"https://x.onion\"\n"),
        "node.address"
    );

    let direct = "[transport]\nkind = \"direct\"\n";
    let c = parse_body(&format!(
        "{direct}[node]\naddress = \"http://127.0.0.1:8081/\"\n"
    ))
    .unwrap();
    assert_eq!(c.transport.kind, TransportKind::Direct);
    assert_eq!(invalid_field(&format!("{direct}{onion}")), "node.address");
    assert_eq!(
        invalid_field("[transport]\nkind = \"direct\"\nlisten = \"0.0.0.0:8080\"\n"),
        "transport.listen"
    );

    let remailer =
        |addr: &str| format!("[[directory.remailers]]\nname = \"a\"\naddress = \"{addr}\"\n");
    parse_body(&remailer("http://a.onion")).unwrap();
    let clearnet = remailer("http://a.example.org:8080");
    assert_eq!(invalid_field(&clearnet), "directory.remailers[0].address");
    let allowed = format!("[transport]\nallow_clearnet_hops = true\n{clearnet}");
    assert_eq!(parse_body(&allowed).unwrap().directory.remailers.len(), 1);
    assert_eq!(
        invalid_field(&format!("{direct}{}", remailer("http://a.onion"))),
        "directory.remailers[0].address"
    );
    parse_body(&format!("{direct}{}", remailer("http://localhost:9000"))).unwrap();

    let twice = format!(
        "{}{}",
        remailer("http://a.onion"),
        remailer("http://b.onion")
    );
    assert_eq!(invalid_field(&twice), "directory.remailers[1].name");
}

#[test]
fn tor_custom_network() {
    let fp = "0123456789ABCDEF0123456789ABCDEF01234567";
    let ed = "AQIDBAUGBwgJCgsMDQ4PEBESExQVFhcYGRobHB0eHyA";
    let custom = format!(
        "[tor]\nnetwork = \"custom\"\nhsdir_interval = \"120m\"\n\
         [[tor.authorities]]\nv3ident = \"{fp}\"\ndirports = [\"127.0.0.1:7100\"]\n\
         [[tor.fallbacks]]\nrsa_identity = \"{fp}\"\ned_identity = \"{ed}\"\n\
         orports = [\"127.0.0.1:7000\"]\n"
    );
    let c = parse_body(&custom).unwrap();
    assert_eq!(c.tor.network, TorNetworkKind::Custom);
    assert_eq!(c.tor.hsdir_interval, Some(Duration::from_secs(7200)));
    assert_eq!(c.tor.authorities[0].dirports[0].port(), 7100);
    assert_eq!(c.tor.fallbacks[0].orports[0].port(), 7000);

    let public = custom.replace("\"custom\"", "\"public\"");
    assert_eq!(invalid_field(&public), "tor.authorities");
    let no_fallbacks = custom.split("[[tor.fallbacks]]").next().unwrap().to_owned();
    assert_eq!(invalid_field(&no_fallbacks), "tor.fallbacks");
    assert_eq!(
        invalid_field(&custom.replacen(fp, "xyz", 1)),
        "tor.authorities[0].v3ident"
    );
    assert_eq!(
        invalid_field(&custom.replace(ed, "AQID")),
        "tor.fallbacks[0].ed_identity"
    );
    assert_eq!(
        invalid_field(&custom.replace("\"120m\"", "\"90s\"")),
        "tor.hsdir_interval"
    );
    let err = parse_body(&custom.replace("v3ident", "name")).unwrap_err();
    assert!(err.to_string().contains("unknown field `name`"), "{err}");
}

#[test]
fn effective_config_round_trips_through_toml() {
    let mut c = Config::default_for(Path::new("/srv/mimix"));
    c.node.address = Some("http://abc.onion".into());
    c.exit.policy.comments = Some("hello".into());
    c.exit.policy.deny_headers = Some(vec!["Sender".into(), "X-*".into()]);
    c.exit.smtp.username = Some("u".into());
    c.exit.smtp.password_file = Some("/etc/pw".into());
    c.directory.remailers.push(KnownRemailer {
        name: "alpha".into(),
        address: "http://alpha.onion".into(),
        conf: Some("/etc/alpha.txt".into()),
    });
    let text = c.to_toml().unwrap();
    let back = Config::from_toml_str(&text).unwrap();
    assert_eq!(back, c, "{text}");
    assert!(text.contains("interval = \"15m\""), "{text}");
    assert!(text.contains("lifetime = \"270d\""), "{text}");
}

#[test]
fn durations_are_written_in_whole_units() {
    use mimix_settings::duration::format;
    for (secs, text) in [
        (0, "0s"),
        (90, "90s"),
        (3600, "1h"),
        (5400, "90m"),
        (86_400 * 270, "270d"),
    ] {
        assert_eq!(format(Duration::from_secs(secs)), text);
        assert_eq!(
            humantime::parse_duration(text).unwrap(),
            Duration::from_secs(secs)
        );
    }
    assert_eq!(format(Duration::from_millis(1500)), "1s 500ms");
    let c = parse_body("[pool]\ninterval = \"1h 30m\"\n").unwrap();
    assert_eq!(c.pool.interval, Duration::from_secs(5400));
}

#[test]
fn init_template_refuses_non_utf8_paths() {
    use std::os::unix::ffi::OsStrExt;
    let p = Path::new(std::ffi::OsStr::from_bytes(b"/tmp/\xff"));
    let err = Config::init_template(p).unwrap_err();
    assert!(matches!(err, ConfigError::NonUtf8Path { .. }), "{err:?}");
}

#[test]
fn error_messages_read_well() {
    let err = Config::from_toml_with(
        "config_version = 1\n[pool]\ninterval = \"15 minuts\"\n",
        Some(Path::new("/etc/mimix.toml")),
        None,
        &env(Some("/h"), None),
    )
    .unwrap_err();
    let msg = err.to_string();
    assert!(
        msg.starts_with("/etc/mimix.toml, line 3, column 12: pool.interval: invalid duration"),
        "{msg}"
    );
    let msg = invalid_field_message("[keys]\nbits = 1000\n");
    assert_eq!(
        msg,
        "invalid configuration: keys.bits: must be 2048 to 4096 and a multiple of 256, got 1000"
    );
}

fn invalid_field_message(body: &str) -> String {
    parse_body(body).unwrap_err().to_string()
}

#[test]
fn a_key_nested_past_the_parsers_limit_is_refused_in_plain_words() {
    // Found by the config fuzz target: the TOML parser stops at its
    // recursion limit without a position.
    let key = vec!["a"; 200].join(".");
    let text = format!("config_version = 1\n{key} = 5\n");
    let e = Config::from_toml_str(&text).unwrap_err();
    let ConfigError::Parse { message, .. } = &e else {
        panic!("{e:?}");
    };
    assert!(message.starts_with("nested too deeply"), "{message}");
    assert!(crate::fuzzing::config::check(text.as_bytes()).is_ok());
}
