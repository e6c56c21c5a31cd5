"""A checkpoint is a pickle: every verb that takes one loads it without running code from it.

The malicious checkpoint's payload opens (and so creates) a marker file when unpickled. ``publish``
used to run it (``torch.load(weights_only=False)``) before any check.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from sam3_adapt.data_mix.synthetic.shapes import write_shapes_coco
from sam3_adapt.fitting.run_files import find_run
from sam3_adapt.release.export import export
from sam3_adapt.release.publish import publish


class Payload:
    """Unpickling this calls ``open(marker, "w")``, which creates the marker file."""

    def __init__(self, marker: Path) -> None:
        self.marker = marker

    def __reduce__(self):
        return (open, (str(self.marker), "w"))


@pytest.fixture
def evil(tmp_path) -> tuple[Path, Path]:
    """A checkpoint that looks like fit's, with the payload among its hyperparameters; and the marker."""
    marker = tmp_path / "payload-ran"
    run = tmp_path / "run" / "checkpoints"
    run.mkdir(parents=True)
    path = run / "last.ckpt"
    torch.save(
        {
            "state_dict": {},
            "global_step": 1,
            "hyper_parameters": {"checkpoint": "tiny", "x": Payload(marker)},
        },
        path,
    )
    return path, marker


def test_export_and_publish_refuse_the_checkpoint_without_running_it(evil, tmp_path):
    path, marker = evil
    for call in (
        lambda: export(str(path), str(tmp_path / "adapter")),
        lambda: publish(str(path), out=str(tmp_path / "hub")),
        lambda: find_run(path),
    ):
        with pytest.raises(ValueError, match=r"last\.ckpt: refused to load: .*could run code"):
            call()
        assert not marker.exists()
    assert not (tmp_path / "adapter").exists() and not (tmp_path / "hub").exists()


def cli(*args: str, cwd: Path) -> subprocess.CompletedProcess:
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "SAM3_ADAPT_DEBUG": "0"}
    return subprocess.run(
        [sys.executable, "-m", "sam3_adapt.cli", *args],
        capture_output=True,
        text=True,
        cwd=cwd,
        env=env,
        timeout=300,
    )


@pytest.mark.slow
def test_export_publish_and_fit_through_the_cli_never_run_the_payload(evil, tmp_path):
    path, marker = evil
    json_path, image_dir = write_shapes_coco(tmp_path / "data", num_images=2, image_size=64)
    # Where `--ckpt_path last` looks: the newest last.ckpt of a run under the root directory.
    resumable = tmp_path / "fit" / "lightning_logs" / "version_0" / "checkpoints"
    resumable.mkdir(parents=True)
    shutil.copyfile(path, resumable / "last.ckpt")
    data = [f"--data.train_json={json_path}", f"--data.image_dir={image_dir}", "--data.anchor_json=null"]
    lightning = [
        "--config",
        "tiny-10shot",
        *data,
        f"--data.val_json={json_path}",
        f"--data.predict_json={json_path}",
        f"--data.test_json={json_path}",
        "--trainer.max_steps=1",
        f"--trainer.default_root_dir={tmp_path / 'fit'}",
    ]
    runs = {
        "export": cli("export", "--ckpt_path", str(path), "--out", str(tmp_path / "adapter"), cwd=tmp_path),
        "publish": cli("publish", "--run", str(path), "--out", str(tmp_path / "hub"), cwd=tmp_path),
        "fit": cli("fit", *lightning, f"--ckpt_path={path}", cwd=tmp_path),
        "fit --ckpt_path last": cli("fit", *lightning, "--ckpt_path=last", cwd=tmp_path),
        **{
            verb: cli(verb, *lightning, f"--ckpt_path={path}", cwd=tmp_path)
            for verb in ("validate", "test", "predict")
        },
    }
    for verb, done in runs.items():
        last = done.stderr.strip().splitlines()[-1]
        assert done.returncode != 0, verb
        assert "last.ckpt: refused to load" in last, (verb, last)
        assert not marker.exists(), verb
    assert not (tmp_path / "adapter").exists() and not (tmp_path / "hub").exists()
