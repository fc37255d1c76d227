"""Bundle / open_bundle: validation on open, lazy checked loading, clear errors, threads, cache."""
from __future__ import annotations

import json
import os
import threading
from pathlib import Path

import numpy as np
import polars as pl
import pytest

from tlexplorer.bundle import ArtefactNotFound, Bundle, BundleError, BundleWriter, open_bundle
from tlexplorer.bundle import writer as writer_module

COND = "conductance/target_on_target"


def make_bundle(path: Path, *, scale: float = 1.0, created: "str | None" = None) -> Path:
    w = BundleWriter(path, durable=False)
    w.write_table("instances", pl.DataFrame({"row": np.arange(6), "label": [0, 1, 2] * 2}))
    w.write_table("neurons", pl.DataFrame({"layer": ["features.conv1"] * 4,
                                           "neuron": np.arange(4), "score": np.arange(4.0)}))
    w.write_array("tsne", scale * np.arange(12, dtype=np.float32).reshape(6, 2))
    w.write_array(f"{COND}/features.conv1", np.ones((6, 4), np.float32))
    w.write_array(f"{COND}/layer1.0.conv1", np.zeros((6, 8), np.float32))
    w.write_array("conductance/source_on_target/features.conv1", np.ones((6, 4), np.float32))
    manifest = {"classes": ["0", "1", "2"], "options": {"seed": 0},
                "layers": [{"name": "features.conv1", "kind": "conv", "neurons": 4},
                           {"name": "layer1.0.conv1", "kind": "conv", "neurons": 8}]}
    if created:
        manifest["created"] = created
    return w.finalize(manifest)


@pytest.fixture()
def bundle_path(tmp_path) -> Path:
    return make_bundle(tmp_path / "bundle")


def edit_manifest(path: Path, edit) -> None:
    m = json.loads((path / "manifest.json").read_text())
    edit(m)
    (path / "manifest.json").write_text(json.dumps(m))


def test_open_is_cheap_and_loading_is_lazy(bundle_path):
    b = Bundle.open(bundle_path)
    assert b._cache == {}  # nothing loaded on open
    assert b.path == bundle_path.absolute() and b.schema_version == 1
    assert b.classes == ["0", "1", "2"]
    assert [layer["name"] for layer in b.layers] == b.layer_names == ["features.conv1",
                                                                     "layer1.0.conv1"]
    assert b.arrays(COND) == [f"{COND}/features.conv1", f"{COND}/layer1.0.conv1"]
    assert b.arrays(COND + "/") == b.arrays(COND)
    assert b.arrays("conductance/target") == []  # prefixes match whole folders
    assert len(b.arrays()) == 4 and b.tables() == ["instances", "neurons"]
    assert b.has("tsne") and b.has("instances") and b.has("arrays/tsne.npy")
    assert b.has_array("tsne") and not b.has_table("tsne") and not b.has("nope")
    assert b.array_info(f"{COND}/layer1.0.conv1") == {"shape": (6, 8), "dtype": "float32"}

    tsne = b.array("tsne")
    assert isinstance(tsne, np.memmap) and not tsne.flags.writeable
    assert b.array("tsne") is tsne  # cached
    full = b.array("tsne", mmap=False)
    assert not isinstance(full, np.memmap) and not full.flags.writeable
    np.testing.assert_array_equal(full, np.arange(12).reshape(6, 2))
    inst = b.table("instances")
    assert b.table("instances") is inst and inst.columns == ["row", "label"]
    assert b.scan_table("neurons").select(pl.col("score").sum()).collect().item() == 6.0

    m = b.manifest
    m["classes"].append("mutated")  # a copy: the shared bundle is unchanged
    assert b.classes == ["0", "1", "2"] and "files" in m
    assert repr(b).startswith("Bundle(")


def test_key_is_a_content_identity(tmp_path):
    a = open_bundle(make_bundle(tmp_path / "a", created="2024-01-01"))
    b = open_bundle(make_bundle(tmp_path / "b", created="2025-06-01"))
    c = open_bundle(make_bundle(tmp_path / "c", scale=2.0))
    assert a.key == b.key != c.key
    assert isinstance(a.key, str) and len(a.key) >= 16


