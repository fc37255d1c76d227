"""A light client of a served page: opens it as a browser would, over Bokeh's websocket protocol,
and times when each view arrives. Used by the concurrency test and ``benchmarks/bench_serve.py``.

It fetches the page (the frame), connects the websocket with the page's session token, pulls the
document, says "document ready" (as BokehJS does once it has drawn the page; that starts the
page's build), then reads the server's patches until every view's marker class is in the
document. Nothing is deserialised into Bokeh models, so many pages can be probed from one
process without the probe itself loading the machine.
"""
from __future__ import annotations

import asyncio
import json
import re
import time
from dataclasses import dataclass, field

from bokeh.document import Document
from bokeh.document.events import MessageSentEvent
from bokeh.events import DocumentReady
from bokeh.protocol import Protocol
from tornado.httpclient import AsyncHTTPClient, HTTPRequest
from tornado.websocket import websocket_connect

#: CSS classes that are in the document once each view is drawn.
VIEW_MARKERS = {"stats": "tlx-accuracy-chart", "network": "tlx-network-plot",
                "features": "tlx-discriminability-plot", "instances": "tlx-instance-scatter"}
ERROR_MARKER = "tlx-view-error"
_TOKEN = re.compile(r'"token":\s*"([^"]+)"')


@dataclass
class PageResult:
    """What one probed page saw: seconds from the request to the frame and to each view."""

    frame_s: "float | None" = None
    views_s: dict = field(default_factory=dict)
    error: "str | None" = None
    bytes_received: int = 0

    @property
    def done_s(self) -> "float | None":
        return max(self.views_s.values()) if len(self.views_s) == len(VIEW_MARKERS) else None


class _Socket:
    """Bokeh's message framing over a tornado websocket: header, metadata, content, buffers."""

    def __init__(self, ws):
        self.ws = ws
        self.received = 0

    async def read(self) -> "tuple[dict, str]":
        header_text = await self.ws.read_message()
        if header_text is None:
            raise ConnectionError("the server closed the websocket")
        header = json.loads(header_text)
        await self.ws.read_message()  # metadata
        content = await self.ws.read_message()
        for _ in range(int(header.get("num_buffers", 0) or 0)):  # (buffer header, payload) each
            for _part in range(2):
                self.received += len(await self.ws.read_message() or b"")
        self.received += len(header_text) + len(content or "")
        return header, content or ""

    async def send(self, message) -> None:
        # the message's own send() wants Bokeh's wrapper; write its parts the same way
        for part in (message.header_json, message.metadata_json, message.content_json):
            await self.ws.write_message(part)
        for buffer in message.buffers:
            await self.ws.write_message(json.dumps(buffer.ref))
            await self.ws.write_message(buffer.to_bytes(), binary=True)


async def probe_page(url: str, *, timeout: float = 120.0, cookie: "str | None" = None
                     ) -> PageResult:
    """Open ``url`` as a browser would and time the frame and each view; never raises."""
    result = PageResult()
    start = time.monotonic()
    headers = {"Cookie": cookie} if cookie else {}
    try:
        response = await AsyncHTTPClient().fetch(HTTPRequest(url, headers=headers,
                                                             request_timeout=timeout))
        page = response.body.decode("utf-8", "replace")
        match = _TOKEN.search(page)
        if match is None:
            raise RuntimeError("no session token in the page")
        ws_url = re.sub(r"^http", "ws", url.split("?")[0].rstrip("/")) + "/ws"
        ws = await websocket_connect(HTTPRequest(ws_url, headers=headers),
                                     subprotocols=["bokeh", match.group(1)],
                                     max_message_size=1 << 30)
        sock = _Socket(ws)
        protocol = Protocol()
        try:
            await asyncio.wait_for(sock.read(), timeout)  # ACK
            await sock.send(protocol.create("PULL-DOC-REQ"))
            header, content = await asyncio.wait_for(sock.read(), timeout)
            result.frame_s = time.monotonic() - start
            seen = _note_views(content, result, start)
            ready = MessageSentEvent(Document(), "bokeh_event", DocumentReady())
            await sock.send(protocol.create("PATCH-DOC", [ready]))
            while len(seen) < len(VIEW_MARKERS):
                left = timeout - (time.monotonic() - start)
                if left <= 0:
                    raise TimeoutError(f"views drawn after {timeout:.0f} s: {sorted(seen)}")
                header, content = await asyncio.wait_for(sock.read(), left)
                seen = _note_views(content, result, start)
                if ERROR_MARKER in content:
                    raise RuntimeError("a view shows an error")
        finally:
            result.bytes_received = sock.received
            ws.close()
    except Exception as exc:  # reported, counted as an error by the caller
        result.error = f"{type(exc).__name__}: {exc}"
    return result


def _note_views(content: str, result: PageResult, start: float) -> set:
    now = time.monotonic() - start
    for key, marker in VIEW_MARKERS.items():
        if key not in result.views_s and marker in content:
            result.views_s[key] = now
    return set(result.views_s)


async def probe_pages(url: str, n: int, *, timeout: float = 120.0) -> "list[PageResult]":
    """Open ``n`` pages at once."""
    return list(await asyncio.gather(*(probe_page(url, timeout=timeout) for _ in range(n))))


def open_pages(url: str, n: int, *, timeout: float = 120.0) -> "list[PageResult]":
    """Blocking :func:`probe_pages` (runs its own event loop)."""
    return asyncio.run(probe_pages(url, n, timeout=timeout))


__all__ = ["PageResult", "VIEW_MARKERS", "open_pages", "probe_page", "probe_pages"]
