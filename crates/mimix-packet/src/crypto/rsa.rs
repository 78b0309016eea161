//! RSA for Mimix: OAEP with SHA-1 and MGF1-SHA-1 and an empty label
//! (PyCrypto's `PKCS1_OAEP` defaults), over the 32-byte header key.
//!
//! Two implementations sit behind this module:
//!
//! * our own secret keys of 2048 to 4096 bits decrypt with `aws-lc-rs`
//!   (constant time, blinded, and about as fast as OpenSSL);
//! * everything else uses the pure-Rust `rsa` 0.10 crate (constant time
//!   since 0.10): encryption to peers of any size from 1024 to 4096 bits,
//!   and decryption with a legacy 1024-bit key an operator imports.
//!
//! A [`KeyId`] is the MD5 of the public key's PEM text exactly as PyCrypto
//! 2.6.1 exports it: SubjectPublicKeyInfo DER, base64 in 64-column lines
//! separated by LF, no trailing newline.

use std::fmt;

use aws_lc_rs::encoding::AsDer;
use aws_lc_rs::rsa::{KeySize, OAEP_SHA1_MGF1SHA1, OaepPrivateDecryptingKey, PrivateDecryptingKey};
use rand_core::CryptoRng;
use rsa::pkcs1::{DecodeRsaPrivateKey, EncodeRsaPrivateKey};
use rsa::pkcs8::{
    DecodePrivateKey, DecodePublicKey, EncodePrivateKey, EncodePublicKey, LineEnding,
};
use rsa::traits::PublicKeyParts;
use sha1::Sha1;
use zeroize::Zeroizing;

use super::digest::md5;

/// The smallest modulus accepted, in bits.
pub const MIN_BITS: usize = 1024;
/// The largest modulus accepted, in bits (the RSA block holds 512 bytes).
pub const MAX_BITS: usize = 4096;
/// The smallest modulus decrypted by `aws-lc-rs`.
const AWS_LC_MIN_BITS: usize = 2048;
/// Length of the RSA-encrypted header key.
pub const HEADER_KEY_LEN: usize = 32;

/// A 16-byte key identifier: the MD5 of the public key's PEM text.
#[derive(Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct KeyId(pub [u8; 16]);

impl KeyId {
    /// Lowercase hex, as in `remailer-conf.txt`.
    pub fn to_hex(&self) -> String {
        self.0.iter().map(|b| format!("{b:02x}")).collect()
    }

    /// Parses 32 hex digits.
    pub fn from_hex(s: &str) -> Option<Self> {
        let bytes = s.as_bytes();
        if bytes.len() != 32 {
            return None;
        }
        let mut out = [0u8; 16];
        for (o, pair) in out.iter_mut().zip(bytes.chunks_exact(2)) {
            let hi = (pair[0] as char).to_digit(16)?;
            let lo = (pair[1] as char).to_digit(16)?;
            *o = (hi * 16 + lo) as u8;
        }
        Some(Self(out))
    }
}

impl fmt::Debug for KeyId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "KeyId({})", self.to_hex())
    }
}

impl fmt::Display for KeyId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.to_hex())
    }
}

/// Why a key could not be imported.
#[derive(Debug, thiserror::Error)]
pub enum KeyImportError {
    /// The text is not a PEM RSA key in a format we read.
    #[error("not a PEM RSA key (PKCS#1 or PKCS#8 private, SPKI public)")]
    NotPem,
    /// The key's modulus is outside the range the format supports.
    #[error("RSA key of {0} bits is outside the supported {MIN_BITS} to {MAX_BITS} bits")]
    UnsupportedSize(usize),
    /// The key was parsed but the decryption backend refused it.
    #[error("RSA key rejected by the decryption backend")]
    Rejected,
}

/// Why a key could not be generated.
#[derive(Debug, thiserror::Error)]
pub enum KeyGenError {
    /// Only 2048, 3072 and 4096-bit keys are generated.
    #[error("cannot generate a {0}-bit key: choose 2048, 3072 or 4096")]
    UnsupportedSize(usize),
    /// The generator or the PEM encoder failed.
    #[error("RSA key generation failed")]
    Failed,
}

