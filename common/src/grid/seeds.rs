//! grid.yaml `seeds`: a list of seeds, or a seed race `{min: 3, max: 10}`.

use std::fmt;

use serde::de::{self, value::MapAccessDeserializer, value::SeqAccessDeserializer};
use serde::{Deserialize, Deserializer, Serialize};

use crate::checks::List;

/// The most seeds a race may run per cell.
pub const MAX_RACE_SEEDS: u32 = 1000;

/// A seed race: `min` seeds of every cell first (seeds 0 to min−1), then one more seed per
/// round for the activations whose comparison with the best is still open, up to `max`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SeedRace {
    pub min: u32,
    pub max: u32,
}

impl SeedRace {
    /// How many times the race may look at the data: after `min` seeds, and after each of the
    /// rounds that take it to `max`.
    pub fn looks(&self) -> u32 {
        self.max - self.min + 1
    }

    fn check(self) -> Result<SeedRace, String> {
        if self.min < 2 {
            return Err(format!(
                "min: {} is too few: a comparison needs at least 2 seeds of each activation \
                 (3 or more is usual)",
                self.min
            ));
        }
        if self.max < self.min {
            return Err(format!(
                "max: {} is below min: {}; give max ≥ min",
                self.max, self.min
            ));
        }
        if self.max > MAX_RACE_SEEDS {
            return Err(format!(
                "max: {} is more than {MAX_RACE_SEEDS} seeds a cell",
                self.max
            ));
        }
        Ok(self)
    }
}

/// `seeds:` as written.
pub(crate) enum SeedsFile {
    List(Vec<u64>),
    Race(SeedRace),
}

impl<'de> Deserialize<'de> for SeedsFile {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        d.deserialize_any(SeedsVisitor)
    }
}

struct SeedsVisitor;

impl<'de> de::Visitor<'de> for SeedsVisitor {
    type Value = SeedsFile;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("a list of seeds ([0, 1, 2]) or a seed race ({min: 3, max: 10})")
    }

    fn visit_seq<A: de::SeqAccess<'de>>(self, seq: A) -> Result<SeedsFile, A::Error> {
        let list = List::<u64>::deserialize(SeqAccessDeserializer::new(seq))?;
        Ok(SeedsFile::List(list.0))
    }

    fn visit_map<A: de::MapAccess<'de>>(self, map: A) -> Result<SeedsFile, A::Error> {
        let race = SeedRace::deserialize(MapAccessDeserializer::new(map))?;
        race.check().map(SeedsFile::Race).map_err(de::Error::custom)
    }
}
