//! Where the coordinator keeps each job's latest checkpoint (`<dir>/<job id>.ckpt`), so any
//! worker on any host can resume the job: received in chunks into a temporary file, fsynced,
//! and renamed into place only while the uploading lease is still current.

use std::path::PathBuf;

use common::JobId;
use orchestrator_proto::v1 as pb;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio_stream::wrappers::ReceiverStream;
use tonic::{Status, Streaming};

use crate::error::ServiceError;

pub struct CheckpointStore {
    pub dir: PathBuf,
    pub max_bytes: u64,
}

/// An upload received (in full, once `receive` returns it), not yet in place. Its temporary
/// file is removed when it is dropped without being kept.
pub struct Received {
    tmp: PathBuf,
    pub size: u64,
}

impl Drop for Received {
    fn drop(&mut self) {
        // After `keep`, the file is in place under another name: nothing to remove.
        let _ = std::fs::remove_file(&self.tmp);
    }
}

impl CheckpointStore {
    pub fn path(&self, job: &JobId) -> PathBuf {
        self.dir.join(format!("{job}.ckpt"))
    }

    /// Drops a job's checkpoint once the job has finished for good, with any temporary file a
    /// local worker killed while writing one left beside it (`<job>.ckpt.<pid>.tmp`).
    pub fn remove(&self, job: &JobId) {
        let _ = std::fs::remove_file(self.path(job));
        let prefix = format!("{job}.ckpt.");
        let Ok(entries) = std::fs::read_dir(&self.dir) else {
            return;
        };
        for e in entries.flatten() {
            let name = e.file_name();
            let name = name.to_string_lossy();
            if name.starts_with(&prefix) && name.ends_with(".tmp") {
                let _ = std::fs::remove_file(e.path());
            }
        }
    }

    /// Removes the temporary files of uploads a previous run left unfinished (`.<job>.<lease>
    /// .part`, up to `--max-checkpoint-mb` each): nothing else would.
    pub fn remove_partial_uploads(&self) {
        let Ok(entries) = std::fs::read_dir(&self.dir) else {
            return;
        };
        for e in entries.flatten() {
            let name = e.file_name();
            let name = name.to_string_lossy();
            if name.starts_with('.') && name.ends_with(".part") {
                let _ = std::fs::remove_file(e.path());
            }
        }
    }

    /// Writes `first` and the rest of `stream` to a temporary file, fsynced; refuses an upload
    /// over the size limit. The file goes with the returned [`Received`], and with this future
    /// if the upload fails or is aborted (tonic drops a cancelled call's handler at an await).
    pub async fn receive(
        &self,
        job: &JobId,
        first: pb::CheckpointChunk,
        stream: &mut Streaming<pb::CheckpointChunk>,
    ) -> Result<Received, Status> {
        tokio::fs::create_dir_all(&self.dir)
            .await
            .map_err(ServiceError::io(self.dir.display().to_string()))?;
        let mut received = Received {
            tmp: self.dir.join(format!(".{job}.{}.part", first.lease_id)),
            size: 0,
        };
        let io = || ServiceError::io(received.tmp.display().to_string());
        // Mode 600, kept by the rename into place: a checkpoint holds a job's whole state.
        let mut file = tokio::fs::OpenOptions::new()
            .write(true)
            .create(true)
            .truncate(true)
            .mode(0o600)
            .open(&received.tmp)
            .await
            .map_err(io())?;
        let mut chunk = Some(first);
        while let Some(c) = chunk {
            received.size += c.data.len() as u64;
            if received.size > self.max_bytes {
                let limit = self.max_bytes;
                let job = job.clone();
                return Err(ServiceError::CheckpointTooLarge { job, limit }.into());
            }
            file.write_all(&c.data).await.map_err(io())?;
            chunk = stream.message().await?;
        }
        file.sync_all().await.map_err(io())?;
        Ok(received)
    }

    /// Checks a received upload is `job`'s checkpoint in this tool's format (safetensors, read
    /// as data: see `orchestrator_proto::checkpoint`), so the coordinator never stores what a
    /// worker could not load, nor a file whose loading would run code.
    pub async fn check(&self, job: &JobId, r: &Received) -> Result<(), ServiceError> {
        let (tmp, job) = (r.tmp.clone(), job.clone());
        let verdict =
            tokio::task::spawn_blocking(move || -> Result<Option<String>, std::io::Error> {
                let bytes = std::fs::read(&tmp)?;
                Ok(orchestrator_proto::checkpoint::parse(&bytes, job.as_str())
                    .err()
                    .map(|e| e.to_string()))
            })
            .await
            .map_err(|e| ServiceError::io("checking a checkpoint")(std::io::Error::other(e)))?
            .map_err(ServiceError::io(r.tmp.display().to_string()))?;
        match verdict {
            None => Ok(()),
            Some(why) => Err(ServiceError::InvalidArgument(format!(
                "checkpoint refused: {why}"
            ))),
        }
    }

    /// Puts a received checkpoint in place as `job`'s latest.
    pub async fn keep(&self, job: &JobId, r: Received) -> Result<(), ServiceError> {
        let path = self.path(job);
        tokio::fs::rename(&r.tmp, &path)
            .await
            .map_err(ServiceError::io(path.display().to_string()))
    }

    /// Throws a received checkpoint away.
    pub async fn discard(&self, r: Received) {
        let _ = tokio::fs::remove_file(&r.tmp).await;
        drop(r);
    }

    /// `job`'s checkpoint as a stream of chunks.
    pub async fn send(
        &self,
        job: &JobId,
    ) -> Result<ReceiverStream<Result<pb::CheckpointChunk, Status>>, ServiceError> {
        let path = self.path(job);
        let mut file = match tokio::fs::File::open(&path).await {
            Ok(f) => f,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                return Err(ServiceError::NoCheckpoint)
            }
            Err(e) => return Err(ServiceError::io(path.display().to_string())(e)),
        };
        // Bounded: the reader waits while the client is slow.
        let (tx, rx) = tokio::sync::mpsc::channel(4);
        tokio::spawn(async move {
            let mut buf = vec![0u8; orchestrator_proto::CHECKPOINT_CHUNK];
            loop {
                let chunk = match file.read(&mut buf).await {
                    Ok(0) => break,
                    Ok(n) => Ok(pb::CheckpointChunk {
                        data: buf[..n].to_vec(),
                        ..Default::default()
                    }),
                    Err(e) => Err(Status::from(ServiceError::io("reading a checkpoint")(e))),
                };
                let failed = chunk.is_err();
                if tx.send(chunk).await.is_err() || failed {
                    break;
                }
            }
        });
        Ok(ReceiverStream::new(rx))
    }
}
