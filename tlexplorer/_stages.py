"""Wall time and peak memory of each stage of the analysis (the manifest's ``stages``).

Peak resident memory per stage comes from Linux's ``VmHWM`` (``/proc/self/status``), reset at the
start of every stage by writing ``5`` to ``/proc/self/clear_refs``; the resident memory at the start
(``VmRSS``) is kept beside it, so that what a stage added shows apart from what earlier stages left. Where that reset is refused (not
Linux, a locked-down container) each stage reports the peak of the process so far, and
``peak_rss_scope`` says ``"process"``. On a GPU the peak of torch's allocated memory is recorded
the same way (``torch.cuda.reset_peak_memory_stats``).
"""
from __future__ import annotations

import contextlib
import resource
import sys
import time

__all__ = ["StageLog"]


def _reset_peak_rss() -> bool:
    try:
        with open("/proc/self/clear_refs", "w") as f:
            f.write("5")
        return True
    except OSError:
        return False


def _status_bytes(field: str) -> "int | None":
    """A ``kB`` line of ``/proc/self/status`` in bytes; None where there is none (not Linux)."""
    try:
        with open("/proc/self/status") as status:
            for line in status:
                if line.startswith(field + ":"):
                    return int(line.split()[1]) * 1024
    except OSError:
        pass
    return None


def _peak_rss_bytes() -> int:
    peak = _status_bytes("VmHWM")
    if peak is not None:
        return peak
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return int(peak if sys.platform == "darwin" else peak * 1024)  # bytes on macOS, KiB on Linux


class StageLog:
    """Seconds and peak memory per stage; a stage measured twice adds its seconds, keeps its peak.

    Parameters
    ----------
    device : torch.device, optional
        A CUDA device also gets its peak allocated bytes per stage.
    """

    def __init__(self, device=None):
        self.device = device if device is not None and getattr(device, "type", "") == "cuda" else None
        self.seconds: dict = {}
        self.peak_rss: dict = {}
        self.start_rss: dict = {}  # resident bytes when the stage (first) started; None off Linux
        self.peak_device: dict = {}
        self.background: dict = {}  # {name: seconds} of work beside the stages (not in the total)
        self.rss_scope = "stage"

    @contextlib.contextmanager
    def measure(self, name: str):
        if not _reset_peak_rss():
            self.rss_scope = "process"
        self.start_rss.setdefault(name, _status_bytes("VmRSS"))
        if self.device is not None:
            import torch

            torch.cuda.reset_peak_memory_stats(self.device)
        started = time.perf_counter()
        try:
            yield
        finally:
            self.seconds[name] = self.seconds.get(name, 0.0) + time.perf_counter() - started
            # at least the memory it started with: Linux updates VmHWM lazily, and memory
            # another thread returns with madvise() leaves the mark below a reading taken earlier
            self.peak_rss[name] = max(self.peak_rss.get(name, 0), _peak_rss_bytes(),
                                      self.start_rss.get(name) or 0)
            if self.device is not None:
                import torch

                self.peak_device[name] = max(self.peak_device.get(name, 0),
                                             int(torch.cuda.max_memory_allocated(self.device)))

    def add_seconds(self, name: str, seconds: float) -> None:
        """A stage timed elsewhere (no memory figure)."""
        self.seconds[name] = self.seconds.get(name, 0.0) + seconds

    def as_manifest(self) -> dict:
        """``{"peak_rss_scope": ..., "stages": [{"name", "seconds", "start_rss_bytes",
        "peak_rss_bytes", "peak_device_bytes"}], "background": [{"name", "seconds"}]}``, lists in
        the order the stages ran (the manifest's keys are sorted, lists keep their order)."""
        return {"peak_rss_scope": self.rss_scope,
                "stages": [{"name": name, "seconds": round(seconds, 3),
                            "start_rss_bytes": self.start_rss.get(name),
                            "peak_rss_bytes": self.peak_rss.get(name),
                            "peak_device_bytes": self.peak_device.get(name)}
                           for name, seconds in self.seconds.items()],
                "background": [{"name": name, "seconds": round(seconds, 3)}
                               for name, seconds in self.background.items()]}
