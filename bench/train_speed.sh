#!/usr/bin/env bash
# Epoch time of our worker against PyTorch eager (default, channels-last, and channels-last with
# torch.optim.Adam(fused=True)) on the same data, the same libtorch and the same thread count,
# run back to back in one go. Prints each epoch and the ratio of mean epoch times (the first
# epoch excluded as warm-up when there are 2+).
#
#   bench/train_speed.sh [DATA_DIR] [paper-cnn|vgg11-bn] [EPOCHS] [TRAIN_LIMIT] [DEVICE]
#
# DATA_DIR holds mnist/ (paper-cnn) or cifar-10/ (vgg11-bn). On the GPU machine, point
# LD_LIBRARY_PATH at that machine's torch/lib and PYTHON at its python.
set -euo pipefail
cd "$(dirname "$0")/.."
data="${1:-${DATASETS_DIR:-../shared/datasets}}"
model="${2:-paper-cnn}"
epochs="${3:-3}"
limit="${4:-0}"
device="${5:-cpu}"
if [ -z "${PYTHON:-}" ]; then
    source scripts/env.sh
    cargo build --release -p worker --locked >&2
    PYTHON="$TORCH_VENV/bin/python"
fi
worker="${WORKER_BIN:-./target/release/worker}"
precision="${PRECISION:-fp32}"
threads="${THREADS:-$(nproc)}"
dataset=mnist; [ "$model" = vgg11-bn ] && dataset=cifar10
tmp=$(mktemp -d); trap 'rm -rf "$tmp"' EXIT
echo "== $model on $dataset, $epochs epoch(s), train_limit=$limit, device=$device, threads=$threads, precision=$precision"
# Which machine the numbers come from: a speed-up on one CPU does not carry to another.
echo "cpu: $(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2- | sed 's/^ *//'), $(nproc) cores available"
echo "cpu flags: $(grep -m1 '^flags' /proc/cpuinfo | tr ' ' '\n' | grep -E '^(avx|avx2|fma|avx512f|avx512bw|avx512_vnni|avx512_bf16|amx_tile)$' | tr '\n' ' ')"
if [ "$device" != cpu ]; then
    echo "gpu: $(nvidia-smi --query-gpu=name,driver_version --format=csv,noheader 2>/dev/null | head -1)"
fi
"$worker" train --dataset "$dataset" --model "$model" --activation relu \
    --epochs "$epochs" --train-limit "$limit" --latency-samples 100 --augment false \
    --data-dir "$data" --device "$device" --precision "$precision" --json >"$tmp/ours.json"
"$PYTHON" bench/pytorch_reference.py --data-dir "$data" --model "$model" --epochs "$epochs" \
    --train-limit "$limit" --device "$device" --threads "$threads" --precision "$precision" >"$tmp/pt.json"
"$PYTHON" bench/pytorch_reference.py --data-dir "$data" --model "$model" --epochs "$epochs" \
    --train-limit "$limit" --device "$device" --threads "$threads" --precision "$precision" --channels-last >"$tmp/ptcl.json"
"$PYTHON" bench/pytorch_reference.py --data-dir "$data" --model "$model" --epochs "$epochs" \
    --train-limit "$limit" --device "$device" --threads "$threads" --precision "$precision" --channels-last --fused-adam \
    >"$tmp/ptclf.json"
"$PYTHON" - "$tmp" <<'PY'
import json, sys, os
d = sys.argv[1]
ours = json.load(open(os.path.join(d, "ours.json")))
# Our train_seconds is cumulative; per-epoch times are the differences.
cum = [e["train_seconds"] for e in ours["epochs"]]
ours_epochs = [b - a for a, b in zip([0.0] + cum, cum)]
runs = {"dlgrid worker (tch)": (ours_epochs, [e["test_accuracy"] for e in ours["epochs"]])}
for f in ("pt.json", "ptcl.json", "ptclf.json"):
    r = json.load(open(os.path.join(d, f)))
    runs[r["variant"]] = ([e["seconds"] for e in r["epochs"]], [e["test_accuracy"] for e in r["epochs"]])
def mean(xs):
    xs = xs[1:] if len(xs) > 1 else xs
    return sum(xs) / len(xs)
print(f"{'variant':<40} {'epoch seconds':<32} {'mean':>7} {'final acc':>9}")
for name, (secs, accs) in runs.items():
    print(f"{name:<40} {' '.join(f'{s:6.2f}' for s in secs):<32} {mean(secs):7.2f} {accs[-1]:9.4f}")
ours_mean = mean(runs["dlgrid worker (tch)"][0])
for name, (secs, _) in runs.items():
    if name.startswith("pytorch"):
        print(f"ours / {name}: {ours_mean / mean(secs):.3f}  ({mean(secs) / ours_mean:.2f}x faster)")
PY
