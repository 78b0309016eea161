//! Field (de)serialisers shared by the sections.

/// Byte counts: an integer (`65536`) or a human size (`"64KiB"`, `"1 MB"`),
/// stored as `u64` and written back as an integer.
pub(crate) mod size {
    use bytesize::ByteSize;
    use serde::{Deserialize, Deserializer, Serializer};

    pub(crate) fn deserialize<'de, D: Deserializer<'de>>(de: D) -> Result<u64, D::Error> {
        ByteSize::deserialize(de).map(|b| b.as_u64()).map_err(|_| {
            serde::de::Error::custom(
                "expected a size in bytes, such as 65536 or \"64KiB\" (KiB = 1024, kB = 1000)",
            )
        })
    }

    pub(crate) fn serialize<S: Serializer>(v: &u64, ser: S) -> Result<S::Ok, S::Error> {
        ser.serialize_u64(*v)
    }
}

/// Paths that must not be empty (an empty path stands for "not set" inside
/// the structs and is replaced by a default at load time).
pub(crate) mod path {
    use std::path::PathBuf;

    use serde::{Deserialize, Deserializer, Serialize, Serializer};

    fn non_empty<E: serde::de::Error>(p: PathBuf) -> Result<PathBuf, E> {
        if p.as_os_str().is_empty() {
            Err(E::custom("path must not be empty"))
        } else {
            Ok(p)
        }
    }

    pub(crate) fn deserialize<'de, D: Deserializer<'de>>(de: D) -> Result<PathBuf, D::Error> {
        non_empty(PathBuf::deserialize(de)?)
    }

    pub(crate) fn serialize<S: Serializer>(v: &PathBuf, ser: S) -> Result<S::Ok, S::Error> {
        v.serialize(ser)
    }

    /// The same for optional paths.
    pub(crate) mod option {
        use std::path::PathBuf;

        use serde::{Deserialize, Deserializer, Serialize, Serializer};

        pub(crate) fn deserialize<'de, D: Deserializer<'de>>(
            de: D,
        ) -> Result<Option<PathBuf>, D::Error> {
            Option::<PathBuf>::deserialize(de)?
                .map(super::non_empty)
                .transpose()
        }

        pub(crate) fn serialize<S: Serializer>(
            v: &Option<PathBuf>,
            ser: S,
        ) -> Result<S::Ok, S::Error> {
            v.serialize(ser)
        }
    }
}

/// Durations: strings such as `"30s"`, `"15m"`, `"6h"`, `"28d"` or
/// `"1h 30m"` (humantime syntax), written back in the largest whole unit.
pub(crate) mod duration {
    use std::fmt;
    use std::time::Duration;

    use serde::de::{self, Visitor};
    use serde::{Deserializer, Serializer};

    /// `d` in the largest unit (d, h, m, s) that divides it, or in
    /// humantime's mixed form if it has fractions of a second.
    pub(crate) fn format(d: Duration) -> String {
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

    struct DurationVisitor;

    impl Visitor<'_> for DurationVisitor {
        type Value = Duration;

        fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
            f.write_str("a duration string such as \"30s\", \"15m\", \"6h\" or \"28d\"")
        }

        fn visit_str<E: de::Error>(self, v: &str) -> Result<Duration, E> {
            humantime::parse_duration(v).map_err(|e| {
                E::custom(format!(
                    "invalid duration {v:?} ({e}); write for example \"30s\", \"15m\", \"6h\" or \"28d\""
                ))
            })
        }
    }

    pub(crate) fn deserialize<'de, D: Deserializer<'de>>(de: D) -> Result<Duration, D::Error> {
        de.deserialize_str(DurationVisitor)
    }

    pub(crate) fn serialize<S: Serializer>(v: &Duration, ser: S) -> Result<S::Ok, S::Error> {
        ser.serialize_str(&format(*v))
    }

    /// The same for optional durations.
    pub(crate) mod option {
        use std::time::Duration;

        use serde::{Deserializer, Serializer};

        pub(crate) fn deserialize<'de, D: Deserializer<'de>>(
            de: D,
        ) -> Result<Option<Duration>, D::Error> {
            super::deserialize(de).map(Some)
        }

        pub(crate) fn serialize<S: Serializer>(
            v: &Option<Duration>,
            ser: S,
        ) -> Result<S::Ok, S::Error> {
            match v {
                Some(d) => super::serialize(d, ser),
                None => ser.serialize_none(),
            }
        }
    }
}
