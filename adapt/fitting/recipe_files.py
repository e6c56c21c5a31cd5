"""Where the shipped recipes live: the YAML files of the ``sam3_adapt.recipes`` package data."""

from __future__ import annotations

import os
from importlib import resources
from pathlib import Path

#: The package whose data files are the shipped recipes.
RECIPES_PACKAGE = "sam3_adapt.recipes"


def recipes_folder() -> Path:
    """The folder of the shipped recipe YAML files (``recipes/`` of a checkout, package data once installed).

    Raises:
        FileNotFoundError: If the recipe files were not installed with the package.
    """
    folder = Path(str(resources.files(RECIPES_PACKAGE)))
    if not (folder / "tiny-10shot.yaml").is_file():
        raise FileNotFoundError(f"no shipped recipes in {folder}: the package data was not installed")
    return folder


def recipe_names() -> list[str]:
    """Names of the shipped recipes (``tiny-10shot``, ``lora-10shot``, ...), sorted."""
    return sorted(path.stem for path in recipes_folder().glob("*.yaml"))


def recipe_path(recipe: str | os.PathLike) -> Path:
    """The YAML file of a recipe given by name (``lora-10shot``) or by path.

    A file that exists wins. Otherwise a name, or a path whose file name is a shipped recipe's
    (``recipes/lora-10shot.yaml`` from outside a checkout), is the shipped recipe.

    Raises:
        FileNotFoundError: If there is no such file or named recipe.
    """
    path = Path(recipe)
    if path.is_file():
        return path
    folder = recipes_folder()
    name = path.stem if path.suffix in (".yaml", ".yml") else path.name
    shipped = folder / f"{name}.yaml"
    if shipped.is_file() and (path.parent == Path(".") or path.parent.name == "recipes"):
        return shipped
    known = ", ".join(recipe_names())
    raise FileNotFoundError(f"no recipe {str(recipe)!r}: give a YAML file or one of {known}")
