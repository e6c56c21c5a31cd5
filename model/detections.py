"""Detections: run the segmenter on a batch of queries and map its outputs back to the original images."""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from dataclasses import dataclass, replace
from typing import Any, Literal

import numpy as np
import torch
import torch.nn.functional as F
from transformers.models.sam3.modeling_sam3 import Sam3VisionEncoderOutput

from sam3_adapt.model.forward import ConceptSegmenter
from sam3_adapt.model.outputs import ConceptOutputs

#: How the images were made square (`sam3_adapt.data_mix.transforms.eval_transform`): ``letterbox``
#: (aspect kept, padded right and below) or ``squash`` (stretched).
Resize = Literal["letterbox", "squash"]


def input_canvas(height: int, width: int, resize: Resize) -> tuple[int, int]:
    """The region of original pixels the square network input covers: ``(rows, columns)``.

    Letterboxed, the input covers a square of the longer side (the image in its top-left corner, the
    rest padding); squashed, the image itself.
    """
    if resize == "letterbox":
        side = max(height, width)
        return side, side
    if resize == "squash":
        return height, width
    raise ValueError(f"resize must be 'letterbox' or 'squash', got {resize!r}")


@dataclass
class QueryDetections:
    """Detections of one (image, phrase) query, in original image pixels, best first.

    Attributes:
        boxes: ``(K, 4)`` absolute ``(x0, y0, x1, y1)``.
        scores: ``(K,)`` SAM 3 scores, ``sigmoid(logit) * sigmoid(presence)``.
        masks: ``(K, H, W)`` boolean masks at the original size, stored as windows (see
            `CroppedMasks`; ``np.asarray`` or ``.dense()`` gives the array), or ``None`` when masks
            were not decoded.
        presence: Probability that the phrase is present at all.
        stability: ``(K,)`` mask stability, the IoU of each mask thresholded at ``+STABILITY_OFFSET``
            and at ``-STABILITY_OFFSET`` on its logits (SAM's stability score, at the network's
            resolution), or ``None`` when masks were not decoded.
    """

    boxes: torch.Tensor
    scores: torch.Tensor
    masks: CroppedMasks | None
    presence: float
    stability: torch.Tensor | None = None


#: Logit offset of the mask stability score (SAM's ``stability_score_offset``).
STABILITY_OFFSET = 1.0


def mask_stability(logits: torch.Tensor, offset: float = STABILITY_OFFSET) -> torch.Tensor:
    """IoU of each mask thresholded at ``+offset`` and at ``-offset``: how much a mask moves with the cut.

    The mask at ``+offset`` lies inside the one at ``-offset``, so the IoU is the ratio of their areas
    (1 for an empty mask at ``-offset``).

    Args:
        logits: ``(K, h, w)`` mask logits.
        offset: Logit offset of the two thresholds.

    Returns:
        ``(K,)`` float32 in ``[0, 1]``.
    """
    inner = (logits > offset).flatten(1).sum(-1).float()
    outer = (logits > -offset).flatten(1).sum(-1).float()
    return torch.where(outer > 0, inner / outer.clamp(min=1), torch.ones_like(outer))


