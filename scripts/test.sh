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
# mlperf-logging and tensorboard (PyPI) for the tests that check our MLPerf logs and event
# files with those tools' own checker and reader; once per user, like libtorch.
PYTOOLS="$DLGRID_CACHE/pytools"
if ! "$PYTOOLS/bin/python" -c "import mlperf_logging, tensorboard" 2>/dev/null; then
    echo "==> installing mlperf-logging and tensorboard into $PYTOOLS (once per machine)" >&2
    python3 -m venv "$PYTOOLS"
    "$PYTOOLS/bin/pip" install --quiet --disable-pip-version-check mlperf-logging==4.1.68 tensorboard==2.21.0
fi
export DLGRID_PYTOOLS="$PYTOOLS/bin/python"
cargo build --workspace --bins --locked
cargo test --workspace --locked "$@"
