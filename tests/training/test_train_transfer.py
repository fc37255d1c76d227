import json

import polars as pl
import pytest
import torch

import tlexplorer.training.trainer as trainer_mod
from tlexplorer.errors import ModelError, RunError
from tlexplorer.models import file_sha256, save_checkpoint
from tlexplorer.training import ConfigError, TrainOptions, load_run, stratified_subsample, train_transfer

def files(path):
    return sorted(p.name for p in path.iterdir()) if path.exists() else []


def test_run_dir_content(trained, fast):
    out = trained.run_dir
    assert files(out) == ["config.json", "history.parquet", "source.pt", "target.pt"]
    h = trained.history
    assert h.height == 2 * 2 * 4
    assert set(h["dataset"]) == {"source_train", "target_train", "source_val", "target_val"}
    assert h.group_by("model").agg(pl.col("epoch").max()).sort("model")["epoch"].to_list() == [2, 2]
    config = json.loads((out / "config.json").read_text())
    assert config["model"] == {"name": "digits-alexnet", "num_classes": 3, "kwargs": trained.config["model"]["kwargs"]}
    assert config["training"] == TrainOptions(**fast).to_dict() and config["seed"] == 0
    assert config["checkpoints"] == {"source": file_sha256(out / "source.pt"), "target": file_sha256(out / "target.pt")}
    assert set(config["versions"]) >= {"python", "torch", "torchvision", "tlexplorer"}
    assert set(config["data_hashes"]) == {"source_train", "source_val", "target_train", "target_val"}
    sub = config["eval_subsample"]["splits"]
    assert sub["source_train"]["n"] == 15 and sub["source_train"]["of"] == 48
    assert len(sub["source_train"]["positions"]) == 15 and sub["source_val"] == {"n": 12, "of": 12}
    assert config["source_init"]["trained"] is True and config["warnings"] == []
    text = trained.summary()
    assert "source model (last epoch): source_train" in text and "transferability score" in text
    assert all(p.is_contiguous() for p in trained.target_model.parameters())


def test_load_run_round_trip(trained):
    run = load_run(trained.run_dir)
    assert run.history.equals(trained.history)
    source, target = run.build_models()
    for loaded, original in ((source, trained.source_model), (target, trained.target_model)):
        assert not loaded.training
        for (k, a), b in zip(loaded.state_dict().items(), original.state_dict().values()):
            assert torch.equal(a, b.cpu()), k
    with pytest.raises(RunError, match="no data spec recorded"):
        run.data()


def test_deterministic_and_rng_untouched(trained, tmp_path, tiny_data, tiny_model, fast):
    torch.manual_seed(123)
    before = torch.get_rng_state()
    again = train_transfer(tiny_data, tiny_model, TrainOptions(**fast), tmp_path / "again", progress=False)
    assert torch.equal(torch.get_rng_state(), before)
    assert again.history.equals(trained.history)
    assert again.config["checkpoints"] == trained.config["checkpoints"]


def test_interrupt_leaves_no_files(tmp_path, tiny_data, tiny_model, fast, capsys):
    events = []

    def stop(event):
        events.append(event)
        assert torch.get_num_threads() == 1
        if event["model"] == "target":
            raise KeyboardInterrupt
    out = tmp_path / "run"
    torch.set_num_threads(2)
    with pytest.raises(KeyboardInterrupt):
        train_transfer(tiny_data, tiny_model, TrainOptions(**fast, num_threads=1), out, progress=True,
                       callback=stop)
    assert torch.get_num_threads() == 2
    torch.set_num_threads(1)
    assert files(out) == []
    assert [(e["model"], e["epoch"]) for e in events] == [("source", 1), ("source", 2), ("target", 1)]
    assert set(events[0]["metrics"]) == {"source_train", "target_train", "source_val", "target_val"}
    err = capsys.readouterr().err
    assert "source 1/2" in err and "target 1/2" in err and "val=" in err
    with pytest.raises(RunError, match="config.json: missing"):
        load_run(tmp_path)


