//! The cryptographic primitives a Mimix hop uses, behind one small API:
//!
//! * [`rsa`]: RSA-OAEP (SHA-1, MGF1-SHA-1, empty label) for the 32-byte
//!   header keys, key generation, PEM import and export, key IDs.
//! * [`cfb8`]: AES-256 in CFB mode with 8-bit segments, with a parallel
//!   decryptor.
//! * [`digest`]: the SHA-256, SHA-512 and MD5 digests of the format.

pub mod cfb8;
pub mod digest;
pub mod rsa;

pub use self::rsa::{KeyGenError, KeyId, KeyImportError, PublicKey, SecretKey};
