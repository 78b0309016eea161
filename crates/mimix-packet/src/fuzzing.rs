//! Checks shared by the fuzz targets under `fuzz/` and the corpus replay
//! test `tests/fuzz_corpus.rs`. Not a stable API.
//!
//! Each check takes the raw fuzzer input and returns `Err` when the codec
//! breaks one of its properties; a panic inside the codec propagates, which
//! is the other failure a fuzzer reports.
//!
//! # Peel input format
//!
//! Byte 0 picks the mode (even: raw, odd: constructed); byte 1 holds flags.
//!
//! * **Raw** ([`RAW_FIX_DIGEST`]): bytes 2.. are the packet, zero-padded or
//!   cut to 20480 bytes. With the flag, the section-1 SHA-512 is recomputed
//!   so that mutations reach the key lookup, the RSA length and RSA-OAEP.
//! * **Constructed**: byte 2 picks the key, bytes 3..19 are the header IV,
//!   bytes 19..403 the plaintext inner header and the rest header sections
//!   2..10 and the body (zero-padded). The harness encrypts a fixed header
//!   key to the chosen key, AES-CFB8-encrypts the inner header and fixes the
//!   section-1 digest, so every input reaches the inner header checks. The
//!   `FIX_*` flags also repair the fields a fuzzer cannot guess (digests,
//!   timestamp) before that. Every outcome is compared with an independent
//!   model of the inner checks, and accepted packets with a serial CFB-8
//!   decryption of the input.

use std::convert::Infallible;

use rand_core::{TryCryptoRng, TryRng};

use crate::armour::{armour, dearmour};
use crate::conf::{ConfError, RemailerConf};
use crate::crypto::cfb8;
use crate::crypto::digest::{sha256, sha512};
use crate::crypto::rsa::{KeyImportError, RsaError};
use crate::crypto::{KeyId, SecretKey};
use crate::layout::{BODY_LEN, BODY_OFFSET, INNER_LEN, NEXT_HOP_LEN, Packet, SECTION_LEN, section};
use crate::peel::{KeyRing, Outcome, PeelError, Peeled, TimeWindow, peel};

/// The day the reference vectors were made (epoch day): "today" for fuzzing.
pub const VECTOR_DAY: u64 = 20786;
/// Oldest timestamp age the harness accepts, in days.
pub const MAX_AGE_DAYS: u64 = 14;
/// Length of a packet's armour as [`armour`] writes it.
pub const ARMOURED_LEN: usize = 27747;

/// Raw mode flag: recompute the section-1 digest.
pub const RAW_FIX_DIGEST: u8 = 1;
/// Constructed mode flag: recompute the inner header digest.
pub const FIX_INNER_DIGEST: u8 = 1;
/// Constructed mode flag: recompute the anti-tag of a type `'0'` header.
pub const FIX_ANTITAG: u8 = 2;
/// Constructed mode flag: recompute the payload digest of a type `'1'` header.
pub const FIX_PAYLOAD_DIGEST: u8 = 4;
/// Constructed mode flag: set the timestamp to [`VECTOR_DAY`].
pub const FIX_TIMESTAMP: u8 = 8;
/// Offset of the header IV in a constructed input.
pub const CONSTRUCTED_IV: usize = 3;
/// Offset of the inner header in a constructed input.
pub const CONSTRUCTED_INNER: usize = CONSTRUCTED_IV + 16;
/// Offset of header sections 2..10 and the body in a constructed input.
pub const CONSTRUCTED_REST: usize = CONSTRUCTED_INNER + INNER_LEN;

/// The header key every constructed packet carries.
const HEADER_KEY: [u8; 32] = [0x5a; 32];
/// Offset of the packet info in the inner header.
const INFO: usize = 49;

