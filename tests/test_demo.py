"""The demo's reuse decisions (the whole chain runs in the notebook and CLI tests)."""
from __future__ import annotations

import json

from tlexplorer.demo import _run_is_complete
from tlexplorer.models import architecture_kwargs


def _run(tmp_path, per_class=1000, kwargs=None):
    config = {"data": {"name": "digits", "per_class": per_class},
              "model": {"name": "digits-alexnet", "num_classes": 10,
                        "kwargs": architecture_kwargs("digits-alexnet") if kwargs is None else kwargs}}
    (tmp_path / "config.json").write_text(json.dumps(config))
    return tmp_path


def test_reuses_a_finished_run_of_todays_model(tmp_path):
    assert _run_is_complete(_run(tmp_path), 1000)
    assert not _run_is_complete(_run(tmp_path, per_class=100), 1000)


def test_retrains_a_run_of_an_earlier_version(tmp_path):
    """Runs of earlier versions recorded no architecture defaults; those defaults have changed."""
    assert not _run_is_complete(_run(tmp_path, kwargs={}), 1000)
    (tmp_path / "config.json").write_text("{not json")
    assert not _run_is_complete(tmp_path, 1000)
    assert not _run_is_complete(tmp_path / "missing", 1000)


def test_ready_line_counts_the_set_up_from_the_script(monkeypatch):
    import time

    from tlexplorer.demo import _ready_line, _started_at

    monkeypatch.setenv("TLX_DEMO_STARTED", str(time.time() - 100))  # exported by scripts/demo.sh
    started = _started_at()
    line = _ready_line(started, {"set-up and start": 90.0, "analysis": 10.0})
    assert line == "[demo] ready after 100 s (set-up and start 90 s, analysis 10 s)"
    for stale in ("not a time", str(time.time() - 3 * 24 * 3600)):
        monkeypatch.setenv("TLX_DEMO_STARTED", stale)
        assert time.time() - _started_at() < 5
