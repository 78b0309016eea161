//! Replays the committed fuzz corpus of the daemon's parsers
//! (`fuzz/corpus/<target>/seed-*` for form, policy, reassembly, config and
//! blocklist) through the same checks as the cargo-fuzz targets, so that
//! the corpus runs on the stable toolchain without libFuzzer, and asserts
//! that the corpus still reaches every outcome of each target. The codec's
//! targets are replayed by `crates/mimix-packet/tests/fuzz_corpus.rs`.
//!
//! `write_seed_corpus` (ignored) regenerates the hand-made seeds; seeds
//! found by fuzzing (`seed-<hash>`) are kept as they are.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};

use mimix::fuzzing::{self, Violation, reassembly};
use mimix::transport::form::encode_packet_form;

fn root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

/// Every committed seed of `target`, sorted by name.
fn seeds(target: &str) -> Vec<(String, Vec<u8>)> {
    let dir = root().join("fuzz/corpus").join(target);
    let mut out: Vec<(String, Vec<u8>)> = std::fs::read_dir(&dir)
        .unwrap_or_else(|e| panic!("read {}: {e}", dir.display()))
        .map(|e| e.unwrap().path())
        .filter(|p| file_name(p).starts_with("seed-"))
        .map(|p| (file_name(&p), std::fs::read(&p).unwrap()))
        .collect();
    out.sort();
    out
}

fn file_name(p: &Path) -> String {
    p.file_name().unwrap().to_string_lossy().into_owned()
}

/// Replays `target`; its corpus must reach every outcome in `want`.
fn replay(target: &str, check: impl Fn(&[u8]) -> Result<&'static str, Violation>, want: &[&str]) {
    let seeds = seeds(target);
    assert!(seeds.len() >= 5, "{target}: only {} seeds", seeds.len());
    let outcomes: BTreeSet<&str> = seeds
        .iter()
        .map(|(name, data)| check(data).unwrap_or_else(|e| panic!("{target}/{name}: {e}")))
        .collect();
    for w in want {
        assert!(
            outcomes.contains(w),
            "{target}: no seed ends in {w}: {outcomes:?}"
        );
    }
}

#[test]
fn form_corpus() {
    replay(
        "form",
        fuzzing::form::check,
        &["accepted", "missing", "duplicate", "not_armour"],
    );
}

#[test]
fn policy_corpus() {
    replay(
        "policy",
        fuzzing::policy::check,
        &[
            "delivered",
            "delivered bcc only",
            "malformed",
            "no_recipients",
            "invalid_address",
            "too_many",
            "too_large",
        ],
    );
}

#[test]
fn reassembly_corpus() {
    let harness = reassembly::Harness::new().unwrap();
    replay(
        "reassembly",
        |d| harness.check(d),
        &["completed", "stored", "rejected", "empty"],
    );
}

#[test]
fn config_corpus() {
    replay(
        "config",
        fuzzing::config::check,
        &[
            "accepted",
            "syntax",
            "field",
            "invalid",
            "no_version",
            "version",
        ],
    );
}

#[test]
fn blocklist_corpus() {
    replay(
        "blocklist",
        fuzzing::blocklist::check,
        &["accepted", "empty", "refused"],
    );
}

// ---------------------------------------------------------------------------
// Seed generation.

fn write(target: &str, name: &str, data: &[u8]) {
    let dir = root().join("fuzz/corpus").join(target);
    #[allow(clippy::disallowed_methods, reason = "a scratch directory for a test")]
    std::fs::create_dir_all(&dir).unwrap();
    std::fs::write(dir.join(format!("seed-{name}")), data).unwrap();
}

fn vector(rel: &str) -> Vec<u8> {
    let p = root().join("tests/vectors").join(rel);
    std::fs::read(&p).unwrap_or_else(|e| panic!("read {}: {e}", p.display()))
}

const ARMOUR_START: &str = "-----BEGIN MIMIX MESSAGE-----\nVersion: 1\n\nAAAA\n";