def test_missing_names_are_key_errors(bundle_path):
    b = open_bundle(bundle_path)
    for call in (lambda: b.array("nope"), lambda: b.table("tsne"), lambda: b.json("x"),
                 lambda: b.file("models/source.pt"), lambda: b.array_info("x")):
        with pytest.raises(ArtefactNotFound) as info:
            call()
        assert isinstance(info.value, KeyError) and isinstance(info.value, BundleError)
        assert str(info.value).startswith(str(b.path)) and "'" in str(info.value)
    with pytest.raises(ValueError):
        b.array("../manifest")


def test_not_a_bundle(tmp_path):
    (tmp_path / "empty").mkdir()
    (tmp_path / "afile").write_text("x")
    for p in (tmp_path / "missing", tmp_path / "empty", tmp_path / "afile"):
        with pytest.raises(BundleError) as info:
            open_bundle(p)
        assert str(info.value) == f"{p}: not an analysis bundle (no manifest.json)"


def test_unfinished_analysis_is_named(tmp_path):
    w = BundleWriter(tmp_path / "b")
    w.write_array("x", np.zeros(1))
    with pytest.raises(BundleError, match=r"unfinished analysis is in .*b\.partial"):
        open_bundle(tmp_path / "b")


def test_newer_schema(bundle_path):
    edit_manifest(bundle_path, lambda m: m.update(schema_version=2))
    with pytest.raises(BundleError) as info:
        open_bundle(bundle_path)
    assert str(info.value) == (f"{bundle_path}: bundle schema 2 is newer than this tlexplorer "
                               "(reads ≤ 1); upgrade tlexplorer")


@pytest.mark.parametrize("text, match", [
    ("{not json", r"manifest\.json: corrupt manifest \(.* at line 1"),
    ("[1, 2]", "not a JSON object"),
    ('{"schema_version": 1}', "no 'files' object"),
    ('{"files": {}}', "no integer schema_version"),
    ('{"schema_version": "1", "files": {}}', "no integer schema_version"),
    ('{"schema_version": 0, "files": {}}', "unsupported bundle schema 0"),
    ('{"schema_version": 1, "files": {"../etc/passwd": {"bytes": 1}}}', "files entry"),
    ('{"schema_version": 1, "files": {"arrays/x.npy": {"shape": [1]}}}', "byte count"),
    ('{"schema_version": 1, "files": {}, "classes": "abc"}', "'classes' is not a list"),
])
def test_corrupt_manifest(bundle_path, text, match):
    (bundle_path / "manifest.json").write_text(text)
    with pytest.raises(BundleError, match=match) as info:
        open_bundle(bundle_path)
    assert "\n" not in str(info.value)


def test_corrupt_manifest_bytes(bundle_path):
    (bundle_path / "manifest.json").write_bytes(b"\xff\xfe\x00garbage")
    with pytest.raises(BundleError, match="manifest.json: corrupt manifest"):
        open_bundle(bundle_path)


def test_missing_file(bundle_path):
    target = bundle_path / "arrays" / COND / "layer1.0.conv1.npy"
    target.unlink()
    with pytest.raises(BundleError) as info:
        open_bundle(bundle_path)
    assert str(info.value) == f"{target}: missing (listed in manifest.json)"


def test_truncated_array_on_open_and_after_open(bundle_path):
    target = bundle_path / "arrays" / "tsne.npy"
    size = target.stat().st_size
    b = open_bundle(bundle_path)  # opened while intact
    with open(target, "r+b") as f:
        f.truncate(size - 7)
    with pytest.raises(BundleError, match=rf"tsne\.npy: truncated \({size - 7} bytes, "
                                          rf"manifest\.json says {size}\)"):
        open_bundle(bundle_path)
    with pytest.raises(BundleError, match=r"tsne\.npy: truncated"):
        b.array("tsne")

    # the manifest agreeing with a truncated file (written by something else, no sha256):
    # np.load fails
    def agree(m):
        m["files"]["arrays/tsne.npy"].update(bytes=size - 7)
        m["files"]["arrays/tsne.npy"].pop("sha256")
    edit_manifest(bundle_path, agree)
    with pytest.raises(BundleError, match=r"tsne\.npy: corrupt array \(.*\)") as info:
        open_bundle(bundle_path).array("tsne", mmap=True)
    assert "\n" not in str(info.value)


