"""A torch Dataset of concept samples: one augmented image and the targets of all its queries."""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any

import albumentations as A
import numpy as np
import torch
from torch.utils.data import DataLoader, Dataset

from sam3_adapt.data_mix.collate import ConceptCollator
from sam3_adapt.data_mix.images import read_rgb
from sam3_adapt.data_mix.rng import WorkerAwareRng
from sam3_adapt.data_mix.samples import ConceptSample, Instance, Query
from sam3_adapt.data_mix.transforms import Resize, eval_transform, to_pixel_values


class ConceptDataset(Dataset):
    """Images with their queries, transformed together, as tensors ready for `collate_concepts`.

    Each item is a dict with fixed keys:

    - ``pixel_values``: FloatTensor ``(3, S, S)``, RGB scaled to ``[0, 1]`` then normalised with
      mean = std = 0.5 (so values lie in ``[-1, 1]``); images of more than 8 bits are first mapped
      to 8 bits by the rule of `sam3_adapt.data_mix.images`.
    - ``image_id`` (int), ``orig_size`` (``(h, w)`` of the original image), ``source`` (str).
    - Per query, lists of equal length: ``phrases`` (str), ``category_ids`` (int), ``exhaustive``
      (bool), ``boxes`` (FloatTensor ``(n, 4)``, xyxy normalised to ``[0, 1]`` of the network input),
      ``masks`` (BoolTensor ``(n, S, S)``, all False for an object without a mask) and ``has_mask``
      (BoolTensor ``(n,)``).

    An object whose box vanishes under the transform is dropped with its mask; a query that loses
    every object is dropped (it is not a negative: the concept is in the image).

    Negatives are capped per image, drawn afresh each time an image is read: hard negatives
    (explicit, generated, mined; see `Query.is_hard_negative`) are kept before implicit ones, and
    random ones of each sort fill what is left.

    Args:
        samples: The images and their queries.
        transform: An albumentations pipeline from `sam3_adapt.data_mix.transforms` (image, ``bboxes`` in
            pixel ``pascal_voc`` with label field ``instance_index``, optional ``masks``).
        max_queries_per_image: If set, keep at most this many queries per image: positives first
            (a random subset if there are more), then negatives to fill the rest. Kept queries stay
            in their original order.
        seed: Seed of the query subsampling and the augmentation (see `WorkerAwareRng`).
        max_negatives_per_image: If set, keep at most this many negative queries per image.
        negatives_per_positive: If set, keep at most ``ceil(negatives_per_positive * P)`` negatives
            for an image with ``P`` positive queries; an image without positives counts as ``P = 1``
            so that it still teaches absence.
        target_masks: Decode the ground-truth masks; ``False`` gives every object ``has_mask``
            False (boxes only), which spares decoding full-size masks where no loss is computed.

    Attributes:
        rng: The random stream of query capping and augmentation (saved for exact resume).
    """

    def __init__(
        self,
        samples: Sequence[ConceptSample],
        transform: A.Compose,
        max_queries_per_image: int | None = None,
        seed: int = 0,
        max_negatives_per_image: int | None = None,
        negatives_per_positive: float | None = None,
        target_masks: bool = True,
    ) -> None:
        if max_queries_per_image is not None and max_queries_per_image < 1:
            raise ValueError(f"max_queries_per_image must be >= 1 or None, got {max_queries_per_image}")
        if max_negatives_per_image is not None and max_negatives_per_image < 0:
            raise ValueError(f"max_negatives_per_image must be >= 0 or None, got {max_negatives_per_image}")
        if negatives_per_positive is not None and not negatives_per_positive >= 0:
            raise ValueError(f"negatives_per_positive must be >= 0 or None, got {negatives_per_positive}")
        self.samples = list(samples)
        self.transform = transform
        self.max_queries_per_image = max_queries_per_image
        self.max_negatives_per_image = max_negatives_per_image
        self.negatives_per_positive = negatives_per_positive
        self.target_masks = target_masks
        self.rng = WorkerAwareRng(seed)

    def __len__(self) -> int:
        return len(self.samples)

    def __getitem__(self, index: int) -> dict[str, Any]:
        sample = self.samples[index]
        rng = self.rng.get()
        queries = self._select(sample.queries, rng)
        image = read_rgb(sample.image_path, where=f"{sample.source}: image id {sample.image_id}")

        instances: list[Instance] = [inst for q in queries for inst in q.instances]
        with_mask = [k for k, inst in enumerate(instances) if inst.has_mask and self.target_masks]
        inputs: dict[str, Any] = {
            "image": image,
            "bboxes": np.array([inst.box_xyxy for inst in instances], dtype=np.float32).reshape(-1, 4),
            "instance_index": list(range(len(instances))),
        }
        if with_mask:
            inputs["masks"] = [instances[k].mask_array().astype(np.uint8) for k in with_mask]
        self.transform.set_random_seed(int(rng.integers(2**31)))
        out = self.transform(**inputs)

        height, width = out["image"].shape[:2]
        scale = np.array([width, height, width, height], dtype=np.float32)
        boxes_out = np.asarray(out["bboxes"], dtype=np.float32).reshape(-1, 4) / scale
        mask_row = {k: row for row, k in enumerate(with_mask)}
        survivors = {int(k): row for row, k in enumerate(out["instance_index"])}

        item: dict[str, Any] = {
            "pixel_values": to_pixel_values(out["image"]),
            "image_id": sample.image_id,
            "orig_size": (sample.height, sample.width),
            "source": sample.source,
            **{key: [] for key in ("phrases", "category_ids", "exhaustive", "boxes", "masks", "has_mask")},
        }
        start = 0
        for query in queries:
            ids = [k for k in range(start, start + len(query.instances)) if k in survivors]
            start += len(query.instances)
            if query.instances and not ids:
                continue
            masks = torch.zeros((len(ids), height, width), dtype=torch.bool)
            for j, k in enumerate(ids):
                if k in mask_row:
                    masks[j] = torch.from_numpy(np.asarray(out["masks"][mask_row[k]]) > 0)
            item["phrases"].append(query.phrase)
            item["category_ids"].append(query.category_id)
            item["exhaustive"].append(query.exhaustive)
            item["boxes"].append(
                torch.from_numpy(boxes_out[[survivors[k] for k in ids]]).clamp(0, 1).reshape(-1, 4)
            )
            item["masks"].append(masks)
            item["has_mask"].append(torch.tensor([k in mask_row for k in ids], dtype=torch.bool))
        return item

    def negative_budget(self, positives: int) -> int | None:
        """Most negatives kept for an image with ``positives`` positive queries (``None``: no limit).

        ``max_queries_per_image`` is applied on top, after the positives.
        """
        limits = []
        if self.max_negatives_per_image is not None:
            limits.append(self.max_negatives_per_image)
        if self.negatives_per_positive is not None:
            # The small tolerance keeps e.g. 1.1 * 10 from rounding up to 12.
            limits.append(math.ceil(self.negatives_per_positive * max(positives, 1) - 1e-9))
        return min(limits) if limits else None

    def _select(self, queries: list[Query], rng: np.random.Generator) -> list[Query]:
        pos = [i for i, q in enumerate(queries) if not q.is_negative]
        neg = [i for i, q in enumerate(queries) if q.is_negative]
        cap = self.max_queries_per_image
        if cap is not None and len(pos) > cap:
            pos = rng.choice(pos, size=cap, replace=False).tolist()
        budget = self.negative_budget(len(pos))
        if cap is not None:
            budget = min(cap - len(pos), len(neg) if budget is None else budget)
        if budget is not None and budget < len(neg):
            hard = [i for i in neg if queries[i].is_hard_negative]
            if budget <= len(hard):
                neg = rng.choice(hard, size=budget, replace=False).tolist() if budget else []
            else:
                easy = [i for i in neg if not queries[i].is_hard_negative]
                neg = hard + rng.choice(easy, size=budget - len(hard), replace=False).tolist()
        return [queries[i] for i in sorted(pos + neg)]


