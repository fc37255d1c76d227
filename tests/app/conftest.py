"""Fixtures of the app's state tier: a small synthetic bundle, opened once per test session."""
from __future__ import annotations

import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).parent))  # synthetic_bundle.py, also used by tests/ui

import synthetic_bundle  # noqa: E402


def quiet_feature_vis(bundle) -> None:
    """The synthetic models are not real networks: keep the feature-vis worker idle."""
    try:
        from tlexplorer.app.views.neuron_detail import feature_vis_service
    except ImportError:
        return
    feature_vis_service(bundle).unavailable = "synthetic bundle: no model"


@pytest.fixture(scope="session")
def synth_path(tmp_path_factory) -> Path:
    """A 3-class synthetic bundle (40 instances per class and domain, 240 in all)."""
    return synthetic_bundle.make_synthetic_bundle(
        tmp_path_factory.mktemp("app") / "bundle", per_class=40, seed=0)


@pytest.fixture(scope="session")
def synth_bundle(synth_path):
    bundle = synthetic_bundle.open_test_bundle(synth_path)
    quiet_feature_vis(bundle)
    return bundle


@pytest.fixture()
def synth_session(synth_bundle):
    from tlexplorer.app.state import Session

    return Session(synth_bundle)


def free_port() -> int:
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture()
def run_server():
    """``run_server(bundle_path, **serve_kwargs) -> url``: ``tlexplorer serve`` on a free port in
    a thread, answering when returned; stopped, and Panel's process settings restored, after the
    test."""
    import time
    import urllib.request

    import panel as pn

    from tlexplorer.app.serve import serve

    servers = []
    settings = (pn.config.cookie_secret, pn.config.nthreads)

    def start(path, **kwargs) -> str:
        port = free_port()
        kwargs = {"verbose": False, "warm": False, **kwargs}
        servers.append(serve([str(path)], port=port, address="127.0.0.1", threaded=True,
                             **kwargs))
        url = f"http://127.0.0.1:{port}/"
        for _ in range(300):
            try:
                with urllib.request.urlopen(url + "tlx-health", timeout=2):
                    return url
            except Exception:
                time.sleep(0.1)
        raise AssertionError(f"the test server at {url} did not answer")
    yield start
    for server in servers:
        server.stop()
    pn.config.cookie_secret, pn.config.nthreads = settings