def test_corrupt_array_header_and_shape_mismatch(bundle_path):
    target = bundle_path / "arrays" / "tsne.npy"
    data = bytearray(target.read_bytes())
    data[:6] = b"NOTNPY"
    target.write_bytes(bytes(data))
    b = open_bundle(bundle_path)  # same size: the cheap check passes, the first read does not
    with pytest.raises(BundleError, match=r"tsne\.npy: corrupt \(its sha256 differs"):
        b.array("tsne")
    with pytest.raises(BundleError, match=r"tsne\.npy: corrupt \(sha256"):
        b.verify()
    # written by something that records no sha256: the decoder's own check names the file
    edit_manifest(bundle_path, lambda m: m["files"]["arrays/tsne.npy"].pop("sha256"))
    with pytest.raises(BundleError, match=r"tsne\.npy: corrupt array"):
        open_bundle(bundle_path).array("tsne")

    edit_manifest(bundle_path, lambda m: m["files"][f"arrays/{COND}/features.conv1.npy"]
                  .update(shape=[6, 5]))
    with pytest.raises(BundleError, match=r"shape \[6, 4\] differs from manifest.json's "
                                          r"\[6, 5\]"):
        open_bundle(bundle_path).array(f"{COND}/features.conv1")
    edit_manifest(bundle_path, lambda m: m["files"][f"arrays/{COND}/layer1.0.conv1.npy"]
                  .update(dtype="float64"))
    with pytest.raises(BundleError, match="dtype float32 differs"):
        open_bundle(bundle_path).array(f"{COND}/layer1.0.conv1", mmap=False)


def test_pickled_array_is_refused(bundle_path):
    target = bundle_path / "arrays" / "evil.npy"
    np.save(target, np.array([{"x": 1}], dtype=object), allow_pickle=True)
    edit_manifest(bundle_path, lambda m: m["files"].update(
        {"arrays/evil.npy": {"shape": [1], "dtype": "object",
                             "bytes": target.stat().st_size}}))
    for mmap in (True, False):
        with pytest.raises(BundleError, match=r"evil\.npy: corrupt array \(.*allow_pickle"):
            open_bundle(bundle_path).array("evil", mmap=mmap)


def test_corrupt_parquet(bundle_path):
    target = bundle_path / "tables" / "neurons.parquet"
    size = target.stat().st_size
    target.write_bytes(b"PAR1" + b"\x00" * (size - 8) + b"PAR1")
    b = open_bundle(bundle_path)
    with pytest.raises(BundleError, match=r"neurons\.parquet: corrupt \(its sha256"):
        b.table("neurons")
    edit_manifest(bundle_path, lambda m: m["files"]["tables/neurons.parquet"].pop("sha256"))
    b = open_bundle(bundle_path)
    with pytest.raises(BundleError, match=r"neurons\.parquet: corrupt table \(") as info:
        b.table("neurons")
    assert "\n" not in str(info.value)
    assert b.table("instances").height == 6  # the others still load

    edit_manifest(bundle_path, lambda m: m["files"]["tables/instances.parquet"]
                  .update(shape=[7, 2]))
    with pytest.raises(BundleError, match=r"instances\.parquet: table shape \[6, 2\]"):
        open_bundle(bundle_path).table("instances")


