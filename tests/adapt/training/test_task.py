import json

import lightning as L
import pytest
import torch

from sam3_adapt.data_mix.datamodule import ConceptDataModule
from sam3_adapt.data_mix.synthetic.shapes import write_shapes_coco
from sam3_adapt.training.matcher import DivergedError
from sam3_adapt.training.task import ConceptSegmentationTask


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


def test_feature_cache_serves_later_epochs_from_disk(tmp_path):
    json_path, images = write_shapes_coco(tmp_path, num_images=2, image_size=64, seed=0)
    data = ConceptDataModule(
        train_json=str(json_path), image_dir=str(images), image_size=224, batch_size=2, augment=False
    )
    task = ConceptSegmentationTask(
        checkpoint="tiny-random", feature_cache="disk", feature_cache_dir=str(tmp_path / "cache")
    )
    fit = trainer(max_epochs=2)
    fit.fit(task, data)
    assert (task.segmenter.vision_cache.misses, task.segmenter.vision_cache.hits) == (2, 2)
    assert float(fit.callback_metrics["train/feature_cache_hit_rate"]) == 1.0
    assert len(list((tmp_path / "cache" / "vision_encoder").rglob("*.safetensors"))) == 2


def test_feature_cache_warns_when_augmentation_makes_every_epoch_new_and_refuses_training_towers(tmp_path):
    json_path, images = write_shapes_coco(tmp_path, num_images=2, image_size=64, seed=0)
    # At 224 px an image gets the same augmentation twice with probability about 1/16 (a legitimate
    # hit); with this seed none does.
    data = ConceptDataModule(
        train_json=str(json_path), image_dir=str(images), image_size=224, batch_size=2, seed=1
    )
    task = ConceptSegmentationTask(checkpoint="tiny-random", feature_cache="memory")
    with pytest.warns(UserWarning, match="no hit this epoch"):
        trainer(max_epochs=2).fit(task, data)
    assert task.segmenter.vision_cache.hits == 0

    with pytest.raises(ValueError, match="frozen vision or text encoder"):
        ConceptSegmentationTask(checkpoint="tiny-random", adaptation="full", feature_cache="memory")
    with pytest.raises(ValueError, match="feature_cache_dir"):
        ConceptSegmentationTask(checkpoint="tiny-random", feature_cache="disk")


@pytest.mark.parametrize("on_cuda", [False, True])
def test_gradients_of_the_chosen_adamw_can_be_clipped_under_bf16_mixed_precision(on_cuda):
    # Lightning's own check: a fused AdamW (what a GPU run used to get) made bf16-mixed fits with
    # gradient_clip_val fail at the first step ("does not allow for gradient clipping").
    from lightning.pytorch.plugins.precision import MixedPrecision
    from lightning.pytorch.utilities import GradClipAlgorithmType

    from sam3_adapt.training.task import adamw_options

    weight = torch.nn.Parameter(torch.ones(3))
    optimizer = torch.optim.AdamW([weight], **adamw_options(on_cuda, clips_gradients=True))
    weight.grad = torch.full((3,), 10.0)
    MixedPrecision("bf16-mixed", "cpu").clip_gradients(optimizer, 1.0, GradClipAlgorithmType.NORM)
    assert weight.grad.norm() == pytest.approx(1.0, rel=1e-4)


def test_a_gpu_run_without_clipping_gets_the_fused_adamw():
    from sam3_adapt.training.task import adamw_options

    assert adamw_options(on_cuda=True, clips_gradients=False) == {"fused": True}
    assert adamw_options(on_cuda=False, clips_gradients=False) == {"foreach": True}


def test_a_run_whose_weights_become_nan_stops_with_one_line_saying_it_diverged(tmp_path):
    json_path, images = write_shapes_coco(tmp_path, num_images=2, image_size=64, seed=0)
    data = ConceptDataModule(train_json=str(json_path), image_dir=str(images), image_size=224)
    task = ConceptSegmentationTask(checkpoint="tiny-random", adaptation="full")
    with torch.no_grad():  # what a too-high learning rate leaves behind
        for parameter in task.segmenter.network.parameters():
            parameter.fill_(float("nan"))
    fit = trainer(max_steps=1)
    with pytest.raises(DivergedError, match="training diverged.*learning rates"):
        fit.fit(task, data)