def test_interrupt_while_writing(tmp_path, tiny_data, tiny_model, monkeypatch, fast):
    def broken(df, path):
        raise KeyboardInterrupt
    monkeypatch.setattr(trainer_mod, "write_history", broken)
    out = tmp_path / "run"
    with pytest.raises(KeyboardInterrupt):
        train_transfer(tiny_data, tiny_model, TrainOptions(**fast), out, progress=False)
    assert "config.json" not in files(out) and not [n for n in files(out) if n.endswith(".tmp")]


def test_existing_run_needs_overwrite(trained, tmp_path, tiny_data, tiny_model, fast):
    out = tmp_path / "run"
    out.mkdir()
    (out / "config.json").write_text("{}")
    with pytest.raises(RunError, match="already holds a finished run"):
        train_transfer(tiny_data, tiny_model, TrainOptions(**fast), out, progress=False)
    result = train_transfer(tiny_data, tiny_model, TrainOptions(**{**fast, "epochs_target": 1}), out,
                            progress=False, overwrite=True)
    assert load_run(out).history.equals(result.history)


def test_freeze_and_head_lr(trained, tmp_path, tiny_data, tiny_model, fast):
    opts = TrainOptions(**{**fast, "epochs_source": 1}, freeze=["features.conv1", "features.conv2"], lr_head=1e-2)
    result = train_transfer(tiny_data, tiny_model, opts, tmp_path / "run", progress=False)
    src, tgt = result.source_model.state_dict(), result.target_model.state_dict()
    for key in src:
        frozen = key.startswith(("features.conv1.", "features.conv2."))
        assert torch.equal(src[key], tgt[key]) == frozen, key
    events = []
    with pytest.raises(ConfigError, match="'features.conv9' matches no parameter of DigitsAlexNet; "
                                          "modules with parameters: features.conv1, features.conv2"):
        train_transfer(tiny_data, tiny_model, TrainOptions(**fast, freeze=["features.conv9"]),
                       tmp_path / "bad", progress=False, callback=events.append)
    assert events == []  # checked before the source model trains


def test_source_checkpoint(trained, tmp_path, tiny_data, tiny_model, fast):
    ckpt = trained.run_dir / "source.pt"
    spec = {**tiny_model, "source_checkpoint": str(ckpt)}
    result = train_transfer(tiny_data, spec, TrainOptions(**fast), tmp_path / "run", progress=False)
    src_rows = result.history.filter(pl.col("model") == "source")
    assert src_rows["epoch"].to_list() == [1, 1, 1, 1]
    last = trained.history.filter((pl.col("model") == "source") & (pl.col("epoch") == 2))
    assert src_rows["accuracy"].to_list() == last["accuracy"].to_list()
    loaded, _ = load_run(result.run_dir).build_models()
    for a, b in zip(loaded.state_dict().values(), trained.source_model.state_dict().values()):
        assert torch.equal(a, b)
    assert result.config["checkpoints"]["source"] == file_sha256(ckpt)  # same weights, same bytes
    assert result.config["source_init"]["checkpoint_sha256"] == file_sha256(ckpt)


def test_source_checkpoint_with_other_head(tmp_path, tiny_data, tiny_model, fast):
    from tlexplorer.models import build_model

    other = build_model("digits-alexnet", 5, **tiny_model["kwargs"])
    save_checkpoint(other, tmp_path / "five.pt")
    spec = {**tiny_model, "source_checkpoint": str(tmp_path / "five.pt")}
    result = train_transfer(tiny_data, spec, TrainOptions(**fast), tmp_path / "run", progress=False)
    assert result.config["model"]["num_classes"] == 5
    assert result.history["model"].unique().to_list() == ["target"] and result.config["warnings"]
    source, target = load_run(tmp_path / "run").build_models()
    assert source.classifier.fc8.out_features == 5 and target.classifier.fc8.out_features == 3
    with pytest.raises(ModelError, match="source checkpoint not found"):
        train_transfer(tiny_data, {**tiny_model, "source_checkpoint": str(tmp_path / "x.pt")}, fast,
                       tmp_path / "r2", progress=False)