fn form_seeds() {
    let packet = String::from_utf8(vector("samples/http-post-packet.txt")).unwrap();
    let body = encode_packet_form(&packet);
    let small = encode_packet_form(ARMOUR_START);
    let seeds: [(&str, String); 10] = [
        (
            "sample",
            String::from_utf8(vector("samples/http-post-body.txt")).unwrap(),
        ),
        ("empty", String::new()),
        ("other-field", "mimix=x&y".into()),
        ("not-armour", "base64=hello+world".into()),
        ("duplicate", format!("{small}&{small}")),
        ("extra-fields", format!("a=1&&{small}&b&c=%41")),
        ("encoded-name", format!("base%36%34={}", &small[7..])),
        ("bad-percent", format!("{small}%zz%4%e9%C3%A9+%2b")),
        (
            "raw-marker",
            "x=&base64=-----BEGIN MIMIX MESSAGE-----\r\n&=".into(),
        ),
        (
            "lower-hex",
            body.replace("%2B", "%2b").replace("%0A", "%0a"),
        ),
    ];
    for (name, text) in seeds {
        write("form", name, text.as_bytes());
    }
}

/// The policy tests' hostile sender header.
const SENDER: &str = "\
From: Real Person <real@example.com>\r\n\
Sender: real@example.com\r\n\
Received: from laptop.home (10.0.0.2) by mx.example.com\r\n\
Message-ID: <123@laptop.home>\r\n\
Date: Mon, 1 Jan 2024 12:34:56 +0130\r\n\
X-Mailer: Sendmail 1.0\r\n\
Comments: not from a remailer\r\n\
To: Alice <alice@example.org>, bob@example.net\r\n\
Cc: carol@example.org\r\n\
Bcc: dave@example.com, ALICE@example.org\r\n\
Subject: Hello\r\n\
\x20folded subject\r\n\
Reply-To: pseudonym@nym.example\r\n\
References: <a@example.org>\r\n\
\t<b@example.org>\r\n\
Content-Type: text/plain; charset=utf-8\r\n\
X-Custom: kept\r\n\
List-Id: <list.example.org>\r\n";

const BODY: &str = "First line\r\n.leading dot\r\nFrom the start\r\n\r\ntrailing space \r\n";

fn policy_seeds() {
    let full = format!("{SENDER}\r\n{BODY}");
    for preset in 0..4u8 {
        let mut seed = vec![preset];
        seed.extend_from_slice(full.as_bytes());
        write("policy", &format!("full-{preset}"), &seed);
    }
    let big = format!("To: a@example.org\n\n{}\n", "x".repeat(2000));
    let three = "To: a@example.org, b@example.org\nCc: c@example.org\n\nthree\n";
    let cases: [(&str, u8, String); 16] = [
        (
            "lf-only",
            0,
            "To: a@example.org\nSubject: lf\n\nline 1\nline 2".into(),
        ),
        (
            "bare-cr-body",
            0,
            "To: a@example.org\r\n\r\none\rtwo\r\r\nend\r".into(),
        ),
        ("no-body", 1, "To: a@example.org\r\nX-Note: x\r\n".into()),
        ("bcc-only", 0, "Bcc: hidden@example.org\n\nsecret\n".into()),
        (
            "bare-cr-header",
            0,
            "To: a@example.org\r\nSubject: x\rBcc: v@example.org\r\n\r\nb".into(),
        ),
        (
            "nul-header",
            0,
            "To: a@example.org\nSubject: a\0b\n\nb".into(),
        ),
        (
            "long-line",
            0,
            format!("To: a@example.org\nSubject: {}\n\nb", "s".repeat(1000)),
        ),
        (
            "broken-fold",
            0,
            "To: a@example.org\nSubject: a\n \n\nb".into(),
        ),
        ("no-recipient", 0, "Subject: nobody\n\nb".into()),
        ("empty-head", 0, "\n\nbody only".into()),
        ("ip-literal", 0, "To: a@[10.0.0.1]\n\nb".into()),
        ("no-dot", 0, "To: root@localhost\n\nb".into()),
        ("too-many", 2, three.into()),
        ("too-large", 2, big),
        (
            "colon-space",
            3,
            "To : a@example.org\nTo: b@example.org\nList-Id: x\n\nb".into(),
        ),
        (
            "encoded-word",
            1,
            "To: =?utf-8?q?J=C3=B6rg?= <j@example.org>\nSubject: =?utf-8?b?w6k=?=\n\n\u{e9}".into(),
        ),
    ];
    for (name, preset, text) in cases {
        let mut seed = vec![preset];
        seed.extend_from_slice(text.as_bytes());
        write("policy", name, &seed);
    }
}

