#!/usr/bin/env bash
# Create (or reuse) the project's virtual environment in .venv and install tlexplorer into it.
# Usage: . scripts/setup-env.sh core|test   — "test" adds the test extras and Debian's chromium.
# The caller always names the extras: sourced without arguments, bash would hand this script the
# caller's own arguments (`demo.sh --port 5101` once became the pip extra "--port").
set -euo pipefail
root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
venv="$root/.venv"
case "${1:-}" in
  core) extras="" ;;
  test) extras="test" ;;
  *) echo "setup-env.sh: expected 'core' or 'test' as its argument, got '${1:-}'" >&2; return 2 2>/dev/null || exit 2 ;;
esac
python="${PYTHON:-python3}"

if [ ! -x "$venv/bin/python" ]; then
  echo "[setup] creating the virtual environment $venv"
  "$python" -m venv "$venv"
fi
# Reinstall only when the dependency list changed: a second run starts at once.
stamp="$venv/.tlx-installed-${extras:-core}"
want="$(sha256sum < "$root/pyproject.toml" | cut -d' ' -f1)"
if [ ! -f "$stamp" ] || [ "$(cat "$stamp")" != "$want" ]; then
  started=$SECONDS
  echo "[setup] 1/2 upgrading pip"
  "$venv/bin/python" -m pip install --quiet --upgrade pip
  echo "[setup] 2/2 installing tlexplorer${extras:+[$extras]} and its dependencies" \
       "(the first time this downloads about 3 GB, mostly PyTorch: several minutes)"
  # pip's own lines name each package as it is downloaded and installed; only the noise of
  # "Requirement already satisfied" lines on a re-install is filtered out, and setuptools' notice
  # on every editable install ("Editable installation. Please be careful with folders ...").
  PYTHONWARNINGS="ignore:Editable installation:UserWarning" \
    "$venv/bin/python" -m pip install --progress-bar on -e "$root${extras:+[$extras]}" \
    | { grep --line-buffered -v '^Requirement already satisfied' || true; }
  echo "$want" > "$stamp"
  echo "[setup] installed in $((SECONDS - started)) s"
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
