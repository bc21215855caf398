#!/usr/bin/env bash
# Install hierpool with its development extras into .venv and run the whole test suite.
# Extra arguments go to pytest, e.g.: bash scripts/test.sh -m "not slow"
# The suite runs in HIERPOOL_TEST_WORKERS processes (default 2; pytest-xdist, whole files per process so that
# module fixtures are built once): on the 2-core Intel Xeon VM of benchmarks/README.md, 935 tests in 8 min 25 s
# against 24 min 22 s in one process, where one core idled (user time = wall time). "-n 0" runs serially.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh dev
export MPLBACKEND=Agg
exec .venv/bin/python -m pytest -n "${HIERPOOL_TEST_WORKERS:-2}" --dist loadfile "$@"
