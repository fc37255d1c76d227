"""`analyze` end to end on a tiny digits run: the bundle's content, resume after a crash, bad input."""
import dataclasses
import json
import re
import shutil

import numpy as np
import polars as pl
import pytest
import torch

from tlexplorer import pipeline
from tlexplorer.bundle import open_bundle
from tlexplorer.errors import RunError
from tlexplorer.pipeline import AnalyzeOptions, analyze

TINY = AnalyzeOptions(per_class=4, n_steps=4, cv=2, chunk_size=16, batch_size=32, seed=0)


@pytest.fixture(scope="module")
def tiny_bundle(tiny_run, tmp_path_factory):
    return analyze(tiny_run, tmp_path_factory.mktemp("b") / "bundle", options=TINY, progress=False)


def test_bundle_has_every_view_s_data(tiny_bundle):
    bundle = open_bundle(tiny_bundle)
    manifest = bundle.manifest
    assert manifest["classes"] == [str(d) for d in range(10)]
    assert [l["name"] for l in manifest["layers"]][0] == "features.conv1" and len(manifest["layers"]) == 7
    instances = bundle.table("instances")
    assert len(instances) == bundle.array("tsne").shape[0] == bundle.array("thumbnails").shape[0]
    assert set(instances["role"].unique()) == {"source", "target"}
    rows_t, rows_s = bundle.array("rows_target"), bundle.array("rows_source")
    assert len(rows_t) == len(rows_s) == 40  # per_class=4, 10 classes
    for combo, rows in (("target_on_target", rows_t), ("source_on_target", rows_t), ("target_on_source", rows_s)):
        for layer in manifest["layers"]:
            assert bundle.array(f"conductance/{combo}/{layer['name']}").shape == (len(rows), layer["neurons"])
    neurons = bundle.table("neurons")
    important = neurons.filter(pl.col("important")).group_by("model", "class", "layer").len()
    assert important["len"].min() >= 1
    weights = bundle.table("important_weights")
    assert set(weights["model"].unique()) == {"source", "target"}
    assert weights.filter(pl.col("model") == "target")["inherited"].null_count() == 0
    disc = bundle.table("discriminability_summary")
    assert "__all__" in disc["scope"].to_list()
    assert len(bundle.table("layer_metrics")) == 7
    confusion = bundle.table("confusion")
    assert len(confusion) == 10


def test_transferability_score_is_recomputed_from_the_run_s_history(tiny_run, tiny_bundle):
    """Paper §5.1 by hand from the run directory's history file, not from the manifest's fields."""
    best = {}
    for record in pl.read_parquet(tiny_run / "history.parquet").to_dicts():
        key = (record["model"], record["dataset"])
        if record["accuracy"] == record["accuracy"]:  # NaN epochs do not count
            best[key] = max(best.get(key, -1.0), record["accuracy"])
    expected = best[("target", "target_val")] - best[("source", "target_val")]
    assert open_bundle(tiny_bundle).manifest["scores"]["transferability_score"] == pytest.approx(expected, abs=1e-12)


def _images_of_rows(run_dir, rows):
    """The images of bundle rows: rows number the run's splits concatenated in their order."""
    from tlexplorer.training import load_run

    splits = load_run(run_dir).data().splits()
    starts = np.cumsum([0] + [len(s) for s in splits])
    images = []
    for row in rows:
        which = int(np.searchsorted(starts, row, side="right") - 1)
        images.append(splits[which][int(row - starts[which])][0])
    return torch.stack(images)


