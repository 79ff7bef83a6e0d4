#!/usr/bin/env bash
# Create (or reuse) the project venv at .venv and install fgaseg with the given extras.
# Usage: source scripts/setup_env.sh [EXTRAS]   e.g. EXTRAS="test,demo"
# torch is pinned to the CPU build first so that no dependency pulls a multi-GB CUDA build.
set -euo pipefail
EXTRAS="${1:-}"
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
VENV="${FGASEG_VENV:-$ROOT/.venv}"
PY="${PYTHON:-python3}"
if [ ! -x "$VENV/bin/python" ]; then
    "$PY" -m venv "$VENV"
fi
PIP="$VENV/bin/pip"
# a stamp per (pyproject.toml, extras): a venv set up for them is reused without calling pip
# (the package is installed editable, so source edits need no reinstall)
STAMP="$VENV/.fgaseg-setup-$(sha256sum "$ROOT/pyproject.toml" | cut -c1-16)-${EXTRAS:-core}"
if [ ! -f "$STAMP" ] || ! "$VENV/bin/python" -c "import torch, fgaseg" 2>/dev/null; then
    "$PIP" install -q --upgrade pip >/dev/null 2>&1 || true
    "$VENV/bin/python" -c "import torch" 2>/dev/null || "$PIP" install -q "torch==2.13.0"
    SPEC="$ROOT"
    [ -n "$EXTRAS" ] && SPEC="$ROOT[$EXTRAS]"
    "$PIP" install -q -e "$SPEC"
    touch "$STAMP"
fi
export PATH="$VENV/bin:$PATH"
