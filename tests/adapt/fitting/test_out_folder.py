"""Output folders appear whole or not at all, are locked while written, and are checked by their manifest."""

from __future__ import annotations

import json
import os
import subprocess
import sys

import pytest

from sam3_adapt.fitting.out_folder import MANIFEST, OutFolder, OutFolderError, check_complete


def write_result(folder, text="new"):
    (folder / "figures").mkdir()
    (folder / "metrics.json").write_text(json.dumps({"AP": text}))
    (folder / "figures" / "a.png").write_bytes(b"\x89PNG" + text.encode())


def test_a_finished_folder_holds_its_files_and_a_manifest(tmp_path):
    data = tmp_path / "val.json"
    data.write_text("{}")
    with OutFolder(tmp_path / "out", "evaluate", {"data_json": str(data), "baseline": True}) as staging:
        assert staging != tmp_path / "out" and staging.parent == tmp_path
        write_result(staging)
        assert not (tmp_path / "out").exists()  # nothing is visible until the end
    manifest = check_complete(tmp_path / "out", "evaluate")
    assert sorted(manifest["files"]) == ["figures/a.png", "metrics.json"]
    assert manifest["inputs"] == {"data_json": {"path": str(data), "bytes": 2}, "baseline": True}
    assert sorted(p.name for p in tmp_path.iterdir()) == [".out.lock", "out", "val.json"]  # no staging left


def test_a_failure_leaves_the_old_folder_as_it_was(tmp_path):
    out = tmp_path / "out"
    with OutFolder(out, "evaluate", {}) as staging:
        write_result(staging, "old")
    before = {p: p.read_bytes() for p in out.rglob("*") if p.is_file()}
    with pytest.raises(RuntimeError, match="model failed"):
        with OutFolder(out, "evaluate", {}, overwrite=True) as staging:
            write_result(staging, "new")
            raise RuntimeError("model failed")
    assert {p: p.read_bytes() for p in out.rglob("*") if p.is_file()} == before
    assert sorted(p.name for p in tmp_path.iterdir()) == [".out.lock", "out"]


def test_a_full_folder_is_refused_without_overwrite_and_replaced_with_it(tmp_path):
    out = tmp_path / "out"
    with OutFolder(out, "evaluate", {}) as staging:
        write_result(staging, "old")
    with pytest.raises(OutFolderError, match="is not empty .* pass --overwrite"):
        OutFolder(out, "evaluate", {}).__enter__()
    with OutFolder(out, "evaluate", {}, overwrite=True) as staging:
        (staging / "metrics.json").write_text("{}")
    assert sorted(p.name for p in out.iterdir()) == [MANIFEST, "metrics.json"]  # the old figures are gone
    (tmp_path / "empty").mkdir()
    with OutFolder(tmp_path / "empty", "evaluate", {}) as staging:  # an empty folder is fine
        (staging / "metrics.json").write_text("{}")
    (tmp_path / "file").write_text("x")
    with pytest.raises(OutFolderError, match="is a file"):
        OutFolder(tmp_path / "file", "evaluate", {}).__enter__()


def test_a_live_writer_refuses_a_second_and_a_dead_ones_leftovers_are_cleaned(tmp_path):
    out = tmp_path / "out"
    holder = (
        "import sys, time; from filelock import FileLock; lock = FileLock(sys.argv[1]); lock.acquire();"
        "print('locked', flush=True); time.sleep(60)"
    )
    lock = str(tmp_path / ".out.lock")
    writer = subprocess.Popen([sys.executable, "-c", holder, lock], stdout=subprocess.PIPE)
    try:
        assert writer.stdout.readline().strip() == b"locked"
        with pytest.raises(OutFolderError, match="being written by another run"):
            OutFolder(out, "evaluate", {}).__enter__()
    finally:
        writer.kill()  # like kill -9: the kernel drops its lock with the process
        writer.wait()
    (tmp_path / f".out.partial-{writer.pid}").mkdir()  # what the dead writer had half written
    (tmp_path / f".out.partial-{writer.pid}" / "results.json").write_text("[")
    with OutFolder(out, "evaluate", {}) as staging:
        (staging / "metrics.json").write_text("{}")
    assert sorted(p.name for p in tmp_path.iterdir()) == [".out.lock", "out"]
    assert check_complete(out)["command"] == "evaluate"


def test_check_complete_names_what_is_wrong(tmp_path):
    out = tmp_path / "out"
    with pytest.raises(OutFolderError, match="does not exist"):
        check_complete(out)
    out.mkdir()
    (out / "README.md").write_text("a card")
    with pytest.raises(OutFolderError, match="no readable manifest.json: it was not written to the end"):
        check_complete(out)
    with OutFolder(tmp_path / "pub", "publish", {}) as staging:
        write_result(staging)
    with pytest.raises(OutFolderError, match="written by 'publish', not 'evaluate'"):
        check_complete(tmp_path / "pub", "evaluate")
    (tmp_path / "pub" / "metrics.json").write_text("{}")
    with pytest.raises(OutFolderError, match="metrics.json changed since it was written"):
        check_complete(tmp_path / "pub", "publish")
    os.remove(tmp_path / "pub" / "figures" / "a.png")
    with pytest.raises(OutFolderError, match="figures/a.png is listed in manifest.json but missing"):
        check_complete(tmp_path / "pub", "publish")
