"""Open an analysis bundle: validate it cheaply up front, load its artefacts lazily.

``Bundle(path)`` (or :func:`open_bundle`) reads ``manifest.json``, checks the schema version and
that every file the manifest lists exists with its recorded size; nothing else is read until it
is asked for. Arrays are memory-mapped read-only by default; every artefact is checked against
the manifest when first loaded and then cached. A failure is a one-line
:class:`~tlexplorer.errors.BundleError` naming the file at fault.

One ``Bundle`` may be shared by many threads (the served app shares one between sessions).
"""
from __future__ import annotations

import copy
import json
import os
import threading
from pathlib import Path, PurePosixPath
from typing import Any

import numpy as np
import polars as pl

from tlexplorer.bundle.schema import (
    ARRAYS_DIR, MANIFEST, TABLES_DIR, array_relpath, cache_relpath,
    check_schema_version, content_key, json_relpath, old_dir_for, resolve_inside, sha256_file,
    table_relpath, validate_name, work_dir_for)
from tlexplorer.errors import BundleError


class ArtefactNotFound(BundleError, KeyError):
    """The bundle has no array, table or file of that name (also a ``KeyError``)."""

    __str__ = BaseException.__str__  # KeyError would quote the message


def _load_npy(path: Path, mmap: bool) -> np.ndarray:
    """``np.load`` without pickles; falls back to a plain read where a map is impossible."""
    if mmap:
        try:
            return np.load(path, mmap_mode="r", allow_pickle=False)
        except ValueError:
            pass  # e.g. truncated: the plain read below gives the clearer message
    return np.load(path, allow_pickle=False)


