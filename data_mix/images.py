"""The one image reader of the kit: any PNG/TIFF/JPEG bit depth to ``(H, W, 3)`` uint8 RGB, with checks.

8-bit images (grey, palette, RGB, RGBA, CMYK, ...) are converted to RGB as Pillow does. Images with
more than 8 bits per sample (16-bit, 12- or 10-bit in a 16-bit container, 32-bit integer, float)
carry no display range of their own, so one rule maps them, the one microscopy segmenters use
(csbdeep/StarDist, cellpose): a linear stretch that sends the 1st percentile of all the image's
values (channels together, so colours keep their balance) to 0 and the 99.8th to 255, clipped.
Non-finite float values count as the low end. An image whose percentiles coincide is black. The
rule is the same for training, evaluation and prediction, so a 16-bit image and the 8-bit image
this rule makes from it give the same predictions.

Files larger than a pixel limit are refused before they are decoded (`max_pixels`: 100 Mpx unless
the environment variable ``SAM3_ADAPT_MAX_PIXELS`` says otherwise), since decoding a huge image and
the full-size masks predicted on it can exhaust memory.
"""

from __future__ import annotations

import os
import warnings
from pathlib import Path

import cv2
import numpy as np
from PIL import Image

#: Default pixel limit (width x height) of an image file.
DEFAULT_MAX_PIXELS = 100_000_000
#: Percentiles of the stretch applied to images of more than 8 bits per sample.
LOW_PERCENTILE, HIGH_PERCENTILE = 1.0, 99.8
#: Bytes at the end of a file searched for its end marker (trailing metadata may follow it).
_TAIL = 4096
#: What `read_image` takes: a Pillow image, an image file's path, or an ``(H, W, 3)`` uint8 array.
ImageLike = Image.Image | str | os.PathLike | np.ndarray


class ImageReadError(ValueError):
    """An image file cannot be read (missing, empty, not an image, cut short, corrupt or too large).

    The message names the file, and the record that lists it when known.
    """


def max_pixels() -> int:
    """The pixel limit: ``SAM3_ADAPT_MAX_PIXELS`` (e.g. ``2e8``) if set, else `DEFAULT_MAX_PIXELS`.

    Raises:
        ValueError: If the variable is not a positive number.
    """
    text = os.environ.get("SAM3_ADAPT_MAX_PIXELS")
    if text is None:
        return DEFAULT_MAX_PIXELS
    try:
        limit = int(float(text))
    except ValueError:
        limit = 0
    if limit <= 0:
        raise ValueError(f"SAM3_ADAPT_MAX_PIXELS must be a positive number of pixels, got {text!r}")
    return limit


def probe_image(path: str | os.PathLike, *, where: str = "", limit: int | None = None) -> tuple[int, int]:
    """Check an image file cheaply and return its ``(width, height)``.

    Reads the header and the last few KB: an empty file, a file that is not an image, one over the
    pixel limit, and a PNG, JPEG or TIFF whose end is missing (a cut-short copy) are found here,
    without decoding. Only when the end marker is missing is the file decoded, to tell a cut-short
    file from one with trailing data. Corruption inside the pixel data is found by `read_rgb`.

    Args:
        path: The image file.
        where: The record that lists the file (e.g. ``"ann.json: image id 3"``), for messages.
        limit: Pixel limit; default `max_pixels`.

    Returns:
        The width and height.

    Raises:
        ImageReadError: If the file cannot be read or is over the limit.
    """
    path = Path(path)
    with _opened(path, where) as im:
        size = im.size
        _check_limit(path, where, size, limit)
        if not _ends_well(path, im.format):
            try:
                im.load()
            except (OSError, ValueError, SyntaxError) as err:
                raise _error(path, where, f"the file is cut short or corrupt ({err})") from err
    return size


def read_rgb(path: str | os.PathLike, *, where: str = "", limit: int | None = None) -> np.ndarray:
    """Read an image file as ``(H, W, 3)`` uint8 RGB by the module's rule for its bit depth.

    Args:
        path: The image file.
        where: The record that lists the file, for messages.
        limit: Pixel limit; default `max_pixels`.

    Returns:
        The pixels.

    Raises:
        ImageReadError: If the file cannot be read or decoded, or is over the limit.
    """
    path = Path(path)
    with _opened(path, where) as im:
        _check_limit(path, where, im.size, limit)
        try:
            if _is_16bit_colour(im):
                return _colour16(path, where)
            return pil_to_rgb8(im)
        except (OSError, ValueError, SyntaxError) as err:
            raise _error(path, where, f"cannot decode the image ({err})") from err


def read_image(image: ImageLike) -> np.ndarray:
    """An image as an ``(H, W, 3)`` uint8 RGB array.

    Files and PIL images of more than 8 bits per sample (16-bit microscopy, say) are mapped to 8 bits
    by the one rule of this module, as in training and evaluation.

    Args:
        image: A PIL image, the path of an image file, or an ``(H, W, 3)`` uint8 array.

    Returns:
        The array.

    Raises:
        ImageReadError: If a file cannot be read or is over the pixel limit (a ``ValueError``).
        ValueError: If an array is not ``(H, W, 3)`` uint8.
    """
    if isinstance(image, (str, os.PathLike)):
        return read_rgb(image)
    if isinstance(image, Image.Image):
        return pil_to_rgb8(image)
    array = np.asarray(image)
    if array.ndim != 3 or array.shape[2] != 3 or array.dtype != np.uint8:
        raise ValueError(f"an image array must be (H, W, 3) uint8 RGB, got {array.shape} {array.dtype}")
    return array