/// A broken property, or a harness that could not be set up.
#[derive(Debug, thiserror::Error)]
pub enum Violation {
    /// A harness key did not import.
    #[error("harness key: {0}")]
    Key(#[from] KeyImportError),
    /// The harness could not encrypt its header key.
    #[error("harness RSA: {0}")]
    Rsa(#[from] RsaError),
    /// Re-armouring a dearmoured packet did not give the same packet back.
    #[error("armour round trip changed the packet: {0}")]
    ArmourRoundTrip(String),
    /// Armour text of a packet has an unexpected length.
    #[error("armour is {0} bytes, not {ARMOURED_LEN}")]
    ArmourLength(usize),
    /// Accepted armour was refused, or decoded differently, with CRLF lines.
    #[error("CRLF form of accepted armour: {0}")]
    Crlf(String),
    /// A conf's own text did not parse back.
    #[error("conf text does not parse back: {0}")]
    ConfReparse(ConfError),
    /// A conf whose `KeyID` was set to the MD5 of its key block was still
    /// refused for a key ID mismatch.
    #[error("conf with a fixed KeyID still mismatches")]
    ConfKeyId,
    /// A conf's own text parsed back to a different conf or text.
    #[error("conf round trip changed the conf")]
    ConfRoundTrip,
    /// Peel gave a different outcome than the model of its checks.
    #[error("peel returned {got}, expected {expected}")]
    PeelOutcome {
        /// What peel returned (an error reason or `ok`).
        got: String,
        /// What the model expected.
        expected: String,
    },
    /// An accepted packet's result is inconsistent with its input.
    #[error("accepted packet: {0}")]
    Peeled(&'static str),
}

/// A deterministic stand-in RNG for fuzzing: SHA-256 of a seed and a
/// counter. It claims `CryptoRng` only because the codec asks for one;
/// never use it outside tests and fuzzing.
#[derive(Debug)]
pub struct FuzzRng {
    seed: u64,
    counter: u64,
    buf: [u8; 32],
    pos: usize,
}

impl FuzzRng {
    /// A generator whose output depends only on `seed`.
    pub fn new(seed: u64) -> Self {
        Self {
            seed,
            counter: 0,
            buf: [0; 32],
            pos: 32,
        }
    }
}

impl TryRng for FuzzRng {
    type Error = Infallible;

    fn try_next_u32(&mut self) -> Result<u32, Infallible> {
        let mut b = [0u8; 4];
        self.try_fill_bytes(&mut b)?;
        Ok(u32::from_le_bytes(b))
    }

    fn try_next_u64(&mut self) -> Result<u64, Infallible> {
        let mut b = [0u8; 8];
        self.try_fill_bytes(&mut b)?;
        Ok(u64::from_le_bytes(b))
    }

    fn try_fill_bytes(&mut self, dst: &mut [u8]) -> Result<(), Infallible> {
        for byte in dst {
            if self.pos == self.buf.len() {
                self.buf = sha256(&[&self.seed.to_le_bytes(), &self.counter.to_le_bytes()]);
                self.counter += 1;
                self.pos = 0;
            }
            *byte = self.buf[self.pos];
            self.pos += 1;
        }
        Ok(())
    }
}

impl TryCryptoRng for FuzzRng {}

/// `dearmour` on the input as lossy UTF-8; an accepted packet must armour
/// to [`ARMOURED_LEN`] bytes and come back unchanged, and the same text
/// with CRLF line ends must decode to the same packet. Names the outcome:
/// `accepted` or `refused`.
pub fn check_armour(data: &[u8]) -> Result<&'static str, Violation> {
    let text = String::from_utf8_lossy(data);
    let Ok(packet) = dearmour(&text) else {
        return Ok("refused");
    };
    armour_round_trip(&packet)?;
    let crlf = text.replace('\n', "\r\n");
    if crlf.len() <= crate::armour::MAX_ARMOUR_LEN {
        match dearmour(&crlf) {
            Ok(p) if p == packet => {}
            Ok(_) => return Err(Violation::Crlf("different packet".to_owned())),
            Err(e) => return Err(Violation::Crlf(e.to_string())),
        }
    }
    Ok("accepted")
}

fn armour_round_trip(packet: &Packet) -> Result<(), Violation> {
    let text = armour(packet);
    if text.len() != ARMOURED_LEN {
        return Err(Violation::ArmourLength(text.len()));
    }
    match dearmour(&text) {
        Ok(p) if p == *packet => Ok(()),
        Ok(_) => Err(Violation::ArmourRoundTrip("different packet".to_owned())),
        Err(e) => Err(Violation::ArmourRoundTrip(e.to_string())),
    }
}

/// `RemailerConf::parse` on the input as lossy UTF-8; an accepted conf's
/// `to_text` must parse back to an equal conf with the same text.
///
/// A fuzzer cannot keep the `KeyID` field equal to the MD5 of a mutated
/// key block, so a conf refused for that reason is checked once more with
/// the field fixed, which lets mutated PEM text reach the key parser.
/// Names the outcome: `accepted`, `accepted with fixed KeyID`, `refused`
/// or `refused with fixed KeyID`.
pub fn check_conf(data: &[u8]) -> Result<&'static str, Violation> {
    let text = String::from_utf8_lossy(data);
    match RemailerConf::parse(&text) {
        Ok(conf) => conf_round_trip(&conf).map(|()| "accepted"),
        Err(ConfError::KeyIdMismatch) => match with_key_id_fixed(&text) {
            Some(fixed) => match RemailerConf::parse(&fixed) {
                Ok(conf) => conf_round_trip(&conf).map(|()| "accepted with fixed KeyID"),
                Err(ConfError::KeyIdMismatch) => Err(Violation::ConfKeyId),
                Err(_) => Ok("refused with fixed KeyID"),
            },
            None => Ok("refused"),
        },
        Err(_) => Ok("refused"),
    }
}

/// The conf text with every `KeyID` line set to the MD5 of the key block,
/// split into sections as [`RemailerConf::parse`] does. CRLF is replaced
/// until none is left, so that parsing the result sees the same key block.
fn with_key_id_fixed(text: &str) -> Option<String> {
    let mut text = text.replace("\r\n", "\n");
    while text.contains("\r\n") {
        text = text.replace("\r\n", "\n");
    }
    let sections: Vec<&str> = text.trim_end_matches('\n').split("\n\n").collect();
    let pem = sections.get(1)?;
    let id = KeyId(crate::crypto::digest::md5(pem.as_bytes()));
    let head: Vec<String> = sections
        .first()?
        .lines()
        .map(|l| match l.split_once(": ") {
            Some((k, _)) if k.eq_ignore_ascii_case("keyid") => format!("KeyID: {id}"),
            _ => l.to_owned(),
        })
        .collect();
    let mut out = head.join("\n");
    for s in &sections[1..] {
        out.push_str("\n\n");
        out.push_str(s);
    }
    Some(out)
}

fn conf_round_trip(conf: &RemailerConf) -> Result<(), Violation> {
    let own = conf.to_text();
    let again = RemailerConf::parse(&own).map_err(Violation::ConfReparse)?;
    if again != *conf || again.to_text() != own {
        return Err(Violation::ConfRoundTrip);
    }
    Ok(())
}

/// The peel harness: secret keys and the header key encrypted to each.
pub struct PeelHarness {
    keys: Vec<SecretKey>,
    rsa_blocks: Vec<Vec<u8>>,
    window: TimeWindow,
}

/// What the model of the inner checks expects.
enum Expected {
    Fail(&'static str),
    Forward { next_hop: Vec<u8> },
    Exit,
}

impl PeelHarness {
    /// Imports the secret keys (PEM) and encrypts the header key to each.
    pub fn new(secret_pems: &[&str]) -> Result<Self, Violation> {
        let keys = secret_pems
            .iter()
            .map(|pem| SecretKey::from_pem(pem))
            .collect::<Result<Vec<_>, _>>()?;
        let mut rng = FuzzRng::new(1);
        let rsa_blocks = keys
            .iter()
            .map(|k| k.public().encrypt_header_key(&mut rng, &HEADER_KEY))
            .collect::<Result<Vec<_>, _>>()?;
        Ok(Self {
            keys,
            rsa_blocks,
            window: TimeWindow::new(VECTOR_DAY, MAX_AGE_DAYS),
        })
    }

