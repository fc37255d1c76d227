"""Write an analysis bundle atomically, resumably, without pickles.

The writer fills a work directory ``<path>.partial/`` next to the bundle. Every artefact is
written to a hidden temporary file and renamed into place, so a file that exists is complete;
``has()`` is how a pipeline skips work that finished before a crash or Ctrl-C. ``finalize()``
writes ``manifest.json`` and renames the work directory onto ``<path>`` (moving a previous bundle
aside first and deleting it last), so ``<path>`` only ever holds a complete bundle.

Example
-------
>>> w = BundleWriter("runs/digits/bundle")                       # doctest: +SKIP
>>> if not w.has_array("tsne"):                                    # doctest: +SKIP
...     w.write_array("tsne", compute_tsne())
>>> w.finalize({"classes": classes, "layers": layers, ...})       # doctest: +SKIP
"""
from __future__ import annotations

import contextlib
import datetime as _dt
import json
import logging
import os
import shutil
from pathlib import Path
from typing import Any, Callable, Iterator

import numpy as np
import polars as pl

from tlexplorer._io import atomic_path
from tlexplorer.bundle import schema
from tlexplorer.bundle.schema import (
    MANIFEST, SCHEMA_VERSION, array_relpath, dumps_json, file_entry, file_relpath,
    json_relpath, old_dir_for, resolve_inside, table_relpath, validate_name, work_dir_for)
from tlexplorer.errors import BundleError, DiskFullError

log = logging.getLogger(__name__)

_PROGRESS = ".progress"   # one JSON marker per completed artefact + writer.json
_CHUNKS = ".chunks"       # chunk files of artefacts still being computed
_STATE = "writer.json"
_WORK_FORMAT = "tlexplorer-bundle-work"
#: Parquet settings are fixed so that the same frame always gives the same bytes.
PARQUET_OPTIONS = {"compression": "zstd", "compression_level": 3, "statistics": True}


# ------------------------------------------------------------------ small file helpers
def _fsync_file(path: Path) -> None:
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def _fsync_dir(path: Path) -> None:
    """Make renames in ``path`` durable; a no-op where directories cannot be opened (Windows)."""
    try:
        fd = os.open(path, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)


def _check_array(name: str, array) -> np.ndarray:
    arr = np.asarray(array)
    if arr.dtype.hasobject:
        raise ValueError(f"array {name!r} has dtype {arr.dtype} (Python objects): bundles hold "
                         "no pickles; convert it to numbers, strings or a table first")
    if not arr.flags.c_contiguous:  # C order always, so the bytes do not depend on the layout
        arr = arr.copy(order="C")
    return arr


def save_npy(path: Path, arr: np.ndarray) -> None:
    """``np.save`` to a new file at ``path`` (exclusive create), never pickling."""
    with open(path, "xb") as f:
        np.save(f, arr, allow_pickle=False)


def write_array_atomic(dest: Path, array, *, durable: bool = True) -> None:
    """Write ``array`` as ``.npy`` to ``dest`` via a temporary file and a rename."""
    arr = _check_array(dest.name, array)
    with atomic_path(dest) as tmp:
        save_npy(tmp, arr)
        if durable:
            _fsync_file(tmp)


def _rmtree(path: Path) -> None:
    shutil.rmtree(path, ignore_errors=True)


def _package_version() -> str:
    try:
        from importlib.metadata import version
        return version("tlexplorer")
    except Exception:  # not installed (running from a source tree)
        return "unknown"


def _is_bundle_or_empty(path: Path) -> bool:
    return path.is_dir() and not path.is_symlink() and (
        (path / MANIFEST).is_file() or not any(path.iterdir()))


def recover_interrupted_replace(path: "str | os.PathLike") -> None:
    """Finish or undo a ``finalize`` that was killed while swapping bundles.

    ``finalize`` renames the old bundle to ``.<name>.tlx-old``, renames the work directory onto
    ``<path>``, then deletes the old one. Killed between the two renames, ``<path>`` is missing:
    the old bundle is renamed back (the work directory is still complete, and a resumed writer
    finalizes it again in seconds). Killed after them, the old copy is deleted.
    """
    path = Path(path)
    old = old_dir_for(path)
    if not _is_bundle_or_empty(old):
        return
    if path.exists() or path.is_symlink():
        log.info("removing %s left by an interrupted bundle replacement", old)
        _rmtree(old)
    else:
        log.info("restoring %s from %s (interrupted bundle replacement)", path, old)
        os.rename(old, path)


