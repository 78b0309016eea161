//! Time as a dependency: everything that reads the clock takes a [`Clock`],
//! so the pool, dummy policy, key rotation and timestamp checks can be
//! tested deterministically without sleeping.

use std::sync::Arc;
use std::sync::Mutex;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

/// A source of wall-clock time.
pub trait Clock: Send + Sync + 'static {
    /// The current time.
    fn now(&self) -> SystemTime;

    /// Whole days since 1970-01-01 UTC, as Mimix timestamps count them.
    fn epoch_day(&self) -> u64 {
        epoch_day(self.now())
    }
}

/// Days since the Unix epoch of `t` (0 for times before it).
pub fn epoch_day(t: SystemTime) -> u64 {
    t.duration_since(UNIX_EPOCH)
        .map(|d| d.as_secs() / 86_400)
        .unwrap_or(0)
}

/// The operating system's clock.
#[derive(Debug, Clone, Copy, Default)]
pub struct SystemClock;

impl Clock for SystemClock {
    #[allow(
        clippy::disallowed_methods,
        reason = "the one place that reads the system clock"
    )]
    fn now(&self) -> SystemTime {
        SystemTime::now()
    }
}

/// A clock that only moves when told to; for tests.
#[derive(Debug, Clone)]
pub struct ManualClock(Arc<Mutex<SystemTime>>);

impl ManualClock {
    /// A clock frozen at `t`.
    pub fn new(t: SystemTime) -> Self {
        Self(Arc::new(Mutex::new(t)))
    }

    /// A clock frozen at midday of the given epoch day.
    pub fn at_epoch_day(day: u64) -> Self {
        Self::new(UNIX_EPOCH + Duration::from_secs(day * 86_400 + 43_200))
    }

    /// Moves the clock forward by `d`.
    pub fn advance(&self, d: Duration) {
        let mut t = self.0.lock().unwrap_or_else(|e| e.into_inner());
        *t += d;
    }

    /// Sets the clock to `t`.
    pub fn set(&self, t: SystemTime) {
        *self.0.lock().unwrap_or_else(|e| e.into_inner()) = t;
    }
}

impl Clock for ManualClock {
    fn now(&self) -> SystemTime {
        *self.0.lock().unwrap_or_else(|e| e.into_inner())
    }
}