class Bundle:
    """A validated, lazily loaded analysis bundle.

    Parameters
    ----------
    path : str or Path
        The bundle directory (the one holding ``manifest.json``).

    Raises
    ------
    BundleError
        The path is not a bundle, the manifest is corrupt, the schema is newer than this
        tlexplorer reads, or a listed file is missing or has the wrong size.

    Examples
    --------
    >>> b = open_bundle("runs/digits/bundle")                         # doctest: +SKIP
    >>> b.classes, [l["name"] for l in b.layers]                       # doctest: +SKIP
    >>> cond = b.array("conductance/target_on_target/features.conv1") # doctest: +SKIP
    >>> b.table("instances").filter(pl.col("role") == "target")         # doctest: +SKIP
    """

    def __init__(self, path: "str | os.PathLike"):
        self._path = Path(path).absolute()
        self._real_path = self._path.resolve()
        self._manifest = self._read_manifest()
        self._files: "dict[str, dict[str, Any]]" = self._manifest["files"]
        self._check_files()
        self._key = content_key(self._manifest)
        self._lock = threading.Lock()
        self._key_locks: "dict[tuple, threading.Lock]" = {}
        self._cache: "dict[tuple, Any]" = {}
        self._verified: "set[str]" = set()  # files whose sha256 was checked in this process

    @classmethod
    def open(cls, path: "str | os.PathLike") -> "Bundle":
        """Open and validate the bundle at ``path`` (same as ``Bundle(path)``)."""
        return cls(path)

    def __repr__(self) -> str:
        return (f"Bundle({str(self._path)!r}, schema {self._manifest['schema_version']}, "
                f"{len(self._files)} files)")

    # -------------------------------------------------------------- validation on open
    def _not_a_bundle(self) -> BundleError:
        msg = f"{self._path}: not an analysis bundle (no manifest.json)"
        if (work_dir_for(self._path) / MANIFEST).is_file() or old_dir_for(self._path).is_dir():
            msg += "; a bundle replacement was interrupted: rerun the analysis to finish it"
        elif work_dir_for(self._path).is_dir():
            msg += f"; an unfinished analysis is in {work_dir_for(self._path)} (rerun to resume)"
        return BundleError(msg)

    def _read_manifest(self) -> dict:
        mpath = self._path / MANIFEST
        if not self._path.is_dir() or not mpath.is_file():
            raise self._not_a_bundle()
        try:
            manifest = json.loads(mpath.read_text(encoding="utf-8"))
        except UnicodeDecodeError as exc:
            raise BundleError(f"{mpath}: corrupt manifest (not UTF-8 text)") from exc
        except json.JSONDecodeError as exc:
            raise BundleError(f"{mpath}: corrupt manifest ({exc.msg} at line {exc.lineno} "
                              f"column {exc.colno})") from exc
        except OSError as exc:
            raise BundleError(f"{mpath}: cannot read manifest ({exc.strerror or exc})") from exc
        if not isinstance(manifest, dict):
            raise BundleError(f"{mpath}: corrupt manifest (not a JSON object)")
        check_schema_version(manifest.get("schema_version"), self._path)
        files = manifest.get("files")
        if not isinstance(files, dict):
            raise BundleError(f"{mpath}: corrupt manifest (no 'files' object)")
        for rel, entry in files.items():
            try:
                validate_name(rel, what="path")
            except ValueError as exc:
                raise BundleError(f"{mpath}: corrupt manifest (files entry {rel!r}: "
                                  f"{exc})") from exc
            if rel == MANIFEST:
                raise BundleError(f"{mpath}: corrupt manifest (lists itself in 'files')")
            size = entry.get("bytes") if isinstance(entry, dict) else None
            if isinstance(size, bool) or not isinstance(size, int) or size < 0:
                raise BundleError(f"{mpath}: corrupt manifest (files entry {rel!r} has no "
                                  "byte count)")
            shape = entry.get("shape")
            if shape is not None and (not isinstance(shape, list) or not all(
                    isinstance(s, int) and not isinstance(s, bool) and s >= 0 for s in shape)):
                raise BundleError(f"{mpath}: corrupt manifest (files entry {rel!r} has shape "
                                  f"{shape!r})")
        for field in ("classes", "layers"):
            if field in manifest and not isinstance(manifest[field], list):
                raise BundleError(f"{mpath}: corrupt manifest ({field!r} is not a list)")
        return manifest

    def _check_files(self) -> None:
        """Every listed file exists with its recorded size (a stat each; no data is read)."""
        for rel, entry in self._files.items():
            self._check_size(rel, entry)

    def _check_size(self, rel: str, entry: dict) -> Path:
        path = resolve_inside(self._path, rel)
        # a bundle's files are its own: never read through a link to somewhere else
        if path.is_symlink() or not path.resolve().is_relative_to(self._real_path):
            raise BundleError(f"{path}: is a symbolic link or lies outside the bundle (a bundle "
                              "holds plain files only)")
        try:
            st = path.stat()
        except FileNotFoundError:
            raise BundleError(f"{path}: missing (listed in manifest.json)") from None
        except OSError as exc:
            raise BundleError(f"{path}: cannot read ({exc.strerror or exc})") from exc
        if not path.is_file():
            raise BundleError(f"{path}: not a file (listed in manifest.json)")
        if st.st_size != entry["bytes"]:
            what = "truncated" if st.st_size < entry["bytes"] else "changed"
            raise BundleError(f"{path}: {what} ({st.st_size} bytes, manifest.json says "
                              f"{entry['bytes']})")
        return path

    def _checked(self, rel: str, entry: dict) -> Path:
        """``rel``'s path after the size check and, on the first read in this process, the
        sha256 check against the manifest (a file changed in place is named, not served)."""
        path = self._check_size(rel, entry)
        expected = entry.get("sha256")
        if not expected:
            return path
        with self._lock:
            if rel in self._verified:
                return path
        if sha256_file(path) != expected:
            raise BundleError(f"{path}: corrupt (its sha256 differs from manifest.json: the "
                              "file changed after the analysis wrote it; rerun the analysis)")
        with self._lock:
            self._verified.add(rel)
        return path

    # -------------------------------------------------------------- metadata
    @property
    def path(self) -> Path:
        """The bundle directory (absolute)."""
        return self._path

    @property
    def manifest(self) -> dict:
        """A copy of ``manifest.json`` (copied so no caller can change the shared bundle)."""
        return copy.deepcopy(self._manifest)

    @property
    def schema_version(self) -> int:
        return self._manifest["schema_version"]

    @property
    def classes(self) -> "list[str]":
        """Class names in label order (``manifest["classes"]``)."""
        return list(self._manifest.get("classes", []))

    @property
    def layers(self) -> "list[dict]":
        """Analysed layers in network order: ``{"name", "kind", "neurons"}`` each."""
        return copy.deepcopy(self._manifest.get("layers", []))

    @property
    def layer_names(self) -> "list[str]":
        return [layer["name"] for layer in self._manifest.get("layers", [])]

    @property
    def key(self) -> str:
        """Content identity for cache keys: a hash of the manifest (files, inputs, options)
        without ``created``. Equal bundles written twice have the same key."""
        return self._key

    @property
    def files(self) -> "dict[str, dict]":
        """A copy of the manifest's ``files`` entries."""
        return copy.deepcopy(self._files)

    # -------------------------------------------------------------- names
    def _relpath_of(self, name: str) -> "str | None":
        validate_name(name)
        if name in self._files:
            return name
        for make in (array_relpath, table_relpath, json_relpath):
            try:
                rel = make(name)
            except ValueError:
                continue
            if rel in self._files:
                return rel
        return None

    def has(self, name: str) -> bool:
        """Whether the bundle lists an array, table or JSON artefact ``name``, or the relative
        path ``name`` (``has("tsne")``, ``has("instances")``, ``has("models/source.pt")``)."""
        return self._relpath_of(name) is not None

    def has_array(self, name: str) -> bool:
        return array_relpath(name) in self._files

    def has_table(self, name: str) -> bool:
        return table_relpath(name) in self._files

    def arrays(self, prefix: str = "") -> "list[str]":
        """Array names, sorted; with ``prefix`` (e.g. ``"conductance/target_on_target"``) only
        those inside that folder. Names are given without ``arrays/`` and ``.npy``."""
        head = ARRAYS_DIR + "/"
        names = [rel[len(head):-len(".npy")] for rel in self._files
                 if rel.startswith(head) and rel.endswith(".npy")]
        if prefix:
            prefix = prefix.rstrip("/")
            names = [n for n in names if n == prefix or n.startswith(prefix + "/")]
        return sorted(names)

    def tables(self) -> "list[str]":
        """Table names, sorted (without ``tables/`` and ``.parquet``)."""
        head = TABLES_DIR + "/"
        return sorted(rel[len(head):-len(".parquet")] for rel in self._files
                      if rel.startswith(head) and rel.endswith(".parquet"))

    def array_info(self, name: str) -> dict:
        """``{"shape": tuple, "dtype": str}`` of an array, from the manifest (nothing loaded)."""
        entry = self._entry(array_relpath(name), "array", name)
        return {"shape": tuple(entry.get("shape") or ()), "dtype": entry.get("dtype")}

    def _entry(self, rel: str, what: str, name: str) -> dict:
        try:
            return self._files[rel]
        except KeyError:
            raise ArtefactNotFound(f"{self._path}: no {what} {name!r} in this bundle") from None

    # -------------------------------------------------------------- lazy loading
    def _cached(self, key: tuple, load):
        """Load once per key; concurrent callers of the same key wait for one load."""
        with self._lock:
            if key in self._cache:
                return self._cache[key]
            key_lock = self._key_locks.setdefault(key, threading.Lock())
        with key_lock:
            with self._lock:
                if key in self._cache:
                    return self._cache[key]
            value = load()
            with self._lock:
                self._cache[key] = value
                self._key_locks.pop(key, None)
            return value

    def array(self, name: str, mmap: bool = True) -> np.ndarray:
        """Load ``arrays/<name>.npy``, read-only, checked against the manifest's shape and dtype.

        Parameters
        ----------
        name : str
            e.g. ``"tsne"`` or ``"conductance/target_on_target/features.conv1"``.
        mmap : bool
            Memory-map the file (default; cheap, pages load as they are touched). ``False``
            reads it into memory once and keeps it (for small arrays used often).
        """
        rel = array_relpath(name)
        entry = self._entry(rel, "array", name)

        def load() -> np.ndarray:
            path = self._checked(rel, entry)
            try:
                arr = _load_npy(path, mmap)
            except (ValueError, OSError, EOFError) as exc:
                raise BundleError(f"{path}: corrupt array ({exc})") from exc
            shape, dtype = entry.get("shape"), entry.get("dtype")
            if shape is not None and list(arr.shape) != list(shape):
                raise BundleError(f"{path}: array shape {list(arr.shape)} differs from "
                                  f"manifest.json's {list(shape)}")
            if dtype is not None and str(arr.dtype) != dtype:
                raise BundleError(f"{path}: array dtype {arr.dtype} differs from "
                                  f"manifest.json's {dtype}")
            if not mmap:
                arr.flags.writeable = False  # shared between sessions: nobody may change it
            return arr

        return self._cached(("array", name, bool(mmap)), load)

    def table(self, name: str) -> pl.DataFrame:
        """Load ``tables/<name>.parquet`` (once; later calls return the same frame)."""
        rel = table_relpath(name)
        entry = self._entry(rel, "table", name)

        def load() -> pl.DataFrame:
            path = self._checked(rel, entry)
            try:
                df = pl.read_parquet(path)
            except Exception as exc:  # polars raises ComputeError, OSError, ... for bad files
                msg = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
                raise BundleError(f"{path}: corrupt table ({msg})") from exc
            shape = entry.get("shape")
            if shape is not None and [df.height, df.width] != list(shape):
                raise BundleError(f"{path}: table shape {[df.height, df.width]} differs from "
                                  f"manifest.json's {list(shape)}")
            columns = entry.get("columns")
            if columns is not None and list(df.columns) != list(columns):
                raise BundleError(f"{path}: table columns {df.columns} differ from "
                                  f"manifest.json's {columns}")
            return df

        return self._cached(("table", name), load)

    def scan_table(self, name: str) -> pl.LazyFrame:
        """A lazy ``pl.scan_parquet`` of a table, for queries that need a few rows or columns
        (a corrupt file then fails when the query is collected)."""
        rel = table_relpath(name)
        entry = self._entry(rel, "table", name)
        return pl.scan_parquet(self._checked(rel, entry))

    def json(self, name: str):
        """Load the JSON artefact ``json/<name>.json`` (a fresh copy each call)."""
        rel = json_relpath(name)
        entry = self._entry(rel, "JSON artefact", name)

        def load():
            path = self._checked(rel, entry)
            try:
                return json.loads(path.read_text(encoding="utf-8"))
            except (ValueError, UnicodeDecodeError) as exc:
                raise BundleError(f"{path}: corrupt JSON ({exc})") from exc

        return copy.deepcopy(self._cached(("json", name), load))

    def file(self, relpath: str) -> Path:
        """The path of a listed file (e.g. ``"models/source.pt"``), after a size check."""
        validate_name(relpath, what="path")
        entry = self._entry(relpath, "file", relpath)
        return self._checked(relpath, entry)

    def verify(self) -> None:
        """Read every listed file and compare its sha256 with the manifest (slow; full check).

        Raises ``BundleError`` naming the first file that differs. Entries without ``sha256``
        (bundles not written by :class:`~tlexplorer.bundle.BundleWriter`) are size-checked only.
        """
        for rel, entry in sorted(self._files.items()):
            path = self._check_size(rel, entry)
            expected = entry.get("sha256")
            if expected and sha256_file(path) != expected:
                raise BundleError(f"{path}: corrupt (sha256 differs from manifest.json)")

    def clear_cache(self) -> None:
        """Forget loaded artefacts (arrays already handed out stay valid)."""
        with self._lock:
            self._cache.clear()

    # -------------------------------------------------------------- on-demand cache
    def _through_link(self, rel: str) -> bool:
        """Whether any existing part of ``rel`` inside the bundle is a symbolic link."""
        path = self._path
        for part in PurePosixPath(rel).parts:
            path = path / part
            if path.is_symlink():
                return True
        return False

    def cache_array(self, name: str) -> "np.ndarray | None":
        """An array stored by :meth:`write_cache_array`, or ``None`` (absent or unreadable)."""
        rel = cache_relpath(name)
        path = resolve_inside(self._path, rel)
        if self._through_link(rel):
            return None
        try:
            return np.load(path, allow_pickle=False)
        except (OSError, ValueError, EOFError):
            return None  # a cache entry is recomputable; treat damage as a miss

    def write_cache_array(self, name: str, array) -> bool:
        """Store an on-demand result in ``cache/<name>.npy`` atomically (temp file + rename).

        Returns ``False``, writing nothing, when the bundle cannot be written (read-only
        folder or disk full); the caller keeps the result in memory. Cache files are not in
        the manifest's ``files``. Object arrays raise ``ValueError``.
        """
        from tlexplorer.bundle.writer import _check_array, write_array_atomic

        rel = cache_relpath(name)
        arr = _check_array(name, array)
        if self._through_link(rel):  # never write through a link planted in the bundle
            return False
        try:
            write_array_atomic(resolve_inside(self._path, rel), arr, durable=False)
        except OSError:
            return False
        return True


def open_bundle(path: "str | os.PathLike") -> Bundle:
    """Open and validate the analysis bundle at ``path``; see :class:`Bundle`."""
    return Bundle(path)

