"""Batch concept items: images stacked once, queries flattened with the index of their image.

The batch layout is the contract of `sam3_adapt.data_mix.batch.ConceptBatch`.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import torch
from torchvision.ops import box_convert

from sam3_adapt.data_mix.batch import ConceptBatch
from sam3_adapt.data_mix.rng import WorkerAwareRng

#: Text that SAM 3 pairs with a prompt made of exemplar boxes only: the reference's
#: ``TextQueryToVisual`` sets it, and ``transformers.Sam3Processor`` fills it in when no text is given.
VISUAL_PROMPT_TEXT = "visual"


class ConceptCollator:
    """Collate function with optional exemplar-prompt sampling for positive queries.

    With probability ``exemplar_prob`` a positive query gets one of its ground-truth boxes, picked
    at random, as a positive exemplar prompt (label 1). With probability ``visual_only_prob`` such a
    query also loses its phrase, which becomes ``"visual"`` (the SAM 3 convention for a visual-only
    prompt), as the reference's ``TextQueryToVisual`` does. Targets are unchanged: the query still
    asks for every instance. Negative queries never get exemplars.

    Args:
        exemplar_prob: Probability that a positive query gets an exemplar box.
        visual_only_prob: Probability that a query with an exemplar drops its phrase.
        seed: Seed of the sampling (see `WorkerAwareRng`).
    """

    def __init__(self, exemplar_prob: float = 0.0, visual_only_prob: float = 0.0, seed: int = 0) -> None:
        for name, p in (("exemplar_prob", exemplar_prob), ("visual_only_prob", visual_only_prob)):
            if not 0.0 <= p <= 1.0:
                raise ValueError(f"{name} must be in [0, 1], got {p}")
        self.exemplar_prob = exemplar_prob
        self.visual_only_prob = visual_only_prob
        self.rng = WorkerAwareRng(seed)

    def __call__(self, items: Sequence[dict[str, Any]]) -> ConceptBatch:
        """Collate `ConceptDataset` items into the batch contract above."""
        batch: Any = {
            "pixel_values": torch.stack([item["pixel_values"] for item in items]),
            "image_ids": torch.tensor([item["image_id"] for item in items], dtype=torch.long),
            "orig_sizes": torch.tensor([list(item["orig_size"]) for item in items], dtype=torch.long),
            "sources": [item["source"] for item in items],
            "phrases": [],
            "exemplar_boxes": [],
            "exemplar_labels": [],
            "targets": [],
        }
        image_index, category_ids = [], []
        sample_exemplars = self.exemplar_prob > 0
        rng = self.rng.get() if sample_exemplars else None
        for b, item in enumerate(items):
            for phrase, cat_id, boxes, masks, has_mask, exhaustive in zip(
                item["phrases"],
                item["category_ids"],
                item["boxes"],
                item["masks"],
                item["has_mask"],
                item["exhaustive"],
                strict=True,
            ):
                exemplar = torch.zeros((0, 4), dtype=torch.float32)
                if rng is not None and len(boxes) and rng.random() < self.exemplar_prob:
                    pick = int(rng.integers(len(boxes)))
                    exemplar = box_convert(boxes[pick : pick + 1], "xyxy", "cxcywh")
                    if rng.random() < self.visual_only_prob:
                        phrase = VISUAL_PROMPT_TEXT
                batch["phrases"].append(phrase)
                batch["exemplar_boxes"].append(exemplar)
                batch["exemplar_labels"].append(torch.ones(len(exemplar), dtype=torch.long))
                batch["targets"].append(
                    {
                        "boxes": boxes,
                        "masks": masks,
                        "has_mask": has_mask,
                        "exhaustive": torch.tensor(bool(exhaustive)),
                    }
                )
                image_index.append(b)
                category_ids.append(cat_id)
        batch["query_image_index"] = torch.tensor(image_index, dtype=torch.long)
        batch["query_category_ids"] = torch.tensor(category_ids, dtype=torch.long)
        return batch


#: The default collate function: no exemplar prompts.
collate_concepts = ConceptCollator()
