"""Runs from checkpoints trained elsewhere, and user-defined CNNs named by their factory."""
import polars as pl
import pytest
import torch
from torch import nn

from tlexplorer.datasets import ArrayDomainSplit, TransferData
from tlexplorer.errors import ModelError
from tlexplorer.models import build_model, hidden_layers, save_checkpoint
from tlexplorer.models.factories import allow_factory, disallow_all
from tlexplorer.training import load_run
from tlexplorer.training.imports import import_run


def make_net(num_classes=2, width=4):
    """A user's own CNN (module-level so it can be named as 'module:function')."""
    return nn.Sequential(nn.Conv2d(3, width, 3, padding=1), nn.ReLU(), nn.AdaptiveAvgPool2d(2),
                         nn.Flatten(), nn.Linear(width * 4, 6), nn.ReLU(), nn.Linear(6, num_classes))


def tiny_data():
    import numpy as np

    rng = np.random.default_rng(0)
    classes = ["a", "b"]

    def split(role, name, n):
        return ArrayDomainSplit(rng.integers(0, 255, (n, 8, 8, 3), dtype=np.uint8), np.arange(n) % 2,
                                domain=role, role=role, split=name, classes=classes)

    return TransferData(classes, split("source", "train", 6), split("source", "val", 4),
                        split("target", "train", 6), split("target", "val", 4))


FACTORY = "test_imports_nets:make_net"  # the name a run records for the user's factory


@pytest.fixture(autouse=True)
def allowed_factory():
    """The user allowed their factory (as ``--allow-factory`` does on the command line)."""
    allow_factory(FACTORY, make_net)
    yield
    disallow_all()


def test_factory_named_models_build_and_discover_layers():
    model = build_model(FACTORY, 3, width=5)
    assert [(l.name, l.kind, l.neurons) for l in hidden_layers(model)] == [("0", "conv", 5), ("4", "linear", 6)]
    with pytest.raises(ModelError, match="not allowed.*--allow-factory other_mod:make"):
        build_model("other_mod:make", 3)


def test_import_run_from_two_checkpoints(tmp_path):
    data = tiny_data()
    torch.manual_seed(0)
    src, tgt = make_net(2), make_net(2)
    save_checkpoint(src, tmp_path / "s.pt")
    save_checkpoint(tgt, tmp_path / "t.pt")
    pl.DataFrame({"model": ["source", "target"], "epoch": [1, 1], "dataset": ["target_val"] * 2,
                  "accuracy": [0.5, 0.75], "loss": [1.0, 0.5]}).write_csv(tmp_path / "h.csv")
    run = import_run(data, {"name": FACTORY}, tmp_path / "s.pt", tmp_path / "t.pt",
                     history=tmp_path / "h.csv", out_dir=tmp_path / "run")
    source, target = run.build_models()
    assert torch.equal(source[0].weight, src[0].weight) and torch.equal(target[6].weight, tgt[6].weight)
    assert load_run(tmp_path / "run").history["accuracy"].to_list() == [0.5, 0.75]


def test_import_run_without_history_evaluates_the_models(tmp_path):
    data = tiny_data()
    save_checkpoint(make_net(2), tmp_path / "s.pt")
    save_checkpoint(make_net(2), tmp_path / "t.pt")
    run = import_run(data, {"name": FACTORY}, tmp_path / "s.pt", tmp_path / "t.pt", out_dir=tmp_path / "run")
    assert set(run.history["dataset"]) == {"source_val", "target_val"}
    assert set(run.history["model"]) == {"source", "target"}
