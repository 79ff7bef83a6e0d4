#!/usr/bin/env bash
# The whole test suite on a fresh machine: makes .venv, installs fgaseg[test] (+ browser test
# tools when possible), runs pytest. Fails when pytest runs no test (exit code 5).
set -euo pipefail
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$ROOT"
source scripts/setup_env.sh "test"
# Browser end-to-end test of the web demo needs gradio, playwright and Debian's chromium.
if [ "${FGASEG_SKIP_BROWSER:-0}" != "1" ]; then
    if ! command -v chromium >/dev/null 2>&1 && [ "$(id -u)" = "0" ]; then
        (apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium >/dev/null) \
            || echo "note: chromium could not be installed; the browser test will be skipped"
    fi
    "$ROOT/.venv/bin/pip" install -q "gradio>=5.0" "playwright>=1.40" \
        || echo "note: gradio/playwright could not be installed; the browser test will be skipped"
fi
# Idle OpenMP threads sleep instead of spinning: on a shared 2-core machine spinning threads
# made torch up to 10x slower.
export OMP_WAIT_POLICY="${OMP_WAIT_POLICY:-PASSIVE}"
set +e
"$ROOT/.venv/bin/python" -m pytest -q -p no:cacheprovider --durations=12 "$@"
rc=$?
set -e
if [ "$rc" = "5" ]; then
    echo "error: pytest collected no tests" >&2
    exit 1
fi
exit "$rc"
