"""Session state: defaults from the bundle, independence of sessions, views following the session,
shared read-only loading and the background job runner."""
from __future__ import annotations

import threading

import numpy as np
import pytest

from tlexplorer.app import jobs, loading
from tlexplorer.app.state import ALL_SCOPE, Session, default_focus_class, most_confused_with


def _gap_order(bundle):
    conf = bundle.table("confusion")
    gap = (conf["target_accuracy"] - conf["source_accuracy"]).to_list()
    return [c for _g, c in sorted(zip(gap, conf["class"].to_list()), reverse=True)]


def test_session_defaults_from_bundle(synth_bundle):
    s = Session(synth_bundle)
    assert s.bundle is synth_bundle
    assert s.param.focus_class.objects == ["0", "1", "2"]
    assert s.param.feature_scope.objects == [ALL_SCOPE, "0", "1", "2"]
    assert s.layers == ["features.conv1", "features.conv2", "classifier.fc6"]
    # focus: the class with the largest target - source accuracy gap
    assert s.focus_class == _gap_order(synth_bundle)[0] == default_focus_class(synth_bundle)
    other = most_confused_with(synth_bundle, s.focus_class)
    assert other is not None and other != s.focus_class
    assert s.selected_classes == [s.focus_class, other]
    assert s.feature_scope == s.focus_class
    assert s.selected_neuron is None and s.selected_instances == [] and not s.busy
    with pytest.raises(TypeError):
        s.bundle = None  # constant: a session never changes bundle (a new one is made)


def test_explicit_values_win(synth_bundle):
    s = Session(synth_bundle, focus_class="0", selected_classes=["1"], layers=["features.conv2"])
    assert (s.focus_class, s.selected_classes, s.layers) == ("0", ["1"], ["features.conv2"])
    with pytest.raises(ValueError):
        Session(synth_bundle, focus_class="no such class")


def test_focus_class_drives_instance_selection_and_feature_scope(synth_session):
    s = synth_session
    s.focus_class = "0"
    assert s.selected_classes[0] == "0" and s.feature_scope == "0"
    s.feature_scope = ALL_SCOPE
    s.focus_class = "1"
    assert s.selected_classes[0] == "1" and s.feature_scope == ALL_SCOPE


def test_two_sessions_are_independent(synth_bundle):
    a, b = Session(synth_bundle), Session(synth_bundle)
    b_before = dict(b.param.values())
    a.param.update(focus_class="0", selected_instances=[1, 2, 3], hide_unimportant=True,
                   checked_neurons=[("features.conv1", 2)], layers=["features.conv1"])
    a.selected_instances.append(4)
    after = dict(b.param.values())
    after.pop("name"), b_before.pop("name")
    assert after == b_before
    # per-instance parameter objects: changing one session's choices leaves the other's alone
    a.param.focus_class.objects = ["0"]
    assert b.param.focus_class.objects == ["0", "1", "2"]
    assert Session.param.focus_class.objects == []


def test_two_sessions_views_are_independent(synth_bundle):
    from tlexplorer.app.views.instances import InstanceView
    from tlexplorer.app.views.stats import StatsView

    a, b = Session(synth_bundle), Session(synth_bundle)
    va, vb = InstanceView(session=a), InstanceView(session=b)
    sa, sb = StatsView(session=a), StatsView(session=b)
    sa.__panel__(), sb.__panel__()
    rows_b = vb.shown_rows.copy()
    sa.select_class("0")
    assert a.focus_class == "0" and b.focus_class != "0"
    assert not np.array_equal(va.shown_rows, rows_b)
    np.testing.assert_array_equal(vb.shown_rows, rows_b)
    va._on_bounds(bounds=(-1e9, -1e9, 1e9, 1e9))
    assert len(a.selected_instances) == len(va.shown_rows) and b.selected_instances == []


def test_focus_change_updates_views(synth_session):
    from tlexplorer.app.views.instances import InstanceView
    from tlexplorer.app.views.stats import StatsView

    s = synth_session
    stats, inst = StatsView(session=s), InstanceView(session=s)
    stats.__panel__()
    s.focus_class = "1"
    table = stats._table
    assert [table.value["class"].iloc[i] for i in table.selection] == ["1"]
    names = set(inst._sub["class_name"].astype(str))
    assert names == set(s.selected_classes) and "1" in names


def test_load_bundle_once_per_process(synth_path):
    loading.clear_cache()
    first = loading.load_bundle(str(synth_path))
    again = loading.load_bundle(synth_path.parent / ".." / synth_path.parent.name / "bundle")
    assert first is again
    calls = []
    value = loading.derived(first, "test.thing", lambda: calls.append(1) or {"x": 1})
    assert loading.derived(first, "test.thing", lambda: calls.append(1) or {"x": 2}) is value
    assert calls == [1]
    bundle_obj = object()
    assert loading.load_bundle(bundle_obj) is bundle_obj


def test_load_bundle_errors_are_bundle_errors(tmp_path):
    from tlexplorer.errors import BundleError

    with pytest.raises(BundleError):
        loading.load_bundle(tmp_path / "missing")
    with pytest.raises(BundleError):
        loading.load_bundle(tmp_path)  # a directory without manifest.json


def test_job_reports_progress_and_result(synth_session):
    s = synth_session
    seen, done = [], []
    release = threading.Event()

    def work(n, *, callback=None, scale=1):
        for i in range(n):
            callback(i + 1, n)
        release.wait(5)
        return n * scale

    job = jobs.submit(s, work, 4, scale=3, label="Counting", on_progress=seen.append,
                      on_done=done.append, min_interval=0.0)
    assert s.busy
    release.set()
    assert job.wait(5) == 12
    assert done == [12] and not s.busy
    assert seen[0] == 0.0 and seen[-1] == 1.0
    assert s.status == "Counting: done"


def test_job_failure_is_reported(synth_session):
    s = synth_session
    errors = []

    def broken(*, callback=None):
        raise RuntimeError("boom")

    job = jobs.submit(s, broken, label="Broken", on_error=errors.append)
    with pytest.raises(RuntimeError):
        job.wait(5)
    assert not s.busy and "boom" in s.status and isinstance(errors[0], RuntimeError)


def test_job_failure_is_reported_when_served(synth_session, monkeypatch):
    """Served, the report runs later on the session's event loop, after the worker's except
    block has ended."""
    s, errors, deferred = synth_session, [], []
    monkeypatch.setattr(jobs, "call_in_session", lambda doc, cb: deferred.append(cb))

    def broken(*, callback=None):
        raise RuntimeError("boom")

    job = jobs.submit(s, broken, label="Broken", on_error=errors.append)
    with pytest.raises(RuntimeError):
        job.wait(5)
    for cb in deferred:
        cb()
    assert not s.busy and "Broken failed: boom" in s.status and isinstance(errors[0], RuntimeError)


def test_job_can_be_cancelled(synth_session):
    started, answers = threading.Event(), []

    def long(*, callback=None):
        started.set()
        for i in range(1000):
            answer = callback(i, 1000)
            if answer is False:
                answers.append(i)
                return "stopped"
            threading.Event().wait(0.005)
        return "finished"

    job = jobs.submit(synth_session, long, label="Long")
    started.wait(5)
    job.cancel()
    assert job.wait(5) == "stopped" and answers and not synth_session.busy
