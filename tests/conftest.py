"""Fixtures shared across test packages."""
import pytest

from tlexplorer.scenarios import load_scenario
from tlexplorer.training import TrainOptions, train_transfer


@pytest.fixture(scope="session")
def tiny_run(tmp_path_factory):
    """A digits run small enough to analyse in seconds (8 images per class, narrow layers)."""
    root = tmp_path_factory.mktemp("run")
    data = load_scenario("digits", per_class=8, data_dir=root / "data", progress=False)
    small = {"channels": (8, 8, 12, 12, 8), "hidden": (24, 16)}
    train_transfer(data, {"name": "digits-alexnet", "kwargs": small},
                   TrainOptions(epochs_source=1, epochs_target=1, eval_max_per_class=5),
                   root / "run", progress=False)
    return root / "run"
