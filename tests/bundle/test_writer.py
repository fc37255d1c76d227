"""BundleWriter: atomic artefacts, manifest entries, chunks, resume and atomic replacement."""
from __future__ import annotations

import hashlib
import json
import os
import subprocess
import sys
import textwrap
from pathlib import Path

import numpy as np
import polars as pl
import pytest

from tlexplorer.bundle import (
    SCHEMA_VERSION, BundleError, BundleWriter, open_bundle, safe_component, validate_name)
from tlexplorer.bundle.schema import old_dir_for, work_dir_for

REPO = Path(__file__).resolve().parents[2]


def sha(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def manifest_of(path: Path) -> dict:
    return json.loads((path / "manifest.json").read_text())


def same_bundle(a: Path, b: Path) -> None:
    """Equal manifests (minus ``created``) and equal content of every array and table."""
    ma, mb = manifest_of(a), manifest_of(b)
    ma.pop("created"), mb.pop("created")
    assert ma == mb
    ba, bb = open_bundle(a), open_bundle(b)
    assert ba.arrays() == bb.arrays() and ba.tables() == bb.tables()
    for name in ba.arrays():
        np.testing.assert_array_equal(ba.array(name), bb.array(name))
    for name in ba.tables():
        assert ba.table(name).equals(bb.table(name))
    assert ba.key == bb.key


# ---------------------------------------------------------------------- a small "analysis"
LAYERS = ["features.conv1", "layer1.0.conv1"]
N_CHUNKS = 4


class Crash(Exception):
    """Stands in for a Ctrl-C or a killed process."""


def analyze(writer: BundleWriter, calls: list, crash_after: "int | None" = None) -> Path:
    """What pipeline.py does: skip completed artefacts, write chunks, finalize.

    ``calls`` records every computation performed; ``crash_after`` raises after that many.
    """
    rng_rows = np.arange(20)

    def step(label):
        if crash_after is not None and len(calls) >= crash_after:
            raise Crash(label)
        calls.append(label)

    if not writer.has("instances"):
        step("instances")
        writer.write_table("instances", pl.DataFrame({
            "row": rng_rows, "instance_id": [f"d/train/{i:06d}" for i in rng_rows],
            "label": rng_rows % 3,
            "confused": [[{"class": "a", "count": int(i)}] for i in rng_rows]}))
    if not writer.has("tsne"):
        step("tsne")
        writer.write_array("tsne", np.random.default_rng(0).normal(size=(20, 2)).astype("f4"))
    for li, layer in enumerate(LAYERS):
        name = f"conductance/target_on_target/{layer}"
        if writer.has(name):
            continue
        for c in range(N_CHUNKS):
            if writer.has_chunk(name, c):
                continue
            step(f"{name}#{c}")
            rows = np.arange(c * 5, (c + 1) * 5)
            writer.write_chunk(name, c, np.outer(rows, np.arange(3 + li)).astype("f4"))
        writer.concat_chunks(name, N_CHUNKS)
    if not writer.has("models/source.pt"):
        step("model")
        src = writer.work_dir.parent / "source.pt.src"
        src.write_bytes(b"not really a state_dict" * 10)
        writer.write_file("models/source.pt", src)
    return writer.finalize({"classes": ["a", "b", "c"], "options": {"n_steps": 8},
                            "layers": [{"name": n, "kind": "conv", "neurons": 3 + i}
                                       for i, n in enumerate(LAYERS)]})


def test_round_trip_and_manifest_entries(tmp_path):
    w = BundleWriter(tmp_path / "b")
    arrays = {
        "tsne": np.random.default_rng(1).normal(size=(7, 2)).astype(np.float32),
        "thumbnails": np.arange(2 * 4 * 4 * 3, dtype=np.uint8).reshape(2, 4, 4, 3),
        "rows_target": np.arange(5, dtype=np.int64),
        "mask": np.array([True, False, True]),
        "scalar": np.float64(2.5),
        "names": np.array(["a", "bé"]),
        "empty": np.zeros((0, 5), np.float32),
        "fortran": np.asfortranarray(np.arange(12.0).reshape(3, 4)),
        "weights/source/features.conv1__layer1.0.conv1": np.ones((3, 4), np.float32),
    }
    for name, arr in arrays.items():
        assert w.write_array(name, arr) == f"arrays/{name}.npy"
    df = pl.DataFrame({"a": [1, 2], "s": ["x", None],
                       "l": [[{"class": "a", "count": 1}], []]},
                      schema_overrides={"l": pl.List(pl.Struct({"class": pl.String,
                                                                "count": pl.Int64}))})
    assert w.write_table("confusion", df) == "tables/confusion.parquet"
    src = tmp_path / "ckpt.pt"
    src.write_bytes(b"\x00weights\x01" * 100)
    assert w.write_file("models/source.pt", src) == "models/source.pt"
    w.write_json("scores", {"transferability_score": np.float32(0.5), "n": np.int64(3)})
    assert not (tmp_path / "b").exists()  # nothing appears at the final path before finalize
    out = w.finalize({"classes": ["a", "b"], "files": {"bogus": 1}})
    assert out == tmp_path / "b"
    assert not work_dir_for(out).exists()
    assert sorted(p.name for p in out.iterdir()) == ["arrays", "json", "manifest.json",
                                                     "models", "tables"]

    m = manifest_of(out)
    assert m["schema_version"] == SCHEMA_VERSION and m["classes"] == ["a", "b"]
    assert "created" in m and "tlexplorer_version" in m
    assert set(m["files"]) == ({f"arrays/{n}.npy" for n in arrays}
                               | {"tables/confusion.parquet", "models/source.pt",
                                  "json/scores.json"})
    for rel, entry in m["files"].items():
        assert entry["bytes"] == (out / rel).stat().st_size
        assert entry["sha256"] == sha(out / rel)
    e = m["files"]["arrays/thumbnails.npy"]
    assert e["shape"] == [2, 4, 4, 3] and e["dtype"] == "uint8"
    assert m["files"]["arrays/scalar.npy"]["shape"] == []
    t = m["files"]["tables/confusion.parquet"]
    assert t["shape"] == [2, 3] and t["dtype"] == "parquet" and t["columns"] == ["a", "s", "l"]
    assert m["files"]["models/source.pt"]["shape"] is None

    b = open_bundle(out)
    for name, arr in arrays.items():
        got = b.array(name)
        assert got.dtype == arr.dtype and got.shape == arr.shape
        np.testing.assert_array_equal(got, arr)
    assert b.table("confusion").equals(df)
    assert b.file("models/source.pt").read_bytes() == src.read_bytes()
    assert b.json("scores") == {"transferability_score": 0.5, "n": 3}
    b.verify()


def test_object_arrays_and_bad_inputs_are_refused(tmp_path):
    w = BundleWriter(tmp_path / "b")
    with pytest.raises(ValueError, match="no pickles"):
        w.write_array("objs", np.array([{"a": 1}, None], dtype=object))
    with pytest.raises(ValueError, match="no pickles"):
        w.write_chunk("objs", 0, np.array([[1], "x"], dtype=object))
    with pytest.raises(ValueError, match="no pickles"):
        w.write_table("t", pl.DataFrame({"o": [object()]}, schema={"o": pl.Object}))
    with pytest.raises(TypeError, match="collect"):
        w.write_table("t", pl.DataFrame({"a": [1]}).lazy())
    with pytest.raises(TypeError):
        w.write_json("j", {"x": object()})
    with pytest.raises(FileNotFoundError):
        w.write_file("models/x.pt", tmp_path / "nope")
    for reserved in ("manifest.json", "arrays/x.npy", "tables/t.parquet", "cache/a.npy"):
        with pytest.raises(ValueError):
            w.write_file(reserved, __file__)
    assert w.completed() == []


@pytest.mark.parametrize("bad", ["", "/abs", "a/../b", "..", "a//b", ".hidden", "a/.x",
                                 "a\\b", "a:b", "a*b", "name\n", " lead", "trail.", "a/b/"])
def test_invalid_names(tmp_path, bad):
    with pytest.raises(ValueError):
        validate_name(bad)
    w = BundleWriter(tmp_path / "b")
    with pytest.raises(ValueError):
        w.write_array(bad, np.zeros(1))
    with pytest.raises(ValueError):
        w.has(bad)


def test_valid_names_and_safe_component():
    for ok in ["features.conv1", "layer1.0.conv1", "__all__", "a/b-c/d+e=f@g,h%20(i)",
               "golden retriever", "café", "weights/source/fc6__fc7"]:
        assert validate_name(ok) == ok
    texts = ["dog", "a/b", "a%2Fb", ".x", "x.", " y ", "a:b", "", "%", "ünï"]
    encoded = [safe_component(t) for t in texts]
    assert len(set(encoded)) == len(texts)
    for e in encoded:
        validate_name(e)
    assert safe_component("dog") == "dog" and safe_component("a/b") == "a%2Fb"


def test_parquet_and_npy_are_byte_stable(tmp_path):
    w = BundleWriter(tmp_path / "b")
    df = pl.DataFrame({"a": np.arange(3000), "b": np.linspace(0, 1, 3000),
                       "s": [f"id{i}" for i in range(3000)]})
    w.write_table("one", df)
    w.write_table("two", pl.concat([df[:1000], df[1000:]], rechunk=False))
    w.write_array("x", np.arange(10.0))
    w.write_array("y", np.arange(10.0))
    wd = w.work_dir
    assert sha(wd / "tables/one.parquet") == sha(wd / "tables/two.parquet")
    assert sha(wd / "arrays/x.npy") == sha(wd / "arrays/y.npy")


def test_concat_chunks_streams_the_same_bytes(tmp_path):
    w = BundleWriter(tmp_path / "b")
    parts = [np.random.default_rng(i).normal(size=(n, 3, 2)).astype("f4")
             for i, n in enumerate([4, 0, 7])]
    assert w.chunks("c/x") == []
    for i in (2, 0, 1):
        w.write_chunk("c/x", i, parts[i])
    w.write_chunk("c/x/deeper", 0, np.zeros((1, 1)))  # another name nested below: untouched
    assert w.chunks("c/x") == [0, 1, 2] and w.has_chunk("c/x", 1)
    assert not w.has("c/x")
    w.concat_chunks("c/x", 3)
    w.write_array("whole", np.concatenate(parts))
    assert sha(w.work_dir / "arrays/c/x.npy") == sha(w.work_dir / "arrays/whole.npy")
    assert w.has("c/x") and w.chunks("c/x") == [] and w.chunks("c/x/deeper") == [0]
    w.concat_chunks("c/x/deeper", 1)

    w.write_chunk("z", 0, np.zeros((0, 2), np.int64))
    w.concat_chunks("z", 1, delete=False)
    assert w.read_array("z").shape == (0, 2) and w.has_chunk("z", 0)

    w.write_chunk("m", 0, np.zeros((2, 2)))
    with pytest.raises(ValueError, match="missing"):
        w.concat_chunks("m", 3)
    w.write_chunk("m", 1, np.zeros((2, 3)))
    with pytest.raises(ValueError, match="chunk 1"):
        w.concat_chunks("m", 2)
    with pytest.raises(ValueError):
        w.write_chunk("m", -1, np.zeros((1, 2)))
    with pytest.raises(ValueError, match="never concatenated"):
        w.finalize({})
    w.write_chunk("m", 1, np.ones((2, 2)))
    w.concat_chunks("m", 2)
    w.finalize({})
    assert not (tmp_path / "b" / ".chunks").exists()
    np.testing.assert_array_equal(open_bundle(tmp_path / "b").array("m")[2:], np.ones((2, 2)))


def test_array_path_names_a_completed_array_s_file(tmp_path):
    w = BundleWriter(tmp_path / "b")
    with pytest.raises(BundleError, match="no such array"):
        w.array_path("e")
    w.write_array("e/mbedding", np.arange(6.0).reshape(3, 2))
    path = w.array_path("e/mbedding")
    assert path == w.work_dir / "arrays/e/mbedding.npy"
    np.testing.assert_array_equal(np.load(path), w.read_array("e/mbedding", mmap=True))


def test_resumed_analysis_gives_the_same_bundle(tmp_path):
    clean_calls: list = []
    analyze(BundleWriter(tmp_path / "clean"), clean_calls)

    calls: list = []
    w = BundleWriter(tmp_path / "resumed")
    with pytest.raises(Crash):
        analyze(w, calls, crash_after=5)  # instances, tsne, 3 chunks of the first layer
    del w  # the crashed process's writer is gone
    assert not (tmp_path / "resumed").exists()

    w2 = BundleWriter(tmp_path / "resumed")
    assert w2.resumed and not w2.discarded
    assert w2.has("instances") and w2.has("tsne") and w2.has_table("instances")
    name = f"conductance/target_on_target/{LAYERS[0]}"
    assert w2.chunks(name) == [0, 1, 2] and not w2.has(name)
    assert w2.completed() == ["arrays/tsne.npy", "tables/instances.parquet"]
    assert w2.read_table("instances").height == 20

    calls2: list = []
    analyze(w2, calls2)
    assert calls2 == [f"{name}#3"] + [f"conductance/target_on_target/{LAYERS[1]}#{c}"
                                      for c in range(N_CHUNKS)] + ["model"]
    assert sorted(calls + calls2) == sorted(clean_calls)
    same_bundle(tmp_path / "clean", tmp_path / "resumed")


def test_killed_process_resumes(tmp_path):
    """A real SIGKILL mid-analysis (leaving a half-written temporary file) resumes cleanly."""
    script = textwrap.dedent(f"""
        import os, signal, sys
        import numpy as np
        sys.path.insert(0, {str(REPO)!r})
        from tlexplorer.bundle import BundleWriter
        w = BundleWriter({str(tmp_path / "b")!r}, fingerprint="opts-1")
        w.write_array("tsne", np.ones((3, 2), np.float32))
        w.write_chunk("cond/l1", 0, np.zeros((2, 2), np.float32))
        half = w.work_dir / "arrays" / ".big.npy.123abc.tmp"
        half.write_bytes(b"\\x93NUMPY partial")
        os.kill(os.getpid(), signal.SIGKILL)
    """)
    proc = subprocess.run([sys.executable, "-c", script], capture_output=True, timeout=60)
    assert proc.returncode == -9, proc.stderr.decode()
    w = BundleWriter(tmp_path / "b", fingerprint="opts-1")
    assert w.resumed and w.has("tsne") and w.chunks("cond/l1") == [0]
    assert not list(w.work_dir.rglob("*.tmp"))
    w.write_chunk("cond/l1", 1, np.ones((2, 2), np.float32))
    w.concat_chunks("cond/l1", 2)
    b = open_bundle(w.finalize({}))
    assert b.arrays() == ["cond/l1", "tsne"]
    np.testing.assert_array_equal(b.array("cond/l1"), np.r_[np.zeros((2, 2)), np.ones((2, 2))])


def test_resume_false_and_another_fingerprint_wipe(tmp_path):
    w = BundleWriter(tmp_path / "b", fingerprint="a")
    w.write_array("x", np.zeros(3))
    w.write_chunk("y", 0, np.zeros((1, 1)))
    assert BundleWriter(tmp_path / "b", fingerprint="a").has("x")
    w2 = BundleWriter(tmp_path / "b", fingerprint="b")
    assert w2.discarded and not w2.resumed and not w2.has("x")
    w2.write_array("x", np.zeros(3))
    w3 = BundleWriter(tmp_path / "b", fingerprint="b", resume=False)
    assert w3.discarded and not w3.has("x") and w3.completed() == []


def test_finalize_replaces_an_existing_bundle(tmp_path):
    path = tmp_path / "b"
    w = BundleWriter(path)
    w.write_array("x", np.zeros(4))
    w.write_array("only_old", np.zeros(1))
    w.finalize({"classes": ["old"]})
    old = open_bundle(path)
    old_x = old.array("x")  # memory-mapped from the old files

    w = BundleWriter(path)
    assert not w.resumed  # the finalized bundle is not a work directory
    w.write_array("x", np.ones(4))
    w.finalize({"classes": ["new"]})
    new = open_bundle(path)
    assert new.classes == ["new"] and not new.has("only_old")
    np.testing.assert_array_equal(new.array("x"), np.ones(4))
    assert new.key != old.key
    np.testing.assert_array_equal(old_x, np.zeros(4))  # still readable after the swap (POSIX)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["b"]


def test_finalize_never_replaces_something_that_is_not_a_bundle(tmp_path):
    precious = tmp_path / "home"
    precious.mkdir()
    (precious / "thesis.tex").write_text("years of work")
    w = BundleWriter(precious)
    w.write_array("x", np.zeros(1))
    with pytest.raises(BundleError, match="not an analysis bundle.*not replacing"):
        w.finalize({})
    assert (precious / "thesis.tex").read_text() == "years of work"
    assert w.work_dir.is_dir() and w.has("x")

    afile = tmp_path / "file"
    afile.write_text("x")
    with pytest.raises(BundleError, match="not a directory"):
        BundleWriter(afile).finalize({})
    assert afile.read_text() == "x"

    empty = tmp_path / "empty"
    empty.mkdir()
    BundleWriter(empty).finalize({})  # an empty folder is fine to fill
    assert (empty / "manifest.json").is_file()


def test_foreign_work_directory_is_not_wiped(tmp_path):
    work = work_dir_for(tmp_path / "b")
    work.mkdir()
    (work / "mine.txt").write_text("keep")
    for resume in (True, False):
        with pytest.raises(BundleError, match="not a tlexplorer work directory"):
            BundleWriter(tmp_path / "b", resume=resume)
    assert (work / "mine.txt").read_text() == "keep"


def test_interrupted_swap_is_recovered(tmp_path):
    path = tmp_path / "b"
    w = BundleWriter(path)
    w.write_array("x", np.zeros(2))
    w.finalize({"classes": ["old"]})

    # Killed between "rename old aside" and "rename work into place": no bundle at path.
    w = BundleWriter(path)
    w.write_array("x", np.ones(2))
    old = old_dir_for(path)
    os.rename(path, old)
    with pytest.raises(BundleError, match="interrupted"):
        open_bundle(path)
    w2 = BundleWriter(path)  # puts the old bundle back, keeps the finished work
    assert open_bundle(path).classes == ["old"] and not old.exists()
    assert w2.resumed and w2.has("x")
    w2.finalize({"classes": ["new"]})
    assert open_bundle(path).classes == ["new"]

    # Killed after the new bundle is in place but before the old one was deleted.
    old.mkdir()
    (old / "manifest.json").write_text("{}")
    BundleWriter(path)
    assert not old.exists() and open_bundle(path).classes == ["new"]


def test_progress_markers_are_checked_not_trusted(tmp_path):
    w = BundleWriter(tmp_path / "b")
    w.write_array("a", np.zeros(8))
    w.write_array("b", np.zeros(8))
    marker_b = w.work_dir / ".progress/arrays/b.npy.json"
    stale = marker_b.read_text()
    w.write_array("b", np.arange(8.0))  # same size, new content
    marker_b.write_text(stale)           # as if the crash came before the new marker
    (w.work_dir / ".progress/arrays/a.npy.json").unlink()  # and a marker that never came
    out = w.finalize({})
    m = manifest_of(out)
    assert m["files"]["arrays/b.npy"]["sha256"] == sha(out / "arrays/b.npy")
    assert m["files"]["arrays/a.npy"] == {"shape": [8], "dtype": "float64", "bytes": 192,
                                          "sha256": sha(out / "arrays/a.npy")}
    open_bundle(out).verify()


def test_finalize_checks_the_manifest_and_closes_the_writer(tmp_path):
    w = BundleWriter(tmp_path / "b", durable=False)
    w.write_array("x", np.zeros(1))
    with pytest.raises(ValueError, match="schema_version"):
        w.finalize({"schema_version": 99})
    with pytest.raises(TypeError):
        w.finalize({"bad": object()})
    assert not (tmp_path / "b").exists() and w.has("x")  # nothing moved
    w.finalize({"created": "fixed", "warnings": [], "score": float("nan")})
    m = manifest_of(tmp_path / "b")
    assert m["created"] == "fixed" and np.isnan(m["score"])
    with pytest.raises(RuntimeError, match="finalized"):
        w.write_array("y", np.zeros(1))
    with pytest.raises(ValueError, match="no folder name"):
        BundleWriter("")
