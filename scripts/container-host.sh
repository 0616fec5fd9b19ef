#!/usr/bin/env bash
# Makes this Debian machine build and run dlgrid's image with podman, also where no image
# registry can be reached (as on CI's machines). As root, once per machine:
#   - installs podman, runc and mmdebstrap where missing (Debian's packages);
#   - makes podman use runc (Debian's crun refuses hybrid cgroup layouts) and default ulimits
#     this machine allows (podman's own ask for more), in a drop-in of its own:
#     /etc/containers/containers.conf.d/dlgrid.conf;
#   - makes the base image localhost/dlgrid-base:bookworm from Debian's packages (mmdebstrap,
#     then podman import), which scripts/image.sh then builds on. It is kept between runs.
# Then checks that a container starts. Exits 1 saying why where any step fails.
set -euo pipefail
cd "$(dirname "$0")/.."
source scripts/lib.sh
if [ "$(id -u)" != 0 ]; then
    echo "$0: needs root (it installs packages and configures podman for the machine)" >&2
    exit 1
fi
dlgrid_apt podman runc mmdebstrap || { echo "$0: could not install podman, runc, mmdebstrap" >&2; exit 1; }
conf=/etc/containers/containers.conf.d/dlgrid.conf
if [ ! -f "$conf" ]; then
    nofile=$(ulimit -Hn)
    nproc=$(ulimit -Hu)
    if [ "$nproc" = unlimited ] || [ "$nproc" -gt 32768 ]; then nproc=32768; fi
    mkdir -p "$(dirname "$conf")"
    cat > "$conf" <<CONF
# Written by dlgrid's scripts/container-host.sh.
[containers]
default_ulimits = ["nofile=$nofile:$nofile", "nproc=$nproc:$nproc"]
[engine]
runtime = "runc"
CONF
    echo "==> podman: runc, ulimits nofile=$nofile nproc=$nproc ($conf)" >&2
fi
base=localhost/dlgrid-base:bookworm
if ! podman image exists "$base"; then
    tmp=$(mktemp -d)
    trap 'rm -rf "$tmp"' EXIT
    echo "==> making $base from Debian's packages (mmdebstrap, once per machine)" >&2
    mmdebstrap --quiet --variant=minbase --include=ca-certificates bookworm "$tmp/base.tar"
    podman import --quiet "$tmp/base.tar" "$base" >/dev/null
fi
if ! out=$(podman run --rm --network host "$base" true 2>&1); then
    echo "$0: podman cannot start a container here: $out" >&2
    exit 1
fi
echo "==> podman $(podman version --format '{{.Client.Version}}') with $(podman info --format '{{.Host.OCIRuntime.Name}}') runs containers; base $base" >&2
