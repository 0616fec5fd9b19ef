//! Every conversion between the domain's types and the wire's, in one place. Conversions from
//! the wire are fallible: what arrives over the network is checked before it becomes a domain
//! value.

use common::names::UnknownName;
use common::{
    EpochClock, EpochHost, EpochMetrics, Job, Outcome, Precision, RunClock, Tf32, TrainOutcome,
    TrainSpec, WorkerInfo,
};

use crate::v1;

/// A wire message that does not make a domain value.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum WireError {
    #[error("{0}")]
    UnknownName(#[from] UnknownName),
    #[error("{field}: {why}")]
    Invalid { field: &'static str, why: String },
    #[error("{0} is required")]
    Missing(&'static str),
}

impl From<&TrainSpec> for v1::JobSpec {
    fn from(s: &TrainSpec) -> Self {
        v1::JobSpec {
            job_id: s.id().to_string(),
            dataset: s.dataset.to_string(),
            model: s.model.to_string(),
            activation: s.activation.to_string(),
            seed: s.seed,
            epochs: s.epochs,
            train_limit: s.train_limit,
            test_limit: s.test_limit,
            optimizer: s.optimizer.to_string(),
            learning_rate: s.learning_rate,
            batch_size: s.batch_size,
            momentum: s.momentum,
            weight_decay: s.weight_decay,
            augment: s.augment,
            latency_samples: s.latency_samples,
            // Empty for fp32, so workers that predate the field read it as before.
            precision: if s.precision.is_fp32() {
                String::new()
            } else {
                s.precision.to_string()
            },
            tf32: if s.tf32.is_default() {
                String::new()
            } else {
                s.tf32.to_string()
            },
            deterministic: s.deterministic,
            checkpoint_every: String::new(),
        }
    }
}

impl From<&Job> for v1::JobSpec {
    fn from(j: &Job) -> Self {
        v1::JobSpec {
            checkpoint_every: j.checkpoint_every.to_string(),
            ..v1::JobSpec::from(&j.spec)
        }
    }
}

impl TryFrom<&v1::JobSpec> for TrainSpec {
    type Error = WireError;

    fn try_from(s: &v1::JobSpec) -> Result<Self, WireError> {
        Ok(TrainSpec {
            dataset: s.dataset.parse()?,
            model: s.model.parse()?,
            activation: s.activation.parse()?,
            seed: s.seed,
            epochs: s.epochs,
            train_limit: s.train_limit,
            test_limit: s.test_limit,
            augment: s.augment,
            latency_samples: s.latency_samples,
            optimizer: s.optimizer.parse()?,
            learning_rate: s.learning_rate,
            batch_size: s.batch_size,
            momentum: s.momentum,
            weight_decay: s.weight_decay,
            precision: if s.precision.is_empty() {
                Precision::Fp32
            } else {
                s.precision.parse()?
            },
            tf32: if s.tf32.is_empty() {
                Tf32::Conv
            } else {
                s.tf32.parse()?
            },
            deterministic: s.deterministic,
        })
    }
}

impl From<&EpochMetrics> for v1::EpochMetrics {
    fn from(m: &EpochMetrics) -> Self {
        v1::EpochMetrics {
            epoch: m.epoch,
            train_seconds: m.train_seconds,
            train_loss: m.train_loss,
            test_loss: m.test_loss,
            test_accuracy: m.test_accuracy,
            start_ms: m.clock.map_or(0, |c| c.start_ms),
            train_end_ms: m.clock.map_or(0, |c| c.train_end_ms),
            eval_end_ms: m.clock.map_or(0, |c| c.eval_end_ms),
            cpu_seconds: m.host.map(|h| h.cpu_seconds),
            contention: m.host.map(|h| h.contention),
        }
    }
}

impl From<&v1::EpochMetrics> for EpochMetrics {
    fn from(m: &v1::EpochMetrics) -> Self {
        EpochMetrics {
            epoch: m.epoch,
            train_seconds: m.train_seconds,
            train_loss: m.train_loss,
            test_loss: m.test_loss,
            test_accuracy: m.test_accuracy,
            clock: (m.start_ms > 0).then_some(EpochClock {
                start_ms: m.start_ms,
                train_end_ms: m.train_end_ms,
                eval_end_ms: m.eval_end_ms,
            }),
            host: match (m.cpu_seconds, m.contention) {
                (Some(cpu_seconds), Some(contention)) => Some(EpochHost {
                    cpu_seconds,
                    contention,
                }),
                _ => None,
            },
        }
    }
}

impl From<Outcome> for v1::Outcome {
    fn from(o: Outcome) -> Self {
        match o {
            Outcome::Succeeded => v1::Outcome::Succeeded,
            Outcome::Failed => v1::Outcome::Failed,
            Outcome::Diverged => v1::Outcome::Diverged,
        }
    }
}

/// The outcome of a `CompleteJob` request (an enum's number on the wire).
pub fn outcome_from_wire(value: i32) -> Result<Outcome, WireError> {
    match v1::Outcome::try_from(value) {
        Ok(v1::Outcome::Succeeded) => Ok(Outcome::Succeeded),
        Ok(v1::Outcome::Failed) => Ok(Outcome::Failed),
        Ok(v1::Outcome::Diverged) => Ok(Outcome::Diverged),
        _ => Err(WireError::Missing("outcome")),
    }
}

/// A `CompleteJob` request carrying `o`; the caller sets the ids.
pub fn complete_request(o: &TrainOutcome) -> v1::CompleteJobRequest {
    v1::CompleteJobRequest {
        outcome: v1::Outcome::from(o.status) as i32,
        device: o.device.to_string(),
        param_count: o.param_count,
        epochs: o.epochs.iter().map(Into::into).collect(),
        latency_ms_per_sample: o.latency_ms_per_sample,
        error: o.error.clone().unwrap_or_default(),
        init_start_ms: o.clock.map_or(0, |c| c.init_start_ms),
        run_start_ms: o.clock.and_then(|c| c.run_start_ms),
        run_stop_ms: o.clock.map_or(0, |c| c.run_stop_ms),
        device_uuid: o.device_uuid.clone().unwrap_or_default(),
        engine: o.engine.map(|e| e.to_string()).unwrap_or_default(),
        ..Default::default()
    }
}

impl TryFrom<&v1::CompleteJobRequest> for TrainOutcome {
    type Error = WireError;

    fn try_from(r: &v1::CompleteJobRequest) -> Result<Self, WireError> {
        Ok(TrainOutcome {
            status: outcome_from_wire(r.outcome)?,
            device: r.device.parse().map_err(|e: common::device::BadDevice| {
                WireError::Invalid {
                    field: "device",
                    why: e.to_string(),
                }
            })?,
            param_count: r.param_count,
            epochs: r.epochs.iter().map(Into::into).collect(),
            latency_ms_per_sample: r.latency_ms_per_sample,
            error: (!r.error.is_empty()).then(|| r.error.clone()),
            clock: (r.init_start_ms > 0).then_some(RunClock {
                init_start_ms: r.init_start_ms,
                run_start_ms: r.run_start_ms,
                run_stop_ms: r.run_stop_ms,
            }),
            device_uuid: device_uuid(&r.device_uuid)?,
            engine: (!r.engine.is_empty())
                .then(|| match r.engine.len() {
                    ..=64 => r.engine.parse(),
                    n => Err(format!("{n} bytes, expected at most 64")),
                })
                .transpose()
                .map_err(|why| WireError::Invalid {
                    field: "engine",
                    why,
                })?,
        })
    }
}

/// A GPU UUID from the wire: empty (none), or at most 64 letters, digits and dashes.
fn device_uuid(s: &str) -> Result<Option<String>, WireError> {
    if s.is_empty() {
        return Ok(None);
    }
    if s.len() > 64 || !s.chars().all(|c| c.is_ascii_alphanumeric() || c == '-') {
        return Err(WireError::Invalid {
            field: "device_uuid",
            why: "expected at most 64 letters, digits and dashes".into(),
        });
    }
    Ok(Some(s.to_string()))
}

impl From<&WorkerInfo> for v1::WorkerInfo {
    fn from(w: &WorkerInfo) -> Self {
        v1::WorkerInfo {
            name: w.name.clone(),
            device: w.device.to_string(),
            device_name: w.device_name.clone(),
            slots: w.slots,
            hostname: w.hostname.clone(),
            libtorch_version: w.libtorch_version.clone(),
            worker_version: String::new(),
            memory_mb: w.memory_mb,
            slurm_job: w.slurm_job.clone().unwrap_or_default(),
        }
    }
}

/// A string a worker declares about itself: at most 200 characters, none of them control
/// characters nor bidirectional-text controls (it is printed to terminals, logs and reports,
/// where a right-to-left override would make it read as something else).
fn printable(field: &'static str, s: String) -> Result<String, WireError> {
    let invalid = |why: &str| WireError::Invalid {
        field,
        why: why.to_string(),
    };
    if s.chars().count() > 200 {
        return Err(invalid("longer than 200 characters"));
    }
    if s.chars().any(char::is_control) {
        return Err(invalid("holds control characters"));
    }
    if s.chars().any(is_bidi_control) {
        return Err(invalid("holds bidirectional-text controls"));
    }
    Ok(s)
}

/// Unicode's bidirectional formatting characters (embeddings, overrides, isolates, marks),
/// which are not `char::is_control` yet change how the text around them is displayed.
pub fn is_bidi_control(c: char) -> bool {
    matches!(c, '\u{061C}' | '\u{200E}' | '\u{200F}' | '\u{202A}'..='\u{202E}' | '\u{2066}'..='\u{2069}')
}

impl TryFrom<v1::WorkerInfo> for WorkerInfo {
    type Error = WireError;

    fn try_from(w: v1::WorkerInfo) -> Result<Self, WireError> {
        let device =
            w.device
                .parse()
                .map_err(|e: common::device::BadDevice| WireError::Invalid {
                    field: "info.device",
                    why: e.to_string(),
                })?;
        Ok(WorkerInfo {
            name: printable("info.name", w.name)?,
            hostname: printable("info.hostname", w.hostname)?,
            device,
            device_name: printable("info.device_name", w.device_name)?,
            libtorch_version: printable("info.libtorch_version", w.libtorch_version)?,
            slots: w.slots.max(1),
            memory_mb: w.memory_mb,
            slurm_job: match w.slurm_job.as_str() {
                "" => None,
                id if common::worker::is_slurm_job(id) => Some(id.to_string()),
                _ => return Err(WireError::Invalid {
                    field: "info.slurm_job",
                    why: "expected a SLURM job id: digits, or digits_digits, at most 32 characters"
                        .into(),
                }),
            },
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use common::{Activation, Dataset, DeviceSpec, Model, Optimizer};

    fn spec(precision: Precision) -> TrainSpec {
        TrainSpec {
            dataset: Dataset::Cifar10,
            model: Model::Vgg11Bn,
            activation: Activation::Mish,
            seed: 7,
            epochs: 3,
            train_limit: 100,
            test_limit: 50,
            augment: true,
            latency_samples: 5,
            optimizer: Optimizer::Sgd,
            learning_rate: 0.1,
            batch_size: 64,
            momentum: 0.8,
            weight_decay: 1e-4,
            precision,
            tf32: Tf32::Conv,
            deterministic: false,
        }
    }

    #[test]
    fn names_with_bidi_controls_are_refused() {
        for name in ["evil\u{202E}gnp.exe", "a\u{2066}b", "x\u{200F}"] {
            let e = printable("info.name", name.to_string()).unwrap_err();
            assert!(e.to_string().contains("bidirectional-text controls"), "{e}");
        }
        assert_eq!(
            printable("info.name", "gpu-node-1 ✓".into()).unwrap(),
            "gpu-node-1 ✓"
        );
    }

    #[test]
    fn specs_round_trip_and_carry_their_id() {
        for p in [Precision::Fp32, Precision::Bf16] {
            let wire = v1::JobSpec::from(&spec(p));
            assert_eq!(wire.job_id, spec(p).id().to_string());
            assert_eq!(TrainSpec::try_from(&wire).unwrap(), spec(p));
        }
        assert_eq!(v1::JobSpec::from(&spec(Precision::Fp32)).precision, "");
        // The CUDA settings travel too; at their defaults they stay off the wire and the id.
        let cuda = TrainSpec {
            tf32: Tf32::Off,
            deterministic: true,
            ..spec(Precision::Fp32)
        };
        let wire = v1::JobSpec::from(&cuda);
        assert_eq!((wire.tf32.as_str(), wire.deterministic), ("off", true));
        assert_eq!(TrainSpec::try_from(&wire).unwrap(), cuda);
        assert_ne!(cuda.id(), spec(Precision::Fp32).id());
        assert_eq!(v1::JobSpec::from(&spec(Precision::Fp32)).tf32, "");
        let mut bad = v1::JobSpec::from(&spec(Precision::Fp32));
        bad.activation = "relux".into();
        assert!(TrainSpec::try_from(&bad)
            .unwrap_err()
            .to_string()
            .contains("relux"));
    }

    #[test]
    fn outcomes_round_trip() {
        let o = TrainOutcome {
            status: Outcome::Diverged,
            device: DeviceSpec::Cuda(Some(1)),
            param_count: 3,
            epochs: vec![],
            latency_ms_per_sample: None,
            error: Some("nan".into()),
            clock: Some(RunClock {
                init_start_ms: 1,
                run_start_ms: None,
                run_stop_ms: 3,
            }),
            device_uuid: Some("GPU-5a7c3e01-9b2d-4f60-8122-aabbccddeeff".into()),
            engine: Some("channels-last/avx2/cached".parse().unwrap()),
        };
        assert_eq!(TrainOutcome::try_from(&complete_request(&o)).unwrap(), o);
        let mut r = complete_request(&o);
        r.engine = "nchw/<b>/measured".into();
        assert!(TrainOutcome::try_from(&r).is_err());
        for bad in ["GPU-<script>", &"x".repeat(65)] {
            let mut r = complete_request(&o);
            r.device_uuid = bad.to_string();
            assert!(TrainOutcome::try_from(&r).is_err(), "{bad}");
        }
        let unspecified = v1::CompleteJobRequest::default();
        assert_eq!(
            TrainOutcome::try_from(&unspecified).unwrap_err(),
            WireError::Missing("outcome")
        );
    }

    #[test]
    fn worker_info_needs_a_device_it_can_parse() {
        let info = WorkerInfo {
            name: "n".into(),
            hostname: "h".into(),
            device: DeviceSpec::Cpu,
            device_name: "cpu".into(),
            libtorch_version: "2".into(),
            slots: 2,
            memory_mb: 1,
            slurm_job: Some("4242".into()),
        };
        assert_eq!(
            WorkerInfo::try_from(v1::WorkerInfo::from(&info)).unwrap(),
            info
        );
        // A SLURM job id is digits (and one underscore): anything else is refused, not printed.
        for bad in ["12\u{1b}[31m", "x1", "1_2_3", &"9".repeat(33)] {
            let mut wire = v1::WorkerInfo::from(&info);
            wire.slurm_job = bad.to_string();
            assert!(WorkerInfo::try_from(wire).is_err(), "{bad:?}");
        }
        let mut wire = v1::WorkerInfo::from(&info);
        wire.device = "tpu".into();
        assert!(WorkerInfo::try_from(wire).is_err());
        let mut wire = v1::WorkerInfo::from(&info);
        wire.name = "\u{1b}[2J\u{1b}[31mowned".into();
        let e = WorkerInfo::try_from(wire).unwrap_err().to_string();
        assert!(e.contains("info.name") && e.contains("control"), "{e}");
        let mut wire = v1::WorkerInfo::from(&info);
        wire.hostname = "h".repeat(201);
        assert!(WorkerInfo::try_from(wire)
            .unwrap_err()
            .to_string()
            .contains("200"));
    }
}
