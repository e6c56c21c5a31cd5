"""Few-shot splits of a COCO set: K instances per class, or N images, chosen reproducibly by a seed.

K-shot follows the few-shot detection protocol used for the ODinW and RF100-VL 10-shot splits:
whole images are drawn, keeping all of their labels, until every class has at least K annotated
instances. Precisely, with ``rng = numpy.random.default_rng(seed)``:

1. The images are put in the order ``rng.permutation`` gives.
2. Classes are visited from the rarest (fewest non-crowd instances in the whole set; ties by
   category id) to the most common, so that rare classes choose their images first.
3. For each class, images containing it are taken in that order, skipping those already taken,
   until the taken images hold at least K of its instances. Instances of every class in a taken
   image count, so common classes often reach K without taking an image of their own.
4. A class with fewer than K instances in the whole set gets all of its images, with a warning.

The split keeps every annotation of the taken images (crowds included) and every category, so it
is as exhaustively labelled as the source and absent categories stay valid negatives. "N images"
mode draws N images uniformly without replacement. Either way the split is a COCO file whose
``info.kshot`` records the mode, K or N, the seed, the source and the chosen image ids, so it can
be reused and published.
"""

from __future__ import annotations

import json
import warnings
from collections import Counter, defaultdict
from pathlib import Path
from typing import Any

import numpy as np

from sam3_adapt.data_mix.readers.coco_checks import CocoFormatError, check_structure


def kshot_split(
    coco: dict[str, Any],
    *,
    k: int | None = None,
    num_images: int | None = None,
    seed: int = 0,
    source: str = "",
) -> dict[str, Any]:
    """Choose a K-shot (``k``) or N-image (``num_images``) subset of a COCO dict.

    Args:
        coco: An exhaustively labelled COCO dict (``images``, ``annotations``, ``categories``).
        k: Instances per class (the module docstring gives the protocol).
        num_images: Number of images, drawn uniformly.
        seed: Seed of the draw; the same seed gives the same split.
        source: Name of the source set, recorded in ``info.kshot``.

    Returns:
        The subset as a COCO dict: the chosen images in their original order, all their
        annotations, all categories, and ``info.kshot`` describing the draw.

    Raises:
        ValueError: Unless exactly one of ``k`` and ``num_images`` is a positive number, or if
            ``num_images`` exceeds the number of images.
    """
    if (k is None) == (num_images is None) or (k or num_images or 0) < 1:
        raise ValueError(f"give exactly one of k and num_images, >= 1; got k={k}, num_images={num_images}")
    rng = np.random.default_rng(seed)
    ids = [image["id"] for image in coco["images"]]
    if num_images is not None:
        if num_images > len(ids):
            raise ValueError(
                f"{source or 'the set'} has {len(ids)} images, fewer than num_images={num_images}"
            )
        chosen = {ids[i] for i in rng.choice(len(ids), size=num_images, replace=False)}
    else:
        chosen = _greedy_kshot(coco, ids, k, rng, source)
    annotations = [a for a in coco["annotations"] if a.get("image_id") in chosen]
    counts = Counter(a["category_id"] for a in annotations if not a.get("iscrowd", 0))
    mode = {"mode": "instances", "k": k} if k is not None else {"mode": "images", "num_images": num_images}
    info = {
        **mode,
        "seed": seed,
        "source": source,
        "image_ids": [i for i in ids if i in chosen],
        "instances_per_category": {str(c["id"]): counts[c["id"]] for c in coco["categories"]},
    }
    return {
        **coco,
        "info": {**(coco.get("info") or {}), "kshot": info},
        "images": [image for image in coco["images"] if image["id"] in chosen],
        "annotations": annotations,
    }


def _greedy_kshot(
    coco: dict[str, Any], ids: list[int], k: int, rng: np.random.Generator, source: str
) -> set[int]:
    per_image: dict[int, Counter[int]] = defaultdict(Counter)
    for ann in coco["annotations"]:
        if not ann.get("iscrowd", 0):
            per_image[ann["image_id"]][ann["category_id"]] += 1
    totals = Counter()
    for counts in per_image.values():
        totals.update(counts)
    order = [ids[i] for i in rng.permutation(len(ids))]
    chosen: set[int] = set()
    have: Counter[int] = Counter()
    for cat_id in sorted((c["id"] for c in coco["categories"]), key=lambda c: (totals[c], c)):
        for image_id in order:
            if have[cat_id] >= k:
                break
            if image_id not in chosen and per_image[image_id][cat_id]:
                chosen.add(image_id)
                have.update(per_image[image_id])
    short = {c["name"]: totals[c["id"]] for c in coco["categories"] if totals[c["id"]] < k}
    if short:
        warnings.warn(
            f"{source or 'the set'}: {len(short)} class(es) have fewer than k={k} instances in the whole set "
            f"and get all of them: {short}",
            stacklevel=3,
        )
    return chosen


def make_kshot(
    data_json: str,
    out: str,
    k: int | None = None,
    num_images: int | None = None,
    seed: int = 0,
) -> None:
    """Write a K-shot (or N-image) split of a COCO file, reproducible from its seed.

    K-shot draws whole images until every class has at least K instances (rarest classes first),
    as the ODinW / RF100-VL few-shot splits do; the split keeps all labels of those images. The
    output is a COCO file whose ``info.kshot`` holds the seed and the chosen image ids; its
    ``file_name`` values are those of the source, so it uses the same image folder.

    Args:
        data_json: The source COCO file.
        out: Where to write the split's COCO file.
        k: Annotated instances per class.
        num_images: Number of images instead (draw uniformly); give ``k`` or this.
        seed: Seed of the draw.
    """
    path = Path(data_json)
    try:
        coco = json.loads(path.read_text())
    except (OSError, json.JSONDecodeError) as err:
        raise CocoFormatError(f"{path}: cannot read COCO JSON: {err}") from err
    check_structure(coco, path)
    split = kshot_split(coco, k=k, num_images=num_images, seed=seed, source=str(path))
    Path(out).parent.mkdir(parents=True, exist_ok=True)
    Path(out).write_text(json.dumps(split) + "\n")
    info = split["info"]["kshot"]
    print(
        f"wrote {out}: {len(split['images'])} of {len(coco['images'])} images, {len(split['annotations'])} "
        f"annotations, seed {seed}; instances per category {info['instances_per_category']}"
    )
