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

A crowded class reaches K in one image, so K instances can mean very few images (5 of 72 for
K=10 in a set of cell crops). ``num_images`` counts images instead: drawn uniformly (``per=None``),
N images holding each class (``per="class"``, the same greedy order with images in place of
instances), or N images of each source (``per="source"``). ``per="source"`` with ``k`` runs the
K-shot protocol within each source. A source is an image record's ``source_key`` field, or the
first folder of its ``file_name``.

Images without any (non-crowd) instance are the explicit negatives that teach the presence head to
say "not here"; the protocol above never takes one. ``negative_share`` adds them, drawn uniformly
by the same seed: that share of the split's images (``None``: the share the source set has).

The split keeps every annotation of the taken images (crowds included) and every category, so it
is as exhaustively labelled as the source and absent categories stay valid negatives. It is a COCO
file whose ``info.kshot`` records the mode, K or N, the seed, the source, the chosen image ids and
what was picked (instances and images per class, images per source, negatives), so it can be
reused and published.
"""

from __future__ import annotations

import json
import warnings
from collections import Counter, defaultdict
from pathlib import Path, PurePosixPath
from typing import Any, Literal

import numpy as np

from sam3_adapt.data_mix.readers.coco_checks import CocoFormatError, check_structure

Per = Literal["class", "source"]


def kshot_split(
    coco: dict[str, Any],
    *,
    k: int | None = None,
    num_images: int | None = None,
    seed: int = 0,
    source: str = "",
    per: Per | None = None,
    negative_share: float | None = None,
    source_key: str = "source",
) -> dict[str, Any]:
    """Choose a K-shot (``k``) or N-image (``num_images``) subset of a COCO dict.

    Args:
        coco: An exhaustively labelled COCO dict (``images``, ``annotations``, ``categories``).
        k: Instances per class (the module docstring gives the protocol).
        num_images: Number of images: in all (``per=None``), per class or per source.
        seed: Seed of the draw; the same seed gives the same split.
        source: Name of the source set, recorded in ``info.kshot``.
        per: ``"class"`` or ``"source"``: what ``k`` or ``num_images`` counts per. ``k`` is always per
            class; ``per="source"`` then applies it within each source.
        negative_share: Share of the split's images that have no instance (explicit negatives);
            ``None`` keeps the share of the source set, ``0`` takes none.
        source_key: Image field naming an image's source (else the first folder of its ``file_name``).

    Returns:
        The subset as a COCO dict: the chosen images in their original order, all their
        annotations, all categories, and ``info.kshot`` describing the draw and what was picked.

    Raises:
        ValueError: Unless exactly one of ``k`` and ``num_images`` is a positive number, if
            ``num_images`` exceeds the images there are to draw from, or on a bad ``per`` or share.
    """
    if (k is None) == (num_images is None) or (k or num_images or 0) < 1:
        raise ValueError(f"give exactly one of k and num_images, >= 1; got k={k}, num_images={num_images}")
    if per not in (None, "class", "source"):
        raise ValueError(f"per must be 'class', 'source' or null, got {per!r}")
    if negative_share is not None and not 0 <= negative_share < 1:
        raise ValueError(f"negative_share must be in [0, 1), got {negative_share}")
    rng = np.random.default_rng(seed)
    name = source or "the set"
    ids = [image["id"] for image in coco["images"]]
    per_image = _instances_per_image(coco)
    positive_ids = [i for i in ids if per_image[i]]
    groups = _by_source(coco, source_key) if per == "source" else {"": ids}
    chosen: set[int] = set()
    for group, members in groups.items():
        where = f"{name}, source {group!r}" if group else name
        with_instances = [i for i in members if per_image[i]]
        # The greedy protocol permutes every image (those without instances are never taken), so
        # a seed gives the split it gave before negatives could be added.
        if k is not None:
            chosen |= _greedy(coco, members, per_image, k, rng, where, count_images=False)
        elif per == "class":
            chosen |= _greedy(coco, members, per_image, num_images, rng, where, count_images=True)
        else:
            pool = with_instances if negative_share is not None or per == "source" else members
            if num_images > len(pool):
                raise ValueError(
                    f"{where} has {len(pool)} images to draw from, fewer than num_images={num_images}"
                )
            chosen |= {pool[i] for i in rng.choice(len(pool), size=num_images, replace=False)}
    if negative_share is None and (k is not None or per is not None):
        negative_share = (len(ids) - len(positive_ids)) / len(ids) if ids else 0.0
    empty = [i for i in ids if not per_image[i] and i not in chosen]
    wanted = 0 if not negative_share else round(negative_share * len(chosen) / (1 - negative_share))
    if wanted > len(empty):
        warnings.warn(f"{name}: {wanted} images without instances wanted, {len(empty)} there", stacklevel=2)
    chosen |= {empty[i] for i in rng.choice(len(empty), size=min(wanted, len(empty)), replace=False)}
    annotations = [a for a in coco["annotations"] if a.get("image_id") in chosen]
    mode = {"mode": "instances", "k": k} if k is not None else {"mode": "images", "num_images": num_images}
    info = {
        **mode,
        "per": per,
        "seed": seed,
        "source": source,
        "image_ids": [i for i in ids if i in chosen],
        **picked(coco, chosen, per_image, groups if per == "source" else None),
    }
    return {
        **coco,
        "info": {**(coco.get("info") or {}), "kshot": info},
        "images": [image for image in coco["images"] if image["id"] in chosen],
        "annotations": annotations,
    }


def picked(
    coco: dict[str, Any],
    chosen: set[int],
    per_image: dict[int, Counter[int]],
    groups: dict[str, list[int]] | None = None,
) -> dict[str, Any]:
    """What a split holds: instances and images per category, images without instances, per source.

    Returns:
        ``instances_per_category``, ``images_per_category`` (keys: category ids as strings),
        ``negative_images`` and, given ``groups``, ``images_per_source``.
    """
    instances: Counter[int] = Counter()
    images: Counter[int] = Counter()
    for image_id in chosen:
        instances.update(per_image[image_id])
        images.update(per_image[image_id].keys())
    report = {
        "instances_per_category": {str(c["id"]): instances[c["id"]] for c in coco["categories"]},
        "images_per_category": {str(c["id"]): images[c["id"]] for c in coco["categories"]},
        "negative_images": sum(not per_image[i] for i in chosen),
    }
    if groups is not None:
        report["images_per_source"] = {g: sum(i in chosen for i in members) for g, members in groups.items()}
    return report


def _instances_per_image(coco: dict[str, Any]) -> dict[int, Counter[int]]:
    per_image: dict[int, Counter[int]] = defaultdict(Counter)
    for ann in coco["annotations"]:
        if not ann.get("iscrowd", 0):
            per_image[ann["image_id"]][ann["category_id"]] += 1
    return per_image


def _by_source(coco: dict[str, Any], key: str) -> dict[str, list[int]]:
    """Image ids by source: the image's ``key`` field, else the first folder of its ``file_name``."""
    groups: dict[str, list[int]] = defaultdict(list)
    for image in coco["images"]:
        parts = PurePosixPath(str(image.get("file_name", ""))).parts
        groups[str(image.get(key, parts[0] if len(parts) > 1 else ""))].append(image["id"])
    return dict(groups)


