"""How many path points one forward/backward pass may take: from the memory free on the device.

:func:`free_bytes` asks the device (``torch.cuda.mem_get_info`` plus what torch's caching allocator
holds unused on a GPU; ``MemAvailable`` of ``/proc/meminfo`` on the CPU). :func:`pass_budget` turns it
into the bytes of hooked layer outputs one pass may hold, never above a bound the caller gives
(``tlexplorer analyze --max-chunk-mib``, ``TLX_MAX_CHUNK_MIB``). :func:`points_per_pass` divides that
by the bytes per path point.
"""
from __future__ import annotations

import os

import torch

__all__ = ["CPU_SPEED_BYTES", "FREE_SHARE", "free_bytes", "pass_budget", "points_per_pass"]

#: Share of the free memory the hooked outputs of one pass may take. A pass keeps more than its
#: hooked outputs: the autograd graph saves every layer's input, ReLU masks and pooling indices
#: (3-5x the hooked outputs for AlexNet and ResNet), and the accumulators hold a copy per layer.
FREE_SHARE = {"cpu": 0.1, "cuda": 0.1}

#: On the CPU larger passes are slower, not faster: passes of ~100-200 digits-AlexNet points run
#: ~1.4x faster than one pass over every point (tensors below glibc's 32 MiB mmap threshold are not
#: page-faulted in anew every pass, and stay in cache). So the CPU aims at this many bytes even when
#: more memory is free (docs/performance.md).
CPU_SPEED_BYTES = 64 << 20

#: What :func:`free_bytes` assumes on a CPU system that does not say (no /proc/meminfo, no sysconf).
UNKNOWN_FREE_BYTES = 4 << 30


def free_bytes(device) -> int:
    """Bytes of memory free for new tensors on ``device`` now.

    Parameters
    ----------
    device : str or torch.device
        ``cuda[:N]``: free device memory plus the memory torch's caching allocator reserved but does
        not use (both are available to the next pass). Anything else: the system's available RAM.

    Returns
    -------
    int
    """
    device = torch.device(device)
    if device.type == "cuda":
        free, _total = torch.cuda.mem_get_info(device)
        cached = torch.cuda.memory_reserved(device) - torch.cuda.memory_allocated(device)
        return int(free + max(0, cached))
    return _available_ram()


def _available_ram() -> int:
    try:
        with open("/proc/meminfo") as meminfo:
            for line in meminfo:
                if line.startswith("MemAvailable:"):
                    return int(line.split()[1]) * 1024
    except OSError:
        pass
    try:
        return int(os.sysconf("SC_AVPHYS_PAGES") * os.sysconf("SC_PAGE_SIZE"))
    except (ValueError, OSError, AttributeError):
        return UNKNOWN_FREE_BYTES


def pass_budget(device, max_bytes: "int | None" = None, *, free: "int | None" = None) -> "tuple[int, int]":
    """Bytes of hooked outputs one pass aims at, and the most it may ever take.

    Parameters
    ----------
    device : str or torch.device
    max_bytes : int, optional
        The user's bound; neither value exceeds it.
    free : int, optional
        Free bytes (default: :func:`free_bytes` of ``device``); for tests.

    Returns
    -------
    target : int
        What a pass aims at: ``FREE_SHARE`` of the free memory, on the CPU at most
        ``CPU_SPEED_BYTES``, never above ``max_bytes``.
    limit : int
        What a pass must never exceed: ``FREE_SHARE`` of the free memory and ``max_bytes``.
        :func:`points_per_pass` may go past ``target`` (up to 4x, to keep one instance's path in
        one pass) but not past ``limit``.
    """
    device = torch.device(device)
    if max_bytes is not None and (not isinstance(max_bytes, int) or max_bytes < 1):
        raise ValueError(f"max_bytes must be a positive int or None, got {max_bytes!r}")
    free = free_bytes(device) if free is None else int(free)
    share = FREE_SHARE.get(device.type, FREE_SHARE["cuda"])
    limit = max(1, int(free * share))
    if max_bytes is not None:
        limit = min(limit, max_bytes)
    target = min(limit, CPU_SPEED_BYTES) if device.type == "cpu" else limit
    return target, limit


def points_per_pass(bytes_per_point: int, n_points: int, target: int, limit: int) -> int:
    """Path points per forward/backward pass.

    About ``target`` bytes of hooked outputs, or a whole path of one instance (``n_points``) when
    that costs at most 4 times ``target``; never more than ``limit`` bytes, except that a pass takes
    at least one point.

    Parameters
    ----------
    bytes_per_point : int
        Bytes of every hooked layer output for one path point.
    n_points : int
        Points of one instance's path (``n_steps + 1``).
    target, limit : int
        As returned by :func:`pass_budget`.

    Returns
    -------
    int, at least 1
    """
    per_point = max(1, int(bytes_per_point))
    wanted = max(target // per_point, min(n_points, (4 * target) // per_point))
    return max(1, min(wanted, limit // per_point))
