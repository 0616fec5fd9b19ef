//! What can go wrong while serving a request, and the one table that maps it to a gRPC status.
//! Internal failures are logged in full and answered with a generic message: no database or
//! file-system detail ever reaches a client.

use common::JobId;
use orchestrator_proto::convert::WireError;
use tonic::Status;

use crate::store::StoreError;

#[derive(Debug, thiserror::Error)]
pub enum ServiceError {
    #[error("{0}")]
    InvalidArgument(String),
    #[error("not the job's current lease")]
    NotCurrentLease,
    #[error("no checkpoint stored for this job")]
    NoCheckpoint,
    #[error("checkpoint of {job} exceeds the limit of {limit} bytes")]
    CheckpointTooLarge { job: JobId, limit: u64 },
    #[error(transparent)]
    Store(#[from] StoreError),
    #[error("{context}: {source}")]
    Io {
        context: String,
        #[source]
        source: std::io::Error,
    },
}

impl ServiceError {
    /// An I/O error, with what was being done.
    pub fn io(context: impl Into<String>) -> impl FnOnce(std::io::Error) -> ServiceError {
        let context = context.into();
        move |source| ServiceError::Io { context, source }
    }
}

impl From<WireError> for ServiceError {
    fn from(e: WireError) -> Self {
        ServiceError::InvalidArgument(e.to_string())
    }
}

impl From<ServiceError> for Status {
    fn from(e: ServiceError) -> Status {
        match e {
            ServiceError::InvalidArgument(_) => Status::invalid_argument(e.to_string()),
            ServiceError::NotCurrentLease => Status::permission_denied(e.to_string()),
            ServiceError::NoCheckpoint => Status::not_found(e.to_string()),
            ServiceError::CheckpointTooLarge { .. } => Status::resource_exhausted(e.to_string()),
            ServiceError::Store(_) | ServiceError::Io { .. } => {
                tracing::error!(error = %e, "internal error");
                Status::internal("internal error; see the coordinator's log")
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn internal_detail_never_reaches_the_client() {
        let e = ServiceError::Store(StoreError::Corrupt("table jobs: secret detail".into()));
        let status = Status::from(e);
        assert_eq!(status.code(), tonic::Code::Internal);
        assert!(!status.message().contains("secret"), "{status:?}");
        let status = Status::from(ServiceError::InvalidArgument("epoch 0".into()));
        assert_eq!(status.code(), tonic::Code::InvalidArgument);
        assert!(status.message().contains("epoch 0"));
    }
}
