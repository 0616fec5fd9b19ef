#!/usr/bin/env bash
# The image as Kubernetes runs it: scripts/image.sh builds the CPU image (or the one named:
# tests/containers.sh [cpu|cuda]; the CUDA image runs on CPUs too), then a coordinator
# container and two worker containers, each made from the manifests of deploy/base (uid 10001,
# read-only root filesystem, no capabilities, mutual TLS and the token), finish the demo grid
# while one worker container is killed mid-job and started again (tests/containers.py); then
# deploy/compose.yaml runs the same grid with podman-compose. Exit 0 when, both times, every job
# succeeded once.
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
project="dlgrid-ct$$"
compose=(podman-compose -p "$project" -f "$tmp/compose/compose.yaml")
cleanup() {
    [ -f "$tmp/compose/compose.yaml" ] && "${compose[@]}" down -v >/dev/null 2>&1
    rm -rf "$tmp"
}
trap cleanup EXIT
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
echo "==> containers: the grid across containers in $((SECONDS - start)) s" >&2

# deploy/compose.yaml as its header says, with podman-compose: the same grid, nothing killed.
mkdir "$tmp/compose"
cp deploy/compose.yaml "$tmp/compose/"
bash scripts/lab-certs.sh "$tmp/compose/secrets" coordinator 127.0.0.1 >/dev/null
(umask 077; head -c 32 /dev/urandom | base64 > "$tmp/compose/secrets/token"
    head -c 32 /dev/urandom | base64 > "$tmp/compose/secrets/operator-token")
port=$("$py" -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])')
start=$SECONDS
GRID="$tmp/grid.yaml" DATASETS=/usr/share/datasets OUT="$tmp/compose/out" PAGE_PORT="$port" \
    DLGRID_IMAGE="$image" timeout 600 "${compose[@]}" up > "$tmp/compose/up.log" 2>&1 || true
failed=""
for service in coordinator worker-0 worker-1; do
    code=$(podman inspect --format '{{.State.ExitCode}}' "${project}_${service}_1" 2>&1) || true
    [ "$code" = 0 ] || failed+=" $service (exit $code)"
done
if [ -n "$failed" ] || ! "$py" - "$tmp/compose/out/out" <<'PY'
import json, os, sys
out = sys.argv[1]
jobs = json.load(open(os.path.join(out, "results.json")))["jobs"]
bad = [j["id"] for j in jobs if j["status"] != "succeeded" or j["attempts"] != 1]
assert len(jobs) == 6 and not bad, f"{len(jobs)} jobs, not once and succeeded: {bad}"
assert os.path.isfile(os.path.join(out, "report.html")), "no report.html"
PY
then
    tail -40 "$tmp/compose/up.log" >&2
    echo "containers: FAILED: deploy/compose.yaml:${failed:- the results above}" >&2
    exit 1
fi
echo "==> compose: deploy/compose.yaml ran the grid, every job once, in $((SECONDS - start)) s" >&2
