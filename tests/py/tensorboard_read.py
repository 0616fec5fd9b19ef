"""Reads a TensorBoard run folder with the `tensorboard` package's own event reader and prints
what it found as JSON: {"scalars": {tag: [[step, value], ...]}, "text": {tag: text}}.

Used by the end-to-end tests to check that dlgrid's event files are what TensorBoard reads.
Usage: python tensorboard_read.py RUN_DIR
"""
import json
import sys

from tensorboard.backend.event_processing import event_accumulator


def main(run_dir):
    acc = event_accumulator.EventAccumulator(run_dir, size_guidance={"scalars": 0, "tensors": 0})
    acc.Reload()
    tags = acc.Tags()
    scalars = {
        tag: [[e.step, e.value] for e in acc.Scalars(tag)] for tag in tags.get("scalars", [])
    }
    text = {}
    for tag in tags.get("tensors", []):
        for e in acc.Tensors(tag):
            text[tag] = b"".join(e.tensor_proto.string_val).decode()
    print(json.dumps({"scalars": scalars, "text": text}))


if __name__ == "__main__":
    main(sys.argv[1])
