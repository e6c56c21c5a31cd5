"""The whole objective really trains: a tiny SAM 3 learns a tiny synthetic COCO set on CPU."""

import lightning as L
import pytest

from sam3_adapt.data_mix.datamodule import ConceptDataModule
from sam3_adapt.data_mix.synthetic.shapes import write_shapes_coco
from sam3_adapt.model.tiny import write_tiny_random_sam3
from sam3_adapt.training.task import ConceptSegmentationTask


class LossHistory(L.Callback):
    def __init__(self) -> None:
        self.losses: list[float] = []

    def on_train_batch_end(self, trainer, pl_module, outputs, batch, batch_idx) -> None:
        self.losses.append(float(outputs["loss"]))


@pytest.mark.slow
def test_fit_lowers_the_loss_and_raises_train_set_ap_well_above_its_start(tmp_path):
    # A 112 px tiny model (a local HF folder, loaded like any checkpoint) on 8 images of 9 phrases,
    # evaluated on those same images. Measured after 600 steps (2.5 min): segm AP 0.00 -> 0.66,
    # bbox AP 0.00 -> 0.53.
    L.seed_everything(0)
    checkpoint = write_tiny_random_sam3(tmp_path / "tiny-112", image_size=112)
    json_path, images = write_shapes_coco(tmp_path / "data", num_images=8, image_size=96, seed=0)
    data = ConceptDataModule(
        train_json=str(json_path),
        image_dir=str(images),
        val_json=str(json_path),
        image_size=112,
        batch_size=4,
        augment=False,
        # Presence on absent phrases is a slow plateau (FINDINGS) whose end varied between runs
        # (segm AP 0.05-0.54 after 600 steps); negatives are covered by the objective's unit tests.
        include_negatives=False,
    )
    lr = 3e-3
    task = ConceptSegmentationTask(
        checkpoint=str(checkpoint),
        adaptation="full",
        lr_detector=lr,
        lr_vision=lr,
        lr_text=lr,
        weight_decay=1e-4,
        warmup_steps=50,
    )
    history = LossHistory()
    trainer = L.Trainer(
        max_steps=600,
        accelerator="cpu",
        logger=False,
        enable_checkpointing=False,
        enable_progress_bar=False,
        enable_model_summary=False,
        gradient_clip_val=1.0,
        check_val_every_n_epoch=10**6,
        callbacks=[history],
    )
    before = trainer.validate(task, data, verbose=False)[0]
    trainer.fit(task, data)
    after = trainer.validate(task, data, verbose=False)[0]

    print({k: round(v, 3) for k, v in after.items()})
    first, last = history.losses[:20], history.losses[-50:]
    assert sum(last) / len(last) < 0.6 * sum(first) / len(first)
    assert before["val/segm/AP"] < 0.05
    assert before["val/bbox/AP"] < 0.05
    assert after["val/segm/AP"] > before["val/segm/AP"] + 0.1
    assert after["val/bbox/AP"] > before["val/bbox/AP"] + 0.1
