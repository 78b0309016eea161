//! The settings vocabulary shared by mimix's crates.
//!
//! Every subsystem owns its settings: one serde type per TOML table, living
//! beside the code that uses it, with its defaults written once (its
//! `Default` impl) and a `validate` method that names the offending field.
//! This crate holds what those types have in common, so that a setting is
//! written, parsed and checked the same way everywhere:
//!
//! * [`duration`], [`size`] and [`path`]: serde field helpers for human
//!   durations (`"15m"`, `"28d"`), byte sizes (`65536`, `"64KiB"`) and
//!   non-empty paths;
//! * [`Invalid`]: a value out of range, with the dotted path of its field;
//!   a subsystem reports fields relative to its own table and the caller
//!   prefixes the table's name with [`Invalid::within`];
//! * [`check`], [`at_least`], [`positive`], [`whole_days`],
//!   [`printable_ascii`]: the small checks validators are made of;
//! * [`fs::private_dir`]: the one way a data, key or state directory is
//!   made (mode 0700, and refused when others can get in).

pub mod fs;

use std::time::Duration;

/// One day.
pub const DAY: Duration = Duration::from_secs(86_400);

/// `n` days.
pub const fn days(n: u64) -> Duration {
    Duration::from_secs(n * 86_400)
}

/// `n` minutes.
pub const fn minutes(n: u64) -> Duration {
    Duration::from_secs(n * 60)
}

/// `n` hours.
pub const fn hours(n: u64) -> Duration {
    Duration::from_secs(n * 3600)
}

/// A setting whose value is out of range or inconsistent with another.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{field}: {reason}")]
pub struct Invalid {
    /// Dotted path of the field, relative to the table that reported it
    /// until [`Invalid::within`] prefixes the enclosing tables.
    pub field: String,
    /// Why the value is refused, for the operator.
    pub reason: String,
}

impl Invalid {
    /// A validation error for `field`.
    pub fn new(field: impl Into<String>, reason: impl Into<String>) -> Self {
        Self {
            field: field.into(),
            reason: reason.into(),
        }
    }

    /// The same error seen from the enclosing table `table`:
    /// `interval` becomes `pool.interval`.
    #[must_use]
    pub fn within(mut self, table: &str) -> Self {
        self.field = if self.field.is_empty() {
            table.to_owned()
        } else if self.field.starts_with('[') {
            format!("{table}{}", self.field)
        } else {
            format!("{table}.{}", self.field)
        };
        self
    }
}

/// The result of a validation.
pub type Checked = Result<(), Invalid>;

/// `Ok` if `ok`, else an [`Invalid`] for `field` with the reason `reason()`.
pub fn check(ok: bool, field: &str, reason: impl FnOnce() -> String) -> Checked {
    if ok {
        Ok(())
    } else {
        Err(Invalid::new(field, reason()))
    }
}

/// `d` must be longer than zero.
pub fn positive(d: Duration, field: &str) -> Checked {
    check(!d.is_zero(), field, || "must be longer than zero".into())
}

/// `d` must be at least `min`.
pub fn at_least(d: Duration, min: Duration, field: &str) -> Checked {
    check(d >= min, field, || {
        format!("must be at least {}", duration::format(min))
    })
}

/// `d` must be a whole number of days.
pub fn whole_days(d: Duration, field: &str) -> Checked {
    check(
        d.as_secs().is_multiple_of(DAY.as_secs()) && d.subsec_nanos() == 0,
        field,
        || {
            format!(
                "must be a whole number of days (such as \"7d\"), got {}",
                duration::format(d)
            )
        },
    )
}

/// Whether `s` is printable ASCII on one line (space to tilde).
pub fn printable_ascii(s: &str) -> bool {
    s.bytes().all(|b| (0x20..0x7f).contains(&b))
}

/// Whole days in `d` (rounded down).
pub fn as_days(d: Duration) -> u64 {
    d.as_secs() / DAY.as_secs()
}

/// Byte counts: an integer (`65536`) or a human size (`"64KiB"`, `"1 MB"`),
/// written back as an integer. Works for any integer field type.
pub mod size {
    use bytesize::ByteSize;
    use serde::{Deserialize, Deserializer, Serializer};

    const EXPECTED: &str =
        "expected a size in bytes, such as 65536 or \"64KiB\" (KiB = 1024, kB = 1000)";

    /// Reads a size.
    pub fn deserialize<'de, D, T>(de: D) -> Result<T, D::Error>
    where
        D: Deserializer<'de>,
        T: TryFrom<u64>,
    {
        let bytes = ByteSize::deserialize(de)
            .map_err(|_| serde::de::Error::custom(EXPECTED))?
            .as_u64();
        T::try_from(bytes).map_err(|_| serde::de::Error::custom(format!("{bytes} is too large")))
    }

    /// Writes a size as an integer.
    pub fn serialize<S, T>(v: &T, ser: S) -> Result<S::Ok, S::Error>
    where
        S: Serializer,
        T: Copy + TryInto<u64>,
    {
        let n: u64 = (*v)
            .try_into()
            .map_err(|_| serde::ser::Error::custom("size out of range"))?;
        ser.serialize_u64(n)
    }
}

