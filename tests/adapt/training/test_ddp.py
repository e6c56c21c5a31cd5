import math
from pathlib import Path

import lightning as L
import pytest
import torch
from transformers import Sam3Model

from sam3_adapt.data_mix.datamodule import ConceptDataModule
from sam3_adapt.data_mix.synthetic.shapes import write_shapes_coco
from sam3_adapt.model.tiny import sam3_processor, tiny_sam3_config
from sam3_adapt.training.task import ConceptSegmentationTask

SIZE = 112


class Record(L.Callback):
    """Writes the global loss of every step, the first step's gradients (after DDP's averaging), the
    final trainable weights and the validation metrics, from rank 0."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self.losses: list[float] = []
        self.first_grads: dict[str, torch.Tensor] = {}

    def on_before_optimizer_step(self, trainer, pl_module, optimizer) -> None:
        if not self.first_grads:
            self.first_grads = {
                n: p.grad.detach().clone() for n, p in pl_module.named_parameters() if p.grad is not None
            }

    def on_train_batch_end(self, trainer, pl_module, outputs, batch, batch_idx) -> None:
        loss = outputs["loss"] if isinstance(outputs, dict) else outputs
        self.losses.append(float(trainer.strategy.reduce(loss.detach(), reduce_op="mean")))

    def on_train_end(self, trainer, pl_module) -> None:
        if trainer.is_global_zero:
            weights = {n: p.detach().clone() for n, p in pl_module.named_parameters() if p.requires_grad}
            metrics = {k: float(v) for k, v in trainer.callback_metrics.items() if k.startswith("val/")}
            result = {
                "losses": self.losses,
                "grads": self.first_grads,
                "weights": weights,
                "metrics": metrics,
            }
            torch.save({**result, "world": trainer.world_size}, self.path)


def tiny_checkpoint(folder: Path) -> Path:
    """A tiny random SAM 3 without dropout: one process and two draw different dropout masks."""
    config = tiny_sam3_config(image_size=SIZE)
    for sub in (config.geometry_encoder_config, config.detr_encoder_config, config.detr_decoder_config):
        sub.dropout = 0.0
    torch.manual_seed(0)
    Sam3Model(config).save_pretrained(folder)
    sam3_processor(SIZE).save_pretrained(folder)
    return folder


def fit(tmp_path: Path, devices: int, checkpoint: Path, chunk: int | None = None) -> dict:
    train_json, images = write_shapes_coco(tmp_path / "train", num_images=8, image_size=64, seed=0)
    # Three validation images on two processes: Lightning's distributed sampler repeats one of them.
    val_json, val_images = write_shapes_coco(tmp_path / "val", num_images=3, image_size=64, seed=1)
    data = ConceptDataModule(
        train_json=str(train_json),
        image_dir=str(images),
        val_json=str(val_json),
        val_image_dir=str(val_images),
        image_size=SIZE,
        batch_size=4 // devices,
        augment=False,
        # Positives only: 1-4 queries per image, so the processes hold different numbers of queries.
        include_negatives=False,
        # The mixing sampler draws each epoch's order from the seed alone and gives process r every
        # second index from r: one process with batch 4 and two with batch 2 see the same global batches.
        mix_epoch_size=8,
    )
    torch.manual_seed(0)  # the same LoRA initialisation in both runs
    task = ConceptSegmentationTask(
        checkpoint=str(checkpoint),
        adaptation="lora",
        lora={"rank": 4, "dropout": 0.0},
        lr_detector=1e-3,
        phrase_chunk=chunk,
    )
    result = tmp_path / f"result-{devices}.pt"
    trainer = L.Trainer(
        accelerator="cpu",
        devices=devices,
        # LoRA on the geometry encoder (exemplar prompts only) and the mask decoder (positives only)
        # gets no gradient in some steps: DDP must look for unused parameters.
        strategy="ddp_spawn_find_unused_parameters_true" if devices > 1 else "auto",
        max_steps=4,
        num_sanity_val_steps=0,
        logger=False,
        enable_checkpointing=False,
        enable_progress_bar=False,
        enable_model_summary=False,
        callbacks=[Record(result)],
    )
    trainer.fit(task, data)
    return torch.load(result)


@pytest.mark.slow
def test_two_process_ddp_fit_equals_one_process_fit_with_the_same_global_batch(tmp_path):
    checkpoint = tiny_checkpoint(tmp_path / "tiny")
    single = fit(tmp_path / "one", 1, checkpoint)
    ddp = fit(tmp_path / "two", 2, checkpoint)
    assert (single["world"], ddp["world"]) == (1, 2)
    assert len(single["losses"]) == len(ddp["losses"]) == 4
    assert all(math.isfinite(loss) for loss in single["losses"])
    assert single["losses"][0] != single["losses"][-1]
    assert ddp["losses"] == pytest.approx(single["losses"], rel=1e-5)
    # DDP averages the processes' gradients: with the objective's global normalisers that is the
    # gradient of the global batch.
    assert single["grads"] and single["grads"].keys() == ddp["grads"].keys()
    for name, grad in single["grads"].items():
        torch.testing.assert_close(ddp["grads"][name], grad, atol=1e-6, rtol=1e-4, msg=name)
    assert single["weights"].keys() == ddp["weights"].keys()
    moved = 0
    for name, weight in single["weights"].items():
        # AdamW moves each weight by about the learning rate whatever its gradient's size, so
        # rounding in a near-zero gradient entry shows up at this scale (up to 1e-7 measured).
        torch.testing.assert_close(ddp["weights"][name], weight, atol=1e-6, rtol=1e-4, msg=name)
        moved += "lora_B" in name and bool(weight.abs().sum() > 0)
    assert moved > 0  # the adapters trained (LoRA B starts at zero)
    assert "val/cgF1" in single["metrics"] and "val/count_MAE" in single["metrics"]
    assert ddp["metrics"] == pytest.approx(single["metrics"], abs=1e-6)


@pytest.mark.slow
def test_two_process_ddp_fit_with_phrases_in_chunks_equals_one_process_fit_of_whole_batches(tmp_path):
    # Each process sends its queries through the detector one at a time and caches the gradients;
    # DDP averages the cached gradients (they arrive through the parameters' own hooks in the one
    # backward pass it sees), so the result is the single process's whole-batch step.
    checkpoint = tiny_checkpoint(tmp_path / "tiny")
    single = fit(tmp_path / "one", 1, checkpoint)
    chunked = fit(tmp_path / "two", 2, checkpoint, chunk=1)
    assert chunked["world"] == 2
    assert chunked["losses"] == pytest.approx(single["losses"], rel=1e-5)
    assert single["grads"].keys() == chunked["grads"].keys()
    for name, grad in single["grads"].items():
        torch.testing.assert_close(chunked["grads"][name], grad, atol=1e-6, rtol=1e-4, msg=name)
    for name, weight in single["weights"].items():
        torch.testing.assert_close(chunked["weights"][name], weight, atol=1e-6, rtol=1e-4, msg=name)
