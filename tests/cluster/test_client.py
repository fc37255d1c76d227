"""Reaching a cluster from the command line: an existing scheduler, a local one, and one-line errors
for an unreachable scheduler, a malformed address and the missing extra."""
import sys

import dask
import pytest

from tlexplorer import pipeline
from tlexplorer.cli import main
from tlexplorer.cluster import INSTALL_HINT, connect
from tlexplorer.errors import ClusterError


@pytest.fixture()
def analyze_spy(monkeypatch, tmp_path):
    """Stand in for the analysis: record the client the command passes."""
    seen = {}

    def fake(run_dir, out=None, *, client=None, **kwargs):
        seen["workers"] = sorted(client.scheduler_info(n_workers=-1)["workers"]) if client else None
        seen["scheduler"] = client.scheduler.address if client else None
        return tmp_path / "bundle"

    monkeypatch.setattr(pipeline, "analyze", fake)
    return seen


def test_scheduler_flag_uses_the_existing_cluster(dask_client, analyze_spy, tmp_path):
    address = dask_client.scheduler.address
    assert main(["analyze", str(tmp_path), "--scheduler", address]) == 0
    assert analyze_spy["scheduler"] == address
    assert analyze_spy["workers"] == sorted(dask_client.scheduler_info(n_workers=-1)["workers"])


def test_workers_flag_starts_a_local_cluster_of_that_size(analyze_spy, tmp_path, monkeypatch):
    from tlexplorer.cluster import client as client_module

    real = client_module.start_local_cluster  # any free port for the dashboard: 8787 may be taken
    monkeypatch.setattr(client_module, "start_local_cluster", lambda n, **kw: real(n, dashboard_address=":0"))
    assert main(["analyze", str(tmp_path), "--workers", "1"]) == 0
    assert len(analyze_spy["workers"]) == 1


def test_without_either_flag_nothing_changes(analyze_spy, tmp_path):
    assert main(["analyze", str(tmp_path)]) == 0
    assert analyze_spy["workers"] is None


def one_line_error(capsys) -> str:
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1, err
    return err[0]


def test_unreachable_scheduler_is_one_line_naming_it(tmp_path, capsys):
    with dask.config.set({"distributed.comm.timeouts.connect": "1s"}):
        assert main(["analyze", str(tmp_path), "--scheduler", "tcp://127.0.0.1:1"]) == 2
    line = one_line_error(capsys)
    assert "cannot reach the Dask scheduler at tcp://127.0.0.1:1" in line
    with pytest.raises(ClusterError, match="tcp://127.0.0.1:1"):
        connect("tcp://127.0.0.1:1", timeout=0.5)


@pytest.mark.parametrize("address", ["nonsense", "http://localhost:8786"])
def test_malformed_address_is_one_line(address, tmp_path, capsys):
    assert main(["analyze", str(tmp_path), "--scheduler", address]) == 2
    assert repr(address) in one_line_error(capsys)


@pytest.mark.parametrize("flag", [["--workers", "2"], ["--scheduler", "tcp://127.0.0.1:8786"]])
def test_missing_extra_says_what_to_install(flag, tmp_path, capsys, monkeypatch):
    monkeypatch.setitem(sys.modules, "distributed", None)  # import distributed fails
    assert main(["analyze", str(tmp_path), *flag]) == 2
    line = one_line_error(capsys)
    assert INSTALL_HINT in line and "distributed" in line


def test_local_workers_get_torch_threads_and_no_malloc_trimming(dask_client):
    """Dask's nanny would export MALLOC_TRIM_THRESHOLD_, which makes torch's CPU passes 1.7x slower,
    and set the thread counts in this (the driver's) environment too."""
    import os

    assert set(dask_client.run(os.getenv, "MALLOC_TRIM_THRESHOLD_").values()) == {None}
    threads = str(max(1, os.cpu_count() // 2))
    assert set(dask_client.run(os.getenv, "OMP_NUM_THREADS").values()) == {threads}
    assert "MALLOC_TRIM_THRESHOLD_" not in os.environ
