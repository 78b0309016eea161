//! Heap bound of the exit's gzip inflation, measured by a counting global
//! allocator (`peak_alloc`): a bomb is refused without allocating past
//! the limit, at the exit's whole way in (`Exit::prepare_outgoing`) as in
//! `gzip::decompress` itself.
//!
//! The allocator counts every allocation of the process, so this binary
//! holds a single test that runs its cases one after another.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::io::{self, Read, Write};
use std::sync::Arc;
use std::time::UNIX_EPOCH;

use flate2::write::GzEncoder;
use flate2::{Compression, GzBuilder};
use mimix::clock::ManualClock;
use mimix::exit::gzip::{DEFAULT_LIMIT, GzipError, decompress};
use mimix::exit::{Exit, ExitConfig, PolicyError};
use peak_alloc::PeakAlloc;
use rand::SeedableRng;
use rand::rngs::StdRng;

#[global_allocator]
static ALLOC: PeakAlloc = PeakAlloc;

/// Heap the decoder may use besides the output: its state and window,
/// and up to 64 KiB for each of the three optional header fields.
const SLACK: usize = 256 * 1024;

/// A gzip member of a short mail header and `len` zero bytes, written by
/// flate2 through `builder`.
fn bomb(builder: GzBuilder, len: u64) -> Vec<u8> {
    let mut encoder: GzEncoder<Vec<u8>> = builder.write(Vec::new(), Compression::best());
    encoder
        .write_all(b"To: victim@example.org\r\n\r\n")
        .unwrap();
    io::copy(&mut io::repeat(0).take(len), &mut encoder).unwrap();
    encoder.finish().unwrap()
}

/// Runs `f` and returns its result and the highest heap use above the
/// starting point while it ran (its result included).
fn peak_during<T>(f: impl FnOnce() -> T) -> (T, usize) {
    let base = ALLOC.current_usage();
    ALLOC.reset_peak_usage();
    let result = f();
    (result, ALLOC.peak_usage().saturating_sub(base))
}

#[test]
fn bombs_are_refused_without_allocating_past_the_limit() {
    // A 1 KB bomb: almost a megabyte of zeros, refused by an exit whose limit is
    // 512 KiB, before and after the rest of the exit's work.
    let small = bomb(GzBuilder::new(), 950_000);
    assert!(small.len() <= 1024, "the bomb is {} bytes", small.len());
    let limit = 512 * 1024;
    let (result, peak) = peak_during(|| decompress(&small, limit));
    println!(
        "1 KB bomb: {} bytes of gzip for 950026 bytes, limit {limit}: peak heap {peak} bytes",
        small.len()
    );
    assert_eq!(result, Err(GzipError::TooLarge { limit }));
    assert!(peak < SLACK, "bomb peak {peak}");

    let mut config = ExitConfig::default();
    config.policy.from = "Anonymous Remailer <remailer@mix.example>".into();
    config.max_decompressed_size = limit;
    let exit = Exit::new(&config, Arc::new(ManualClock::new(UNIX_EPOCH))).unwrap();
    let rng = &mut StdRng::seed_from_u64(1);
    let (result, peak) = peak_during(|| exit.prepare_outgoing(&small, rng).map(drop));
    println!("1 KB bomb at the exit: peak heap {peak} bytes");
    assert_eq!(
        result,
        Err(PolicyError::Gzip(GzipError::TooLarge { limit }))
    );
    assert!(peak < SLACK, "exit bomb peak {peak}");

    // 100 MiB against the default limit, also with three 64 KiB header
    // fields (flate2's cap on each).
    let big = bomb(GzBuilder::new(), 100 << 20);
    let (result, peak) = peak_during(|| decompress(&big, DEFAULT_LIMIT));
    println!(
        "bomb: {} bytes of gzip for 100 MiB; peak heap {peak} bytes",
        big.len()
    );
    let too_large = Err(GzipError::TooLarge {
        limit: DEFAULT_LIMIT,
    });
    assert_eq!(result, too_large);
    assert!(peak < SLACK, "bomb peak {peak}");
    let field = "a".repeat(65_535);
    let padded = GzBuilder::new()
        .extra(vec![b'x'; 65_535])
        .filename(field.as_str())
        .comment(field.as_str());
    let big = bomb(padded, 100 << 20);
    let (result, peak) = peak_during(|| decompress(&big, DEFAULT_LIMIT));
    println!("bomb with 3 x 64 KiB header fields: peak heap {peak} bytes");
    assert_eq!(result, too_large);
    assert!(peak < SLACK, "padded bomb peak {peak}");

    // Exactly the limit: the output, allocated once, and little more.
    let header_len = 26;
    let full = bomb(GzBuilder::new(), (DEFAULT_LIMIT - header_len) as u64);
    let (result, peak) = peak_during(|| decompress(&full, DEFAULT_LIMIT));
    println!("exactly {DEFAULT_LIMIT} bytes: peak heap {peak} bytes");
    assert_eq!(result.unwrap().len(), DEFAULT_LIMIT);
    assert!(peak >= DEFAULT_LIMIT, "the output itself is counted");
    assert!(peak < DEFAULT_LIMIT + SLACK, "full peak {peak}");

    // The control: reading into a growing Vec would peak far higher, so
    // the allocator does see such growth.
    let (grown, naive_peak) = peak_during(|| {
        let mut out = Vec::new();
        let decoder = flate2::read::GzDecoder::new(&full[..]);
        decoder
            .take(DEFAULT_LIMIT as u64 + 1)
            .read_to_end(&mut out)
            .map(|_| out)
    });
    println!("control, read_to_end into a growing Vec: peak heap {naive_peak} bytes");
    assert_eq!(grown.unwrap().len(), DEFAULT_LIMIT);
    assert!(
        naive_peak > DEFAULT_LIMIT + SLACK,
        "the allocator sees growth"
    );

    // One byte over: refused, nothing kept.
    let over = bomb(GzBuilder::new(), (DEFAULT_LIMIT - header_len + 1) as u64);
    let (result, peak) = peak_during(|| decompress(&over, DEFAULT_LIMIT));
    assert_eq!(result, too_large);
    assert!(peak < SLACK, "limit + 1 peak {peak}");
}
