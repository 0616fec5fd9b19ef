#!/usr/bin/env bash
# Jobs sharing a CPU, through the real coordinator and worker daemons: each epoch's time when
# one job has the machine, when two run on one worker with two slots (the worker gives each job
# half the cores), and when two run on two local workers with one slot each (the coordinator
# gives each worker half the cores). Prints the ratio of shared to alone per case; fair sharing
# of 2 cores is 2x (a little less when one thread scales better than two).
#
#   bench/share_speed.sh [DATA_DIR] [paper-cnn|vgg11-bn] [EPOCHS] [TRAIN_LIMIT]
set -euo pipefail
cd "$(dirname "$0")/.."
source scripts/lib.sh
data="${1:-${DATASETS_DIR:-../shared/datasets}}"
model="${2:-paper-cnn}"
epochs="${3:-4}"
limit="${4:-30000}"
if [ -z "${WORKER_BIN:-}" ]; then
    dlgrid_build
fi
bin="$(dirname "${WORKER_BIN:-./target/release/worker}")"
dataset=mnist; [ "$model" = vgg11-bn ] && dataset=cifar10
tmp=$(mktemp -d); trap 'rm -rf "$tmp"' EXIT
echo "== sharing the CPU: $model on $dataset, $epochs epochs of $limit images, through the coordinator"
echo "cpu: $(dlgrid_cpu) available"
run() { # name seeds local_workers slots
    local name=$1 seeds=$2 workers=$3 slots=$4
    cat >"$tmp/$name.yaml" <<YAML
name: $name
activations: [relu]
seeds: [$seeds]
datasets:
  - {dataset: $dataset, model: $model, epochs: $epochs, target_accuracy: 0.99, train_limit: $limit, test_limit: 1000, augment: false, latency_samples: 10}
YAML
    local port=$((20000 + RANDOM % 20000))
    WORKER_BIN="$bin/worker" "$bin/coordinator" --grid "$tmp/$name.yaml" --out "$tmp/$name" \
        --data-dir "$data" --device cpu --local-workers "$workers" --worker-slots "$slots" \
        --listen "127.0.0.1:$port" --http off >"$tmp/$name.log" 2>&1 \
        || { cat "$tmp/$name.log" >&2; exit 1; }
}
run alone 1 1 1
run slots "1, 2" 1 2
run workers "1, 2" 2 1
python3 - "$tmp" <<'PY'
import json, os, sys
d = sys.argv[1]
def epochs(name):
    jobs = json.load(open(os.path.join(d, name, "results.json")))["jobs"]
    out = []
    for j in jobs:
        cum = [e["train_seconds"] for e in j["epochs"]]
        per = [b - a for a, b in zip([0.0] + cum, cum)][1:]  # first epoch: warm-up
        out.append(per)
    return out
alone = epochs("alone")[0]
base = sum(alone) / len(alone)
print(f"one job alone:                  {' '.join(f'{s:.2f}' for s in alone)} s/epoch, mean {base:.2f}")
for name, what in (("slots", "two jobs, one worker, 2 slots: "), ("workers", "two jobs, two local workers:   ")):
    for i, per in enumerate(epochs(name)):
        m = sum(per) / len(per)
        worst = max(per)
        print(f"{what} job {i + 1}: {' '.join(f'{s:.2f}' for s in per)} s/epoch, mean {m / base:.2f}x alone, worst epoch {worst / base:.2f}x")
PY
