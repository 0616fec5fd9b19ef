#!/usr/bin/env bash
# The image as Kubernetes runs it: scripts/image.sh builds the CPU image, then a coordinator
# container and two worker containers, each made from the manifests of deploy/base (uid 10001,
# read-only root filesystem, no capabilities, mutual TLS and the token), finish the demo grid
# while one worker container is killed mid-job and started again (tests/containers.py). Exit 0
# when every job succeeded once.
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
start=$SECONDS
image=$(bash scripts/image.sh cpu)
echo "==> image $image built in $((SECONDS - start)) s" >&2
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
# The demo grid, checkpointing every epoch (its epochs take seconds; the default, at most once a
# minute, would keep none for the killed job to resume from).
{ cat examples/fashion-mnist.yaml; echo "checkpoint_every: 1"; } > "$tmp/grid.yaml"
start=$SECONDS
python3 tests/containers.py "$image" /usr/share/datasets "$tmp/grid.yaml"
echo "==> containers: the grid across containers in $((SECONDS - start)) s" >&2
