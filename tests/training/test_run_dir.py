import json
import shutil

import pytest

from tlexplorer.errors import ModelError, RunError
from tlexplorer.training import load_run


@pytest.fixture
def run_copy(trained, tmp_path):
    out = tmp_path / "run"
    shutil.copytree(trained.run_dir, out)
    return out


def test_not_a_directory(tmp_path):
    with pytest.raises(RunError, match="run directory not found"):
        load_run(tmp_path / "nowhere")


@pytest.mark.parametrize("missing, message", [
    ("config.json", "config.json: missing; .* is not a finished run"),
    ("source.pt", "source.pt: missing"),
    ("target.pt", "target.pt: missing"),
    ("history.parquet", "history.parquet: missing"),
])
def test_missing_file_is_named(run_copy, missing, message):
    (run_copy / missing).unlink()
    with pytest.raises(RunError, match=message) as info:
        load_run(run_copy)
    assert "\n" not in str(info.value)


def test_bad_config(run_copy):
    (run_copy / "config.json").write_text("{not json")
    with pytest.raises(RunError, match="config.json: not readable JSON"):
        load_run(run_copy)
    (run_copy / "config.json").write_text(json.dumps({"data": {}}))
    with pytest.raises(RunError, match='config.json: missing "model"'):
        load_run(run_copy)


def test_history_csv_fallback_and_bad_history(run_copy, trained):
    (run_copy / "history.parquet").unlink()
    trained.history.write_csv(run_copy / "history.csv")
    assert load_run(run_copy).history.equals(trained.history)
    (run_copy / "history.csv").write_text("model,epoch,dataset,accuracy\nsource,1,source_val,7\n")
    with pytest.raises(RunError, match=r"history.csv: row 0: accuracy = 7.0"):
        load_run(run_copy)


def test_checkpoint_checks(run_copy):
    shutil.copy(run_copy / "source.pt", run_copy / "target.pt")
    run = load_run(run_copy)
    with pytest.raises(RunError, match="target.pt: checksum differs"):
        run.build_models()
    source, target = run.build_models(verify=False)
    assert source.classifier.fc8.out_features == 3
    config = json.loads((run_copy / "config.json").read_text())
    config["model"]["kwargs"]["hidden"] = [16, 8]
    (run_copy / "config.json").write_text(json.dumps(config))
    with pytest.raises(ModelError, match="source.pt: checkpoint does not fit"):
        load_run(run_copy).build_models()
