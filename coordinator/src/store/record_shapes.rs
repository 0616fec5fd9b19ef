//! One record, checked in every shape it takes. An epoch's metrics are defined once, in
//! `common::EpochMetrics` (whose serde form is `results.json`'s), and travel as the wire's
//! `orchestrator.v1.EpochMetrics` and as the `epochs` table's columns; a job's training spec is
//! `common::TrainSpec` and the wire's `JobSpec`. These tests fail when a field is added to one
//! shape only, or when a conversion drops one.

use std::collections::BTreeSet;

use common::metrics::{EpochClock, EpochHost};
use common::{Activation, Dataset, EpochMetrics, Model, Optimizer, Precision, Tf32, TrainSpec};
use orchestrator_proto::v1;
use prost::Message;

/// The leaf field names of a value's JSON form (nested objects flattened: `clock.start_ms` is
/// `start_ms`), as a serde-derived record writes them.
fn json_leaves(value: &serde_json::Value, out: &mut BTreeSet<String>) {
    if let serde_json::Value::Object(map) = value {
        for (k, v) in map {
            if v.is_object() {
                json_leaves(v, out);
            } else {
                out.insert(k.clone());
            }
        }
    }
}

/// The field names of message `name` of `orchestrator.v1`, from the descriptors the build made.
fn wire_fields(name: &str) -> BTreeSet<String> {
    let set = prost_types::FileDescriptorSet::decode(orchestrator_proto::FILE_DESCRIPTOR_SET)
        .expect("the build's descriptor set decodes");
    set.file
        .iter()
        .flat_map(|f| &f.message_type)
        .find(|m| m.name() == name)
        .unwrap_or_else(|| panic!("no message {name}"))
        .field
        .iter()
        .map(|f| f.name().to_string())
        .collect()
}

fn set(names: &[&str]) -> BTreeSet<String> {
    names.iter().map(|s| s.to_string()).collect()
}

/// An epoch with every field set to a distinct value, optional parts included.
fn full_epoch() -> EpochMetrics {
    EpochMetrics {
        epoch: 3,
        train_seconds: 1.5,
        train_loss: 0.25,
        test_loss: 0.375,
        test_accuracy: 0.875,
        clock: Some(EpochClock {
            start_ms: 1_000,
            train_end_ms: 2_000,
            eval_end_ms: 3_000,
        }),
        host: Some(EpochHost {
            cpu_seconds: 2.5,
            contention: 0.125,
        }),
    }
}

#[test]
fn an_epoch_has_the_same_fields_in_json_on_the_wire_and_in_sql() {
    let mut json = BTreeSet::new();
    json_leaves(&serde_json::to_value(full_epoch()).unwrap(), &mut json);
    let wire = wire_fields("EpochMetrics");
    let sql: BTreeSet<String> = super::EPOCH_COLUMNS
        .split(',')
        .map(|c| c.trim().to_string())
        .filter(|c| c != "job_id" && c != "lease_id")
        .collect();
    assert_eq!(
        json, wire,
        "common::EpochMetrics (JSON) against the wire's EpochMetrics"
    );
    assert_eq!(
        json, sql,
        "common::EpochMetrics (JSON) against the epochs table's columns"
    );
    assert_eq!(
        json,
        set(&[
            "epoch",
            "train_seconds",
            "train_loss",
            "test_loss",
            "test_accuracy",
            "start_ms",
            "train_end_ms",
            "eval_end_ms",
            "cpu_seconds",
            "contention",
        ]),
        "an epoch's fields changed: update the .proto, proto/src/convert.rs, the store and this list"
    );
}

#[test]
fn an_epoch_survives_the_wire_unchanged() {
    let epoch = full_epoch();
    let wire = v1::EpochMetrics::from(&epoch);
    let back =
        EpochMetrics::from(&v1::EpochMetrics::decode(wire.encode_to_vec().as_slice()).unwrap());
    assert_eq!(back, epoch, "through the wire");
}

#[test]
fn a_training_spec_has_the_same_fields_in_json_and_on_the_wire() {
    let spec = TrainSpec {
        dataset: Dataset::Cifar10,
        model: Model::Vgg11Bn,
        activation: Activation::Selu,
        seed: 7,
        epochs: 3,
        train_limit: 500,
        test_limit: 200,
        augment: true,
        latency_samples: 50,
        optimizer: Optimizer::Sgd,
        learning_rate: 0.01,
        batch_size: 64,
        momentum: 0.8,
        weight_decay: 0.0005,
        precision: Precision::Bf16,
        tf32: Tf32::All,
        deterministic: true,
    };
    let mut json = BTreeSet::new();
    json_leaves(&serde_json::to_value(&spec).unwrap(), &mut json);
    let mut wire = wire_fields("JobSpec");
    // What a lease adds to the spec: which job, and how often to checkpoint (the grid's).
    for extra in ["job_id", "checkpoint_every"] {
        assert!(wire.remove(extra), "JobSpec lost {extra}");
    }
    assert_eq!(
        json, wire,
        "common::TrainSpec (JSON) against the wire's JobSpec"
    );
    let back = TrainSpec::try_from(&v1::JobSpec::from(&spec)).unwrap();
    assert_eq!(back, spec, "through the wire");
}