def test_concurrent_readers_share_one_load(bundle_path):
    b = open_bundle(bundle_path)
    names = b.arrays()
    n_threads = 8
    barrier = threading.Barrier(n_threads)
    results: list = [None] * n_threads
    errors: list = []

    def work(i):
        try:
            barrier.wait()
            got = {}
            for rep in range(20):
                for name in names:
                    got[name] = b.array(name)
                got["instances"] = b.table("instances")
                got["full"] = b.array("tsne", mmap=False)
            results[i] = got
        except BaseException as exc:  # collected and re-raised in the main thread
            errors.append(exc)

    threads = [threading.Thread(target=work, args=(i,)) for i in range(n_threads)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert not errors
    for key in results[0]:
        assert all(r[key] is results[0][key] for r in results)  # loaded exactly once
    np.testing.assert_array_equal(results[0][f"{COND}/features.conv1"], np.ones((6, 4)))


def test_on_demand_cache(bundle_path, monkeypatch):
    b = open_bundle(bundle_path)
    name = "featurevis/source/features.conv1/3"
    assert b.cache_array(name) is None
    img = np.arange(4 * 4 * 3, dtype=np.uint8).reshape(4, 4, 3)
    assert b.write_cache_array(name, img) is True
    np.testing.assert_array_equal(b.cache_array(name), img)
    assert (bundle_path / "cache" / f"{name}.npy").is_file()
    assert not list((bundle_path / "cache").rglob("*.tmp"))
    reopened = open_bundle(bundle_path)  # cache files are not listed, and do not disturb
    assert reopened.key == b.key and not reopened.has(f"cache/{name}.npy")
    with pytest.raises(ValueError, match="no pickles"):
        b.write_cache_array("x", np.array([None], dtype=object))

    (bundle_path / "cache" / "broken.npy").write_bytes(b"garbage")
    assert b.cache_array("broken") is None

    def read_only(*args, **kwargs):
        raise PermissionError(13, "Read-only file system")

    monkeypatch.setattr(writer_module, "save_npy", read_only)
    assert b.write_cache_array("other", img) is False
    assert b.cache_array("other") is None


def test_bundle_without_sha256_entries_opens(tmp_path):
    """Bundles written by other tools (no sha256, other dtype labels) are read and checked."""
    path = tmp_path / "b"
    (path / "arrays").mkdir(parents=True)
    np.save(path / "arrays" / "x.npy", np.arange(3))
    size = os.path.getsize(path / "arrays" / "x.npy")
    (path / "manifest.json").write_text(json.dumps({
        "schema_version": 1,
        "files": {"arrays/x.npy": {"shape": [3], "dtype": "int64", "bytes": size}}}))
    b = open_bundle(path)
    np.testing.assert_array_equal(b.array("x"), np.arange(3))
    b.verify()
    assert b.classes == [] and b.layers == []


def test_changed_bytes_are_caught_on_first_read_once_per_file(bundle_path, monkeypatch):
    from tlexplorer.bundle import reader

    target = bundle_path / "arrays" / "tsne.npy"
    data = bytearray(target.read_bytes())
    data[-8:] = bytes(b ^ 0xFF for b in data[-8:])  # same size: the cheap check on open passes
    target.write_bytes(bytes(data))
    hashed = []
    real = reader.sha256_file
    monkeypatch.setattr(reader, "sha256_file", lambda p: hashed.append(Path(p).name) or real(p))
    b = open_bundle(bundle_path)
    with pytest.raises(BundleError, match=r"tsne\.npy: corrupt \(its sha256 differs"):
        b.array("tsne")
    assert b.table("instances").height == 6  # the other files keep working
    b.table("instances")
    b.array(f"{COND}/features.conv1", mmap=False)
    b.array(f"{COND}/features.conv1", mmap=True)  # another cache key, same file
    assert hashed.count("instances.parquet") == 1 and hashed.count("features.conv1.npy") == 1


def test_links_are_not_followed(bundle_path, tmp_path):
    outside = tmp_path / "outside.npy"
    np.save(outside, np.zeros((6, 2), np.float32))
    tsne = bundle_path / "arrays" / "tsne.npy"
    tsne.unlink()
    tsne.symlink_to(outside)
    with pytest.raises(BundleError, match=r"tsne\.npy: is a symbolic link"):
        open_bundle(bundle_path)


def test_the_cache_is_never_written_through_a_link(bundle_path, tmp_path):
    b = open_bundle(bundle_path)
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    (bundle_path / "cache").mkdir(exist_ok=True)
    (bundle_path / "cache" / "featurevis").symlink_to(elsewhere, target_is_directory=True)
    assert b.write_cache_array("featurevis/target/features.conv1/0", np.zeros((2, 2), np.uint8)) \
        is False
    assert list(elsewhere.iterdir()) == []
    assert b.cache_array("featurevis/target/features.conv1/0") is None
    assert b.write_cache_array("other/x", np.zeros(2, np.uint8)) is True
