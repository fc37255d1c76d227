"""The analysis bundle's on-disk layout: schema version, paths, names and file entries.

Nothing here knows what the arrays and tables mean (that is ``pipeline.py``'s business); this
module only says where an artefact of a given name lives, which names are allowed, and how the
manifest describes a file. See ``docs/bundle-format.md``.
"""
from __future__ import annotations

import hashlib
import json
import math
import os
import re
from pathlib import Path, PurePosixPath
from typing import Any

import numpy as np

from tlexplorer.errors import BundleError

#: The schema this code writes, and the newest it reads. Additive changes (a new table, array,
#: column or manifest field that readers may ignore) keep the number; anything an older reader
#: would misread bumps it.
SCHEMA_VERSION = 1

MANIFEST = "manifest.json"
ARRAYS_DIR = "arrays"
TABLES_DIR = "tables"
MODELS_DIR = "models"
JSON_DIR = "json"
CACHE_DIR = "cache"
#: Top-level folders that only typed writers fill (``write_file`` may not write into them).
TYPED_DIRS = (ARRAYS_DIR, TABLES_DIR, JSON_DIR, CACHE_DIR)

#: Sibling folders of a bundle ``<path>``: the writer's work directory, and where a previous
#: bundle waits for deletion while the new one is renamed into place.
WORK_SUFFIX = ".partial"
OLD_SUFFIX = ".tlx-old"  # hidden too (".<name>.tlx-old"), so no user folder is ever mistaken for it

#: dtype recorded in ``files`` for Parquet tables (their shape is ``[rows, columns]``).
PARQUET_DTYPE = "parquet"

# One path segment: word characters (Unicode letters, digits, _), and . - + = @ , % ( ) space.
# Not: a leading "." (hidden names are the writer's bookkeeping, and it rules out "." and ".."),
# a leading or trailing space, a trailing "." (Windows drops it), "/" "\" ":" "*" "?" and friends.
_SEGMENT = re.compile(r"[\w.\-+=@,%() ]+")
_MAX_SEGMENT = 200


def validate_name(name: str, *, what: str = "name") -> str:
    """Check an artefact name or bundle-relative path and return it unchanged.

    Names are ``/``-separated segments such as ``conductance/target_on_target/features.conv1``
    (layer names keep their dots). Raises ``ValueError`` for an empty, absolute or ``..`` path,
    a hidden segment, or characters outside ``[\\w.-+=@,%() ]``; use :func:`safe_component` to
    turn arbitrary text (a class name) into an allowed segment.
    """
    if not isinstance(name, str):
        raise ValueError(f"bundle {what} must be a str, not {type(name).__name__}: {name!r}")
    if not name or name.startswith("/") or "\\" in name or "\x00" in name:
        raise ValueError(f"invalid bundle {what} {name!r}: must be a non-empty relative path")
    for seg in name.split("/"):
        if not seg:
            raise ValueError(f"invalid bundle {what} {name!r}: empty path segment")
        if seg.startswith(".") or seg.endswith(".") or seg != seg.strip():
            raise ValueError(f"invalid bundle {what} {name!r}: segment {seg!r} may not start "
                             "with '.', end with '.' or start or end with a space")
        if not _SEGMENT.fullmatch(seg):
            raise ValueError(f"invalid bundle {what} {name!r}: segment {seg!r} has characters "
                             "other than letters, digits and _ . - + = @ , % ( ) space")
        if len(seg.encode("utf-8")) > _MAX_SEGMENT:
            raise ValueError(f"invalid bundle {what} {name!r}: segment longer than "
                             f"{_MAX_SEGMENT} bytes")
    return name


def safe_component(text: str) -> str:
    """Turn any text (e.g. a class name) into one valid name segment, reversibly.

    Characters that :func:`validate_name` refuses, ``%`` itself, ``/``, and a leading/trailing
    dot or space are percent-encoded (UTF-8), so distinct texts give distinct segments:
    ``safe_component("a/b") == "a%2Fb"``, ``safe_component("dog") == "dog"``.
    """
    text = str(text)
    if not text:
        return "%"  # the empty string, encoded as the one segment no encoding can produce
    out = []
    last = len(text) - 1
    for i, ch in enumerate(text):
        edge = (i == 0 and ch in ". ") or (i == last and ch in ". ")
        if ch == "%" or edge or not _SEGMENT.fullmatch(ch):
            out.append("".join(f"%{b:02X}" for b in ch.encode("utf-8")))
        else:
            out.append(ch)
    return "".join(out)


def _typed_relpath(directory: str, name: str, suffix: str, what: str) -> str:
    validate_name(name, what=f"{what} name")
    return f"{directory}/{name}{suffix}"


def array_relpath(name: str) -> str:
    """``arrays/<name>.npy``."""
    return _typed_relpath(ARRAYS_DIR, name, ".npy", "array")


def table_relpath(name: str) -> str:
    """``tables/<name>.parquet``."""
    return _typed_relpath(TABLES_DIR, name, ".parquet", "table")


def json_relpath(name: str) -> str:
    """``json/<name>.json``."""
    return _typed_relpath(JSON_DIR, name, ".json", "json")


def cache_relpath(name: str) -> str:
    """``cache/<name>.npy`` (on-demand results, not listed in ``files``)."""
    return _typed_relpath(CACHE_DIR, name, ".npy", "cache")


