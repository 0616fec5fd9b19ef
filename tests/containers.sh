#!/usr/bin/env bash
# The image as Kubernetes runs it: scripts/image.sh builds the CPU image (or the one named:
# tests/containers.sh [cpu|cuda]; the CUDA image runs on CPUs too), then a coordinator
# container and two worker containers, each made from the manifests of deploy/base (uid 10001,
# read-only root filesystem, no capabilities, mutual TLS and the token), finish the demo grid
# while one worker container is killed mid-job and started again; then deploy/compose.yaml
# runs the same grid with podman-compose (both in tests/containers.py). Exit 0 when, both
# times, every job succeeded once.
# Needs root and podman (scripts/container-host.sh sets it up on Debian). Where containers
# cannot run, says why and exits 0, or 1 under CI=true.
set -euo pipefail
cd "$(dirname "$0")/.."
source scripts/lib.sh
cannot() {
    if [ "${CI:-}" = true ]; then
        echo "containers: cannot run ($1), and CI=true needs them" >&2
        exit 1
    fi
    echo "containers: not run ($1)" >&2
    exit 0
}
[ "$(id -u)" = 0 ] || cannot "needs root: podman runs the containers as a kubelet would"
bash scripts/container-host.sh || cannot "podman is not usable here; scripts/container-host.sh said why"
# The demo grid's data: Debian's real Fashion-MNIST.
dlgrid_apt dataset-fashion-mnist || cannot "no Fashion-MNIST (Debian's dataset-fashion-mnist)"
dlgrid_apt podman-compose || cannot "no podman-compose (Debian's), for deploy/compose.yaml"
start=$SECONDS
image=$(bash scripts/image.sh "${1:-cpu}")
echo "==> image $image built in $((SECONDS - start)) s" >&2
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
# The demo grid, checkpointing every epoch (its epochs take seconds; the default, at most once a
# minute, would keep none for the killed job to resume from).
{ cat examples/fashion-mnist.yaml; echo "checkpoint_every: 1"; } > "$tmp/grid.yaml"
# PyYAML reads the manifests: the machine's, or PyPI's in a venv of its own (once per user).
py=python3
if ! "$py" -c 'import yaml' 2>/dev/null; then
    venv="${DLGRID_CACHE:-${XDG_CACHE_HOME:-$HOME/.cache}/dlgrid}/pyyaml"
    dlgrid_venv "$venv" pyyaml==6.0.3
    py="$venv/bin/python"
fi
start=$SECONDS
"$py" tests/containers.py "$image" /usr/share/datasets "$tmp/grid.yaml"
echo "==> containers: the grid across containers and with compose in $((SECONDS - start)) s" >&2
