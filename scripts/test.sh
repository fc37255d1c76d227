#!/usr/bin/env bash
# Install everything the tests need into .venv and run the whole suite: unit, state, browser tiers
# and the executed notebooks. Arguments go to pytest (e.g. -q, -x, -k demo).
set -euo pipefail
cd "$(dirname "$0")/.."
. scripts/setup-env.sh test
exec python -m pytest tests "$@"
