"""Detections: run the segmenter on a batch of queries and map its outputs back to the original images."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import torch
import torch.nn.functional as F

from sam3_adapt.model.forward import ConceptSegmenter
from sam3_adapt.model.outputs import ConceptOutputs


@dataclass
class QueryDetections:
    """Detections of one (image, phrase) query, in original image pixels, best first.

    Attributes:
        boxes: ``(K, 4)`` absolute ``(x0, y0, x1, y1)``.
        scores: ``(K,)`` SAM 3 scores, ``sigmoid(logit) * sigmoid(presence)``.
        masks: ``(K, H, W)`` boolean masks at the original size, or ``None`` when masks were not decoded.
        presence: Probability that the phrase is present at all.
    """

    boxes: torch.Tensor
    scores: torch.Tensor
    masks: torch.Tensor | None
    presence: float


def detections_per_query(
    outputs: ConceptOutputs,
    orig_sizes: torch.Tensor,
    query_image_index: torch.Tensor,
    top_k: int = 100,
    min_score: float = 0.0,
) -> list[QueryDetections]:
    """Keep the ``top_k`` best detections of each query and map them back to the original image.

    Inputs went through a square resize (the evaluation transform), so normalised boxes scale by
    the original width and height, and masks are resized bilinearly to the original size before
    thresholding the logits at 0.

    Args:
        outputs: Network outputs; masks, if present, must cover every query.
        orig_sizes: ``(B, 2)`` original ``(height, width)`` of each image.
        query_image_index: ``(Q,)`` image of each query.
        top_k: Detections kept per query (the evaluator then keeps the best 100 per image).
        min_score: Detections scoring below this are dropped before resizing masks.

    Returns:
        One :class:`QueryDetections` per query.
    """
    scores = outputs.scores().float()
    boxes = outputs.boxes[-1].float()
    presence = outputs.presence_logits[-1].float().sigmoid()
    mask_row = {int(q): i for i, q in enumerate(outputs.mask_query_index.tolist())}
    results = []
    for q in range(outputs.num_queries):
        height, width = (int(v) for v in orig_sizes[query_image_index[q]])
        keep = scores[q].argsort(descending=True)[:top_k]
        keep = keep[scores[q, keep] >= min_score]
        scale = boxes.new_tensor([width, height, width, height])
        masks = None
        if outputs.masks is not None and q in mask_row:
            logits = outputs.masks[mask_row[q], keep].float()
            if len(keep):
                logits = F.interpolate(
                    logits[None], size=(height, width), mode="bilinear", align_corners=False
                )[0]
            else:
                logits = logits.new_zeros(0, height, width)
            masks = logits > 0
        results.append(
            QueryDetections(
                boxes=boxes[q, keep] * scale, scores=scores[q, keep], masks=masks, presence=float(presence[q])
            )
        )
    return results


@torch.no_grad()
def detect(
    segmenter: ConceptSegmenter,
    pixel_values: torch.Tensor,
    phrases: Sequence[str],
    query_image_index: torch.Tensor,
    orig_sizes: torch.Tensor,
    *,
    top_k: int = 100,
    min_score: float = 0.0,
    masks: bool = True,
    phrase_chunk: int | None = None,
    exemplar_boxes: Sequence[torch.Tensor] | None = None,
    exemplar_labels: Sequence[torch.Tensor] | None = None,
) -> list[QueryDetections]:
    """Predict every (image, phrase) query of a batch and keep the best detections of each.

    This is the one detection step of the kit: validation in training, ``evaluate``, the predictor,
    the report figures and negative mining all call it. The vision encoder runs once per image; the
    phrases then go through the detector ``phrase_chunk`` at a time, so that memory stays flat in
    the number of phrases.

    Args:
        segmenter: The network (its train/eval mode is left as it is).
        pixel_values: Images as the evaluation transform makes them, ``(B, 3, S, S)``.
        phrases: One noun phrase per query.
        query_image_index: ``(Q,)`` image of each query.
        orig_sizes: ``(B, 2)`` original ``(height, width)`` of each image.
        top_k: Detections kept per query.
        min_score: Detections scoring below this are dropped.
        masks: Decode masks; ``False`` for box-only models (``QueryDetections.masks`` is ``None``).
        phrase_chunk: Queries per detector pass; ``None`` runs all of them at once.
        exemplar_boxes: Optional exemplar boxes per query (see `ConceptSegmenter.forward`).
        exemplar_labels: Their labels.

    Returns:
        One :class:`QueryDetections` per query, in order.
    """
    device = next(segmenter.parameters()).device
    pixel_values = pixel_values.to(device)
    vision = segmenter.encode_images(pixel_values)
    chunk = phrase_chunk or max(1, len(phrases))
    found: list[QueryDetections] = []
    for start in range(0, len(phrases), chunk):
        rows = slice(start, start + chunk)
        index = query_image_index[rows].to(device)
        outputs = segmenter(
            pixel_values,
            list(phrases[rows]),
            index,
            exemplar_boxes=None if exemplar_boxes is None else exemplar_boxes[rows],
            exemplar_labels=None if exemplar_labels is None else exemplar_labels[rows],
            mask_queries=None if masks else index.new_zeros(0),
            vision=vision,
        )
        found += detections_per_query(outputs, orig_sizes, index.cpu(), top_k=top_k, min_score=min_score)
    return found
