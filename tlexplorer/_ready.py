"""Say that a server is ready only once it answers (its warm-up can take minutes under load)."""
from __future__ import annotations

import threading
import time
import urllib.error
import urllib.request
from typing import Callable

#: tlexplorer's health endpoint (``tlexplorer.app.serve``): answers once the server runs, without
#: building a page (Panel's ``/liveness?endpoint=`` would build one for anybody who asks).
HEALTH = "tlx-health"


def probe_host(address: "str | None") -> str:
    """The host to probe a server listening on ``address`` at (every interface: this machine)."""
    return "localhost" if address in (None, "", "0.0.0.0", "::") else address


def answers(url: str, timeout: float = 2.0) -> bool:
    """Whether an HTTP server answers at ``url`` (any status counts; a refused connection does not)."""
    try:
        with urllib.request.urlopen(url, timeout=timeout):
            return True
    except urllib.error.HTTPError:
        return True
    except (OSError, ValueError):
        return False


def when_answering(url: str, then: Callable[[], object], *, every: float = 0.25,
                   give_up_after: float = 3600.0) -> threading.Thread:
    """Call ``then()`` from a background thread as soon as ``url`` answers (or never, after
    ``give_up_after`` seconds). Returns the (daemon) thread."""
    def wait() -> None:
        deadline = time.monotonic() + give_up_after
        while time.monotonic() < deadline:
            if answers(url):
                then()
                return
            time.sleep(every)

    thread = threading.Thread(target=wait, name="tlexplorer-ready", daemon=True)
    thread.start()
    return thread
