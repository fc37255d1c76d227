"""Architectures by name, hidden-layer discovery on all four model kinds, checkpoint I/O."""
import collections

import pytest
import torch
from torch import nn

from tlexplorer.errors import LayerError, ModelError
from tlexplorer.models import (DigitsAlexNet, build_model, hidden_layers, load_checkpoint, output_layer,
                               replace_head, save_checkpoint)


def test_digits_alexnet_has_seven_hidden_layers_and_runs_on_32px():
    model = build_model("digits-alexnet", 10).eval()
    layers = hidden_layers(model)
    assert [l.kind for l in layers] == ["conv"] * 5 + ["linear"] * 2
    assert [l.name for l in layers][:2] == ["features.conv1", "features.conv2"]
    assert model(torch.zeros(2, 3, 32, 32)).shape == (2, 10)


@pytest.mark.parametrize("name, n_layers, first, last", [
    ("alexnet", 7, ("features.0", 64), ("classifier.4", 4096)),
    ("vgg11", 10, ("features.0", 64), ("classifier.3", 4096)),
    ("resnet18", 20, ("conv1", 64), ("layer4.1.conv2", 512)),
])
def test_torchvision_models_layer_discovery(name, n_layers, first, last):
    model = build_model(name, 31)
    layers = hidden_layers(model)
    assert len(layers) == n_layers
    assert (layers[0].name, layers[0].neurons) == first
    assert (layers[-1].name, layers[-1].neurons) == last
    head_name, head = output_layer(model)
    assert head.out_features == 31 and head_name not in [l.name for l in layers]


def test_user_named_layers_and_errors():
    model = build_model("digits-alexnet", 10)
    layers = hidden_layers(model, ["features.conv3", "classifier.fc7"])
    assert [(l.name, l.neurons) for l in layers] == [("features.conv3", 64), ("classifier.fc7", 96)]
    with pytest.raises(LayerError, match="'features.conv9' is not in DigitsAlexNet"):
        hidden_layers(model, ["features.conv9"])
    with pytest.raises(LayerError, match="'features.relu1' is a ReLU"):
        hidden_layers(model, ["features.relu1"])


def test_unknown_model_name():
    with pytest.raises(ModelError, match="unknown model 'lenet': choose one of digits-alexnet"):
        build_model("lenet", 10)


def test_checkpoint_round_trip(tmp_path):
    model = build_model("digits-alexnet", 10)
    path = save_checkpoint(model, tmp_path / "m.pt")
    other = load_checkpoint(build_model("digits-alexnet", 10), path)
    for a, b in zip(model.state_dict().values(), other.state_dict().values()):
        assert torch.equal(a, b)
    assert [p.name for p in tmp_path.iterdir()] == ["m.pt"]  # no temporary file left


def test_checkpoint_of_another_architecture_is_one_line_error(tmp_path):
    path = save_checkpoint(build_model("digits-alexnet", 10), tmp_path / "m.pt")
    with pytest.raises(ModelError) as exc:
        load_checkpoint(build_model("digits-alexnet", 5), path)
    message = str(exc.value)
    assert "\n" not in message and str(path) in message and "shape mismatch" in message
    with pytest.raises(ModelError, match="missing"):
        load_checkpoint(build_model("alexnet", 10), path)


def _one_line_error(path) -> str:
    with pytest.raises(ModelError) as exc:
        load_checkpoint(build_model("digits-alexnet", 10), path)
    message = str(exc.value)
    assert "\n" not in message and message.startswith(f"{path}: ")
    assert "weights_only=False" not in message and "weights_only` set to `False" not in message
    return message


def test_checkpoint_refuses_pickled_objects(tmp_path):
    path = tmp_path / "evil.pt"
    torch.save({"w": torch.zeros(1), "obj": collections.OrderedDict, "net": nn.Linear(1, 1)}, path)
    message = _one_line_error(path)
    assert "pickled Python object" in message and "state_dict()" in message


def test_empty_and_foreign_checkpoints_are_one_line_errors(tmp_path):
    empty = tmp_path / "empty.pt"
    empty.write_bytes(b"")
    assert "empty file (0 bytes)" in _one_line_error(empty)
    text = tmp_path / "notes.pt"
    text.write_text("not a checkpoint")
    assert "not a PyTorch checkpoint" in _one_line_error(text)


def test_nan_weights_are_caught_when_the_checkpoint_loads(tmp_path):
    model = build_model("digits-alexnet", 10)
    with torch.no_grad():
        model.features.conv3.weight[0, 0, 0, 0] = float("nan")
        model.classifier.fc7.bias[1] = float("inf")
    path = save_checkpoint(model, tmp_path / "diverged.pt")
    message = _one_line_error(path)
    assert "'features.conv3.weight' has 1 NaN or infinite values" in message  # the first one
    assert "lower learning rate" in message


def test_missing_checkpoint_names_file(tmp_path):
    with pytest.raises(ModelError, match="nope.pt: checkpoint file not found"):
        load_checkpoint(build_model("digits-alexnet", 10), tmp_path / "nope.pt")


def test_replace_head_keeps_body():
    model = DigitsAlexNet(num_classes=10)
    conv1 = model.features.conv1.weight.clone()
    replace_head(model, 3)
    assert model.classifier.fc8.out_features == 3
    assert torch.equal(model.features.conv1.weight, conv1)
    assert isinstance(output_layer(model)[1], nn.Linear)


def test_equal_weights_give_byte_identical_checkpoints(tmp_path):
    from tlexplorer.models import file_sha256

    model = build_model("digits-alexnet", 10)
    assert file_sha256(save_checkpoint(model, tmp_path / "a.pt")) == file_sha256(save_checkpoint(model, tmp_path / "b.pt"))


def test_architecture_kwargs_record_the_defaults():
    from tlexplorer.models import architecture_kwargs

    kwargs = architecture_kwargs("digits-alexnet", {"hidden": (16, 8)})
    assert kwargs == {"channels": [24, 48, 64, 64, 48], "hidden": [16, 8], "dropout": 0.3}
    a, b = build_model("digits-alexnet", 3, **kwargs), build_model("digits-alexnet", 3, hidden=(16, 8))
    assert [p.shape for p in a.parameters()] == [p.shape for p in b.parameters()]
    assert architecture_kwargs("resnet18", None) == {}
    assert architecture_kwargs("mypkg.nets:make", {"width": 2}) == {"width": 2}
