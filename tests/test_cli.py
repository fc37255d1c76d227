"""The command line: help, info, and one-line errors for bad values."""
import subprocess
import sys

import pytest

from tlexplorer.cli import main


def run_cli(*args):
    return subprocess.run([sys.executable, "-m", "tlexplorer.cli", *args], capture_output=True, text=True)


def test_help_lists_commands(capsys):
    with pytest.raises(SystemExit) as exc:
        main(["--help"])
    assert exc.value.code == 0
    out = capsys.readouterr().out
    for command in ("demo", "train", "analyze", "serve", "info"):
        assert command in out


def test_info_reports_device_and_dirs(capsys, monkeypatch, tmp_path):
    monkeypatch.setenv("TLX_DATA_DIR", str(tmp_path / "d"))
    assert main(["info"]) == 0
    out = capsys.readouterr().out
    assert "device      cpu" in out
    assert str(tmp_path / "d") in out


@pytest.mark.parametrize("args, culprit", [
    (["train", "--epochs-source", "zero"], "'zero'"),
    (["serve", "x", "--port", "70000"], "70000"),
    (["info", "--device", "tpu"], "'tpu'"),
])
def test_bad_values_give_one_line_errors(args, culprit):
    result = run_cli(*args)
    assert result.returncode == 2
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1, result.stderr
    assert culprit in lines[0]
