"""How each domain of the concept world looks: its backgrounds and how each of its objects is drawn.

The colours follow what was measured on the shipped tiny base (README, "What 10-shot adaptation of
the tiny base can learn"):

- Target objects are saturated: the tiny base has no features for grey on grey.
- Target objects are not yellow: the base reads every unseen phrase as nearly one text feature that
  fires on yellow, so a yellow target would measure that accident, not the adaptation.
- Look-alike siblings share a colour and differ in shape (round and dividing cells; scratches and
  rust spots), so the hard negatives of each concept tree are hard.
"""

from __future__ import annotations

import numpy as np
from scipy.ndimage import gaussian_filter, uniform_filter1d

from sam3_adapt.data_mix.synthetic.drawing import (
    Drawn,
    Look,
    grid,
    polygon,
    rotate,
    smooth_noise,
    wobbly_radius,
)

ANCHOR_COLOURS: dict[str, tuple[int, int, int]] = {
    "red": (215, 45, 45),
    "green": (45, 170, 70),
    "blue": (45, 85, 220),
    "yellow": (230, 205, 45),
}
ANCHOR_SHAPES: tuple[str, ...] = ("circle", "square", "triangle", "star")
MICROSCOPY_PHRASES: tuple[str, ...] = ("round cell", "elongated cell", "dividing cell", "stained nucleus")
INDUSTRIAL_PHRASES: tuple[str, ...] = ("scratch", "rust spot", "hex bolt", "washer")


# ---------------------------------------------------------------- anchor: coloured shapes


def anchor_background(rng: np.random.Generator, size: int) -> tuple[np.ndarray, Look]:
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
        texture = smooth_noise(rng, (size, size), rng.uniform(2, 8))[..., None]
        pixels = base + texture * rng.uniform(8, 18) * (1 + rng.uniform(-0.2, 0.2, 3))
    return pixels, {}


def anchor_object(rng: np.random.Generator, name: str, scale: float, look: Look) -> Drawn:
    """A flat-coloured, slightly shaded circle, square, triangle or five-point star."""
    colour, shape = name.split()
    r = rng.uniform(10, 28) * scale
    x, y = grid(1.25 * r, rng)
    tilt = rng.uniform(-0.3, 0.3)
    if shape == "circle":
        mask = x**2 + y**2 <= r**2
    elif shape == "square":
        mask = polygon(x, y, [r] * 4, np.pi / 4 + tilt)
    elif shape == "triangle":  # apex up: image y grows downwards
        mask = polygon(x, y, [1.15 * r] * 3, -np.pi / 2 + tilt)
    else:
        mask = polygon(x, y, [1.2 * r, 0.5 * r] * 5, -np.pi / 2 + tilt)
    light = rng.uniform(0, 2 * np.pi)
    shade = 1 + 0.08 * (x * np.cos(light) + y * np.sin(light)) / r
    rgb = np.asarray(ANCHOR_COLOURS[colour]) + rng.uniform(-15, 15, 3)
    return mask, rgb * shade[..., None] + rng.normal(0, 5, (*x.shape, 3))


# ---------------------------------------------------------------- microscopy: crowded fluorescent cells

#: Fluorophores as a colour camera renders them: GFP (green), mCherry (red) and DAPI (blue, a DNA stain).
GFP = np.array([60.0, 205.0, 90.0])
MCHERRY = np.array([225.0, 55.0, 60.0])
DAPI = np.array([60.0, 95.0, 235.0])


def microscopy_background(rng: np.random.Generator, size: int) -> tuple[np.ndarray, Look]:
    """A dark fluorescence field: uneven faint background glow and camera noise.

    The look holds the exposure (``gain``) that scales every cell of the image.
    """
    level = rng.uniform(15, 40)
    haze = smooth_noise(rng, (size, size), rng.uniform(15, 30))[..., None]
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


