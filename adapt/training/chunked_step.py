"""One step of the objective with the batch's queries in chunks, so memory stays flat in phrases.

Each query (image, phrase) runs SAM 3's detector over all of its image's tokens and keeps those
activations for the backward pass: about 1 GiB per phrase for the full-size model at 1008 px. This
step runs the vision encoder once per image and the text encoder once per distinct phrase, as the
whole-batch step does, and then sends the queries through the detector ``chunk`` at a time. Each
chunk's loss, divided by the counts of the whole (global) batch, is differentiated at once and its
activations freed (gradient caching): the gradients of the detector's weights are summed, and so are
the gradients reaching the shared image and phrase features. Those two are handed to the towers in
one backward pass at the end, when a tower trains; a frozen tower gets none at all.

The step returns a loss whose value is the batch's loss and whose backward pass delivers the summed
gradients, so Lightning treats it as any loss: automatic or manual optimisation, gradient
accumulation, clipping, mixed precision (its scale reaches the cached gradients through the
backward pass) and DDP (the cached gradients arrive through the parameters' own hooks, in the one
backward pass DDP sees; the chunks' differentiation does not run them).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import torch
from transformers.models.sam3.modeling_sam3 import Sam3VisionEncoderOutput

from sam3_adapt.data_mix.batch import ConceptBatch
from sam3_adapt.model.forward import ConceptSegmenter
from sam3_adapt.training.loss import ConceptObjective


@dataclass
class StepLoss:
    """The loss of one batch and its terms.

    Attributes:
        loss: The total, to back-propagate (returned from ``training_step`` or given to
            ``manual_backward``).
        terms: Detached terms (summed over chunks) and ``num_boxes``.
        chunks: Detector passes the step made.
    """

    loss: torch.Tensor
    terms: dict[str, torch.Tensor]
    chunks: int


def check_chunk(phrase_chunk: int | None) -> None:
    """Raise unless ``phrase_chunk`` is ``None`` or a positive number of queries."""
    if phrase_chunk is not None and (isinstance(phrase_chunk, bool) or not isinstance(phrase_chunk, int)):
        raise ValueError(
            f"phrase_chunk must be a whole number of queries, 'auto' or null, got {phrase_chunk!r}"
        )
    if phrase_chunk is not None and phrase_chunk < 1:
        raise ValueError(
            f"phrase_chunk must be at least 1 query per detector pass, got {phrase_chunk} "
            "(null runs every query of a batch at once; 'auto' picks the largest that fits the memory budget)"
        )


def objective_step(
    segmenter: ConceptSegmenter,
    objective: ConceptObjective,
    batch: ConceptBatch,
    phrase_chunk: int | None = None,
) -> StepLoss:
    """The objective on ``batch``, its queries sent through the detector ``phrase_chunk`` at a time.

    Args:
        segmenter: The network.
        objective: The loss; its ``mask_queries`` decides which queries need the mask decoder.
        batch: A batch in the ``data_mix`` layout.
        phrase_chunk: Queries per detector pass; ``None`` (or at least the batch's queries) runs them
            all at once, with no gradient caching.

    Returns:
        The :class:`StepLoss`. Chunked or not, the loss and its gradients are the same.
    """
    check_chunk(phrase_chunk)
    targets = batch["targets"]
    count = len(targets)
    if phrase_chunk is None or phrase_chunk >= count or not torch.is_grad_enabled():
        losses = objective(_run(segmenter, batch, slice(0, count), objective), targets)
        terms = {key: value for key, value in losses.items() if key != "loss"}
        return StepLoss(losses["loss"], terms, 1)

    device = batch["pixel_values"].device
    normalisers = objective.normalisers(targets, segmenter.num_slots, device)
    vision = segmenter.encode_images(batch["pixel_values"])
    text, text_mask, phrase_index = segmenter.encode_phrases(batch["phrases"])
    # The shared features become leaves of every chunk's graph; their gradients are summed here.
    shared = [*vision.fpn_hidden_states, text]
    leaves = [feature.detach().requires_grad_(feature.requires_grad) for feature in shared]
    cached_vision = Sam3VisionEncoderOutput(
        fpn_hidden_states=tuple(leaves[:-1]), fpn_position_encoding=vision.fpn_position_encoding
    )
    params = [p for p in segmenter.parameters() if p.requires_grad]
    wanted = params + [leaf for leaf in leaves if leaf.requires_grad]
    sums: list[torch.Tensor | None] = [None] * len(wanted)
    total = torch.zeros((), device=device)
    terms: dict[str, torch.Tensor] = {}
    chunks = 0
    for start in range(0, count, phrase_chunk):
        part = slice(start, min(count, start + phrase_chunk))
        text_part = (leaves[-1], text_mask, phrase_index[part])
        outputs = _run(segmenter, batch, part, objective, cached_vision, text_part)
        losses = objective(outputs, targets[part], normalisers)
        grads = torch.autograd.grad(losses["loss"], wanted, allow_unused=True)
        for i, grad in enumerate(grads):
            if grad is not None:
                sums[i] = grad if sums[i] is None else sums[i].add_(grad)
        total = total + losses["loss"].detach()
        for key, value in losses.items():
            if key != "loss":
                terms[key] = terms[key] + value if key in terms else value
        chunks += 1
        del outputs, losses, grads
    if normalisers is not None:
        terms["num_boxes"] = normalisers.num_boxes.detach()

    # Hand the summed gradients on: to the parameters the chunks reached, and through the towers
    # (from the features they produced) when they train.
    origins = params + [feature for feature in shared if feature.requires_grad]
    pairs = [
        (origin, total_grad)
        for origin, total_grad in zip(origins, sums, strict=True)
        if total_grad is not None
    ]
    loss = _CachedGradients.apply(total, [g for _, g in pairs], *[origin for origin, _ in pairs])
    return StepLoss(loss, terms, chunks)


class _CachedGradients(torch.autograd.Function):
    """Identity on the loss value; its backward hands each receiver its cached gradient, scaled."""

    @staticmethod
    def forward(
        ctx: Any, value: torch.Tensor, grads: list[torch.Tensor], *receivers: torch.Tensor
    ) -> torch.Tensor:
        ctx.grads = grads
        return value.clone()

    @staticmethod
    def backward(ctx: Any, grad_output: torch.Tensor) -> tuple[torch.Tensor | None, ...]:
        grads = ctx.grads
        ctx.grads = None
        return (None, None, *[g * grad_output.to(g.dtype) for g in grads])


def _run(
    segmenter: ConceptSegmenter,
    batch: ConceptBatch,
    part: slice,
    objective: ConceptObjective,
    vision: Sam3VisionEncoderOutput | None = None,
    text: tuple[torch.Tensor, torch.Tensor, torch.Tensor] | None = None,
):
    """The network on the queries ``part`` of ``batch``, masks decoded only where a loss needs them."""
    exemplar_boxes = batch.get("exemplar_boxes")
    exemplar_labels = batch.get("exemplar_labels")
    return segmenter(
        batch["pixel_values"],
        batch["phrases"][part],
        batch["query_image_index"][part],
        exemplar_boxes=None if exemplar_boxes is None else exemplar_boxes[part],
        exemplar_labels=None if exemplar_labels is None else exemplar_labels[part],
        mask_queries=objective.mask_queries(batch["targets"][part]),
        vision=vision,
        text=text,
    )
