//! The directory's records: the keyring (one record per known or candidate
//! remailer, keyed by its address), per-remailer ping statistics, and the
//! pings in flight (keyed by message ID, with an expiry index). The
//! directory module owns the record types; the store keeps them as
//! postcard bytes and writes each change durably.

use std::time::SystemTime;

use fjall::Keyspace;
use serde::Serialize;
use serde::de::DeserializeOwned;

use super::engine::Keyspaces;
use super::{Store, StoreError, time_key16, to_ms};

/// One of the directory's tables.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Table {
    /// Known and candidate remailers, by address.
    Keyring,
    /// Ping statistics, by address.
    Stats,
}

impl Table {
    fn name(self) -> &'static str {
        match self {
            Self::Keyring => "keyring",
            Self::Stats => "stats",
        }
    }

    /// The table's keyspace.
    fn keyspace(self, ks: &Keyspaces) -> &Keyspace {
        match self {
            Self::Keyring => &ks.keyring,
            Self::Stats => &ks.stats,
        }
    }
}

impl Store {
    /// Durably stores `value` under `key` in table `t`.
    pub fn table_put<T: Serialize>(
        &self,
        t: Table,
        key: &str,
        value: &T,
    ) -> Result<(), StoreError> {
        let mut tx = self.tx()?;
        let e = tx.engine.clone();
        tx.put(t.keyspace(&e.ks), key.as_bytes(), value, t.name())?;
        tx.commit()
    }

    /// Durably deletes `key` from table `t` (no error if absent).
    pub fn table_delete(&self, t: Table, key: &str) -> Result<(), StoreError> {
        let mut tx = self.tx()?;
        let e = tx.engine.clone();
        tx.batch.remove(t.keyspace(&e.ks), key.as_bytes());
        tx.commit()
    }

    /// The record under `key` in table `t`.
    pub fn table_get<T: DeserializeOwned>(
        &self,
        t: Table,
        key: &str,
    ) -> Result<Option<T>, StoreError> {
        let e = self.engine()?;
        self.get_rec(t.keyspace(&e.ks), key.as_bytes(), t.name())
    }

    /// Every record of table `t`, in key order.
    pub fn table_all<T: DeserializeOwned>(&self, t: Table) -> Result<Vec<(String, T)>, StoreError> {
        let e = self.engine()?;
        let mut out = Vec::new();
        for guard in t.keyspace(&e.ks).iter() {
            let (k, v) = guard.into_inner().map_err(self.db_err("scan table"))?;
            let key = String::from_utf8(k.to_vec())
                .map_err(|_| self.corrupt(t.name(), "key is not UTF-8"))?;
            out.push((key, self.decode(&v, t.name())?));
        }
        Ok(out)
    }

    /// Durably records a ping in flight under its message ID, forgotten
    /// at `expires`.
    pub fn ping_put<T: Serialize>(
        &self,
        msg_id: &[u8; 16],
        expires: SystemTime,
        value: &T,
    ) -> Result<(), StoreError> {
        let mut tx = self.tx()?;
        let e = tx.engine.clone();
        let ks = &e.ks;
        tx.put(&ks.pings, msg_id, value, "ping")?;
        tx.batch
            .insert(&ks.pings_exp, time_key16(to_ms(expires), msg_id), []);
        tx.commit()
    }

    /// Takes the ping with message ID `msg_id` out of the store, if there
    /// is one (a ping returns once).
    pub fn ping_take<T: DeserializeOwned>(
        &self,
        msg_id: &[u8; 16],
    ) -> Result<Option<T>, StoreError> {
        let mut tx = self.tx()?;
        let e = tx.engine.clone();
        let ks = &e.ks;
        let Some(value) = self.get_rec::<T>(&ks.pings, msg_id, "ping")? else {
            return Ok(None);
        };
        tx.batch.remove(&ks.pings, msg_id);
        tx.commit()?;
        Ok(Some(value))
    }

    /// Every ping in flight.
    pub fn pings<T: DeserializeOwned>(&self) -> Result<Vec<T>, StoreError> {
        let mut out = Vec::new();
        let e = self.engine()?;
        for guard in e.ks.pings.iter() {
            let (_, v) = guard.into_inner().map_err(self.db_err("scan pings"))?;
            out.push(self.decode(&v, "ping")?);
        }
        Ok(out)
    }

    /// Deletes the pings that expired at or before `now`; returns them.
    pub fn pings_expire<T: DeserializeOwned>(&self, now: SystemTime) -> Result<Vec<T>, StoreError> {
        let mut tx = self.tx()?;
        let e = tx.engine.clone();
        let ks = &e.ks;
        let end = time_key16(to_ms(now), &[0xff; 16]);
        let keys = self.keys_upto(&ks.pings_exp, &end, super::pool::PRUNE_BATCH)?;
        let mut out = Vec::new();
        for k in &keys {
            if let Some(id) = k.get(8..) {
                if let Some(v) = self.get_rec::<T>(&ks.pings, id, "ping")? {
                    out.push(v);
                }
                tx.batch.remove(&ks.pings, id);
            }
            tx.batch.remove(&ks.pings_exp, k.as_slice());
        }
        tx.commit()?;
        Ok(out)
    }
}