/// Why an RSA operation failed.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum RsaError {
    /// The ciphertext length is not the modulus size.
    #[error("RSA ciphertext length {got} does not match the {expected}-byte key")]
    Length {
        /// Bytes given.
        got: usize,
        /// The modulus size in bytes.
        expected: usize,
    },
    /// OAEP decoding failed (a tampered or foreign ciphertext).
    #[error("RSA-OAEP decryption failed")]
    Decrypt,
    /// The plaintext is not a 32-byte header key.
    #[error("RSA plaintext is {0} bytes, not a 32-byte key")]
    PlaintextLength(usize),
    /// Encryption failed (the key is unusable).
    #[error("RSA-OAEP encryption failed")]
    Encrypt,
}

/// A peer's (or our own) public key, with its PEM text and key ID.
#[derive(Clone)]
pub struct PublicKey {
    key: rsa::PublicKey,
    pem: String,
    id: KeyId,
}

impl fmt::Debug for PublicKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("PublicKey")
            .field("id", &self.id)
            .field("bits", &self.bits())
            .finish()
    }
}

impl PartialEq for PublicKey {
    fn eq(&self, other: &Self) -> bool {
        self.pem == other.pem
    }
}

impl PublicKey {
    fn from_rsa(key: rsa::PublicKey) -> Result<Self, KeyImportError> {
        let bits = key.size() * 8;
        if !(MIN_BITS..=MAX_BITS).contains(&bits) {
            return Err(KeyImportError::UnsupportedSize(bits));
        }
        let mut pem = key
            .to_public_key_pem(LineEnding::LF)
            .map_err(|_| KeyImportError::NotPem)?;
        // PyCrypto's export has no trailing newline.
        while pem.ends_with('\n') {
            pem.pop();
        }
        let id = KeyId(md5(pem.as_bytes()));
        Ok(Self { key, pem, id })
    }

    /// Parses an SPKI (`BEGIN PUBLIC KEY`) PEM. The key ID is computed over
    /// our canonical re-encoding, which is byte for byte the reference's.
    pub fn from_pem(pem: &str) -> Result<Self, KeyImportError> {
        let key =
            rsa::PublicKey::from_public_key_pem(pem.trim()).map_err(|_| KeyImportError::NotPem)?;
        Self::from_rsa(key)
    }

    /// The PEM text exactly as the reference exports it (no trailing newline).
    pub fn pem(&self) -> &str {
        &self.pem
    }

    /// The key ID: MD5 of [`Self::pem`].
    pub fn key_id(&self) -> KeyId {
        self.id
    }

    /// Modulus size in bits.
    pub fn bits(&self) -> usize {
        self.key.size() * 8
    }

    /// Modulus size in bytes: the RSA ciphertext length.
    pub fn size(&self) -> usize {
        self.key.size()
    }

    /// OAEP-encrypts a header key to this public key.
    pub fn encrypt_header_key<R: CryptoRng + ?Sized>(
        &self,
        rng: &mut R,
        header_key: &[u8; HEADER_KEY_LEN],
    ) -> Result<Vec<u8>, RsaError> {
        self.key
            .oaep_encrypt_with_rng::<Sha1, _>(rng, header_key)
            .map_err(|_| RsaError::Encrypt)
    }
}

enum Decryptor {
    /// 2048 to 4096 bits: aws-lc-rs.
    AwsLc(OaepPrivateDecryptingKey),
    /// 1024 to 2047 bits (legacy keys an operator imports): `rsa` 0.10,
    /// which zeroizes the key on drop.
    Legacy(Box<rsa::PrivateKey>),
}

/// One of our secret keys, ready to decrypt header keys.
///
/// The key material lives inside the backend's own types, which clear it
/// when dropped; no copy of it is kept here.
pub struct SecretKey {
    public: PublicKey,
    decryptor: Decryptor,
}

impl fmt::Debug for SecretKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("SecretKey")
            .field("id", &self.public.id)
            .finish_non_exhaustive()
    }
}

impl SecretKey {
    /// Reads a private key in PKCS#1 (`BEGIN RSA PRIVATE KEY`, as the
    /// reference stores them) or PKCS#8 (`BEGIN PRIVATE KEY`) PEM.
    pub fn from_pem(pem: &str) -> Result<Self, KeyImportError> {
        let pem = pem.trim();
        let key = if pem.starts_with("-----BEGIN RSA PRIVATE KEY-----") {
            rsa::PrivateKey::from_pkcs1_pem(pem).map_err(|_| KeyImportError::NotPem)?
        } else {
            rsa::PrivateKey::from_pkcs8_pem(pem).map_err(|_| KeyImportError::NotPem)?
        };
        Self::from_rsa(key)
    }

