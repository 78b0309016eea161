//! "Randhop" (wire format 7.3): a mail packet whose chain ends at this
//! middle node (the sender picked a non-exit as the last hop) is not
//! dropped but re-encrypted, as the reference does, to a fresh chain that
//! ends at an exit.
//!
//! What is re-encrypted is what the exit hop would have delivered: the
//! chunk's verified payload, with its chunk number and count, exit type
//! SMTP. The reference builds a new single-chunk message through `*,*`
//! and drops multi-chunk ones; here every chunk is rerouted, and all
//! chunks of one message reach the same exit, so the exit can reassemble
//! them:
//!
//! - the exit is picked from the message ID by rendezvous hashing: each
//!   exit-capable remailer the directory knows usable (passing the default
//!   last-hop filters) scores `HMAC(key, message ID, address)`, the
//!   highest wins. The key is a secret of this node (in the store), so
//!   nobody else can predict or steer the choice; a change in the set of
//!   exits moves only the messages of the exits that came or went;
//! - the new packets carry a message ID derived the same way from the old
//!   one, the same for every chunk, and not one the sender chose;
//! - the chain is `randhop_chain_length` hops ending at that exit, the
//!   others random ([`chain::select`] with the default filters), shortened
//!   when the network is too small for it.
//!
//! The new packet goes into the pool like any forward, under the incoming
//! packet's replay entry. With no usable exit the packet is dropped and
//! counted ([`counter::RANDHOP_NO_EXIT`]).

use std::sync::Arc;

use mimix_packet::build::ExitParams;
use mimix_packet::{ExitChunk, ExitType, Hop, build_packet};
use rand::CryptoRng;
use tracing::{debug, warn};

use super::Shared;
use crate::directory::chain::{self, Candidate, ChainSpec, Exit, Filters};
use crate::store::{PoolItem, counter, keyed_hash};

/// The name of the node's randhop key in the store.
const KEY_NAME: &str = "randhop";

/// Re-encrypts `chunk` to an exit; `Err` is the counter of a drop.
pub(super) async fn reroute(
    shared: &Arc<Shared>,
    chunk: ExitChunk,
) -> Result<PoolItem, &'static str> {
    let s = shared.clone();
    tokio::task::spawn_blocking(move || build(&s, &chunk, &mut rand::rng()))
        .await
        .unwrap_or(Err(counter::RANDHOP_FAILED))
}

/// The new packet for `chunk` (blocking: reads the store, RSA-encrypts).
fn build<R: CryptoRng + ?Sized>(
    shared: &Shared,
    chunk: &ExitChunk,
    rng: &mut R,
) -> Result<PoolItem, &'static str> {
    let key = shared.store.secret(KEY_NAME, rng).map_err(|e| {
        warn!("randhop key: {e}");
        counter::RANDHOP_FAILED
    })?;
    let candidates = shared.directory.candidates(shared.unix_now());
    let filters = Filters::default();
    let exit =
        pick_exit(&key, &chunk.msg_id, &candidates, &filters).ok_or(counter::RANDHOP_NO_EXIT)?;
    let length = usize::from(shared.config.node.randhop_chain_length);
    let picked =
        chain_to(exit, &candidates, &filters, length, rng).ok_or(counter::RANDHOP_NO_EXIT)?;
    let hops: Vec<Hop> = picked
        .iter()
        .map(|c| shared.directory.hop(&c.address))
        .collect::<Option<_>>()
        .ok_or(counter::RANDHOP_NO_EXIT)?;
    let next_hop = hops
        .first()
        .map(|h| h.address.clone())
        .ok_or(counter::RANDHOP_NO_EXIT)?;
    let params = ExitParams {
        chunk: chunk.chunk,
        chunks: chunk.chunks,
        msg_id: message_id(&key, &chunk.msg_id),
        exit_type: ExitType::Smtp,
    };
    let packet = build_packet(
        rng,
        &hops,
        &params,
        &chunk.payload,
        shared.clock.epoch_day(),
    )
    .map_err(|e| {
        debug!(error = %e, "randhop: building the packet failed");
        counter::RANDHOP_FAILED
    })?;
    Ok(PoolItem::Forward {
        next_hop,
        packet: packet.as_bytes().to_vec(),
    })
}

/// An address as compared: trimmed, without a trailing `/`, lower case.
fn address_key(address: &str) -> String {
    address.trim().trim_end_matches('/').to_ascii_lowercase()
}

/// The exit for message `msg_id`: the eligible exit with the highest
/// keyed score (rendezvous hashing), or `None` if there is none.
pub(crate) fn pick_exit<'a>(
    key: &[u8; 32],
    msg_id: &[u8; 16],
    candidates: &'a [Candidate],
    filters: &Filters,
) -> Option<&'a Candidate> {
    let min = filters.final_min_reliability;
    candidates
        .iter()
        .filter(|c| c.exit)
        .filter(|c| c.reliability.is_none_or(|r| r >= min))
        .filter(|c| c.latency.is_none_or(|l| l <= filters.max_latency))
        .max_by_key(|c| {
            let a = address_key(&c.address);
            keyed_hash(key, &[b"randhop exit", msg_id, a.as_bytes()])
        })
}

