"""Reaching a Dask cluster: a local one of N worker processes, or an existing scheduler.

Dask and distributed are an optional extra (``pip install 'tlexplorer[distributed]'``); everything
that fails here - the extra missing, a malformed address, a scheduler that does not answer - is a
:class:`~tlexplorer.errors.ClusterError` of one line naming what to install or the address.
"""
from __future__ import annotations

import contextlib
import logging
import os
from typing import Iterator

from ..errors import ClusterError

INSTALL_HINT = "pip install 'tlexplorer[distributed]'"


def require_distributed():
    """The ``distributed`` module, or a one-line error saying what to install."""
    try:
        import dask  # noqa: F401
        import distributed
    except ImportError as exc:
        missing = exc.name or "distributed"
        raise ClusterError(f"running the analysis on a Dask cluster needs {missing}, which is not "
                           f"installed: {INSTALL_HINT}") from None
    return distributed


def _probe(address: str, timeout: "float | None") -> None:
    """Open and close one connection to the scheduler, so that an unreachable address fails before a
    ``Client`` exists (a failed Client keeps retrying to close itself and prints tracebacks)."""
    import asyncio

    import dask
    from dask.utils import parse_timedelta
    from distributed.comm import connect

    seconds = timeout if timeout is not None else parse_timedelta(
        dask.config.get("distributed.comm.timeouts.connect"), default="seconds")

    async def once():
        comm = await connect(address, timeout=seconds)
        await comm.close()

    try:
        asyncio.run(once())
    except ValueError as exc:  # no port, unknown scheme
        raise ClusterError(f"{address!r} is not a Dask scheduler address ({exc}); expected "
                           "tcp://HOST:PORT") from None
    except (OSError, asyncio.TimeoutError) as exc:
        words = " ".join(str(exc).split())
        why = (f"no answer within {seconds:g} s" if not words or "timed out" in words.lower()
               else words[:160])
        raise ClusterError(f"cannot reach the Dask scheduler at {address} ({why}); is it running "
                           "there? (DASK_DISTRIBUTED__COMM__TIMEOUTS__CONNECT sets the wait)") from None


def connect(address: str, *, timeout: "float | None" = None):
    """A ``distributed.Client`` of the scheduler at ``address`` (``tcp://HOST:PORT``).

    Parameters
    ----------
    address : str
    timeout : float, optional
        Seconds to wait for the scheduler; default Dask's ``distributed.comm.timeouts.connect``
        (``DASK_DISTRIBUTED__COMM__TIMEOUTS__CONNECT``).

    Raises
    ------
    ClusterError
        The extra is missing, the address is malformed, or the scheduler does not answer.
    """
    distributed = require_distributed()
    _probe(address, timeout)
    kwargs = {} if timeout is None else {"timeout": timeout}  # None: Dask's configured default
    return distributed.Client(address, set_as_default=False, **kwargs)


#: Variables Dask's nanny exports before starting a worker, which a local cluster leaves out.
#: ``MALLOC_TRIM_THRESHOLD_`` makes glibc hand freed memory back at once and turns off its adaptive
#: mmap threshold: every large tensor of a pass is then mapped and page-faulted anew, and the
#: conductance runs 1.7x slower (docs/performance.md). The thread counts go to the worker alone
#: (``env``), since the nanny would also set them in this process's environment.
_NOT_EXPORTED = ("MALLOC_TRIM_THRESHOLD_", "OMP_NUM_THREADS", "MKL_NUM_THREADS", "OPENBLAS_NUM_THREADS")


def start_local_cluster(n_workers: int, *, dashboard_address: "str | None" = ":8787"):
    """A ``(cluster, client)`` pair: ``n_workers`` worker processes of one task thread each on this
    machine, each with its share of the cores for torch.

    Parameters
    ----------
    n_workers : int
    dashboard_address : str or None
        Where the dashboard listens (``":0"``: any free port; None: no dashboard).
    """
    distributed = require_distributed()
    import dask

    if n_workers < 1:
        raise ClusterError(f"--workers must be at least 1, got {n_workers}")
    threads = str(max(1, (os.cpu_count() or 1) // n_workers))
    # the nanny reads this when it is created (and reuses it when it restarts a worker)
    with dask.config.set({f"distributed.nanny.pre-spawn-environ.{name}": None for name in _NOT_EXPORTED}):
        cluster = distributed.LocalCluster(
            n_workers=n_workers, threads_per_worker=1, processes=True,
            dashboard_address=dashboard_address, silence_logs=logging.ERROR,
            env={"OMP_NUM_THREADS": threads, "MKL_NUM_THREADS": threads, "OPENBLAS_NUM_THREADS": threads})
    return cluster, distributed.Client(cluster, set_as_default=False)


@contextlib.contextmanager
def cluster_client(workers: "int | None" = None, scheduler: "str | None" = None, *,
                   timeout: "float | None" = None, dashboard_address: "str | None" = ":8787") -> Iterator:
    """The client ``tlexplorer analyze --workers/--scheduler`` computes with: None without either,
    a local cluster of ``workers`` processes (shut down on exit), or the scheduler at ``scheduler``
    (left running on exit)."""
    if workers is not None and scheduler is not None:
        raise ClusterError("give --workers (a local cluster) or --scheduler (an existing one), not both")
    if workers is None and scheduler is None:
        yield None
        return
    if scheduler is not None:
        client = connect(scheduler, timeout=timeout)
        try:
            yield client
        finally:
            client.close()
        return
    cluster, client = start_local_cluster(workers, dashboard_address=dashboard_address)
    try:
        yield client
    finally:
        client.close()
        cluster.close()
