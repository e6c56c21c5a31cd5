"""``kill -9`` a fit mid-epoch or at an epoch boundary, resume with ``--ckpt_path last``: the same final
weights, bit for bit, as the run that was never stopped, in one run folder whose metrics.csv repeats no
step.

The runs mix few-shot and anchor data (an epoch-keyed sampler), augment, draw exemplar prompts and use
LoRA dropout, so every random stream a resume must restore is in play. One thread, deterministic mode.
"""

from __future__ import annotations

import csv
import json
import os
import subprocess
import sys
import warnings
from pathlib import Path

import pytest
import torch

from sam3_adapt.data_mix.synthetic.shapes import write_shapes_coco
from sam3_adapt.fitting.lightning_cli import lightning_cli
from sam3_adapt.fitting.recipe_files import recipe_path
from sam3_adapt.release.export import export

pytestmark = pytest.mark.slow
ROOT = Path(__file__).parents[3]
#: 4 few-shot + 4 anchor draws per epoch, 2 images a batch: 4 steps an epoch, 12 steps in all.
STEPS, STEPS_PER_EPOCH = 12, 4


@pytest.fixture(scope="module")
def data(tmp_path_factory) -> dict[str, Path]:
    root = tmp_path_factory.mktemp("data")
    train, train_images = write_shapes_coco(root / "train", num_images=4, image_size=64, seed=0)
    anchor, anchor_images = write_shapes_coco(root / "anchor", num_images=6, image_size=64, seed=1)
    return {"train": train, "train_images": train_images, "anchor": anchor, "anchor_images": anchor_images}


def fit(data: dict[str, Path], root: Path, kill_at: int | None = None, resume: bool = False) -> int:
    callbacks = [
        {
            "class_path": "lightning.pytorch.callbacks.ModelCheckpoint",
            "init_args": {"save_last": True, "every_n_train_steps": 2},
        }
    ]
    if kill_at is not None:
        killer = "tests.adapt.fitting.kill_at_step.KillAtStep"
        callbacks.append({"class_path": killer, "init_args": {"step": kill_at}})
    command = [
        sys.executable, "-m", "sam3_adapt.cli", "fit", "--config", "tiny-10shot",
        "--model.lora.dropout", "0.1", "--model.warmup_steps", "2",
        "--data.train_json", str(data["train"]), "--data.image_dir", str(data["train_images"]),
        "--data.anchor_json", str(data["anchor"]), "--data.anchor_image_dir", str(data["anchor_images"]),
        "--data.anchor_ratio", "1.0", "--data.batch_size", "2", "--data.exemplar_prob", "0.5",
        "--trainer.max_steps", str(STEPS), "--trainer.log_every_n_steps", "1",
        "--trainer.deterministic", "true", "--trainer.default_root_dir", str(root),
        "--trainer.callbacks", json.dumps(callbacks),
    ]  # fmt: skip
    if resume:
        command += ["--ckpt_path", "last"]
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "OMP_NUM_THREADS": "1", "MKL_NUM_THREADS": "1"}
    done = subprocess.run(command, cwd=ROOT, env=env, capture_output=True, text=True, timeout=600)
    assert done.returncode in (0, -9), done.stderr[-3000:]
    return done.returncode


def final_weights(root: Path) -> dict[str, torch.Tensor]:
    checkpoint = torch.load(root / "lightning_logs/version_0/checkpoints/last.ckpt", weights_only=True)
    assert checkpoint["global_step"] == STEPS
    return checkpoint["state_dict"]


def metrics_rows(root: Path) -> list[dict[str, str]]:
    with open(root / "lightning_logs/version_0/metrics.csv", newline="") as handle:
        return list(csv.DictReader(handle))


@pytest.fixture(scope="module")
def uninterrupted(data, tmp_path_factory) -> Path:
    root = tmp_path_factory.mktemp("uninterrupted")
    assert fit(data, root) == 0
    return root


@pytest.mark.parametrize(
    "kill_at",
    [STEPS_PER_EPOCH + 3, 2 * STEPS_PER_EPOCH + 1],
    ids=["mid-epoch (checkpoint after 2 of 4 batches)", "epoch boundary (checkpoint at the end of epoch 2)"],
)
def test_killed_and_resumed_fit_ends_with_the_same_weights(data, uninterrupted, tmp_path, kill_at):
    assert fit(data, tmp_path, kill_at=kill_at) == -9
    assert fit(data, tmp_path, resume=True) == 0

    expected, got = final_weights(uninterrupted), final_weights(tmp_path)
    assert expected.keys() == got.keys()
    delta = max((expected[k].float() - got[k].float()).abs().max().item() for k in expected)
    print(f"kill at step {kill_at}: max |dW| = {delta}")
    assert delta == 0.0

    assert sorted(p.name for p in (tmp_path / "lightning_logs").iterdir()) == ["version_0"]
    rows = metrics_rows(tmp_path)
    steps = [row["step"] for row in rows if row.get("train/loss")]
    assert len(steps) == len(set(steps)) == STEPS  # every step once
    assert rows == metrics_rows(uninterrupted)  # the same losses, logged once each


def test_the_final_step_is_saved_and_an_older_checkpoint_exports_with_a_warning(data, tmp_path):
    """5 steps with a save every 4: last.ckpt must still hold step 5; the step-4 file is stale."""
    checkpoint = {
        "class_path": "lightning.pytorch.callbacks.ModelCheckpoint",
        "init_args": {"save_last": True, "every_n_train_steps": 4},
    }
    cli = lightning_cli(
        [
            f"--config={recipe_path('tiny-10shot')}",
            f"--data.train_json={data['train']}",
            f"--data.image_dir={data['train_images']}",
            "--trainer.max_steps=5",
            "--trainer.log_every_n_steps=1",
            f"--trainer.default_root_dir={tmp_path}",
            "--trainer.enable_progress_bar=false",
            "--trainer.callbacks=" + json.dumps([checkpoint]),
        ],
        run=False,
    )
    cli.trainer.fit(cli.model, cli.datamodule)
    folder = tmp_path / "lightning_logs/version_0/checkpoints"
    assert torch.load(folder / "last.ckpt", weights_only=True)["global_step"] == 5
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        export(str(folder / "last.ckpt"), str(tmp_path / "final"))  # no warning: the final weights
    with pytest.warns(UserWarning, match=r"holds step 4, but the run logged up to step 5"):
        export(str(next(folder.glob("*-step=4.ckpt"))), str(tmp_path / "stale"))
