#!/usr/bin/env bash
# The GPU check: everything the first GPU machine must show, in one call of under 10 minutes,
# written under one output folder.
#
#   1. the GPU preflight (driver vs libtorch's CUDA build; the GPUs CUDA sees);
#   2. paper-cnn on full MNIST, 10 epochs x 6 activations, through the coordinator (one local
#      worker per GPU), with its report;
#   3. vgg11-bn on a CIFAR-10 slice for a few epochs, fp32 and bf16;
#   4. bench/train_speed.sh on the GPU, ours vs PyTorch eager / channels-last / fused Adam, for
#      both models;
#   5. two jobs sharing one GPU (two slots), whose report marks their times.
#
# Three modes:
#
#   bench/gpu_check.sh prepare [KIT]     (here, with Rust: default KIT=target/gpu-kit)
#       builds the release binaries, strips them, and cuts the data slice (MNIST whole,
#       CIFAR-10 first 1,500 images of each training batch and 1,000 test images) from
#       $DATASETS_DIR: about 55 MB, under the device tool's 64 MiB.
#   bench/gpu_check.sh run [KIT] [OUT]   (on the GPU machine: no Rust there)
#       uses KIT's binaries and data and the PyTorch of $PYTHON (default python3); for
#       the library's device tool, the one call is:
#           run(command="bench/gpu_check.sh run target/gpu-kit \"$OUT/gpu-check\"",
#               carry=["target/gpu-kit"], timeout_s=600)
#   bench/gpu_check.sh dry-run DATA OUT  (any machine: the same steps on the CPU, tiny limits,
#       with the binaries of target/debug or $COORDINATOR_BIN/$WORKER_BIN; the tests run it)
set -euo pipefail
cd "$(dirname "$0")/.."
source scripts/lib.sh
mode="${1:-}"

cifar_train_per_batch=1500
cifar_test=1000
record=3073   # CIFAR-10 binary record: 1 label byte + 3x32x32 pixels