/// Encodes reassembly operations (see `mimix::fuzzing::reassembly`).
#[derive(Default)]
struct Ops(Vec<u8>);

impl Ops {
    fn new(limits: u8) -> Self {
        Self(vec![limits])
    }

    /// Adds chunk `n` of `of` of message `sel` (numbers as given).
    fn add(mut self, sel: u8, n: u8, of: u8, payload: &[u8]) -> Self {
        self.0
            .extend_from_slice(&[0, sel, n, of, 8, payload.len() as u8]);
        self.0.extend_from_slice(payload);
        self
    }

    fn via_queue(mut self, sel: u8, n: u8, of: u8, payload: &[u8]) -> Self {
        self.0
            .extend_from_slice(&[5, sel, n, of, 8, payload.len() as u8]);
        self.0.extend_from_slice(payload);
        self
    }

    /// Adds a chunk with flag bits `flags` (bit 3 is set for raw numbers).
    fn flagged(mut self, sel: u8, n: u8, of: u8, flags: u8) -> Self {
        self.0.extend_from_slice(&[0, sel, n, of, flags | 8]);
        if (flags >> 1) & 3 == 0 {
            self.0.push(0);
        }
        self
    }

    fn minutes(mut self, m: u8) -> Self {
        self.0.extend_from_slice(&[6, m]);
        self
    }

    fn reopen(mut self) -> Self {
        self.0.push(7);
        self
    }
}

fn reassembly_seeds() {
    let mail = b"To: x@example.org\n\npart one ";
    let seeds = [
        ("empty", Ops::new(0)),
        (
            "single",
            Ops::new(0).add(0, 1, 1, b"To: a@example.org\n\nhi\n"),
        ),
        (
            "three-out-of-order",
            Ops::new(1)
                .add(1, 3, 3, b"three")
                .add(1, 1, 3, mail)
                .add(1, 2, 3, b"two "),
        ),
        (
            "duplicate-and-mismatch",
            Ops::new(1)
                .add(2, 1, 2, b"one")
                .add(2, 1, 2, b"evil")
                .add(2, 2, 3, b"x")
                .add(2, 2, 2, b"two"),
        ),
        (
            "over-limit",
            Ops::new(0)
                .add(0, 1, 2, b"a")
                .add(1, 1, 2, b"b")
                .add(0, 2, 2, b"a")
                .add(1, 1, 2, b"b"),
        ),
        (
            "expiry",
            Ops::new(3)
                .add(3, 1, 2, b"old")
                .minutes(59)
                .add(0, 1, 2, b"new")
                .minutes(1)
                .add(3, 2, 2, b"late")
                .minutes(200),
        ),
        (
            "reopen",
            Ops::new(2)
                .add(0, 2, 3, b"b")
                .add(1, 1, 4, b"x")
                .reopen()
                .add(0, 1, 3, b"a")
                .reopen()
                .add(0, 3, 3, b"c"),
        ),
        (
            "via-queue",
            Ops::new(1)
                .via_queue(0, 2, 2, b"B")
                .via_queue(0, 1, 2, b"To: q@example.org\n\nA")
                .via_queue(1, 1, 1, b"single"),
        ),
        (
            "rejections",
            Ops::new(0)
                .flagged(0, 0, 3, 0)
                .flagged(0, 4, 3, 0)
                .flagged(0, 1, 0, 0)
                .flagged(0, 1, 2, 4)
                .flagged(1, 1, 1, 1),
        ),
        (
            "full-chunks",
            Ops::new(0)
                .flagged(2, 1, 3, 2)
                .flagged(2, 3, 3, 6)
                .flagged(2, 3, 3, 2)
                .flagged(2, 2, 3, 2),
        ),
        (
            "small-numbers",
            Ops(vec![3, 0, 1, 2, 2, 0, 2, 0, 1, 7, 2, 0, 0, 1, 2, 2, 1, 9]),
        ),
    ];
    for (name, ops) in seeds {
        write("reassembly", name, &ops.0);
    }
}

