#!/usr/bin/env bash
# Install hierpool into .venv and run the embedded example end to end (about a minute on 2 cores):
# simulated hospital episodes, three model variants, shrinkage, ranks, LOO; results in results/demo/.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh nutpie,datasets
exec .venv/bin/hierpool demo --out "${1:-results/demo}"