def eval_loader(
    samples: Sequence[ConceptSample],
    image_size: int,
    batch_size: int = 4,
    num_workers: int = 0,
    seed: int = 0,
    target_masks: bool = True,
    resize: Resize = "letterbox",
) -> DataLoader:
    """Batches of samples as validation and inference see them: every query, no randomness, file order.

    The one evaluation loader of the kit: the data module's validation, test and predict loaders
    and `sam3_adapt.inference` use it.

    Args:
        samples: The images and their queries.
        image_size: Side of the square network input.
        batch_size: Images per batch.
        num_workers: DataLoader worker processes.
        seed: Seed of the loader (no randomness at evaluation; kept for worker seeding).
        target_masks: Decode ground-truth masks (for validation losses); prediction needs none.
        resize: How images become the square input (`sam3_adapt.data_mix.transforms.eval_transform`).

    Returns:
        A DataLoader of `sam3_adapt.data_mix.batch.ConceptBatch` dicts.
    """
    return DataLoader(
        ConceptDataset(samples, eval_transform(image_size, resize), seed=seed, target_masks=target_masks),
        batch_size=batch_size,
        shuffle=False,
        num_workers=num_workers,
        collate_fn=ConceptCollator(),
        generator=torch.Generator().manual_seed(seed),
    )
