# The shell library of scripts/ and bench/: sourced, never run. One place for what they all
# do: find the repository, build the binaries, say which CPU a figure comes from, install a
# Debian package or a Python tool set once. `source scripts/lib.sh` from the repository root.

DLGRID_SCRIPTS="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"

# Installs PyTorch (libtorch) once per user and exports what the build needs (scripts/env.sh).
dlgrid_torch() {
    # shellcheck source=scripts/env.sh
    source "$DLGRID_SCRIPTS/env.sh"
}

# Builds the release binaries the scripts run (coordinator and worker unless told others).
dlgrid_build() {
    [ -n "${LIBTORCH_USE_PYTORCH:-}" ] || dlgrid_torch
    local packages=("$@")
    [ ${#packages[@]} -gt 0 ] || packages=(coordinator worker)
    local args=()
    for p in "${packages[@]}"; do args+=(-p "$p"); done
    cargo build --release --locked "${args[@]}" >&2
}

# The CPU a figure comes from: "model name, N cores".
dlgrid_cpu() {
    echo "$(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2- | sed 's/^ *//'), $(nproc) cores"
}

# The CPU's vector extensions that decide which kernels run (space-separated).
dlgrid_cpu_flags() {
    grep -m1 '^flags' /proc/cpuinfo | tr ' ' '\n' \
        | grep -E '^(avx|avx2|fma|avx512f|avx512bw|avx512_vnni|avx512_bf16|amx_tile)$' | tr '\n' ' ' | sed 's/ $//'
}

# Installs Debian packages that are missing, as root (else says what to install); returns 1
# where they cannot be installed. `--recommends` first installs their recommended packages too
# (Chromium's fonts, which the report's browser tests measure text with).
dlgrid_apt() {
    local extra=(--no-install-recommends)
    if [ "${1:-}" = --recommends ]; then extra=(); shift; fi
    local missing=()
    for p in "$@"; do dpkg -s "$p" >/dev/null 2>&1 || missing+=("$p"); done
    [ ${#missing[@]} -eq 0 ] && return 0
    if [ "$(id -u)" != 0 ] || ! command -v apt-get >/dev/null; then
        echo "==> needs Debian's ${missing[*]}: apt-get install ${missing[*]}" >&2
        return 1
    fi
    echo "==> installing Debian's ${missing[*]}" >&2
    apt-get install -y -qq "${extra[@]}" "${missing[@]}" >/dev/null 2>&1 \
        || { apt-get update -qq && apt-get install -y -qq "${extra[@]}" "${missing[@]}" >/dev/null 2>&1; }
}

# A virtualenv at $1 holding the pip packages that follow, made once.
dlgrid_venv() {
    local venv="$1"; shift
    [ -x "$venv/bin/pip" ] || python3 -m venv "$venv"
    "$venv/bin/pip" install --quiet --disable-pip-version-check "$@"
}
