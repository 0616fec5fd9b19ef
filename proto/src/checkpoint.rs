//! The checkpoint format, as both binaries read it. A checkpoint is a safetensors file: an
//! 8-byte length, a JSON header giving each tensor's name, dtype, shape and byte range, then the
//! raw data. Reading one parses that header and copies bytes: nothing in the file is run. (The
//! format before this one was libtorch's archive, whose loader compiles and runs TorchScript
//! from the file before anything can be checked: a hostile worker's upload ran code on the
//! next machine that resumed the job.) The job's metadata travels as a `meta` tensor of JSON
//! bytes, and names the job, so a checkpoint is only ever resumed by its own job.

use safetensors::SafeTensors;

/// The tensor that holds the metadata (JSON bytes, dtype U8).
pub const META: &str = "meta";

/// Why bytes are not a checkpoint that job may resume from.
#[derive(Debug, thiserror::Error)]
pub enum CheckpointError {
    #[error(
        "it is in the older checkpoint format (a libtorch archive), which is not read: reading one \
         can run code from the file"
    )]
    LibtorchArchive,
    #[error("it is not a checkpoint of this tool (safetensors): {0}")]
    NotSafetensors(String),
    #[error("it has no `meta` record")]
    NoMeta,
    #[error("its `meta` record is not this tool's: {0}")]
    BadMeta(String),
    #[error("it belongs to job {0}")]
    OtherJob(String),
}

/// A checkpoint parsed from `bytes` (no copy of the tensors' data), with its metadata as JSON,
/// checked to be job `job`'s.
pub struct Parsed<'a> {
    pub tensors: SafeTensors<'a>,
    pub meta: serde_json::Value,
}

/// Parses and checks `bytes` as job `job`'s checkpoint.
pub fn parse<'a>(bytes: &'a [u8], job: &str) -> Result<Parsed<'a>, CheckpointError> {
    // A zip archive (libtorch's `torch.save` and `save_multi`): refused unread.
    if bytes.starts_with(b"PK\x03\x04") {
        return Err(CheckpointError::LibtorchArchive);
    }
    let tensors = SafeTensors::deserialize(bytes)
        .map_err(|e| CheckpointError::NotSafetensors(format!("{e:?}")))?;
    let meta = tensors.tensor(META).map_err(|_| CheckpointError::NoMeta)?;
    if meta.dtype() != safetensors::Dtype::U8 || meta.shape().len() != 1 {
        return Err(CheckpointError::BadMeta(format!(
            "{:?} of shape {:?}",
            meta.dtype(),
            meta.shape()
        )));
    }
    let value: serde_json::Value =
        serde_json::from_slice(meta.data()).map_err(|e| CheckpointError::BadMeta(e.to_string()))?;
    match value.get("job_id").and_then(|v| v.as_str()) {
        Some(id) if id == job => Ok(Parsed {
            tensors,
            meta: value,
        }),
        Some(other) => Err(CheckpointError::OtherJob(other.chars().take(200).collect())),
        None => Err(CheckpointError::BadMeta("no job_id".into())),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use safetensors::tensor::TensorView;

    fn file(meta: &[u8], extra: &[(&str, Vec<u8>)]) -> Vec<u8> {
        let mut views = vec![(
            META,
            TensorView::new(safetensors::Dtype::U8, vec![meta.len()], meta).unwrap(),
        )];
        for (name, data) in extra {
            views.push((
                name,
                TensorView::new(safetensors::Dtype::F32, vec![data.len() / 4], data).unwrap(),
            ));
        }
        safetensors::tensor::serialize(views, &None).unwrap()
    }

    #[test]
    fn a_checkpoint_of_the_job_parses() {
        let w = vec![0u8; 16];
        let bytes = file(br#"{"job_id": "j1", "step": 3}"#, &[("model.w", w)]);
        let p = parse(&bytes, "j1").unwrap();
        assert_eq!(p.meta["step"], 3);
        assert_eq!(p.tensors.tensor("model.w").unwrap().shape(), &[4]);
    }

    #[test]
    fn anything_else_is_refused_naming_why() {
        let ok = file(br#"{"job_id": "j1"}"#, &[]);
        let err = |b: &[u8], job: &str| parse(b, job).err().unwrap().to_string();
        assert!(err(b"PK\x03\x04rest of a zip", "j1").contains("older checkpoint format"));
        assert!(err(b"", "j1").starts_with("it is not a checkpoint"));
        assert!(err(&ok[..ok.len() - 1], "j1").starts_with("it is not a checkpoint"));
        assert_eq!(err(&ok, "j2"), "it belongs to job j1");
        assert_eq!(
            err(&file(b"{}", &[]), "j1"),
            "its `meta` record is not this tool's: no job_id"
        );
        assert!(err(&file(b"not json", &[]), "j1").starts_with("its `meta` record"));
        let no_meta = safetensors::tensor::serialize(
            vec![(
                "x",
                TensorView::new(safetensors::Dtype::U8, vec![1], &[0u8]).unwrap(),
            )],
            &None,
        )
        .unwrap();
        assert_eq!(err(&no_meta, "j1"), "it has no `meta` record");
    }
}
