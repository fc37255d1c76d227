"""Tiny synthetic transfer data and a tiny model spec, so that a full train takes a second or two."""
import numpy as np
import pytest

from tlexplorer.datasets import ArrayDomainSplit, TransferData

CLASSES = ["a", "b", "c"]
TINY_MODEL = {"name": "digits-alexnet", "kwargs": {"channels": [4, 4, 4, 4, 4], "hidden": [8, 8], "dropout": 0.1}}


def make_split(n, role, split, domain, brightness, seed):
    """Class c is a bright vertical bar in band c; the domains differ by bar brightness and noise."""
    rng = np.random.default_rng(seed)
    labels = np.arange(n) % len(CLASSES)
    images = rng.integers(0, 60, (n, 32, 32, 3)).astype(np.uint8)
    for i, c in enumerate(labels):
        images[i, :, c * 10:c * 10 + 8, :] += np.uint8(brightness)
    return ArrayDomainSplit(images, labels, domain=domain, role=role, split=split, classes=CLASSES)


def make_data(n_source=48, n_target=24):
    return TransferData(
        CLASSES,
        make_split(n_source, "source", "train", "printed", 150, 1),
        make_split(12, "source", "val", "printed", 150, 2),
        make_split(n_target, "target", "train", "handwritten", 90, 3),
        make_split(9, "target", "val", "handwritten", 90, 4),
        spec={},
    )


#: Options of a tiny train: a second or two on a CPU.
FAST = dict(epochs_source=2, epochs_target=2, batch_size=16, eval_max_per_class=5, lr_source=3e-3, lr_target=3e-3)


@pytest.fixture(scope="session")
def fast():
    return dict(FAST)


@pytest.fixture(scope="session")
def trained(tmp_path_factory):
    """One finished tiny run (shared, read-only)."""
    from tlexplorer.training import TrainOptions, train_transfer

    out = tmp_path_factory.mktemp("runs") / "run"
    return train_transfer(make_data(), dict(TINY_MODEL), TrainOptions(**FAST), out, progress=False)


@pytest.fixture
def tiny_data():
    return make_data()


@pytest.fixture
def tiny_model():
    return dict(TINY_MODEL)


@pytest.fixture(autouse=True, scope="module")
def _one_thread():
    """Tiny models gain nothing from intra-op threads, and on shared cores spinning threads of
    several processes slow each other down many times over."""
    import torch

    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)
