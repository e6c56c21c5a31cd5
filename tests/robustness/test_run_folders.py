"""Output folders under concurrency and kills, through the command line: one writer wins, a killed
run leaves ``--out`` as it was, and the next run cleans up after it."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path
from subprocess import PIPE

import pytest

from sam3_adapt.data_mix.synthetic.shapes import write_shapes_coco
from sam3_adapt.fitting.out_folder import check_complete

pytestmark = pytest.mark.slow
ENV = {**os.environ, "HF_HUB_OFFLINE": "1", "SAM3_ADAPT_DEBUG": "0", "OMP_NUM_THREADS": "1"}


@pytest.fixture(scope="module")
def labelled(tmp_path_factory) -> tuple[Path, Path]:
    return write_shapes_coco(tmp_path_factory.mktemp("set"), num_images=6, image_size=64, seed=0)


def evaluate_command(labelled: tuple[Path, Path], out: Path, *extra: str) -> list[str]:
    json_path, image_dir = labelled
    return [
        sys.executable, "-m", "sam3_adapt.cli", "evaluate", "--data_json", str(json_path),
        "--image_dir", str(image_dir), "--model", "tiny-random", "--out", str(out),
        "--progress", "false", "--pictures", "1", *extra,
    ]  # fmt: skip


def run_cli(command: list[str]) -> subprocess.CompletedProcess:
    return subprocess.run(command, env=ENV, capture_output=True, text=True, timeout=300)


def snapshot(folder: Path) -> dict[str, bytes]:
    return {str(p.relative_to(folder)): p.read_bytes() for p in folder.rglob("*") if p.is_file()}


def test_two_evaluations_into_one_folder_one_wins_one_is_refused(labelled, tmp_path):
    out = tmp_path / "out"
    runs = [
        subprocess.Popen(evaluate_command(labelled, out), env=ENV, stdout=PIPE, stderr=PIPE, text=True)
        for _ in range(2)
    ]
    done = [(run.wait(timeout=300), *run.communicate()) for run in runs]
    codes = sorted(code for code, _, _ in done)
    assert codes == [0, 1], done
    refused = next(err for code, _, err in done if code == 1).strip().splitlines()
    assert len(refused) == 1 and "Traceback" not in refused[0]
    assert "being written by another run" in refused[0] or "is not empty" in refused[0], refused
    assert check_complete(out, "evaluate")["files"].keys() >= {"metrics.json", "results.json", "report.html"}
    assert sorted(p.name for p in tmp_path.iterdir()) == [".out.lock", "out"]  # no staging folder left


def kill_when_writing(command: list[str], staging_glob: str, parent: Path) -> None:
    """Start ``command`` and ``kill -9`` it once a file exists in its staging folder."""
    run = subprocess.Popen(command, env=ENV, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    deadline = time.monotonic() + 300
    while time.monotonic() < deadline and run.poll() is None:
        if any(p.is_file() for staging in parent.glob(staging_glob) for p in staging.rglob("*")):
            break
        time.sleep(0.02)
    assert run.poll() is None, "the command ended before it could be killed while writing"
    os.kill(run.pid, signal.SIGKILL)
    run.wait()


def test_a_killed_evaluation_leaves_out_as_it_was_and_the_next_run_succeeds(labelled, tmp_path):
    out = tmp_path / "out"
    first = run_cli(evaluate_command(labelled, out))
    assert first.returncode == 0, first.stderr
    before = snapshot(out)

    kill_when_writing(evaluate_command(labelled, out, "--overwrite", "true"), ".out.partial-*", tmp_path)
    assert snapshot(out) == before  # the earlier result is whole and untouched
    assert list(tmp_path.glob(".out.partial-*"))  # the dead run's half-written folder is left behind ...

    kill_when_writing(evaluate_command(labelled, tmp_path / "new"), ".new.partial-*", tmp_path)
    assert not (tmp_path / "new").exists()  # no partial folder ever becomes visible

    again = run_cli(evaluate_command(labelled, out, "--overwrite", "true"))
    assert again.returncode == 0, again.stderr  # ... and the next run takes it over and cleans up
    check_complete(out, "evaluate")
    assert not list(tmp_path.glob(".out.partial-*"))
