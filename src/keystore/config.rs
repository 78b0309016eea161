//! The `[keys]` table: the size of our RSA keys and their rotation.

use std::time::Duration;

use mimix_settings::{Checked, DAY, as_days, check, days, duration, whole_days};
use serde::{Deserialize, Serialize};

/// `[keys]`: our RSA keys and their rotation.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct KeysConfig {
    /// Modulus size of new keys: 2048 to 4096, a multiple of 256.
    pub bits: u32,
    /// How long a key is valid (whole days; reference: 270).
    #[serde(with = "duration")]
    pub lifetime: Duration,
    /// How long before the current key expires its successor is made and
    /// published (whole days, at least 1, less than `lifetime`; reference:
    /// 28).
    #[serde(with = "duration")]
    pub renew_before: Duration,
    /// How long after expiry a key still decrypts packets in flight (whole
    /// days).
    #[serde(with = "duration")]
    pub grace: Duration,
}

impl Default for KeysConfig {
    fn default() -> Self {
        Self {
            bits: 4096,
            lifetime: days(270),
            renew_before: days(28),
            grace: days(7),
        }
    }
}

impl KeysConfig {
    /// `lifetime` in days.
    pub fn lifetime_days(&self) -> u64 {
        as_days(self.lifetime)
    }

    /// `renew_before` in days.
    pub fn renew_before_days(&self) -> u64 {
        as_days(self.renew_before)
    }

    /// `grace` in days.
    pub fn grace_days(&self) -> u64 {
        as_days(self.grace)
    }

    /// Modulus size of new keys.
    pub fn bits(&self) -> usize {
        usize::try_from(self.bits).unwrap_or(usize::MAX)
    }

    /// Checks every value; fields are named relative to the table.
    pub fn validate(&self) -> Checked {
        check(
            (2048..=4096).contains(&self.bits) && self.bits.is_multiple_of(256),
            "bits",
            || {
                format!(
                    "must be 2048 to 4096 and a multiple of 256, got {}",
                    self.bits
                )
            },
        )?;
        whole_days(self.lifetime, "lifetime")?;
        whole_days(self.renew_before, "renew_before")?;
        whole_days(self.grace, "grace")?;
        check(self.renew_before >= DAY, "renew_before", || {
            "must be at least 1d, so that the next key is published before this one expires".into()
        })?;
        check(self.renew_before < self.lifetime, "renew_before", || {
            format!(
                "must be shorter than keys.lifetime ({}), got {}",
                duration::format(self.lifetime),
                duration::format(self.renew_before)
            )
        })
    }
}
