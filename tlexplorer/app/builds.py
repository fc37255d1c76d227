"""Page builds of a served app: a bounded number at a time, first come first served, and none for
pages nobody watches.

A served page answers at once with its frame (header and four empty view cards); once the browser
has loaded it, the page asks this process's :class:`BuildQueue` for a turn. A turn runs the page's
``prepare`` step (session, aggregates, view objects: plain Python, no Bokeh document) in one of the
queue's worker threads, then each of its ``steps`` (putting one view into its card, which makes its
Bokeh models) on the session's event loop, one tick each, so that the loop keeps serving other
pages between them. Pages waiting for a turn are told how many are ahead of them.

A page whose browser went away (no open connection, or the session was destroyed) is skipped
before each step: an abandoned request costs its frame, not its views.
"""
from __future__ import annotations

import logging
import os
import threading
import time
from collections import deque
from typing import Any, Callable, Sequence

from tlexplorer.app.jobs import call_in_session
from tlexplorer.app.panel_fixes import writes_pending

log = logging.getLogger(__name__)

#: Pages built at the same time per process (``TLX_PAGE_BUILDS``). Builds share the GIL, so more
#: at once only makes every page wait longer; two overlap one page's thread work with another's
#: event-loop work.
DEFAULT_WORKERS = 2
#: Longest wait for one event-loop step before the page is given up on (seconds).
STEP_TIMEOUT = 120.0
#: Longest wait for a step's message to reach the socket before the next step runs (seconds).
SEND_TIMEOUT = 1.0


def session_alive(doc: Any) -> bool:
    """Whether ``doc``'s browser is still connected (always True outside a server session)."""
    context = getattr(doc, "session_context", None)
    session = getattr(context, "_session", None) if context is not None else None
    if session is None:
        return doc is not None
    return not session.destroyed and session.connection_count > 0


class BuildJob:
    """One page's build: ``prepare()`` in a worker thread, then each of ``steps`` on ``doc``'s loop.

    Parameters
    ----------
    doc : bokeh.document.Document or None
        The page's document (None: run the steps directly, for tests).
    prepare : callable
        Runs in a worker thread; its exceptions go to ``on_error``.
    steps : sequence of callables
        Run on the session's event loop, in order, after ``prepare``; each one's exception goes to
        ``on_error`` and the next step still runs (one broken view does not stop the others).
    on_position : callable(int), optional
        Called on the loop with the number of pages ahead while this one waits.
    on_error : callable(BaseException), optional
        Called on the loop.
    alive : callable() -> bool, optional
        Whether the page is still wanted (default: its browser is connected).
    """

    def __init__(self, doc: Any, prepare: Callable[[], Any], steps: Sequence[Callable[[], Any]],
                 *, on_position: "Callable[[int], None] | None" = None,
                 on_error: "Callable[[BaseException], None] | None" = None,
                 alive: "Callable[[], bool] | None" = None):
        self.doc = doc
        self.prepare, self.steps = prepare, list(steps)
        self.on_position, self.on_error = on_position, on_error
        self._alive = alive
        self.cancelled = threading.Event()
        self.finished = threading.Event()
        self.skipped = False  # ended early because nobody watched the page any more

    def alive(self) -> bool:
        if self.cancelled.is_set():
            return False
        return self._alive() if self._alive is not None else session_alive(self.doc)

    def cancel(self) -> None:
        """Stop before the next step (the page was replaced or closed)."""
        self.cancelled.set()

    def _on_loop(self, fn: Callable[[], Any], wait: bool) -> bool:
        """Run ``fn`` on the session's loop; with ``wait``, return once it ran (False: gave up)."""
        done = threading.Event()

        def run() -> None:
            try:
                fn()
            finally:
                done.set()
        call_in_session(self.doc, run)
        if not wait:
            return True
        end = time.monotonic() + STEP_TIMEOUT
        while not done.wait(0.5):
            if not self.alive() or time.monotonic() > end:
                return False
        return True

    def _report(self, exc: BaseException) -> None:
        if self.on_error is not None:
            handler = self.on_error
            self._on_loop(lambda: handler(exc), wait=False)

    def tell_position(self, ahead: int) -> None:
        if self.on_position is not None and self.alive():
            callback = self.on_position
            self._on_loop(lambda: callback(ahead), wait=False)

    def _wait_sent(self) -> None:
        """Let the loop hand the step's message to the socket before the next step takes it.
        A step holds the loop for 0.1–0.4 s, and Panel retries a message that found the socket
        busy only between ticks: without this wait a view's message waited for the views built
        after it (0.5 s of a 3 s first page, issue 15)."""
        if self.doc is None or getattr(self.doc, "session_context", None) is None:
            return
        end = time.monotonic() + SEND_TIMEOUT
        while writes_pending(self.doc) and time.monotonic() < end and self.alive():
            time.sleep(0.005)

    def run(self) -> None:
        """Prepare here, then the steps on the loop; stops early once the page is not wanted."""
        try:
            if not self.alive():
                self.skipped = True
                return
            try:
                self.prepare()
            except BaseException as exc:  # shown in the page, never a silent blank
                log.exception("preparing a page failed")
                self._report(exc)
                return
            for step in self.steps:
                if not self.alive():
                    self.skipped = True
                    return

                def guarded(step=step) -> None:
                    try:
                        step()
                    except Exception as exc:
                        log.exception("building a view failed")
                        if self.on_error is not None:
                            self.on_error(exc)
                if not self._on_loop(guarded, wait=True):
                    self.skipped = True
                    return
                self._wait_sent()
        finally:
            self.finished.set()


