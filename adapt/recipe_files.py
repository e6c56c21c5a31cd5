"""Where the shipped recipes live: ``recipes/`` of a checkout, or its YAML files installed as package data."""

from __future__ import annotations

import importlib
import os
from pathlib import Path


def recipes_folder() -> Path:
    """The folder of the shipped recipe YAML files (``recipes/``, installed as package data).

    Raises:
        FileNotFoundError: If the ``recipes`` files were not installed with the package.
    """
    try:
        module = importlib.import_module("recipes")
    except ImportError as error:
        raise FileNotFoundError("the shipped recipes are not installed (no 'recipes' package)") from error
    for folder in map(Path, module.__path__):
        if (folder / "tiny-10shot.yaml").is_file():
            return folder
    raise FileNotFoundError(f"no shipped recipes in {list(module.__path__)}")


def recipe_path(recipe: str | os.PathLike) -> Path:
    """The YAML file of a recipe given by name (``lora-10shot``) or by path.

    Raises:
        FileNotFoundError: If there is no such file or named recipe.
    """
    path = Path(recipe)
    if path.is_file():
        return path
    folder = recipes_folder()
    named = folder / f"{recipe}.yaml"
    if path.suffix not in (".yaml", ".yml") and named.is_file():
        return named
    known = ", ".join(sorted(p.stem for p in folder.glob("*.yaml")))
    raise FileNotFoundError(f"no recipe {str(recipe)!r}: give a YAML file or one of {known}")
