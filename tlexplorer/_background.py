"""The t-SNE layout computed in a separate process while the model passes run.

The layout needs only the embedding, which the predictions stage writes first; conductance then keeps
the GPU (or most CPU cores) busy for minutes while the CPU has room. A spawned process (not a thread:
openTSNE holds the GIL between its parallel regions, and CUDA forbids fork after it started) runs
:func:`tlexplorer.analysis.embedding.tsne_layout` and sends the layout back through a pipe. Given the
embedding's ``.npy`` file, the child reads it itself: the parent never holds the whole embedding.
Given an array, the parent writes it to a temporary file first, so that the child is always handed
a path: CPython's spawn writes the pickled arguments into the child's pipe while the parent still
holds that pipe's read end, and a child that died while starting left a large argument's write, and
the parent in ``Process.start()``, waiting for good.
"""
from __future__ import annotations

import multiprocessing
import os
import tempfile
import time
import traceback
from pathlib import Path

import numpy as np

__all__ = ["BackgroundLayout"]


def _child(embedding: "np.ndarray | Path", random_state: int, n_jobs: int, conn) -> None:
    try:
        from threadpoolctl import threadpool_limits

        from .analysis.embedding import tsne_layout

        started = time.perf_counter()
        if isinstance(embedding, Path):
            embedding = np.load(embedding, allow_pickle=False)
        with threadpool_limits(n_jobs):  # BLAS in PCA and the exact kNN: no more than our share
            layout = tsne_layout(embedding, random_state=random_state, n_jobs=n_jobs)
        conn.send(("ok", layout, time.perf_counter() - started))
    except BaseException as exc:  # noqa: BLE001 - reported in the parent, with its traceback
        conn.send(("error", f"{type(exc).__name__}: {exc}\n{traceback.format_exc()}", 0.0))
    finally:
        conn.close()


class BackgroundLayout:
    """``tsne_layout(embedding, random_state=..., n_jobs=...)`` in a spawned process.

    Parameters
    ----------
    embedding : ndarray, shape (N, D), or path of such an array's ``.npy`` file
        Loaded in the child (a path's file must stay until :meth:`result` returns; an array is
        written to a temporary file, removed by :meth:`result` or :meth:`stop`).
    random_state : int
    n_jobs : int
        Threads of the child (openTSNE and BLAS).

    Use :meth:`done` to poll, :meth:`result` to wait for ``(layout, seconds)`` and :meth:`stop` to end
    the process early (e.g. when another stage failed); the same layout as the call in this process
    with the same ``n_jobs``.
    """

    def __init__(self, embedding: "np.ndarray | str | os.PathLike", *, random_state: int, n_jobs: int):
        self._temporary: "tempfile.TemporaryDirectory | None" = None
        if isinstance(embedding, (str, os.PathLike)):
            embedding = Path(embedding)
        else:  # the child gets a path, never the array (see the module's docstring)
            self._temporary = tempfile.TemporaryDirectory(prefix="tlexplorer-tsne-")
            path = Path(self._temporary.name) / "embedding.npy"
            np.save(path, np.ascontiguousarray(embedding), allow_pickle=False)
            embedding = path
        context = multiprocessing.get_context("spawn")
        self._recv, send = context.Pipe(duplex=False)
        self._process = context.Process(target=_child, name="tlexplorer-tsne", daemon=True,
                                        args=(embedding, random_state, n_jobs, send))
        self._process.start()
        send.close()  # the child holds the sending end now
        self.n_jobs = n_jobs

    def done(self) -> bool:
        return self._recv.poll()

    def result(self) -> "tuple[np.ndarray, float]":
        """Wait for the layout: ``(layout (N, 2) float32, seconds the child spent)``."""
        try:
            status, payload, seconds = self._recv.recv()
        except EOFError:
            self._process.join()
            raise RuntimeError(f"the t-SNE process ended without a result (exit code "
                               f"{self._process.exitcode})") from None
        finally:
            self._recv.close()
            self._remove_temporary()
        self._process.join()
        if status != "ok":
            raise RuntimeError(f"t-SNE in the background failed: {payload}")
        return payload, seconds

    def stop(self) -> None:
        if self._process.is_alive():
            self._process.terminate()
        self._process.join()
        self._recv.close()
        self._remove_temporary()

    def _remove_temporary(self) -> None:
        if self._temporary is not None:
            self._temporary.cleanup()
            self._temporary = None
