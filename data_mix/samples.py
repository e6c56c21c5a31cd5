"""The in-memory form of concept data: one image, its queries, and their instances."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

import numpy as np
from pycocotools import mask as mask_utils


@dataclass(eq=False)
class Instance:
    """One annotated object of a query.

    Attributes:
        box_xyxy: Box ``(x0, y0, x1, y1)`` in pixels of the original image.
        mask: The object's mask: a boolean array of shape ``(H, W)``, a compressed COCO RLE
            (``{"size": [H, W], "counts": bytes | str}``) that `mask_array` decodes on demand, or
            ``None`` for a box-only object. Readers keep RLEs so that large sets stay small in memory.
        area: Object area in pixels of the original image (mask area when known, else box area).
        annotation_id: Id of the source record (the COCO annotation id), for error messages and evaluation.
    """

    box_xyxy: tuple[float, float, float, float]
    mask: np.ndarray | dict[str, Any] | None
    area: float
    annotation_id: int

    @property
    def has_mask(self) -> bool:
        """Whether the object carries a mask (box-only objects do not)."""
        return self.mask is not None

    def mask_array(self) -> np.ndarray | None:
        """The mask as a boolean ``(H, W)`` array, decoding an RLE if needed; ``None`` if box-only."""
        if self.mask is None or isinstance(self.mask, np.ndarray):
            return self.mask
        return mask_utils.decode(self.mask).astype(bool)


#: Where a negative query comes from: a category absent from an exhaustively labelled image
#: (``implicit``), a user's list of confusions (``explicit``), a sibling of a positive phrase
#: (``generated``), or a phrase the model fired on, reviewed and fed back (``mined``). All but
#: ``implicit`` are hard negatives.
NegativeKind = Literal["implicit", "explicit", "generated", "mined"]


@dataclass
class Query:
    """One (image, noun phrase) pair and every instance of the phrase in the image.

    Attributes:
        phrase: The noun phrase given to the model.
        category_id: Id of the source category (the COCO category id).
        instances: The phrase's objects in the image; empty for a negative query.
        exhaustive: Whether every instance of the phrase in the image is annotated. Only exhaustive
            queries may be negatives; a positive query that is not exhaustive has objects that are
            present but unlabelled (crowd regions, records skipped as invalid).
        origin: Where the query comes from, for error messages, e.g.
            ``"train.json: image id 3 (img3.png), category 2"``.
        negative_kind: For a negative query, where it comes from (see `NegativeKind`); read only
            for negatives. Query capping keeps hard negatives before implicit ones, and evaluation
            can break results down by it.
    """

    phrase: str
    category_id: int
    instances: list[Instance]
    exhaustive: bool = field(default=True, kw_only=True)
    origin: str = field(kw_only=True)
    negative_kind: NegativeKind = field(default="implicit", kw_only=True)

    @property
    def is_negative(self) -> bool:
        """Whether the phrase has no instance in the image."""
        return not self.instances

    @property
    def is_hard_negative(self) -> bool:
        """Whether the query is a negative chosen to be confusable (explicit, generated or mined)."""
        return self.is_negative and self.negative_kind != "implicit"


@dataclass
class ConceptSample:
    """One image with all of its queries, positive and negative.

    Attributes:
        image_id: Id of the image in its source (the COCO image id).
        image_path: Path of the image file.
        height: Height of the original image in pixels.
        width: Width of the original image in pixels.
        queries: Every query of the image, positives and negatives.
        source: Name of the data source (e.g. the annotation file name), used for mixing and logging.
    """

    image_id: int
    image_path: Path
    height: int
    width: int
    queries: list[Query]
    source: str

    @property
    def positives(self) -> list[Query]:
        """Queries with at least one instance."""
        return [q for q in self.queries if not q.is_negative]

    @property
    def negatives(self) -> list[Query]:
        """Queries with no instance."""
        return [q for q in self.queries if q.is_negative]
