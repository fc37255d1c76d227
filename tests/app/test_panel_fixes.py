"""Panel's deferred websocket writes never strand a message, and a queued write is seen
(app/panel_fixes.py)."""
from __future__ import annotations

import asyncio
from contextlib import contextmanager
from types import SimpleNamespace

from bokeh.document import Document
from panel.io import document as pdoc

from tlexplorer.app.panel_fixes import fix_stranded_writes, writes_pending


class _Socket:
    """Stands in for a websocket: Panel sends through ``extra_socket_handlers`` by type."""


class _Connection:
    def __init__(self):
        self._socket = _Socket()
        self.protocol = SimpleNamespace(create=lambda kind, events: events[0])


@contextmanager
def _socket_handled_by(handler):
    """A page's document whose messages go to ``handler(conn, msg)``; Panel's queues are emptied
    after (they are module-level)."""
    doc = Document()
    pdoc.extra_socket_handlers[_Socket] = handler
    try:
        yield doc, _Connection()
    finally:
        pdoc.extra_socket_handlers.pop(_Socket, None)
        pdoc._WRITE_MSGS.pop(doc, None)
        pdoc._WRITE_BLOCK.pop(doc, None)


def _send_two_messages_while_the_first_is_being_written() -> list:
    """The interleaving that stranded a message: a second message is queued after the first
    one's write finished but before the task writing it has lifted the write block."""
    sent, pending = [], []

    def handler(conn, msg):
        sent.append(msg)
        future = asyncio.get_running_loop().create_future()
        pending.append(future)
        return [future]

    async def scenario():
        with _socket_handled_by(handler) as (doc, conn):
            pdoc.schedule_write_events(doc, [conn], ["first view"])
            for _ in range(5):  # the first task starts writing and waits for the write
                await asyncio.sleep(0)
            # the first write ends (its task is woken to lift the block) and, before that task
            # runs again, the last view is queued
            pending[0].set_result(None)
            pdoc.schedule_write_events(doc, [conn], ["last view"])
            for _ in range(50):
                await asyncio.sleep(0.002)
                for future in pending:
                    if not future.done():
                        future.set_result(None)

    asyncio.run(scenario())
    return sent


def test_a_message_queued_while_another_is_written_is_sent():
    fix_stranded_writes()
    fix_stranded_writes()  # idempotent
    assert _send_two_messages_while_the_first_is_being_written() == ["first view", "last view"]


def test_writes_pending_sees_a_message_queued_behind_a_write():
    """While a message waits in Panel's queue (the socket busy with an earlier one) it is
    pending; once the write task has sent it and lifted the block, nothing is."""
    fix_stranded_writes()
    seen, written = [], []

    def handler(conn, msg):
        written.append(msg)
        future = asyncio.get_running_loop().create_future()
        future.set_result(None)
        return [future]

    async def scenario():
        with _socket_handled_by(handler) as (doc, conn):
            seen.append(writes_pending(doc))
            pdoc.schedule_write_events(doc, [conn], ["a view"])
            seen.append(writes_pending(doc))  # queued, its task not yet run
            for _ in range(20):
                await asyncio.sleep(0.001)
            seen.append(writes_pending(doc))
            seen.append(list(written))

    asyncio.run(scenario())
    assert seen == [False, True, False, ["a view"]]


def test_served_pages_leave_mathjax_out():
    import panel as pn
    from bokeh.document import Document
    from bokeh.resources import Resources
    from panel.io.resources import bundle_resources

    from tlexplorer.app.panel_fixes import no_mathjax

    def mathjax_in_page() -> bool:
        doc = Document()
        doc.add_root(pn.pane.HTML("a class named $x$").get_root(doc))  # Panel adds MathJax for it
        files = bundle_resources(doc.roots, Resources(mode="server")).js_files
        return any("mathjax" in str(f) for f in files)

    from panel.io import resources

    no_mathjax()
    assert not mathjax_in_page()
    patched = resources._panel_use_mathjax
    resources._panel_use_mathjax = patched.panel_check  # the check is real: Panel's own adds it
    try:
        assert mathjax_in_page()
    finally:
        resources._panel_use_mathjax = patched
