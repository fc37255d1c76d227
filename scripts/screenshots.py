"""Screenshots of the real dashboard for the README: the whole page and one per view.

Usage: python scripts/screenshots.py BUNDLE OUT_DIR [--port 5077]

Serves BUNDLE with `tlexplorer serve` on localhost, drives Debian's chromium with Playwright, waits
until every view has drawn, and writes the whole page at two common screen sizes
(dashboard-1920x1080.png, dashboard-1440x900.png), stats.png, instances.png, network.png and
features.png into OUT_DIR, and network-paper-scale.png with the similarity gray scale on the
paper's 0 to 1 (the view's default spreads it over the shown range).
"""
from __future__ import annotations

import argparse
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

CHROMIUM_ARGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
                 "--disable-background-networking", "--disable-component-update", "--disable-sync"]
VIEWS = {"stats": ".tlx-stats-view", "instances": ".tlx-instance-view",
         "network": ".tlx-network-view", "features": ".tlx-feature-view"}


def wait_for_server(url: str, timeout: float = 60.0) -> None:
    end = time.monotonic() + timeout
    while time.monotonic() < end:
        try:
            urllib.request.urlopen(url, timeout=30)
            return
        except OSError:
            time.sleep(0.5)
    raise SystemExit(f"server at {url} did not answer within {timeout:.0f} s")


def ready(page, url: str) -> None:
    """Open the dashboard and wait until every view has drawn and settled."""
    page.goto(url)
    for selector in VIEWS.values():
        page.wait_for_selector(f"{selector} canvas", timeout=60_000)
    page.wait_for_timeout(4000)  # background jobs (network blocks, class layouts) settle
    pending = page.locator(".tlx-feature-view .tlx-featurevis-pending")
    for _ in range(60):  # feature visualizations of the ranking list, computed on demand
        if pending.count() == 0:
            break
        page.wait_for_timeout(1000)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("bundle", type=Path)
    parser.add_argument("out", type=Path)
    parser.add_argument("--port", type=int, default=5077)
    parser.add_argument("--chromium", default="/usr/bin/chromium")
    args = parser.parse_args()
    args.out.mkdir(parents=True, exist_ok=True)
    server = subprocess.Popen([sys.executable, "-m", "tlexplorer.cli", "serve", str(args.bundle),
                               "--port", str(args.port)])
    try:
        url = f"http://localhost:{args.port}/"
        wait_for_server(url)
        from playwright.sync_api import sync_playwright

        with sync_playwright() as p:
            browser = p.chromium.launch(executable_path=args.chromium, args=CHROMIUM_ARGS)
            small = browser.new_page(viewport={"width": 1440, "height": 900})
            ready(small, url)
            small.screenshot(path=str(args.out / "dashboard-1440x900.png"))
            small.close()
            page = browser.new_page(viewport={"width": 1920, "height": 1080})
            ready(page, url)
            page.screenshot(path=str(args.out / "dashboard-1920x1080.png"))
            for name, selector in VIEWS.items():
                page.locator(selector).first.screenshot(path=str(args.out / f"{name}.png"))
            # the network view with the paper's similarity scale (0 brightest, 1 darkest)
            page.locator(".tlx-similarity-switch button", has_text="0–1").first.click()
            page.wait_for_timeout(2000)
            page.locator(VIEWS["network"]).first.screenshot(
                path=str(args.out / "network-paper-scale.png"))
            browser.close()
    finally:
        server.terminate()
        server.wait(timeout=20)
    print(f"screenshots written to {args.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
