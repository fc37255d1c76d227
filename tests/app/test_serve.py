"""Starting the server: a port in use is one line and a non-zero exit, and "serving at" appears
only once the URL answers."""
from __future__ import annotations

import io
import socket
import subprocess
import sys
import time
from pathlib import Path

import panel as pn
import pytest

from tlexplorer.app.serve import ServeError, announce_when_ready, check_port_free, serve


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def test_port_in_use_is_one_line_and_exit_2(synth_path):
    with socket.socket() as busy:
        busy.bind(("127.0.0.1", 0))
        busy.listen()
        port = busy.getsockname()[1]
        with pytest.raises(ServeError, match=f"port {port} on 127.0.0.1 is already in use"):
            check_port_free("127.0.0.1", port)
        done = subprocess.run(
            [sys.executable, "-m", "tlexplorer.cli", "serve", str(synth_path), "--port",
             str(port), "--address", "127.0.0.1"], capture_output=True, text=True, timeout=120)
    assert done.returncode == 2
    assert "serving" not in done.stdout
    assert done.stderr.strip().splitlines() == [
        f"tlexplorer: error: port {port} on 127.0.0.1 is already in use: stop the other server "
        "or choose another with --port"]


def test_a_bad_address_is_one_line():
    with pytest.raises(ServeError, match="cannot listen on 'no-such-host.invalid'"):
        check_port_free("no-such-host.invalid", 5006)


def test_serving_at_is_printed_once_the_server_answers(synth_path):
    port = _free_port()
    url = f"http://127.0.0.1:{port}/"
    out = io.StringIO()
    thread = announce_when_ready(url, timeout=60, stream=out)
    time.sleep(1.0)
    assert out.getvalue() == ""  # nothing listens yet
    server = serve([str(synth_path)], port=port, address="127.0.0.1", threaded=True,
                   verbose=False, warm=False)
    try:
        thread.join(30)
        assert out.getvalue() == f"tlexplorer: serving at {url}\n"
    finally:
        server.stop()
        pn.config.nthreads = None


def test_several_processes_serve_and_end_with_the_parent(synth_path):
    import signal
    import urllib.request

    from page_probe import open_pages

    port = _free_port()
    server = subprocess.Popen(
        [sys.executable, "-m", "tlexplorer.cli", "serve", str(synth_path), "--port", str(port),
         "--address", "127.0.0.1", "--num-procs", "2"], stdout=subprocess.PIPE,
        stderr=subprocess.PIPE, text=True)
    url = f"http://127.0.0.1:{port}/"
    try:
        for _ in range(600):
            try:
                with urllib.request.urlopen(url + "tlx-health", timeout=2):
                    break
            except Exception:
                time.sleep(0.1)
        children = Path(f"/proc/{server.pid}/task/{server.pid}/children").read_text().split()
        assert len(children) == 2
        results = open_pages(url, 2, timeout=120)
        assert [r.error for r in results] == [None, None]
    finally:
        server.send_signal(signal.SIGTERM)
        out, _err = server.communicate(timeout=30)
    assert out.count("serving at") == 1
    time.sleep(2)
    for child in children:
        stat = Path(f"/proc/{child}/stat")
        assert not stat.exists() or stat.read_text().split()[2] == "Z"


def test_thumbnails_are_served_for_loaded_bundles_only(synth_path, tmp_path, run_server):
    import json
    import urllib.error
    import urllib.request

    from tlexplorer.app.loading import load_bundle

    bundle = load_bundle(synth_path)
    url = run_server(synth_path)
    with urllib.request.urlopen(f"{url}tlx-thumbnail/{bundle.key}/3.png", timeout=10) as r:
        assert r.headers["Content-Type"] == "image/png" and r.read()[:4] == b"\x89PNG"
    for bad in (f"tlx-thumbnail/{'0' * 20}/3.png", f"tlx-thumbnail/{bundle.key}/99999.png",
                "tlx-thumbnail/../etc/3.png"):
        with pytest.raises(urllib.error.HTTPError) as info:
            urllib.request.urlopen(url + bad, timeout=10)
        assert info.value.code == 404
        info.value.close()

    users = tmp_path / "users.json"
    users.write_text(json.dumps({"ann": "pw"}))
    url = run_server(synth_path, basic_auth=str(users))

    class NoRedirect(urllib.request.HTTPRedirectHandler):
        def redirect_request(self, *args, **kwargs):
            return None
    with pytest.raises(urllib.error.HTTPError) as info:  # behind the login like every page
        urllib.request.build_opener(NoRedirect).open(
            f"{url}tlx-thumbnail/{bundle.key}/3.png", timeout=10)
    assert info.value.code in (302, 403) and "login" in info.value.headers.get("Location", "login")
    info.value.close()
