"""Model factories are imported only when allowed: a run's or bundle's name never runs code."""
import sys

import pytest
from torch import nn

from tlexplorer.errors import ModelError
from tlexplorer.models import build_model
from tlexplorer.models import factories
from tlexplorer.models.recorded import build_recorded_model, recorded_model_problem

NETS = '''
from torch import nn
IMPORTS = []
IMPORTS.append(1)
def make_net(num_classes=2, width=3):
    return nn.Sequential(nn.Conv2d(3, width, 3), nn.ReLU(), nn.Flatten(), nn.LazyLinear(num_classes))
not_callable = 5
'''


@pytest.fixture()
def nets_folder(tmp_path, monkeypatch):
    (tmp_path / "labnets_xyz.py").write_text(NETS)
    monkeypatch.setattr(sys, "path", list(sys.path))
    yield tmp_path
    sys.modules.pop("labnets_xyz", None)
    factories.disallow_all()


def test_a_factory_name_alone_imports_nothing(nets_folder):
    sys.path.insert(0, str(nets_folder))  # importable, yet not allowed
    with pytest.raises(ModelError, match=r"not allowed in this process: start tlexplorer with "
                                         r"--allow-factory labnets_xyz:make_net"):
        build_model("labnets_xyz:make_net", 3)
    assert "labnets_xyz" not in sys.modules


def test_allowed_factory_from_a_folder(nets_folder):
    factories.allow_factory("labnets_xyz:make_net", pythonpath=[nets_folder])
    assert factories.allowed_factories() == ["labnets_xyz:make_net"]
    model = build_model("labnets_xyz:make_net", 4, width=2)
    assert isinstance(model, nn.Sequential) and model[0].out_channels == 2


@pytest.mark.parametrize("name, message", [
    ("labnets_xyz:missing", "has no 'missing'"),
    ("labnets_xyz:not_callable", "not a function"),
    ("no_such_module_xyz:make", "cannot be imported .*--pythonpath"),
    ("not a name", "invalid model factory name"),
    ("os.system", "invalid model factory name"),
])
def test_allowing_a_bad_factory_is_one_line(nets_folder, name, message):
    with pytest.raises(ModelError, match=message) as info:
        factories.allow_factory(name, pythonpath=[nets_folder])
    assert "\n" not in str(info.value)
    assert not factories.allowed_factories()


def test_missing_pythonpath_folder(tmp_path):
    with pytest.raises(ModelError, match="no_dir: no such folder"):
        factories.allow_factory("a:b", pythonpath=[tmp_path / "no_dir"])


def test_allow_from_the_environment(nets_folder, monkeypatch):
    monkeypatch.setenv("TLX_PYTHONPATH", str(nets_folder))
    monkeypatch.setenv("TLX_ALLOW_FACTORIES", " labnets_xyz:make_net , ")
    assert factories.allow_from_environment() == ["labnets_xyz:make_net"]
    assert factories.is_allowed("labnets_xyz:make_net")


def test_recorded_specs_are_data(nets_folder):
    assert recorded_model_problem({"name": "digits-alexnet", "num_classes": 10}) is None
    assert isinstance(build_recorded_model({"name": "digits-alexnet", "num_classes": 3}),
                      nn.Module)
    bad = {
        "torch.hub:load": {"name": "torch.hub:load", "num_classes": 2,
                           "kwargs": {"repo_or_dir": ".", "model": "x", "source": "local"}},
        "unknown": {"name": "lenet9", "num_classes": 2},
        "pretrained": {"name": "alexnet", "num_classes": 2, "kwargs": {"pretrained": True}},
        "classes": {"name": "alexnet", "num_classes": "10"},
        "kwargs": {"name": "alexnet", "num_classes": 2, "kwargs": {"x": object()}},
        "not a dict": ["alexnet"],
    }
    for key, spec in bad.items():
        problem = recorded_model_problem(spec)
        assert problem and "\n" not in problem, key
        with pytest.raises(ModelError):
            build_recorded_model(spec)
    assert "--allow-factory torch.hub:load" in recorded_model_problem(bad["torch.hub:load"])
