"""Inference from Python: a SAM 3 model (with or without an adapter) answering noun phrases on images."""

from __future__ import annotations

import os
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch
from matplotlib.figure import Figure

from sam3_adapt.data_mix.images import ImageLike, read_image
from sam3_adapt.data_mix.transforms import network_input
from sam3_adapt.evaluation.run import evaluate
from sam3_adapt.inference.overlay import overlay_figure, save_figure
from sam3_adapt.inference.prediction import Prediction
from sam3_adapt.model.detections import Resize, detect
from sam3_adapt.model.forward import ConceptSegmenter
from sam3_adapt.model.loading import load_segmenter


class Predictor:
    """A SAM 3 network ready to find the instances of noun phrases in images.

    Images are resized to ``image_size`` exactly as evaluation does, and detections are mapped back to
    the original pixels. Make one with :func:`load` or take ``result.predictor`` of
    :func:`sam3_adapt.finetune`.

    Args:
        segmenter: The network and its tokenizer.
        image_size: Network input side in pixels (the one the model was trained at).
        base: Base model it was loaded from (hub id, folder or short name), for :meth:`evaluate`.
        adapter: Adapter folder or hub id on top of ``base``, or ``None``.
        score_threshold: Default score a detection needs to be returned.
        max_detections: Most detections per phrase.
        masks: Decode masks; ``False`` for box-only models (faster, ``Prediction.masks`` is ``None``).
        device: Where to run; default CUDA when available, else the CPU.
        resize: ``"letterbox"`` (the image's aspect ratio kept, padded to the square) or ``"squash"``.
    """

    def __init__(
        self,
        segmenter: ConceptSegmenter,
        image_size: int,
        *,
        base: str,
        adapter: str | None = None,
        score_threshold: float = 0.5,
        max_detections: int = 100,
        masks: bool = True,
        device: str | None = None,
        resize: Resize = "letterbox",
    ) -> None:
        self.device = torch.device(device or ("cuda" if torch.cuda.is_available() else "cpu"))
        self.segmenter = segmenter.to(self.device).eval()
        self.image_size = image_size
        self.base = base
        self.adapter = adapter
        self.score_threshold = score_threshold
        self.max_detections = max_detections
        self.masks = masks
        self.resize = resize

    @torch.no_grad()
    def predict(
        self, image: ImageLike, phrases: str | Sequence[str], threshold: float | None = None
    ) -> Prediction:
        """Find every instance of each phrase in the image.

        Args:
            image: A PIL image, an image file's path, or an ``(H, W, 3)`` uint8 RGB array.
            phrases: One noun phrase or several (the image is encoded once for all of them).
            threshold: Score a detection needs; default ``score_threshold``; ``0`` keeps the best
                ``max_detections`` of each phrase.

        Returns:
            The :class:`~sam3_adapt.inference.prediction.Prediction`.

        Raises:
            ValueError: If no phrase is given, or a phrase is blank or too long for the text encoder.
        """
        asked = [phrases] if isinstance(phrases, str) else list(phrases)
        if not asked:
            raise ValueError("give at least one phrase")
        for phrase in asked:
            self.segmenter.check_phrase(phrase)
        pixels = read_image(image)
        height, width = pixels.shape[:2]
        self.segmenter.eval()
        found = detect(
            self.segmenter,
            network_input(pixels, self.image_size, self.resize)[None],
            asked,
            torch.zeros(len(asked), dtype=torch.long),
            torch.tensor([[height, width]]),
            top_k=self.max_detections,
            min_score=self.score_threshold if threshold is None else threshold,
            masks=self.masks,
            resize=self.resize,
        )
        return Prediction(
            phrases=asked,
            boxes=np.concatenate([d.boxes.cpu().numpy() for d in found]).reshape(-1, 4).astype(np.float32),
            scores=np.concatenate([d.scores.cpu().numpy() for d in found]).astype(np.float32),
            class_ids=np.concatenate(
                [np.full(len(d.scores), k, dtype=np.int64) for k, d in enumerate(found)]
            ),
            masks=np.concatenate([d.masks.cpu().numpy() for d in found]) if self.masks else None,
            presence={phrase: d.presence for phrase, d in zip(asked, found)},
            image_size=(height, width),
        )

    def show(
        self,
        image: ImageLike,
        phrases: str | Sequence[str],
        out: str | os.PathLike | None = None,
        threshold: float | None = None,
    ) -> Figure:
        """Predict, then draw the detections on the image (masks and boxes, one colour per phrase).

        Args:
            image: As for :meth:`predict`.
            phrases: As for :meth:`predict`.
            out: Also write the picture to this PNG file.
            threshold: As for :meth:`predict`.

        Returns:
            The matplotlib figure (a notebook shows it when it is the cell's last value).
        """
        pixels = read_image(image)
        prediction = self.predict(pixels, phrases, threshold)
        limit = self.score_threshold if threshold is None else threshold
        title = image if isinstance(image, (str, os.PathLike)) else None
        fig = overlay_figure(pixels, prediction, f"{Path(title).name}, score >= {limit:g}" if title else None)
        if out is not None:
            save_figure(fig, out)
        return fig

    def evaluate(
        self,
        data_json: str | list[str],
        image_dir: str | list[str],
        out: str = "runs/evaluate",
        baseline: bool = False,
        **options: Any,
    ) -> dict[str, Any]:
        """Evaluate this model on a labelled COCO set with ``sam3-adapt evaluate`` and write its report.

        Args:
            data_json: COCO annotation file (or several).
            image_dir: Its image folder (one per file, or one for all).
            out: Output folder (``metrics.json``, ``results.json``, ``report.html``, ``figures/``).
            baseline: Also evaluate the base model without the adapter, side by side with deltas.
            **options: Further arguments of :func:`sam3_adapt.evaluation.evaluate` (``pictures``,
                ``batch_size``, ``prompt_map``, ``progress``, ...).

        Returns:
            The content of ``metrics.json``.
        """
        settings = {
            "image_size": self.image_size,
            "score_threshold": self.score_threshold,
            "max_detections": self.max_detections,
            "device": self.device.type,
        }
        return evaluate(
            data_json,
            image_dir,
            model=self.base,
            adapter=self.adapter,
            baseline=baseline,
            out=str(out),
            **(settings | options),
        )


def load(
    base: str,
    adapter: str | os.PathLike | None = None,
    *,
    image_size: int | None = None,
    score_threshold: float = 0.5,
    max_detections: int = 100,
    masks: bool = True,
    device: str | None = None,
) -> Predictor:
    """Load a SAM 3 model, optionally with an adapter, for prediction and evaluation.

    Example::

        predictor = sam3_adapt.load("facebook/sam3", adapter="my-org/sam3-cells-lora")
        prediction = predictor.predict("slide.png", ["round cell", "dividing cell"])

    Args:
        base: Hub id, local HF-format folder, or ``tiny`` / ``tiny-random``.
        adapter: PEFT adapter folder or hub id trained on ``base``.
        image_size: Network input side; default the checkpoint's processor size.
        score_threshold: Default score a detection needs to be returned.
        max_detections: Most detections per phrase.
        masks: Decode masks; ``False`` for box-only adapters.
        device: Where to run; default CUDA when available.

    Returns:
        The :class:`Predictor`.
    """
    segmenter = load_segmenter(base, adapter)
    return Predictor(
        segmenter,
        image_size or segmenter.image_size,
        base=str(base),
        adapter=None if adapter is None else str(adapter),
        score_threshold=score_threshold,
        max_detections=max_detections,
        masks=masks,
        device=device,
    )
