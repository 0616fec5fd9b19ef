//! Expected job durations for longest-first scheduling. Before any epoch is reported, a static
//! model (training images × a per-model weight, per epoch); then the mean observed seconds per
//! epoch of each shape, and for shapes not seen yet the static model scaled by the observed
//! seconds per static unit, so that every cost is in seconds once any is.

use std::collections::HashMap;

use common::{Dataset, Job, Model};

/// What determines how long an epoch takes: the data, the model and the batch size.
type Shape = (Dataset, Model, u64, u32);

fn shape(job: &Job) -> Shape {
    let s = &job.spec;
    (s.dataset, s.model, s.train_limit, s.batch_size)
}

#[derive(Debug, Default)]
pub struct Estimates {
    /// Observed (seconds, epochs) per shape.
    observed: HashMap<Shape, (f64, u64)>,
    /// Observed (seconds, static units) over all shapes.
    calibration: (f64, f64),
}

impl Estimates {
    /// Static cost of one epoch, in arbitrary units.
    fn static_epoch(job: &Job) -> f64 {
        let s = &job.spec;
        let images = match s.train_limit {
            0 => s.dataset.info().train_images,
            n => n,
        };
        let per_image = match s.model {
            Model::PaperCnn => 1.0,
            Model::Vgg11Bn => 150.0,
        };
        images as f64 * per_image
    }

    fn epoch_seconds(&self, job: &Job) -> Option<f64> {
        if let Some(&(secs, n)) = self.observed.get(&shape(job)) {
            return Some(secs / n as f64);
        }
        let (secs, units) = self.calibration;
        (units > 0.0).then(|| Self::static_epoch(job) * secs / units)
    }

    /// Whether any epoch was observed, so costs are in seconds.
    pub fn calibrated(&self) -> bool {
        self.calibration.1 > 0.0
    }

    /// Expected duration of the whole job (seconds once calibrated; positive either way).
    pub fn cost(&self, job: &Job) -> f64 {
        let per_epoch = self
            .epoch_seconds(job)
            .unwrap_or_else(|| Self::static_epoch(job));
        (per_epoch * job.spec.epochs as f64).max(f64::MIN_POSITIVE)
    }

    /// Records one epoch's duration; true when the estimate of its shape moved by more than a
    /// fifth (or appeared), so the queue is worth re-sorting.
    pub fn observe(&mut self, job: &Job, seconds: f64) -> bool {
        if !(seconds.is_finite() && seconds > 0.0) {
            return false;
        }
        let before = self.epoch_seconds(job);
        let entry = self.observed.entry(shape(job)).or_insert((0.0, 0));
        *entry = (entry.0 + seconds, entry.1 + 1);
        self.calibration.0 += seconds;
        self.calibration.1 += Self::static_epoch(job);
        match (before, self.epoch_seconds(job)) {
            (Some(b), Some(a)) => (a - b).abs() > 0.2 * b,
            _ => true,
        }
    }
}
