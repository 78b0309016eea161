//! The worker loop's view of its attempts: which are in progress (and so
//! hold a slot), which await the recorder, which are parked.

use std::collections::{HashMap, HashSet};
use std::time::Duration;

use super::{MAX_PARK, Skip};

/// What the worker loop hears about an item it started.
pub(super) enum Event {
    /// The attempt is over and its outcome queued for the recorder: its
    /// slot is free.
    Attempted(String),
    /// The outcome was written, or (`unrecorded`) could not be.
    Recorded {
        /// The item.
        id: u64,
        /// The write failed: park the item.
        unrecorded: bool,
    },
}

#[derive(Default)]
pub(super) struct Slots {
    /// Attempts in progress.
    attempting: usize,
    /// Attempts in progress per destination.
    per_destination: HashMap<String, usize>,
    /// Items started whose outcome is not written yet.
    pending: HashSet<u64>,
    /// Items whose outcome could not be written: not before this time, and
    /// how many times in a row.
    parked: HashMap<u64, (tokio::time::Instant, u32)>,
    /// After a scan that took all it could find: the destinations whose
    /// items it left for want of room. Until new work is announced or the
    /// poll comes round, only they can have items to take, so a freed slot
    /// asks for no more than they have room for (a long queue for one
    /// busy next hop is not scanned again at every delivery).
    pub(super) only: Option<HashSet<String>>,
}

impl Slots {
    /// Slots free out of `concurrency`.
    pub(super) fn free(&self, concurrency: usize) -> usize {
        concurrency.saturating_sub(self.attempting)
    }

    /// Attempts in progress to `destination`.
    pub(super) fn busy(&self, destination: &str) -> usize {
        self.per_destination.get(destination).copied().unwrap_or(0)
    }

    /// Whether `id` was started and its outcome is not written yet.
    pub(super) fn is_pending(&self, id: u64) -> bool {
        self.pending.contains(&id)
    }

    /// Whether every outcome of the items started is written.
    pub(super) fn settled(&self) -> bool {
        self.pending.is_empty()
    }

    /// What a scan leaves out, with at most `cap` attempts per destination.
    pub(super) fn skip(&self, cap: usize) -> Skip {
        let now = tokio::time::Instant::now();
        let parked = self
            .parked
            .iter()
            .filter(|(_, (until, _))| *until > now)
            .map(|(id, _)| id);
        Skip::new(
            self.pending.iter().chain(parked).copied().collect(),
            self.per_destination.clone(),
            cap,
        )
    }

    /// How many items a scan may usefully ask for with `free` slots.
    pub(super) fn wanted(&self, free: usize, cap: usize) -> usize {
        match &self.only {
            None => free,
            Some(only) => only
                .iter()
                .map(|d| cap.saturating_sub(self.busy(d)))
                .sum::<usize>()
                .min(free),
        }
    }

    pub(super) fn start(&mut self, id: u64, destination: &str) {
        self.pending.insert(id);
        self.attempting += 1;
        *self
            .per_destination
            .entry(destination.to_owned())
            .or_default() += 1;
    }

    pub(super) fn event(&mut self, event: Event) {
        match event {
            Event::Attempted(destination) => self.attempted(&destination),
            Event::Recorded { id, unrecorded } => self.recorded(id, unrecorded),
        }
    }

    fn attempted(&mut self, destination: &str) {
        self.attempting = self.attempting.saturating_sub(1);
        if let Some(n) = self.per_destination.get_mut(destination) {
            *n = n.saturating_sub(1);
            if *n == 0 {
                self.per_destination.remove(destination);
            }
        }
    }

    fn recorded(&mut self, id: u64, unrecorded: bool) {
        self.pending.remove(&id);
        let now = tokio::time::Instant::now();
        if unrecorded {
            let times = self.parked.get(&id).map_or(0, |p| p.1) + 1;
            let wait = Duration::from_secs(1)
                .saturating_mul(1u32.checked_shl(times.min(6)).unwrap_or(u32::MAX))
                .min(MAX_PARK);
            self.parked.insert(id, (now + wait, times));
        } else {
            self.parked.remove(&id);
            // The store writes again: what was parked may go now (its
            // count is kept, so a store that fails again parks it longer).
            for (until, _) in self.parked.values_mut() {
                *until = (*until).min(now);
            }
            if !self.parked.is_empty() {
                self.only = None;
            }
        }
    }
}