def file_relpath(relpath: str) -> str:
    """Validate a ``BundleWriter.write_file`` destination (no typed folder, not the manifest)."""
    validate_name(relpath, what="path")
    top = relpath.split("/", 1)[0]
    if relpath == MANIFEST or top in TYPED_DIRS:
        raise ValueError(f"bundle path {relpath!r} is reserved: use write_array / write_table / "
                         "write_json for arrays/, tables/, json/; manifest.json is finalize's")
    return relpath


def work_dir_for(path: "str | os.PathLike") -> Path:
    """The writer's work directory next to bundle ``path``: ``<path>.partial``."""
    path = Path(path)
    return path.with_name(path.name + WORK_SUFFIX)


def old_dir_for(path: "str | os.PathLike") -> Path:
    """Where the previous bundle sits while ``finalize`` renames the new one into place."""
    path = Path(path)
    return path.with_name("." + path.name + OLD_SUFFIX)


def resolve_inside(root: Path, relpath: str) -> Path:
    """``root / relpath`` after checking that ``relpath`` cannot leave ``root``."""
    validate_name(relpath, what="path")
    return root.joinpath(*PurePosixPath(relpath).parts)


# ------------------------------------------------------------------ schema version
def check_schema_version(version: Any, where: "str | os.PathLike") -> int:
    """Return ``version`` if this code can read it, else raise a one-line ``BundleError``."""
    if isinstance(version, bool) or not isinstance(version, int):
        raise BundleError(f"{where}: manifest.json has no integer schema_version "
                          f"(found {version!r})")
    if version > SCHEMA_VERSION:
        raise BundleError(f"{where}: bundle schema {version} is newer than this tlexplorer "
                          f"(reads ≤ {SCHEMA_VERSION}); upgrade tlexplorer")
    if version < 1:
        raise BundleError(f"{where}: unsupported bundle schema {version}")
    return version


# ------------------------------------------------------------------ JSON
def _json_default(obj):
    if isinstance(obj, np.generic):
        return obj.item()
    if isinstance(obj, np.ndarray):
        if obj.dtype.hasobject:
            raise TypeError("object arrays are not JSON")
        return obj.tolist()
    if isinstance(obj, os.PathLike):
        return os.fspath(obj)
    raise TypeError(f"{type(obj).__name__} is not JSON serialisable: {obj!r}")


def dumps_json(obj, *, indent: "int | None" = 2) -> str:
    """Canonical JSON (sorted keys; numpy scalars/arrays and paths converted) ending in a newline.

    The same object always gives the same text, so manifests and JSON artefacts are byte-stable.
    NaN and infinity are written as ``NaN``/``Infinity`` (Python's json reads them back).
    """
    return json.dumps(obj, indent=indent, sort_keys=True, default=_json_default,
                      ensure_ascii=False) + "\n"


def content_key(manifest: dict) -> str:
    """A short content identity of a bundle: sha256 of its canonical manifest minus ``created``."""
    body = {k: v for k, v in manifest.items() if k != "created"}
    text = json.dumps(body, sort_keys=True, separators=(",", ":"), default=_json_default)
    return hashlib.sha256(text.encode("utf-8")).hexdigest()[:20]


# ------------------------------------------------------------------ file entries
def sha256_file(path: "str | os.PathLike") -> str:
    """Hex sha256 of a file's bytes, read in 1 MiB blocks."""
    h = hashlib.sha256()
    with open(path, "rb") as f:
        while block := f.read(1 << 20):
            h.update(block)
    return h.hexdigest()


def npy_header(path: "str | os.PathLike") -> "tuple[list[int], str]":
    """``(shape, dtype)`` from a ``.npy`` header without reading the data.

    Raises ``ValueError`` for a file that is not a valid ``.npy`` or holds objects.
    """
    from numpy.lib import format as npformat

    with open(path, "rb") as f:
        major, _minor = npformat.read_magic(f)
        if major == 1:
            shape, _fortran, dtype = npformat.read_array_header_1_0(f)
        elif major in (2, 3):
            shape, _fortran, dtype = npformat.read_array_header_2_0(f)
        else:  # pragma: no cover - read_magic already rejects unknown versions
            raise ValueError(f"unsupported .npy version {major}")
    if dtype.hasobject:
        raise ValueError("holds Python objects (pickles are not allowed)")
    return [int(s) for s in shape], str(dtype)


def array_bytes_expected(shape, dtype: str) -> int:
    """Data bytes of an array of this shape and dtype (the header comes on top)."""
    return int(math.prod(shape)) * np.dtype(dtype).itemsize


def file_entry(path: Path, relpath: str) -> dict:
    """The ``files`` entry of one file: ``shape``, ``dtype``, ``bytes``, ``sha256`` (+ ``columns``).

    ``.npy`` files under ``arrays/``: shape and dtype from the header; ``.parquet`` under
    ``tables/``: shape ``[rows, columns]``, dtype ``"parquet"`` and the column names; any other
    file: shape and dtype ``None``.
    """
    entry: dict[str, Any] = {"shape": None, "dtype": None}
    if relpath.startswith(ARRAYS_DIR + "/") and relpath.endswith(".npy"):
        entry["shape"], entry["dtype"] = npy_header(path)
    elif relpath.startswith(TABLES_DIR + "/") and relpath.endswith(".parquet"):
        import polars as pl

        schema = pl.read_parquet_schema(path)
        rows = pl.scan_parquet(path).select(pl.len()).collect().item()
        entry["shape"] = [int(rows), len(schema)]
        entry["dtype"] = PARQUET_DTYPE
        entry["columns"] = list(schema)
    entry["bytes"] = path.stat().st_size
    entry["sha256"] = sha256_file(path)
    return entry
