//! torrc text and the parsing of tor's key-generation output.

use std::fmt::Write as _;
use std::path::Path;

/// What the harness knows about one node once its keys exist.
#[derive(Debug, Clone)]
pub(super) struct Node {
    /// Tor nickname (`a0`, `r0`, ...).
    pub nick: String,
    /// ORPort on 127.0.0.1.
    pub orport: u16,
    /// DirPort on 127.0.0.1.
    pub dirport: u16,
    /// RSA identity fingerprint, 40 hex digits.
    pub rsa_fp: String,
    /// ed25519 identity, unpadded base64.
    pub ed_id: String,
    /// The authority's v3 identity, for authorities only.
    pub v3ident: Option<String>,
}

/// Options every node gets (see the crate's test-network notes).
const COMMON: &str = "\
TestingTorNetwork 1
RunAsDaemon 0
SafeLogging 0
LogTimeGranularity 1
ProtocolWarnings 1
ShutdownWaitLength 0
DisableDebuggerAttachment 0
SocksPort 0
ControlPort 0
Address 127.0.0.1
AssumeReachable 1
PathsNeededToBuildCircuits 0.67
TestingDirAuthVoteGuard *
TestingDirAuthVoteExit *
TestingDirAuthVoteHSDir *
TestingMinExitFlagThreshold 0
V3AuthNIntervalsValid 2
ExitRelay 1
ExitPolicyRejectPrivate 0
ExitPolicy accept 127.0.0.0/8:*
ExitPolicy accept private:*
ExitPolicy accept *:*
ServerDNSDetectHijacking 0
ServerDNSTestAddresses
ServerDNSAllowBrokenConfig 1
ServerDNSResolvConfFile /dev/null
DoSCircuitCreationEnabled 0
DoSConnectionEnabled 0
DoSRefuseSingleHopClientRendezvous 0
";

/// Extra options for directory authorities: a 10 s voting schedule.
const AUTHORITY: &str = "\
AuthoritativeDirectory 1
V3AuthoritativeDirectory 1
TestingV3AuthInitialVotingInterval 10
TestingV3AuthInitialVoteDelay 2
TestingV3AuthInitialDistDelay 2
V3AuthVotingInterval 10
V3AuthVoteDelay 2
V3AuthDistDelay 2
AuthDirTestReachability 0
";

/// The torrc of `node`, whose data directory is `dir`, in a network whose
/// authorities are `authorities`.
pub(super) fn torrc(node: &Node, dir: &Path, authorities: &[&Node]) -> String {
    let d = dir.display();
    let mut t = String::new();
    // Writing to a String cannot fail.
    let _ = write!(
        t,
        "DataDirectory {d}\nPidFile {d}/pid\nNickname {nick}\nContactInfo {nick}@test.invalid\n\
         Log notice file {d}/notice.log\nORPort 127.0.0.1:{or}\nDirPort 127.0.0.1:{dp}\n",
        nick = node.nick,
        or = node.orport,
        dp = node.dirport,
    );
    t.push_str(COMMON);
    if node.v3ident.is_some() {
        t.push_str(AUTHORITY);
    }
    for a in authorities {
        let _ = writeln!(
            t,
            "DirAuthority {nick} orport={or} no-v2 v3ident={v3} 127.0.0.1:{dp} {fp}",
            nick = a.nick,
            or = a.orport,
            v3 = a.v3ident.as_deref().unwrap_or_default(),
            dp = a.dirport,
            fp = a.rsa_fp,
        );
    }
    t
}

/// The RSA fingerprint from `tor --list-fingerprint` output: the last line
/// is `<nickname> XXXX XXXX ...`.
pub(super) fn parse_list_fingerprint(stdout: &str) -> Option<String> {
    let line = stdout.lines().rev().find(|l| !l.trim().is_empty())?;
    let fp: String = line.split_whitespace().skip(1).collect();
    is_hex40(&fp).then_some(fp)
}

/// The v3 identity from an `authority_certificate`: its `fingerprint` line.
pub(super) fn parse_v3ident(certificate: &str) -> Option<String> {
    certificate
        .lines()
        .find_map(|l| l.strip_prefix("fingerprint "))
        .map(|fp| fp.trim().to_owned())
        .filter(|fp| is_hex40(fp))
}

/// The ed25519 identity from a `fingerprint-ed25519` file:
/// `<nickname> <base64>`.
pub(super) fn parse_ed25519(file: &str) -> Option<String> {
    let id = file.split_whitespace().nth(1)?;
    (id.len() == 43).then(|| id.to_owned())
}

/// Whether `s` is 40 hex digits.
fn is_hex40(s: &str) -> bool {
    s.len() == 40 && s.bytes().all(|b| b.is_ascii_hexdigit())
}

