"""Albumentations pipelines that move an image, its boxes and its masks together.

Both pipelines expect ``image`` (H, W, 3 uint8), ``bboxes`` in pixel ``pascal_voc`` (x0, y0, x1, y1)
with a parallel ``instance_index`` list, and optionally ``masks`` (a list of (H, W) uint8 arrays).
Albumentations drops a box that vanishes and its label with it, but never drops masks; the dataset
uses the surviving ``instance_index`` values to keep only the matching masks.
"""

from __future__ import annotations

import math

import albumentations as A
import cv2
import numpy as np
import torch

#: Reference sizes: train images are squashed to a square side in 480..992 (step 32) and padded to 1008.
REFERENCE_RESOLUTION = 1008
REFERENCE_MIN_SIZE = 480


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
    image_size: int, min_size: int | None = None, max_size: int | None = None, step: int = 32
) -> A.Compose:
    """The reference train augmentation: squash to a random square side, then pad at a random offset.

    The image is resized (not aspect-preserving) to ``s x s`` with ``s`` drawn uniformly from
    `train_sizes`, then zero-padded to ``image_size x image_size`` with the image at a random
    position. Masks use nearest-neighbour resizing and pad with 0.

    Args:
        image_size: Side of the network input.
        min_size: Smallest side (see `train_sizes`).
        max_size: Largest side (see `train_sizes`).
        step: Spacing of the sides.

    Returns:
        The albumentations pipeline. Seed it per call with ``set_random_seed`` for reproducibility.
    """
    sizes = train_sizes(image_size, min_size, max_size, step)
    return A.Compose(
        [
            A.OneOf([A.Resize(s, s, interpolation=cv2.INTER_LINEAR) for s in sizes], p=1.0),
            A.PadIfNeeded(
                min_height=image_size,
                min_width=image_size,
                position="random",
                border_mode=cv2.BORDER_CONSTANT,
                fill=0,
                fill_mask=0,
            ),
        ],
        bbox_params=_bbox_params(),
    )


def eval_transform(image_size: int) -> A.Compose:
    """Plain square resize to ``image_size x image_size``, no padding.

    Normalised network coordinates map back to the original image by multiplying x by its width and
    y by its height.

    Args:
        image_size: Side of the network input.

    Returns:
        The albumentations pipeline.
    """
    return A.Compose(
        [A.Resize(image_size, image_size, interpolation=cv2.INTER_LINEAR)], bbox_params=_bbox_params()
    )


def to_pixel_values(image: np.ndarray) -> torch.Tensor:
    """``(H, W, 3)`` uint8 to ``(3, H, W)`` float, scaled to ``[0, 1]`` then normalised with mean = std = 0.5.

    The normalisation SAM 3's processor applies; every image the kit feeds the network goes through it.
    """
    return (torch.from_numpy(np.ascontiguousarray(image)).permute(2, 0, 1).float() / 255 - 0.5) / 0.5


def network_input(image: np.ndarray, image_size: int) -> torch.Tensor:
    """An ``(H, W, 3)`` uint8 RGB image as the network sees it at evaluation: resized, then normalised.

    Returns:
        ``(3, image_size, image_size)`` float pixel values.
    """
    no_boxes = {"bboxes": np.zeros((0, 4), dtype=np.float32), "instance_index": []}
    return to_pixel_values(eval_transform(image_size)(image=image, **no_boxes)["image"])