def detections_per_query(
    outputs: ConceptOutputs,
    orig_sizes: torch.Tensor,
    query_image_index: torch.Tensor,
    top_k: int = 100,
    min_score: float = 0.0,
    resize: Resize = "letterbox",
) -> list[QueryDetections]:
    """Keep the ``top_k`` best detections of each query and map them back to the original image.

    The network input covers `input_canvas` of each image: normalised boxes scale by its sides and
    are clipped to the image, and masks are resized bilinearly to it before thresholding the logits
    at 0 and cutting off the padding (see `paste_masks`, which does it one mask at a time, only
    where the mask can be positive, so that memory does not grow with detections times image size).
    When the letterbox's shorter side scales to whole pixels (a 504 x 168 image at 168 px) the
    mapping is exact; otherwise the image's edge is within half an input pixel of where it is drawn.

    Args:
        outputs: Network outputs; masks, if present, must cover every query.
        orig_sizes: ``(B, 2)`` original ``(height, width)`` of each image.
        query_image_index: ``(Q,)`` image of each query.
        top_k: Detections kept per query (the evaluator then keeps the best 100 per image).
        min_score: Detections scoring below this are dropped before resizing masks.
        resize: How the inputs were made square.

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
        rows, cols = input_canvas(height, width, resize)
        scale = boxes.new_tensor([cols, rows, cols, rows])
        limit = boxes.new_tensor([width, height, width, height])
        masks = stability = None
        if outputs.masks is not None and q in mask_row:
            logits = outputs.masks[mask_row[q], keep]
            masks = paste_masks(logits, rows, cols).clip(height, width)
            stability = mask_stability(logits.float())
        results.append(
            QueryDetections(
                boxes=torch.minimum(boxes[q, keep] * scale, limit).clamp(min=0),
                scores=scores[q, keep],
                masks=masks,
                presence=float(presence[q]),
                stability=stability,
            )
        )
    return results


#: Largest float intermediate (bytes) for which `paste_masks` resizes all masks at once.
DENSE_BYTES = 16 * 2**20


class CroppedMasks:
    """Boolean masks ``(K, H, W)`` of one image, each kept as the window around its True pixels.

    `detections_per_query` returns these rather than a dense tensor: 100 dense masks of a
    12-megapixel image take 1.2 GB, their windows a small part of it. They read as the dense
    boolean array wherever one is expected: ``np.asarray(masks)``, ``masks.numpy()``,
    ``masks.dense()`` (a tensor), ``masks[k]`` (one ``(H, W)`` tensor), iteration (one mask at a
    time, which is how `sam3_adapt.training.coco_results.encode_masks` keeps memory flat), and
    ``masks[index]`` with a slice, list or array (a `CroppedMasks` of those masks).

    Args:
        crops: One boolean window per mask.
        offsets: Each window's top-left ``(row, column)`` in the image.
        size: The image's ``(height, width)``.
    """

    dtype = torch.bool

    def __init__(
        self, crops: list[torch.Tensor], offsets: list[tuple[int, int]], size: tuple[int, int]
    ) -> None:
        self.crops, self.offsets, self.size = crops, offsets, size

    @property
    def shape(self) -> torch.Size:
        """``(K, H, W)``."""
        return torch.Size((len(self.crops), *self.size))

    def __len__(self) -> int:
        return len(self.crops)

    def __iter__(self) -> Iterator[torch.Tensor]:
        return (self[k] for k in range(len(self)))

    def __getitem__(self, index: int | slice | Sequence[int] | torch.Tensor | np.ndarray) -> Any:
        if isinstance(index, (int, np.integer)):
            crop, (top, left) = self.crops[index], self.offsets[index]
            mask = torch.zeros(self.size, dtype=torch.bool, device=crop.device)
            mask[top : top + crop.shape[0], left : left + crop.shape[1]] = crop
            return mask
        picked = torch.arange(len(self))[torch.as_tensor(index) if not isinstance(index, slice) else index]
        rows = picked.reshape(-1).tolist()
        return CroppedMasks([self.crops[k] for k in rows], [self.offsets[k] for k in rows], self.size)

    def clip(self, height: int, width: int) -> CroppedMasks:
        """The masks cut to the top-left ``height x width`` of their image (a letterbox's padding off)."""
        if (height, width) == self.size:
            return self
        crops = [
            crop[: max(0, height - top), : max(0, width - left)]
            for crop, (top, left) in zip(self.crops, self.offsets, strict=True)
        ]
        return CroppedMasks(crops, self.offsets, (height, width))

    def cpu(self) -> CroppedMasks:
        """The masks on the CPU."""
        return CroppedMasks([crop.cpu() for crop in self.crops], self.offsets, self.size)

    def dense(self) -> torch.Tensor:
        """The ``(K, H, W)`` boolean tensor."""
        if not len(self):
            return torch.zeros(self.shape, dtype=torch.bool)
        return torch.stack(list(self))

    def numpy(self) -> np.ndarray:
        """The ``(K, H, W)`` boolean array."""
        return self.dense().cpu().numpy()

    def __array__(self, dtype: Any = None, copy: bool | None = None) -> np.ndarray:
        array = self.numpy()
        return array if dtype is None else array.astype(dtype)


def paste_masks(logits: torch.Tensor, height: int, width: int) -> CroppedMasks:
    """Resize mask logits bilinearly (``align_corners=False``) to ``height x width`` and threshold at 0.

    The result is that of ``F.interpolate(logits[None], (height, width), mode="bilinear") > 0``,
    which is how it is computed when its float intermediate takes at most `DENSE_BYTES`. Above
    that, there is neither the ``(K, H, W)`` float intermediate nor a dense boolean result: each
    mask is computed alone, only over the output rows and columns whose source neighbours include
    a positive logit (elsewhere a blend of non-positive logits cannot be positive), and kept as
    the window around its True pixels.

    Args:
        logits: ``(K, h, w)`` mask logits at the network's resolution.
        height: Output height.
        width: Output width.

    Returns:
        The ``K`` masks.
    """
    logits = logits.float()
    if 0 < len(logits) * height * width * 4 <= DENSE_BYTES:
        # Small images: one resize of all masks is cheaper than a loop of small tensor operations.
        dense = F.interpolate(logits[None], size=(height, width), mode="bilinear", align_corners=False)[0] > 0
        return CroppedMasks(list(dense), [(0, 0)] * len(dense), (height, width))
    crops: list[torch.Tensor] = []
    offsets: list[tuple[int, int]] = []
    rows = _source_taps(logits.shape[1], height, logits.device)
    cols = _source_taps(logits.shape[2], width, logits.device)
    for mask in logits:
        positive = mask > 0
        if not positive.any():
            crops.append(torch.zeros((0, 0), dtype=torch.bool, device=logits.device))
            offsets.append((0, 0))
            continue
        r = _window(rows, positive.any(dim=1))
        c = _window(cols, positive.any(dim=0))
        c0, c1, cl = (t[c] for t in cols)
        # Separable: along the rows at the source height (small), then PyTorch's kernel between rows
        # (its resize of an unchanged width is the identity).
        across = mask[:, c0] * (1 - cl) + mask[:, c1] * cl
        down = F.interpolate(across[None, None], size=(height, len(cl)), mode="bilinear", align_corners=False)
        window = down[0, 0, r] > 0
        hit_rows, hit_cols = window.any(dim=1).nonzero(), window.any(dim=0).nonzero()
        if not len(hit_rows):
            crops.append(window[:0, :0])
            offsets.append((0, 0))
            continue
        top, bottom, left, right = (
            int(hit_rows[0]),
            int(hit_rows[-1]) + 1,
            int(hit_cols[0]),
            int(hit_cols[-1]) + 1,
        )
        crops.append(window[top:bottom, left:right].clone())
        offsets.append((r.start + top, c.start + left))
    return CroppedMasks(crops, offsets, (height, width))


def _source_taps(size_in: int, size_out: int, device: torch.device) -> tuple[torch.Tensor, ...]:
    """For each output pixel along one axis: its two source pixels and the weight of the second.

    The source coordinate is PyTorch's for ``align_corners=False``: ``(i + 0.5) * in / out - 0.5``,
    clamped at 0.
    """
    scale = size_in / size_out
    source = ((torch.arange(size_out, device=device, dtype=torch.float32) + 0.5) * scale - 0.5).clamp(min=0)
    first = source.long().clamp(max=size_in - 1)
    second = (first + 1).clamp(max=size_in - 1)
    return first, second, source - first


def _window(taps: tuple[torch.Tensor, ...], positive: torch.Tensor) -> slice:
    """The output range whose source taps include a positive source pixel (``positive`` along the axis)."""
    first, second, _ = taps
    hit = (positive[first] | positive[second]).nonzero()
    return slice(int(hit[0]), int(hit[-1]) + 1)


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
    resize: Resize = "letterbox",
    hflip: bool = False,
    vision: Sam3VisionEncoderOutput | None = None,
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
        resize: How the images were made square (``letterbox``, the kit's evaluation transform, or
            ``squash``); it decides how detections map back to the original pixels.
        hflip: Run on the inputs mirrored left-right and mirror the outputs back on the network's
            square before mapping them to the image (a test-time transform; exact for letterboxed
            inputs too, whose padding the mirror moves to the left).
        vision: The vision encoder's output for ``pixel_values``, kept from an earlier call
            (`ConceptSegmenter.encode_images`); ``None`` runs the encoder. Not with ``hflip``.

    Returns:
        One :class:`QueryDetections` per query, in order.

    Raises:
        ValueError: If ``vision`` is given with ``hflip``.
    """
    if vision is not None and hflip:
        raise ValueError("detect: precomputed vision features are of the unmirrored image; drop hflip")
    device = next(segmenter.parameters()).device
    pixel_values = pixel_values.to(device)
    if hflip:
        pixel_values = pixel_values.flip(-1)
    if vision is None:
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
        if hflip:
            outputs = mirrored(outputs)
        found += detections_per_query(
            outputs, orig_sizes, index.cpu(), top_k=top_k, min_score=min_score, resize=resize
        )
    return found


def mirrored(outputs: ConceptOutputs) -> ConceptOutputs:
    """Outputs of a left-right mirrored input, mirrored back: boxes ``x -> 1 - x``, masks flipped."""
    boxes = outputs.boxes.clone()
    boxes[..., 0], boxes[..., 2] = 1 - outputs.boxes[..., 2], 1 - outputs.boxes[..., 0]
    masks = None if outputs.masks is None else outputs.masks.flip(-1)
    return replace(outputs, boxes=boxes, masks=masks)