/// Paths that must not be empty when written (an empty path stands for
/// "not set" inside the structs; the configuration fills a default at load
/// time).
pub mod path {
    use std::path::PathBuf;

    use serde::{Deserialize, Deserializer, Serialize, Serializer};

    fn non_empty<E: serde::de::Error>(p: PathBuf) -> Result<PathBuf, E> {
        if p.as_os_str().is_empty() {
            Err(E::custom("path must not be empty"))
        } else {
            Ok(p)
        }
    }

    /// Reads a non-empty path.
    pub fn deserialize<'de, D: Deserializer<'de>>(de: D) -> Result<PathBuf, D::Error> {
        non_empty(PathBuf::deserialize(de)?)
    }

    /// Writes a path.
    pub fn serialize<S: Serializer>(v: &PathBuf, ser: S) -> Result<S::Ok, S::Error> {
        v.serialize(ser)
    }

    /// Whether a path is unset (empty): for `skip_serializing_if`, so an
    /// unset path is left out rather than written as `""`.
    pub fn is_unset(p: &std::path::Path) -> bool {
        p.as_os_str().is_empty()
    }

    /// The same for optional paths.
    pub mod option {
        use std::path::PathBuf;

        use serde::{Deserialize, Deserializer, Serialize, Serializer};

        /// Reads an optional non-empty path.
        pub fn deserialize<'de, D: Deserializer<'de>>(de: D) -> Result<Option<PathBuf>, D::Error> {
            Option::<PathBuf>::deserialize(de)?
                .map(super::non_empty)
                .transpose()
        }

        /// Writes an optional path.
        pub fn serialize<S: Serializer>(v: &Option<PathBuf>, ser: S) -> Result<S::Ok, S::Error> {
            v.serialize(ser)
        }
    }
}

/// Durations: strings such as `"30s"`, `"15m"`, `"6h"`, `"28d"` or
/// `"1h 30m"` (humantime syntax), written back in the largest whole unit.
pub mod duration {
    use std::fmt;
    use std::time::Duration;

    use serde::de::{self, Visitor};
    use serde::{Deserializer, Serializer};

    /// `d` in the largest unit (d, h, m, s) that divides it, or in
    /// humantime's mixed form if it has fractions of a second.
    pub fn format(d: Duration) -> String {
        let secs = d.as_secs();
        if d.subsec_nanos() != 0 {
            return humantime::format_duration(d).to_string();
        }
        for (unit, len) in [("d", 86_400), ("h", 3600), ("m", 60)] {
            if secs != 0 && secs.is_multiple_of(len) {
                return format!("{}{unit}", secs / len);
            }
        }
        format!("{secs}s")
    }

    /// Parses a duration as the configuration writes it.
    pub fn parse(v: &str) -> Result<Duration, String> {
        humantime::parse_duration(v).map_err(|e| {
            format!(
                "invalid duration {v:?} ({e}); write for example \"30s\", \"15m\", \"6h\" or \"28d\""
            )
        })
    }

    struct DurationVisitor;

    impl Visitor<'_> for DurationVisitor {
        type Value = Duration;

        fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
            f.write_str("a duration string such as \"30s\", \"15m\", \"6h\" or \"28d\"")
        }

        fn visit_str<E: de::Error>(self, v: &str) -> Result<Duration, E> {
            parse(v).map_err(E::custom)
        }
    }

    /// Reads a duration string.
    pub fn deserialize<'de, D: Deserializer<'de>>(de: D) -> Result<Duration, D::Error> {
        de.deserialize_str(DurationVisitor)
    }

    /// Writes a duration string.
    pub fn serialize<S: Serializer>(v: &Duration, ser: S) -> Result<S::Ok, S::Error> {
        ser.serialize_str(&format(*v))
    }

    /// The same for optional durations.
    pub mod option {
        use std::time::Duration;

        use serde::{Deserializer, Serializer};

        /// Reads an optional duration string.
        pub fn deserialize<'de, D: Deserializer<'de>>(de: D) -> Result<Option<Duration>, D::Error> {
            super::deserialize(de).map(Some)
        }

        /// Writes an optional duration string.
        pub fn serialize<S: Serializer>(v: &Option<Duration>, ser: S) -> Result<S::Ok, S::Error> {
            match v {
                Some(d) => super::serialize(d, ser),
                None => ser.serialize_none(),
            }
        }
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]
    use super::*;

    #[derive(Debug, serde::Deserialize, serde::Serialize, PartialEq)]
    struct T {
        #[serde(with = "duration")]
        d: Duration,
        #[serde(with = "size")]
        s: usize,
    }

    #[test]
    fn fields_round_trip() {
        let t: T = toml::from_str("d = \"1h 30m\"\ns = \"64KiB\"\n").unwrap();
        assert_eq!(t.d, Duration::from_secs(5400));
        assert_eq!(t.s, 65_536);
        let text = toml::to_string(&t).unwrap();
        assert_eq!(text, "d = \"90m\"\ns = 65536\n");
    }

    #[test]
    fn invalid_is_prefixed_by_its_tables() {
        let e = Invalid::new("from", "bad").within("policy").within("exit");
        assert_eq!(e.field, "exit.policy.from");
        let e = Invalid::new("[2].name", "bad").within("remailers");
        assert_eq!(e.to_string(), "remailers[2].name: bad");
    }
}