# Cuts the data slice of $1 (mnist/, cifar-10/) into $2.
slice_data() {
    local src="$1" dst="$2"
    mkdir -p "$dst/mnist" "$dst/cifar-10"
    cp "$src"/mnist/*-ubyte* "$dst/mnist/"
    local cifar="$src/cifar-10"
    [ -d "$cifar/cifar-10-batches-bin" ] && cifar="$cifar/cifar-10-batches-bin"
    for i in 1 2 3 4 5; do
        head -c $((cifar_train_per_batch * record)) "$cifar/data_batch_$i.bin" >"$dst/cifar-10/data_batch_$i.bin"
    done
    head -c $((cifar_test * record)) "$cifar/test_batch.bin" >"$dst/cifar-10/test_batch.bin"
}

prepare() {
    local kit="${1:-target/gpu-kit}"
    : "${DATASETS_DIR:?set DATASETS_DIR to the folder holding mnist/ and cifar-10/}"
    dlgrid_build
    rm -rf "$kit" && mkdir -p "$kit/bin"
    cp target/release/coordinator target/release/worker "$kit/bin/"
    strip "$kit/bin/coordinator" "$kit/bin/worker"
    # The CUDA library must still be linked after stripping (rustc's --as-needed drops it).
    readelf -d "$kit/bin/worker" | grep -q 'libtorch_cuda.so' || {
        echo "gpu_check: $kit/bin/worker does not link libtorch_cuda.so" >&2
        exit 1
    }
    slice_data "$DATASETS_DIR" "$kit/data"
    du -sh "$kit" >&2
    echo "kit ready in $kit; on the GPU machine: bench/gpu_check.sh run $kit OUT" >&2
}

# Runs the five steps with $COORDINATOR $WORKER $PYTHON on $DATA into $OUT, on $DEVICE.
check() {
    mkdir -p "$OUT"
    exec > >(tee -a "$OUT/gpu_check.log") 2>&1
    echo "== gpu_check ($mode) on $(hostname), $(date -u +%FT%TZ), device $DEVICE"
    nvidia-smi --query-gpu=index,name,memory.total,driver_version --format=csv 2>/dev/null | tee "$OUT/nvidia-smi.csv" || true
    echo "== 1. preflight"
    "$WORKER" preflight | tee "$OUT/preflight.txt"

    echo "== 2. paper-cnn on MNIST through the coordinator"
    cat >"$OUT/paper-mnist.yaml" <<YAML
name: gpu-check-mnist
activations: [$ACTIVATIONS]
datasets:
  - {dataset: mnist, model: paper-cnn, epochs: $EPOCHS_CNN, target_accuracy: 0.98, train_limit: $LIMIT_CNN, test_limit: $TEST_LIMIT, latency_samples: 1000}
YAML
    "$COORDINATOR" --grid "$OUT/paper-mnist.yaml" --out "$OUT/mnist" --data-dir "$DATA" \
        --device "$DEVICE" --listen 127.0.0.1:0 --http off
    sed -n '/^## mnist/,/^## /p' "$OUT/mnist/report.md" | head -20

    echo "== 3. vgg11-bn on the CIFAR-10 slice, fp32 and bf16"
    for precision in fp32 bf16; do
        "$WORKER" train --dataset cifar10 --model vgg11-bn --activation relu \
            --epochs "$EPOCHS_VGG" --train-limit "$LIMIT_VGG" --test-limit "$TEST_LIMIT" \
            --latency-samples 100 --precision "$precision" --device "$DEVICE" \
            --data-dir "$DATA" --json >"$OUT/vgg11-$precision.json"
    done
    "$PYTHON" - "$OUT" <<'PY'
import json, os, sys
out = sys.argv[1]
rows = []
for p in ("fp32", "bf16"):
    r = json.load(open(os.path.join(out, f"vgg11-{p}.json")))
    cum = [e["train_seconds"] for e in r["epochs"]]
    per = [b - a for a, b in zip([0.0] + cum, cum)]
    warm = per[1:] or per
    rows.append((p, sum(warm) / len(warm), r["epochs"][-1]["test_accuracy"], r["latency_ms_per_sample"]))
with open(os.path.join(out, "vgg11-precision.txt"), "w") as f:
    for p, secs, acc, lat in rows:
        line = f"vgg11-bn {p}: warm epoch {secs:.3f} s, final test accuracy {acc:.4f}, latency {lat:.3f} ms/sample"
        print(line)
        f.write(line + "\n")
    line = f"bf16 / fp32 epoch time: {rows[1][1] / rows[0][1]:.3f}"
    print(line)
    f.write(line + "\n")
PY

    echo "== 4. train_speed: ours vs PyTorch on $DEVICE"
    export WORKER_BIN="$WORKER" PYTHON
    bench/train_speed.sh "$DATA" paper-cnn "$SPEED_EPOCHS" "$LIMIT_CNN" "$DEVICE" | tee "$OUT/speed-paper-cnn.txt"
    bench/train_speed.sh "$DATA" vgg11-bn "$SPEED_EPOCHS" "$LIMIT_VGG" "$DEVICE" | tee "$OUT/speed-vgg11-bn.txt"

    echo "== 5. two jobs sharing one device (two slots of one worker)"
    cat >"$OUT/shared.yaml" <<YAML
name: gpu-check-shared
activations: [relu, tanh]
datasets:
  - {dataset: mnist, model: paper-cnn, epochs: $EPOCHS_SHARED, target_accuracy: 0.98, train_limit: $LIMIT_CNN, test_limit: $TEST_LIMIT, latency_samples: 100}
YAML
    "$COORDINATOR" --grid "$OUT/shared.yaml" --out "$OUT/shared" --data-dir "$DATA" \
        --device "$DEVICE" --local-workers 1 --worker-slots 2 --listen 127.0.0.1:0 --http off
    grep -E '^\| (relu|tanh)|^†' "$OUT/shared/report.md" || true
    echo "== done: everything is under $OUT"
}

case "$mode" in
prepare)
    prepare "${2:-target/gpu-kit}"
    ;;
run)
    kit="${2:-target/gpu-kit}"
    OUT="${3:-gpu-check}"
    COORDINATOR="$kit/bin/coordinator" WORKER="$kit/bin/worker" DATA="$kit/data"
    PYTHON="${PYTHON:-python3}"
    "$PYTHON" -c 'import torch' 2>/dev/null || {
        echo "gpu_check: $PYTHON cannot import torch; set PYTHON to the python of the machine's PyTorch" >&2
        exit 2
    }
    torch_lib="$("$PYTHON" -c 'import os, torch; print(os.path.join(os.path.dirname(torch.__file__), "lib"))')"
    export LD_LIBRARY_PATH="$torch_lib${LD_LIBRARY_PATH:+:$LD_LIBRARY_PATH}"
    export WORKER_BIN="$WORKER"
    DEVICE=cuda ACTIVATIONS="relu, tanh, selu, prelu, elu, leaky-relu"
    EPOCHS_CNN=10 LIMIT_CNN=0 EPOCHS_VGG=3 LIMIT_VGG=0 TEST_LIMIT=0 SPEED_EPOCHS=3 EPOCHS_SHARED=3
    check
    ;;
dry-run)
    DATA="${2:?usage: bench/gpu_check.sh dry-run DATA OUT}"
    OUT="${3:?usage: bench/gpu_check.sh dry-run DATA OUT}"
    COORDINATOR="${COORDINATOR_BIN:-target/debug/coordinator}" WORKER="${WORKER_BIN:-target/debug/worker}"
    PYTHON="${PYTHON:-python3}"
    export WORKER_BIN="$WORKER"
    DEVICE=cpu ACTIVATIONS="relu, tanh"
    EPOCHS_CNN=1 LIMIT_CNN=256 EPOCHS_VGG=1 LIMIT_VGG=64 TEST_LIMIT=128 SPEED_EPOCHS=1 EPOCHS_SHARED=1
    check
    ;;
*)
    sed -n '2,27p' "$0" >&2
    exit 2
    ;;
esac
