//! Sans-IO codec for Mimix v1 packets.
//!
//! # Layout
//!
//! A packet is 20480 bytes: ten 1024-byte header sections and a 10240-byte
//! body ([`layout`]). It travels as ASCII armour ([`armour`]).
//!
//! * A client [`build`]s packets for a chain of remailers from their public
//!   keys ([`conf`] parses the `remailer-conf.txt` they publish), splitting a
//!   long message into chunks.
//! * A remailer [`peel`]s one layer with its secret keys: every integrity
//!   check passes before the packet ID is returned, and the result is either
//!   the packet for the next hop or an exit chunk.
//! * [`crypto`] holds the primitives: RSA-OAEP, AES-256-CFB8, the digests and
//!   key IDs.
//!
//! Nothing here does I/O or reads a clock: time comes in as an epoch day.
//! Randomness for building and peeling packets comes in as a
//! `rand_core::CryptoRng`; two operations draw their own from the
//! operating system, inside their crypto backend: generating a key pair
//! ([`SecretKey::generate`], aws-lc-rs) and the blinding of every RSA
//! decryption (aws-lc-rs, and `rsa` 0.10 for legacy 1024-bit keys).
//!
//! The `fuzzing` feature adds [`fuzzing`], the checks the fuzz targets and
//! the corpus replay test share; it is not part of the API.

pub mod armour;
pub mod build;
pub mod conf;
pub mod crypto;
#[cfg(feature = "fuzzing")]
pub mod fuzzing;
pub mod layout;
pub mod peel;

pub use armour::{ArmourError, armour, dearmour};
pub use build::{BuildError, Hop, build_dummy, build_message, build_packet};
pub use conf::{ConfError, RemailerConf};
pub use crypto::{KeyId, PublicKey, SecretKey};
pub use layout::{ExitType, PACKET_LEN, Packet};
pub use peel::{ExitChunk, KeyRing, Outcome, PeelError, Peeled, TimeWindow, peel};
