//! Moving a job's checkpoint file to and from the coordinator, so the job can resume on any
//! worker without a shared filesystem.

use std::path::Path;

use anyhow::Context;
use common::{JobId, LeaseId};
use orchestrator_proto::v1 as pb;
use tonic::Code;

use super::session::Session;

/// Sends the job's checkpoint file (holding `epoch` epochs) to the coordinator in chunks.
pub async fn upload(
    session: &Session,
    job: &JobId,
    lease: LeaseId,
    epoch: u32,
    path: &Path,
) -> anyhow::Result<()> {
    let bytes = tokio::fs::read(path)
        .await
        .with_context(|| format!("reading {}", path.display()))?;
    let mut chunks: Vec<pb::CheckpointChunk> = bytes
        .chunks(orchestrator_proto::CHECKPOINT_CHUNK)
        .map(|c| pb::CheckpointChunk {
            data: c.to_vec(),
            ..Default::default()
        })
        .collect();
    let Some(first) = chunks.first_mut() else {
        return Ok(());
    };
    first.worker_id = session.worker.to_string();
    first.job_id = job.to_string();
    first.lease_id = lease.get();
    first.epoch = epoch;
    let r = session
        .client
        .clone()
        .upload_checkpoint(tokio_stream::iter(chunks))
        .await
        .map_err(|s| anyhow::anyhow!("{} ({:?})", s.message(), s.code()))?;
    if r.into_inner().accepted {
        tracing::debug!(job_id = %job, epoch, bytes = bytes.len(), "checkpoint stored with the coordinator");
    }
    Ok(())
}

/// Fetches the job's checkpoint from the coordinator into `path`, written as it arrives and
/// refused past `largest` bytes (see `train::checkpoint::largest`); false when it has none.
pub async fn download(
    session: &Session,
    job: &JobId,
    lease: LeaseId,
    path: &Path,
    largest: u64,
) -> anyhow::Result<bool> {
    let req = pb::DownloadCheckpointRequest {
        worker_id: session.worker.to_string(),
        job_id: job.to_string(),
        lease_id: lease.get(),
    };
    let mut stream = match session.client.clone().download_checkpoint(req).await {
        Ok(r) => r.into_inner(),
        Err(s) if s.code() == Code::NotFound => return Ok(false),
        Err(s) => anyhow::bail!("{} ({:?})", s.message(), s.code()),
    };
    if let Some(dir) = path.parent() {
        tokio::fs::create_dir_all(dir).await?;
    }
    let tmp = path.with_extension("download");
    let received = receive(&mut stream, &tmp, largest).await;
    if received.is_err() {
        let _ = tokio::fs::remove_file(&tmp).await;
    }
    received?;
    tokio::fs::rename(&tmp, path).await?;
    Ok(true)
}

/// Writes the chunks of `stream` to `tmp` (mode 600), at most `largest` bytes.
async fn receive(
    stream: &mut tonic::Streaming<pb::CheckpointChunk>,
    tmp: &Path,
    largest: u64,
) -> anyhow::Result<()> {
    use tokio::io::AsyncWriteExt;
    let mut file = tokio::fs::OpenOptions::new()
        .write(true)
        .create(true)
        .truncate(true)
        .mode(0o600)
        .open(tmp)
        .await?;
    let mut bytes = 0u64;
    while let Some(chunk) = stream.message().await? {
        bytes += chunk.data.len() as u64;
        if bytes > largest {
            anyhow::bail!(
                "the stored checkpoint is larger than the {largest} bytes this job's can have: refused"
            );
        }
        file.write_all(&chunk.data).await?;
    }
    file.flush().await?;
    Ok(())
}
