//! The `[replay]` table: which packet timestamps are accepted and how long
//! packet IDs are remembered.

use std::time::Duration;

use mimix_packet::TimeWindow;
use mimix_settings::{Checked, DAY, as_days, check, days, duration, whole_days};
use serde::{Deserialize, Serialize};

/// How many days a sender may backdate a packet's timestamp (draft 4.3.1).
const CLIENT_BACKDATING_DAYS: u64 = 3;

/// `[replay]`: packet timestamps and the replay log.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct ReplayConfig {
    /// Oldest packet timestamp accepted, whole days before today. At least
    /// 4 days: senders may backdate by up to 3.
    #[serde(with = "duration")]
    pub timestamp_max_age: Duration,
    /// Furthest packet timestamp accepted, whole days after today.
    #[serde(with = "duration")]
    pub timestamp_max_future: Duration,
    /// How long a packet ID stays in the replay log. Must cover
    /// `timestamp_max_age + timestamp_max_future + 1d`, the longest time a
    /// packet stays acceptable.
    #[serde(with = "duration")]
    pub retention: Duration,
}

impl Default for ReplayConfig {
    fn default() -> Self {
        Self {
            timestamp_max_age: days(14),
            timestamp_max_future: days(1),
            retention: days(28),
        }
    }
}

impl ReplayConfig {
    /// `timestamp_max_age` in days.
    pub fn max_age_days(&self) -> u64 {
        as_days(self.timestamp_max_age)
    }

    /// `timestamp_max_future` in days.
    pub fn max_future_days(&self) -> u64 {
        as_days(self.timestamp_max_future)
    }

    /// The timestamps accepted on `today`.
    pub fn window(&self, today: u64) -> TimeWindow {
        TimeWindow {
            today,
            max_age_days: self.max_age_days(),
            max_future_days: self.max_future_days(),
        }
    }

    /// Checks every value; fields are named relative to the table.
    pub fn validate(&self) -> Checked {
        whole_days(self.timestamp_max_age, "timestamp_max_age")?;
        whole_days(self.timestamp_max_future, "timestamp_max_future")?;
        let min_age = CLIENT_BACKDATING_DAYS + 1;
        check(self.max_age_days() >= min_age, "timestamp_max_age", || {
            format!(
                "must be at least {min_age}d: senders may backdate timestamps by up to \
                 {CLIENT_BACKDATING_DAYS} days, got {}",
                duration::format(self.timestamp_max_age)
            )
        })?;
        // A packet is acceptable from `max_future` before its timestamp day
        // until the end of the day `max_age` after it: its ID must be
        // remembered that long after it was first seen.
        let needed = self.timestamp_max_age + self.timestamp_max_future + DAY;
        check(self.retention >= needed, "retention", || {
            format!(
                "{} is shorter than the time a packet stays acceptable \
                 (timestamp_max_age + timestamp_max_future + 1d = {}): replays would get through",
                duration::format(self.retention),
                duration::format(needed)
            )
        })
    }
}
