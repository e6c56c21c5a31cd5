"""Turn network outputs into detections in the coordinates of the original images."""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F

from model.outputs import ConceptOutputs


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
