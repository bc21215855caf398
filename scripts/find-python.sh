#!/usr/bin/env bash
# Print the path of an installed Python >= 3.12 (hierpool needs PyMC 6 and ArviZ 1.x).
# Order: $HIERPOOL_PYTHON, python3.13/python3.12/python3 on PATH, uv's discovery, pyenv's versions.
set -u
ok() { "$1" -c 'import sys; sys.exit(0 if sys.version_info >= (3, 12) else 1)' >/dev/null 2>&1; }
if [ -n "${HIERPOOL_PYTHON:-}" ] && ok "$HIERPOOL_PYTHON"; then echo "$HIERPOOL_PYTHON"; exit 0; fi
for name in python3.13 python3.12 python3; do
  p=$(command -v "$name" 2>/dev/null) || continue
  if ok "$p"; then "$p" -c 'import sys; print(sys.executable)'; exit 0; fi
done
if command -v uv >/dev/null 2>&1; then
  p=$(uv python find '>=3.12' 2>/dev/null) && ok "$p" && { echo "$p"; exit 0; }
fi
if command -v pyenv >/dev/null 2>&1; then
  for v in $(pyenv versions --bare 2>/dev/null | grep -E '^3\.(1[2-9])(\.[0-9]+)?$' | sort -rV); do
    p="$(pyenv prefix "$v" 2>/dev/null)/bin/python"
    if ok "$p"; then echo "$p"; exit 0; fi
  done
fi
echo "hierpool needs Python >= 3.12 and found none; install one or set HIERPOOL_PYTHON=/path/to/python3.12" >&2
exit 1
