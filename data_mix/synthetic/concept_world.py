"""A seeded synthetic concept world: an anchor domain to pretrain on and two target domains to adapt to.

The ``anchor`` domain is the general world a tiny base model is pretrained on: saturated coloured
shapes (``"red circle"``, ``"yellow star"``...) on muted, varied backgrounds, each object also
named by its shape alone (``"circle"``), so the vocabulary holds a general phrase over its specific
ones, as SA-Co's does.

The target domains are new concepts with a new look that the base has never seen: ``microscopy``
(crowded fluorescent cells on a dark field: GFP-labelled round and dividing cells, mCherry-labelled
elongated cells, free DAPI-stained nuclei) and ``industrial`` (scratches through the grey coat down
to the red primer, orange-brown rust spots, blue zinc hex bolts and green anodised washers on brushed
or grainy metal). Their vocabularies share no word with the anchor's. How each looks, and why
(measured on the shipped tiny base; README, "What 10-shot adaptation of the tiny base can learn"),
is in `sam3_adapt.data_mix.synthetic.looks`.

Every image holds 1-3 of its domain's categories, chosen so that each category appears in about the
same share of images; labels are exhaustive, so `sam3_adapt.data_mix.readers.coco.read_coco` turns every other
category into a negative query, including look-alikes present in the same image (hard negatives).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

import numpy as np
import yaml
from scipy.ndimage import binary_dilation

from sam3_adapt.data_mix.synthetic import looks
from sam3_adapt.data_mix.synthetic.drawing import Drawn, Look
from sam3_adapt.data_mix.synthetic.looks import (
    ANCHOR_COLOURS,
    ANCHOR_SHAPES,
    INDUSTRIAL_PHRASES,
    MICROSCOPY_PHRASES,
)
from sam3_adapt.data_mix.synthetic.shapes import coco_annotation, save_image, write_coco_json

Domain = Literal["anchor", "microscopy", "industrial"]
DOMAINS: tuple[str, ...] = ("anchor", "microscopy", "industrial")

#: Each target domain's concepts grouped under a parent: the other children of a present concept's
#: parent are its hard negatives ("rust spot" where only scratches are), as a user's concept tree.
CONCEPT_TREES: dict[str, dict[str, list[str]]] = {
    "microscopy": {"cell": ["round cell", "elongated cell", "dividing cell"], "nucleus": ["stained nucleus"]},
    "industrial": {"defect": ["scratch", "rust spot"], "part": ["hex bolt", "washer"]},
}

#: The file `write_world` puts beside a target domain's ``annotations.json``.
CONCEPT_TREE_FILE = "concept_tree.yaml"

# Object sizes are given for 168-pixel images and scale with the image side.
REFERENCE_SIZE = 168


@dataclass(frozen=True)
class _Spec:
    """How one domain draws its images: vocabulary, crowding, background and objects."""

    phrases: tuple[str, ...]  # what the generator draws; one per object
    count: tuple[int, int]  # instances per image, inclusive
    gap: int  # pixels kept free around each mask; 0 lets objects touch
    cluster: float  # chance that an object is first tried right beside an earlier one
    background: Callable[[np.random.Generator, int], tuple[np.ndarray, Look]]
    draw: Callable[[np.random.Generator, str, float, Look], Drawn]
    broader: tuple[str, ...] = ()  # extra phrases that each cover several drawn ones ("circle")

    @property
    def categories(self) -> tuple[str, ...]:
        """Every phrase of the domain: the drawn ones, then the broader ones."""
        return self.phrases + self.broader

    def covering(self, phrase: str) -> tuple[str, ...]:
        """The broader phrases that also name an object drawn as ``phrase`` (its last word)."""
        return tuple(b for b in self.broader if phrase.split()[-1] == b)


_SPECS: dict[str, _Spec] = {
    "anchor": _Spec(
        phrases=tuple(f"{colour} {shape}" for colour in ANCHOR_COLOURS for shape in ANCHOR_SHAPES),
        count=(1, 8),
        gap=2,
        cluster=0.0,
        background=looks.anchor_background,
        draw=looks.anchor_object,
        broader=ANCHOR_SHAPES,
    ),
    "microscopy": _Spec(
        MICROSCOPY_PHRASES, (3, 10), 2, 0.5, looks.microscopy_background, looks.microscopy_object
    ),
    "industrial": _Spec(
        INDUSTRIAL_PHRASES, (1, 6), 2, 0.0, looks.industrial_background, looks.industrial_object
    ),
}


# ---------------------------------------------------------------- writing


def _spec(domain: str) -> _Spec:
    if domain not in _SPECS:
        raise ValueError(f"unknown domain {domain!r}; choose one of {DOMAINS}")
    return _SPECS[domain]


def domain_categories(domain: Domain) -> list[dict[str, object]]:
    """The COCO categories of a domain: ids ``1..n`` and the domain's noun phrases as names.

    Args:
        domain: ``"anchor"`` (16 colour-shape phrases, then the 4 shapes on their own),
            ``"microscopy"`` or ``"industrial"`` (4 each).

    Returns:
        ``[{"id", "name", "supercategory"}]`` with the domain as supercategory.
    """
    phrases = _spec(domain).categories
    return [{"id": i + 1, "name": name, "supercategory": domain} for i, name in enumerate(phrases)]


def _place(
    rng: np.random.Generator, blocked: np.ndarray, mask: np.ndarray, near: tuple[int, int] | None
) -> tuple[int, int] | None:
    """A top-left corner where ``mask`` misses every ``blocked`` pixel, or ``None`` after 60 tries.

    With ``near`` (a pixel), the first 30 tries put the mask's centre within its own size of that
    pixel, so objects crowd into touching clusters; the rest are uniform over the image.
    """
    h, w = mask.shape
    size = blocked.shape[0]
    for attempt in range(60):
        if near is not None and attempt < 30:
            shift = rng.integers(-np.array([h, w]), np.array([h, w]), endpoint=True)
            y0, x0 = (int(v) for v in np.asarray(near) + shift - (h // 2, w // 2))
            if not (0 <= y0 <= size - h and 0 <= x0 <= size - w):
                continue
        else:
            y0, x0 = (int(v) for v in rng.integers(0, (size - h + 1, size - w + 1)))
        if not (blocked[y0 : y0 + h, x0 : x0 + w] & mask).any():
            return y0, x0
    return None


def _render(
    rng: np.random.Generator, spec: _Spec, size: int, usage: np.ndarray
) -> tuple[np.ndarray, list[tuple[int, np.ndarray]]]:
    """Draw one image; return its pixels and ``(category index, full-size mask)`` per placed object.

    ``usage`` counts how many images each category was chosen for so far; the least used categories
    (ties broken at random) are chosen, so every phrase appears in about the same share of images.
    """
    scale = size / REFERENCE_SIZE
    pixels, look = spec.background(rng, size)
    count = int(rng.integers(spec.count[0], spec.count[1] + 1))
    kinds = min(int(rng.choice([1, 2, 3], p=[0.3, 0.4, 0.3])), count)
    chosen = np.argsort(usage + 0.5 * rng.random(len(usage)), kind="stable")[:kinds]
    usage[chosen] += 1
    # One object of every chosen category is drawn first, while the image is empty.
    labels = [*chosen, *rng.choice(chosen, count - kinds)]
    blocked = np.zeros((size, size), dtype=bool)
    objects, centres = [], []
    for label in labels:
        mask, paint = spec.draw(rng, spec.phrases[label], scale, look)
        rows, cols = np.nonzero(mask)
        top, left = rows.min(), cols.min()
        mask = mask[top : rows.max() + 1, left : cols.max() + 1]
        paint = paint[top : rows.max() + 1, left : cols.max() + 1]
        near = None
        if objects and rng.random() < spec.cluster:
            near = centres[int(rng.integers(len(centres)))]
        spot = _place(rng, blocked, mask, near)
        if spot is None:
            continue
        full = np.zeros((size, size), dtype=bool)
        full[spot[0] : spot[0] + mask.shape[0], spot[1] : spot[1] + mask.shape[1]] = mask
        centres.append((spot[0] + mask.shape[0] // 2, spot[1] + mask.shape[1] // 2))
        pixels[full] = paint[mask]
        blocked |= binary_dilation(full, np.ones((3, 3), bool), iterations=spec.gap) if spec.gap else full
        objects.append((int(label), full))
    return pixels, objects


def write_world(
    folder: str | Path, domain: Domain, num_images: int, seed: int = 0, image_size: int = 168
) -> tuple[Path, Path]:
    """Write a seeded synthetic COCO set of one domain of the concept world.

    Each image holds 1-3 of the domain's categories (the least used so far, so phrases stay balanced)
    and a number of non-overlapping objects (anchor 1-8, microscopy 3-10 crowded into clusters, industrial
    1-6). Labels are exhaustive: every object is annotated with an exact compressed-RLE mask, its
    tight box and its pixel area, once per phrase that names it (an anchor "red circle" is also a
    "circle"). A target domain also gets ``concept_tree.yaml`` (`CONCEPT_TREES`), the file a user
    passes as ``concept_tree`` to train and evaluate with tree siblings as hard negatives. The same
    arguments give byte-identical files.

    Args:
        folder: Output folder; gets ``annotations.json`` and ``images/`` (``0000.png``, ...).
        domain: ``"anchor"``, ``"microscopy"`` or ``"industrial"``.
        num_images: Number of images (at least 1).
        seed: Non-negative seed; the domain is mixed in, so domains with the same seed differ.
        image_size: Side of the square images in pixels (at least 64); object sizes scale with it
            (at 168 pixels every object is at least about 8 pixels across).

    Returns:
        ``(json_path, image_dir)``.
    """
    spec = _spec(domain)
    if image_size < 64:
        raise ValueError(f"image_size must be at least 64, got {image_size}")
    if num_images < 1 or seed < 0:
        raise ValueError(f"num_images must be positive and seed non-negative, got {num_images} and {seed}")
    folder = Path(folder)
    image_dir = folder / "images"
    image_dir.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng([seed, DOMAINS.index(domain)])
    usage = np.zeros(len(spec.phrases))
    images, annotations = [], []
    category_id = {phrase: i + 1 for i, phrase in enumerate(spec.categories)}
    for index in range(num_images):
        pixels, objects = _render(rng, spec, image_size, usage)
        for label, mask in objects:
            phrase = spec.phrases[label]
            for name in (phrase, *spec.covering(phrase)):
                annotations.append(coco_annotation(mask, len(annotations) + 1, index + 1, category_id[name]))
        images.append(save_image(pixels, image_dir, index))
    if domain in CONCEPT_TREES:
        tree = yaml.safe_dump(CONCEPT_TREES[domain], sort_keys=False)
        header = "# parent: [children]; a present concept's siblings are its hard negatives\n"
        (folder / CONCEPT_TREE_FILE).write_text(header + tree)
    return write_coco_json(folder, images, annotations, domain_categories(domain)), image_dir


def concept_tree_file(json_path: str | Path) -> Path | None:
    """The concept tree `write_world` wrote beside ``json_path`` (a target domain's set), else ``None``."""
    tree = Path(json_path).parent / CONCEPT_TREE_FILE
    return tree if tree.is_file() else None


def write_demo_worlds(
    out: str | Path,
    seed: int = 0,
    image_size: int = 168,
    anchor_train: int = 1000,
    anchor_val: int = 100,
    target_shots: int = 10,
    target_val: int = 100,
) -> dict[str, tuple[Path, Path]]:
    """Write the demo's data: the anchor world to pretrain on and a few shots of each target domain.

    Train splits use seed ``2 * seed`` and validation splits ``2 * seed + 1``, so no validation image
    repeats a training image.

    Args:
        out: Output folder; gets ``anchor/{train,val}``, ``microscopy/{train,val}`` and
            ``industrial/{train,val}``, each a `write_world` set.
        seed: Non-negative base seed.
        image_size: Side of the square images in pixels.
        anchor_train: Images of the anchor training set (pretraining).
        anchor_val: Held-out anchor images, to measure what adaptation forgets (100 or more keeps
            the AP estimate steady).
        target_shots: Labelled training images of each target domain (the few shots).
        target_val: Held-out images of each target domain.

    Returns:
        ``{"<domain>/<split>": (json_path, image_dir)}`` for the six sets.
    """
    sizes = {"anchor": (anchor_train, anchor_val)}
    sizes.update({domain: (target_shots, target_val) for domain in DOMAINS[1:]})
    paths = {}
    for domain, (train, val) in sizes.items():
        for split, count, split_seed in (("train", train, 2 * seed), ("val", val, 2 * seed + 1)):
            paths[f"{domain}/{split}"] = write_world(
                Path(out) / domain / split, domain, count, seed=split_seed, image_size=image_size
            )
    return paths
