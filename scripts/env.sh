# Sourced by the other scripts: installs PyTorch 2.11.0 (libtorch) once per user and exports
# what the build needs. The virtualenv is keyed by the torch version (and CUDA variant), so every
# clone and CI run on this machine shares one 4.7 GB install.
#
# PyPI's torch is the CUDA 13 build, which needs NVIDIA driver 580 or newer (`worker preflight`
# says so when the driver is older). For an older driver, pick the build for its CUDA:
#   TORCH_CUDA=cu126 source scripts/env.sh   (or cu128; any other index: TORCH_INDEX_URL=...)
# then rebuild (cargo build --release): the build follows the virtualenv it is given.
TORCH_VERSION=2.11.0
TORCH_CUDA="${TORCH_CUDA:-}"
TORCH_INDEX_URL="${TORCH_INDEX_URL:-${TORCH_CUDA:+https://download.pytorch.org/whl/$TORCH_CUDA}}"
DLGRID_CACHE="${DLGRID_CACHE:-${XDG_CACHE_HOME:-$HOME/.cache}/dlgrid}"
TORCH_VENV="${TORCH_VENV:-$DLGRID_CACHE/torch-$TORCH_VERSION${TORCH_CUDA:+-$TORCH_CUDA}}"
if ! "$TORCH_VENV/bin/python" -c "import torch, sys; sys.exit(torch.__version__.split('+')[0] != '$TORCH_VERSION')" 2>/dev/null; then
    echo "==> installing PyTorch $TORCH_VERSION (libtorch: a download of about 4.7 GB from PyPI) into $TORCH_VENV (once per user, a few minutes)" >&2
    mkdir -p "$(dirname "$TORCH_VENV")"
    python3 -m venv "$TORCH_VENV"
    "$TORCH_VENV/bin/pip" install --quiet --disable-pip-version-check \
        ${TORCH_INDEX_URL:+--index-url "$TORCH_INDEX_URL"} "torch==$TORCH_VERSION"
fi
export LIBTORCH_USE_PYTORCH=1
export PYTHON_SYS_EXECUTABLE="$TORCH_VENV/bin/python"
export PATH="$TORCH_VENV/bin:$PATH"
