"""Changes to Panel's serving: a fix for its deferred websocket writes, which can strand a
message (Panel 1.x), a test for writes still pending (:func:`writes_pending`), and no MathJax in
our pages (:func:`no_mathjax`).

When a change is made while the socket is still writing an earlier message, Panel queues the new
message (``_WRITE_MSGS``) under a write block (``_WRITE_BLOCK``) and starts a task that sends it
(``_dispatch_msgs``). An earlier task that finishes meanwhile lifts the block without looking at
the queue, and the new task, finding no block, returns without sending: the message waits until
some later change happens to flush it. On a page whose views arrive one after another this left
the last view unsent in about one load in five (found while building pages faster, issue 15).

:func:`fix_stranded_writes` wraps ``_dispatch_msgs`` so that queued messages are always sent: a
task that finds messages but no block takes the block, and a task that lifts the block while
messages wait starts another round.
"""
from __future__ import annotations

import threading

_LOCK = threading.Lock()


def fix_stranded_writes() -> None:
    """Install the fix (once per process; idempotent)."""
    from panel.io import document as pdoc

    with _LOCK:
        if getattr(pdoc._dispatch_msgs, "_tlx_fixed", False):
            return
        dispatch = pdoc._dispatch_msgs

        async def _dispatch_msgs(doc):
            if doc not in pdoc._WRITE_BLOCK and pdoc._WRITE_MSGS.get(doc):
                pdoc._WRITE_BLOCK[doc] = True  # queued after an earlier task lifted the block
            await dispatch(doc)
            if doc not in pdoc._WRITE_BLOCK and pdoc._WRITE_MSGS.get(doc):
                pdoc._WRITE_BLOCK[doc] = True  # queued while this task was writing
                pdoc._dispatch_write_task(doc, pdoc._dispatch_msgs, doc)

        _dispatch_msgs._tlx_fixed = True
        pdoc._dispatch_msgs = _dispatch_msgs


def writes_pending(doc) -> bool:
    """Whether Panel holds messages of ``doc`` not yet handed to the socket: queued behind a
    write in flight, or written but not flushed. Panel retries a queued write only between ticks
    of the event loop, so work that takes the loop tick after tick (a page's build steps) keeps
    them waiting; see :meth:`tlexplorer.app.builds.BuildJob._wait_sent`."""
    from panel.io import document as pdoc

    return bool(pdoc._WRITE_MSGS.get(doc) or pdoc._WRITE_FUTURES.get(doc)
                or doc in pdoc._WRITE_BLOCK)


def no_mathjax() -> None:
    """Leave MathJax (1.8 MB of script) out of served pages (once per process; idempotent).

    Panel includes it in every page that has an HTML pane, in case the pane holds ``$...$``; ours
    hold text the views escape, and a class or layer name with dollar signs must read as written,
    not be typeset."""
    from panel.io import resources

    if resources._panel_use_mathjax is not _no_panel_mathjax:
        _no_panel_mathjax.panel_check = resources._panel_use_mathjax  # kept for the tests
        resources._panel_use_mathjax = _no_panel_mathjax


def _no_panel_mathjax(roots) -> bool:
    return False


__all__ = ["fix_stranded_writes", "no_mathjax", "writes_pending"]
