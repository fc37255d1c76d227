"""Background jobs for on-demand computations, with progress, off the event loop.

A small process-wide thread pool runs the work; everything a job reports back (progress, result,
error) is applied to the session on the session's own event loop: ``pn.state.execute(...,
schedule=True)`` inside ``set_curdoc(doc)`` puts the callback on the Bokeh document's next tick,
where the document lock is held, which is how Panel wants threads to touch a session. Without a
server session (tests, notebooks) the callbacks run directly.
"""
from __future__ import annotations

import logging
import os
import threading
import time
from concurrent.futures import Future, ThreadPoolExecutor
from typing import Any, Callable

import panel as pn
from panel.io.state import set_curdoc

log = logging.getLogger(__name__)

_POOL_LOCK = threading.Lock()
_POOL: "ThreadPoolExecutor | None" = None


def _pool() -> ThreadPoolExecutor:
    """The process-wide pool (infrastructure, not session state), created on first use."""
    global _POOL
    with _POOL_LOCK:
        if _POOL is None:
            workers = int(os.environ.get("TLX_APP_WORKERS", "2"))
            _POOL = ThreadPoolExecutor(max_workers=max(1, workers),
                                       thread_name_prefix="tlexplorer-job")
        return _POOL


def call_in_session(doc: Any, callback: Callable[[], Any]) -> None:
    """Run ``callback`` on the event loop of ``doc``'s session (or now, when there is none)."""
    if doc is not None and getattr(doc, "session_context", None) is not None:
        with set_curdoc(doc):
            pn.state.execute(callback, schedule=True)
    else:
        callback()


class Job:
    """One background computation; ``future`` completes when ``fn`` returns or raises.

    Attributes
    ----------
    label : str
        Shown in the session's status line.
    progress : float
        Fraction done in [0, 1], as last reported.
    future : concurrent.futures.Future
        The worker's future (result of ``fn``).
    """

    def __init__(self, label: str):
        self.label = label
        self.progress = 0.0
        self.future: Future = Future()
        self.cancelled = threading.Event()

    @property
    def done(self) -> bool:
        return self.future.done()

    def cancel(self) -> None:
        """Ask the job to stop: the next progress report returns False (functions that honour
        it, like ``project_subset``, then stop early)."""
        self.cancelled.set()

    def wait(self, timeout: "float | None" = None) -> Any:
        """Block until the job ends (tests); returns ``fn``'s result or raises its error."""
        return self.future.result(timeout)


def submit(session: Any, fn: Callable[..., Any], *args: Any, label: str = "Working",
           on_progress: "Callable[[float], None] | None" = None,
           on_done: "Callable[[Any], None] | None" = None,
           on_error: "Callable[[BaseException], None] | None" = None,
           min_interval: float = 0.1, **kwargs: Any) -> Job:
    """Run ``fn(*args, callback=report, **kwargs)`` in the pool and report to ``session``.

    ``report(iteration, total)`` updates ``session.status`` and ``on_progress(fraction)`` (throttled
    to one update per ``min_interval`` seconds) and returns False once :meth:`Job.cancel` was
    called; ``session.busy`` is True until the job ends.
    ``on_done(result)`` / ``on_error(exc)`` run on the session's event loop.

    Returns
    -------
    Job
    """
    job = Job(label)
    doc = pn.state.curdoc
    last = [0.0]

    def in_session(cb: Callable[[], Any]) -> None:
        call_in_session(doc, cb)

    def report(iteration: float, total: float) -> "bool | None":
        if job.cancelled.is_set():
            return False
        fraction = min(max(float(iteration) / float(total), 0.0), 1.0) if total else 0.0
        job.progress = fraction
        now = time.monotonic()
        if now - last[0] < min_interval and fraction < 1.0:
            return None
        last[0] = now

        def apply() -> None:
            session.status = f"{label}: {fraction:.0%}"
            if on_progress is not None:
                on_progress(fraction)
        in_session(apply)
        return None

    def run() -> Any:
        try:
            result = fn(*args, callback=report, **kwargs)
        except BaseException as exc:  # reported to the user, not swallowed: on_error shows it
            log.exception("job %r failed", label)
            error = exc  # `exc` is unbound when the except block ends, before `failed` runs

            def failed() -> None:
                session.param.update(status=f"{label} failed: {error}", busy=False)
                if on_error is not None:
                    on_error(error)
            in_session(failed)
            raise
        job.progress = 1.0

        def finished() -> None:
            session.param.update(status=f"{label}: done", busy=False)
            if on_progress is not None:
                on_progress(1.0)
            if on_done is not None:
                on_done(result)
        in_session(finished)
        return result

    session.param.update(status=f"{label}: started", busy=True)
    if on_progress is not None:
        on_progress(0.0)
    inner = _pool().submit(run)

    def chain(f: Future) -> None:
        if f.cancelled():
            job.future.cancel()
        elif f.exception() is not None:
            job.future.set_exception(f.exception())
        else:
            job.future.set_result(f.result())
    job.future.set_running_or_notify_cancel()
    inner.add_done_callback(chain)
    return job


def run_quietly(fn: Callable[[], Any]) -> Future:
    """Run ``fn()`` in the pool with no status line or progress (work done ahead for later
    clicks); its errors are logged, not shown."""
    def run() -> Any:
        try:
            return fn()
        except Exception:
            log.exception("background work failed")
            raise
    return _pool().submit(run)


__all__ = ["Job", "call_in_session", "run_quietly", "submit"]
