"""Many colleagues at once: open N sessions together against a served bundle and time each page.

Starts ``tlexplorer serve BUNDLE`` in its own process (``--num-procs`` as given), then for each N
opens N pages at once with a light websocket client (``tests/app/page_probe.py``: what a browser
sends, without a browser's own CPU cost on this machine) and reports, per N, the median and
maximum seconds until the frame arrived and until all four views were in the page, the errors,
and the server's resident memory (all its processes). Then it opens and closes ``--churn``
sessions in batches and reports the memory once the server has let them go, and it fires
``--abandoned`` page requests that never connect (a tab closed at once) before one more page.

    python benchmarks/bench_serve.py runs/digits/bundle
    python benchmarks/bench_serve.py runs/digits/bundle --num-procs 2 --sessions 1,5,10,20
    python benchmarks/bench_serve.py runs/digits/bundle --browser   # one page in Chromium too

Targets (issue 10, 2-core machine): one session ≤ 3 s to all four views (quiet); 20 at once:
0 errors, median ≤ 20 s, max ≤ 40 s; RSS after 100 sessions ≤ RSS after the first + 300 MB.
"""
from __future__ import annotations

import argparse
import os
import socket
import statistics
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "tests" / "app"))

from page_probe import open_pages  # noqa: E402


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def process_tree(pid: int) -> "list[int]":
    pids, todo = [], [pid]
    while todo:
        p = todo.pop()
        pids.append(p)
        try:
            for task in os.listdir(f"/proc/{p}/task"):
                with open(f"/proc/{p}/task/{task}/children") as fh:
                    todo += [int(c) for c in fh.read().split()]
        except OSError:
            pass
    return pids


def rss_mb(pid: int) -> float:
    """Resident memory of the server and its forked processes, MB."""
    total = 0
    for p in process_tree(pid):
        try:
            with open(f"/proc/{p}/status") as fh:
                for line in fh:
                    if line.startswith("VmRSS:"):
                        total += int(line.split()[1])
        except OSError:
            pass
    return total / 1024


def wait_for(url: str, timeout: float = 300) -> float:
    start = time.monotonic()
    while time.monotonic() - start < timeout:
        try:
            with urllib.request.urlopen(url + "tlx-health", timeout=2):
                return time.monotonic() - start
        except Exception:
            time.sleep(0.2)
    raise SystemExit(f"the server at {url} did not answer within {timeout} s")


def summary(results) -> dict:
    done = [r.done_s for r in results if r.done_s is not None]
    frames = [r.frame_s for r in results if r.frame_s is not None]
    return {"n": len(results), "errors": sum(r.error is not None for r in results),
            "frame_median": statistics.median(frames) if frames else None,
            "done_median": statistics.median(done) if done else None,
            "done_max": max(done) if done else None,
            "kb": statistics.median(r.bytes_received for r in results) / 1024,
            "first_error": next((r.error for r in results if r.error), None)}


def browser_page(url: str) -> float:
    """Seconds until all four views are drawn in Debian's Chromium (one page)."""
    from playwright.sync_api import sync_playwright

    ready = [".tlx-accuracy-chart canvas", ".tlx-network-plot canvas",
             ".tlx-discriminability-plot canvas", ".tlx-instance-scatter canvas"]
    with sync_playwright() as pw:
        browser = pw.chromium.launch(executable_path="/usr/bin/chromium", args=[
            "--headless", "--no-sandbox", "--disable-gpu", "--disable-quic",
            "--disable-background-networking"])
        times = []
        for _ in range(2):  # the first also fills the browser's cache of the JS bundles
            page = browser.new_page(viewport={"width": 1920, "height": 1080})
            start = time.monotonic()
            page.goto(url)
            for selector in ready:
                page.wait_for_selector(selector, state="attached", timeout=120000)
            times.append(time.monotonic() - start)
            page.close()
        browser.close()
    return times[-1]


def fmt(v, spec=".1f") -> str:
    return "–" if v is None else format(v, spec)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("bundle", type=Path)
    parser.add_argument("--sessions", default="1,5,10,20")
    parser.add_argument("--num-procs", type=int, default=1)
    parser.add_argument("--churn", type=int, default=100, help="sessions opened and closed")
    parser.add_argument("--abandoned", type=int, default=60)
    parser.add_argument("--browser", action="store_true", help="also time one Chromium page")
    parser.add_argument("--timeout", type=float, default=180)
    args = parser.parse_args()

    port = free_port()
    url = f"http://127.0.0.1:{port}/"
    env = dict(os.environ, PYTHONUNBUFFERED="1")
    server = subprocess.Popen(
        [sys.executable, "-m", "tlexplorer.cli", "serve", str(args.bundle), "--port", str(port),
         "--address", "127.0.0.1", "--num-procs", str(args.num_procs), "--threads", "2"],
        env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True)
    try:
        started = wait_for(url)
        print(f"# bench_serve: {args.bundle}, --num-procs {args.num_procs}, "
              f"{os.cpu_count()} CPUs, load {os.getloadavg()[0]:.2f}; server answered after "
              f"{started:.1f} s\n")
        print("| sessions at once | errors | frame median s | all views median s | "
              "all views max s | KB per page | server RSS MB |")
        print("|---:|---:|---:|---:|---:|---:|---:|")
        first_rss = None
        for n in [int(x) for x in args.sessions.split(",")]:
            s = summary(open_pages(url, n, timeout=args.timeout))
            rss = rss_mb(server.pid)
            first_rss = first_rss if first_rss is not None else rss
            print(f"| {n} | {s['errors']} | {fmt(s['frame_median'], '.2f')} | "
                  f"{fmt(s['done_median'])} | {fmt(s['done_max'])} | {s['kb']:.0f} | {rss:.0f} |"
                  + (f" first error: {s['first_error']}" if s["first_error"] else ""), flush=True)
        if args.churn:
            batch, opened = 10, 0
            while opened < args.churn:
                open_pages(url, min(batch, args.churn - opened), timeout=args.timeout)
                opened += batch
            time.sleep(40)  # Bokeh lets closed sessions go after 15 s, checking every 17 s
            print(f"\nRSS after the first session {first_rss:.0f} MB; after {args.churn} more "
                  f"sessions opened and closed {rss_mb(server.pid):.0f} MB")
        if args.abandoned:
            def abandon() -> None:
                try:
                    urllib.request.urlopen(url, timeout=5).read(1)
                except Exception:
                    pass
            import threading
            threads = [threading.Thread(target=abandon) for _ in range(args.abandoned)]
            start = time.monotonic()
            for t in threads:
                t.start()
            for t in threads:
                t.join()
            fired = time.monotonic() - start
            s = summary(open_pages(url, 1, timeout=args.timeout))
            print(f"{args.abandoned} page requests that never connect took {fired:.1f} s; the "
                  f"next page then had all views after {fmt(s['done_median'])} s "
                  f"(errors {s['errors']})")
        if args.browser:
            print(f"one page in Chromium, 1920×1080: all four views drawn after "
                  f"{browser_page(url):.1f} s (second load)")
    finally:
        import signal
        os.killpg(server.pid, signal.SIGTERM)  # the server and the processes it forked
        try:
            server.wait(20)
        except subprocess.TimeoutExpired:
            os.killpg(server.pid, signal.SIGKILL)


if __name__ == "__main__":
    main()
