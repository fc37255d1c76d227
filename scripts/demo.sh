#!/usr/bin/env bash
# The main job on the built-in default: build the digits scenario, train and fine-tune, analyse,
# and serve the dashboard. Arguments go to `tlexplorer demo` (e.g. --port 5007, --no-serve, --help).
set -euo pipefail
cd "$(dirname "$0")/.."
# the demo's "ready after" line counts from here, the set-up included
TLX_DEMO_STARTED="$(date +%s.%N)"
export TLX_DEMO_STARTED
for arg in "$@"; do
  if [ "$arg" = "-h" ] || [ "$arg" = "--help" ]; then
    # The command line parser needs nothing but Python: answer before installing anything.
    exec "${PYTHON:-python3}" -c 'import sys; sys.path.insert(0, "."); from tlexplorer.cli import main; sys.exit(main(["demo", *sys.argv[1:]]))' "$@"
  fi
done
. scripts/setup-env.sh core
exec tlexplorer demo "$@"