    /// Runs one input (see the module documentation for its format) and
    /// names the outcome: `forward`, `exit`, a [`PeelError::reason`], or
    /// `short` for an input too short to run.
    pub fn check(&self, data: &[u8]) -> Result<&'static str, Violation> {
        let (Some(mode), Some(flags)) = (data.first(), data.get(1)) else {
            return Ok("short");
        };
        if mode % 2 == 0 {
            self.check_raw(*flags, data.get(2..).unwrap_or_default())
        } else {
            self.check_constructed(*flags, data)
        }
    }

    fn check_raw(&self, flags: u8, bytes: &[u8]) -> Result<&'static str, Violation> {
        let mut packet = packet_from(bytes, 0);
        if flags & RAW_FIX_DIGEST != 0 {
            fix_section_digest(&mut packet);
        }
        // The checks before RSA are simple enough to model here.
        let s1 = packet.section(0);
        let expected = if sha512(&s1[section::DIGESTED]) != s1[section::DIGEST] {
            Some("header_digest")
        } else {
            let id = crate::layout::section_key_id(s1);
            match self.keys.secret_key(&id) {
                None => Some("unknown_key"),
                Some(k)
                    if usize::from(u16::from_le_bytes([s1[16], s1[17]])) != k.public().size() =>
                {
                    Some("rsa_length")
                }
                Some(_) => None,
            }
        };
        let result = peel(
            &packet,
            self.keys.as_slice(),
            &self.window,
            &mut FuzzRng::new(2),
        );
        match (&result, expected) {
            (Err(e), Some(reason)) if e.reason() == reason => Ok(reason),
            (_, Some(reason)) => Err(outcome_mismatch(&result, reason)),
            (Err(e), None) => Ok(e.reason()),
            (Ok(peeled), None) => {
                self.check_peeled(&packet, peeled)?;
                Ok(outcome_name(peeled))
            }
        }
    }

