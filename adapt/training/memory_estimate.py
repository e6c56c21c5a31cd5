"""GPU memory of a training step, estimated on the CPU before anyone rents a card.

The estimate runs the kit's own training step (:func:`~sam3_adapt.training.chunked_step.objective_step`,
then its backward pass) on fake tensors and counts the bytes each would hold while it lives
(:mod:`~sam3_adapt.training.fake_trace`), with autocast as Lightning's precision setting and the
GPU's kernels where the CPU's keep other tensors for the backward pass. What the trace cannot see is
added by rule: AdamW's two fp32 states per trainable weight and its step's temporaries. The loss is
replaced by one that reads the same outputs (every layer's logits, boxes and presence, the matched
masks) without the data-dependent matching; the real loss's own tensors are a few MB. The network
can be fake too (:func:`recipe_segmenter`), so the full-size architecture is estimated in seconds.

Checked against peaks measured on an H100 (README, memory table): within 15% for the LoRA and the
full fine-tuning recipes at 4 and 20 phrases per image.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any

import torch
import torch.nn.functional as F
from lightning.pytorch.utilities import rank_zero_info

from sam3_adapt.model.forward import ConceptSegmenter
from sam3_adapt.model.outputs import ConceptOutputs
from sam3_adapt.training.chunked_step import objective_step
from sam3_adapt.training.fake_trace import (
    LiveBytes,
    autocast,
    autocast_dtype,
    cuda_kernels,
    fake_mode_of,
    fake_segmenter,
    small_constants,
)

GIB = 2**30
#: Instances of each positive phrase in the estimate's batch (their masks reach the mask loss).
INSTANCES_PER_POSITIVE = 4


@dataclass
class MemoryEstimate:
    """Estimated peak GPU memory of one training step.

    Attributes:
        peak_gib: The estimate, GiB.
        parts: GiB by kind: ``weights`` (and buffers), ``step`` (the traced peak of activations,
            gradients and temporaries above the weights), ``optimizer`` (AdamW's states).
        settings: What was estimated (image size, phrases, chunk, precision).
    """

    peak_gib: float
    parts: dict[str, float] = field(default_factory=dict)
    settings: dict[str, Any] = field(default_factory=dict)


class _ProbeObjective:
    """Reads what the objective reads, without data-dependent matching.

    That is every layer's logits, boxes and presence, and the last layer's masks of the matched
    slots, upsampled to the target side.
    """

    mask_loss = True

    def __init__(self, mask_side: int) -> None:
        self.mask_side = mask_side

    def mask_queries(self, targets: list[dict[str, torch.Tensor]]) -> torch.Tensor:
        return torch.tensor([q for q, t in enumerate(targets) if t["boxes"].shape[0]], dtype=torch.long)

    def normalisers(self, *args: Any) -> None:
        return None

    def __call__(
        self, outputs: ConceptOutputs, targets: list, normalisers: Any = None
    ) -> dict[str, torch.Tensor]:
        loss = (
            outputs.logits.float().sum() + outputs.boxes.float().sum() + outputs.presence_logits.float().sum()
        )
        if outputs.masks is not None and len(outputs.mask_query_index):
            matched = outputs.masks[:, :INSTANCES_PER_POSITIVE].float()
            side = (self.mask_side, self.mask_side)
            loss = (
                loss + F.interpolate(matched, size=side, mode="bilinear", align_corners=False).sigmoid().sum()
            )
        return {"loss": loss}


def estimate_batch(
    image_size: int, phrases_per_image: int, batch_size: int = 1, positives_per_image: int = 1
) -> dict[str, Any]:
    """A batch in the data pipeline's layout for the estimate.

    Per image, ``positives_per_image`` phrases with 4 masked instances each; the other phrases are
    negatives (SAM 3 learns mostly from negatives).
    """
    mask_side = image_size // 14 * 4
    phrases, index, targets = [], [], []
    for image in range(batch_size):
        for p in range(phrases_per_image):
            positive = p < positives_per_image
            n = INSTANCES_PER_POSITIVE if positive else 0
            phrases.append(f"object {p}")
            index.append(image)
            targets.append(
                {
                    "boxes": torch.rand(n, 4).sort(dim=1).values,
                    "masks": torch.zeros(n, mask_side, mask_side, dtype=torch.bool),
                    "has_mask": torch.ones(n, dtype=torch.bool),
                }
            )
    return {
        "pixel_values": torch.zeros(batch_size, 3, image_size, image_size),
        "phrases": phrases,
        "query_image_index": torch.tensor(index),
        "targets": targets,
    }


def estimate_step_memory(
    segmenter: ConceptSegmenter,
    image_size: int,
    phrases_per_image: int,
    phrase_chunk: int | None = None,
    batch_size: int = 1,
    precision: str = "bf16-mixed",
    positives_per_image: int = 1,
) -> MemoryEstimate:
    """Peak GPU memory of one training step of ``segmenter`` (the weights it has: real or fake).

    Args:
        segmenter: The network with its trainable weights chosen (LoRA, full fine-tuning).
        image_size: Side of the network input.
        phrases_per_image: Queries per image, one positive and the rest negatives.
        phrase_chunk: Queries per detector pass (``None``: all at once).
        batch_size: Images per step (per GPU).
        precision: Lightning's precision setting: ``bf16-mixed``, ``16-mixed`` or ``32-true``.
        positives_per_image: Phrases per image that are present (4 instances each); their masks
            reach the mask decoder and the mask loss, about 0.5 GiB each at 1008 px.

    Returns:
        The estimate, in GiB, with its parts.
    """
    batch = estimate_batch(
        image_size, phrases_per_image, batch_size, min(positives_per_image, phrases_per_image)
    )
    probe = _ProbeObjective(image_size // 14 * 4)
    trainable = [p for p in segmenter.parameters() if p.requires_grad]
    weights = _bytes(list(segmenter.parameters()) + list(segmenter.buffers())) / GIB
    tracker = LiveBytes()
    was_training = segmenter.training
    segmenter.train()
    try:
        with small_constants(), fake_mode_of(segmenter), tracker, cuda_kernels(autocast_dtype(precision)):
            with autocast(precision):
                step = objective_step(segmenter, probe, batch, phrase_chunk)
            step.loss.backward()
            del step
    finally:
        segmenter.zero_grad(set_to_none=True)
        segmenter.train(was_training)
    trained = _bytes(trainable) / GIB
    # AdamW: two fp32 states per trainable weight, present through every step after the first; its
    # step adds about one more copy of the gradients in temporaries.
    optimizer = 2 * sum(p.numel() * 4 for p in trainable) / GIB
    parts = {"weights": weights, "step": tracker.peak / GIB, "optimizer": optimizer}
    update = weights + trained + optimizer + trained
    return MemoryEstimate(
        peak_gib=max(sum(parts.values()), update),
        parts={k: round(v, 3) for k, v in parts.items()},
        settings={
            "image_size": image_size,
            "phrases_per_image": phrases_per_image,
            "phrase_chunk": phrase_chunk,
            "batch_size": batch_size,
            "precision": precision,
        },
    )


def _bytes(tensors: list[torch.Tensor]) -> int:
    """Bytes of the distinct storages behind ``tensors``."""
    storages = {id(t.untyped_storage()): t.untyped_storage().nbytes() for t in tensors}
    return sum(storages.values())


def recipe_segmenter(
    config: Any,
    adaptation: str = "lora",
    lora: dict[str, Any] | None = None,
    freeze: list[str] | None = None,
    activation_checkpointing: bool = False,
    fake: bool = True,
) -> ConceptSegmenter:
    """A randomly initialised segmenter of ``config`` with a recipe's trainable weights.

    Speed and memory do not depend on the weights, so an estimate or a benchmark needs no checkpoint.

    Args:
        config: A ``Sam3Config`` (``Sam3Config()`` is the full-size ``facebook/sam3`` architecture).
        adaptation: ``lora`` or ``full``, as the recipe's ``model.adaptation``.
        lora: The recipe's ``model.lora`` settings.
        freeze: The recipe's ``model.freeze`` (full fine-tuning).
        activation_checkpointing: The recipe's ``model.activation_checkpointing``.
        fake: Fake weights (:func:`fake_segmenter`: no memory, no initialisation) or real ones.
    """
    from transformers import Sam3Model

    from sam3_adapt.model.adaptation import adapt_network
    from sam3_adapt.model.tokenizer import clip_tokenizer

    image_size = int(config.vision_config.backbone_config.image_size)

    def build() -> ConceptSegmenter:
        network = adapt_network(Sam3Model(config), adaptation, lora, freeze, activation_checkpointing)
        return ConceptSegmenter(network.train(), clip_tokenizer(), image_size=image_size)

    return fake_segmenter(build) if fake else build()


def largest_chunk(
    segmenter: ConceptSegmenter,
    image_size: int,
    budget_gib: float,
    batch_size: int = 1,
    precision: str = "bf16-mixed",
) -> tuple[int, MemoryEstimate, MemoryEstimate]:
    """The largest phrase chunk whose estimated step peak fits ``budget_gib``.

    Memory is linear in the chunk (each query in a pass holds the same activations): two traces of
    two present phrases, one and two per pass, fix the line (present phrases run the mask decoder
    too, so the line holds for any mix of phrases).

    Args:
        segmenter: The network with its trainable weights chosen.
        image_size: Side of the network input.
        budget_gib: GPU memory to fit, GiB.
        batch_size: Images per step.
        precision: Lightning's precision setting.

    Returns:
        ``(chunk, estimate at 1, estimate at 2)``.

    Raises:
        ValueError: If even one query per pass does not fit the budget (naming both figures).
    """
    if budget_gib <= 0:
        raise ValueError(f"memory_budget_gb must be positive, got {budget_gib}")
    # Every phrase present (the mask decoder runs for each): a chunk of positives is the costliest.
    one = estimate_step_memory(segmenter, image_size, 2, 1, batch_size, precision, positives_per_image=2)
    if one.peak_gib > budget_gib:
        raise ValueError(
            f"memory_budget_gb={budget_gib:g} is below the estimated peak of even one phrase per detector "
            f"pass ({one.peak_gib:.3g} GiB at {image_size} px, batch {batch_size}, {precision}); raise the "
            "budget, lower data.image_size or data.batch_size, or train fewer weights (LoRA)"
        )
    two = estimate_step_memory(segmenter, image_size, 2, 2, batch_size, precision, positives_per_image=2)
    per_query = max(two.peak_gib - one.peak_gib, 1e-6)
    return max(1, 1 + math.floor((budget_gib - one.peak_gib) / per_query)), one, two


def auto_chunk(task: Any, image_size: int, budget_gb: float | None) -> int | None:
    """The ``phrase_chunk: auto`` of a task: the largest chunk that fits its budget, or no chunking.

    The estimate is that of ``sam3-adapt memory``: the task's architecture with its recipe's trainable
    weights, on fake tensors (the live model and its device are not touched).

    Args:
        task: A ``ConceptSegmentationTask`` attached to a trainer (its hyperparameters, network
            config, the trainer's device, precision and data module).
        image_size: Side of the network input.
        budget_gb: The budget in GiB; ``None`` takes 90% of the GPU's memory, or no chunking on a CPU.
    """
    trainer = task.trainer
    device = trainer.strategy.root_device
    if budget_gb is None:
        if device.type != "cuda":
            return None
        budget_gb = 0.9 * torch.cuda.get_device_properties(device).total_memory / GIB
    hp = task.hparams
    fake = recipe_segmenter(
        task.segmenter.sam3.config,
        adaptation=hp.adaptation,
        lora=hp.lora,
        freeze=hp.freeze,
        activation_checkpointing=hp.activation_checkpointing,
    )
    # The data module's settings are its hyperparameters (``ConceptDataModule`` keeps no attributes).
    data = getattr(getattr(trainer, "datamodule", None), "hparams", {})
    batch_size = int(data.get("batch_size") or 1)
    chunk, one, two = largest_chunk(fake, image_size, budget_gb, batch_size, str(trainer.precision))
    rank_zero_info(  # the user should see what was chosen and why, once and not from every process
        f"phrase_chunk auto: {chunk} queries per detector pass fit {budget_gb:.1f} GiB "
        f"(estimated {one.peak_gib:.2f} GiB at 1, +{two.peak_gib - one.peak_gib:.3f} GiB per query)"
    )
    return chunk
