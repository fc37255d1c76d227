#!/usr/bin/env bash
# Install everything the tests need into .venv and run the whole suite: unit, state, browser tiers
# and the executed notebooks. Extra arguments go to pytest.
set -euo pipefail
cd "$(dirname "$0")/.."
. scripts/setup-env.sh test
exec python -m pytest tests "$@"
