"""A bundle's models and a neuron's feature visualization, through the public API."""
import numpy as np
import pytest
import torch

import tlexplorer
from tlexplorer.bundle import BundleWriter
from tlexplorer.errors import ModelError

KWARGS = {"channels": [4, 4, 4, 4, 4], "hidden": [8, 8]}


def _bundle(tmp_path, name="digits-alexnet"):
    """A bundle holding only what these functions read: the manifest's model and settings, the models."""
    torch.manual_seed(0)
    source = tlexplorer.build_model("digits-alexnet", 3, **KWARGS)
    target = tlexplorer.build_model("digits-alexnet", 3, **KWARGS)
    for role, net in (("source", source), ("target", target)):
        tlexplorer.save_checkpoint(net, tmp_path / f"{role}.pt")
    writer = BundleWriter(tmp_path / "bundle")
    for role in ("source", "target"):
        writer.write_file(f"models/{role}.pt", tmp_path / f"{role}.pt")
    writer.finalize({"model": {"name": name, "num_classes": 3, "kwargs": KWARGS},
                     "classes": ["a", "b", "c"], "layers": [],
                     "options": {"feature_vis_steps": 3, "seed": 0},
                     "image": {"size": 32, "mean": [0.5] * 3, "std": [0.25] * 3}})
    return tmp_path / "bundle", target


def test_bundle_models_are_the_bundled_checkpoints(tmp_path):
    path, target = _bundle(tmp_path)
    models = tlexplorer.bundle_models(path)
    assert set(models) == {"source", "target"} and not models["target"].training
    for key, value in target.state_dict().items():
        assert torch.equal(models["target"].state_dict()[key], value)


def test_a_bundle_never_chooses_code_to_import(tmp_path):
    path, _ = _bundle(tmp_path, name="mypkg.nets:make_net")
    with pytest.raises(ModelError, match="'mypkg.nets:make_net', which this process may not "
                                         "import.*--allow-factory.*or pass the factory itself"):
        tlexplorer.bundle_models(path)
    calls = []

    def make_net(num_classes, **kwargs):
        calls.append((num_classes, kwargs))
        return tlexplorer.build_model("digits-alexnet", num_classes, **kwargs)

    assert set(tlexplorer.bundle_models(path, factory=make_net)) == {"source", "target"}
    assert calls == [(3, KWARGS)] * 2


def test_feature_visualization_uses_and_fills_the_bundle_cache(tmp_path):
    from tlexplorer.analysis.featurevis import visualize_neuron

    path, target = _bundle(tmp_path)
    bundle = tlexplorer.open_bundle(path)
    image = tlexplorer.feature_visualization(bundle, "target", "features.conv2", 1)
    expected = visualize_neuron(target, "features.conv2", 1, image_size=32, mean=[0.5] * 3,
                                std=[0.25] * 3, steps=3, seed=0, device="cpu")
    np.testing.assert_array_equal(image, expected)  # the bundle's settings, as the dashboard
    np.testing.assert_array_equal(bundle.cache_array("featurevis/target/features.conv2/1"), image)
    bundle.write_cache_array("featurevis/target/features.conv2/1", np.zeros_like(image))
    assert not tlexplorer.feature_visualization(bundle, "target", "features.conv2", 1).any()  # cached
    quick = tlexplorer.feature_visualization(bundle, "target", "features.conv2", 2, steps=1)
    assert quick.shape == (32, 32, 3) and bundle.cache_array("featurevis/target/features.conv2/2") is None


def test_an_allowed_factory_needs_no_argument(tmp_path):
    from tlexplorer.models.factories import allow_factory, disallow_all

    path, _ = _bundle(tmp_path, name="mypkg.nets:make_net")
    allow_factory("mypkg.nets:make_net",
                  lambda num_classes, **kw: tlexplorer.build_model("digits-alexnet", num_classes, **kw))
    try:
        assert set(tlexplorer.bundle_models(path)) == {"source", "target"}
    finally:
        disallow_all()
