//! Criterion benchmarks of the codec: peel one hop at each key size, build
//! a 3-hop packet, armour, and the AES-CFB8 decryptors.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use common::*;
use criterion::{Criterion, criterion_group, criterion_main};
use mimix_packet::crypto::cfb8;
use mimix_packet::{ExitType, TimeWindow, armour, build_message, dearmour, peel};
use std::hint::black_box;

fn peel_hop(c: &mut Criterion) {
    let mut g = c.benchmark_group("hop");
    for bits in [4096usize, 2048, 1024] {
        let key = secret(bits);
        let text = armour(&packet_for(&key));
        let keys = vec![key];
        let window = TimeWindow::new(DAY, 14);
        let mut r = rng();
        g.bench_function(format!("full hop rsa{bits} (dearmour+peel+armour)"), |b| {
            b.iter(|| {
                let p = dearmour(black_box(&text)).unwrap();
                let out = peel(&p, &keys, &window, &mut r).unwrap();
                match out.outcome {
                    mimix_packet::Outcome::Forward { packet, .. } => black_box(armour(&packet)),
                    mimix_packet::Outcome::Exit(_) => unreachable!(),
                }
            })
        });
        let ct = {
            let p = dearmour(&text).unwrap();
            let l = keys[0].public().size();
            p.as_bytes()[18..18 + l].to_vec()
        };
        g.bench_function(format!("rsa{bits} decrypt ({})", keys[0].backend()), |b| {
            b.iter(|| keys[0].decrypt_header_key(black_box(&ct)).unwrap())
        });
    }
    g.finish();
}

fn build(c: &mut Criterion) {
    let keys: Vec<_> = [4096usize, 4096, 4096].iter().map(|&b| secret(b)).collect();
    let chain: Vec<_> = keys
        .iter()
        .enumerate()
        .map(|(i, k)| hop(k, &format!("h{i}")))
        .collect();
    let msg = vec![b'm'; 4000];
    let mut r = rng();
    c.bench_function("build 3-hop rsa4096 packet", |b| {
        b.iter(|| build_message(&mut r, &chain, ExitType::Smtp, black_box(&msg), DAY).unwrap())
    });
}

fn armour_and_aes(c: &mut Criterion) {
    let p = packet_for(&secret(1024));
    let text = armour(&p);
    c.bench_function("armour 20480 bytes", |b| b.iter(|| armour(black_box(&p))));
    c.bench_function("dearmour 20480 bytes", |b| {
        b.iter(|| dearmour(black_box(&text)).unwrap())
    });
    let key = [7u8; 32];
    let iv = [9u8; 16];
    let mut buf = vec![0u8; 10240];
    c.bench_function("cfb8 decrypt 10240 bytes, parallel", |b| {
        b.iter(|| cfb8::decrypt(&key, &iv, black_box(&mut buf)))
    });
    c.bench_function("cfb8 decrypt 10240 bytes, serial (cfb8 crate)", |b| {
        b.iter(|| cfb8::decrypt_serial(&key, &iv, black_box(&mut buf)))
    });
    c.bench_function("cfb8 encrypt 10240 bytes (cfb8 crate)", |b| {
        b.iter(|| cfb8::encrypt(&key, &iv, black_box(&mut buf)))
    });
}

criterion_group!(benches, peel_hop, build, armour_and_aes);
criterion_main!(benches);
