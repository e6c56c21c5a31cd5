"""The unlabelled pool: an image folder, or a COCO file whose labels are missing or partial."""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

from sam3_adapt.data_mix.images import ImageReadError, probe_image
from sam3_adapt.data_mix.samples import ConceptSample, Query

#: Image files a pool folder is read for.
IMAGE_SUFFIXES = frozenset({".png", ".jpg", ".jpeg", ".bmp", ".tif", ".tiff", ".webp"})


class PoolError(ValueError):
    """The pool or the phrase list cannot be used (the message names the file)."""


@dataclass
class PoolImage:
    """One image of the pool.

    Attributes:
        file_name: Path relative to the pool's image folder: the image's key in proposals and journal.
        path: The file.
        width: Width in pixels.
        height: Height in pixels.
    """

    file_name: str
    path: Path
    width: int
    height: int


def read_pool(
    pool: str | Path, image_dir: str | Path | None = None, on_error: Literal["raise", "skip"] = "skip"
) -> tuple[list[PoolImage], list[str]]:
    """The pool's readable images in a fixed order, and the files that could not be read.

    Args:
        pool: A folder of images (searched recursively), or a COCO JSON whose ``images`` list the pool
            (its labels, if any, are not read: proposals cover every image).
        image_dir: For a COCO file, the folder its ``file_name`` values are relative to (default: the
            file's folder).
        on_error: ``skip`` leaves out an unreadable image and names it in the returned list;
            ``raise`` stops at the first.

    Returns:
        ``(images, unreadable)``: images sorted by ``file_name``; ``unreadable`` holds one line per
        skipped file, ``"<file>: <why>"``.

    Raises:
        PoolError: If the pool does not exist, holds no image, or (``raise``) an image is unreadable.
    """
    pool = Path(pool)
    if pool.is_dir():
        root = pool
        names = sorted(
            str(p.relative_to(root))
            for p in root.rglob("*")
            if p.is_file() and p.suffix.lower() in IMAGE_SUFFIXES
        )
    elif pool.is_file():
        root = Path(image_dir) if image_dir is not None else pool.parent
        try:
            records = json.loads(pool.read_text())["images"]
            names = sorted({str(record["file_name"]) for record in records})
        except (ValueError, KeyError, TypeError) as error:
            raise PoolError(
                f"{pool}: not a COCO file with an 'images' list of file_name records ({error})"
            ) from error
    else:
        raise PoolError(f"{pool}: no such folder or COCO file")
    if not names:
        raise PoolError(f"{pool}: the pool holds no image ({', '.join(sorted(IMAGE_SUFFIXES))})")
    images, unreadable = [], []
    for name in names:
        path = root / name
        try:
            width, height = probe_image(path, where=f"pool {pool}")
        except (ImageReadError, OSError) as error:
            if on_error == "raise":
                raise PoolError(f"{path}: unreadable pool image ({error})") from error
            unreadable.append(f"{path}: {error}")
            continue
        images.append(PoolImage(name, path, width, height))
    if not images:
        raise PoolError(f"{pool}: none of its {len(names)} image(s) can be read; first: {unreadable[0]}")
    return images, unreadable


def read_phrases(phrases: str | list[str]) -> list[str]:
    """The phrase list: a list, or a text file with one phrase a line (``#`` starts a comment).

    Raises:
        PoolError: If the list is empty, or the file is missing.
    """
    if isinstance(phrases, str):
        path = Path(phrases)
        if not path.is_file():
            raise PoolError(f"{path}: no such phrase file (give a list of phrases or a text file)")
        lines = [line.split("#", 1)[0].strip() for line in path.read_text().splitlines()]
        found, where = [line for line in lines if line], str(path)
    else:
        found, where = [str(p).strip() for p in phrases if str(p).strip()], "the phrase list"
    found = list(dict.fromkeys(found))
    if not found:
        raise PoolError(
            f"{where}: no phrase to propose for (the domain's vocabulary and candidate negatives)"
        )
    return found


def pool_samples(images: list[PoolImage], phrases: list[str], first_id: int = 1) -> list[ConceptSample]:
    """Samples that ask every phrase of every image (as unlabelled queries), ids from ``first_id``."""
    return [
        ConceptSample(
            image_id=first_id + k,
            image_path=image.path,
            height=image.height,
            width=image.width,
            queries=[
                Query(phrase, c + 1, [], exhaustive=False, origin=f"pool {image.file_name}: {phrase!r}")
                for c, phrase in enumerate(phrases)
            ],
            source="pool",
        )
        for k, image in enumerate(images)
    ]
