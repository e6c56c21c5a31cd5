"""The chunked step under Lightning: automatic and manual optimisation, gradient accumulation,
clipping, bf16-mixed and activation checkpointing give the whole-batch step's training."""

from pathlib import Path

import lightning as L
import pytest
import torch

from sam3_adapt.data_mix.datamodule import ConceptDataModule
from sam3_adapt.data_mix.synthetic.shapes import write_shapes_coco
from sam3_adapt.training.chunked_step import objective_step
from sam3_adapt.training.task import ConceptSegmentationTask
from tests.adapt.training.test_ddp import SIZE, tiny_checkpoint


class FirstStep(L.Callback):
    """Keeps the first optimizer step's gradients (after clipping) and its logged loss."""

    def __init__(self) -> None:
        self.grads: dict[str, torch.Tensor] = {}
        self.loss: float | None = None

    def on_before_optimizer_step(self, trainer, pl_module, optimizer) -> None:
        if not self.grads:
            self.grads = {
                n: p.grad.detach().clone() for n, p in pl_module.named_parameters() if p.grad is not None
            }
            self.loss = float(trainer.callback_metrics["train/loss"])


class ManualTask(ConceptSegmentationTask):
    """The task under manual optimisation: the chunked step's loss goes to ``manual_backward``."""

    def __init__(self, *args, **kwargs) -> None:
        super().__init__(*args, **kwargs)
        self.automatic_optimization = False

    def training_step(self, batch, batch_idx):
        optimizer = self.optimizers()
        step = objective_step(self.segmenter, self.objective, batch, self.chunk)
        self.log("train/loss", step.loss.detach())
        self.manual_backward(step.loss)
        self.clip_gradients(optimizer, gradient_clip_val=0.05, gradient_clip_algorithm="norm")
        optimizer.step()
        optimizer.zero_grad(set_to_none=True)
        self.lr_schedulers().step()


@pytest.fixture(scope="module")
def world(tmp_path_factory) -> tuple[Path, Path, Path]:
    root = tmp_path_factory.mktemp("chunked")
    train_json, images = write_shapes_coco(root / "train", num_images=4, image_size=64, seed=0)
    return tiny_checkpoint(root / "tiny"), train_json, images


def fit(
    world, chunk, *, adaptation="lora", checkpointing=False, precision="32-true", accumulate=1, manual=False
):
    checkpoint, train_json, images = world
    # Every absent shape category becomes a negative phrase: up to 9 queries per image, 2 images a batch.
    data = ConceptDataModule(
        train_json=str(train_json), image_dir=str(images), image_size=SIZE, batch_size=2, augment=False
    )
    torch.manual_seed(0)
    kind = ManualTask if manual else ConceptSegmentationTask
    task = kind(
        checkpoint=str(checkpoint),
        adaptation=adaptation,
        lora={"rank": 4, "dropout": 0.0},
        lr_detector=1e-3,
        activation_checkpointing=checkpointing,
        phrase_chunk=chunk,
    )
    first = FirstStep()
    trainer = L.Trainer(
        accelerator="cpu",
        max_steps=2,
        precision=precision,
        accumulate_grad_batches=accumulate,
        gradient_clip_val=None if manual else 0.05,
        num_sanity_val_steps=0,
        limit_val_batches=0,
        logger=False,
        enable_checkpointing=False,
        enable_progress_bar=False,
        enable_model_summary=False,
        callbacks=[first],
    )
    trainer.fit(task, data)
    weights = {n: p.detach().clone() for n, p in task.named_parameters() if p.requires_grad}
    return first, weights


def assert_same(chunked, whole, rtol=1e-4, atol=1e-6):
    (first_c, weights_c), (first_w, weights_w) = chunked, whole
    assert first_c.loss == pytest.approx(first_w.loss, rel=rtol)
    assert first_c.grads.keys() == first_w.grads.keys() and first_w.grads
    for name, grad in first_w.grads.items():
        torch.testing.assert_close(first_c.grads[name], grad, rtol=rtol, atol=atol, msg=name)
    # AdamW moves a weight by about its learning rate whatever the gradient's size, so float rounding in
    # a near-zero gradient entry can move it by up to lr (1e-3 here, in warm-up: measured up to 9e-6).
    for name, weight in weights_w.items():
        torch.testing.assert_close(weights_c[name], weight, rtol=0, atol=5e-5, msg=name)


@pytest.mark.parametrize(
    ("adaptation", "checkpointing", "accumulate"),
    [("lora", False, 2), ("full", True, 1)],
    ids=["lora", "full-ac"],
)
def test_automatic_optimisation_with_accumulation_and_clipping_trains_as_the_whole_batch(
    world, adaptation, checkpointing, accumulate
):
    whole = fit(world, None, adaptation=adaptation, checkpointing=checkpointing, accumulate=accumulate)
    chunked = fit(world, 3, adaptation=adaptation, checkpointing=checkpointing, accumulate=accumulate)
    assert_same(chunked, whole)


def test_manual_optimisation_gets_the_same_training_from_the_chunked_loss(world):
    assert_same(fit(world, 2, manual=True), fit(world, None, manual=True))


def test_bf16_mixed_chunked_step_matches_the_whole_batch_to_bf16_rounding(world):
    whole_first, _ = fit(world, None, precision="bf16-mixed")
    chunked_first, _ = fit(world, 3, precision="bf16-mixed")
    assert chunked_first.loss == pytest.approx(whole_first.loss, rel=2e-2)
    for name, grad in whole_first.grads.items():
        scale = grad.abs().max().clamp(min=1e-8)
        assert (chunked_first.grads[name] - grad).abs().max() <= 0.05 * scale, name


def test_auto_chunk_fits_the_budget_on_the_estimate_and_leaves_a_cpu_without_budget_unchunked(world, caplog):
    caplog.set_level("INFO", logger="lightning.pytorch")
    checkpoint, train_json, images = world
    data = ConceptDataModule(train_json=str(train_json), image_dir=str(images), image_size=SIZE, batch_size=2)

    def chunk_after_one_step(**settings) -> int | None:
        task = ConceptSegmentationTask(checkpoint=str(checkpoint), phrase_chunk="auto", **settings)
        trainer = L.Trainer(
            accelerator="cpu",
            max_steps=1,
            limit_val_batches=0,
            logger=False,
            enable_checkpointing=False,
            enable_progress_bar=False,
            enable_model_summary=False,
        )
        trainer.fit(task, data)
        return task.chunk

    assert chunk_after_one_step() is None  # no budget on a CPU: every query at once
    assert chunk_after_one_step(memory_budget_gb=50.0) > 100  # the tiny model's queries cost kilobytes
    assert "phrase_chunk auto:" in caplog.text  # Lightning's log, once from rank zero
