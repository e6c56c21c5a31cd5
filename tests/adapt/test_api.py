"""The one-call API end to end on the random tiny model: fit, files, metrics, predict, evaluate, publish."""

import importlib.util
import json
import math
from pathlib import Path

import numpy as np
import pytest
import yaml
from matplotlib.figure import Figure
from PIL import Image

import sam3_adapt
from sam3_adapt.api import cli_arguments, recipe_path, recipe_settings
from sam3_adapt.data_mix.synthetic.concept_world import MICROSCOPY_PHRASES, write_world
from sam3_adapt.inference.prediction import Prediction

RECIPE = yaml.safe_load(recipe_path("tiny-10shot").read_text())


@pytest.fixture(scope="module")
def world(tmp_path_factory) -> dict:
    root = tmp_path_factory.mktemp("world")
    (root / "confusions.yaml").write_text("dataset: [blood vessel]\n")
    return {
        "train": write_world(root / "cells/train", "microscopy", 2, seed=0),
        "val": write_world(root / "cells/val", "microscopy", 2, seed=1),
        "anchor": write_world(root / "anchor", "anchor", 2, seed=0),
        "negatives": root / "confusions.yaml",
    }


@pytest.fixture(scope="module")
def result(world, tmp_path_factory):
    return sam3_adapt.finetune(
        base="tiny-random",
        train=world["train"][0],
        images=world["train"][1],
        recipe="tiny-10shot",
        val=world["val"][0],
        val_images=world["val"][1],
        anchor=world["anchor"][0],
        anchor_images=world["anchor"][1],
        negatives=world["negatives"],
        out=tmp_path_factory.mktemp("fit"),
        # tiny-random is built for 224 px; the recipe's 168 is the pretrained tiny's size.
        overrides={"data.image_size": 224, "model.lr_detector": 1e-3},
        trainer__max_epochs=1,
        trainer__log_every_n_steps=1,  # publish draws the training curve
        trainer__enable_progress_bar=False,
    )


def test_settings_map_named_arguments_and_dotted_keys_and_refuse_a_key_given_twice():
    settings = recipe_settings(
        {"base": "tiny", "train": "t.json", "val": None}, {"model.lr_detector": 1e-3}, trainer__max_epochs=5
    )
    assert settings == {
        "model.checkpoint": "tiny",
        "data.train_json": "t.json",
        "model.lr_detector": 1e-3,
        "trainer.max_epochs": 5,
    }
    with pytest.raises(ValueError, match=r"model.checkpoint is set twice \(base= and model.checkpoint\)"):
        recipe_settings({"base": "tiny"}, {"model.checkpoint": "tiny-random"})
    args = cli_arguments("tiny-10shot", {"model.lora": {"rank": 4}, "data.val_json": None, "x.y": Path("a")})
    assert args[1] == str(recipe_path("tiny-10shot"))
    assert args[2:] == ['--model.lora={"rank": 4}', "--data.val_json=null", "--x.y=a"]


def test_unknown_recipe_and_unknown_key_fail_clearly(tmp_path):
    with pytest.raises(FileNotFoundError, match="lora-10shot"):
        sam3_adapt.finetune(base="tiny-random", train="t.json", images="i", recipe="no-such-recipe")
    with pytest.raises(ValueError, match="lr_detectr"):
        sam3_adapt.finetune(
            base="tiny-random", train="t.json", images="i", out=tmp_path, overrides={"model.lr_detectr": 1.0}
        )


@pytest.mark.slow
def test_finetune_returns_metrics_checkpoint_adapter_and_the_resolved_recipe(result, world):
    assert math.isfinite(result.metrics["train/loss"])
    for name in ("val/segm/AP", "val/bbox/AP", "val/cgF1"):
        assert 0.0 <= result.metrics[name] <= 1.0
    assert result.weights == result.adapter
    assert {"adapter_config.json", "adapter_model.safetensors"} <= {p.name for p in result.adapter.iterdir()}
    assert json.loads((result.adapter / "adapter_config.json").read_text())["base_model_name_or_path"] == (
        "tiny-random"
    )
    assert result.checkpoint.is_file() and result.checkpoint.parent.parent == result.run_dir
    saved = yaml.safe_load((result.run_dir / "config.yaml").read_text())
    assert saved["model"]["lr_detector"] == result.config["model"]["lr_detector"] == 1e-3
    assert saved["trainer"]["max_epochs"] == 1
    assert saved["data"]["hard_negatives"] == str(world["negatives"])
    assert saved["data"]["anchor_json"] == str(world["anchor"][0])
    # Whatever the call did not set is the recipe's value.
    assert saved["model"]["lora"] | RECIPE["model"]["lora"] == saved["model"]["lora"]
    assert saved["model"]["lr_text"] == RECIPE["model"]["lr_text"]
    assert saved["data"]["batch_size"] == RECIPE["data"]["batch_size"]
    assert (result.run_dir / "metrics.csv").is_file()


