"""Where the shipped recipes live: the YAML files of the ``sam3_adapt.recipes`` package data."""

from __future__ import annotations

import os
import shutil
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


def recipes(copy: str | None = None, out: str | None = None) -> list[str]:
    """List the shipped recipes, or copy one out to edit it.

    Without ``copy`` it prints each recipe's name and the first line of its header comment. With
    ``copy`` it writes the recipe to ``out`` (default ``<name>.yaml`` in the current folder) and
    refuses to overwrite a file; ``--config <that file>`` then uses your edited copy.

    Args:
        copy: Name of the shipped recipe to copy (``tiny-10shot``, ``lora-10shot``, ...).
        out: Where to write the copy; default ``<name>.yaml``.

    Returns:
        The recipe names, or the path written as a one-element list.

    Raises:
        FileNotFoundError: If ``copy`` names no shipped recipe.
        FileExistsError: If ``out`` exists already.
    """
    if copy is None:
        for name in recipe_names():
            header = (recipes_folder() / f"{name}.yaml").read_text().splitlines()[0]
            print(f"{name:<16} {header.lstrip('# ')}")
        return recipe_names()
    source = recipes_folder() / f"{Path(copy).stem}.yaml"
    if not source.is_file():
        raise FileNotFoundError(f"no shipped recipe {copy!r}; choose one of {', '.join(recipe_names())}")
    target = Path(out or source.name)
    if target.exists():
        raise FileExistsError(f"{target} exists; choose another --out or remove it")
    target.parent.mkdir(parents=True, exist_ok=True)
    shutil.copyfile(source, target)
    print(f"wrote {target}: edit it, then `sam3-adapt fit --config {target}`")
    return [str(target)]