/// The message ID of the rerouted chunks of `msg_id`.
fn message_id(key: &[u8; 32], msg_id: &[u8; 16]) -> [u8; 16] {
    let h = keyed_hash(key, &[b"randhop message id", msg_id]);
    let mut id = [0u8; 16];
    id.copy_from_slice(h.get(..16).unwrap_or(&[0; 16]));
    id
}

/// A chain of at most `length` hops ending at `exit`, the others random;
/// shortened (down to the exit alone) when no longer chain exists.
fn chain_to<'a, R: CryptoRng + ?Sized>(
    exit: &Candidate,
    candidates: &'a [Candidate],
    filters: &Filters,
    length: usize,
    rng: &mut R,
) -> Option<Vec<&'a Candidate>> {
    for n in (1..=length.clamp(1, chain::MAX_HOPS)).rev() {
        let mut text = "*,".repeat(n - 1);
        text.push_str(&exit.address);
        let Ok(spec) = text.parse::<ChainSpec>() else {
            return None;
        };
        if let Ok(mut chains) = chain::select(&spec, candidates, filters, Exit::Required, 1, rng)
            && let Some(chain) = chains.pop()
        {
            return Some(chain);
        }
    }
    None
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]

    use rand::SeedableRng;
    use rand::rngs::StdRng;

    use super::*;

    fn remailer(i: usize, exit: bool) -> Candidate {
        Candidate {
            name: format!("r{i}"),
            address: format!("http://r{i}.example.onion"),
            exit,
            reliability: None,
            latency: None,
        }
    }

    #[test]
    fn every_chunk_of_a_message_goes_to_one_exit_and_messages_spread() {
        let key = [7u8; 32];
        let mut all: Vec<Candidate> = (0..6).map(|i| remailer(i, i % 2 == 0)).collect();
        let mut hits = std::collections::BTreeMap::new();
        for m in 0..300u16 {
            let mut id = [0u8; 16];
            id[..2].copy_from_slice(&m.to_be_bytes());
            let exit = pick_exit(&key, &id, &all, &Filters::default()).unwrap();
            assert!(exit.exit);
            // The same message ID, asked again (another chunk): the same exit.
            let again = pick_exit(&key, &id, &all, &Filters::default()).unwrap();
            assert_eq!(exit.address, again.address);
            *hits.entry(exit.address.clone()).or_insert(0) += 1;
        }
        assert_eq!(hits.len(), 3, "all three exits are used: {hits:?}");
        assert!(hits.values().all(|&n| n > 60), "{hits:?}");

        // A middle node joining changes nothing; an exit joining takes
        // only messages to itself.
        let id = [9u8; 16];
        let before = pick_exit(&key, &id, &all, &Filters::default())
            .unwrap()
            .address
            .clone();
        all.push(remailer(7, false));
        let after = pick_exit(&key, &id, &all, &Filters::default())
            .unwrap()
            .address
            .clone();
        assert_eq!(before, after);
        // Another key: another (unpredictable) assignment.
        let other: Vec<String> = (0..50u8)
            .map(|m| {
                pick_exit(&[m; 32], &id, &all, &Filters::default())
                    .unwrap()
                    .address
                    .clone()
            })
            .collect();
        assert!(other.iter().any(|a| *a != before));
    }

    #[test]
    fn unreliable_exits_and_middles_are_never_picked() {
        let mut flaky = remailer(0, true);
        flaky.reliability = Some(0.5);
        let all = [flaky, remailer(1, false)];
        assert!(pick_exit(&[1; 32], &[2; 16], &all, &Filters::default()).is_none());
    }

    #[test]
    fn the_chain_ends_at_the_exit_and_shrinks_on_a_small_network() {
        let rng = &mut StdRng::seed_from_u64(5);
        let all: Vec<Candidate> = (0..4).map(|i| remailer(i, i == 0)).collect();
        let exit = &all[0];
        let chain = chain_to(exit, &all, &Filters::default(), 3, rng).unwrap();
        assert_eq!(chain.len(), 3);
        assert_eq!(chain.last().unwrap().address, exit.address);
        let alone = [remailer(0, true)];
        let chain = chain_to(&alone[0], &alone, &Filters::default(), 2, rng).unwrap();
        assert_eq!(chain.len(), 1, "only the exit is known");
        assert_eq!(
            message_id(&[1; 32], &[2; 16]),
            message_id(&[1; 32], &[2; 16])
        );
        assert_ne!(message_id(&[1; 32], &[2; 16]), [2; 16]);
    }
}