    fn check_constructed(&self, flags: u8, data: &[u8]) -> Result<&'static str, Violation> {
        let Some(key_index) = data
            .get(2)
            .map(|b| usize::from(*b) % self.keys.len().max(1))
        else {
            return Ok("short");
        };
        let (Some(key), Some(rsa)) = (self.keys.get(key_index), self.rsa_blocks.get(key_index))
        else {
            return Ok("short");
        };
        let mut iv = [0u8; 16];
        copy_padded(&mut iv, data.get(CONSTRUCTED_IV..).unwrap_or_default());
        let mut inner = [0u8; INNER_LEN];
        copy_padded(
            &mut inner,
            data.get(CONSTRUCTED_INNER..).unwrap_or_default(),
        );
        let mut packet = packet_from(
            data.get(CONSTRUCTED_REST..).unwrap_or_default(),
            SECTION_LEN,
        );
        self.fix_inner(flags, &mut inner, &packet);

        // Section 1 around the inner header.
        let out = packet.as_bytes_mut();
        out[..SECTION_LEN].fill(0);
        out[section::KEY_ID].copy_from_slice(&key.key_id().0);
        let rsa_len = u16::try_from(rsa.len()).unwrap_or(u16::MAX);
        out[section::RSA_LEN].copy_from_slice(&rsa_len.to_le_bytes());
        out[section::RSA_START..section::RSA_START + rsa.len()].copy_from_slice(rsa);
        out[section::HEADER_IV].copy_from_slice(&iv);
        let mut enc = inner;
        cfb8::encrypt(&HEADER_KEY, &iv, &mut enc);
        out[section::INNER].copy_from_slice(&enc);
        fix_section_digest(&mut packet);

