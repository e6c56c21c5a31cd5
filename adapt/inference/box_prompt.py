"""A mask from a box a person draws: the model runs with the box as prompt and returns one instance.

The review page (a drag on the image) and the data engine's simulated annotator (a fix or an added
instance) both get their mask here. SAM 3 takes boxes as exemplar prompts: the detection step
(`sam3_adapt.model.detections.detect`) runs with the phrase and the drawn box as one positive
exemplar (normalised cxcywh on the network's square), and of the detections that come back the one
whose box best overlaps the drawn box (box IoU, ties to the higher score) is the instance.

When no detection overlaps the drawn box at all (box IoU 0 for every one, or no detection), the
drawn box itself is the instance: its mask is the box's rectangle, its score 0 and ``from_box``
True, so a caller can tell a model mask from a person's box alone.

The image is read and made square exactly as `sam3_adapt.inference.loop.predict_samples` does
(`sam3_adapt.data_mix.images` and the evaluation transform's letterbox). Its vision features are
kept (`BoxPrompter`, the last ``keep_images`` images), so another box on the same image runs only
the detector and the mask decoder, not the vision encoder.
"""

from __future__ import annotations

import hashlib
import os
from collections import OrderedDict
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torchvision.ops import box_iou

from sam3_adapt.data_mix.images import ImageLike, read_image
from sam3_adapt.data_mix.transforms import network_input
from sam3_adapt.model.detections import Resize, detect, input_canvas
from sam3_adapt.model.forward import ConceptSegmenter


@dataclass
class BoxInstance:
    """The instance a drawn box gives.

    Attributes:
        mask: ``(H, W)`` boolean mask in image pixels.
        box: ``[x0, y0, x1, y1]`` in image pixels: the detection's box (the drawn box when
            ``from_box``).
        score: The detection's SAM 3 score (0 when ``from_box``).
        overlap: IoU of the detection's box with the drawn box.
        from_box: True when no detection overlapped the drawn box and the box's rectangle is the mask.
    """

    mask: np.ndarray
    box: list[float]
    score: float
    overlap: float
    from_box: bool = False


@dataclass
class _Prepared:
    """One image made ready: network input, original size and vision features."""

    pixel_values: torch.Tensor
    size: tuple[int, int]
    vision: Any


