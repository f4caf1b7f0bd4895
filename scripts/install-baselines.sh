#!/usr/bin/env bash
# Install the Python packages needed by scripts/implicit_baseline.py (the
# `implicit` ALS/BPR baselines that `travelrec evaluate` compares against).
#
# Usage:
#   scripts/install-baselines.sh            # installs into `python3`
#   PYTHON=/path/to/python scripts/install-baselines.sh
#
# - Installs into the *current* Python 3 interpreter (whatever `$PYTHON`, default
#   `python3`, resolves to) with `python -m pip install`.
# - Versions are pinned exactly and restricted to prebuilt wheels
#   (`--only-binary=:all:`), so no compiler is needed. implicit 0.7.3 ships a
#   manylinux2014 x86_64 wheel for CPython 3.9-3.13 that includes the CPU
#   (OpenMP) extensions; the CUDA build is an optional extra we do not install.
# - Idempotent: if every pinned package is already installed at the pinned
#   version it prints that and exits without touching pip or the network.
#
# Threading: implicit runs its own OpenMP thread pool; a multi-threaded BLAS
# underneath it (numpy/scipy bundle OpenBLAS) oversubscribes the cores and can
# make ALS ~10x slower, and implicit warns about it at model construction.
# scripts/implicit_baseline.py therefore sets OPENBLAS_NUM_THREADS=1 and
# MKL_NUM_THREADS=1 itself (unless already set) before importing numpy, and
# controls implicit's own threads with --threads. If you use implicit from
# other code, export OPENBLAS_NUM_THREADS=1 first.
set -euo pipefail

PYTHON="${PYTHON:-python3}"

# Exact pins (all available as CPython 3.11 manylinux x86_64 wheels on PyPI).
PINS=(
  "implicit==0.7.3"
  "numpy==2.3.5"
  "scipy==1.16.3"
  "threadpoolctl==3.6.0"
  "tqdm==4.67.1"
)

log() { printf '[install-baselines] %s\n' "$*"; }

if ! command -v "$PYTHON" >/dev/null 2>&1; then
  log "error: '$PYTHON' not found; install CPython 3 (>= 3.9) or set PYTHON=..." >&2
  exit 1
fi

pyver="$("$PYTHON" -c 'import sys; print("%d.%d" % sys.version_info[:2])')"
log "python: $(command -v "$PYTHON") (CPython $pyver)"
if ! "$PYTHON" -c 'import sys; sys.exit(0 if sys.version_info >= (3, 9) else 1)'; then
  log "error: implicit 0.7.3 needs Python >= 3.9 (found $pyver)" >&2
  exit 1
fi

# Which pins are missing or at another version? (importlib.metadata: no import
# of the packages themselves, so this is fast and safe.)
missing="$("$PYTHON" - "${PINS[@]}" <<'EOF'
import sys
from importlib import metadata
for pin in sys.argv[1:]:
    name, want = pin.split("==")
    try:
        have = metadata.version(name)
    except metadata.PackageNotFoundError:
        have = None
    if have != want:
        print(pin)
EOF
)"

if [[ -z "$missing" ]]; then
  log "already installed: ${PINS[*]} (nothing to do)"
else
  log "installing: $(echo "$missing" | tr '\n' ' ')"
  if ! "$PYTHON" -m pip --version >/dev/null 2>&1; then
    log "error: pip is not available for $PYTHON (try: $PYTHON -m ensurepip --upgrade)" >&2
    exit 1
  fi
  # Install the full pinned set together so pip resolves them consistently.
  # PIP_* environment variables (e.g. PIP_BREAK_SYSTEM_PACKAGES=1 on a
  # Debian-managed Python, or PIP_USER=1) are honoured as usual.
  # (PIP_ROOT_USER_ACTION silences pip's "running as root" warning in CI.)
  PIP_ROOT_USER_ACTION="${PIP_ROOT_USER_ACTION:-ignore}" \
  "$PYTHON" -m pip install --disable-pip-version-check --no-input \
    --only-binary=:all: "${PINS[@]}"
fi

# Smoke test: the CPU extensions load and the version matches.
OPENBLAS_NUM_THREADS=1 MKL_NUM_THREADS=1 "$PYTHON" - <<'EOF'
import implicit
from implicit.cpu.als import AlternatingLeastSquares  # noqa: F401
from implicit.cpu.bpr import BayesianPersonalizedRanking  # noqa: F401
import numpy, scipy
print("[install-baselines] ok: implicit %s, numpy %s, scipy %s"
      % (implicit.__version__, numpy.__version__, scipy.__version__))
EOF