fn config_seeds() {
    let example =
        String::from_utf8(std::fs::read(root().join("mimix.example.toml")).unwrap()).unwrap();
    let seeds: [(&str, String); 14] = [
        ("example", example.clone()),
        ("minimal", "config_version = 1\n".into()),
        ("no-version", "[pool]\nmin = 3\n".into()),
        ("version-2", "config_version = 2\n".into()),
        ("version-string", "config_version = \"1\"\n".into()),
        ("syntax", "config_version = 1\n[pool\n".into()),
        ("unknown-field", "config_version = 1\n[pool]\nsize = 3\n".into()),
        ("bad-duration", "config_version = 1\n[pool]\ninterval = \"15 parsecs\"\n".into()),
        ("bad-rate", "config_version = 1\n[pool]\nrate = 1.5\n".into()),
        (
            "direct",
            "config_version = 1\n[node]\nname = \"alpha\"\naddress = \"http://127.0.0.1:8081\"\nsmtp_exit = true\n\
             [transport]\nkind = \"direct\"\nlisten = \"127.0.0.1:8081\"\nmax_body = \"64KiB\"\n\
             [[directory.remailers]]\nname = \"beta\"\naddress = \"http://127.0.0.1:8082\"\n"
                .into(),
        ),
        (
            "direct-onion-peer",
            "config_version = 1\n[transport]\nkind = \"direct\"\n[[directory.remailers]]\nname = \"b\"\naddress = \"http://abc.onion\"\n".into(),
        ),
        (
            "exit-policy",
            "config_version = 1\n[exit.policy]\nfrom = \"Anon <a@b.example>\"\ndeny_headers = [\"X-*\", \"*\"]\nmax_message_size = \"1KiB\"\n".into(),
        ),
        ("paths", "config_version = 1\n[node]\ndata_dir = \"~/mimix\"\n[exit]\nblocklist = \"rel/block.txt\"\n".into()),
        ("nested", format!("config_version = 1\nx = {}1{}\n", "[".repeat(40), "]".repeat(40))),
    ];
    for (name, text) in seeds {
        write("config", name, text.as_bytes());
    }
}

fn blocklist_seeds() {
    let sample = "\
# blocked on request
Harassed@Example.com      # ticket 12
@exact.example
subs.example
/^abuse-[0-9]+@/

/@(spam|junk)\\.example$/  # either
";
    let seeds: [(&str, String); 12] = [
        ("sample", sample.into()),
        ("sample-crlf", sample.replace('\n', "\r\n")),
        ("empty", String::new()),
        ("comments", "# only a comment\n\n   \n  # indented\n".into()),
        ("unclosed-regex", "a@example.com\n# c\n/(unclosed/\n".into()),
        ("trailing", "a@example.com trailing words\n".into()),
        ("bad-domain", "ok.example\nbad..example\n".into()),
        ("empty-regex", "//\n".into()),
        ("double-at", "a@@example.com\n".into()),
        (
            "trailing-dots",
            "@dot.example.\nroot.example.\t# tab\nUPPER.Example\n".into(),
        ),
        (
            "idn",
            "b\u{fc}cher.example\n@xn--bcher-kva.example\n".into(),
        ),
        ("big-regex", "/(a|b|c|d){1,1000}x{1,1000}/\n".into()),
    ];
    for (name, text) in seeds {
        write("blocklist", name, text.as_bytes());
    }
}

#[test]
#[ignore = "writes fuzz/corpus/*/seed-*; run by hand to regenerate the seeds"]
fn write_seed_corpus() {
    form_seeds();
    policy_seeds();
    reassembly_seeds();
    config_seeds();
    blocklist_seeds();
}
