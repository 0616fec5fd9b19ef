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
#
# ISA=avx2 runs both sides as on a CPU without AVX-512 (ATen's, oneDNN's, MKL's and our kernels
# limited to AVX2). On the CPU, bench/share_speed.sh follows (two jobs sharing the cores through
# the coordinator); SHARE=0 skips it.
set -euo pipefail
cd "$(dirname "$0")/.."
source scripts/lib.sh
data="${1:-${DATASETS_DIR:-../shared/datasets}}"
model="${2:-paper-cnn}"
epochs="${3:-3}"
limit="${4:-0}"
device="${5:-cpu}"
if [ -z "${PYTHON:-}" ]; then
    dlgrid_build
    PYTHON="$TORCH_VENV/bin/python"
fi
worker="${WORKER_BIN:-./target/release/worker}"
precision="${PRECISION:-fp32}"
threads="${THREADS:-$(nproc)}"
dataset=mnist; [ "$model" = vgg11-bn ] && dataset=cifar10
isa="${ISA:-native}"
if [ "$isa" = avx2 ]; then
    export ATEN_CPU_CAPABILITY=avx2 ONEDNN_MAX_CPU_ISA=AVX2 MKL_ENABLE_INSTRUCTIONS=AVX2 DLGRID_MAX_CPU_ISA=avx2
fi
tmp=$(mktemp -d); trap 'rm -rf "$tmp"' EXIT
echo "== $model on $dataset, $epochs epoch(s), train_limit=$limit, device=$device, threads=$threads, precision=$precision, isa=$isa"
# Which machine the numbers come from: a speed-up on one CPU does not carry to another.
echo "cpu: $(dlgrid_cpu) available"
echo "cpu flags: $(dlgrid_cpu_flags)"
if [ "$device" != cpu ]; then
    echo "gpu: $(nvidia-smi --query-gpu=name,driver_version --format=csv,noheader 2>/dev/null | head -1)"
fi
# RUNS rounds (default 2), each running all four in turn, so a drift in the machine's speed
# (VMs drift by 10% and more within minutes) hits every variant alike; medians are reported.
runs="${RUNS:-2}"
pt() { "$PYTHON" bench/pytorch_reference.py --data-dir "$data" --model "$model" --epochs "$epochs" \
    --train-limit "$limit" --device "$device" --threads "$threads" --precision "$precision" "$@"; }
for r in $(seq 1 "$runs"); do
    "$worker" train --dataset "$dataset" --model "$model" --activation relu \
        --epochs "$epochs" --train-limit "$limit" --latency-samples 100 --augment false \
        --data-dir "$data" --device "$device" --precision "$precision" --threads "$threads" \
        --json >"$tmp/ours.$r.json"
    pt >"$tmp/pt.$r.json"
    pt --channels-last >"$tmp/ptcl.$r.json"
    pt --channels-last --fused-adam >"$tmp/ptclf.$r.json"
done
"$PYTHON" - "$tmp" "$runs" <<'PY'
import json, sys, os
d, runs = sys.argv[1], int(sys.argv[2])
def mean(xs):
    xs = xs[1:] if len(xs) > 1 else xs  # the first epoch is warm-up
    return sum(xs) / len(xs)
def median(xs):
    xs = sorted(xs)
    return (xs[(len(xs) - 1) // 2] + xs[len(xs) // 2]) / 2
variants = {}  # name -> list of (epoch seconds, final accuracy), one per round
for r in range(1, runs + 1):
    ours = json.load(open(os.path.join(d, f"ours.{r}.json")))
    # Our train_seconds is cumulative; per-epoch times are the differences.
    cum = [e["train_seconds"] for e in ours["epochs"]]
    secs = [b - a for a, b in zip([0.0] + cum, cum)]
    variants.setdefault("dlgrid worker (tch)", []).append((secs, ours["epochs"][-1]["test_accuracy"]))
    for f in ("pt", "ptcl", "ptclf"):
        p = json.load(open(os.path.join(d, f"{f}.{r}.json")))
        variants.setdefault(p["variant"], []).append(([e["seconds"] for e in p["epochs"]], p["epochs"][-1]["test_accuracy"]))
e = ours.get("engine") or {}
print(f"our engine: {e.get('layout')} layout, {e.get('kernels')} kernels ({e.get('chosen')} in the last round)")
print(f"{'variant':<40} {'mean epoch seconds, by round':<30} {'median':>7} {'final acc':>9}")
medians = {}
for name, rounds in variants.items():
    means = [mean(s) for s, _ in rounds]
    medians[name] = median(means)
    print(f"{name:<40} {' '.join(f'{m:6.2f}' for m in means):<30} {medians[name]:7.2f} {rounds[-1][1]:9.4f}")
ours_m = medians["dlgrid worker (tch)"]
fastest = min((m, n) for n, m in medians.items() if n.startswith("pytorch"))
for name, m in medians.items():
    if name.startswith("pytorch"):
        print(f"ours / {name}: {ours_m / m:.3f}  ({m / ours_m:.2f}x faster)")
print(f"against the fastest PyTorch variant ({fastest[1]}): {fastest[0] / ours_m:.2f}x faster")
PY
if [ "$device" = cpu ] && [ "${SHARE:-1}" != 0 ]; then
    share_limit="$limit"; [ "$share_limit" = 0 ] && share_limit=30000
    WORKER_BIN="$worker" bench/share_speed.sh "$data" "$model" 4 "$share_limit"
fi
