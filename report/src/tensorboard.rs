//! TensorBoard event files, `tensorboard/<job id>/events.out.tfevents.<secs>.dlgrid`: the
//! per-epoch scalars (`test_accuracy`, `train_loss`, `test_loss`, `train_seconds`, step = epoch)
//! and the job's spec as text, so `tensorboard --logdir <out>/tensorboard` compares every run of
//! a grid.
//!
//! The format is small enough to write here: TFRecord framing (each record its length, the
//! masked CRC-32C of the length, the bytes, their masked CRC-32C) around `tensorflow.Event`
//! protocol buffers, of which only the fields used are declared below.

use common::JobRecord;
use prost::Message;

#[derive(Clone, PartialEq, prost::Message)]
struct Event {
    #[prost(double, tag = "1")]
    wall_time: f64,
    #[prost(int64, tag = "2")]
    step: i64,
    #[prost(oneof = "What", tags = "3, 5")]
    what: Option<What>,
}

#[derive(Clone, PartialEq, prost::Oneof)]
enum What {
    #[prost(string, tag = "3")]
    FileVersion(String),
    #[prost(message, tag = "5")]
    Summary(Summary),
}

#[derive(Clone, PartialEq, prost::Message)]
struct Summary {
    #[prost(message, repeated, tag = "1")]
    value: Vec<SummaryValue>,
}

#[derive(Clone, PartialEq, prost::Message)]
struct SummaryValue {
    #[prost(string, tag = "1")]
    tag: String,
    #[prost(message, optional, tag = "9")]
    metadata: Option<SummaryMetadata>,
    #[prost(oneof = "Kind", tags = "2, 8")]
    kind: Option<Kind>,
}

#[derive(Clone, PartialEq, prost::Oneof)]
enum Kind {
    #[prost(float, tag = "2")]
    SimpleValue(f32),
    #[prost(message, tag = "8")]
    Tensor(TensorProto),
}

#[derive(Clone, PartialEq, prost::Message)]
struct SummaryMetadata {
    #[prost(message, optional, tag = "1")]
    plugin_data: Option<PluginData>,
}

#[derive(Clone, PartialEq, prost::Message)]
struct PluginData {
    #[prost(string, tag = "1")]
    plugin_name: String,
}

#[derive(Clone, PartialEq, prost::Message)]
struct TensorProto {
    /// `DT_STRING`.
    #[prost(int32, tag = "1")]
    dtype: i32,
    /// A scalar: a shape without dimensions.
    #[prost(message, optional, tag = "2")]
    tensor_shape: Option<TensorShape>,
    #[prost(bytes = "vec", repeated, tag = "8")]
    string_val: Vec<Vec<u8>>,
}

#[derive(Clone, PartialEq, prost::Message)]
struct TensorShape {}

const DT_STRING: i32 = 7;

/// The CRC TFRecord stores: CRC-32C, rotated and offset so that a CRC of data holding CRCs
/// stays well distributed.
fn masked_crc(bytes: &[u8]) -> u32 {
    let crc = crc32c::crc32c(bytes);
    crc.rotate_right(15).wrapping_add(0xa282_ead8)
}

fn record(out: &mut Vec<u8>, data: &[u8]) {
    let len = (data.len() as u64).to_le_bytes();
    out.extend_from_slice(&len);
    out.extend_from_slice(&masked_crc(&len).to_le_bytes());
    out.extend_from_slice(data);
    out.extend_from_slice(&masked_crc(data).to_le_bytes());
}

fn scalar(tag: &str, value: f64) -> SummaryValue {
    SummaryValue {
        tag: tag.into(),
        metadata: None,
        kind: Some(Kind::SimpleValue(value as f32)),
    }
}

/// `(file name, bytes)` of the job's event file. The name is stable (the job's start, not the
/// time of writing), so re-rendering replaces the file instead of adding a second run.
pub fn event_file(job: &JobRecord) -> (String, Vec<u8>) {
    let start_ms = job.clock.map_or(0, |c| c.init_start_ms);
    let mut out = Vec::new();
    let mut write = |wall_ms: u64, step: i64, what: What| {
        let event = Event {
            wall_time: wall_ms as f64 / 1000.0,
            step,
            what: Some(what),
        };
        record(&mut out, &event.encode_to_vec());
    };
    write(start_ms, 0, What::FileVersion("brain.Event:2".into()));
    let spec = serde_json::to_string_pretty(&job.spec).unwrap_or_default();
    let text = SummaryValue {
        tag: "spec".into(),
        metadata: Some(SummaryMetadata {
            plugin_data: Some(PluginData {
                plugin_name: "text".into(),
            }),
        }),
        kind: Some(Kind::Tensor(TensorProto {
            dtype: DT_STRING,
            tensor_shape: Some(TensorShape {}),
            string_val: vec![format!("```\n{spec}\n```").into_bytes()],
        })),
    };
    write(start_ms, 0, What::Summary(Summary { value: vec![text] }));
    for e in &job.epochs {
        let value = vec![
            scalar("test_accuracy", e.test_accuracy),
            scalar("train_loss", e.train_loss),
            scalar("test_loss", e.test_loss),
            scalar("train_seconds", e.train_seconds),
        ];
        let wall = e.clock.map_or(start_ms, |c| c.eval_end_ms);
        write(wall, e.epoch as i64, What::Summary(Summary { value }));
    }
    (
        format!("events.out.tfevents.{}.dlgrid", start_ms / 1000),
        out,
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn masked_crc_matches_tensorflow() {
        // TensorFlow's crc32c_test: Mask(Value("foo")) round-trips; the unmasked CRC-32C of
        // "123456789" is 0xe3069283 (the standard check value).
        assert_eq!(crc32c::crc32c(b"123456789"), 0xe306_9283);
        let masked = masked_crc(b"foo");
        let unmasked = masked.wrapping_sub(0xa282_ead8).rotate_left(15);
        assert_eq!(unmasked, crc32c::crc32c(b"foo"));
    }

    #[test]
    fn records_frame_events_per_epoch() {
        let r = crate::fixtures::results();
        let (name, bytes) = event_file(&r.jobs[0]);
        assert!(name.starts_with("events.out.tfevents."), "{name}");
        // Walk the records: version, spec text, one per epoch.
        let (mut at, mut events) = (0, Vec::new());
        while at < bytes.len() {
            let len = u64::from_le_bytes(bytes[at..at + 8].try_into().unwrap()) as usize;
            assert_eq!(
                u32::from_le_bytes(bytes[at + 8..at + 12].try_into().unwrap()),
                masked_crc(&bytes[at..at + 8])
            );
            let data = &bytes[at + 12..at + 12 + len];
            let crc = &bytes[at + 12 + len..at + 16 + len];
            assert_eq!(
                u32::from_le_bytes(crc.try_into().unwrap()),
                masked_crc(data)
            );
            events.push(Event::decode(data).unwrap());
            at += 16 + len;
        }
        assert_eq!(events.len(), 2 + r.jobs[0].epochs.len());
        let Some(What::Summary(s)) = &events[3].what else {
            panic!("{:?}", events[3]);
        };
        assert_eq!(events[3].step, 2);
        assert_eq!(s.value[0].tag, "test_accuracy");
        assert_eq!(s.value[0].kind, Some(Kind::SimpleValue(0.95)));
    }
}