def test_num_classes_mismatch_and_bad_model(tmp_path, tiny_data, tiny_model, fast):
    with pytest.raises(ConfigError, match="num_classes=4 but the data has 3 classes"):
        train_transfer(tiny_data, {**tiny_model, "num_classes": 4}, fast, tmp_path / "r", progress=False)
    with pytest.raises(ModelError, match="unknown model"):
        train_transfer(tiny_data, {"name": "lenet"}, fast, tmp_path / "r", progress=False)
    assert files(tmp_path / "r") == []


def test_stratified_subsample():
    labels = [0] * 10 + [1] * 3 + [2] * 7
    pos = stratified_subsample(labels, 4, 0)
    assert sorted(pos.tolist()) == pos.tolist() and len(pos) == 4 + 3 + 4
    assert (stratified_subsample(labels, 4, 0) == pos).all()
    assert stratified_subsample(labels, 10, 0) is None and stratified_subsample(labels, None, 0) is None


def test_digits_scenario_run_rebuilds_its_data(tmp_path, tiny_model, fast):
    from tlexplorer.scenarios.digits import load_digits_scenario

    data = load_digits_scenario(per_class=6, data_dir=tmp_path / "data", progress=False)
    opts = TrainOptions(**{**fast, "epochs_source": 1, "epochs_target": 1, "batch_size": 128})
    result = train_transfer(data, tiny_model, opts, tmp_path / "run", progress=False)
    run = load_run(result.run_dir)
    assert run.config["data"]["kind"] == "scenario"
    assert run.data().hashes() == run.config["data_hashes"] == data.hashes()


def test_threads_follow_idle_cores(tmp_path, tiny_data, tiny_model, fast, monkeypatch):
    seen = []
    monkeypatch.setattr(trainer_mod.os, "getloadavg", lambda: (trainer_mod.os.cpu_count() + 3.0, 0.0, 0.0))
    torch.set_num_threads(2)
    try:
        result = train_transfer(tiny_data, tiny_model, TrainOptions(**{**fast, "epochs_target": 1}), tmp_path / "r",
                                progress=False, callback=lambda e: seen.append(torch.get_num_threads()))
        assert set(seen) == {1} and result.config["num_threads"] == 1
        assert torch.get_num_threads() == 2
        monkeypatch.setattr(trainer_mod.os, "getloadavg", lambda: (0.0, 0.0, 0.0))
        assert trainer_mod.idle_threads(2) == min(2, trainer_mod.os.cpu_count())
    finally:
        torch.set_num_threads(1)


def test_streamed_and_preloaded_data_train_alike(trained, tmp_path, tiny_data, tiny_model, fast, monkeypatch):
    """A dataset read item by item through a DataLoader gives the same run as the in-memory fast path."""
    from tlexplorer.datasets import ArrayDomainSplit

    class ItemByItem(ArrayDomainSplit):
        def __getitem__(self, i):
            return super().__getitem__(i)

    data = tiny_data
    for name in ("source_train", "source_val", "target_train", "target_val"):
        s = getattr(data, name)
        setattr(data, name, ItemByItem(s.images, s.labels, domain=s.domain, role=s.role, split=s.split,
                                       classes=s.classes))
    for limit in (0, trainer_mod.PRELOAD_MAX_BYTES):  # streamed every epoch, then preloaded via a DataLoader
        monkeypatch.setattr(trainer_mod, "PRELOAD_MAX_BYTES", limit)
        result = train_transfer(data, tiny_model, TrainOptions(**fast), tmp_path / f"r{limit}", progress=False)
        assert result.history.equals(trained.history)
        assert result.config["checkpoints"] == trained.config["checkpoints"]
