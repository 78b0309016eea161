#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::io::Write;

use flate2::write::GzEncoder;
use flate2::{Compression, Crc, GzBuilder};
use proptest::prelude::*;

use super::*;
use crate::sender::compress;

/// The header `compress` writes.
const HEADER: [u8; 10] = [0x1f, 0x8b, 8, 0, 0, 0, 0, 0, 2, 255];

const FTEXT: u8 = 1;
const FHCRC: u8 = 2;
const FEXTRA: u8 = 4;
const FNAME: u8 = 8;
const FCOMMENT: u8 = 16;

const TEXT: &[u8] = b"Subject: test\r\n\r\nThe quick brown fox jumps over the lazy dog.\r\n";

/// A member written by flate2's own encoder through `builder`.
fn flate2_member(builder: GzBuilder, message: &[u8]) -> Vec<u8> {
    let mut encoder = builder.write(Vec::new(), Compression::best());
    encoder.write_all(message).unwrap();
    encoder.finish().unwrap()
}

/// `compress(message)` with its header replaced by `header`.
fn with_header(header: &[u8], message: &[u8]) -> Vec<u8> {
    let mut out = header.to_vec();
    out.extend_from_slice(&compress(message)[HEADER.len()..]);
    out
}

/// The header `compress` writes with the flags `flg`, followed by `fields`
/// and, if `flg` has FHCRC, the header CRC.
fn header_with(flg: u8, fields: &[u8]) -> Vec<u8> {
    let mut header = HEADER.to_vec();
    header[3] = flg;
    header.extend_from_slice(fields);
    if flg & FHCRC != 0 {
        let mut crc = Crc::new();
        crc.update(&header);
        header.extend_from_slice(&crc.sum().to_le_bytes()[..2]);
    }
    header
}

#[test]
fn recognises_the_magic_and_method() {
    assert!(is_gzip(&compress(b"")));
    assert!(is_gzip(&[0x1f, 0x8b, 8]));
    for not in [
        &b""[..],
        &[0x1f],
        &[0x1f, 0x8b],
        &[0x1f, 0x8b, 7],
        &[0x8b, 0x1f, 8],
        TEXT,
    ] {
        assert!(!is_gzip(not), "{not:?}");
    }
}

#[test]
fn header_leaks_nothing_and_matches_flate2() {
    let gz = compress(TEXT);
    assert_eq!(gz[..10], [0x1f, 0x8b, 8, 0, 0, 0, 0, 0, 2, 255]);
    let theirs = flate2_member(GzBuilder::new(), TEXT);
    assert_eq!(theirs[..10], gz[..10]);
    let explicit = flate2_member(GzBuilder::new().mtime(0).operating_system(255), TEXT);
    assert_eq!(explicit[..10], gz[..10]);
}

#[test]
fn round_trips_and_reads_flate2_output() {
    for message in [&b""[..], b"x", TEXT, &[0u8; 100_000]] {
        assert_eq!(
            decompress(&compress(message), DEFAULT_LIMIT).unwrap(),
            message
        );
        let theirs = flate2_member(GzBuilder::new(), message);
        assert_eq!(decompress(&theirs, DEFAULT_LIMIT).unwrap(), message);
    }
}

#[test]
fn compress_is_readable_by_flate2() {
    let message = TEXT.repeat(500);
    let mut out = Vec::new();
    flate2::read::GzDecoder::new(&compress(&message)[..])
        .read_to_end(&mut out)
        .unwrap();
    assert_eq!(out, message);
}

#[test]
fn exact_limit_is_accepted_one_more_is_refused() {
    let message = TEXT.repeat(300);
    let gz = compress(&message);
    let len = message.len();
    assert_eq!(decompress(&gz, len).unwrap(), message);
    assert_eq!(decompress(&gz, len + 1).unwrap(), message);
    assert_eq!(
        decompress(&gz, len - 1),
        Err(GzipError::TooLarge { limit: len - 1 })
    );
    assert_eq!(decompress(&gz, 0), Err(GzipError::TooLarge { limit: 0 }));
    assert_eq!(decompress(&compress(b""), 0).unwrap(), b"");
    assert_eq!(
        decompress(&compress(b"x"), 0),
        Err(GzipError::TooLarge { limit: 0 })
    );
}

