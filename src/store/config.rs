//! The `[store]` table: how much memory the storage engine may use and how
//! much free disk space the node keeps for itself.
//!
//! The defaults suit a small board (1 GB of memory): a block cache of
//! 8 MiB and write buffers of 4 MiB per keyspace bound the engine's
//! memory (fjall's own defaults, 32 MiB and 64 MiB per keyspace, let a
//! node's memory grow by tens of megabytes with every few hundred packets
//! until the write buffers filled); new packets are refused while less
//! than 64 MiB of the disk is free, so that deliveries, retries and the
//! engine's own flushes still find room.

use mimix_settings::{Checked, check, size};
use serde::{Deserialize, Serialize};

/// One mebibyte.
const MIB: u64 = 1024 * 1024;

/// `[store]`: the storage engine's memory and the disk space kept free.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct StoreConfig {
    /// Cache of recently read blocks, shared by all keyspaces.
    #[serde(with = "size")]
    pub cache_size: u64,
    /// Largest in-memory write buffer of one keyspace before it is written
    /// out to disk (new keyspaces only: an existing store keeps the size
    /// it was created with).
    #[serde(with = "size")]
    pub write_buffer: u64,
    /// New packets are refused (503) while less than this much space is
    /// free on the store's file system; 0 never refuses.
    #[serde(with = "size")]
    pub min_free_space: u64,
}

impl Default for StoreConfig {
    fn default() -> Self {
        Self {
            cache_size: 8 * MIB,
            write_buffer: 4 * MIB,
            min_free_space: 64 * MIB,
        }
    }
}

impl StoreConfig {
    /// Checks every value; fields are named relative to the table.
    pub fn validate(&self) -> Checked {
        check(
            (MIB..=1024 * MIB).contains(&self.cache_size),
            "cache_size",
            || format!("must be 1 MiB to 1 GiB, got {} bytes", self.cache_size),
        )?;
        check(
            (MIB..=64 * MIB).contains(&self.write_buffer),
            "write_buffer",
            || format!("must be 1 MiB to 64 MiB, got {} bytes", self.write_buffer),
        )
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]
    use super::*;

    #[test]
    fn defaults_are_valid_and_bounds_are_checked() {
        StoreConfig::default().validate().unwrap();
        let c: StoreConfig = toml::from_str("cache_size = \"2MiB\"\nmin_free_space = 0").unwrap();
        assert_eq!((c.cache_size, c.min_free_space), (2 * MIB, 0));
        let tiny = StoreConfig {
            write_buffer: 1000,
            ..StoreConfig::default()
        };
        assert_eq!(tiny.validate().unwrap_err().field, "write_buffer");
    }
}
