"""Time linked-view interactions in Chromium: from a click to each view updated, and what it sends.

Serves a bundle (``tlexplorer serve`` in a child process), opens it in Debian's Chromium at
1920×1080 with Playwright, and then repeats each interaction:

- ``table row``: a row of the confusion table (the focus class),
- ``class selector``: the network view's class selector,
- ``neuron click`` / ``weight click``: a neuron label / a weight square of the network view
  (its detail panel),
- ``feature scope``: the feature view's scope (one class ↔ all classes),
- ``feature check``: a checkbox of the feature ranking (the biplot's axes),
- ``instance classes``: removing / adding a class in the instance view's selector.

How a view's update is timed: the page's Bokeh document reports every change the server sends
(``Document.on_change``); each change is attributed to the view whose card holds the model. A
view's time is the first painted frame after its last change, counted from just before the click.
An interaction ends when nothing has arrived for ``--quiet`` seconds. Frames and bytes are the
websocket messages the browser received in that time. Class switches are reported separately for
a class seen before in the same page ("revisited").

    python benchmarks/bench_interaction.py runs/digits/bundle
    python benchmarks/bench_interaction.py runs/digits/bundle --repeat 5 --write docs/performance.md
"""
from __future__ import annotations

import argparse
import os
import statistics
import subprocess
import sys
import time
from pathlib import Path

from bench_serve import free_port, wait_for  # the same server start as the serving benchmark

VIEWS = ("stats", "instances", "network", "features")
CARD_CLASSES = {view: f"tlx-area-{view}" for view in VIEWS}

#: Installed once the page is drawn: attributes every document change to a view card.
INSTALL_JS = """(cards) => {
  const doc = Bokeh.documents[0];
  let owner = new Map();
  const index = () => {
    owner = new Map();
    for (const root of doc.roots()) {
      for (const m of root.references()) {
        const css = m.css_classes ?? [];
        for (const [view, cls] of Object.entries(cards)) {
          if (css.includes(cls)) for (const r of m.references()) owner.set(r, view);
        }
      }
    }
  };
  index();
  const state = {events: [], paints: [], patches: []};
  // how long the browser takes to apply each message from the server (parse to models)
  const apply = doc.apply_json_patch.bind(doc);
  doc.apply_json_patch = (...args) => {
    const t0 = performance.now();
    try { return apply(...args); }
    finally { state.patches.push([t0, performance.now()]); }
  };
  let pending = false;
  const paint = () => {
    if (pending) return;
    pending = true;
    requestAnimationFrame(() => requestAnimationFrame(() => {
      pending = false; state.paints.push(performance.now());
    }));
  };
  doc.on_change((ev) => {
    const model = ev.model ?? null;
    let view = model ? owner.get(model) : undefined;
    if (model && view === undefined) { index(); view = owner.get(model); }
    state.events.push([performance.now(), view ?? 'page', ev.constructor.name,
                       model ? model.type : '', ev.attr ?? '']);
    paint();
  }, false);
  window.__tlx = state;
}"""


