#!/usr/bin/env bash
# Create (or reuse) the project's virtual environment in .venv and install tlexplorer into it.
# Usage: source scripts/setup-env.sh [test]   — "test" adds the test extras and Debian's chromium.
set -euo pipefail
root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
venv="$root/.venv"
extras="${1:-}"
python="${PYTHON:-python3}"

if [ ! -x "$venv/bin/python" ]; then
  echo "[setup] creating virtual environment in $venv"
  "$python" -m venv "$venv"
fi
# Reinstall only when the dependency list changed: a second run starts at once.
stamp="$venv/.tlx-installed-$extras"
want="$(cat "$root/pyproject.toml" | sha256sum | cut -d' ' -f1)"
if [ ! -f "$stamp" ] || [ "$(cat "$stamp")" != "$want" ]; then
  echo "[setup] installing tlexplorer${extras:+[$extras]} and its dependencies (first time: a few minutes)"
  "$venv/bin/python" -m pip install --quiet --upgrade pip
  "$venv/bin/python" -m pip install --quiet -e "$root${extras:+[$extras]}"
  echo "$want" > "$stamp"
fi
if [ "$extras" = "test" ] && [ ! -x /usr/bin/chromium ]; then
  if [ "$(id -u)" = "0" ] && command -v apt-get >/dev/null; then
    echo "[setup] installing Debian's chromium for the browser tests"
    apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium >/dev/null
  else
    echo "[setup] /usr/bin/chromium missing and not root: browser tests will be skipped" >&2
  fi
fi
# shellcheck disable=SC1091
. "$venv/bin/activate"
