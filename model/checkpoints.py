"""Where a SAM 3 checkpoint is: built-in short names to folders; hub ids and paths as they are."""

from __future__ import annotations

import os
import shutil
import tempfile
from importlib import resources
from pathlib import Path

from sam3_adapt.model.cache import cache_dir
from sam3_adapt.model.tiny import write_tiny_random_sam3

#: Short name of a randomly initialised tiny SAM 3 (seeded): every code path, no pretrained knowledge.
TINY_RANDOM = "tiny-random"
#: Short name of the tiny SAM 3 pretrained on the concept world's anchor data, shipped in the package.
TINY = "tiny"
_TINY_RANDOM_VERSION = "v1"


def resolve_checkpoint(name_or_path: str | os.PathLike) -> str:
    """Turn a short name into the folder it stands for; leave hub ids and paths as they are.

    Args:
        name_or_path: ``"tiny"``, ``"tiny-random"``, a hub id such as ``"facebook/sam3"``, or a local
            folder in Hugging Face format.

    Returns:
        What ``from_pretrained`` should be given.

    Raises:
        FileNotFoundError: If ``"tiny"`` is asked for but no pretrained tiny model ships with this
            installation, or a path that looks local does not exist.
    """
    name = str(name_or_path)
    if name == TINY_RANDOM:
        return str(_ensure_tiny_random())
    if name == TINY:
        shipped = resources.files("sam3_adapt.model") / "assets" / "tiny-sam3"
        if not shipped.is_dir():
            raise FileNotFoundError(
                "the pretrained tiny SAM 3 ('tiny') is not shipped in this installation yet; "
                f"use '{TINY_RANDOM}' (random weights) or a hub id / local folder"
            )
        return str(shipped)
    path = Path(name).expanduser()
    if path.exists():
        return str(path)
    # A hub id is "name" or "org/name"; anything else is meant as a local path.
    if name.startswith((".", "/", "~")) or name.count("/") > 1:
        raise FileNotFoundError(f"checkpoint folder {name!r} does not exist")
    return name


def _ensure_tiny_random() -> Path:
    """Write the seeded random tiny model once into the cache; later calls reuse it."""
    folder = cache_dir() / f"{TINY_RANDOM}-{_TINY_RANDOM_VERSION}"
    if (folder / "model.safetensors").is_file():
        return folder
    folder.parent.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(dir=folder.parent, prefix=".staging-"))
    write_tiny_random_sam3(staging, seed=0)
    try:
        staging.rename(folder)
    except OSError:  # another process finished first: its copy is identical
        shutil.rmtree(staging, ignore_errors=True)
    return folder
