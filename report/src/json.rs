//! `results.json`: the results, with what the report draws from them.

use crate::race::table_races;
use crate::results::Results;
use crate::significance::comparisons;

impl Results {
    /// `results.json`: the grid, the environment and the jobs, the `comparisons` the report
    /// draws from them, and (seeds raced) each table's `races` (computed, not read back).
    pub fn to_json(&self) -> String {
        // Every field is a string, number, bool, list or map with string keys.
        let mut v = serde_json::to_value(self).expect("results contain only serializable data");
        v["comparisons"] = serde_json::to_value(comparisons(self)).expect("serializable");
        if self.grid.race().is_some() {
            v["races"] = serde_json::to_value(table_races(self)).expect("serializable");
        }
        serde_json::to_string_pretty(&v).expect("a JSON value")
    }
}