#[test]
fn a_bomb_is_refused() {
    let mut encoder = GzEncoder::new(Vec::new(), Compression::best());
    std::io::copy(&mut std::io::repeat(0).take(100 << 20), &mut encoder).unwrap();
    let bomb = encoder.finish().unwrap();
    assert!(bomb.len() < 200_000, "{}", bomb.len());
    let err = decompress(&bomb, DEFAULT_LIMIT).unwrap_err();
    assert_eq!(
        err,
        GzipError::TooLarge {
            limit: DEFAULT_LIMIT
        }
    );
    assert_eq!(err.reason(), "too_large");
}

#[test]
fn every_truncation_is_refused() {
    let gz = compress(&TEXT.repeat(20));
    for len in 0..gz.len() {
        let expected = if len < MAGIC.len() {
            GzipError::BadHeader
        } else {
            GzipError::Truncated
        };
        assert_eq!(
            decompress(&gz[..len], DEFAULT_LIMIT),
            Err(expected),
            "{len}"
        );
    }
}

#[test]
fn checksum_and_length_mismatches_are_corrupt() {
    let gz = compress(TEXT);
    let end = gz.len();
    for at in [end - 8, end - 5, end - 4, end - 1] {
        let mut bad = gz.clone();
        bad[at] ^= 0x01;
        assert_eq!(
            decompress(&bad, DEFAULT_LIMIT),
            Err(GzipError::Corrupt),
            "{at}"
        );
    }
}

#[test]
fn invalid_deflate_data_is_corrupt() {
    let mut gz = compress(TEXT);
    gz[HEADER.len()] = 0b111; // final block of the reserved type 3
    assert_eq!(decompress(&gz, DEFAULT_LIMIT), Err(GzipError::Corrupt));
}

#[test]
fn bad_headers_are_refused() {
    let gz = compress(TEXT);
    let mut method = gz.clone();
    method[2] = 7;
    let mut reserved = gz.clone();
    reserved[3] = 0x20;
    let mut wrong_hcrc = with_header(&header_with(FHCRC, &[]), TEXT);
    wrong_hcrc[10] ^= 0xff;
    let long_name = with_header(&header_with(FNAME, &[b'a'; 70_000]), TEXT);
    for bad in [&method[..], &reserved, &wrong_hcrc, &long_name, TEXT, &[]] {
        let err = decompress(bad, DEFAULT_LIMIT).unwrap_err();
        assert_eq!(err, GzipError::BadHeader);
        assert_eq!(err.reason(), "bad_header");
    }
}

#[test]
fn optional_header_fields_are_skipped() {
    let builder = GzBuilder::new()
        .filename("secret-plans.txt")
        .comment("a comment")
        .extra(vec![b'A', b'B', 3, 0, 1, 2, 3])
        .mtime(1_700_000_000)
        .operating_system(3);
    assert_eq!(
        decompress(&flate2_member(builder, TEXT), DEFAULT_LIMIT).unwrap(),
        TEXT
    );

    let fields = [&[7, 0][..], b"ABCDEFG", b"name.txt\0", b"comment\0"].concat();
    let all = FTEXT | FHCRC | FEXTRA | FNAME | FCOMMENT;
    let gz = with_header(&header_with(all, &fields), TEXT);
    assert_eq!(decompress(&gz, DEFAULT_LIMIT).unwrap(), TEXT);
}

#[test]
fn trailing_bytes_are_refused() {
    let gz = compress(TEXT);
    for tail in [&b"x"[..], &[0; 8], &[0x1f, 0x8b], b"\n"] {
        let err = decompress(&[&gz[..], tail].concat(), DEFAULT_LIMIT).unwrap_err();
        assert_eq!(err, GzipError::TrailingData, "{tail:?}");
    }
}

