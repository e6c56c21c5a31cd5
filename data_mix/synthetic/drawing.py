"""Drawing on a small patch around an object's centre: coordinates, polygons, blobs and smooth noise."""

from __future__ import annotations

import numpy as np
from scipy.ndimage import gaussian_filter

#: What a background leaves for the objects drawn on it (e.g. the light level), by name.
Look = dict[str, np.ndarray]
#: An object: its boolean mask and the RGB paint of its patch.
Drawn = tuple[np.ndarray, np.ndarray]


def grid(radius: float, rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
    """Pixel-centre offsets ``(x, y)`` from a random sub-pixel centre of a patch that holds ``radius``."""
    side = int(np.ceil(2 * radius)) + 3
    y, x = np.mgrid[0:side, 0:side] + 0.5 - side / 2
    dx, dy = rng.uniform(-0.5, 0.5, 2)
    return x - dx, y - dy


def rotate(x: np.ndarray, y: np.ndarray, angle: float) -> tuple[np.ndarray, np.ndarray]:
    """Coordinates in a frame turned by ``angle`` radians."""
    cos, sin = np.cos(angle), np.sin(angle)
    return x * cos + y * sin, -x * sin + y * cos


def polygon(x: np.ndarray, y: np.ndarray, radii: list[float], angle: float) -> np.ndarray:
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


def wobbly_radius(rng: np.random.Generator, x: np.ndarray, y: np.ndarray, amount: float) -> np.ndarray:
    """Distance from the centre divided by a randomly wobbling outline radius of 1 (an irregular blob)."""
    theta = np.arctan2(y, x)
    outline = np.ones_like(theta)
    for k in range(2, 6):
        outline += rng.uniform(0, amount) * np.cos(k * theta + rng.uniform(0, 2 * np.pi))
    return np.hypot(x, y) / outline


def smooth_noise(rng: np.random.Generator, shape: tuple[int, ...], sigma: float) -> np.ndarray:
    """Smooth zero-mean noise of unit standard deviation over a 2-D ``shape``."""
    field = gaussian_filter(rng.normal(size=shape), sigma, mode="wrap")
    return field / field.std()
