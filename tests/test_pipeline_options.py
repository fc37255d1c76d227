"""AnalyzeOptions: the bound on a conductance pass's memory, from the option or the environment."""
import pytest

from tlexplorer.pipeline import AnalyzeOptions


def test_max_chunk_mib_becomes_bytes(monkeypatch):
    monkeypatch.delenv("TLX_MAX_CHUNK_MIB", raising=False)
    assert AnalyzeOptions().max_chunk_bytes() is None
    assert AnalyzeOptions(max_chunk_mib=3).max_chunk_bytes() == 3 << 20


def test_the_environment_gives_the_default_bound(monkeypatch):
    monkeypatch.setenv("TLX_MAX_CHUNK_MIB", "5")
    assert AnalyzeOptions().max_chunk_bytes() == 5 << 20
    assert AnalyzeOptions(max_chunk_mib=2).max_chunk_bytes() == 2 << 20  # the option wins


@pytest.mark.parametrize("value", ["0", "-3", "lots"])
def test_a_bad_environment_bound_is_one_error(monkeypatch, value):
    monkeypatch.setenv("TLX_MAX_CHUNK_MIB", value)
    with pytest.raises(ValueError, match="TLX_MAX_CHUNK_MIB must be a positive whole number"):
        AnalyzeOptions().max_chunk_bytes()


def test_the_bound_does_not_change_the_fingerprint():
    assert AnalyzeOptions(max_chunk_mib=1).fingerprint() == AnalyzeOptions().fingerprint()
