"""A seeded synthetic concept world: an anchor domain to pretrain on and two target domains to adapt to.

The ``anchor`` domain is the general world a tiny base model is pretrained on: saturated coloured
shapes (``"red circle"``, ``"yellow star"``...) on muted, varied backgrounds, each object also
named by its shape alone (``"circle"``), so the vocabulary holds a general phrase over its specific
ones, as SA-Co's does.

The target domains are new concepts with a new look that the base has never seen: ``microscopy``
(crowded fluorescent cells on a dark field: GFP-labelled round and dividing cells, mCherry-labelled
elongated cells, free DAPI-stained nuclei) and ``industrial`` (scratches through the grey coat down
to the red primer, orange-brown rust spots, blue zinc hex bolts and green anodised washers on brushed
or grainy metal). Their vocabularies share no word with the anchor's. Their colours follow what was
measured on the shipped tiny base (README, "What 10-shot adaptation of the tiny base can learn"):

- Target objects are saturated. A ViT this small, pretrained for an hour on saturated shapes, has no
  features for grey cells on grey slides, grey scratches or dark-brown rust: they stayed near AP 0
  after adaptation.
- Target objects are not yellow. The base reads every phrase it never saw as nearly one text
  feature, and that feature fires on yellow objects, less on orange ones (an unseen word in place
  of "yellow triangle" scores 0.59 AP on anchor images; brass bolts scored 0.47 and rust spots 0.11
  before any adaptation), so a yellow target would measure that accident, not the adaptation.
- Look-alike siblings share a colour and differ in shape (round and dividing cells; scratches and
  rust spots), so the hard negatives of each concept tree are hard.

Every image holds 1-3 of its domain's categories, chosen so that each category appears in about the
same share of images; labels are exhaustive, so `data_mix.coco.read_coco` turns every other category
into a negative query, including look-alikes present in the same image (hard negatives).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

import numpy as np
import yaml
from scipy.ndimage import binary_dilation, gaussian_filter, uniform_filter1d

from data_mix.shapes import coco_annotation, save_image, write_coco_json

Domain = Literal["anchor", "microscopy", "industrial"]
DOMAINS: tuple[str, ...] = ("anchor", "microscopy", "industrial")

ANCHOR_COLOURS: dict[str, tuple[int, int, int]] = {
    "red": (215, 45, 45),
    "green": (45, 170, 70),
    "blue": (45, 85, 220),
    "yellow": (230, 205, 45),
}
ANCHOR_SHAPES: tuple[str, ...] = ("circle", "square", "triangle", "star")
MICROSCOPY_PHRASES: tuple[str, ...] = ("round cell", "elongated cell", "dividing cell", "stained nucleus")
INDUSTRIAL_PHRASES: tuple[str, ...] = ("scratch", "rust spot", "hex bolt", "washer")

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

Look = dict[str, np.ndarray]
Drawn = tuple[np.ndarray, np.ndarray]


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


# ---------------------------------------------------------------- geometry on a patch around the centre


def _grid(radius: float, rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
    """Pixel-centre offsets ``(x, y)`` from a random sub-pixel centre of a patch that holds ``radius``."""
    side = int(np.ceil(2 * radius)) + 3
    y, x = np.mgrid[0:side, 0:side] + 0.5 - side / 2
    dx, dy = rng.uniform(-0.5, 0.5, 2)
    return x - dx, y - dy


def _rotate(x: np.ndarray, y: np.ndarray, angle: float) -> tuple[np.ndarray, np.ndarray]:
    """Coordinates in a frame turned by ``angle`` radians."""
    cos, sin = np.cos(angle), np.sin(angle)
    return x * cos + y * sin, -x * sin + y * cos


def _polygon(x: np.ndarray, y: np.ndarray, radii: list[float], angle: float) -> np.ndarray:
    """Mask of the polygon whose vertex ``k`` lies at ``radii[k]`` and angle ``angle + 2 pi k / n``.

    The polygon is star-shaped about the centre, so it is the union of the fan triangles
    (centre, vertex k, vertex k+1); a pixel is inside when its centre is inside one of them.
    """
    n = len(radii)
    theta = angle + 2 * np.pi * np.arange(n) / n
    vx, vy = np.asarray(radii) * np.cos(theta), np.asarray(radii) * np.sin(theta)
    inside = np.zeros(x.shape, dtype=bool)
    for k in range(n):
        ax, ay, bx, by = vx[k], vy[k], vx[(k + 1) % n], vy[(k + 1) % n]
        inside |= (
            (ax * y - ay * x >= 0)
            & ((bx - ax) * (y - ay) - (by - ay) * (x - ax) >= 0)
            & (x * by - y * bx >= 0)
        )
    return inside


def _wobbly_radius(rng: np.random.Generator, x: np.ndarray, y: np.ndarray, amount: float) -> np.ndarray:
    """Distance from the centre divided by a randomly wobbling outline radius of 1 (an irregular blob)."""
    theta = np.arctan2(y, x)
    outline = np.ones_like(theta)
    for k in range(2, 6):
        outline += rng.uniform(0, amount) * np.cos(k * theta + rng.uniform(0, 2 * np.pi))
    return np.hypot(x, y) / outline


def _noise(rng: np.random.Generator, shape: tuple[int, ...], sigma: float) -> np.ndarray:
    """Smooth zero-mean noise of unit standard deviation over a 2-D ``shape``."""
    field = gaussian_filter(rng.normal(size=shape), sigma, mode="wrap")
    return field / field.std()


# ---------------------------------------------------------------- anchor: coloured shapes


def _anchor_background(rng: np.random.Generator, size: int) -> tuple[np.ndarray, Look]:
    """A muted, lightly tinted background: a smooth gradient, mild noise or a soft texture."""
    base = rng.uniform(70, 190) + rng.uniform(-20, 20, 3)
    kind = int(rng.integers(3))
    if kind == 0:
        y, x = np.mgrid[0:size, 0:size] / size
        angle = rng.uniform(0, 2 * np.pi)
        ramp = (x * np.cos(angle) + y * np.sin(angle))[..., None]
        pixels = base + (ramp - ramp.mean()) * rng.uniform(-50, 50, 3) + rng.normal(0, 3, (size, size, 3))
    elif kind == 1:
        pixels = base + rng.normal(0, rng.uniform(5, 14), (size, size, 3))
    else:
        texture = _noise(rng, (size, size), rng.uniform(2, 8))[..., None]
        pixels = base + texture * rng.uniform(8, 18) * (1 + rng.uniform(-0.2, 0.2, 3))
    return pixels, {}


def _anchor_object(rng: np.random.Generator, name: str, scale: float, look: Look) -> Drawn:
    """A flat-coloured, slightly shaded circle, square, triangle or five-point star."""
    colour, shape = name.split()
    r = rng.uniform(10, 28) * scale
    x, y = _grid(1.25 * r, rng)
    tilt = rng.uniform(-0.3, 0.3)
    if shape == "circle":
        mask = x**2 + y**2 <= r**2
    elif shape == "square":
        mask = _polygon(x, y, [r] * 4, np.pi / 4 + tilt)
    elif shape == "triangle":  # apex up: image y grows downwards
        mask = _polygon(x, y, [1.15 * r] * 3, -np.pi / 2 + tilt)
    else:
        mask = _polygon(x, y, [1.2 * r, 0.5 * r] * 5, -np.pi / 2 + tilt)
    light = rng.uniform(0, 2 * np.pi)
    shade = 1 + 0.08 * (x * np.cos(light) + y * np.sin(light)) / r
    rgb = np.asarray(ANCHOR_COLOURS[colour]) + rng.uniform(-15, 15, 3)
    return mask, rgb * shade[..., None] + rng.normal(0, 5, (*x.shape, 3))


# ---------------------------------------------------------------- microscopy: crowded fluorescent cells

#: Fluorophores as a colour camera renders them: GFP (green), mCherry (red) and DAPI (blue, a DNA stain).
GFP = np.array([60.0, 205.0, 90.0])
MCHERRY = np.array([225.0, 55.0, 60.0])
DAPI = np.array([60.0, 95.0, 235.0])


def _microscopy_background(rng: np.random.Generator, size: int) -> tuple[np.ndarray, Look]:
    """A dark fluorescence field: uneven faint background glow and camera noise.

    The look holds the exposure (``gain``) that scales every cell of the image.
    """
    level = rng.uniform(15, 40)
    haze = _noise(rng, (size, size), rng.uniform(15, 30))[..., None]
    pixels = level + 5 * haze * np.array([0.7, 1.0, 0.8]) + rng.normal(0, 3, (size, size, 3))
    return pixels, {"gain": np.array([rng.uniform(0.8, 1.05)])}


def _glow(
    rng: np.random.Generator, radius: np.ndarray, nuclei: np.ndarray, colour: np.ndarray, look: Look
) -> Drawn:
    """Paint a fluorescent object from its normalised radius field (1 on the outline).

    It is brightest in the middle and dims towards its edge; where ``nuclei <= 1`` it is darker (a
    cell's nuclei exclude its cytoplasmic label, a nucleus's nucleolus holds little DNA to stain).
    """
    mask = radius <= 1
    edge = np.clip(radius, 0, 1)[..., None] ** 2
    paint = colour * look["gain"] * (0.72 + 0.33 * (1 - edge))
    paint = np.where((nuclei <= 1)[..., None], 0.65 * paint, paint)
    return mask, paint + rng.normal(0, 6, (*radius.shape, 3))


def _microscopy_object(rng: np.random.Generator, name: str, scale: float, look: Look) -> Drawn:
    """A GFP round or dividing (figure-eight) cell, an mCherry elongated cell or a free DAPI nucleus."""
    angle = rng.uniform(0, np.pi)
    if name == "stained nucleus":
        r = rng.uniform(8, 12) * scale
        x, y = _grid(1.4 * r, rng)
        radius = _wobbly_radius(rng, x / r, y / r, 0.08)
        return _glow(rng, radius, 9 * radius, DAPI, look)  # a small dark nucleolus in the middle
    if name == "round cell":
        r = rng.uniform(12, 17) * scale
        a, b = r * rng.uniform(1, 1.15), r
        x, y = _rotate(*_grid(1.3 * a, rng), angle)
        radius = np.hypot(x / a, y / b)
        return _glow(rng, radius, radius / 0.42, GFP, look)
    if name == "elongated cell":
        a, b = rng.uniform(22, 34) * scale, rng.uniform(8, 11) * scale
        x, y = _rotate(*_grid(a + 1, rng), angle)
        nuclei = np.hypot(x / (0.3 * a), y / (0.55 * b))
        return _glow(rng, np.hypot(x / a, y / b), nuclei, MCHERRY, look)
    # dividing cell: two overlapping discs pinched at a waist, one nucleus in each lobe
    r = rng.uniform(11, 15) * scale
    half = r * rng.uniform(0.65, 0.8)
    x, y = _rotate(*_grid(half + r + 1, rng), angle)
    radius = np.minimum(np.hypot(x + half, y), np.hypot(x - half, y)) / r
    return _glow(rng, radius, radius / 0.38, GFP, look)


# ---------------------------------------------------------------- industrial: parts and defects on metal


def _industrial_background(rng: np.random.Generator, size: int) -> tuple[np.ndarray, Look]:
    """Brushed (streaked along one axis) or grainy grey metal with a faint tint."""
    level = rng.uniform(95, 150)
    base = level + rng.uniform(-6, 6, 3)
    if rng.random() < 0.5:
        streaks = uniform_filter1d(
            rng.normal(size=(size, size)), int(rng.integers(15, 40)), axis=1, mode="wrap"
        )
        streaks = streaks / streaks.std()
        if rng.random() < 0.5:
            streaks = streaks.T
        grey = 9 * streaks + 6 * _noise(rng, (size, size), 20) + rng.normal(0, 3, (size, size))
    else:
        grain = gaussian_filter(rng.normal(0, 1, (size, size)), 0.7)
        grey = 10 * grain / grain.std() + 7 * _noise(rng, (size, size), 12)
    return base + grey[..., None], {"level": np.array([level])}


#: The red-oxide primer that a scratch through the grey top coat lays bare.
RED_PRIMER = np.array([185.0, 60.0, 45.0])
#: Finishes of the parts: blue-passivated zinc bolts and green anodised aluminium washers.
BLUE_ZINC = np.array([80.0, 120.0, 215.0])
GREEN_ANODISED = np.array([60.0, 165.0, 85.0])


def _plated(
    rng: np.random.Generator, x: np.ndarray, y: np.ndarray, extent: float, finish: np.ndarray
) -> np.ndarray:
    """A metal finish over a patch, linearly shaded as if lit from one side."""
    light = rng.uniform(0, 2 * np.pi)
    shade = 22 * (x * np.cos(light) + y * np.sin(light)) / extent
    rgb = finish + rng.uniform(-12, 12, 3)
    return rgb + shade[..., None] + rng.normal(0, 4, (*x.shape, 3))


def _industrial_object(rng: np.random.Generator, name: str, scale: float, look: Look) -> Drawn:
    """A scratch down to the red primer, a rust spot, a blue zinc hex bolt head or a green anodised washer."""
    angle = rng.uniform(0, 2 * np.pi)
    if name == "scratch":
        length, width = rng.uniform(45, 95) * scale, rng.uniform(8, 11) * scale
        x, y = _rotate(*_grid(length / 2 + width, rng), angle)
        across = np.hypot(np.maximum(np.abs(x) - length / 2, 0), y) / (width / 2)
        paint = (RED_PRIMER + rng.uniform(-12, 12, 3)) * (1 - 0.2 * across[..., None])
        return across <= 1, paint + rng.normal(0, 6, (*x.shape, 3))
    if name == "rust spot":
        r = rng.uniform(10, 20) * scale
        x, y = _grid(1.6 * r, rng)
        mask = _wobbly_radius(rng, x / r, y / r, 0.12) <= 1
        mottle = (_noise(rng, x.shape, 1.5)[..., None] + 1) / 2
        rgb = np.array([180.0, 85.0, 35.0]) * (1 - mottle) + np.array([115.0, 50.0, 25.0]) * mottle
        return mask, rgb + rng.normal(0, 7, (*x.shape, 3))
    if name == "hex bolt":
        apothem = rng.uniform(12, 18) * scale
        corner = apothem / np.cos(np.pi / 6)
        x, y = _grid(corner, rng)
        mask = _polygon(x, y, [corner] * 6, angle)
        paint = _plated(rng, x, y, corner, BLUE_ZINC)
        shaft = np.hypot(x, y) <= 0.55 * apothem
        return mask, np.where(
            shaft[..., None], paint - 30 - 15 * (np.hypot(x, y) / apothem)[..., None], paint
        )
    outer = rng.uniform(13, 20) * scale
    inner = outer * rng.uniform(0.3, 0.4)
    x, y = _grid(outer, rng)
    dist = np.hypot(x, y)
    ridge = 1 - np.abs(2 * (dist - inner) / (outer - inner) - 1)
    paint = _plated(rng, x, y, outer, GREEN_ANODISED) + 12 * ridge[..., None]
    return (dist <= outer) & (dist >= inner), paint


_SPECS: dict[str, _Spec] = {
    "anchor": _Spec(
        phrases=tuple(f"{colour} {shape}" for colour in ANCHOR_COLOURS for shape in ANCHOR_SHAPES),
        count=(1, 8),
        gap=2,
        cluster=0.0,
        background=_anchor_background,
        draw=_anchor_object,
        broader=ANCHOR_SHAPES,
    ),
    "microscopy": _Spec(MICROSCOPY_PHRASES, (3, 10), 2, 0.5, _microscopy_background, _microscopy_object),
    "industrial": _Spec(INDUSTRIAL_PHRASES, (1, 6), 2, 0.0, _industrial_background, _industrial_object),
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