class Probe:
    """One Chromium page of the served app, with its websocket frames counted."""

    def __init__(self, context, url: str, viewport: tuple[int, int], trace: bool = False,
                 js_profile: bool = False):
        self.trace = trace
        self.js_profile = js_profile
        self.page = context.new_page()
        self.page.set_viewport_size({"width": viewport[0], "height": viewport[1]})
        self.frames: list[tuple[float, int, bool]] = []  # (monotonic, bytes, starts a message)
        self.page.on("websocket", self._on_socket)
        started = time.monotonic()
        self.page.goto(url)
        for marker in (".tlx-accuracy-chart canvas", ".tlx-network-plot canvas",
                       ".tlx-discriminability-plot canvas", ".tlx-instance-scatter canvas"):
            self.page.wait_for_selector(marker, state="attached", timeout=180000)
        self.first_drawn_s = time.monotonic() - started
        self.wait_quiet(2.0)
        self.first_idle_s = self.last_frame_at() - started
        self.page.evaluate(INSTALL_JS, CARD_CLASSES)

    def _on_socket(self, ws) -> None:
        ws.on("framereceived", lambda payload: self.frames.append(
            (time.monotonic(), len(payload) if payload is not None else 0,
             isinstance(payload, str) and '"msgtype"' in payload[:200])))

    def last_frame_at(self) -> float:
        return self.frames[-1][0] if self.frames else time.monotonic()

    def wait_quiet(self, quiet: float, timeout: float = 90.0) -> None:
        """Wait until nothing has arrived for ``quiet`` seconds, counted from now at the earliest."""
        start = time.monotonic()
        end = start + timeout
        while time.monotonic() < end:
            self.page.wait_for_timeout(100)
            if time.monotonic() - max(self.last_frame_at(), start) >= quiet:
                return
        raise RuntimeError("the page never went quiet")

    def measure(self, action, quiet: float) -> dict:
        """Run ``action(page)`` and time what the server sends until it is quiet."""
        self.wait_quiet(quiet)
        self.page.evaluate(
            "() => { window.__tlx.events = []; window.__tlx.paints = []; window.__tlx.patches = []; }")
        before = len(self.frames)
        cdp = None
        if self.js_profile:  # the browser's CPU profile of this interaction (Chrome DevTools)
            cdp = self.page.context.new_cdp_session(self.page)
            cdp.send("Profiler.enable")
            cdp.send("Profiler.setSamplingInterval", {"interval": 200})
            cdp.send("Profiler.start")
        t0 = self.page.evaluate("() => performance.now()")
        action(self.page)
        self.wait_quiet(quiet)
        if cdp is not None:
            print_js_profile(cdp.send("Profiler.stop")["profile"])
            cdp.detach()
        state = self.page.evaluate("() => window.__tlx")
        received = self.frames[before:]
        paints = sorted(state["paints"])
        per_view: dict[str, float] = {}
        if self.trace:
            kinds: dict[str, int] = {}
            for _t, view, kind, model, attr in state["events"]:
                key = f"{view} {kind} {model}.{attr}"
                kinds[key] = kinds.get(key, 0) + 1
            print("  patches applied (ms after the click, ms taken, what changed):")
            for a, b in state["patches"]:
                inside: dict[str, int] = {}
                for t, view, kind, model, attr in state["events"]:
                    if a <= t <= b:
                        key = f"{view}:{model.split('.')[-1]}.{attr}"
                        inside[key] = inside.get(key, 0) + 1
                print(f"    {a - t0:6.0f} {b - a:5.0f}  " + ", ".join(
                    f"{k}×{n}" if n > 1 else k for k, n in inside.items())[:300])
            print(f"  paints (ms after the click): {[round(p - t0) for p in state['paints']]}")
            sizes = [(round(size / 1024, 1), "T" if text else "b")
                     for _, size, text in self.frames[before:]]
            print(f"  frames in order (KB, T: a message's header): {sizes}")
            print(f"  {len(state['events'])} changes, {len(self.frames) - before} frames:",
                  ", ".join(f"{k} ×{n}" for k, n in sorted(kinds.items(), key=lambda kv: -kv[1])))
        for t, view, *_ in state["events"]:
            per_view[view] = max(per_view.get(view, 0.0), t)
        for view, t in per_view.items():
            painted = next((p for p in paints if p >= t), t)
            per_view[view] = (painted - t0) / 1000.0
        return {"views": per_view, "frames": len(received),
                "messages": sum(starts for *_, starts in received),
                "kb": sum(size for _, size, _ in received) / 1024}


def print_js_profile(profile: dict, top: int = 14) -> None:
    """The functions the browser spent most time in (self time), from a DevTools CPU profile."""
    nodes = {n["id"]: n for n in profile["nodes"]}
    deltas = profile.get("timeDeltas", [])
    self_ms: dict[str, float] = {}
    for node_id, dt in zip(profile.get("samples", []), deltas):
        frame = nodes[node_id]["callFrame"]
        name = frame["functionName"] or "(anonymous)"
        where = frame["url"].rsplit("/", 1)[-1].split("?")[0]
        key = f"{name} {where}:{frame['lineNumber']}" if where else name
        self_ms[key] = self_ms.get(key, 0.0) + dt / 1000.0
    busy = sum(v for k, v in self_ms.items() if k not in ("(idle)", "(program)"))
    print(f"  browser CPU profile: {busy:.0f} ms busy; top functions by self time (ms):")
    for key, ms in sorted(self_ms.items(), key=lambda kv: -kv[1])[:top]:
        print(f"    {ms:7.1f}  {key}")


