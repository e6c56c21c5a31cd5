"""`sam3-adapt` end to end on the tiny model: recipes, fit, resume, validate, test, predict, export."""

import json
from pathlib import Path

import pytest
import torch
from pycocotools import mask as mask_utils

from sam3_adapt.cli import main
from sam3_adapt.data_mix.synthetic.shapes import write_shapes_coco
from sam3_adapt.fitting.lightning_cli import lightning_cli
from sam3_adapt.model.loading import load_sam3

RECIPES = sorted(Path(__file__).parents[2].joinpath("recipes").glob("*.yaml"))


@pytest.fixture(scope="module")
def shapes(tmp_path_factory) -> dict[str, str]:
    root = tmp_path_factory.mktemp("shapes")
    train_json, train_images = write_shapes_coco(root / "train", num_images=4, image_size=64, seed=0)
    val_json, val_images = write_shapes_coco(root / "val", num_images=2, image_size=64, seed=1)
    return {
        "train_json": str(train_json),
        "image_dir": str(train_images),
        "val_json": str(val_json),
        "val_image_dir": str(val_images),
    }


def data_args(shapes: dict[str, str]) -> list[str]:
    return [f"--data.{key}={value}" for key, value in shapes.items()]


def tiny_args(root: Path, shapes: dict[str, str], *extra: str) -> list[str]:
    callbacks = [
        {
            "class_path": "lightning.pytorch.callbacks.ModelCheckpoint",
            "init_args": {"dirpath": f"{root}/checkpoints", "save_last": True, "every_n_train_steps": 2},
        },
        {
            "class_path": "sam3_adapt.training.results_writer.CocoResultsWriter",
            "init_args": {"output_path": f"{root}/predictions.json"},
        },
    ]
    return [
        "--config",
        "recipes/tiny-cpu.yaml",
        *data_args(shapes),
        "--data.batch_size=2",
        f"--trainer.default_root_dir={root}",
        "--trainer.callbacks=" + json.dumps(callbacks),
        "--trainer.logger=false",
        "--trainer.enable_progress_bar=false",
        *extra,
    ]


@pytest.mark.parametrize("recipe", RECIPES, ids=[r.stem for r in RECIPES])
def test_every_recipe_parses_and_builds_against_the_code(recipe, shapes, tmp_path):
    # The GPU recipes name facebook/sam3; the tiny model stands in so nothing is downloaded,
    # every other key of the recipe is parsed and passed to the real constructors.
    cli = lightning_cli(
        [
            "--config",
            str(recipe),
            "--model.checkpoint=tiny-random",
            *data_args(shapes),
            "--data.image_size=224",
            f"--trainer.default_root_dir={tmp_path}",
        ],
        run=False,
    )
    assert cli.model.hparams.checkpoint == "tiny-random"
    assert cli.datamodule.hparams.train_json == shapes["train_json"]


def test_tiny_recipe_fits_resumes_validates_tests_predicts_and_exports(shapes, tmp_path):
    main(["fit", *tiny_args(tmp_path, shapes, "--trainer.max_steps=2")])
    last = tmp_path / "checkpoints" / "last.ckpt"
    first = torch.load(last, weights_only=False)
    assert first["global_step"] == 2
    # Only what trains is stored; here (full fine-tuning) that is every parameter.
    assert any(k.startswith("segmenter.network.") for k in first["state_dict"])

    # An interrupted fit resumes from its last checkpoint and goes on counting steps.
    main(["fit", *tiny_args(tmp_path, shapes, "--trainer.max_steps=4"), f"--ckpt_path={last}"])
    resumed = torch.load(last, weights_only=False)
    assert resumed["global_step"] == 4
    assert resumed["epoch"] >= first["epoch"]

    main(["validate", *tiny_args(tmp_path, shapes), f"--ckpt_path={last}"])

    main(
        [
            "test",
            *tiny_args(tmp_path, shapes),
            f"--data.test_json={shapes['val_json']}",
            f"--ckpt_path={last}",
        ]
    )

    main(["predict", *tiny_args(tmp_path, shapes), f"--ckpt_path={last}"])
    records = json.loads((tmp_path / "predictions.json").read_text())
    gt = json.loads(Path(shapes["val_json"]).read_text())
    assert records and {r["image_id"] for r in records} <= {im["id"] for im in gt["images"]}
    first_record = records[0]
    assert len(first_record["bbox"]) == 4 and 0.0 <= first_record["score"] <= 1.0
    assert mask_utils.decode(first_record["segmentation"]).shape == (64, 64)

    merged = tmp_path / "merged"
    main(["export", f"--ckpt_path={last}", f"--out={merged}"])
    exported, _ = load_sam3(str(merged))
    trained = torch.load(last, weights_only=False)["state_dict"]
    for name, value in exported.state_dict().items():
        key = f"segmenter.network.{name}"
        if key in trained:
            torch.testing.assert_close(value, trained[key], msg=key)


def test_ckpt_path_last_resumes_the_interrupted_run_of_the_recipe(shapes, tmp_path):
    # As the recipes have it: a logger (a new version_N folder per run) and ModelCheckpoint(save_last)
    # without a dirpath. Lightning alone would look for `last` in the new run's folder and start over.
    args = [
        "--config",
        "recipes/tiny-cpu.yaml",
        *data_args(shapes),
        "--data.batch_size=2",
        f"--trainer.default_root_dir={tmp_path}",
        "--trainer.logger=lightning.pytorch.loggers.CSVLogger",
        f"--trainer.logger.save_dir={tmp_path}",
        "--trainer.enable_progress_bar=false",
    ]
    with pytest.warns(UserWarning, match="no last.ckpt"):
        lightning_cli(["fit", *args, "--trainer.max_steps=2", "--ckpt_path=last"])
    interrupted = tmp_path / "lightning_logs" / "version_0" / "checkpoints" / "last.ckpt"
    assert torch.load(interrupted, weights_only=False)["global_step"] == 2

    cli = lightning_cli(["fit", *args, "--trainer.max_steps=4", "--ckpt_path=last"])
    assert Path(cli.trainer.ckpt_path) == interrupted
    # The resumed run continues in the interrupted run's folder, not a new version_1.
    assert torch.load(interrupted, weights_only=False)["global_step"] == 4
    assert sorted(p.name for p in (tmp_path / "lightning_logs").iterdir()) == ["version_0"]


def test_export_of_a_missing_checkpoint_names_it_in_one_line(tmp_path, capsys):
    with pytest.raises(SystemExit) as stop:
        main(["export", f"--ckpt_path={tmp_path / 'nothing.ckpt'}", f"--out={tmp_path / 'out'}"])
    assert stop.value.code == 1
    err = capsys.readouterr().err
    assert err.startswith("sam3-adapt export: error: no checkpoint at") and "nothing.ckpt" in err
    assert err.count("\n") == 1 and "Traceback" not in err
    with pytest.raises(FileNotFoundError, match="nothing.ckpt"):  # --debug: the exception itself
        main(["export", f"--ckpt_path={tmp_path / 'nothing.ckpt'}", f"--out={tmp_path / 'out'}", "--debug"])