#[test]
fn a_second_member_is_refused() {
    let two = [compress(TEXT), compress(TEXT)].concat();
    let err = decompress(&two, DEFAULT_LIMIT).unwrap_err();
    assert_eq!(err, GzipError::MultipleMembers);
    assert_eq!(err.reason(), "multi_member");
}

#[test]
fn reasons_are_distinct() {
    let all = [
        GzipError::BadHeader,
        GzipError::Truncated,
        GzipError::Corrupt,
        GzipError::TooLarge { limit: 1 },
        GzipError::MultipleMembers,
        GzipError::TrailingData,
    ];
    let reasons: std::collections::HashSet<_> = all.iter().map(GzipError::reason).collect();
    assert_eq!(reasons.len(), all.len());
}

#[test]
fn peek_reads_only_the_start() {
    let message = [TEXT, &[b'x'; 200_000][..]].concat();
    let gz = compress(&message);
    assert_eq!(peek(&gz, 10), &message[..10]);
    assert_eq!(peek(&gz, PEEK_LEN).len(), PEEK_LEN);
    assert_eq!(peek(TEXT, PEEK_LEN), b"");
    // A truncated stream yields what could be inflated.
    let cut = &gz[..gz.len() / 2];
    assert!(message.starts_with(&peek(cut, PEEK_LEN)));
}

#[test]
fn packets_are_counted_per_chunk() {
    use crate::sender::compress::{Compressed, packets};
    assert_eq!(packets(0), 1);
    assert_eq!(packets(10_240), 1);
    assert_eq!(packets(10_241), 2);
    assert_eq!(packets(30_000), 3);
    let c = Compressed::of(&TEXT.repeat(1000));
    assert_eq!(c.plain_len, TEXT.len() * 1000);
    assert_eq!((c.packets_before(), c.packets_after()), (7, 1));
    assert_eq!(c.packets_saved(), 6);
}

const WORDS: &[&str] = &[
    "the", "remailer", "message", "and", "of", "a", "to", "in", "is", "that", "for", "packet",
    "chain", "\r\n", "exit", "it", "with", "as", "was", "on", "onion", "be", "at", "by",
    "\r\n\r\n",
];

fn text() -> impl Strategy<Value = Vec<u8>> {
    prop::collection::vec(prop::sample::select(WORDS), 0..40_000)
        .prop_map(|words| words.join(" ").into_bytes())
}

fn message() -> impl Strategy<Value = Vec<u8>> {
    prop_oneof![prop::collection::vec(any::<u8>(), 0..200_000), text()]
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(48))]

    #[test]
    fn compress_round_trips(message in message()) {
        let gz = compress(&message);
        prop_assert!(is_gzip(&gz));
        prop_assert_eq!(decompress(&gz, DEFAULT_LIMIT).unwrap(), message);
    }

    /// A corrupted stream gives an error, or (when the corruption left it
    /// valid, such as a changed MTIME) the original message: CRC-32 makes
    /// anything else a 2^-32 event.
    #[test]
    fn corruption_never_panics(
        message in text(),
        flips in prop::collection::vec((any::<prop::sample::Index>(), 1..=255u8), 1..4),
        cut in any::<prop::sample::Index>(),
        truncate in any::<bool>(),
        limit in 0..100_000usize,
    ) {
        let mut gz = compress(&message);
        for (at, mask) in flips {
            let at = at.index(gz.len());
            gz[at] ^= mask;
        }
        if truncate {
            gz.truncate(cut.index(gz.len()));
        }
        if let Ok(out) = decompress(&gz, limit) {
            prop_assert!(out.len() <= limit);
            prop_assert_eq!(out, message);
        }
    }

    #[test]
    fn arbitrary_bytes_never_panic(
        bytes in prop::collection::vec(any::<u8>(), 0..4_096),
        magic in any::<bool>(),
    ) {
        let input = if magic { [&MAGIC[..], &bytes].concat() } else { bytes };
        if let Ok(out) = decompress(&input, 10_000) {
            prop_assert!(out.len() <= 10_000);
        }
        if !is_gzip(&input) {
            prop_assert_eq!(decompress(&input, DEFAULT_LIMIT), Err(GzipError::BadHeader));
        }
    }
}
