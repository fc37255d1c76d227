"""What a worker runs, outside Dask: its device, the checkpoint check, batches like the pipeline's."""
import hashlib

import numpy as np
import pytest
import torch

from tlexplorer.cluster import tasks
from tlexplorer.cluster.chunked import whole_batches
from tlexplorer.errors import ModelError


@pytest.mark.parametrize("requested, name, gpus, expected", [
    (None, 0, 0, "cpu"),                 # no GPU: the CPU
    (None, 3, 0, "cpu"),
    (None, None, 1, "cuda"),             # one visible GPU (CUDA_VISIBLE_DEVICES per worker)
    (None, 0, 4, "cuda:0"),              # a local cluster's workers spread over the GPUs
    (None, 5, 4, "cuda:1"),
    (None, "tcp://10.0.0.1:4000", 4, "cuda"),  # a worker not named by a local cluster
    ("cpu", 1, 4, "cpu"),                # an explicit device wins
])
def test_worker_device(requested, name, gpus, expected, monkeypatch):
    monkeypatch.delenv("TLX_DEVICE", raising=False)
    assert tasks.pick_device(requested, name, gpus) == torch.device(expected)


def test_tlx_device_on_the_worker_wins(monkeypatch):
    monkeypatch.setenv("TLX_DEVICE", "cpu")
    assert tasks.pick_device(None, 0, 4) == torch.device("cpu")


def test_checkpoint_bytes_are_verified(tmp_path):
    path = tmp_path / "target.pt"
    path.write_bytes(b"weights")
    good = hashlib.sha256(b"weights").hexdigest()
    assert tasks.checkpoint_bytes(str(path), good) == b"weights"
    assert tasks.checkpoint_bytes("/nowhere/target.pt", good, b"weights") == b"weights"  # sent bytes
    with pytest.raises(ModelError, match="target.pt: the checkpoint a worker got has SHA-256"):
        tasks.checkpoint_bytes(str(path), good, b"other weights")
    with pytest.raises(ModelError, match="/nowhere/target.pt: this worker cannot read"):
        tasks.checkpoint_bytes("/nowhere/target.pt", good)


@pytest.mark.parametrize("start, stop, n, expected", [
    (0, 16, 40, (0, 32)),     # the pipeline's batches of 32: [0, 32), [32, 40)
    (16, 32, 40, (0, 32)),    # a chunk inside one batch gets the whole batch
    (32, 40, 40, (32, 40)),   # the last, short batch
    (64, 128, 200, (64, 128)),  # a chunk on the batch grid stays as it is
])
def test_forward_chunks_widen_to_the_pipeline_s_batches(start, stop, n, expected):
    assert whole_batches(start, stop, n, 32) == expected


def test_only_the_chunk_s_rows_come_back():
    arrays = {"a": np.arange(20).reshape(10, 2)}
    kept = tasks._kept(arrays, (3, 7))["a"]
    assert kept.tolist() == arrays["a"][3:7].tolist() and kept.flags.c_contiguous
    assert tasks._kept(arrays, None) is arrays


def test_user_errors_come_back_as_values_and_are_raised_on_the_driver():
    from tlexplorer.errors import DataError, TLXError

    @tasks._user_errors_returned
    def task():
        raise DataError("the data differ")

    returned = task()
    assert returned == tasks.TaskError("DataError", "the data differ")
    raised = returned.exception()
    assert type(raised) is DataError and str(raised) == "the data differ"
    assert type(tasks.TaskError("NotAnError", "x").exception()) is TLXError


def test_a_worker_allows_the_factories_the_driver_allowed(tmp_path, monkeypatch):
    import sys

    from tlexplorer.models import factories

    (tmp_path / "labnets_dask_xyz.py").write_text("def make_net(num_classes=2):\n    return None\n")
    monkeypatch.setattr(sys, "path", [str(tmp_path), *sys.path])  # the worker's own sys.path
    try:
        tasks.allow_factories(["labnets_dask_xyz:make_net"])
        assert factories.is_allowed("labnets_dask_xyz:make_net")
        with pytest.raises(ModelError, match="cannot be imported"):
            tasks.allow_factories(["no_such_module_xyz:make"])
    finally:
        factories.disallow_all()
        sys.modules.pop("labnets_dask_xyz", None)
