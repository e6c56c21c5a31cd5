import json

import lightning as L
import pytest

from adapt.task import ConceptSegmentationTask
from data_mix.datamodule import ConceptDataModule
from data_mix.shapes import write_shapes_coco


def trainer(**kwargs) -> L.Trainer:
    return L.Trainer(
        accelerator="cpu", logger=False, enable_checkpointing=False, enable_progress_bar=False, **kwargs
    )


def test_a_phrase_too_long_for_the_text_encoder_stops_fit_before_any_step(tmp_path):
    json_path, images = write_shapes_coco(tmp_path, num_images=2, image_size=64, seed=0)
    coco = json.loads(json_path.read_text())
    coco["categories"][0]["name"] = " ".join(["very"] * 40) + " red circle"
    json_path.write_text(json.dumps(coco))
    data = ConceptDataModule(train_json=str(json_path), image_dir=str(images), image_size=224)
    task = ConceptSegmentationTask(checkpoint="tiny-random", adaptation="full")
    fit = trainer(max_steps=1)
    with pytest.raises(ValueError, match=rf"{json_path.name}.*tokens long"):
        fit.fit(task, data)
    assert fit.global_step == 0


def test_box_only_data_trains_without_masks_and_reports_bbox_metrics_only(tmp_path):
    json_path, images = write_shapes_coco(tmp_path, num_images=2, image_size=64, seed=0, masks=False)
    data = ConceptDataModule(
        train_json=str(json_path),
        image_dir=str(images),
        val_json=str(json_path),
        image_size=224,
        batch_size=2,
    )
    task = ConceptSegmentationTask(checkpoint="tiny-random", adaptation="lora", mask_loss=False)
    fit = trainer(max_steps=2, num_sanity_val_steps=0)
    fit.fit(task, data)
    metrics = fit.callback_metrics
    assert "val/bbox/AP" in metrics and "val/cgF1" in metrics
    assert not any(key.startswith("val/segm") for key in metrics)
    assert float(metrics["train/loss_mask"]) == 0.0 and float(metrics["train/loss_dice"]) == 0.0
