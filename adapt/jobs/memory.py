"""``sam3-adapt memory``: a recipe's GPU peak memory, estimated on this machine before renting a card."""

from __future__ import annotations

from typing import Any

import yaml

from sam3_adapt.fitting.recipe_files import recipe_path
from sam3_adapt.training.memory_estimate import estimate_step_memory, largest_chunk, recipe_segmenter

#: The architecture ``facebook/sam3`` has; its config is the default ``Sam3Config``.
FULL_SIZE = "facebook/sam3"


def architecture(checkpoint: str) -> Any:
    """The ``Sam3Config`` of a checkpoint: from its folder, a built-in name or the Hub's cache.

    ``facebook/sam3`` is ``Sam3Config()`` when it cannot be read (no network, not downloaded).
    """
    from transformers import Sam3Config

    from sam3_adapt.model.checkpoints import resolve_checkpoint

    try:
        return Sam3Config.from_pretrained(resolve_checkpoint(checkpoint))
    except OSError:
        if checkpoint == FULL_SIZE:
            return Sam3Config()
        raise


def memory(
    recipe: str = "lora-10shot",
    phrases: list[int] | None = None,
    phrase_chunk: int | None = None,
    positives: int = 2,
    budget_gb: float | None = None,
) -> list[dict[str, Any]]:
    """Print the estimated peak GPU memory of one training step of a recipe, and the chunk that fits.

    The estimate traces the kit's own training step on fake tensors (no weights are downloaded or
    allocated; seconds on a laptop) with the recipe's trainable weights, activation checkpointing,
    precision, image size and batch size, and the GPU's kernels. Checked within 15% of peaks measured
    on an H100 (README). Not counted: the CUDA context (about 0.5 GiB outside PyTorch's allocator)
    and fragmentation of the allocator's cache.

    Args:
        recipe: A recipe: a name (``lora-10shot``, ``full-finetune``, ...) or a YAML file; on the
            command line also ``--config RECIPE``, as for ``fit``, or the first bare argument.
        phrases: Phrases (queries) per image to estimate; default 1, 4, 8 and 20.
        phrase_chunk: Queries per detector pass; default the recipe's ``model.phrase_chunk`` (``auto``
            and null estimate the whole batch at once).
        positives: Of the phrases per image, how many are present (their masks are decoded and
            learnt, about 0.5 GiB each at 1008 px); the rest are negatives.
        budget_gb: Also print the largest chunk that fits this many GiB (a card's memory as
            ``nvidia-smi`` shows it, divided by 1024).

    Returns:
        One row per phrase count: ``phrases``, ``chunk``, ``peak_gib`` and its parts.
    """
    path = recipe_path(recipe)
    settings = yaml.safe_load(path.read_text()) or {}
    model, data, trainer = (settings.get(key) or {} for key in ("model", "data", "trainer"))
    checkpoint = str(model.get("checkpoint") or FULL_SIZE)
    sam3_config = architecture(checkpoint)
    image_size = int(data.get("image_size") or sam3_config.vision_config.backbone_config.image_size)
    batch_size = int(data.get("batch_size") or 1)
    precision = str(trainer.get("precision") or "32-true")
    chunk = phrase_chunk if phrase_chunk is not None else model.get("phrase_chunk")
    chunk = chunk if isinstance(chunk, int) else None
    segmenter = recipe_segmenter(
        sam3_config,
        adaptation=model.get("adaptation", "lora"),
        lora=model.get("lora"),
        freeze=model.get("freeze"),
        activation_checkpointing=bool(model.get("activation_checkpointing", False)),
    )
    print(  # noqa: T201 - this verb's output
        f"{path.name}: {checkpoint} at {image_size} px, batch {batch_size}, {precision}, "
        f"{positives} present phrase(s) per image; phrase_chunk {chunk or 'all'}"
    )
    rows = []
    for count in phrases or [1, 4, 8, 20]:
        estimate = estimate_step_memory(
            segmenter, image_size, count, chunk, batch_size, precision, positives_per_image=positives
        )
        rows.append(
            {"phrases": count, "chunk": chunk, "peak_gib": estimate.peak_gib, "parts": estimate.parts}
        )
        parts = ", ".join(f"{name} {value:.2f}" for name, value in estimate.parts.items())
        print(f"  {count:>3} phrases per image: {estimate.peak_gib:6.2f} GiB  ({parts})")  # noqa: T201
    if budget_gb is not None:
        best, one, two = largest_chunk(segmenter, image_size, budget_gb, batch_size, precision)
        print(  # noqa: T201
            f"  budget {budget_gb:g} GiB: phrase_chunk {best} fits (one phrase per pass "
            f"{one.peak_gib:.2f} GiB, +{two.peak_gib - one.peak_gib:.2f} GiB per phrase in a pass)"
        )
    return rows
