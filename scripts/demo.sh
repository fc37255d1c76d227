#!/usr/bin/env bash
# The main job on the built-in default: build the digits scenario, train and fine-tune, analyse,
# and serve the dashboard. Extra arguments go to `tlexplorer demo` (e.g. --port 5007, --no-serve).
set -euo pipefail
cd "$(dirname "$0")/.."
. scripts/setup-env.sh
exec tlexplorer demo "$@"