class BoxPrompter:
    """Box-prompted masks from one segmenter, keeping the vision features of the last images.

    Args:
        segmenter: The model (`sam3_adapt.model.loading.load_segmenter`); put in eval mode here.
        image_size: Network input side; default the segmenter's.
        resize: ``"letterbox"`` (the kit's evaluation transform) or ``"squash"``.
        keep_images: How many images' vision features are kept (least recently used dropped).

    Attributes:
        vision_runs: How many times the vision encoder has run (a cached image adds none).

    Raises:
        ValueError: If no image size is given and the segmenter does not know its own.
    """

    def __init__(
        self,
        segmenter: ConceptSegmenter,
        *,
        image_size: int | None = None,
        resize: Resize = "letterbox",
        keep_images: int = 4,
    ) -> None:
        self.segmenter = segmenter.eval()
        self.image_size = image_size or segmenter.image_size
        if self.image_size is None:
            raise ValueError("give image_size: the segmenter was built without its processor's size")
        self.resize = resize
        self.keep_images = max(1, keep_images)
        self.vision_runs = 0
        self._kept: OrderedDict[str, _Prepared] = OrderedDict()

    def prepare(self, image: ImageLike) -> tuple[int, int]:
        """Read ``image`` and compute its vision features now (e.g. before a person draws on it).

        Args:
            image: An image file's path, a Pillow image, or an ``(H, W, 3)`` uint8 RGB array.

        Returns:
            The image's ``(height, width)``.
        """
        return self._prepared(image).size

    @torch.no_grad()
    def __call__(self, image: ImageLike, phrase: str, box: Sequence[float]) -> BoxInstance:
        """The instance of ``phrase`` that the box ``(x0, y0, x1, y1)`` (image pixels) points at.

        Args:
            image: An image file's path, a Pillow image, or an ``(H, W, 3)`` uint8 RGB array.
            phrase: The noun phrase.
            box: The drawn box, xyxy in image pixels (clipped to the image).

        Returns:
            The instance (see the module's docstring for a box that no detection overlaps).

        Raises:
            ValueError: If the box is not four numbers or has no area inside the image.
            sam3_adapt.data_mix.images.ImageReadError: If the image file cannot be read.
        """
        prepared = self._prepared(image)
        height, width = prepared.size
        drawn = _clipped(box, height, width)
        rows, cols = input_canvas(height, width, self.resize)
        x0, y0, x1, y1 = drawn
        exemplar = torch.tensor(
            [[(x0 + x1) / 2 / cols, (y0 + y1) / 2 / rows, (x1 - x0) / cols, (y1 - y0) / rows]]
        )
        (found,) = detect(
            self.segmenter,
            prepared.pixel_values,
            [phrase],
            torch.zeros(1, dtype=torch.long),
            torch.tensor([[height, width]]),
            top_k=self.segmenter.num_slots,
            exemplar_boxes=[exemplar],
            exemplar_labels=[torch.ones(1, dtype=torch.long)],
            resize=self.resize,
            vision=prepared.vision,
        )
        overlaps = (
            box_iou(found.boxes.float().cpu(), torch.tensor([drawn]))[:, 0] if len(found.scores) else None
        )
        if overlaps is None or float(overlaps.max()) <= 0.0:
            mask = np.zeros((height, width), dtype=bool)
            mask[int(y0) : int(np.ceil(y1)), int(x0) : int(np.ceil(x1))] = True
            return BoxInstance(mask=mask, box=list(drawn), score=0.0, overlap=0.0, from_box=True)
        # Detections come best first, so argmax keeps the higher score among equal overlaps.
        best = int(torch.argmax(overlaps))
        return BoxInstance(
            mask=np.asarray(found.masks[best].cpu().numpy(), dtype=bool),
            box=[float(v) for v in found.boxes[best].tolist()],
            score=float(found.scores[best]),
            overlap=float(overlaps[best]),
        )

    def _prepared(self, image: ImageLike) -> _Prepared:
        """The image's network input and vision features, computed once per image kept."""
        key = _image_key(image)
        if key in self._kept:
            self._kept.move_to_end(key)
            return self._kept[key]
        pixels = read_image(image)
        device = next(self.segmenter.parameters()).device
        pixel_values = network_input(pixels, self.image_size, self.resize)[None].to(device)
        with torch.no_grad():
            vision = self.segmenter.encode_images(pixel_values)
        self.vision_runs += 1
        prepared = _Prepared(pixel_values, (int(pixels.shape[0]), int(pixels.shape[1])), vision)
        self._kept[key] = prepared
        while len(self._kept) > self.keep_images:
            self._kept.popitem(last=False)
        return prepared


def box_prompt(
    segmenter: ConceptSegmenter, image: ImageLike, phrase: str, box: Sequence[float]
) -> BoxInstance:
    """One box-prompted instance, without keeping the image's features (see `BoxPrompter`).

    Args:
        segmenter: The model.
        image: An image file's path, a Pillow image, or an ``(H, W, 3)`` uint8 RGB array.
        phrase: The noun phrase.
        box: The drawn box, xyxy in image pixels.

    Returns:
        The instance.
    """
    return BoxPrompter(segmenter, keep_images=1)(image, phrase, box)


def _image_key(image: ImageLike) -> str:
    """What identifies an image between calls: a file by path, size and change time; pixels by content."""
    if isinstance(image, (str, os.PathLike)):
        path = Path(image).resolve()
        stat = path.stat() if path.exists() else None
        return f"file:{path}:{stat and stat.st_size}:{stat and stat.st_mtime_ns}"
    array = np.ascontiguousarray(np.asarray(image))
    digest = hashlib.blake2b(array.tobytes(), digest_size=16)
    digest.update(f"{array.shape}{array.dtype}".encode())
    return f"pixels:{digest.hexdigest()}"


def _clipped(box: Sequence[float], height: int, width: int) -> list[float]:
    """The box clipped to the image; refused when it is not four numbers or has no area left."""
    values = [float(v) for v in box]
    if len(values) != 4 or not all(np.isfinite(values)):
        raise ValueError(f"a box is four finite numbers x0, y0, x1, y1 in pixels, got {list(box)}")
    x0, x1 = sorted((min(max(values[0], 0.0), width), min(max(values[2], 0.0), width)))
    y0, y1 = sorted((min(max(values[1], 0.0), height), min(max(values[3], 0.0), height)))
    if x1 - x0 < 1 or y1 - y0 < 1:
        raise ValueError(
            f"the box {values} has less than one pixel of area inside the {width}x{height} image"
        )
    return [x0, y0, x1, y1]
