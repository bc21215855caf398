#!/usr/bin/env bash
# Install hierpool with its development extras into .venv and run the whole test suite.
# Extra arguments go to pytest, e.g.: bash scripts/test.sh -m "not slow"
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh dev
export MPLBACKEND=Agg
exec .venv/bin/python -m pytest "$@"
