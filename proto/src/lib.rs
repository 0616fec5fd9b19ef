//! Generated code for the `orchestrator.v1` gRPC package (see `orchestrator/v1/orchestrator.proto`)
//! and its conversions to and from the domain types of `common`.

pub mod v1 {
    tonic::include_proto!("orchestrator.v1");
}

use common::{EpochMetrics, TrainSpec};

/// Bytes per checkpoint chunk on the wire (both directions), well under gRPC's 4 MiB default
/// message limit.
pub const CHECKPOINT_CHUNK: usize = 1 << 20;

impl From<&TrainSpec> for v1::JobSpec {
    fn from(s: &TrainSpec) -> Self {
        v1::JobSpec {
            job_id: String::new(),
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
            precision: if s.precision.is_fp32() {
                String::new()
            } else {
                s.precision.to_string()
            },
        }
    }
}

impl TryFrom<&v1::JobSpec> for TrainSpec {
    type Error = common::names::UnknownName;

    fn try_from(s: &v1::JobSpec) -> Result<Self, Self::Error> {
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
                common::Precision::Fp32
            } else {
                s.precision.parse()?
            },
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
        }
    }
}

/// Adds `authorization: Bearer <token>` to every request when a token is configured.
#[derive(Clone, Default)]
pub struct BearerAuth {
    header: Option<tonic::metadata::MetadataValue<tonic::metadata::Ascii>>,
}

impl BearerAuth {
    pub fn new(token: Option<&str>) -> Result<BearerAuth, String> {
        let header = match token {
            None => None,
            Some(t) => Some(format!("Bearer {t}").parse().map_err(|_| {
                "the token contains characters not allowed in a header".to_string()
            })?),
        };
        Ok(BearerAuth { header })
    }
}

impl tonic::service::Interceptor for BearerAuth {
    fn call(&mut self, mut req: tonic::Request<()>) -> Result<tonic::Request<()>, tonic::Status> {
        if let Some(h) = &self.header {
            req.metadata_mut().insert("authorization", h.clone());
        }
        Ok(req)
    }
}

/// Reads a token file: the first line, trimmed. An empty token is an error.
pub fn read_token_file(path: &std::path::Path) -> Result<String, String> {
    let text = std::fs::read_to_string(path)
        .map_err(|e| format!("{}: cannot read token file: {e}", path.display()))?;
    let token = text.lines().next().unwrap_or("").trim().to_string();
    if token.is_empty() {
        return Err(format!("{}: token file is empty", path.display()));
    }
    Ok(token)
}