def microscopy_object(rng: np.random.Generator, name: str, scale: float, look: Look) -> Drawn:
    """A GFP round or dividing (figure-eight) cell, an mCherry elongated cell or a free DAPI nucleus."""
    angle = rng.uniform(0, np.pi)
    if name == "stained nucleus":
        r = rng.uniform(8, 12) * scale
        x, y = grid(1.4 * r, rng)
        radius = wobbly_radius(rng, x / r, y / r, 0.08)
        return _glow(rng, radius, 9 * radius, DAPI, look)  # a small dark nucleolus in the middle
    if name == "round cell":
        r = rng.uniform(12, 17) * scale
        a, b = r * rng.uniform(1, 1.15), r
        x, y = rotate(*grid(1.3 * a, rng), angle)
        radius = np.hypot(x / a, y / b)
        return _glow(rng, radius, radius / 0.42, GFP, look)
    if name == "elongated cell":
        a, b = rng.uniform(22, 34) * scale, rng.uniform(8, 11) * scale
        x, y = rotate(*grid(a + 1, rng), angle)
        nuclei = np.hypot(x / (0.3 * a), y / (0.55 * b))
        return _glow(rng, np.hypot(x / a, y / b), nuclei, MCHERRY, look)
    # dividing cell: two overlapping discs pinched at a waist, one nucleus in each lobe
    r = rng.uniform(11, 15) * scale
    half = r * rng.uniform(0.65, 0.8)
    x, y = rotate(*grid(half + r + 1, rng), angle)
    radius = np.minimum(np.hypot(x + half, y), np.hypot(x - half, y)) / r
    return _glow(rng, radius, radius / 0.38, GFP, look)


# ---------------------------------------------------------------- industrial: parts and defects on metal


def industrial_background(rng: np.random.Generator, size: int) -> tuple[np.ndarray, Look]:
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
        grey = 9 * streaks + 6 * smooth_noise(rng, (size, size), 20) + rng.normal(0, 3, (size, size))
    else:
        grain = gaussian_filter(rng.normal(0, 1, (size, size)), 0.7)
        grey = 10 * grain / grain.std() + 7 * smooth_noise(rng, (size, size), 12)
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


def industrial_object(rng: np.random.Generator, name: str, scale: float, look: Look) -> Drawn:
    """A scratch down to the red primer, a rust spot, a blue zinc hex bolt head or a green anodised washer."""
    angle = rng.uniform(0, 2 * np.pi)
    if name == "scratch":
        length, width = rng.uniform(45, 95) * scale, rng.uniform(8, 11) * scale
        x, y = rotate(*grid(length / 2 + width, rng), angle)
        across = np.hypot(np.maximum(np.abs(x) - length / 2, 0), y) / (width / 2)
        paint = (RED_PRIMER + rng.uniform(-12, 12, 3)) * (1 - 0.2 * across[..., None])
        return across <= 1, paint + rng.normal(0, 6, (*x.shape, 3))
    if name == "rust spot":
        r = rng.uniform(10, 20) * scale
        x, y = grid(1.6 * r, rng)
        mask = wobbly_radius(rng, x / r, y / r, 0.12) <= 1
        mottle = (smooth_noise(rng, x.shape, 1.5)[..., None] + 1) / 2
        rgb = np.array([180.0, 85.0, 35.0]) * (1 - mottle) + np.array([115.0, 50.0, 25.0]) * mottle
        return mask, rgb + rng.normal(0, 7, (*x.shape, 3))
    if name == "hex bolt":
        apothem = rng.uniform(12, 18) * scale
        corner = apothem / np.cos(np.pi / 6)
        x, y = grid(corner, rng)
        mask = polygon(x, y, [corner] * 6, angle)
        paint = _plated(rng, x, y, corner, BLUE_ZINC)
        shaft = np.hypot(x, y) <= 0.55 * apothem
        return mask, np.where(
            shaft[..., None], paint - 30 - 15 * (np.hypot(x, y) / apothem)[..., None], paint
        )
    outer = rng.uniform(13, 20) * scale
    inner = outer * rng.uniform(0.3, 0.4)
    x, y = grid(outer, rng)
    dist = np.hypot(x, y)
    ridge = 1 - np.abs(2 * (dist - inner) / (outer - inner) - 1)
    paint = _plated(rng, x, y, outer, GREEN_ANODISED) + 12 * ridge[..., None]
    return (dist <= outer) & (dist >= inner), paint
