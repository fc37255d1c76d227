"""scripts/demo.sh and scripts/test.sh hand their arguments to `tlexplorer demo` and pytest only.

The scripts run in a copy of the repository whose ``.venv`` holds stubs: ``python`` and ``tlexplorer``
record their arguments instead of installing or running anything, so the whole set-up path (fresh
install included) is exercised in a second.
"""
from __future__ import annotations

import os
import shutil
import stat
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
STUB = """#!/usr/bin/env bash
echo "$(basename "$0") $*" >> "{log}"
"""
ACTIVATE = 'export PATH="{bin}:$PATH"\n'


@pytest.fixture
def repo(tmp_path):
    """A copy of the scripts and pyproject.toml with a stubbed, not yet installed .venv."""
    root = tmp_path / "repo"
    shutil.copytree(REPO / "scripts", root / "scripts")
    shutil.copy(REPO / "pyproject.toml", root)
    bin_dir = root / ".venv" / "bin"
    bin_dir.mkdir(parents=True)
    log = tmp_path / "calls.log"
    for name in ("python", "tlexplorer"):
        (bin_dir / name).write_text(STUB.format(log=log))
        (bin_dir / name).chmod((bin_dir / name).stat().st_mode | stat.S_IXUSR)
    (bin_dir / "activate").write_text(ACTIVATE.format(bin=bin_dir))
    return root, log


def _run(root: Path, script: str, *args: str) -> subprocess.CompletedProcess:
    env = {**os.environ, "PYTHON": sys.executable}
    return subprocess.run(["bash", str(root / "scripts" / script), *args], capture_output=True,
                          text=True, env=env, timeout=60)


def _calls(log: Path) -> list:
    return log.read_text().splitlines() if log.exists() else []


def test_demo_script_passes_its_arguments_to_the_demo_only(repo):
    root, log = repo
    result = _run(root, "demo.sh", "--port", "5101", "--no-serve")
    assert result.returncode == 0, result.stderr
    calls = _calls(log)
    installs = [c for c in calls if "pip install" in c and " -e " in c]
    assert installs and installs[0].endswith(f"-e {root}"), calls  # no extras, no "[--port]"
    assert calls[-1] == "tlexplorer demo --port 5101 --no-serve"
    assert "[setup] 2/2 installing tlexplorer and its dependencies" in result.stdout
    # installed once: the second run starts at once
    log.unlink()
    assert _run(root, "demo.sh").returncode == 0
    assert _calls(log) == ["tlexplorer demo"]


def test_test_script_passes_its_arguments_to_pytest_and_installs_the_test_extras(repo):
    root, log = repo
    result = _run(root, "test.sh", "-q", "-k", "demo")
    assert result.returncode == 0, result.stderr
    calls = _calls(log)
    assert any(c.endswith(f"-e {root}[test]") for c in calls), calls
    assert calls[-1] == "python -m pytest tests -q -k demo"


def test_demo_help_answers_before_installing_anything(repo):
    root, log = repo
    shutil.copytree(REPO / "tlexplorer", root / "tlexplorer")  # the parser, read from the source tree
    result = _run(root, "demo.sh", "--help")
    assert result.returncode == 0, result.stderr
    assert "usage: tlexplorer demo" in result.stdout and "--no-serve" in result.stdout
    assert _calls(log) == []


def test_setup_env_rejects_a_missing_extras_argument(repo):
    root, _log = repo
    result = subprocess.run(["bash", "-c", f". {root}/scripts/setup-env.sh --port"], capture_output=True,
                            text=True, timeout=60)
    assert result.returncode == 2
    assert "expected 'core' or 'test'" in result.stderr and "--port" in result.stderr