    fn from_rsa(key: rsa::PrivateKey) -> Result<Self, KeyImportError> {
        let public = PublicKey::from_rsa(key.to_public_key())?;
        let bits = public.bits();
        let decryptor = if bits >= AWS_LC_MIN_BITS {
            // aws-lc-rs reads PKCS#8 DER; the document zeroizes on drop.
            let der = key.to_pkcs8_der().map_err(|_| KeyImportError::Rejected)?;
            let pk = PrivateDecryptingKey::from_pkcs8(der.as_bytes())
                .map_err(|_| KeyImportError::Rejected)?;
            Decryptor::AwsLc(
                OaepPrivateDecryptingKey::new(pk).map_err(|_| KeyImportError::Rejected)?,
            )
        } else {
            Decryptor::Legacy(Box::new(key))
        };
        Ok(Self { public, decryptor })
    }

    /// Generates a new key of `bits` (2048, 3072 or 4096) and returns it with
    /// its PKCS#1 PEM (the reference's storage format, plus a final LF).
    pub fn generate(bits: usize) -> Result<(Self, Zeroizing<String>), KeyGenError> {
        let size = match bits {
            2048 => KeySize::Rsa2048,
            3072 => KeySize::Rsa3072,
            4096 => KeySize::Rsa4096,
            other => return Err(KeyGenError::UnsupportedSize(other)),
        };
        let generated = PrivateDecryptingKey::generate(size).map_err(|_| KeyGenError::Failed)?;
        let der = AsDer::<aws_lc_rs::encoding::Pkcs8V1Der>::as_der(&generated)
            .map_err(|_| KeyGenError::Failed)?;
        let der = Zeroizing::new(der.as_ref().to_vec());
        let key = rsa::PrivateKey::from_pkcs8_der(&der).map_err(|_| KeyGenError::Failed)?;
        let pem = key
            .to_pkcs1_pem(LineEnding::LF)
            .map_err(|_| KeyGenError::Failed)?;
        let pem = Zeroizing::new(pem.as_str().to_owned());
        let secret = Self::from_rsa(key).map_err(|_| KeyGenError::Failed)?;
        Ok((secret, pem))
    }

    /// The matching public key.
    pub fn public(&self) -> &PublicKey {
        &self.public
    }

    /// The key ID.
    pub fn key_id(&self) -> KeyId {
        self.public.id
    }

    /// Which backend decrypts with this key (for diagnostics and benches).
    pub fn backend(&self) -> &'static str {
        match self.decryptor {
            Decryptor::AwsLc(_) => "aws-lc-rs",
            Decryptor::Legacy(_) => "rsa",
        }
    }

    /// Decrypts an RSA block into the 32-byte header key.
    pub fn decrypt_header_key(
        &self,
        ciphertext: &[u8],
    ) -> Result<Zeroizing<[u8; HEADER_KEY_LEN]>, RsaError> {
        let expected = self.public.size();
        if ciphertext.len() != expected {
            return Err(RsaError::Length {
                got: ciphertext.len(),
                expected,
            });
        }
        let mut out = Zeroizing::new([0u8; HEADER_KEY_LEN]);
        match &self.decryptor {
            Decryptor::AwsLc(key) => {
                let mut buf = Zeroizing::new(vec![0u8; expected]);
                let plain = key
                    .decrypt(&OAEP_SHA1_MGF1SHA1, ciphertext, &mut buf, None)
                    .map_err(|_| RsaError::Decrypt)?;
                if plain.len() != HEADER_KEY_LEN {
                    return Err(RsaError::PlaintextLength(plain.len()));
                }
                out.copy_from_slice(plain);
            }
            Decryptor::Legacy(key) => {
                // Blinded with the operating system's RNG.
                let plain = Zeroizing::new(
                    key.oaep_decrypt::<Sha1>(ciphertext)
                        .map_err(|_| RsaError::Decrypt)?,
                );
                if plain.len() != HEADER_KEY_LEN {
                    return Err(RsaError::PlaintextLength(plain.len()));
                }
                out.copy_from_slice(&plain);
            }
        }
        Ok(out)
    }
}
