//! AES-256 in CFB mode with 8-bit segments (CFB-8), as PyCrypto's
//! `AES.MODE_CFB` does by default.
//!
//! CFB-8 runs the block cipher once per byte. Encryption is inherently
//! serial (each keystream block depends on the previous ciphertext byte) and
//! uses the `cfb8` crate. Decryption is not: the keystream byte for position
//! `i` is the first byte of `AES(window_i)`, where `window_i` is the 16 bytes
//! of `IV || ciphertext` starting at `i`, and the whole ciphertext is known
//! up front. [`decrypt`] builds those windows in batches and encrypts each
//! batch with the block cipher's pipelined multi-block API, which runs
//! several AES instances in flight at once.

use aes::Aes256;
use aes::cipher::{Block, BlockCipherEncrypt, KeyInit, KeyIvInit};

/// An AES-256 key.
pub type Key = [u8; 32];
/// A CFB initialisation vector.
pub type Iv = [u8; 16];

/// How many windows are encrypted per batch: big enough to keep the
/// pipeline full, small enough to stay in the L1 cache.
const BATCH: usize = 64;

/// Encrypts `buf` in place.
pub fn encrypt(key: &Key, iv: &Iv, buf: &mut [u8]) {
    ::cfb8::Encryptor::<Aes256>::new(key.into(), iv.into()).encrypt(buf);
}

/// Decrypts `buf` in place with the serial reference algorithm of the
/// `cfb8` crate. Used to cross-check [`decrypt`].
pub fn decrypt_serial(key: &Key, iv: &Iv, buf: &mut [u8]) {
    ::cfb8::Decryptor::<Aes256>::new(key.into(), iv.into()).decrypt(buf);
}

/// Decrypts `buf` in place, computing the keystream in parallel batches.
pub fn decrypt(key: &Key, iv: &Iv, buf: &mut [u8]) {
    let cipher = Aes256::new(key.into());
    // The previous 16 ciphertext bytes for position `i` are
    // `(IV || ciphertext)[i .. i + 16]`. Decrypting in place destroys the
    // ciphertext, so process front to back while keeping the 16 ciphertext
    // bytes preceding the current batch in `prev`.
    let mut prev: [u8; 16] = *iv;
    let mut blocks = [Block::<Aes256>::default(); BATCH];
    let mut start = 0;
    while start < buf.len() {
        let n = BATCH.min(buf.len() - start);
        // Ciphertext of this batch plus the 16 bytes before it.
        let mut ctx = [0u8; 16 + BATCH];
        ctx[..16].copy_from_slice(&prev);
        ctx[16..16 + n].copy_from_slice(&buf[start..start + n]);
        for (i, block) in blocks[..n].iter_mut().enumerate() {
            block.copy_from_slice(&ctx[i..i + 16]);
        }
        cipher.encrypt_blocks(&mut blocks[..n]);
        for (i, block) in blocks[..n].iter().enumerate() {
            buf[start + i] ^= block[0];
        }
        prev.copy_from_slice(&ctx[n..n + 16]);
        start += n;
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;
    use proptest::prelude::*;

    proptest! {
        #[test]
        fn parallel_decrypt_matches_cfb8_crate(
            key in any::<[u8; 32]>(),
            iv in any::<[u8; 16]>(),
            data in proptest::collection::vec(any::<u8>(), 0..3000),
        ) {
            let mut ct = data.clone();
            encrypt(&key, &iv, &mut ct);
            let mut serial = ct.clone();
            decrypt_serial(&key, &iv, &mut serial);
            let mut parallel = ct.clone();
            decrypt(&key, &iv, &mut parallel);
            prop_assert_eq!(&serial, &data);
            prop_assert_eq!(&parallel, &data);
        }

        #[test]
        fn parallel_decrypt_of_random_bytes_matches(
            key in any::<[u8; 32]>(),
            iv in any::<[u8; 16]>(),
            data in proptest::collection::vec(any::<u8>(), 0..600),
        ) {
            let mut a = data.clone();
            decrypt_serial(&key, &iv, &mut a);
            let mut b = data;
            decrypt(&key, &iv, &mut b);
            prop_assert_eq!(a, b);
        }
    }
}
