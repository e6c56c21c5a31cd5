"""Where sam3-adapt keeps what it builds: the random tiny model, feature caches, the CLI's help texts."""

from __future__ import annotations

import os
from pathlib import Path


def cache_dir() -> Path:
    """The kit's cache folder: ``$SAM3_ADAPT_CACHE``, default ``~/.cache/sam3-adapt``."""
    return Path(os.environ.get("SAM3_ADAPT_CACHE", Path.home() / ".cache" / "sam3-adapt"))