# ------------------------------------------------------------------ the writer
class BundleWriter:
    """Write an analysis bundle into ``<path>.partial/`` and rename it onto ``path`` at the end.

    Parameters
    ----------
    path : str or Path
        The bundle directory to create or replace. Its parent is created if missing.
    resume : bool
        Keep the completed artefacts of an earlier, interrupted writer of the same ``path``
        (the default). ``False`` wipes the work directory and starts again.
    fingerprint : str, optional
        Identity of what is being computed (e.g. a hash of the analysis options and inputs).
        A work directory written under another fingerprint is wiped rather than resumed, so a
        resumed run never mixes results of different settings.
    durable : bool
        ``fsync`` every file before renaming it (survives power loss, not only a killed process).

    Attributes
    ----------
    path : Path
        The final bundle directory.
    work_dir : Path
        ``<path>.partial``, where artefacts go until :meth:`finalize`.
    resumed : bool
        Whether an earlier work directory was kept (its artefacts count as done).
    discarded : bool
        Whether an earlier work directory was wiped (``resume=False`` or another fingerprint).

    Notes
    -----
    One writer per bundle at a time (there is no lock); its methods may be called from several
    threads for different names. Artefact names are ``/``-separated (see
    :func:`tlexplorer.bundle.schema.validate_name`); an invalid name raises ``ValueError``.
    """

    def __init__(self, path: "str | os.PathLike", *, resume: bool = True,
                 fingerprint: "str | None" = None, durable: bool = True):
        self.path = Path(path)
        if not self.path.name or self.path.name in (".", ".."):
            raise ValueError(f"bundle path {str(path)!r} has no folder name")
        self.work_dir = work_dir_for(self.path)
        self.fingerprint = fingerprint
        self.durable = durable
        self.resumed = False
        self.discarded = False
        self._finalized = False
        self._progress = self.work_dir / _PROGRESS
        self._chunks = self.work_dir / _CHUNKS
        recover_interrupted_replace(self.path)
        self._open_work_dir(resume)

    def __repr__(self) -> str:
        state = "finalized" if self._finalized else ("resumed" if self.resumed else "new")
        return f"BundleWriter({str(self.path)!r}, {state})"

    # -------------------------------------------------------------- work directory
    def _open_work_dir(self, resume: bool) -> None:
        work, state_file = self.work_dir, self._progress / _STATE
        if work.exists() or work.is_symlink():
            if work.is_symlink() or not work.is_dir():
                raise BundleError(f"{work}: exists and is not a directory; move it away")
            state = None
            if state_file.is_file():
                try:
                    state = json.loads(state_file.read_text(encoding="utf-8"))
                except (ValueError, UnicodeDecodeError):
                    state = None
            if not isinstance(state, dict) or state.get("format") != _WORK_FORMAT:
                if any(work.iterdir()):
                    raise BundleError(f"{work}: exists but is not a tlexplorer work directory; "
                                      "move it away")
                state = None
            keep = (resume and state is not None
                    and state.get("schema_version") == SCHEMA_VERSION
                    and state.get("fingerprint") == self.fingerprint)
            if keep:
                self.resumed = True
                self._remove_temporaries()
                log.info("resuming %s: %d artefacts done", work, len(self.completed()))
            else:
                if state is not None:
                    self.discarded = True
                    why = ("resume=False" if not resume else
                           "it was written under another fingerprint or schema")
                    log.info("discarding %s (%s)", work, why)
                _rmtree(work)
                if work.exists():
                    raise BundleError(f"{work}: could not remove the old work directory")
        if not work.exists():
            self._progress.mkdir(parents=True, exist_ok=True)
            self._write_small_json(state_file, {
                "format": _WORK_FORMAT, "schema_version": SCHEMA_VERSION,
                "fingerprint": self.fingerprint})

    def _remove_temporaries(self) -> None:
        """Delete temporary files a killed writer left behind (hidden ``*.tmp`` files)."""
        for root, _dirs, files in os.walk(self.work_dir):
            for f in files:
                if f.startswith(".") and f.endswith(".tmp"):
                    with contextlib.suppress(OSError):
                        os.unlink(os.path.join(root, f))

    @contextlib.contextmanager
    def _keeping_work_when_full(self):
        """A full disk says that the completed artefacts stay for the next run to resume from."""
        try:
            yield
        except DiskFullError as exc:
            raise DiskFullError(f"{exc}; the work done so far is kept in {self.work_dir} and the same "
                                "command resumes from it") from exc

    def _check_open(self) -> None:
        if self._finalized:
            raise RuntimeError(f"{self!r}: already finalized; start a new BundleWriter")

    def _write_small_json(self, dest: Path, obj) -> None:
        with atomic_path(dest) as tmp:
            tmp.write_text(dumps_json(obj), encoding="utf-8")

    def _marker(self, relpath: str) -> Path:
        return resolve_inside(self._progress, relpath + ".json")

    def _commit(self, relpath: str, write: Callable[[Path], None],
                info: "dict[str, Any] | None" = None) -> str:
        """Write via ``write(tmp)``, rename onto ``relpath``, then record a progress marker.

        The old marker goes first: a crash between the rename and the new marker leaves a
        complete file without a marker, whose entry ``finalize`` then recomputes.
        """
        self._check_open()
        dest = resolve_inside(self.work_dir, relpath)
        marker = self._marker(relpath)
        with self._keeping_work_when_full(), atomic_path(dest) as tmp:
            write(tmp)
            if self.durable:
                _fsync_file(tmp)
            with contextlib.suppress(FileNotFoundError):
                marker.unlink()
        st = dest.stat()
        entry = dict(info) if info is not None else {"shape": None, "dtype": None}
        entry.update(bytes=st.st_size, sha256=schema.sha256_file(dest),
                     ino=st.st_ino, mtime_ns=st.st_mtime_ns)
        with self._keeping_work_when_full():
            self._write_small_json(marker, entry)
        return relpath

    # -------------------------------------------------------------- artefacts
    def write_array(self, name: str, array) -> str:
        """Write ``arrays/<name>.npy``; returns that relative path.

        Parameters
        ----------
        name : str
            e.g. ``"tsne"`` or ``"conductance/target_on_target/features.conv1"``.
        array : array_like
            Any numeric, boolean or string array; object arrays raise ``ValueError``
            (bundles hold no pickles). Stored in C order.
        """
        relpath = array_relpath(name)
        arr = _check_array(name, array)
        return self._commit(relpath, lambda tmp: save_npy(tmp, arr),
                            {"shape": list(arr.shape), "dtype": str(arr.dtype)})

    def write_table(self, name: str, df: pl.DataFrame) -> str:
        """Write ``tables/<name>.parquet`` (zstd level 3, byte-stable); returns the path."""
        relpath = table_relpath(name)
        if not isinstance(df, pl.DataFrame):
            hint = " (collect() the LazyFrame first)" if isinstance(df, pl.LazyFrame) else ""
            raise TypeError(f"table {name!r} must be a polars DataFrame, not "
                            f"{type(df).__name__}{hint}")
        bad = [c for c, t in df.schema.items() if t == pl.Object]
        if bad:
            raise ValueError(f"table {name!r} has Python-object columns {bad}: bundles hold "
                             "no pickles")

        def write(tmp: Path) -> None:
            df.write_parquet(tmp, **PARQUET_OPTIONS)

        return self._commit(relpath, write, {"shape": [df.height, df.width],
                                             "dtype": schema.PARQUET_DTYPE,
                                             "columns": list(df.columns)})

    def write_json(self, name: str, obj) -> str:
        """Write a small JSON artefact ``json/<name>.json`` (canonical, sorted keys)."""
        relpath = json_relpath(name)
        text = dumps_json(obj)  # fails before anything is written if obj is not JSON

        def write(tmp: Path) -> None:
            with open(tmp, "x", encoding="utf-8") as f:
                f.write(text)

        return self._commit(relpath, write)

    def write_file(self, relpath: str, src_path: "str | os.PathLike") -> str:
        """Copy a file into the bundle, e.g. ``write_file("models/source.pt", ckpt)``.

        ``relpath`` may not lie under ``arrays/``, ``tables/``, ``json/`` or ``cache/`` (use the
        typed writers) nor be ``manifest.json``.
        """
        file_relpath(relpath)
        src = Path(src_path)
        if not src.is_file():
            raise FileNotFoundError(f"{src}: no such file to copy into the bundle")
        return self._commit(relpath, lambda tmp: shutil.copyfile(src, tmp))

    # -------------------------------------------------------------- progress
    def _existing(self, name: str) -> "str | None":
        """The relative path ``name`` refers to if that artefact is complete, else ``None``."""
        candidates = []
        for make in (lambda n: n, array_relpath, table_relpath, json_relpath):
            try:
                candidates.append(make(name))
            except ValueError:
                continue
        for rel in candidates:
            if rel != MANIFEST and resolve_inside(self.work_dir, rel).is_file():
                return rel
        return None

    def has(self, name: str) -> bool:
        """Whether an artefact is complete: an array or table name, or a relative path.

        ``has("tsne")`` is true once ``arrays/tsne.npy`` (or ``tables/tsne.parquet``) exists;
        ``has("models/source.pt")`` checks that file. Files only exist once fully written.
        """
        validate_name(name)
        return self._existing(name) is not None

    def has_array(self, name: str) -> bool:
        """Whether ``arrays/<name>.npy`` is complete."""
        return resolve_inside(self.work_dir, array_relpath(name)).is_file()

    def has_table(self, name: str) -> bool:
        """Whether ``tables/<name>.parquet`` is complete."""
        return resolve_inside(self.work_dir, table_relpath(name)).is_file()

    def completed(self) -> "list[str]":
        """Relative paths of all completed artefacts, sorted."""
        return [rel for rel, _p in self._iter_files()]

    def _iter_files(self) -> Iterator["tuple[str, Path]"]:
        """Completed artefact files (hidden entries and the manifest excluded), sorted."""
        out = []
        for root, dirs, files in os.walk(self.work_dir):
            dirs[:] = [d for d in dirs if not d.startswith(".")]
            rel_root = Path(root).relative_to(self.work_dir).as_posix()
            for f in files:
                if f.startswith("."):
                    continue
                rel = f if rel_root == "." else f"{rel_root}/{f}"
                if rel == MANIFEST:
                    continue
                out.append((rel, Path(root) / f))
        return iter(sorted(out))

    # -------------------------------------------------------------- reading back (resume)
    def array_path(self, name: str) -> Path:
        """The ``.npy`` file of a completed array in the work directory (e.g. for another process
        to read; it moves when :meth:`finalize` renames the work directory)."""
        path = resolve_inside(self.work_dir, array_relpath(name))
        if not path.is_file():
            raise BundleError(f"{path}: no such array in {self.work_dir}")
        return path

    def read_array(self, name: str, *, mmap: bool = False) -> np.ndarray:
        """Load a completed array from the work directory (e.g. after resuming)."""
        path = resolve_inside(self.work_dir, array_relpath(name))
        if not path.is_file():
            raise BundleError(f"{path}: no such array in {self.work_dir}")
        return np.load(path, mmap_mode="r" if mmap else None, allow_pickle=False)

    def read_table(self, name: str) -> pl.DataFrame:
        """Load a completed table from the work directory."""
        path = resolve_inside(self.work_dir, table_relpath(name))
        if not path.is_file():
            raise BundleError(f"{path}: no such table in {self.work_dir}")
        return pl.read_parquet(path)

    def read_json(self, name: str):
        """Load a completed JSON artefact from the work directory."""
        path = resolve_inside(self.work_dir, json_relpath(name))
        if not path.is_file():
            raise BundleError(f"{path}: no such JSON artefact in {self.work_dir}")
        return json.loads(path.read_text(encoding="utf-8"))

    # -------------------------------------------------------------- chunks
    def _chunk_dir(self, name: str) -> Path:
        validate_name(name, what="array name")
        return resolve_inside(self._chunks, name)

    def _chunk_path(self, name: str, index: int) -> Path:
        if isinstance(index, bool) or not isinstance(index, (int, np.integer)) or index < 0:
            raise ValueError(f"chunk index must be a non-negative int, not {index!r}")
        return self._chunk_dir(name) / f"chunk-{int(index):06d}.npy"

    def write_chunk(self, name: str, index: int, array) -> None:
        """Store rows ``index`` of the future array ``name`` (kept in the work dir only).

        Chunks are concatenated along axis 0 in index order by :meth:`concat_chunks`. The
        chunking must be a deterministic function of the settings (pass a ``fingerprint``).
        """
        self._check_open()
        arr = _check_array(name, array)
        if arr.ndim == 0:
            raise ValueError(f"chunk {index} of {name!r} is 0-d; chunks need a row axis")
        with self._keeping_work_when_full():
            write_array_atomic(self._chunk_path(name, index), arr, durable=self.durable)

    def has_chunk(self, name: str, index: int) -> bool:
        """Whether chunk ``index`` of ``name`` is complete."""
        return self._chunk_path(name, index).is_file()

    def chunks(self, name: str) -> "list[int]":
        """Indices of the completed chunks of ``name``, sorted."""
        d = self._chunk_dir(name)
        if not d.is_dir():
            return []
        out = []
        for p in d.iterdir():
            stem = p.name
            if p.is_file() and stem.startswith("chunk-") and stem.endswith(".npy"):
                with contextlib.suppress(ValueError):
                    out.append(int(stem[len("chunk-"):-len(".npy")]))
        return sorted(out)

    def concat_chunks(self, name: str, n_chunks: int, *, delete: bool = True) -> str:
        """Write ``arrays/<name>.npy`` from chunks ``0 .. n_chunks-1``, streaming (one chunk in
        memory at a time).

        Returns the relative path. The result has exactly the bytes ``write_array`` would write
        for the concatenated array. With ``delete`` the chunk files are removed afterwards.
        Raises ``ValueError`` if chunks are missing or disagree in dtype or trailing shape.
        """
        self._check_open()
        if isinstance(n_chunks, bool) or not isinstance(n_chunks, (int, np.integer)) \
                or n_chunks < 1:
            raise ValueError(f"n_chunks must be a positive int, not {n_chunks!r}")
        paths = [self._chunk_path(name, i) for i in range(int(n_chunks))]
        missing = [i for i, p in enumerate(paths) if not p.is_file()]
        if missing:
            shown = ", ".join(map(str, missing[:10])) + (", ..." if len(missing) > 10 else "")
            raise ValueError(f"array {name!r}: chunks {shown} of {n_chunks} are missing")
        # one chunk open at a time: a map holds a file descriptor, and at hundreds of chunks
        # keeping them all would meet the limit on open files
        first = self._load_chunk(paths[0])
        dtype, first_shape = first.dtype, first.shape
        del first
        rows = 0
        for i, p in enumerate(paths):
            a = self._load_chunk(p)
            if a.dtype != dtype or a.shape[1:] != first_shape[1:]:
                raise ValueError(f"array {name!r}: chunk {i} has dtype {a.dtype} shape "
                                 f"{a.shape}, chunk 0 has {dtype} {first_shape}")
            rows += a.shape[0]
            del a
        shape = (rows,) + tuple(first_shape[1:])
        relpath = array_relpath(name)

        def write(tmp: Path) -> None:
            from numpy.lib import format as npy

            # np.save's header, then the chunks' bytes appended in turn: written, not mapped, so
            # the output's pages never count as this process's memory
            header = {"descr": npy.dtype_to_descr(dtype), "fortran_order": False, "shape": shape}
            with open(tmp, "xb") as f:
                npy.write_array_header_1_0(f, header)
                for p in paths:
                    a = self._load_chunk(p)
                    if a.size:
                        a.tofile(f)
                    del a

        result = self._commit(relpath, write, {"shape": list(shape), "dtype": str(dtype)})
        if delete:
            self._delete_chunks(name)
        return result

    @staticmethod
    def _load_chunk(path: Path) -> np.ndarray:
        """A chunk, memory-mapped."""
        try:
            return np.load(path, mmap_mode="r", allow_pickle=False)
        except (ValueError, OSError, EOFError) as exc:
            raise BundleError(f"{path}: corrupt chunk ({exc}); delete it to recompute") from exc

    def _delete_chunks(self, name: str) -> None:
        d = self._chunk_dir(name)
        if not d.is_dir():
            return
        for p in d.iterdir():
            if p.is_file() and p.name.startswith(("chunk-", ".chunk-")):
                with contextlib.suppress(OSError):
                    p.unlink()
        # remove now-empty folders up to .chunks (other names' chunks may live below or beside)
        while d != self._chunks:
            try:
                d.rmdir()
            except OSError:
                break
            d = d.parent

    def _pending_chunks(self) -> "list[str]":
        """Names with chunk files whose final array does not exist."""
        pending = []
        if not self._chunks.is_dir():
            return pending
        for root, _dirs, files in os.walk(self._chunks):
            if any(f.startswith("chunk-") and f.endswith(".npy") for f in files):
                name = Path(root).relative_to(self._chunks).as_posix()
                if not self.has_array(name):
                    pending.append(name)
        return sorted(pending)

    # -------------------------------------------------------------- finalize
    def _entry(self, relpath: str, path: Path) -> dict:
        """The manifest entry of a file: from its progress marker when that still matches."""
        marker = self._marker(relpath)
        st = path.stat()
        try:
            entry = json.loads(marker.read_text(encoding="utf-8"))
        except (OSError, ValueError, UnicodeDecodeError):
            entry = None
        # the marker is removed before its file is replaced, so it cannot go stale; checking
        # the file's identity anyway costs nothing
        if (isinstance(entry, dict) and entry.get("bytes") == st.st_size
                and entry.get("ino") == st.st_ino and entry.get("mtime_ns") == st.st_mtime_ns
                and "sha256" in entry):
            entry.pop("ino")
            entry.pop("mtime_ns")
            return entry
        try:
            return file_entry(path, relpath)
        except Exception as exc:
            raise BundleError(f"{path}: cannot be described for the manifest ({exc}); "
                              "rewrite it or start again with resume=False") from exc

    def finalize(self, manifest: "dict[str, Any]") -> Path:
        """Write ``manifest.json`` and atomically put the bundle at ``path``.

        Parameters
        ----------
        manifest : dict
            The content fields (``classes``, ``layers``, ``options``, ``inputs``, ...). This
            method sets ``schema_version`` and ``files`` (``{relpath: {"shape", "dtype",
            "bytes", "sha256"}}`` for every file, plus ``columns`` for tables), and
            ``created`` (UTC, ISO 8601) and ``tlexplorer_version`` when absent.

        Returns
        -------
        Path
            ``path``. A previous bundle there is renamed aside, replaced and then deleted; a
            crash at any point leaves a complete bundle at ``path`` (old or new) or, in the
            instant between two renames, lets the next writer or ``recover_interrupted_replace``
            put the old one back.
        """
        self._check_open()
        if not isinstance(manifest, dict):
            raise TypeError(f"manifest must be a dict, not {type(manifest).__name__}")
        given = manifest.get("schema_version", SCHEMA_VERSION)
        if given != SCHEMA_VERSION:
            raise ValueError(f"manifest schema_version {given!r}: this writer writes "
                             f"{SCHEMA_VERSION}")
        pending = self._pending_chunks()
        if pending:
            raise ValueError(f"chunks of {pending} were never concatenated; call "
                             "concat_chunks() before finalize()")
        out = dict(manifest)
        out["schema_version"] = SCHEMA_VERSION
        out.setdefault("created", _dt.datetime.now(_dt.timezone.utc)
                       .replace(microsecond=0).isoformat())
        out.setdefault("tlexplorer_version", _package_version())
        files = {}
        for rel, p in self._iter_files():
            try:
                validate_name(rel, what="path")
            except ValueError as exc:
                raise BundleError(f"{p}: not an artefact this writer made ({exc})") from exc
            files[rel] = self._entry(rel, p)
        out["files"] = files
        text = dumps_json(out)  # TypeError here, before anything moves, if not JSON-able
        manifest_path = self.work_dir / MANIFEST

        with self._keeping_work_when_full(), atomic_path(manifest_path) as tmp:
            tmp.write_text(text, encoding="utf-8")
            if self.durable:
                _fsync_file(tmp)
        if self.durable:
            _fsync_dir(self.work_dir)
        self._swap_into_place()
        self._finalized = True
        # bookkeeping is no longer needed; a crash before this leaves harmless hidden folders
        _rmtree(self.path / _PROGRESS)
        _rmtree(self.path / _CHUNKS)
        return self.path

    def _swap_into_place(self) -> None:
        path, old = self.path, old_dir_for(self.path)
        path.parent.mkdir(parents=True, exist_ok=True)
        if path.exists() or path.is_symlink():
            if path.is_symlink() or not path.is_dir():
                raise BundleError(f"{path}: exists and is not a directory; not replacing it")
            if not _is_bundle_or_empty(path):
                raise BundleError(f"{path}: exists and is not an analysis bundle (no "
                                  "manifest.json); not replacing it")
            if old.exists() or old.is_symlink():
                if not _is_bundle_or_empty(old):
                    raise BundleError(f"{old}: exists and is not a bundle; move it away")
                _rmtree(old)
            os.rename(path, old)
            try:
                os.rename(self.work_dir, path)
            except BaseException:
                os.rename(old, path)
                raise
            _rmtree(old)
        else:
            os.rename(self.work_dir, path)
        if self.durable:
            _fsync_dir(path.parent)
