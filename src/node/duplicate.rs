//! Byte-identical copies of packets we already hold: answered 200 again,
//! before any RSA work.
//!
//! The reference sender keeps a packet and posts it again on its next
//! outbound run after every non-200 answer, for seven days. When our 200
//! is lost (a Tor circuit closing after we stored the packet), every later
//! copy would otherwise cost a full RSA decryption and earn a 409, which
//! the peer retries again: an endless loop. So the intake looks the
//! packet's digest up first ([`check`]); a packet we stored is answered as
//! it was the first time, idempotently, and counted as
//! [`counter::DUPLICATES`]. A packet with a known ID whose bytes differ (a
//! tampered copy) still goes through the whole peel and gets 409
//! ([`counter::REPLAYS`]).
//!
//! The digest is the SHA-256 of the **binary** packet, not of the armour
//! text: the armour is normalised away by decoding it, which costs a base64
//! decode (microseconds, against milliseconds of RSA). Two armours of the
//! same 20480 bytes (another `Version:` line, other line widths) are the
//! same packet and would get the same
//! verdict from the full peel, so they may share the shortcut; any change
//! to the bytes that matter makes a different digest and goes through the
//! full checks. Digests are stored with the packet ID, in the same batch,
//! and pruned with it ([`crate::store`]).
//!
//! [`counter::DUPLICATES`]: crate::store::counter::DUPLICATES
//! [`counter::REPLAYS`]: crate::store::counter::REPLAYS

use std::sync::Arc;

use mimix_packet::crypto::digest::sha256;
use mimix_packet::dearmour;
use tracing::warn;

use super::Shared;

/// What [`check`] found.
pub(crate) enum Seen {
    /// A copy of a packet we hold: answer 200, do nothing else.
    Held,
    /// Not seen: peel it; its digest (`None` when it is not armour, which
    /// the peel then refuses) goes with it into the store.
    New(Option<[u8; 32]>),
}

/// The digest of an armoured packet, if it is armour at all.
pub(crate) fn digest(armoured: &str) -> Option<[u8; 32]> {
    let packet = dearmour(armoured).ok()?;
    Some(sha256(&[packet.as_bytes()]))
}

/// Whether `armoured` is a copy of a packet we hold. A store that cannot
/// be read says "not seen": the packet is then peeled as usual.
pub(crate) async fn check(shared: &Arc<Shared>, armoured: &str) -> Seen {
    let Some(d) = digest(armoured) else {
        return Seen::New(None);
    };
    let store = shared.store.clone();
    match tokio::task::spawn_blocking(move || store.digest_known(&d)).await {
        Ok(Ok(true)) => Seen::Held,
        Ok(Ok(false)) => Seen::New(Some(d)),
        Ok(Err(e)) => {
            warn!("reading packet digests: {e}");
            Seen::New(Some(d))
        }
        Err(_) => Seen::New(Some(d)),
    }
}
