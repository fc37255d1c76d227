"""Atomic writes: a full disk is a one-line error naming the file, and the old file survives."""
import errno

import pytest

from tlexplorer._io import atomic_path
from tlexplorer.errors import DiskFullError, TLXError


@pytest.mark.parametrize("error", [OSError(errno.ENOSPC, "No space left on device"),
                                   OSError("1533696 requested and 530400 written")])
def test_full_disk_names_the_file_and_keeps_the_old_one(tmp_path, error):
    target = tmp_path / "table.parquet"
    target.write_text("old")
    with pytest.raises(DiskFullError) as info:
        with atomic_path(target) as tmp:
            tmp.write_text("half")
            raise error
    assert str(info.value) == f"{target}: the disk is full; free some space and run the command again"
    assert isinstance(info.value, TLXError) and isinstance(info.value, OSError)  # caches: a miss
    assert target.read_text() == "old" and [p.name for p in tmp_path.iterdir()] == ["table.parquet"]


def test_other_errors_pass_unchanged(tmp_path):
    with pytest.raises(PermissionError):
        with atomic_path(tmp_path / "x"):
            raise PermissionError(errno.EACCES, "denied")
