"""Reading a served page's text in Playwright, through Panel's and Bokeh's shadow roots."""

#: The text of an element including its shadow roots (``locator.evaluate(DEEP_TEXT)``).
DEEP_TEXT = """el => {
    const walk = n => {
        let t = n.shadowRoot ? walk(n.shadowRoot) : "";
        for (const c of n.childNodes) t += c.nodeType === 3 ? c.textContent : walk(c);
        return t;
    };
    return walk(el);
}"""


def deep_text(locator) -> str:
    """An element's text, shadow roots included."""
    return locator.evaluate(DEEP_TEXT)