class BuildQueue:
    """This process's page builds: ``workers`` at a time, in the order pages asked."""

    def __init__(self, workers: int = DEFAULT_WORKERS):
        self.workers = max(1, int(workers))
        self._lock = threading.Condition()
        self._waiting: "deque[BuildJob]" = deque()
        self._running = 0
        self._threads: "list[threading.Thread]" = []
        self.built = 0    # pages finished (tests, benchmark)
        self.skipped = 0  # pages given up because nobody watched them any more

    def submit(self, job: BuildJob) -> None:
        """Queue ``job``; it is told its place now and whenever it moves up."""
        with self._lock:
            self._waiting.append(job)
            ahead = len(self._waiting) - 1 + self._running
            self._start_workers()
            self._lock.notify_all()  # a worker (and wait_idle, which re-checks)
        if ahead:
            job.tell_position(ahead)

    def waiting(self) -> int:
        with self._lock:
            return len(self._waiting)

    def idle(self) -> bool:
        """No page is being built or waiting for its turn."""
        with self._lock:
            return self._idle()

    def wait_idle(self, timeout: "float | None" = None) -> bool:
        """Block until no page is being built or waiting (work that can wait, such as laying
        out classes ahead, lets page builds go first); False if ``timeout`` passed first."""
        with self._lock:
            return self._lock.wait_for(self._idle, timeout)

    def _idle(self) -> bool:  # with the lock held
        return not self._waiting and self._running == 0

    def _start_workers(self) -> None:
        self._threads = [t for t in self._threads if t.is_alive()]
        while len(self._threads) < self.workers:
            thread = threading.Thread(target=self._work, name="tlexplorer-page-build",
                                      daemon=True)
            self._threads.append(thread)
            thread.start()

    def _next(self) -> BuildJob:
        with self._lock:
            while True:
                while self._waiting and not self._waiting[0].alive():
                    self._waiting.popleft()  # closed while waiting: costs nothing more
                    self.skipped += 1
                if self._waiting:
                    job = self._waiting.popleft()
                    self._running += 1
                    moved = list(self._waiting)
                    running = self._running
                    break
                self._lock.wait()
        for i, other in enumerate(moved):  # everyone behind moved up one place
            other.tell_position(i + running)
        return job

    def _work(self) -> None:
        while True:
            job = self._next()
            try:
                job.run()
            except Exception:  # a worker must survive any page
                log.exception("page build failed")
            finally:
                with self._lock:
                    self._running -= 1
                    if job.skipped:
                        self.skipped += 1
                    else:
                        self.built += 1
                    self._lock.notify_all()  # wait_idle()


_QUEUE: "BuildQueue | None" = None
_QUEUE_LOCK = threading.Lock()


def build_queue() -> BuildQueue:
    """This process's queue (created on first use, so each forked server process has its own)."""
    global _QUEUE
    with _QUEUE_LOCK:
        if _QUEUE is None:
            _QUEUE = BuildQueue(int(os.environ.get("TLX_PAGE_BUILDS", DEFAULT_WORKERS)))
        return _QUEUE


def _forget_after_fork() -> None:
    """A forked server process starts with no queue: the parent's threads do not exist there."""
    global _QUEUE, _QUEUE_LOCK
    _QUEUE, _QUEUE_LOCK = None, threading.Lock()


if hasattr(os, "register_at_fork"):
    os.register_at_fork(after_in_child=_forget_after_fork)


__all__ = ["BuildJob", "BuildQueue", "build_queue", "session_alive"]
