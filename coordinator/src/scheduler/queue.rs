//! Pending jobs, longest expected first (so a grid's makespan is short), then grid order.
//! Leasing the longest job a worker can run is O(log n) when it can run any.

use std::cmp::Reverse;
use std::collections::{BTreeSet, HashMap};

/// Jobs by index into the state's job list, each under the cost it was queued with.
#[derive(Debug, Default)]
pub struct Queue {
    by_cost: BTreeSet<(u64, Reverse<usize>)>,
    cost: HashMap<usize, u64>,
    /// The sum of the queued costs (for the expected time left).
    total: f64,
}

impl Queue {
    /// Queues job `i` under `cost` (seconds or static units; positive); re-queues if queued.
    pub fn push(&mut self, i: usize, cost: f64) {
        self.remove(i);
        // Positive floats order like their bit patterns.
        let bits = cost.max(f64::MIN_POSITIVE).to_bits();
        self.cost.insert(i, bits);
        self.by_cost.insert((bits, Reverse(i)));
        self.total += f64::from_bits(bits);
    }

    /// Takes job `i` out of the queue, if it is there.
    pub fn remove(&mut self, i: usize) {
        if let Some(bits) = self.cost.remove(&i) {
            self.by_cost.remove(&(bits, Reverse(i)));
            self.total = if self.cost.is_empty() {
                0.0
            } else {
                (self.total - f64::from_bits(bits)).max(0.0)
            };
        }
    }

    /// The sum of the queued jobs' costs.
    pub fn total_cost(&self) -> f64 {
        self.total
    }

    /// Queued jobs, longest first, ties in grid order.
    pub fn longest_first(&self) -> impl Iterator<Item = usize> + '_ {
        self.by_cost.iter().rev().map(|&(_, Reverse(i))| i)
    }

    pub fn len(&self) -> usize {
        self.cost.len()
    }

    pub fn is_empty(&self) -> bool {
        self.cost.is_empty()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn longest_first_then_grid_order() {
        let mut q = Queue::default();
        q.push(0, 1.0);
        q.push(1, 5.0);
        q.push(2, 5.0);
        q.push(3, 2.0);
        assert_eq!(q.longest_first().collect::<Vec<_>>(), vec![1, 2, 3, 0]);
        q.push(0, 9.0);
        q.remove(2);
        assert_eq!(q.longest_first().collect::<Vec<_>>(), vec![0, 1, 3]);
        assert_eq!(q.len(), 3);
        assert_eq!(q.total_cost(), 16.0);
    }
}