# ------------------------------------------------------------------------------ interactions
def click_table_row(cls: str):
    def act(page):
        page.locator('.tlx-confusion-table .tabulator-cell[tabulator-field="class"]',
                     has_text=cls).first.click()
    return act


def choose_class(cls: str):
    def act(page):
        page.locator(".tlx-network-titlebar select").first.select_option(cls)
    return act


def click_network_point(source: str, index: int):
    def act(page):
        pos = page.evaluate(
            """([source, i]) => {
                const doc = Bokeh.documents[0];
                const fig = doc.get_model_by_name('tlx-network-figure');
                const data = doc.get_model_by_name(source).data;
                const view = Bokeh.index.find_one(fig);
                const r = view.canvas_view.el.getBoundingClientRect();
                return [r.left + view.frame.x_scale.compute(data.x[i]),
                        r.top + view.frame.y_scale.compute(data.y[i])];
            }""", [source, index])
        page.mouse.click(pos[0], pos[1])
    return act


def choose_scope(label: str):
    def act(page):
        page.locator(".tlx-feature-view select").first.select_option(label=label)
    return act


def toggle_feature_check(row: int):
    def act(page):
        page.locator(".tlx-feature-ranking .tabulator-row").nth(row).locator(
            "input[type=checkbox]").first.click()
    return act


def remove_instance_class(page):
    page.locator(".tlx-class-selector .choices__button").last.click()


def add_instance_class(cls: str):
    def act(page):
        box = page.locator(".tlx-class-selector input.choices__input--cloned").first
        box.click()
        box.fill(cls)
        page.keyboard.press("Enter")
        page.keyboard.press("Escape")
    return act


def current_class(page) -> str:
    return page.locator(".tlx-network-titlebar select").first.input_value()


def class_options(page) -> list[str]:
    return page.locator(".tlx-network-titlebar select option").evaluate_all(
        "os => os.map(o => o.value)")


def plan(page, classes_to_visit: int) -> list[tuple[str, object]]:
    """The interactions, in order: new classes then revisits, by table and by selector."""
    classes = [c for c in class_options(page) if c != current_class(page)]
    table_new = classes[:classes_to_visit]
    selector_new = classes[classes_to_visit:2 * classes_to_visit]
    steps: list[tuple[str, object]] = []
    steps += [("table row: new class", click_table_row(c)) for c in table_new]
    steps += [("table row: revisited class", click_table_row(c)) for c in table_new]
    steps += [("class selector: new class", choose_class(c)) for c in selector_new]
    steps += [("class selector: revisited class", choose_class(c)) for c in selector_new]
    for i in range(classes_to_visit):
        steps.append(("neuron click", click_network_point("tlx-network-labels", i)))
        steps.append(("weight click", click_network_point("tlx-network-squares", i)))
    for _ in range(classes_to_visit):
        steps.append(("feature scope", choose_scope("All classes")))
        steps.append(("feature scope", choose_scope(current_class(page))))
    for i in range(classes_to_visit):
        steps.append(("feature check", toggle_feature_check(6 + i)))  # beyond the top five
    for i in range(classes_to_visit):
        steps.append(("feature check", toggle_feature_check(6 + i)))  # beyond the top five
    steps.append(("instance classes", remove_instance_class))
    steps.append(("instance classes", add_instance_class(classes[-1])))
    return steps


