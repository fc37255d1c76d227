"""The t-SNE in a spawned process: the same layout as in this process, errors reported, stoppable."""
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
