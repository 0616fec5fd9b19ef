#!/usr/bin/env bash
# Runs the whole test suite on a fresh machine: installs libtorch (PyTorch 2.11.0) once per
# user, builds the binaries the end-to-end tests start, then runs every test.
# Real-data tests run too where DATASETS_DIR points at the real MNIST / CIFAR-10 files.
set -euo pipefail
cd "$(dirname "$0")/.."
source scripts/env.sh
cargo build --workspace --bins --locked
cargo test --workspace --locked "$@"