def _top_k_counts(contributions: np.ndarray, k: int) -> list:
    """B2-B3 by hand: per instance its k largest contributions (ties: lower flat index), counted over
    the instances; the k most counted weights (ties: lower flat index) as (n1, n2, count)."""
    n, n1, n2 = contributions.shape
    counts = np.zeros(n1 * n2, dtype=np.int64)
    for flat in contributions.reshape(n, -1):
        counts[np.argsort(-flat, kind="stable")[:k]] += 1
    top = np.argsort(-counts, kind="stable")[:k]
    return [(int(i // n2), int(i % n2), int(counts[i])) for i in top]


def test_important_weights_and_inherited_flags_of_one_class_are_recomputed(tiny_run, tiny_bundle):
    """Class "3", the first pair: the weights from the bundle's models on the class's instances, the
    inherited flags from the bundle's stored conductance, both by hand."""
    from tlexplorer.analysis.contributions import weight_contributions
    from tlexplorer.bundled import bundle_models

    bundle = open_bundle(tiny_bundle)
    pair = bundle.manifest["layer_pairs"][0]
    layer_from, layer_to = pair["from"], pair["to"]
    rows_t = bundle.array("rows_target")
    labels = bundle.table("instances")["label"].to_numpy()[rows_t]
    positions = np.flatnonzero(labels == 3)
    images = _images_of_rows(tiny_run, rows_t[positions])
    models = bundle_models(bundle, device="cpu")
    table = bundle.table("important_weights").filter(
        (pl.col("class") == "3") & (pl.col("layer_from") == layer_from))
    mine = {}
    for model in ("source", "target"):
        expected = table.filter(pl.col("model") == model).sort("rank")
        contributions = weight_contributions(models[model], layer_from, layer_to, images, device="cpu")
        mine[model] = _top_k_counts(contributions.numpy(), len(expected))
        assert mine[model] == list(zip(expected["n1"], expected["n2"], expected["count"]))

    def cosine(a, b):  # (instances, source neurons), (instances, target neurons) -> (source, target)
        a = a / np.where(np.linalg.norm(a, axis=0) == 0, 1, np.linalg.norm(a, axis=0))
        b = b / np.where(np.linalg.norm(b, axis=0) == 0, 1, np.linalg.norm(b, axis=0))
        return a.T @ b

    def match(layer):  # each target neuron's most similar source neuron (None: all similarities 0)
        s = cosine(*(np.asarray(bundle.array(f"conductance/{m}_on_target/{layer}"), np.float64)[positions]
                     for m in ("source", "target")))
        return [int(np.argmax(col)) if np.any(col != 0) else None for col in s.T]

    m1, m2 = match(layer_from), match(layer_to)
    source_set = {(a, b) for a, b, _ in mine["source"]}
    expected = [m1[a] is not None and m2[b] is not None and (m1[a], m2[b]) in source_set
                for a, b, _ in mine["target"]]
    target = table.filter(pl.col("model") == "target").sort("rank")
    assert target["inherited"].to_list() == expected
    assert target["n1_match"].to_list() == [m1[a] for a, _, _ in mine["target"]]


def test_t_sne_beside_the_model_passes_gives_the_same_layout(tiny_run, tiny_bundle, tmp_path, monkeypatch):
    monkeypatch.setattr(pipeline, "BACKGROUND_TSNE_MIN_POINTS", 0)
    monkeypatch.setattr(pipeline, "available_cpus", lambda: 2)
    out = analyze(tiny_run, tmp_path / "bundle", options=TINY, progress=False)
    bundle = open_bundle(out)
    np.testing.assert_array_equal(bundle.array("tsne"), open_bundle(tiny_bundle).array("tsne"))
    assert any(entry["name"].startswith("t-SNE projection (1 thread(s)") for entry in bundle.manifest["background"])
    assert pipeline.torch.get_num_threads() >= 1


def test_manifest_records_each_stage_s_seconds_and_peak_memory(tiny_bundle):
    m = open_bundle(tiny_bundle).manifest
    stages = {stage["name"]: stage for stage in m["stages"]}
    order = [stage["name"] for stage in m["stages"]]
    assert order.index("predictions and embedding") < order.index("conductance and activations") < order.index("tables")
    for name in ("conductance and activations", "t-SNE projection", "layer metrics", "domain discriminability"):
        assert stages[name]["seconds"] >= 0 and stages[name]["peak_rss_bytes"] > 0
        assert 0 < stages[name]["start_rss_bytes"] <= stages[name]["peak_rss_bytes"]  # Linux
        assert stages[name]["peak_device_bytes"] is None  # the CPU
    assert m["peak_rss_scope"] in ("stage", "process")


def test_every_focus_class_has_its_class_layout_in_the_bundle(tiny_bundle):
    """The instance view's layout of each focus class with its most confused class is laid out
    by analyze (a class switch in the app computes none)."""
    from tlexplorer import class_layouts
    from tlexplorer.bundle import open_bundle

    bundle = open_bundle(tiny_bundle)
    names = bundle.table("instances")["class_name"].cast(pl.String).to_numpy()
    sets = class_layouts.default_class_sets(bundle.table("confusion"), bundle.classes)
    wanted = [s for s in sets if class_layouts.wants_own_layout(
        len(class_layouts.class_rows(names, s)), len(s), len(bundle.classes))]
    assert wanted
    for chosen in wanted:
        rows = class_layouts.class_rows(names, chosen)
        assert class_layouts.cached_layout(bundle, chosen, len(rows)) is not None, chosen


def test_discriminability_stores_what_the_active_projection_needs(tiny_bundle):
    b = open_bundle(tiny_bundle)
    base = "discriminability/__all__"
    z = np.asarray(b.array(f"{base}/standardized"), np.float64)
    comp, origin = b.array(f"{base}/components"), b.array(f"{base}/origin")
    assert z.shape[1] == comp.shape[0] == b.array(f"{base}/axes").shape[0]
    np.testing.assert_allclose(z @ comp + origin, b.array(f"{base}/projection"), atol=1e-4)


def test_manifest_names_layer_pairs_and_completeness_exemptions(tiny_bundle):
    m = open_bundle(tiny_bundle).manifest
    names = [l["name"] for l in m["layers"]]
    assert [(p["from"], p["to"]) for p in m["layer_pairs"]] == list(zip(names[:-1], names[1:]))
    assert all(p["direct"] and p["reason"] == "" for p in m["layer_pairs"])  # a plain CNN
    assert m["completeness_exempt"] == {}


def test_neurons_table_matches_rank_aggregation(tiny_bundle):
    from scipy.stats import rankdata

    bundle = open_bundle(tiny_bundle)
    rows_t = bundle.array("rows_target")
    labels = bundle.table("instances")["label"].to_numpy()[rows_t]
    conductance = np.asarray(bundle.array("conductance/target_on_target/features.conv2"))[labels == 3]
    expected = rankdata(conductance, axis=1).sum(axis=0)
    table = bundle.table("neurons").filter((pl.col("model") == "target") & (pl.col("class") == "3")
                                           & (pl.col("layer") == "features.conv2")).sort("neuron")
    np.testing.assert_allclose(table["score"].to_numpy(), expected)


def test_interrupted_analysis_resumes_to_the_same_bundle(tiny_run, tiny_bundle, tmp_path, monkeypatch):
    out = tmp_path / "bundle"

    def crash(*args, **kwargs):
        raise KeyboardInterrupt

    monkeypatch.setattr(pipeline, "_stage_weights", crash)
    with pytest.raises(KeyboardInterrupt):
        analyze(tiny_run, out, options=TINY, progress=False)
    assert not out.exists() and (tmp_path / "bundle.partial").is_dir()
    monkeypatch.undo()
    calls = []
    original = pipeline._stage_conductance

    def counting(ctx):
        calls.append(ctx.writer.has_array("conductance/target_on_target/features.conv1"))
        return original(ctx)

    monkeypatch.setattr(pipeline, "_stage_conductance", counting)
    analyze(tiny_run, out, options=TINY, progress=False)
    assert calls == [True]  # the conductance finished before the crash was not recomputed
    resumed, reference = open_bundle(out).manifest, open_bundle(tiny_bundle).manifest
    for manifest in (resumed, reference):
        manifest.pop("created")
        manifest["inputs"].pop("run_dir", None)
        for measured in ("stages", "background", "peak_rss_scope"):  # timings, not content
            manifest.pop(measured)
    assert resumed["files"] == reference["files"]
    assert resumed == reference


def _same_content(path, reference) -> None:
    """Two bundles hold the same files, byte for byte (their manifests' hashes agree)."""
    assert open_bundle(path).manifest["files"] == open_bundle(reference).manifest["files"]


def test_interrupted_forward_passes_resume_from_their_chunks(tiny_run, tiny_bundle, tmp_path, monkeypatch):
    # 16-row chunks, half a batch of 32: each chunk runs in the batches of one pass over all rows
    monkeypatch.setattr(pipeline, "FORWARD_CHUNKS", 1)
    out, computed, crash_at = tmp_path / "bundle", [], set()
    original = pipeline._forward

    def counted(ctx, model_name, rows, outputs, **what):
        compute, kind = original(ctx, model_name, rows, outputs, **what), "layers" in what and "activations"

        def chunk(start, stop):
            call = (kind or "predictions", model_name, len(rows), start)
            if call in crash_at:
                raise KeyboardInterrupt
            computed.append(call)
            return compute(start, stop)
        return chunk

    monkeypatch.setattr(pipeline, "_forward", counted)
    n, rows = 1877, 40  # instances; attributed rows per domain
    for crash in [("predictions", "target", n, 5 * 16), ("activations", "source", rows, 2 * 16), None]:
        computed.clear()
        crash_at = {crash} - {None}
        if crash is None:
            analyze(tiny_run, out, options=TINY, progress=False)
        else:
            with pytest.raises(KeyboardInterrupt):
                analyze(tiny_run, out, options=TINY, progress=False)
        if crash == ("activations", "source", rows, 2 * 16):  # resumed at the target model's 6th chunk
            assert not any(c[:2] == ("predictions", "source") for c in computed)
            assert [c[3] for c in computed if c[:2] == ("predictions", "target")] == list(range(5 * 16, n, 16))
        if crash is None:  # resumed at the source_on_target activations' 3rd chunk, the one combo that fails
            assert [c for c in computed if c[0] == "predictions"] == []
            assert [c[3] for c in computed if c[:2] == ("activations", "source")] == [32, 0, 16, 32]
    _same_content(out, tiny_bundle)


def test_run_dir_without_models_is_clear_error(tiny_run, tmp_path):
    broken = tmp_path / "run"
    shutil.copytree(tiny_run, broken)
    (broken / "target.pt").unlink()
    with pytest.raises(RunError, match="target.pt"):
        analyze(broken, tmp_path / "b", options=TINY, progress=False)
    assert not (tmp_path / "b").exists()


def test_demo_reuses_a_bundle_only_for_the_same_checkpoints(tiny_run, tiny_bundle, tmp_path):
    from tlexplorer.demo import _bundle_matches_run

    assert _bundle_matches_run(tiny_bundle, tiny_run)
    retrained = tmp_path / "run"
    shutil.copytree(tiny_run, retrained)
    config = json.loads((retrained / "config.json").read_text())
    config["checkpoints"]["target"] = "0" * 64
    (retrained / "config.json").write_text(json.dumps(config))
    assert not _bundle_matches_run(tiny_bundle, retrained)
    assert not _bundle_matches_run(tmp_path / "nothing", tiny_run)


def test_class_without_target_instances_is_skipped_with_a_warning(tiny_run, tmp_path, monkeypatch):
    from tlexplorer.datasets import ArrayDomainSplit
    from tlexplorer.training.runs import Run

    original = Run.data

    def without_nines(self):
        data = original(self)
        for name in ("target_train", "target_val"):
            split = getattr(data, name)
            keep = split.labels != 9
            setattr(data, name, ArrayDomainSplit(split.images[keep], split.labels[keep], domain=split.domain,
                                                 role=split.role, split=split.split, classes=split.classes,
                                                 indices=split.indices[keep]))
        return data

    monkeypatch.setattr(Run, "data", without_nines)
    bundle = open_bundle(analyze(tiny_run, tmp_path / "b", options=TINY, progress=False))
    assert any("'9' has no target instances" in w for w in bundle.manifest["warnings"])
    confusion = bundle.table("confusion").filter(pl.col("class") == "9")
    assert confusion["n"].item() == 0 and confusion["target_accuracy"].item() is None
    assert "9" not in bundle.table("neurons")["class"].to_list()
    assert "9" not in bundle.table("discriminability_summary")["scope"].to_list()


def test_progress_moves_within_a_single_chunk_and_ends_with_stage_times(tiny_run, tmp_path, monkeypatch,
                                                                         capfd):
    monkeypatch.setenv("TQDM_MININTERVAL", "0")  # every update drawn, however fast
    # one chunk of all 40 instances; each path of n_steps + 1 = 5 points takes three passes (2, 2, 1)
    options = dataclasses.replace(TINY, chunk_size=1000, internal_batch_size=2)
    analyze(tiny_run, tmp_path / "b", options=options, progress=True)
    out, err = capfd.readouterr()
    shown = [float(n) for n in re.findall(r"conductance target_on_target: .*?\| ([\d.]+)/40 ",
                                          err.replace("\r", "\n"))]
    assert any(0 < n < 40 for n in shown)  # moved within the chunk ...
    assert any(not n.is_integer() for n in shown)  # ... and within one instance's path
    assert shown[-1] == 40
    table = out[out.index("stage "):].splitlines()
    stages = [re.split(r"\s{2,}", line)[0] for line in table[1:] if not line.startswith("warning: ")]
    assert stages[:3] == ["run, data and models", "instances and thumbnails", "predictions and embedding"]
    assert "conductance and activations" in stages and stages[-1] == "total"
    warnings = [line for line in table if line.startswith("warning: ")]
    assert len(warnings) == len(open_bundle(tmp_path / "b").manifest["warnings"])


def test_feature_vis_on_a_finished_bundle_adds_only_the_images(tiny_run, tiny_bundle, tmp_path, monkeypatch):
    out = tmp_path / "bundle"
    shutil.copytree(tiny_bundle, out)
    stages = [name for name in dir(pipeline) if name.startswith("_stage_")]
    for name in stages:  # no stage of the analysis runs again
        monkeypatch.setattr(pipeline, name, lambda *a, name=name, **k: pytest.fail(f"{name} ran again"))
    from tlexplorer.analysis import featurevis

    asked, original = [], featurevis.visualize_neurons

    def counting(model, layer, neurons, **kwargs):
        asked.extend(neurons)
        return original(model, layer, neurons, **{**kwargs, "steps": 2})

    monkeypatch.setattr(featurevis, "visualize_neurons", counting)
    options = dataclasses.replace(TINY, feature_vis=True)
    assert analyze(tiny_run, out, options=options, progress=False) == out
    bundle = open_bundle(out)
    important = bundle.table("neurons").filter(pl.col("important"))
    expected = important.select("model", "layer", "neuron").unique()
    assert len(asked) == len(expected)
    for model, layer, neuron in expected.iter_rows():
        image = bundle.cache_array(f"featurevis/{model}/{layer}/{neuron}")
        assert image is not None and image.shape == (32, 32, 3) and image.dtype == np.uint8
    # resumable: only what is missing is made again
    (out / "cache" / "featurevis" / "target" / "features.conv1").rename(tmp_path / "gone")
    asked.clear()
    analyze(tiny_run, out, options=options, progress=False)
    assert len(asked) == len(expected.filter((pl.col("model") == "target") & (pl.col("layer") == "features.conv1")))
    assert open_bundle(out).manifest == bundle.manifest  # the analysis itself is untouched
