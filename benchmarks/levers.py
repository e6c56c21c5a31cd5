"""The speed levers of a training forward pass, each one switchable, for the benchmark and its tests.

* ``naive``: the full network once per (image, phrase) query, the way ``Sam3Model.forward`` is
  called, every query's masks decoded; the per-query outputs are joined so that the objective sees
  one batch.
* ``batched``: multi-phrase batching: the vision encoder once per image, the text encoder once per
  distinct phrase, every query's masks decoded.
* ``masks_needed``: ``batched``, with the mask decoder run only for queries with masks to learn (what
  :class:`~sam3_adapt.training.task.ConceptSegmentationTask` trains with).
* ``cached``: ``masks_needed`` on a segmenter whose frozen towers are cached
  (:meth:`~sam3_adapt.model.forward.ConceptSegmenter.use_feature_cache`).

On the same inputs all four give the same losses and gradients (``tests/benchmarks/test_levers.py``).
"""

from __future__ import annotations

from typing import Any, Literal

import torch

from sam3_adapt.model.forward import ConceptSegmenter
from sam3_adapt.model.outputs import ConceptOutputs, concat_outputs
from sam3_adapt.training.loss import queries_needing_masks

Lever = Literal["naive", "batched", "masks_needed", "cached"]
LEVERS: tuple[Lever, ...] = ("naive", "batched", "masks_needed", "cached")


def naive_outputs(segmenter: ConceptSegmenter, batch: dict[str, Any]) -> ConceptOutputs:
    """Run the whole network once per query (one image, one phrase), then join the outputs.

    Args:
        segmenter: The network.
        batch: A batch in the ``data_mix`` layout.

    Returns:
        Outputs for every query of the batch, masks for all of them.
    """
    exemplar_boxes = batch.get("exemplar_boxes")
    exemplar_labels = batch.get("exemplar_labels")
    parts = []
    for q, (phrase, image) in enumerate(zip(batch["phrases"], batch["query_image_index"].tolist())):
        parts.append(
            segmenter(
                batch["pixel_values"][image : image + 1],
                [phrase],
                torch.zeros(1, dtype=torch.long),
                exemplar_boxes=None if exemplar_boxes is None else [exemplar_boxes[q]],
                exemplar_labels=None if exemplar_labels is None else [exemplar_labels[q]],
            )
        )
    return concat_outputs(parts)


def lever_outputs(
    segmenter: ConceptSegmenter, batch: dict[str, Any], lever: Lever, mask_loss: bool = True
) -> ConceptOutputs:
    """Forward pass of a training step with the given lever.

    Args:
        segmenter: The network; it must have a feature cache for ``"cached"`` and none otherwise.
        batch: A batch in the ``data_mix`` layout.
        lever: One of :data:`LEVERS`.
        mask_loss: Whether the objective trains masks (decides which queries need them).

    Returns:
        The outputs the objective takes.

    Raises:
        ValueError: For an unknown lever, or a segmenter whose caching does not match the lever.
    """
    if lever not in LEVERS:
        raise ValueError(f"lever must be one of {LEVERS}, got {lever!r}")
    cached = segmenter.vision_cache is not None or segmenter.text_cache is not None
    if cached != (lever == "cached"):
        raise ValueError(
            f"lever {lever!r} needs a segmenter {'with' if lever == 'cached' else 'without'} a feature cache"
        )
    if lever == "naive":
        return naive_outputs(segmenter, batch)
    mask_queries = None if lever == "batched" else queries_needing_masks(batch["targets"], mask_loss)
    return segmenter(
        batch["pixel_values"],
        batch["phrases"],
        batch["query_image_index"],
        exemplar_boxes=batch.get("exemplar_boxes"),
        exemplar_labels=batch.get("exemplar_labels"),
        mask_queries=mask_queries,
    )
