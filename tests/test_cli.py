"""The command line: help, info, and one-line errors for bad values."""
import subprocess
import sys

import pytest

from tlexplorer.cli import main


def run_cli(*args):
    return subprocess.run([sys.executable, "-m", "tlexplorer.cli", *args], capture_output=True, text=True)


def test_help_lists_commands(capsys):
    with pytest.raises(SystemExit) as exc:
        main(["--help"])
    assert exc.value.code == 0
    out = capsys.readouterr().out
    for command in ("demo", "train", "analyze", "serve", "info"):
        assert command in out


def test_info_reports_device_and_dirs(capsys, monkeypatch, tmp_path):
    monkeypatch.setenv("TLX_DATA_DIR", str(tmp_path / "d"))
    assert main(["info"]) == 0
    out = capsys.readouterr().out
    assert "device      cpu" in out
    assert str(tmp_path / "d") in out


@pytest.mark.parametrize("args, culprit", [
    (["train", "--epochs-source", "zero"], "'zero'"),
    (["serve", "x", "--port", "70000"], "70000"),
    (["info", "--device", "tpu"], "'tpu'"),
])
def test_bad_values_give_one_line_errors(args, culprit):
    result = run_cli(*args)
    assert result.returncode == 2
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1, result.stderr
    assert culprit in lines[0]


# ------------------------------------------------------------- errors users cause, one line each
TINY_MODEL = {"name": "digits-alexnet", "kwargs": {"channels": (4, 4, 4, 4, 4), "hidden": (8, 8)}}
TINY_ANALYSIS = ["--per-class", "2", "--n-steps", "2", "--quiet"]


@pytest.fixture(scope="module")
def tiny_run(tmp_path_factory):
    """A run of untrained tiny models on 8 digits per class (no training: errors come first)."""
    import torch

    from tlexplorer import build_model, import_run, load_scenario, save_checkpoint

    root = tmp_path_factory.mktemp("cli")
    data = load_scenario("digits", per_class=8, data_dir=root / "data", progress=False)
    torch.manual_seed(0)
    model = build_model("digits-alexnet", 10, **TINY_MODEL["kwargs"])
    for role in ("source", "target"):
        save_checkpoint(model, root / f"{role}.pt")
    import_run(data, TINY_MODEL, root / "source.pt", root / "target.pt", out_dir=root / "run")
    return root / "run"


def _one_line_error(capsys, argv) -> str:
    assert main(argv) == 2
    lines = capsys.readouterr().err.strip().splitlines()
    assert len(lines) == 1, lines
    assert lines[0].startswith("tlexplorer: error: ")
    return lines[0]


@pytest.fixture
def run_copy(tiny_run, tmp_path):
    import shutil

    shutil.copytree(tiny_run, tmp_path / "run")
    return tmp_path / "run"


def test_zero_byte_checkpoint(capsys, run_copy):
    (run_copy / "target.pt").write_bytes(b"")
    line = _one_line_error(capsys, ["analyze", str(run_copy), *TINY_ANALYSIS])
    assert f"{run_copy / 'target.pt'}: the checkpoint is an empty file" in line


def test_nan_weights_name_the_parameter_before_any_work(capsys, run_copy):
    import torch

    state = torch.load(run_copy / "target.pt", weights_only=True)
    state["classifier.fc6.weight"][0, 0] = float("nan")
    torch.save(state, run_copy / "target.pt")
    line = _one_line_error(capsys, ["analyze", str(run_copy), *TINY_ANALYSIS])
    assert str(run_copy / "target.pt") in line and "'classifier.fc6.weight'" in line and "NaN" in line
    assert not (run_copy / "bundle.partial").exists()


def test_unsafe_checkpoint_never_suggests_weights_only_false(capsys, run_copy):
    import torch

    from tlexplorer import build_model

    torch.save(build_model("digits-alexnet", 10, **TINY_MODEL["kwargs"]), run_copy / "target.pt")
    line = _one_line_error(capsys, ["analyze", str(run_copy), *TINY_ANALYSIS])
    assert "pickled Python object" in line and "weights_only" not in line.replace("weights only", "")


def test_full_disk_names_the_file_and_keeps_the_work_for_resume(capsys, run_copy, monkeypatch):
    from tlexplorer.bundle import open_bundle, writer

    original, calls = writer.save_npy, []

    def fills_the_disk(path, arr):
        calls.append(path)
        if len(calls) == 3:  # numpy's short write: no errno, no file name
            path.write_bytes(b"\x93NUMPY")
            raise OSError("1533696 requested and 530400 written")
        return original(path, arr)

    monkeypatch.setattr(writer, "save_npy", fills_the_disk)
    out = run_copy / "bundle"
    line = _one_line_error(capsys, ["analyze", str(run_copy), *TINY_ANALYSIS])
    written = calls[2].name[1:].rsplit(".", 2)[0]  # the temporary name is .NAME.<random>.tmp
    assert f"tlexplorer: error: {out}.partial/" in line and f"/{written}: the disk is full" in line
    assert f"kept in {out}.partial and the same command resumes" in line
    assert not out.exists() and (run_copy / "bundle.partial").is_dir()
    monkeypatch.setattr(writer, "save_npy", original)
    assert main(["analyze", str(run_copy), *TINY_ANALYSIS]) == 0  # resumes once there is space
    open_bundle(out)


def _config(tmp_path, text: str):
    path = tmp_path / "transfer.yaml"
    path.write_text(text)
    return path


def test_bad_config_value_names_the_file_and_key(capsys, tmp_path):
    config = _config(tmp_path, "data: {kind: folders, source: a, target: b, image_size: big}\n")
    line = _one_line_error(capsys, ["train", "--config", str(config), "--out", str(tmp_path / "r")])
    assert f"{config}: data.image_size must be an integer >= 1, got 'big'" in line


def test_class_folders_differing_in_capitalisation_say_so(capsys, tmp_path):
    from PIL import Image

    for domain, names in (("src", ("Star", "circle")), ("tgt", ("star", "circle"))):
        for name in names:
            (tmp_path / domain / name).mkdir(parents=True)
            Image.new("RGB", (8, 8)).save(tmp_path / domain / name / "0.png")
    config = _config(tmp_path, f"data: {{kind: folders, source: {tmp_path / 'src'}, "
                               f"target: {tmp_path / 'tgt'}, image_size: 8}}\n")
    line = _one_line_error(capsys, ["train", "--config", str(config), "--out", str(tmp_path / "r")])
    assert str(config) in line and "'Star' vs 'star' differ only in capitalisation" in line


def test_allow_factory_is_checked_at_start_up(tmp_path, capsys):
    from tlexplorer.cli import main

    for args in (["analyze", str(tmp_path), "--allow-factory", "no_such_mod_xyz:make"],
                 ["train", "--allow-factory", "not a name"],
                 ["analyze", str(tmp_path), "--allow-factory", "a:b", "--pythonpath",
                  str(tmp_path / "missing")]):
        assert main(args) == 2
        err = capsys.readouterr().err.strip().splitlines()
        assert len(err) == 1 and err[0].startswith("tlexplorer: error: ")
