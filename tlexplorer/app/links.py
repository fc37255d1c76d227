"""Widgets linked to session parameters so that one click reaches the browser as one message.

A change that comes from the browser (a selector, a table row) runs every view's reaction on the
server; without a hold each reaction's model changes leave as messages of their own (a class
switch sent 16 to 19), and the browser lays the page out after each. Inside ``pn.io.hold()`` they
are collected and sent together when the last reaction is done.

:func:`batched` also freezes the document's model graph meanwhile: Bokeh otherwise walks every
model of the page again after each view's update (a third of a class switch's server time,
measured with py-spy), and now does so once at the end.
"""
from __future__ import annotations

import asyncio
import contextlib
import threading
from typing import Any

import panel as pn


def batched():
    """``with batched():`` — the model changes inside reach the browser as one message.

    On the document's own event loop the model graph is frozen meanwhile. Elsewhere (a session
    callback in Panel's thread pool) only Panel's thread-safe hold applies: freezing would walk the
    document's models from that thread while the loop may be changing them. Inside
    :func:`preparing` it does nothing.
    """
    if getattr(_PREPARING, "active", False):
        return contextlib.nullcontext()
    from panel.io.state import state

    return pn.io.hold(freeze=state.curdoc is None or _on_document_loop(state))


_PREPARING = threading.local()


@contextlib.contextmanager
def preparing():
    """``with preparing():`` — this thread builds a page's objects before any of them is in the
    document (a page prepared in a worker thread while the browser loads it): :func:`batched` has
    nothing to batch there, and holding the document from this thread would race its loop."""
    _PREPARING.active = True
    try:
        yield
    finally:
        _PREPARING.active = False


def _on_document_loop(state: Any) -> bool:
    """Whether this thread runs the current document's event loop: the thread Panel recorded for
    the document, else (not recorded yet) a thread with a running event loop, or the main thread
    of a script. Page-build and job workers are neither; a server may run its loop in any thread
    (tests, ``threaded=True``)."""
    loop_thread = state._thread_id
    if loop_thread is not None:
        return loop_thread == state._current_thread
    try:
        asyncio.get_running_loop()
    except RuntimeError:
        return threading.current_thread() is threading.main_thread()
    return True


def held_link(widget: Any, obj: Any, name: str) -> Any:
    """Link ``widget.value`` and ``obj.<name>`` both ways; a change made in the widget reaches
    ``obj`` inside one hold. Returns the widget."""
    widget.value = getattr(obj, name)
    syncing = [False]

    def to_obj(event: Any) -> None:
        if not syncing[0]:
            with batched():
                setattr(obj, name, event.new)

    def to_widget(event: Any) -> None:
        syncing[0] = True
        try:
            widget.value = event.new
        finally:
            syncing[0] = False

    widget.param.watch(to_obj, "value")
    obj.param.watch(to_widget, name)
    return widget


def set_shown(panel: Any, shown: bool) -> None:
    """Show or hide ``panel`` by its CSS ``display``, not by ``visible``: Bokeh lays the whole page
    out again when a model's ``visible`` changes (0.4 s on the dashboard, measured), and not for a
    style. ``is_shown`` reads it back."""
    styles = dict(panel.styles or {})
    # "" clears the inline style in the browser (a key left out would keep the old value there)
    wanted = "" if shown else "none"
    if styles.get("display", "") != wanted:
        panel.styles = {**styles, "display": wanted}


def is_shown(panel: Any) -> bool:
    """Whether :func:`set_shown` shows ``panel`` (and it is visible)."""
    return bool(panel.visible) and (panel.styles or {}).get("display") != "none"


__all__ = ["batched", "held_link", "is_shown", "preparing", "set_shown"]
