//! The chain text: comma-separated hops, each `*`, a name or an address.

use std::fmt;
use std::str::FromStr;

use super::{ChainError, MAX_HOP_LEN, MAX_HOPS, MAX_SPEC_LEN};

/// One hop of a [`ChainSpec`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Hop {
    /// `*`: a random remailer that passes the filters.
    Random,
    /// A remailer by name (case-insensitive).
    Name(String),
    /// A remailer by address (any hop containing `://`).
    Address(String),
}

/// A parsed chain such as `*,alpha,*`: 1 to [`MAX_HOPS`] hops, entry first.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ChainSpec(Vec<Hop>);

impl ChainSpec {
    /// A chain of `hops` random hops, e.g. `*,*,*` for 3.
    pub fn random(hops: usize) -> Result<Self, ChainError> {
        match hops {
            0 => Err(ChainError::NoHops),
            1..=MAX_HOPS => Ok(Self(vec![Hop::Random; hops])),
            _ => Err(ChainError::TooManyHops { hops }),
        }
    }

    /// The hops, entry first; never empty.
    pub fn hops(&self) -> &[Hop] {
        &self.0
    }
}

impl FromStr for ChainSpec {
    type Err = ChainError;

    fn from_str(s: &str) -> Result<Self, ChainError> {
        if s.len() > MAX_SPEC_LEN {
            return Err(ChainError::SpecTooLong { len: s.len() });
        }
        let parts: Vec<&str> = s.split(',').collect();
        if parts.len() > MAX_HOPS {
            return Err(ChainError::TooManyHops { hops: parts.len() });
        }
        let hops = parts.iter().zip(1..).map(|(p, hop)| parse_hop(hop, p));
        hops.collect::<Result<Vec<_>, _>>().map(Self)
    }
}

fn parse_hop(hop: usize, text: &str) -> Result<Hop, ChainError> {
    let text = text.trim();
    if text.is_empty() {
        return Err(ChainError::EmptyHop { hop });
    }
    if text == "*" {
        return Ok(Hop::Random);
    }
    if text.len() > MAX_HOP_LEN {
        return Err(ChainError::HopTooLong { hop });
    }
    let is_address = text.contains("://");
    let bad = |c: &char| {
        if is_address {
            !c.is_ascii_graphic()
        } else {
            c.is_control() || *c == '*'
        }
    };
    if let Some(ch) = text.chars().find(bad) {
        return Err(ChainError::BadCharacter { hop, ch });
    }
    Ok(if is_address {
        Hop::Address(text.to_owned())
    } else {
        Hop::Name(text.to_owned())
    })
}

impl fmt::Display for ChainSpec {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for (i, hop) in self.0.iter().enumerate() {
            if i > 0 {
                f.write_str(",")?;
            }
            match hop {
                Hop::Random => f.write_str("*")?,
                Hop::Name(s) | Hop::Address(s) => f.write_str(s)?,
            }
        }
        Ok(())
    }
}
