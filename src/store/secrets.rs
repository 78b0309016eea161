//! Node-local secrets kept in the store (keys of keyed hashes that must
//! stay the same across restarts), and the keyed hash itself.

use hmac::{KeyInit, Mac};
use rand::CryptoRng;

use super::{Store, StoreError};

type HmacSha256 = hmac::Hmac<sha2::Sha256>;

/// Prefix of a secret's metadata name.
const PREFIX: &str = "secret/";

/// HMAC-SHA256 under `key` of `parts`, each prefixed with its length so
/// that no two different lists of parts hash alike.
pub fn keyed_hash(key: &[u8; 32], parts: &[&[u8]]) -> [u8; 32] {
    // HMAC pads a short key with zeros to the block size: the same MAC.
    let mut block = [0u8; 64];
    block[..32].copy_from_slice(key);
    let mut mac = <HmacSha256 as KeyInit>::new(&block.into());
    for p in parts {
        let len = u64::try_from(p.len()).unwrap_or(u64::MAX);
        mac.update(&len.to_be_bytes());
        mac.update(p);
    }
    mac.finalize().into_bytes().into()
}

impl Store {
    /// The 32-byte secret `name`, drawn from `rng` and stored durably the
    /// first time it is asked for. Concurrent first calls agree: the
    /// secret is made under the write lock.
    pub fn secret<R: CryptoRng + ?Sized>(
        &self,
        name: &str,
        rng: &mut R,
    ) -> Result<[u8; 32], StoreError> {
        let key = format!("{PREFIX}{name}");
        if let Some(s) = self.read_secret(&key)? {
            return Ok(s);
        }
        let mut tx = self.tx()?;
        if let Some(s) = self.read_secret(&key)? {
            return Ok(s);
        }
        let mut s = [0u8; 32];
        rng.fill_bytes(&mut s);
        let e = tx.engine.clone();
        tx.batch.insert(&e.ks.meta, key.as_str(), s);
        tx.commit()?;
        Ok(s)
    }

    fn read_secret(&self, key: &str) -> Result<Option<[u8; 32]>, StoreError> {
        match self.meta_get(key)? {
            None => Ok(None),
            Some(v) => <[u8; 32]>::try_from(v.as_slice())
                .map(Some)
                .map_err(|_| self.corrupt("secret", "not 32 bytes")),
        }
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use rand::SeedableRng;
    use rand::rngs::StdRng;

    use super::*;

    #[test]
    fn keyed_hash_is_hmac_sha256_of_the_length_prefixed_parts() {
        let key: [u8; 32] = std::array::from_fn(|i| i as u8);
        // Python: hmac.new(bytes(range(32)), (3).to_bytes(8, 'big') + b'abc', sha256)
        assert_eq!(
            hex::encode(keyed_hash(&key, &[b"abc"])),
            "8dd9401ea4e5af73c5d169c6484b3c13ab4b9e48b9a8c682b06bcd74e3d5bd6f"
        );
        assert_ne!(
            keyed_hash(&key, &[b"ab", b"c"]),
            keyed_hash(&key, &[b"a", b"bc"])
        );
    }

    #[test]
    fn a_secret_is_made_once_and_kept() {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(dir.path()).unwrap();
        let first = store.secret("x", &mut StdRng::seed_from_u64(1)).unwrap();
        let again = store.secret("x", &mut StdRng::seed_from_u64(2)).unwrap();
        assert_eq!(first, again);
        assert_ne!(
            first,
            store.secret("y", &mut StdRng::seed_from_u64(2)).unwrap()
        );
        drop(store);
        let store = Store::open(dir.path()).unwrap();
        assert_eq!(
            store.secret("x", &mut StdRng::seed_from_u64(3)).unwrap(),
            first
        );
    }
}