def _greedy(
    coco: dict[str, Any],
    ids: list[int],
    per_image: dict[int, Counter[int]],
    k: int,
    rng: np.random.Generator,
    where: str,
    count_images: bool,
) -> set[int]:
    """The protocol of the module docstring over ``ids``: K instances (or K images) of each class."""
    totals: Counter[int] = Counter()
    for image_id in ids:
        totals.update({c: 1 for c in per_image[image_id]} if count_images else per_image[image_id])
    order = [ids[i] for i in rng.permutation(len(ids))]
    chosen: set[int] = set()
    have: Counter[int] = Counter()
    for cat_id in sorted((c["id"] for c in coco["categories"]), key=lambda c: (totals[c], c)):
        for image_id in order:
            if have[cat_id] >= k:
                break
            if image_id not in chosen and per_image[image_id][cat_id]:
                chosen.add(image_id)
                have.update({c: 1 for c in per_image[image_id]} if count_images else per_image[image_id])
    unit = "images" if count_images else "instances"
    short = {c["name"]: totals[c["id"]] for c in coco["categories"] if totals[c["id"]] < k}
    if short:
        warnings.warn(
            f"{where}: {len(short)} class(es) have fewer than {'num_images' if count_images else 'k'}={k} "
            f"{unit} in the whole set and get all of them: {short}",
            stacklevel=3,
        )
    return chosen


def make_kshot(
    data_json: str,
    out: str,
    k: int | None = None,
    num_images: int | None = None,
    seed: int = 0,
    per: Per | None = None,
    negative_share: float | None = None,
    source_key: str = "source",
) -> None:
    """Write a K-shot (or N-image) split of a COCO file, reproducible from its seed.

    K-shot draws whole images until every class has at least K instances (rarest classes first),
    as the ODinW / RF100-VL few-shot splits do; the split keeps all labels of those images.
    ``--num_images N --per class`` takes N images of each class instead (a crowded class reaches
    K instances in one image), ``--per source`` stratifies by source, and images without instances
    are kept as negatives (``--negative_share``; by default the source set's share). The output is
    a COCO file whose ``info.kshot`` holds the seed, the chosen image ids and what was picked; its
    ``file_name`` values are those of the source, so it uses the same image folder.

    Args:
        data_json: The source COCO file.
        out: Where to write the split's COCO file.
        k: Annotated instances per class.
        num_images: Number of images instead: in all, or per class or source with ``per``.
        seed: Seed of the draw.
        per: ``class`` or ``source``: stratify ``num_images`` (or ``k``, within each source).
        negative_share: Share of the split's images without instances; default: the source's share.
        source_key: Image field naming its source (else the first folder of ``file_name``).
    """
    path = Path(data_json)
    try:
        coco = json.loads(path.read_text())
    except (OSError, json.JSONDecodeError) as err:
        raise CocoFormatError(f"{path}: cannot read COCO JSON: {err}") from err
    check_structure(coco, path)
    split = kshot_split(
        coco,
        k=k,
        num_images=num_images,
        seed=seed,
        source=str(path),
        per=per,
        negative_share=negative_share,
        source_key=source_key,
    )
    Path(out).parent.mkdir(parents=True, exist_ok=True)
    Path(out).write_text(json.dumps(split) + "\n")
    print(
        f"wrote {out}: {len(split['images'])} of {len(coco['images'])} images, {len(split['annotations'])} "
        f"annotations, seed {seed}"
    )
    print(picked_table(coco, split["info"]["kshot"]))


def picked_table(coco: dict[str, Any], info: dict[str, Any]) -> str:
    """What a split picked, as lines of text: per class, per source, and the negatives."""
    lines = [f"{'class':<24} {'instances':>9} {'images':>7}"]
    for category in coco["categories"]:
        key = str(category["id"])
        lines.append(
            f"{category['name'][:24]:<24} {info['instances_per_category'][key]:>9} "
            f"{info['images_per_category'][key]:>7}"
        )
    for group, count in info.get("images_per_source", {}).items():
        lines.append(f"source {group or '(none)'}: {count} images")
    lines.append(f"images without instances (negatives): {info['negative_images']}")
    return "\n".join(lines)
