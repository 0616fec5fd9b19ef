#!/usr/bin/env bash
# The SLURM launcher's cost: the same grid run with the coordinator's local worker and with one
# worker job submitted through SLURM (--launcher slurm, 2 CPUs asked for it, as the local worker
# has), alternately, twice each. Prints, per run, the seconds from the coordinator's start to the
# first epoch report and the grid's makespan, and the SLURM/local ratio of their medians.
# Needs a SLURM cluster (scripts/slurm-local.sh starts one on this machine).
#
#   bench/slurm_start.sh [DATA_DIR]
set -euo pipefail
cd "$(dirname "$0")/.."
source scripts/lib.sh
data="${1:-${DATASETS_DIR:-../shared/datasets}}"
data="$(cd "$data" && pwd)"
if [ -z "${WORKER_BIN:-}" ]; then
    dlgrid_build
fi
bin="$(cd "$(dirname "${WORKER_BIN:-./target/release/worker}")" && pwd)"
tmp=$(mktemp -d); trap 'rm -rf "$tmp"' EXIT
grid="$(pwd)/examples/slurm-bench.yaml"
echo "== the SLURM launcher against local workers: $grid"
echo "cpu: $(dlgrid_cpu) available"
run() { # kind n
    local kind=$1 n=$2 extra=()
    [ "$kind" = slurm ] && extra=(--launcher slurm --max-workers 1 --sbatch-arg=--cpus-per-task=2)
    local out="$tmp/$kind-$n" start end
    start=$(date +%s.%N)
    WORKER_DATASET_MIRRORS=http://127.0.0.1:9 "$bin/coordinator" --grid "$grid" --out "$out" \
        --listen 127.0.0.1:0 --http off --data-dir "$data" "${extra[@]}" 2>"$out.log"
    end=$(date +%s.%N)
    python3 - "$out.log" "$start" "$end" "$kind" <<'PY'
import sys, datetime
log, start, end, kind = sys.argv[1], float(sys.argv[2]), float(sys.argv[3]), sys.argv[4]
first = next(l for l in open(log) if " epoch " in l and "job_id=" in l)
t = datetime.datetime.fromisoformat(first.split()[0].replace("Z", "+00:00")).timestamp()
print(f"{kind:5}  first epoch report {t - start:6.2f} s   makespan {end - start:6.2f} s")
PY
}
for n in 1 2; do run local $n; run slurm $n; done | tee "$tmp/runs.txt"
python3 - "$tmp/runs.txt" <<'PY'
import sys, statistics
rows = [l.split() for l in open(sys.argv[1])]
med = lambda k, i: statistics.median(float(r[i]) for r in rows if r[0] == k)
for name, i in (("first epoch report", 4), ("makespan", 7)):
    print(f"slurm/local {name}: {med('slurm', i):.2f} s / {med('local', i):.2f} s = {med('slurm', i) / med('local', i):.2f}x")
PY
