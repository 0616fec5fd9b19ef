#!/usr/bin/env bash
# Runs examples/NAME.yaml (paper-mnist or paper-cifar-slice) on the real data in $DATASETS_DIR
# with the release binaries, keeps the run's results.json and report.md with where and how it
# ran (run.json) under docs/reproduction/DEST/ (default NAME), and rewrites docs/reproduction.md
# from them. Run it on a quiet machine: the report leaves disturbed runs out of its time columns.
#
#   DATASETS_DIR=/path/with/mnist/and/cifar-10 scripts/reproduce.sh paper-mnist paper-mnist-race
set -euo pipefail
cd "$(dirname "$0")/.."
name="${1:?usage: scripts/reproduce.sh paper-mnist|paper-cifar-slice [DEST]}"
dest_name="${2:-$name}"
data="${DATASETS_DIR:?set DATASETS_DIR to the folder holding mnist/ and cifar-10/}"
source scripts/lib.sh
dlgrid_torch
dlgrid_build
out="runs/reproduction-$dest_name"
cmd="./target/release/coordinator --grid examples/$name.yaml --out $out --data-dir \$DATASETS_DIR --http off"
./target/release/coordinator --grid "examples/$name.yaml" --out "$out" --data-dir "$data" --http off
dest="docs/reproduction/$dest_name"
mkdir -p "$dest"
cp "$out/results.json" "$out/report.md" "$dest/"
commit="$(git rev-parse --short HEAD)$(git diff --quiet HEAD -- . ':!docs' || echo '+changes')"
cpu="$(dlgrid_cpu)"
flags="$(dlgrid_cpu_flags)"
python3 - "$dest/run.json" "$commit" "$cpu" "${flags:-no AVX2 or AVX-512}" "$cmd" <<'PY'
import json, sys, datetime
path, commit, cpu, flags, cmd = sys.argv[1:]
json.dump({"commit": commit, "cpu": cpu, "cpu_flags": flags, "command": cmd,
           "date": datetime.datetime.now(datetime.timezone.utc).strftime("%Y-%m-%d")},
          open(path, "w"), indent=2)
PY
python3 scripts/reproduction.py
