"""What a worker runs, outside Dask: its device, the checkpoint check, batches like the pipeline's."""
import hashlib

import numpy as np
import polars as pl
import pytest
import torch

from tlexplorer.cluster import tasks
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


class FakeData:
    """Ten instances of one split whose image is their position."""

    class Split:
        role, split = "target", "train"

        def __getitem__(self, i):
            return torch.full((3, 2, 2), float(i)), 0

    def splits(self):
        return [self.Split()]


@pytest.mark.parametrize("offset, sizes", [
    (0, [4, 4, 2]),   # a chunk starting on the batch grid
    (6, [2, 4, 4]),   # a chunk starting mid-batch: its first batch ends where the pipeline's does
    (8, [4, 4, 2]),
])
def test_batches_end_where_the_pipeline_s_do(offset, sizes):
    where = pl.DataFrame({"role": ["target"] * 10, "split": ["train"] * 10, "position": np.arange(10)})
    batches = list(tasks._loader(FakeData(), where, 4, offset))
    assert [len(x) for x, _ in batches] == sizes
    assert torch.cat([x[:, 0, 0, 0] for x, _ in batches]).tolist() == list(range(10))
