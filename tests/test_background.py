"""The t-SNE in a spawned process: the same layout as in this process, errors reported, stoppable,
and a child that dies while starting is an error, not a hang."""
import subprocess
import sys
import textwrap
from pathlib import Path

import numpy as np
import pytest

from tlexplorer._background import BackgroundLayout
from tlexplorer.analysis.embedding import tsne_layout


def test_background_layout_equals_the_layout_computed_here():
    x = np.random.default_rng(0).standard_normal((300, 20)).astype(np.float32)
    background = BackgroundLayout(x, random_state=3, n_jobs=1)
    layout, seconds = background.result()
    np.testing.assert_array_equal(layout, tsne_layout(x, random_state=3, n_jobs=1))
    assert seconds > 0


def test_a_npy_file_is_read_in_the_child(tmp_path):
    x = np.random.default_rng(0).standard_normal((300, 20)).astype(np.float32)
    np.save(tmp_path / "embedding.npy", x)
    layout, _ = BackgroundLayout(tmp_path / "embedding.npy", random_state=3, n_jobs=1).result()
    np.testing.assert_array_equal(layout, BackgroundLayout(x, random_state=3, n_jobs=1).result()[0])


def test_a_failure_in_the_background_is_one_error_here():
    x = np.full((50, 4), np.nan, dtype=np.float32)
    with pytest.raises(RuntimeError, match="t-SNE in the background failed: ValueError: embeddings contain NaN"):
        BackgroundLayout(x, random_state=0, n_jobs=1).result()


def test_stop_ends_the_process():
    x = np.random.default_rng(0).standard_normal((3000, 20)).astype(np.float32)
    background = BackgroundLayout(x, random_state=0, n_jobs=1)
    background.stop()
    assert not background._process.is_alive()


def test_an_array_reaches_the_child_as_a_temporary_file_removed_after():
    x = np.random.default_rng(0).standard_normal((300, 20)).astype(np.float32)
    background = BackgroundLayout(x, random_state=3, n_jobs=1)
    handed = Path(background._temporary.name) / "embedding.npy"
    assert np.array_equal(np.load(handed), x)
    background.result()
    assert not handed.exists()
    stopped = BackgroundLayout(x, random_state=3, n_jobs=1)
    handed = Path(stopped._temporary.name) / "embedding.npy"
    stopped.stop()
    assert not handed.exists()


def test_a_child_that_dies_while_starting_is_an_error_not_a_hang(tmp_path):
    """The spawned child runs the parent's main module first; here that exits at once, before the
    child has read its arguments. With a 240 KB array pickled into its pipe the parent used to
    wait in ``Process.start()`` for good."""
    script = tmp_path / "main.py"
    script.write_text(textwrap.dedent("""
        import numpy as np
        if __name__ != "__main__":
            raise SystemExit(3)  # the child dies while importing the main module
        from tlexplorer._background import BackgroundLayout
        x = np.random.default_rng(0).standard_normal((3000, 20)).astype(np.float32)
        try:
            BackgroundLayout(x, random_state=0, n_jobs=1).result()
        except RuntimeError as exc:
            print("ERROR", exc)
    """))
    done = subprocess.run([sys.executable, str(script)], capture_output=True, text=True,
                          timeout=120, cwd=Path(__file__).resolve().parents[1])
    assert "ERROR the t-SNE process ended without a result (exit code 3)" in done.stdout