def pil_to_rgb8(image: Image.Image) -> np.ndarray:
    """A Pillow image as ``(H, W, 3)`` uint8 RGB by the module's rule (high bit depths stretched).

    Pillow reduces 16-bit colour files to 8 bits on opening; read such files with `read_rgb`, which
    reads their full depth.
    """
    if image.mode.startswith(("I", "F")):
        return np.repeat(stretch_to_uint8(np.asarray(image))[..., None], 3, axis=2)
    return np.array(image.convert("RGB"))


def stretch_to_uint8(values: np.ndarray) -> np.ndarray:
    """Map an array of more than 8 bits per sample to uint8 by the percentile rule of the module.

    Args:
        values: Integer or float samples, any shape.

    Returns:
        The uint8 array of the same shape.
    """
    if values.dtype == np.uint8:
        return values
    if values.dtype.kind in "ui" and values.dtype.itemsize <= 2:
        # A histogram gives the same percentiles as np.percentile (linear interpolation between
        # ranks) for 16-bit data, far faster than sorting 10^7 values.
        base = int(values.min())
        cumulative = np.cumsum(np.bincount((values.astype(np.int64) - base).ravel()))
        ranks = np.array([LOW_PERCENTILE, HIGH_PERCENTILE]) / 100 * (values.size - 1)
        below = np.floor(ranks)
        at = np.searchsorted(cumulative, below, side="right")
        after = np.searchsorted(cumulative, np.minimum(below + 1, values.size - 1), side="right")
        low, high = base + at + (ranks - below) * (after - at)
        data = values.astype(np.float32)
    else:
        data = values.astype(np.float64)
        finite = data[np.isfinite(data)]
        low, high = np.percentile(finite, [LOW_PERCENTILE, HIGH_PERCENTILE]) if finite.size else (0.0, 0.0)
        data = np.where(np.isfinite(data), data, low)
    if high <= low:
        return np.zeros(values.shape, dtype=np.uint8)
    scaled = (data - low) * (255.0 / (high - low))
    return np.clip(np.rint(scaled), 0, 255).astype(np.uint8)


class _opened:
    """``Image.open`` whose failures become `ImageReadError` naming the file."""

    def __init__(self, path: Path, where: str) -> None:
        self.path, self.where, self.image = path, where, None

    def __enter__(self) -> Image.Image:
        if not self.path.is_file():
            raise _error(self.path, self.where, "image file not found")
        if self.path.stat().st_size == 0:
            raise _error(self.path, self.where, "the image file is empty (0 bytes)")
        try:
            with warnings.catch_warnings():
                # The kit applies its own pixel limit; Pillow's warning below its hard limit is noise.
                warnings.simplefilter("ignore", Image.DecompressionBombWarning)
                self.image = Image.open(self.path)
        except Image.DecompressionBombError as err:
            raise _error(
                self.path, self.where, f"{err} (Pillow's own limit, PIL.Image.MAX_IMAGE_PIXELS)"
            ) from err
        except (OSError, ValueError, SyntaxError) as err:
            raise _error(self.path, self.where, f"not a readable image ({err})") from err
        return self.image

    def __exit__(self, *exc: object) -> None:
        if self.image is not None:
            self.image.close()


def _check_limit(path: Path, where: str, size: tuple[int, int], limit: int | None) -> None:
    limit = max_pixels() if limit is None else limit
    if size[0] * size[1] > limit:
        raise _error(
            path,
            where,
            f"{size[0]}x{size[1]} = {size[0] * size[1] / 1e6:.1f} Mpx is over the limit of "
            f"{limit / 1e6:g} Mpx; downscale or tile the image, or raise SAM3_ADAPT_MAX_PIXELS",
        )


def _ends_well(path: Path, fmt: str | None) -> bool:
    """Whether the file's end marker (PNG IEND, JPEG EOI) or TIFF strip data lies within the file."""
    size = path.stat().st_size
    if fmt in ("PNG", "JPEG", "MPO"):
        with path.open("rb") as file:
            file.seek(max(0, size - _TAIL))
            tail = file.read()
        return (b"IEND" if fmt == "PNG" else b"\xff\xd9") in tail
    if fmt == "TIFF":
        with Image.open(path) as im:
            tags = im.tag_v2
            offsets = tags.get(273) or tags.get(324) or ()
            counts = tags.get(279) or tags.get(325) or ()
            ends = [o + c for o, c in zip(offsets, counts)]
        return all(end <= size for end in ends)
    return True


def _is_16bit_colour(im: Image.Image) -> bool:
    return im.mode in ("RGB", "RGBA") and any(";16" in str(tile.args) for tile in im.tile)


def _colour16(path: Path, where: str) -> np.ndarray:
    """A 16-bit colour file at its full depth (OpenCV keeps it; Pillow keeps only the high byte)."""
    decoded = cv2.imdecode(np.fromfile(path, dtype=np.uint8), cv2.IMREAD_UNCHANGED)
    if decoded is None or decoded.ndim != 3:
        raise _error(path, where, "cannot decode the 16-bit colour image")
    rgb = cv2.cvtColor(decoded[..., :3], cv2.COLOR_BGR2RGB)
    return stretch_to_uint8(rgb)


def _error(path: Path, where: str, what: str) -> ImageReadError:
    prefix = f"{where}: " if where else ""
    return ImageReadError(f"{prefix}{path}: {what}")
