//! The performance goal, measured side by side in one run: a full hop
//! (dearmour, RSA, AES over the whole packet, digests, re-armour) against
//! the floor, OpenSSL's RSA private operation (OAEP decrypt) alone, at
//! RSA-4096, 2048 and 1024. Prints a ratio table.
//!
//! The two are measured in alternating rounds so that machine noise hits
//! both alike; each figure is the median of the rounds.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::hint::black_box;
use std::time::{Duration, Instant};

use common::*;
use mimix_packet::{Outcome, TimeWindow, armour, dearmour, peel};
use openssl::pkey::Private;
use openssl::rsa::{Padding, Rsa};

const ROUNDS: usize = 15;

fn per_op(iters: u32, mut f: impl FnMut()) -> Duration {
    let t = Instant::now();
    for _ in 0..iters {
        f();
    }
    t.elapsed() / iters
}

fn median(mut v: Vec<Duration>) -> Duration {
    v.sort();
    v[v.len() / 2]
}

fn main() {
    // `cargo bench` passes --bench; `cargo test --benches` does not: run
    // once quickly then.
    let quick = !std::env::args().any(|a| a == "--bench");
    let rounds = if quick { 1 } else { ROUNDS };
    println!(
        "\nFull hop vs OpenSSL RSA private decrypt (OAEP), median of {rounds} alternating rounds"
    );
    println!(
        "{:>9} {:>14} {:>14} {:>8}",
        "key", "openssl rsa", "mimix hop", "ratio"
    );
    for bits in [4096usize, 2048, 1024] {
        let key = secret(bits);
        let text = armour(&packet_for(&key));
        let ct = dearmour(&text).unwrap().as_bytes()[18..18 + key.public().size()].to_vec();
        let ossl: Rsa<Private> = Rsa::private_key_from_pem(pem(bits).as_bytes()).unwrap();
        let mut out = vec![0u8; ossl.size() as usize];
        let keys = vec![key];
        let window = TimeWindow::new(DAY, 14);
        let mut r = rng();
        let iters = match (quick, bits) {
            (true, _) => 2,
            (_, 4096) => 40,
            (_, 2048) => 200,
            _ => 800,
        };
        let (mut floor, mut hop) = (Vec::new(), Vec::new());
        for _ in 0..rounds {
            floor.push(per_op(iters, || {
                let n = ossl
                    .private_decrypt(black_box(&ct), &mut out, Padding::PKCS1_OAEP)
                    .unwrap();
                assert_eq!(n, 32);
            }));
            hop.push(per_op(iters, || {
                let p = dearmour(black_box(&text)).unwrap();
                match peel(&p, &keys, &window, &mut r).unwrap().outcome {
                    Outcome::Forward { packet, .. } => {
                        black_box(armour(&packet));
                    }
                    Outcome::Exit(_) => unreachable!(),
                }
            }));
        }
        let (f, h) = (median(floor), median(hop));
        println!(
            "{:>9} {:>11.3} ms {:>11.3} ms {:>7.2}x",
            format!("RSA-{bits}"),
            f.as_secs_f64() * 1e3,
            h.as_secs_f64() * 1e3,
            h.as_secs_f64() / f.as_secs_f64()
        );
    }
    println!("(goal at RSA-4096: ratio <= 1.10)");
}