        let expected = self.model(&inner, &packet);
        let result = peel(
            &packet,
            self.keys.as_slice(),
            &self.window,
            &mut FuzzRng::new(2),
        );
        let peeled = match (&result, &expected) {
            (Err(e), Expected::Fail(reason)) if e.reason() == *reason => return Ok(reason),
            (Ok(p), Expected::Forward { .. } | Expected::Exit) => p,
            (_, Expected::Fail(reason)) => return Err(outcome_mismatch(&result, reason)),
            (_, Expected::Forward { .. }) => return Err(outcome_mismatch(&result, "forward")),
            (_, Expected::Exit) => return Err(outcome_mismatch(&result, "exit")),
        };
        self.check_peeled(&packet, peeled)?;
        if peeled.packet_id[..] != inner[..16]
            || peeled.timestamp != u16::from_le_bytes([inner[305], inner[306]])
            || peeled.key_id != key.key_id()
        {
            return Err(Violation::Peeled("packet ID, timestamp or key ID"));
        }
        let hop_key: [u8; 32] = field(&inner, 16);
        let info = &inner[INFO..INFO + 256];
        match (&peeled.outcome, expected) {
            (
                Outcome::Forward {
                    next_hop,
                    packet: next,
                },
                Expected::Forward { next_hop: want },
            ) => {
                if next_hop.as_bytes() != want {
                    return Err(Violation::Peeled("next hop"));
                }
                // Sections 2..10 and the body, decrypted serially.
                let src = packet.as_bytes();
                let got = next.as_bytes();
                for i in 0..9 {
                    let ivi: [u8; 16] = field(info, i * 16);
                    let mut s = src[(i + 1) * SECTION_LEN..(i + 2) * SECTION_LEN].to_vec();
                    cfb8::decrypt_serial(&hop_key, &ivi, &mut s);
                    if got[i * SECTION_LEN..(i + 1) * SECTION_LEN] != s[..] {
                        return Err(Violation::Peeled("forwarded header section"));
                    }
                }
                let mut body = src[BODY_OFFSET..].to_vec();
                cfb8::decrypt_serial(&hop_key, &field(info, 128), &mut body);
                if got[BODY_OFFSET..] != body[..] {
                    return Err(Violation::Peeled("forwarded body"));
                }
                Ok("forward")
            }
            (Outcome::Exit(chunk), Expected::Exit) => {
                let len = usize::from(u16::from_le_bytes([info[35], info[36]]));
                let mut payload = packet.as_bytes()[BODY_OFFSET..BODY_OFFSET + len].to_vec();
                cfb8::decrypt_serial(&hop_key, &field(info, 18), &mut payload);
                let same = chunk.payload == payload
                    && chunk.chunk == info[0]
                    && chunk.chunks == info[1]
                    && chunk.msg_id[..] == info[2..18]
                    && chunk.exit_type.byte() == info[34];
                if same {
                    Ok("exit")
                } else {
                    Err(Violation::Peeled("exit chunk"))
                }
            }
            _ => Err(Violation::Peeled("forward/exit swapped")),
        }
    }

    /// Applies the constructed-mode flags to the plaintext inner header.
    fn fix_inner(&self, flags: u8, inner: &mut [u8; INNER_LEN], packet: &Packet) {
        if flags & FIX_TIMESTAMP != 0 {
            let today = u16::try_from(self.window.today).unwrap_or(u16::MAX);
            inner[305..307].copy_from_slice(&today.to_le_bytes());
        }
        if inner[48] == b'0' && flags & FIX_ANTITAG != 0 {
            let antitag = sha256(&[packet.section(1), packet.body()]);
            inner[INFO + 224..INFO + 256].copy_from_slice(&antitag);
        }
        if inner[48] == b'1' && flags & FIX_PAYLOAD_DIGEST != 0 {
            let len = usize::from(u16::from_le_bytes([inner[INFO + 35], inner[INFO + 36]]));
            if len <= BODY_LEN {
                let mut payload = packet.body()[..len].to_vec();
                cfb8::decrypt_serial(&field(inner, 16), &field(inner, INFO + 18), &mut payload);
                let digest = sha256(&[&payload]);
                inner[INFO + 37..INFO + 69].copy_from_slice(&digest);
            }
        }
        if flags & FIX_INNER_DIGEST != 0 {
            let digest = sha512(&inner[..320]);
            inner[320..].copy_from_slice(&digest);
        }
    }

    /// The inner checks of wire format 5, written out independently.
    fn model(&self, inner: &[u8; INNER_LEN], packet: &Packet) -> Expected {
        if sha512(&inner[..320])[..] != inner[320..] {
            return Expected::Fail("inner_digest");
        }
        let kind = inner[48];
        if kind != b'0' && kind != b'1' {
            return Expected::Fail("malformed");
        }
        let ts = u64::from(u16::from_le_bytes([inner[305], inner[306]]));
        if ts + self.window.max_age_days < self.window.today {
            return Expected::Fail("too_old");
        }
        if ts > self.window.today + self.window.max_future_days {
            return Expected::Fail("from_future");
        }
        let info = &inner[INFO..INFO + 256];
        if kind == b'0' {
            let field = &info[144..144 + NEXT_HOP_LEN];
            let addr: Vec<u8> = field.iter().copied().take_while(|b| *b != 0).collect();
            let tail_nul = field[addr.len()..].iter().all(|b| *b == 0);
            if addr.is_empty() || !tail_nul || !addr.iter().all(u8::is_ascii_graphic) {
                return Expected::Fail("malformed");
            }
            if sha256(&[packet.section(1), packet.body()])[..] != info[224..256] {
                return Expected::Fail("antitag");
            }
            return Expected::Forward { next_hop: addr };
        }
        let (chunk, chunks) = (info[0], info[1]);
        let len = usize::from(u16::from_le_bytes([info[35], info[36]]));
        if chunk == 0 || chunk > chunks || info[34] > 1 || len > BODY_LEN {
            return Expected::Fail("malformed");
        }
        let mut payload = packet.body()[..len].to_vec();
        cfb8::decrypt_serial(&field(inner, 16), &field(info, 18), &mut payload);
        if sha256(&[&payload])[..] != info[37..69] {
            return Expected::Fail("payload_digest");
        }
        Expected::Exit
    }

    /// Properties of any accepted packet.
    fn check_peeled(&self, packet: &Packet, peeled: &Peeled) -> Result<(), Violation> {
        let id: KeyId = crate::layout::section_key_id(packet.section(0));
        if peeled.key_id != id || self.keys.secret_key(&id).is_none() {
            return Err(Violation::Peeled("key ID"));
        }
        let ts = u64::from(peeled.timestamp);
        let w = &self.window;
        if ts + w.max_age_days < w.today || ts > w.today + w.max_future_days {
            return Err(Violation::Peeled("timestamp outside the window"));
        }
        match &peeled.outcome {
            Outcome::Forward { next_hop, packet } => {
                let ok = !next_hop.is_empty()
                    && next_hop.len() <= NEXT_HOP_LEN
                    && next_hop.bytes().all(|b| b.is_ascii_graphic());
                if !ok {
                    return Err(Violation::Peeled("next hop address"));
                }
                armour_round_trip(packet)
            }
            Outcome::Exit(chunk) => {
                if chunk.chunk == 0 || chunk.chunk > chunk.chunks || chunk.payload.len() > BODY_LEN
                {
                    return Err(Violation::Peeled("exit chunk fields"));
                }
                Ok(())
            }
        }
    }
}

