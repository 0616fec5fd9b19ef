#!/usr/bin/env bash
# Builds the dlgrid container image and prints its name. The release binaries are built here,
# outside the image (as release pipelines do), staged in target/image/VARIANT with the libtorch
# libraries they load, and deploy/Dockerfile puts them on a Debian bookworm base: the build
# itself downloads nothing.
#   scripts/image.sh [--name] [cpu|cuda]     (--name: only print the name, build nothing)
#     cpu   dlgrid:VERSION-cpu  CPU workers (the Kubernetes cpu overlay): a worker built without
#                               libtorch's CUDA part, and only the libraries it loads
#     cuda  dlgrid:VERSION      GPU workers (the gpu overlay): libtorch's CUDA 13 build with every
#                               CUDA library it ships; it runs on CPUs too
# Uses docker where a Docker engine answers, else podman (DLGRID_IMAGE_ENGINE=docker|podman
# chooses). The base is docker.io/library/debian:bookworm-slim, or localhost/dlgrid-base:bookworm
# where the engine has that image (scripts/container-host.sh makes it from Debian's packages,
# for machines that reach no image registry); DLGRID_IMAGE_BASE names another.
set -euo pipefail
cd "$(dirname "$0")/.."
source scripts/lib.sh
name_only=false
if [ "${1:-}" = --name ]; then name_only=true; shift; fi
variant="${1:-cpu}"
case "$variant" in
    cpu | cuda) ;;
    *) echo "usage: $0 [--name] [cpu|cuda]   (got '$variant')" >&2; exit 2 ;;
esac
version=$(sed -n 's/^version = "\(.*\)"/\1/p' Cargo.toml | head -1)
image="dlgrid:$version"
[ "$variant" = cpu ] && image="$image-cpu"
if $name_only; then echo "$image"; exit 0; fi
engine="${DLGRID_IMAGE_ENGINE:-}"
if [ -z "$engine" ]; then
    if command -v docker >/dev/null && docker info >/dev/null 2>&1; then
        engine=docker
    elif command -v podman >/dev/null; then
        engine=podman
    else
        echo "$0: needs docker (with a running engine) or podman; neither is here" >&2
        exit 1
    fi
fi
base="${DLGRID_IMAGE_BASE:-}"
if [ -z "$base" ]; then
    base=docker.io/library/debian:bookworm-slim
    "$engine" image inspect localhost/dlgrid-base:bookworm >/dev/null 2>&1 \
        && base=localhost/dlgrid-base:bookworm
fi

# The binaries: the CPU variant's worker does not link libtorch_cuda.so (worker/build.rs), so
# it is built apart, in a target folder of its own kept with PyTorch's (once per user, so a
# later build is incremental), without the debug line tables the image strips anyway.
dlgrid_torch
if [ "$variant" = cpu ]; then
    target="${DLGRID_IMAGE_TARGET:-$DLGRID_CACHE/image-cpu-target}"
    DLGRID_WORKER_CUDA=off CARGO_PROFILE_RELEASE_DEBUG=false cargo build --release --locked \
        -p coordinator -p worker --target-dir "$target" >&2
else
    target=target
    env -u DLGRID_WORKER_CUDA cargo build --release --locked -p coordinator -p worker >&2
fi

# The build context: the Debian library list and a root filesystem overlay.
ctx="target/image/$variant"
rm -rf "$ctx"
mkdir -p "$ctx/rootfs/usr/local/bin" "$ctx/rootfs/opt/dlgrid" "$ctx/rootfs/etc/ld.so.conf.d"
cp deploy/runtime-libs.txt "$ctx/"
for b in coordinator worker; do
    cp "$target/release/$b" "$ctx/rootfs/usr/local/bin/"
    strip "$ctx/rootfs/usr/local/bin/$b"
done
# libtorch's libraries keep their layout under /opt/dlgrid (torch/lib, nvidia/...), which their
# own RPATH ($ORIGIN/../../nvidia/...) relies on; the loader finds torch/lib through ld.so.conf.
site=$(python -c 'import os, torch; print(os.path.dirname(os.path.dirname(torch.__file__)))' 2>/dev/null) \
    || { echo "$0: cannot find PyTorch's folder (scripts/env.sh installs it)" >&2; exit 1; }
stage() { # stages $site/$1 (hard-linked where the filesystem allows)
    mkdir -p "$ctx/rootfs/opt/dlgrid/$(dirname "$1")"
    ln "$site/$1" "$ctx/rootfs/opt/dlgrid/$1" 2>/dev/null || cp "$site/$1" "$ctx/rootfs/opt/dlgrid/$1"
}
if [ "$variant" = cpu ]; then
    # Exactly what the loader resolves from the venv for both binaries.
    ldd "$ctx/rootfs/usr/local/bin/coordinator" "$ctx/rootfs/usr/local/bin/worker" \
        | awk -v site="$site/" 'index($3, site) == 1 { print substr($3, length(site) + 1) }' \
        | sort -u | while read -r lib; do stage "$lib"; done
else
    # Every shared library of libtorch and of NVIDIA's wheels: cuDNN and cuBLAS open parts of
    # themselves at run time, which ldd cannot see. Python's own parts stay out.
    (cd "$site" && find torch/lib nvidia -name '*.so*' -type f ! -name 'libtorch_python.so' \
        ! -path 'torch/lib/libshm*') | sort | while read -r lib; do stage "$lib"; done
fi
echo /opt/dlgrid/torch/lib > "$ctx/rootfs/etc/ld.so.conf.d/dlgrid.conf"
echo "==> building $image with $engine from $base ($(du -sh "$ctx" | cut -f1) staged in $ctx)" >&2
build=("$engine" build -f deploy/Dockerfile -t "$image" --build-arg "BASE=$base"
    --build-arg "VERSION=$version" --build-arg "VARIANT=$variant")
# podman: use the host's network namespace, write Docker's image format (OCI's has no SHELL),
# and never pull a base it has (a local one is in no registry).
if [ "$engine" = podman ]; then
    build+=(--network host --format docker)
    podman image exists "$base" && build+=(--pull=never)
fi
old=$("$engine" image inspect --format '{{.Id}}' "$image" 2>/dev/null || true)
"${build[@]}" "$ctx" >&2
# The previous build of this name, now untagged, goes (unless a container still uses it).
new=$("$engine" image inspect --format '{{.Id}}' "$image")
if [ -n "$old" ] && [ "$old" != "$new" ]; then "$engine" rmi "$old" >/dev/null 2>&1 || true; fi
size=$("$engine" image inspect --format '{{.Size}}' "$image")
echo "==> $image: $((size / 1000000)) MB" >&2
echo "$image"
