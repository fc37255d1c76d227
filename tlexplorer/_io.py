"""Atomic file writes: write to a temporary name next to the target, then rename."""
from __future__ import annotations

import contextlib
import errno
import json
import os
import re
import secrets
from pathlib import Path
from typing import Iterator

from .errors import DiskFullError

# numpy's short write (ndarray.tofile) carries no errno: "1533696 requested and 530400 written"
_SHORT_WRITE = re.compile(r"\d+ requested and \d+ written")


def is_disk_full(exc: BaseException) -> bool:
    """Whether ``exc`` is a write that ran out of space (ENOSPC, a quota, or numpy's short write)."""
    if not isinstance(exc, OSError) or isinstance(exc, DiskFullError):
        return False
    return exc.errno in (errno.ENOSPC, errno.EDQUOT) or bool(_SHORT_WRITE.search(str(exc)))


@contextlib.contextmanager
def atomic_path(path: "str | os.PathLike", suffix: str = "") -> Iterator[Path]:
    """Yield a temporary path in the target's folder; rename it onto ``path`` only on success.

    The temporary name is hidden and unique (``.NAME.<random>SUFFIX.tmp``) and not created here, so
    the caller may open it exclusively. A crash or Ctrl-C leaves the old file (if any) untouched
    and removes the temporary one. Running out of disk space raises :class:`DiskFullError` naming
    ``path`` (one line instead of a library's traceback that names no file).
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp_path = path.with_name(f".{path.name}.{secrets.token_hex(6)}{suffix}.tmp")
    try:
        yield tmp_path
        os.replace(tmp_path, path)
    except BaseException as exc:
        with contextlib.suppress(FileNotFoundError):
            tmp_path.unlink()
        if is_disk_full(exc):
            raise DiskFullError(f"{path}: the disk is full; free some space and run the command "
                                "again") from exc
        raise


def write_json(path: "str | os.PathLike", obj) -> None:
    """Write ``obj`` as indented JSON, atomically."""
    with atomic_path(path) as tmp:
        tmp.write_text(json.dumps(obj, indent=2, sort_keys=True, default=str) + "\n")
