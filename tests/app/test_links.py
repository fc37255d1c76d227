"""batched(): one message per interaction on the document's loop, nothing from other threads."""
from __future__ import annotations

import threading

from bokeh.document import Document
from panel.io.state import set_curdoc

from tlexplorer.app.links import batched


def _hold_inside_batched(doc: Document) -> "str | None":
    with set_curdoc(doc):
        with batched():
            return doc.callbacks.hold_value


def test_batched_holds_the_document_on_its_loop():
    doc = Document()
    assert _hold_inside_batched(doc) == "combine"
    assert doc.callbacks.hold_value is None  # released after


def test_batched_leaves_the_document_alone_in_another_thread():
    # a page prepared in a worker thread: a hold from there would race the loop's own holds
    doc, seen = Document(), []
    worker = threading.Thread(target=lambda: seen.append(_hold_inside_batched(doc)))
    worker.start()
    worker.join(10)
    assert seen == [None]


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
