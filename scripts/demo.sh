#!/usr/bin/env bash
# The main job on a fresh machine: the paper's six activations on real Fashion-MNIST (Debian's
# dataset-fashion-mnist package), four short epochs each, through coordinator → gRPC → worker.
# Pass another grid file to run that instead: scripts/demo.sh my-grid.yaml [more coordinator flags]
set -euo pipefail
cd "$(dirname "$0")/.."
source scripts/lib.sh
dlgrid_torch
grid="${1:-examples/fashion-mnist.yaml}"
shift || true
data="${DATA_DIR:-/usr/share/datasets}"
if [ "$grid" = examples/fashion-mnist.yaml ] && [ ! -e "$data/fashion-mnist/train-images-idx3-ubyte.gz" ]; then
    echo "==> installing Debian's dataset-fashion-mnist (real Fashion-MNIST)" >&2
    sudo=""; [ "$(id -u)" = 0 ] || sudo="sudo"
    $sudo apt-get update -qq && $sudo apt-get install -y -qq dataset-fashion-mnist >/dev/null
fi
dlgrid_build
./target/release/coordinator --grid "$grid" --data-dir "$data" "$@"
out="runs/$(sed -n 's/^name:[[:space:]]*//p' "$grid" | head -1)"
[ -f "$out/report.md" ] && cat "$out/report.md"
