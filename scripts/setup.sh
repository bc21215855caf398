#!/usr/bin/env bash
# Create .venv with an installed Python >= 3.12 and install hierpool with the given extras (default: dev).
# Usage: bash scripts/setup.sh [extras]      e.g. bash scripts/setup.sh nutpie,datasets
set -euo pipefail
cd "$(dirname "$0")/.."
extras="${1:-dev}"
if ! command -v uv >/dev/null 2>&1; then
  echo "installing uv (from PyPI) ..." >&2
  python3 -m pip install --quiet --user uv || python3 -m pip install --quiet uv
  export PATH="$HOME/.local/bin:$PATH"
fi
py=$(bash scripts/find-python.sh)
if [ ! -x .venv/bin/python ] || ! .venv/bin/python -c 'import sys; sys.exit(0 if sys.version_info >= (3, 12) else 1)'; then
  uv venv --quiet --allow-existing --python "$py" .venv
fi
# --compile-bytecode: the .pyc files are written at install (pip's default; uv's is not to), so no process
# compiles the libraries' sources on import, even where PYTHONDONTWRITEBYTECODE keeps Python from caching
# them (imports of hierpool, pymc, arviz, nutpie, pandas, dask and distributed: 10.6 s -> 3.4 s a process)
uv pip install --quiet --compile-bytecode --python .venv/bin/python -e ".[${extras}]"
.venv/bin/python -m compileall -q hierpool || echo "setup.sh: could not precompile hierpool's modules (continuing)" >&2
echo "hierpool installed in $(pwd)/.venv (Python $(.venv/bin/python -c 'import platform; print(platform.python_version())'), extras: ${extras})" >&2
# compile hierpool's numba kernels once, ahead of time (cached on disk): the first analysis does not wait
.venv/bin/python -m hierpool.workflow.warmup
