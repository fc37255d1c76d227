"""The per-class layouts laid out once per bundle (tlexplorer/class_layouts.py)."""
from __future__ import annotations

import shutil
import sys
from pathlib import Path

import numpy as np
import polars as pl
import pytest

sys.path.insert(0, str(Path(__file__).parent / "app"))

import synthetic_bundle  # noqa: E402

from tlexplorer import class_layouts  # noqa: E402


def _confusion(entries: dict) -> pl.DataFrame:
    return pl.DataFrame({
        "class": list(entries),
        "target_misclassified": [[{"class": c, "count": n} for c, n in v]
                                 for v in entries.values()]},
        schema={"class": pl.String, "target_misclassified": pl.List(
            pl.Struct({"class": pl.String, "count": pl.Int64}))})


def test_default_sets_pair_each_class_with_its_most_confused():
    conf = _confusion({"a": [("b", 3), ("c", 1)], "b": [("a", 2)], "c": []})
    assert class_layouts.most_confused(conf, "a") == "b"
    assert class_layouts.most_confused(conf, "c") is None
    assert class_layouts.most_confused(conf, "zzz") is None
    assert class_layouts.focus_classes(conf, "c") == ["c"]
    # {a, b} is the set of both a and b: laid out once
    assert class_layouts.default_class_sets(conf, ["a", "b", "c"]) == [("a", "b"), ("c",)]


def test_cache_names_are_safe_and_depend_on_the_set_not_its_order():
    odd = ["../../etc", "<img src=x>", "a/b"]
    name = class_layouts.cache_name(odd)
    assert name == class_layouts.cache_name(list(reversed(odd)))
    assert name.startswith("class_layouts/") and "/" not in name[len("class_layouts/"):]
    assert ".." not in name and name != class_layouts.cache_name(odd[:2])


def test_class_rows_in_table_order():
    names = np.array(["b", "a", "c", "a", "b"])
    assert class_layouts.class_rows(names, ["a", "b"]).tolist() == [0, 1, 3, 4]
    assert class_layouts.wants_own_layout(10, 2, 3)
    assert not class_layouts.wants_own_layout(10, 3, 3)  # all classes: the global layout
    assert not class_layouts.wants_own_layout(4, 1, 3)  # too few to lay out
    assert not class_layouts.wants_own_layout(class_layouts.MAX_ROWS + 1, 1, 3)


@pytest.fixture()
def fresh_bundle(tmp_path):
    path = synthetic_bundle.make_synthetic_bundle(tmp_path / "bundle", per_class=20, seed=1)
    return synthetic_bundle.open_test_bundle(path)


def test_filled_layouts_are_what_the_view_would_compute(fresh_bundle, monkeypatch):
    bundle = fresh_bundle
    sets = class_layouts.default_class_sets(bundle.table("confusion"), bundle.classes)
    assert class_layouts.fill_default_layouts(bundle, progress=False) == len(sets)
    assert class_layouts.fill_default_layouts(bundle, progress=False) == 0  # resumable: all there
    names = bundle.table("instances")["class_name"].cast(pl.String).to_numpy()
    chosen = sets[0]
    rows = class_layouts.class_rows(names, chosen)
    stored = class_layouts.cached_layout(bundle, chosen, len(rows))
    np.testing.assert_array_equal(stored, class_layouts.lay_out(bundle, rows))
    assert class_layouts.cached_layout(bundle, chosen, len(rows) + 1) is None  # another size

    # the app then lays out nothing for a focus class: no job, the stored positions at once
    from tlexplorer.app.state import Session
    from tlexplorer.app.views import instances

    instances._CLASS_LAYOUTS.clear()
    monkeypatch.setattr(class_layouts, "lay_out", lambda *a, **k: pytest.fail("laid out again"))
    session = Session(bundle)
    for cls in bundle.classes:
        session.focus_class = cls
        view = instances.InstanceView(session=session)
        assert view._class_job is None and view.reprojected
        shown = class_layouts.focus_classes(bundle.table("confusion"), cls)
        rows = class_layouts.class_rows(names, shown)
        np.testing.assert_array_equal(view._override[0], rows)


def test_a_damaged_entry_is_laid_out_again(fresh_bundle):
    bundle = fresh_bundle
    class_layouts.fill_default_layouts(bundle, progress=False)
    cache = Path(bundle.path) / "cache" / "class_layouts"
    victim = sorted(cache.iterdir())[0]
    victim.write_bytes(b"not an array")
    assert class_layouts.fill_default_layouts(bundle, progress=False) == 1
    shutil.rmtree(cache)


def test_lay_out_reads_only_its_rows_and_equals_the_whole_array_call(fresh_bundle):
    from tlexplorer.analysis.embedding import project_subset

    bundle = fresh_bundle
    names = bundle.table("instances")["class_name"].cast(pl.String).to_numpy()
    rows = class_layouts.class_rows(names, bundle.classes[:2])
    whole = project_subset(np.asarray(bundle.array("embedding")), np.asarray(bundle.array("tsne")), rows,
                           n_jobs=1, **class_layouts.SETTINGS)
    np.testing.assert_array_equal(class_layouts.lay_out(bundle, rows), whole)


def test_layout_workers_run_blas_and_openmp_on_one_thread_each(fresh_bundle, monkeypatch):
    """Two workers each limiting BLAS around an OpenMP loop (scikit-learn's neighbour search) undo
    each other's limit; held at one thread for the whole pool, OpenBLAS never warns of an OpenMP loop."""
    from threadpoolctl import threadpool_info

    def threads():
        return {(info["user_api"], info["num_threads"]) for info in threadpool_info()}

    seen = []
    monkeypatch.setattr(class_layouts, "lay_out", lambda bundle, rows: (
        seen.append(threads()), np.zeros((len(rows), 2), np.float32))[1])
    before = threads()
    assert class_layouts.fill_default_layouts(fresh_bundle, progress=False, workers=2) > 0
    assert seen and all(s <= {("blas", 1), ("openmp", 1)} for s in seen)
    assert threads() == before  # restored after the pool
