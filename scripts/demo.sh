#!/usr/bin/env bash
# Main job: the synthetic open-vocabulary benchmark (tiny CLIP pretraining, FGAseg training,
# seen/unseen evaluation). Extra arguments go to `fgaseg demo`.
set -euo pipefail
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$ROOT"
source scripts/setup_env.sh ""
exec "$ROOT/.venv/bin/fgaseg" demo "$@"
