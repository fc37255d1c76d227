"""The analysis on a Dask cluster: the single-process bundle byte for byte, after a worker is killed
mid-task, and after the driver is killed (resume), with checkpoints read or sent."""
import dataclasses
import hashlib
import json
import os
import signal
import sys
from pathlib import Path

import cloudpickle
import pytest
from distributed import WorkerPlugin

from tlexplorer.cluster import chunked
from tlexplorer.pipeline import AnalyzeOptions, analyze

pytestmark = pytest.mark.slow  # a whole analysis each, on worker processes that import torch

# 4 conductance chunks per combination (40 rows per domain); the forward passes' chunks of 8 × 10 rows
# end inside the pipeline's batches of 32
TINY = AnalyzeOptions(per_class=4, n_steps=4, cv=2, chunk_size=10, batch_size=32, seed=0)

# the plugin below is defined here, which the workers cannot import: send it by value
cloudpickle.register_pickle_by_value(sys.modules[__name__])


def fingerprint(bundle: Path) -> dict:
    """Every file's SHA-256, and the manifest without its creation time and stage timings."""
    files = {p.relative_to(bundle).as_posix(): hashlib.sha256(p.read_bytes()).hexdigest()
             for p in sorted(bundle.rglob("*")) if p.is_file() and p.name != "manifest.json"}
    manifest = json.loads((bundle / "manifest.json").read_text())
    for measured in ("created", "stages", "background", "peak_rss_scope"):
        manifest.pop(measured)
    return {"files": files, "manifest": manifest}


@pytest.fixture(scope="module")
def reference(tiny_run, tmp_path_factory):
    return fingerprint(analyze(tiny_run, tmp_path_factory.mktemp("single") / "bundle", options=TINY,
                               progress=False))


def test_two_workers_write_the_single_process_bundle_byte_for_byte(tiny_run, dask_client, reference,
                                                                    tmp_path, capsys):
    out = analyze(tiny_run, tmp_path / "bundle", options=TINY, progress=True, client=dask_client)
    assert fingerprint(out) == reference
    err = capsys.readouterr()
    assert f"Dask dashboard: {dask_client.dashboard_link}" in err.out
    assert "chunked passes on 2 Dask workers" in err.err  # one bar over every chunk


class KillOnce(WorkerPlugin):
    """SIGKILL the worker process when it starts the first conductance chunk (once per marker)."""

    name = "tlx-test-kill-once"

    def __init__(self, marker: str):
        self.marker = marker

    def transition(self, key, start, finish, **kwargs):
        if finish == "executing" and str(key).startswith("tlx-conductance/"):
            try:
                os.close(os.open(self.marker, os.O_CREAT | os.O_EXCL))
            except FileExistsError:
                return
            os.kill(os.getpid(), signal.SIGKILL)


def test_a_worker_killed_mid_task_is_retried_and_changes_nothing(tiny_run, dask_client, reference,
                                                                 tmp_path):
    marker = tmp_path / "killed"
    dask_client.register_plugin(KillOnce(str(marker)))
    try:
        out = analyze(tiny_run, tmp_path / "bundle", options=TINY, progress=False, client=dask_client)
    finally:
        dask_client.unregister_worker_plugin(KillOnce.name)
    assert marker.exists()  # a worker did die in a task
    assert fingerprint(out) == reference
    dask_client.wait_for_workers(2, timeout=60)  # the nanny restarted it, for the next tests


def test_a_killed_driver_resumes_from_its_chunks_and_sent_checkpoints_match(
        tiny_run, dask_client, reference, tmp_path, monkeypatch):
    stored = []
    original = chunked._result

    def die_after_five(future, job):
        if len(stored) == 5:
            raise KeyboardInterrupt
        stored.append(job.label)
        return original(future, job)

    monkeypatch.setattr(chunked, "_result", die_after_five)
    with pytest.raises(KeyboardInterrupt):
        analyze(tiny_run, tmp_path / "bundle", options=TINY, progress=False, client=dask_client)
    assert not (tmp_path / "bundle").exists()  # nothing half-written replaces a bundle
    monkeypatch.setattr(chunked, "_result", original)

    planned = []
    plan = chunked._plan
    monkeypatch.setattr(chunked, "_plan", lambda *a: planned.extend(plan(*a)) or planned)
    # workers that cannot read the run's checkpoints get their bytes (checked by SHA-256)
    monkeypatch.setattr(chunked, "_workers_see", lambda client, path: False)
    out = analyze(tiny_run, tmp_path / "bundle", options=TINY, progress=False, client=dask_client)
    redone = {job.label for job in planned}
    finished = {label for label in stored if not label.startswith("weights/")}  # counts: in memory
    assert finished and redone and not redone & finished
    assert fingerprint(out) == reference


def test_a_checkpoint_that_is_not_the_driver_s_stops_the_analysis_in_one_line(
        tiny_run, dask_client, tmp_path, monkeypatch, capsys):
    from tlexplorer.cli import main

    real = chunked._inputs

    def other_checkpoint(ctx):  # what a worker would see if target.pt changed under the analysis
        inputs = real(ctx)
        path, _sha = inputs.checkpoints["target"]
        return dataclasses.replace(inputs, checkpoints={**inputs.checkpoints, "target": (path, "0" * 64)})

    monkeypatch.setattr(chunked, "_inputs", other_checkpoint)
    address = dask_client.scheduler.address
    assert main(["analyze", str(tiny_run), "--out", str(tmp_path / "bundle"), "--per-class", "4",
                 "--n-steps", "4", "--scheduler", address, "--quiet"]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "target.pt: the checkpoint a worker got has SHA-256" in err[0], err
    assert not (tmp_path / "bundle").exists()
