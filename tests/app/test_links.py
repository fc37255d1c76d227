"""batched(): one message per interaction, frozen on the loop, held from callback threads, nothing
while a page is prepared."""
from __future__ import annotations

import threading

from bokeh.document import Document
from panel.io.state import set_curdoc

from tlexplorer.app.links import batched, preparing


def _hold_inside_batched(doc: Document) -> "str | None":
    with set_curdoc(doc):
        with batched():
            return doc.callbacks.hold_value


def test_batched_holds_the_document_on_its_loop():
    doc = Document()
    assert _hold_inside_batched(doc) == "combine"
    assert doc.callbacks.hold_value is None  # released after


def test_batched_holds_the_document_from_a_callback_thread():
    # a session callback in Panel's thread pool (``--num-threads``): Panel's thread-safe hold
    doc, seen = Document(), []
    worker = threading.Thread(target=lambda: seen.append(_hold_inside_batched(doc)))
    worker.start()
    worker.join(10)
    assert seen == ["combine"]


def test_batched_does_nothing_while_a_page_is_prepared():
    # the page's objects are not in the document yet; a hold from that thread would race the loop
    doc, seen = Document(), []

    def prepare():
        with preparing():
            seen.append(_hold_inside_batched(doc))
        seen.append(_hold_inside_batched(doc))  # and only there
    worker = threading.Thread(target=prepare)
    worker.start()
    worker.join(10)
    assert seen == [None, "combine"]


def test_batched_holds_the_document_on_a_loop_in_any_thread():
    # a server whose loop runs in another thread than the main one (tests, threaded=True)
    import asyncio

    doc, seen = Document(), []

    async def on_loop():
        seen.append(_hold_inside_batched(doc))
    worker = threading.Thread(target=lambda: asyncio.run(on_loop()))
    worker.start()
    worker.join(10)
    assert seen == ["combine"]