@pytest.mark.slow
def test_predict_gives_masks_boxes_and_scores_in_original_pixels_and_reloads_identically(result, world):
    image_path = sorted(world["val"][1].glob("*.png"))[0]
    phrases = list(MICROSCOPY_PHRASES[:2])
    prediction = result.predict(Image.open(image_path), phrases, threshold=0.0)
    height, width = np.asarray(Image.open(image_path)).shape[:2]
    assert prediction.image_size == (height, width)
    slots = result.task.segmenter.sam3.config.detr_decoder_config.num_queries
    assert np.bincount(prediction.class_ids).tolist() == [slots, slots]  # threshold 0 keeps every slot
    assert prediction.masks.shape == (len(prediction), height, width) and prediction.masks.dtype == bool
    assert prediction.boxes.shape == (len(prediction), 4)
    assert set(prediction.labels) == set(phrases) and set(prediction.presence) == set(phrases)
    assert np.all(prediction.boxes[:, 2:] >= prediction.boxes[:, :2])
    assert np.all(prediction.boxes <= [width, height, width, height])
    kept = result.predict(image_path, phrases)
    assert np.all(kept.scores >= result.predictor.score_threshold)

    reloaded = sam3_adapt.load("tiny-random", adapter=result.adapter, image_size=224, device="cpu")
    again = reloaded.predict(np.asarray(Image.open(image_path).convert("RGB")), phrases, threshold=0.0)
    np.testing.assert_allclose(again.scores, prediction.scores, atol=1e-5)
    np.testing.assert_allclose(again.boxes, prediction.boxes, atol=1e-3)


@pytest.mark.slow
def test_show_draws_a_figure_and_writes_the_png(result, world, tmp_path):
    image_path = sorted(world["val"][1].glob("*.png"))[0]
    fig = result.show(image_path, list(MICROSCOPY_PHRASES), out=tmp_path / "overlay.png", threshold=0.0)
    assert isinstance(fig, Figure)
    assert Image.open(tmp_path / "overlay.png").size[0] > 100


@pytest.mark.slow
def test_evaluate_defaults_to_the_validation_set_and_writes_the_report(result, world):
    summary = result.evaluate(baseline=True, pictures=1, progress=False)
    folder = result.run_dir / "evaluate"
    assert {"metrics.json", "results.json", "report.html"} <= {p.name for p in folder.iterdir()}
    assert summary["data"]["json"] == [str(world["val"][0])]
    assert summary["model"]["adapter"] == str(result.adapter)
    assert "segm/AP" in summary["delta"] and "cgF1" in summary["delta"]


@pytest.mark.slow
def test_publish_writes_a_hub_folder_without_uploading(result, tmp_path):
    folder = result.publish(out=tmp_path / "hub", num_samples=1)
    names = {str(p.relative_to(folder)) for p in folder.rglob("*") if p.is_file()}
    assert {"README.md", "adapter_config.json", "adapter_model.safetensors", "recipe.yaml"} <= names
    assert "data/train.json" in names and "metrics.json" in names


def sample_prediction() -> Prediction:
    masks = np.zeros((3, 4, 5), dtype=bool)
    masks[0, :2, :2] = masks[1, 2:, 3:] = masks[2, 1, 1] = True
    return Prediction(
        phrases=["washer", "hex bolt"],
        boxes=np.array([[0, 0, 2, 2], [3, 2, 5, 4], [1, 1, 2, 2]], dtype=np.float32),
        scores=np.array([0.9, 0.6, 0.7], dtype=np.float32),
        class_ids=np.array([0, 0, 1]),
        masks=masks,
        presence={"washer": 0.95, "hex bolt": 0.8},
        image_size=(4, 5),
    )


def test_prediction_to_coco_gives_xywh_boxes_rle_masks_and_chosen_category_ids():
    records = sample_prediction().to_coco(image_id=7, category_ids={"washer": 3, "hex bolt": 5})
    assert [(r["category_id"], r["bbox"], r["score"]) for r in records] == [
        (3, [0.0, 0.0, 2.0, 2.0], pytest.approx(0.9)),
        (3, [3.0, 2.0, 2.0, 2.0], pytest.approx(0.6)),
        (5, [1.0, 1.0, 1.0, 1.0], pytest.approx(0.7)),
    ]
    assert all(r["image_id"] == 7 and r["segmentation"]["size"] == [4, 5] for r in records)
    assert [r["category_id"] for r in sample_prediction().to_coco()] == [1, 1, 2]


@pytest.mark.skipif(importlib.util.find_spec("supervision") is None, reason="supervision is not installed")
def test_prediction_to_supervision_carries_boxes_masks_scores_and_phrases():
    detections = sample_prediction().to_supervision()
    assert len(detections) == 3
    np.testing.assert_array_equal(detections.xyxy, sample_prediction().boxes)
    np.testing.assert_array_equal(detections.mask, sample_prediction().masks)
    np.testing.assert_array_equal(detections.class_id, [0, 0, 1])
    assert list(detections.data["class_name"]) == ["washer", "washer", "hex bolt"]
    assert list(detections[detections.confidence > 0.65].data["class_name"]) == ["washer", "hex bolt"]


@pytest.mark.skipif(importlib.util.find_spec("supervision") is not None, reason="supervision is installed")
def test_prediction_to_supervision_without_the_package_says_how_to_install_it():
    with pytest.raises(ImportError, match="pip install supervision"):
        sample_prediction().to_supervision()