def summarise(results: dict[str, list[dict]]) -> list[str]:
    lines = ["| interaction | n | all views median / max (s) | " + " | ".join(VIEWS)
             + " | messages | frames | KB |",
             "|---|---:|---:|" + "---:|" * len(VIEWS) + "---:|---:|---:|"]
    for name, runs in results.items():
        alls = [max((t for v, t in r["views"].items() if v in VIEWS), default=0.0) for r in runs]
        cells = []
        for view in VIEWS:
            times = [r["views"][view] for r in runs if view in r["views"]]
            cells.append(f"{statistics.median(times):.2f}" if times else "–")
        lines.append(
            f"| {name} | {len(runs)} | {statistics.median(alls):.2f} / {max(alls):.2f} | "
            + " | ".join(cells)
            + f" | {statistics.median(r['messages'] for r in runs):.0f}"
            + f" | {statistics.median(r['frames'] for r in runs):.0f}"
            + f" | {statistics.median(r['kb'] for r in runs):.0f} |")
    return lines


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("bundle", type=Path)
    parser.add_argument("--classes", type=int, default=3,
                        help="classes visited per kind of class switch (each then revisited)")
    parser.add_argument("--pages", type=int, default=1, help="fresh pages, one after another")
    parser.add_argument("--cold", action="store_true",
                        help="each page in a new browser context (nothing cached: a first visit)")
    parser.add_argument("--quiet", type=float, default=1.5,
                        help="seconds without a message that end an interaction")
    parser.add_argument("--viewport", default="1920x1080")
    parser.add_argument("--js-profile", action="store_true",
                        help="print the browser's CPU profile of each interaction")
    parser.add_argument("--only", nargs="*", help="interactions whose names start with these")
    parser.add_argument("--trace", action="store_true",
                        help="print the document changes of each interaction by kind")
    parser.add_argument("--write", type=Path, help="append the table to this markdown file")
    args = parser.parse_args(argv)
    from playwright.sync_api import sync_playwright

    port = free_port()
    url = f"http://127.0.0.1:{port}/"
    server = subprocess.Popen(
        [sys.executable, "-m", "tlexplorer.cli", "serve", str(args.bundle), "--port", str(port),
         "--address", "127.0.0.1"], env=dict(os.environ, PYTHONUNBUFFERED="1"),
        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True)
    viewport = tuple(int(v) for v in args.viewport.split("x"))
    results: dict[str, list[dict]] = {}
    firsts = []
    try:
        started = wait_for(url)
        with sync_playwright() as pw:
            browser = pw.chromium.launch(executable_path="/usr/bin/chromium", args=[
                "--headless", "--no-sandbox", "--disable-gpu", "--disable-quic",
                "--disable-background-networking"])
            # one browser profile, as a user's: the server's very first page fills its cache of
            # the scripts (5 MB); with --cold every page is a first visit (a new context)
            context = browser.new_context()
            warm = Probe(context, url, viewport)
            server_first = (warm.first_drawn_s, warm.first_idle_s)
            warm.page.close()
            for _ in range(args.pages):
                if args.cold:
                    context.close()
                    context = browser.new_context()
                probe = Probe(context, url, viewport, args.trace, args.js_profile)
                firsts.append((probe.first_drawn_s, probe.first_idle_s))
                for name, action in plan(probe.page, args.classes):
                    if args.only and not name.startswith(tuple(args.only)):
                        continue
                    if args.trace:
                        print(name)
                    results.setdefault(name, []).append(probe.measure(action, args.quiet))
                probe.page.close()
            browser.close()
    finally:
        os.killpg(server.pid, 15)
        server.wait(timeout=30)
    header = (f"bench_interaction: {args.bundle}, {args.viewport}, {os.cpu_count()} CPUs, "
              f"load {os.getloadavg()[0]:.2f}, server answered after {started:.1f} s; the server's "
              f"first page (scripts not cached): drawn {server_first[0]:.1f} s, idle "
              f"{server_first[1]:.1f} s; then pages{' (scripts not cached)' if args.cold else ''}: "
              + ", ".join(f"drawn {d:.1f} s, idle {i:.1f} s" for d, i in firsts))
    table = summarise(results)
    print(header)
    print("\n".join(table))
    if args.write:
        with open(args.write, "a") as fh:
            fh.write(f"\n{header}\n\n" + "\n".join(table) + "\n")


if __name__ == "__main__":
    main()
