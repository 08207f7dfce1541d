//! `Tier`: where a pack lives — the hot backend every write goes to, or
//! the archive backend lifecycle rules move cold data to.

use std::fmt;

/// A storage tier; the catalog's `packs.tier` column holds its name.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Default)]
pub enum Tier {
    #[default]
    Hot,
    Archive,
}

impl Tier {
    pub const ALL: [Tier; 2] = [Tier::Hot, Tier::Archive];

    pub fn as_str(self) -> &'static str {
        match self {
            Tier::Hot => "hot",
            Tier::Archive => "archive",
        }
    }

    /// The tier named `s`; unknown names are `None`.
    pub fn parse(s: &str) -> Option<Tier> {
        match s {
            "hot" => Some(Tier::Hot),
            "archive" => Some(Tier::Archive),
            _ => None,
        }
    }
}

impl fmt::Display for Tier {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_round_trip() {
        for t in Tier::ALL {
            assert_eq!(Tier::parse(t.as_str()), Some(t));
        }
        assert_eq!(Tier::parse("cold"), None);
    }
}
