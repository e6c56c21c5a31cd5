"""Albumentations pipelines that move an image, its boxes and its masks together.

What the model sees: a square of ``image_size`` pixels. By default (``resize="letterbox"``) the
image is scaled so that its longer side fits, keeping its aspect ratio, and the rest of the square
is black padding: at evaluation and prediction the image sits in the top-left corner (so detections
map back by one scale factor, `sam3_adapt.model.detections`), in training at a random offset. With
``resize="squash"`` the image is stretched to the square, as SAM 3's reference code does; a crop of
2.7:1 then shows its objects 2.7 times narrower than they are.

Both pipelines expect ``image`` (H, W, 3 uint8), ``bboxes`` in pixel ``pascal_voc`` (x0, y0, x1, y1)
with a parallel ``instance_index`` list, and optionally ``masks`` (a list of (H, W) uint8 arrays).
Albumentations drops a box that vanishes and its label with it, but never drops masks; the dataset
uses the surviving ``instance_index`` values to keep only the matching masks.
"""

from __future__ import annotations

import math
from typing import Literal

import albumentations as A
import cv2
import numpy as np
import torch

#: Reference sizes: train images are squashed to a square side in 480..992 (step 32) and padded to 1008.
REFERENCE_RESOLUTION = 1008
REFERENCE_MIN_SIZE = 480

#: How an image becomes the square network input: aspect kept and padded, or stretched.
Resize = Literal["letterbox", "squash"]


def _bbox_params() -> A.BboxParams:
    # clip: COCO boxes often overshoot the border by a fraction of a pixel.
    return A.BboxParams(format="pascal_voc", label_fields=["instance_index"], clip=True)


def train_sizes(
    image_size: int, min_size: int | None = None, max_size: int | None = None, step: int = 32
) -> list[int]:
    """The square sides the train augmentation draws from.

    Args:
        image_size: Side of the network input.
        min_size: Smallest side; default: the reference's 480 of 1008 scaled to ``image_size`` and
            rounded up to a multiple of ``step``.
        max_size: Largest side (at most ``image_size``); default ``image_size``.
        step: Spacing of the sides.

    Returns:
        ``[min_size, min_size + step, ...]`` up to ``max_size``. For ``image_size=1008`` the defaults
        give the reference's 480, 512, ..., 992.

    Raises:
        ValueError: If the range is empty or exceeds ``image_size``.
    """
    if step <= 0:
        raise ValueError(f"step must be positive, got {step}")
    if min_size is None:
        min_size = step * math.ceil(REFERENCE_MIN_SIZE * image_size / REFERENCE_RESOLUTION / step)
    max_size = image_size if max_size is None else max_size
    if not 0 < min_size <= max_size <= image_size:
        raise ValueError(
            f"need 0 < min_size <= max_size <= image_size, got min_size={min_size}, max_size={max_size}, "
            f"image_size={image_size}"
        )
    return list(range(min_size, max_size + 1, step))


def train_transform(
    image_size: int,
    min_size: int | None = None,
    max_size: int | None = None,
    step: int = 32,
    resize: Resize = "letterbox",
) -> A.Compose:
    """The reference train augmentation: resize to a random side, then pad at a random offset.

    The image's longer side is resized to ``s`` keeping its aspect ratio (``resize="squash"``: the
    whole image to ``s x s``, as the reference does), with ``s`` drawn uniformly from `train_sizes`,
    then zero-padded to ``image_size x image_size`` with the image at a random position. Masks use
    nearest-neighbour resizing and pad with 0. A square image is treated the same either way.

    Args:
        image_size: Side of the network input.
        min_size: Smallest side (see `train_sizes`).
        max_size: Largest side (see `train_sizes`).
        step: Spacing of the sides.
        resize: ``"letterbox"`` (keep the aspect ratio) or ``"squash"``.

    Returns:
        The albumentations pipeline. Seed it per call with ``set_random_seed`` for reproducibility.
    """
    sizes = train_sizes(image_size, min_size, max_size, step)
    return A.Compose(
        [
            A.OneOf([_resize(s, resize) for s in sizes], p=1.0),
            _pad(image_size, "random"),
        ],
        bbox_params=_bbox_params(),
    )


def eval_transform(image_size: int, resize: Resize = "letterbox") -> A.Compose:
    """Resize to the ``image_size x image_size`` network input, without randomness.

    ``"letterbox"``: the longer side becomes ``image_size`` (aspect ratio kept) and the image sits
    in the top-left corner of a black square, so normalised network coordinates map back to the
    original image by multiplying both x and y by its longer side. ``"squash"``: a plain resize to
    the square; x maps back by the width, y by the height.

    Args:
        image_size: Side of the network input.
        resize: ``"letterbox"`` or ``"squash"``.

    Returns:
        The albumentations pipeline.
    """
    steps = [_resize(image_size, resize)]
    if resize == "letterbox":
        steps.append(_pad(image_size, "top_left"))
    return A.Compose(steps, bbox_params=_bbox_params())


def _pad(image_size: int, position: str) -> A.PadIfNeeded:
    """Zero padding (image and masks) up to the ``image_size`` square, the image at ``position``."""
    return A.PadIfNeeded(
        min_height=image_size,
        min_width=image_size,
        position=position,
        border_mode=cv2.BORDER_CONSTANT,
        fill=0,
        fill_mask=0,
    )


def _resize(side: int, resize: Resize) -> A.DualTransform:
    """Longer side to ``side`` keeping the aspect ratio (letterbox), or the image to ``side x side``."""
    if resize == "letterbox":
        return A.LongestMaxSize(max_size=side, interpolation=cv2.INTER_LINEAR)
    if resize == "squash":
        return A.Resize(side, side, interpolation=cv2.INTER_LINEAR)
    raise ValueError(f"resize must be 'letterbox' or 'squash', got {resize!r}")


def to_pixel_values(image: np.ndarray) -> torch.Tensor:
    """``(H, W, 3)`` uint8 to ``(3, H, W)`` float, scaled to ``[0, 1]`` then normalised with mean = std = 0.5.

    The normalisation SAM 3's processor applies; every image the kit feeds the network goes through it.
    """
    return (torch.from_numpy(np.ascontiguousarray(image)).permute(2, 0, 1).float() / 255 - 0.5) / 0.5


def network_input(image: np.ndarray, image_size: int, resize: Resize = "letterbox") -> torch.Tensor:
    """An ``(H, W, 3)`` uint8 RGB image as the network sees it at evaluation: resized, then normalised.

    ``resize`` is that of `eval_transform`.

    Returns:
        ``(3, image_size, image_size)`` float pixel values.
    """
    no_boxes = {"bboxes": np.zeros((0, 4), dtype=np.float32), "instance_index": []}
    return to_pixel_values(eval_transform(image_size, resize)(image=image, **no_boxes)["image"])
