"""Text that a dataset, a bundle or a URL controls, made safe to show.

Class, layer, domain and file names come from folders and manifests, and query parameters from
whoever sent the link; all of them are text, never markup. Every pane that renders HTML gets them
through :func:`escape`; widgets whose labels the browser renders as HTML (Bokeh's ``MultiChoice``
uses Choices.js with ``allowHTML``) get escaped labels from :func:`escaped_options` while their
values stay the original strings.
"""
from __future__ import annotations

import html
from typing import Any, Iterable

#: Colours of the message boxes (Bootstrap's alert palette).
MESSAGE_STYLES = {
    "info": ("#cff4fc", "#b6effb", "#055160"),
    "warning": ("#fff3cd", "#ffecb5", "#664d03"),
    "danger": ("#f8d7da", "#f5c2c7", "#842029"),
}


def escape(value: Any) -> str:
    """``str(value)`` with ``& < > " '`` escaped, for HTML text and attribute values."""
    return html.escape(str(value), quote=True)


def escaped_options(values: Iterable[Any]) -> "dict[str, str]":
    """``{escaped label: value}`` for a widget that renders its option labels as HTML."""
    return {escape(v): str(v) for v in values}


def message_html(text: str, kind: str = "warning") -> str:
    """One message box (``kind`` in info/warning/danger) showing ``text`` literally."""
    background, border, color = MESSAGE_STYLES.get(kind, MESSAGE_STYLES["warning"])
    return (f'<div class="tlx-message tlx-message-{escape(kind)}" style="background:{background};'
            f'border:1px solid {border};color:{color};border-radius:4px;padding:8px 12px;'
            f'font-size:13px;">{escape(text)}</div>')


__all__ = ["escape", "escaped_options", "message_html"]
