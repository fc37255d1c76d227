"""The page-build queue: bounded, first come first served, nothing for pages nobody watches."""
from __future__ import annotations

import threading
import time
from types import SimpleNamespace

from tlexplorer.app.builds import BuildJob, BuildQueue


def _job(log, name, *, alive=lambda: True, prepare_s=0.0, fail_step=None, positions=None):
    def prepare():
        log.append((name, "prepare", threading.current_thread().name))
        time.sleep(prepare_s)

    def step(i):
        def run():
            if i == fail_step:
                raise ValueError(f"{name} step {i} broke")
            log.append((name, f"step{i}"))
        return run

    errors = []
    job = BuildJob(None, prepare, [step(0), step(1)], alive=alive, on_error=errors.append,
                   on_position=(positions.append if positions is not None else None))
    job.errors = errors
    return job


def test_pages_are_built_in_order_a_bounded_number_at_a_time():
    queue, log = BuildQueue(workers=1), []
    positions: list = []
    jobs = [_job(log, f"p{i}", prepare_s=0.05, positions=positions if i == 3 else None)
            for i in range(4)]
    for job in jobs:
        queue.submit(job)
    for job in jobs:
        assert job.finished.wait(10)
    assert [entry[0] for entry in log if entry[1] == "prepare"] == ["p0", "p1", "p2", "p3"]
    # one worker: each page's steps end before the next page starts
    names = [entry[0] for entry in log]
    assert names == sorted(names)
    assert all(entry[2] == "tlexplorer-page-build" for entry in log if entry[1] == "prepare")
    assert positions and positions[0] >= 2 and positions == sorted(positions, reverse=True)
    assert queue.built == 4


def test_pages_nobody_watches_cost_nothing():
    queue, log = BuildQueue(workers=1), []
    blocker = _job(log, "first", prepare_s=0.2)
    closed = _job(log, "closed", alive=lambda: False)
    left_midway_state = {"alive": True}
    midway = _job(log, "midway", alive=lambda: left_midway_state["alive"])
    midway.steps.insert(1, lambda: left_midway_state.update(alive=False))  # tab closed after step 0
    cancelled = _job(log, "cancelled")
    for job in (blocker, closed, midway, cancelled):
        queue.submit(job)
    cancelled.cancel()
    for job in (blocker, midway):
        assert job.finished.wait(10)
    time.sleep(0.2)
    assert not any(entry[0] in ("closed", "cancelled") for entry in log)
    assert ("midway", "step0") in log and ("midway", "step1") not in log
    assert queue.skipped == 3 and queue.built == 1


def test_a_failing_step_is_reported_and_the_next_steps_still_run():
    queue, log = BuildQueue(workers=2), []
    job = _job(log, "p", fail_step=0)
    queue.submit(job)
    assert job.finished.wait(10)
    assert [str(e) for e in job.errors] == ["p step 0 broke"]
    assert ("p", "step1") in log


def test_idle_and_wait_idle_follow_the_pages_being_built():
    queue, log = BuildQueue(workers=1), []
    assert queue.idle() and queue.wait_idle(timeout=0.01)
    job = _job(log, "p", prepare_s=0.3)
    queue.submit(job)
    assert not queue.idle()
    assert not queue.wait_idle(timeout=0.05)  # still building
    assert queue.wait_idle(timeout=10) and job.finished.is_set() and queue.idle()


def test_a_step_waits_until_the_previous_steps_message_has_left(monkeypatch):
    """The next view is built only once the previous view's message is on the socket: Panel
    retries a queued write only between ticks of the loop, which the steps would otherwise keep
    taking (a view's message waited for the views after it)."""
    from tlexplorer.app import builds

    log, queued = [], {"checks": 0}

    def pending(doc):
        log.append("pending?")
        queued["checks"] -= 1
        return queued["checks"] >= 0

    def step(i):
        def run():
            log.append(f"step{i}")
            queued["checks"] = 3  # this step's message is queued behind a write in flight
        return run
    monkeypatch.setattr(builds, "call_in_session", lambda doc, fn: fn())
    monkeypatch.setattr(builds, "writes_pending", pending)
    served = SimpleNamespace(session_context=object())
    BuildJob(served, lambda: None, [step(0), step(1)], alive=lambda: True).run()
    assert log == ["step0"] + ["pending?"] * 4 + ["step1"] + ["pending?"] * 4
    log.clear()
    BuildJob(None, lambda: None, [step(0), step(1)], alive=lambda: True).run()
    assert log == ["step0", "step1"]  # no session (tests, notebooks): nothing to wait for
