//! How much the pool and the queues hold: item counts and stored bytes,
//! kept in memory so that the intake can check its caps without touching
//! the disk (and before any RSA work).
//!
//! The figures are counted once when the store opens (a scan of the four
//! keyspaces) and then updated by every committed batch, under the write
//! lock; readers see them through atomics. Bytes are the stored record
//! sizes (a pooled packet is a little over 20 KB).

use std::sync::atomic::{AtomicU64, Ordering};

use fjall::Keyspace;

/// The parts of the store whose size is tracked.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Part {
    /// The pool.
    Pool = 0,
    /// The outbound queue.
    Outbound = 1,
    /// Exit chunks released by the pool, awaiting reassembly.
    Exits = 2,
    /// The mail queue.
    Mail = 3,
}

/// Items and bytes in one part of the store.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Area {
    /// Items.
    pub count: u64,
    /// Stored bytes.
    pub bytes: u64,
}

/// What the pool and the queues hold.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Usage {
    /// The pool.
    pub pool: Area,
    /// The outbound queue.
    pub outbound: Area,
    /// Exit chunks released by the pool, awaiting reassembly.
    pub exits: Area,
    /// The mail queue.
    pub mail: Area,
}

impl Usage {
    fn area_mut(&mut self, part: Part) -> &mut Area {
        match part {
            Part::Pool => &mut self.pool,
            Part::Outbound => &mut self.outbound,
            Part::Exits => &mut self.exits,
            Part::Mail => &mut self.mail,
        }
    }

    /// Counts the records of `ks` into `part`.
    pub(super) fn scan(&mut self, part: Part, ks: &Keyspace) -> fjall::Result<()> {
        let area = self.area_mut(part);
        *area = Area::default();
        for guard in ks.iter() {
            area.count += 1;
            area.bytes += u64::from(guard.size()?);
        }
        Ok(())
    }

    /// Applies the changes of one committed batch.
    pub(super) fn apply(&mut self, delta: &Delta) {
        for (part, (count, bytes)) in delta.0.iter().enumerate() {
            let area = self.area_mut(PARTS[part]);
            area.count = area.count.saturating_add_signed(*count);
            area.bytes = area.bytes.saturating_add_signed(*bytes);
        }
    }
}

const PARTS: [Part; 4] = [Part::Pool, Part::Outbound, Part::Exits, Part::Mail];

/// The changes a batch makes: items and bytes per part.
#[derive(Debug, Default)]
pub(super) struct Delta([(i64, i64); 4]);

impl Delta {
    /// One record of `bytes` added to `part`.
    pub(super) fn add(&mut self, part: Part, bytes: usize) {
        let d = &mut self.0[part as usize];
        d.0 += 1;
        d.1 = d.1.saturating_add(i64::try_from(bytes).unwrap_or(i64::MAX));
    }

    /// One record of `bytes` removed from `part`.
    pub(super) fn remove(&mut self, part: Part, bytes: usize) {
        let d = &mut self.0[part as usize];
        d.0 -= 1;
        d.1 = d.1.saturating_sub(i64::try_from(bytes).unwrap_or(i64::MAX));
    }

    /// A record of `part` replaced: `old` bytes by `new`.
    pub(super) fn resize(&mut self, part: Part, old: usize, new: usize) {
        self.remove(part, old);
        self.add(part, new);
    }
}

/// [`Usage`] readable without the write lock.
#[derive(Debug, Default)]
pub(super) struct Cells([AtomicU64; 8]);

impl Cells {
    /// Publishes `usage`.
    pub(super) fn set(&self, usage: &Usage) {
        let areas = [usage.pool, usage.outbound, usage.exits, usage.mail];
        for (i, a) in areas.iter().enumerate() {
            self.0[2 * i].store(a.count, Ordering::Relaxed);
            self.0[2 * i + 1].store(a.bytes, Ordering::Relaxed);
        }
    }

    /// The last published usage.
    pub(super) fn get(&self) -> Usage {
        let area = |i: usize| Area {
            count: self.0[2 * i].load(Ordering::Relaxed),
            bytes: self.0[2 * i + 1].load(Ordering::Relaxed),
        };
        Usage {
            pool: area(0),
            outbound: area(1),
            exits: area(2),
            mail: area(3),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn deltas_apply_and_publish() {
        let mut u = Usage::default();
        let mut d = Delta::default();
        d.add(Part::Pool, 100);
        d.add(Part::Pool, 50);
        d.add(Part::Mail, 7);
        u.apply(&d);
        let mut d = Delta::default();
        d.remove(Part::Pool, 100);
        d.add(Part::Outbound, 100);
        d.resize(Part::Mail, 7, 3);
        u.apply(&d);
        let cells = Cells::default();
        cells.set(&u);
        let got = cells.get();
        assert_eq!(got, u);
        assert_eq!(
            got.pool,
            Area {
                count: 1,
                bytes: 50
            }
        );
        assert_eq!(
            got.outbound,
            Area {
                count: 1,
                bytes: 100
            }
        );
        assert_eq!(got.mail, Area { count: 1, bytes: 3 });
        assert_eq!(got.exits, Area::default());
    }
}