/// Relays listed in a consensus (`r ` lines) and how many of them carry
/// every flag an onion-service test needs. `Fast` is not among them: an
/// authority sometimes goes without it for minutes, and Arti copes.
pub(super) fn consensus_counts(consensus: &str) -> (usize, usize) {
    const NEEDED: [&str; 5] = ["Exit", "Guard", "HSDir", "Running", "Valid"];
    let listed = consensus.lines().filter(|l| l.starts_with("r ")).count();
    let flagged = consensus
        .lines()
        .filter_map(|l| l.strip_prefix("s "))
        .filter(|flags| {
            let flags: Vec<&str> = flags.split_whitespace().collect();
            NEEDED.iter().all(|f| flags.contains(f))
        })
        .count();
    (listed, flagged)
}

/// One line per relay of a consensus, `<nickname>: <flags>`, for error
/// messages.
pub(super) fn consensus_flags(consensus: &str) -> String {
    let mut out = String::new();
    for line in consensus.lines() {
        if let Some(r) = line.strip_prefix("r ") {
            out.push_str(r.split_whitespace().next().unwrap_or("?"));
            out.push(':');
        } else if let Some(flags) = line.strip_prefix("s ") {
            out.push(' ');
            out.push_str(flags);
            out.push('\n');
        }
    }
    out
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

    use super::*;

    #[test]
    fn parses_tor_outputs() {
        let out = "Nov 29 05:40:00.000 [notice] Tor 0.4.9.11 running\n\
                   r0 3B5C 1F2A 9D0E 4C6B 7A8F 1E2D 3C4B 5A69 7887 9695\n";
        assert_eq!(
            parse_list_fingerprint(out).unwrap(),
            "3B5C1F2A9D0E4C6B7A8F1E2D3C4B5A6978879695"
        );
        assert_eq!(parse_list_fingerprint("r0 nothex\n"), None);

        let cert = "dir-key-certificate-version 3\ndir-address 127.0.0.1:7100\n\
                    fingerprint 0123456789ABCDEF0123456789ABCDEF01234567\n";
        assert_eq!(
            parse_v3ident(cert).unwrap(),
            "0123456789ABCDEF0123456789ABCDEF01234567"
        );
        assert_eq!(parse_v3ident("nothing here"), None);

        let ed = "r0 AQIDBAUGBwgJCgsMDQ4PEBESExQVFhcYGRobHB0eHyA\n";
        assert_eq!(
            parse_ed25519(ed).unwrap(),
            "AQIDBAUGBwgJCgsMDQ4PEBESExQVFhcYGRobHB0eHyA"
        );
        assert_eq!(parse_ed25519("r0\n"), None);
    }

    #[test]
    fn counts_consensus_entries() {
        let c = "network-status-version 3 microdesc\n\
                 r a0 AAAA 2025-01-01 00:00:00 127.0.0.1 5000 0\n\
                 s Exit Fast Guard HSDir Running Stable V2Dir Valid\n\
                 r r0 BBBB 2025-01-01 00:00:00 127.0.0.1 5001 0\n\
                 s Fast Running Valid\n\
                 r a1 CCCC 2025-01-01 00:00:00 127.0.0.1 5002 0\n\
                 s Authority Exit Guard HSDir Running Stable V2Dir Valid\n";
        assert_eq!(consensus_counts(c), (3, 2));
        assert_eq!(
            consensus_flags(c),
            "a0: Exit Fast Guard HSDir Running Stable V2Dir Valid\nr0: Fast Running Valid\n\
             a1: Authority Exit Guard HSDir Running Stable V2Dir Valid\n"
        );
    }

    #[test]
    fn torrc_lists_every_authority() {
        let a = Node {
            nick: "a0".into(),
            orport: 5000,
            dirport: 5100,
            rsa_fp: "F".repeat(40),
            ed_id: String::new(),
            v3ident: Some("E".repeat(40)),
        };
        let r = Node {
            nick: "r0".into(),
            orport: 5001,
            dirport: 5101,
            v3ident: None,
            ..a.clone()
        };
        let relay = torrc(&r, Path::new("/x/r0"), &[&a]);
        assert!(relay.contains("ORPort 127.0.0.1:5001\n"));
        assert!(relay.contains(&format!(
            "DirAuthority a0 orport=5000 no-v2 v3ident={} 127.0.0.1:5100 {}\n",
            "E".repeat(40),
            "F".repeat(40)
        )));
        assert!(!relay.contains("AuthoritativeDirectory"));
        assert!(torrc(&a, Path::new("/x/a0"), &[&a]).contains("V3AuthoritativeDirectory 1\n"));
    }
}
