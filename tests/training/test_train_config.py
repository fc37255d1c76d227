import json

import pytest

from tlexplorer.errors import TLXError
from tlexplorer.training import ConfigError, TrainOptions, load_train_config

GOOD = """\
data: {kind: folders, source: /data/office31/amazon, target: /data/office31/webcam, image_size: 224, norm: imagenet}
model: {name: alexnet, pretrained: false}
training: {epochs_source: 30, epochs_target: 20, lr_source: 0.01, lr_target: 1e-3, freeze: [features.0]}
"""


def test_yaml_example(tmp_path):
    path = tmp_path / "train.yaml"
    path.write_text(GOOD)
    data, model, options = load_train_config(path)
    assert data == {"kind": "folders", "source": "/data/office31/amazon", "target": "/data/office31/webcam",
                    "image_size": 224, "norm": "imagenet"}
    assert model == {"name": "alexnet", "num_classes": None, "kwargs": {}, "pretrained": False,
                     "source_checkpoint": None}
    assert options.epochs_source == 30 and options.lr_target == 1e-3 and options.freeze == ["features.0"]
    assert options.batch_size == TrainOptions().batch_size


def test_json_and_defaults(tmp_path):
    path = tmp_path / "train.json"
    path.write_text(json.dumps({"data": {"kind": "scenario", "name": "digits"}}))
    data, model, options = load_train_config(path)
    assert model["name"] == "digits-alexnet" and options == TrainOptions()
    # the architecture's defaults are recorded, so a later change of defaults cannot break the run
    assert model["kwargs"] == {"channels": [24, 48, 64, 64, 48], "hidden": [192, 96], "dropout": 0.3}
    assert TrainOptions.from_dict(json.loads(json.dumps(options.to_dict()))) == options


@pytest.mark.parametrize("text, message", [
    (GOOD + "extra: 1\n", "unknown section 'extra'"),
    (GOOD.replace("epochs_source", "epochs_src"), "unknown training option 'epochs_src'"),
    (GOOD.replace("pretrained: false", "pretrained: false, widht: 3"), "unknown model key 'widht'"),
    (GOOD.replace("epochs_source: 30", "epochs_source: 0"), "training.epochs_source must be an integer >= 1, got 0"),
    (GOOD.replace("lr_source: 0.01", "lr_source: fast"), "training.lr_source must be a number, got 'fast'"),
    (GOOD.replace("lr_source: 0.01", "lr_source: -1"), "training.lr_source must be > 0"),
    (GOOD.replace("freeze: [features.0]", "freeze: [1]"), "training.freeze must be a list"),
    (GOOD.replace("training: {", "training: {optimizer: rmsprop, "), "training.optimizer must be one of adam"),
    (GOOD.replace("name: alexnet", "name: 3"), "model name must be a non-empty string"),
    (GOOD.replace("data: {kind: folders,", "data: {"), "data must be a mapping with a 'kind'"),
    ("- a\n- b\n", "expected a mapping"),
    ("data: [\n", "not valid YAML"),
    ("model: {name: alexnet}\n", "missing section 'data'"),
])
def test_errors_name_file_and_key(tmp_path, text, message):
    path = tmp_path / "bad.yaml"
    path.write_text(text)
    with pytest.raises(ConfigError) as info:
        load_train_config(path)
    text = str(info.value)
    assert isinstance(info.value, TLXError) and "\n" not in text
    assert text.startswith(f"{path}: ") and message in text, text


def test_missing_file_and_bad_json(tmp_path):
    with pytest.raises(ConfigError, match="config file not found"):
        load_train_config(tmp_path / "none.yaml")
    path = tmp_path / "c.json"
    path.write_text("{")
    with pytest.raises(ConfigError, match="not valid JSON"):
        load_train_config(path)


def test_options_validation_direct():
    assert TrainOptions(freeze="features.conv1.").freeze == ["features.conv1"]
    assert TrainOptions(epochs_source=3.0).epochs_source == 3
    assert TrainOptions(optimizer="SGD").optimizer == "sgd"
    with pytest.raises(ConfigError, match="eval_max_per_class"):
        TrainOptions(eval_max_per_class=0)
    with pytest.raises(ConfigError, match="epochs_target"):
        TrainOptions(epochs_target=True)