fn outcome_name(peeled: &Peeled) -> &'static str {
    match peeled.outcome {
        Outcome::Forward { .. } => "forward",
        Outcome::Exit(_) => "exit",
    }
}

fn outcome_mismatch(result: &Result<Peeled, PeelError>, expected: &str) -> Violation {
    let got = match result {
        Ok(p) => outcome_name(p),
        Err(e) => e.reason(),
    };
    Violation::PeelOutcome {
        got: got.to_owned(),
        expected: expected.to_owned(),
    }
}

/// A packet whose bytes from `offset` are `bytes`, zero-padded or cut.
fn packet_from(bytes: &[u8], offset: usize) -> Packet {
    let mut packet = Packet::zeroed();
    copy_padded(&mut packet.as_bytes_mut()[offset..], bytes);
    packet
}

/// Copies as much of `src` as fits into `dst`; the rest of `dst` is zero.
fn copy_padded(dst: &mut [u8], src: &[u8]) {
    let n = dst.len().min(src.len());
    dst[..n].copy_from_slice(&src[..n]);
    dst[n..].fill(0);
}

/// `N` bytes of `buf` from `at`.
fn field<const N: usize>(buf: &[u8], at: usize) -> [u8; N] {
    let mut out = [0u8; N];
    out.copy_from_slice(&buf[at..at + N]);
    out
}

fn fix_section_digest(packet: &mut Packet) {
    let s1 = &mut packet.as_bytes_mut()[..SECTION_LEN];
    let digest = sha512(&s1[section::DIGESTED]);
    s1[section::DIGEST].copy_from_slice(&digest);
}
