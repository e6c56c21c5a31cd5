"""Recipes as data for ``sam3-adapt tune``: set dotted keys, write files, check them with ``fit``'s parser."""

from __future__ import annotations

import copy
import difflib
import io
import os
from collections.abc import Mapping
from contextlib import redirect_stderr, redirect_stdout
from pathlib import Path
from typing import Any

import yaml

from sam3_adapt.fitting.lightning_cli import lightning_cli
from sam3_adapt.tune.space import SearchSpace


def load_recipe(path: str | Path) -> dict[str, Any]:
    """Read a recipe YAML (the ``--config`` of ``sam3-adapt fit``) as a dict.

    Raises:
        FileNotFoundError: If the file does not exist.
        ValueError: If it does not hold a mapping.
    """
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"recipe {path} does not exist")
    recipe = yaml.safe_load(path.read_text())
    if not isinstance(recipe, dict):
        raise ValueError(f"recipe {path} must hold a mapping of model:/data:/trainer: keys, got {recipe!r}")
    return recipe


def with_values(recipe: Mapping[str, Any], values: Mapping[str, Any]) -> dict[str, Any]:
    """A copy of ``recipe`` with each dotted key of ``values`` set, creating sections as needed.

    Raises:
        ValueError: If a key passes through a value that is not a section (``model.lr_detector.x``).
    """
    result = copy.deepcopy(dict(recipe))
    for key, value in values.items():
        node = result
        *sections, last = key.split(".")
        for depth, name in enumerate(sections):
            child = node.setdefault(name, {})
            if child is None:
                child = node[name] = {}
            if not isinstance(child, dict):
                prefix = ".".join(sections[: depth + 1])
                raise ValueError(f"recipe key {key!r}: {prefix} is {child!r}, not a section")
            node = child
        node[last] = copy.deepcopy(value)
    return result


def write_recipe(recipe: Mapping[str, Any], path: str | Path, header: str = "") -> Path:
    """Write ``recipe`` as YAML (atomically, so parallel workers never read half a file).

    Args:
        recipe: The recipe dict.
        path: Output file.
        header: Comment lines put above the keys (without ``#``).

    Returns:
        The path written.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    comments = "".join(f"# {line}\n" for line in header.splitlines())
    text = comments + yaml.safe_dump(dict(recipe), sort_keys=False, default_flow_style=False)
    partial = path.with_name(f".{path.name}.{os.getpid()}")
    partial.write_text(text)
    partial.replace(path)
    return path


def parse_recipe(recipe: Mapping[str, Any], source: str) -> dict[str, Any]:
    """The full configuration ``sam3-adapt fit`` makes of ``recipe``, without building anything.

    It runs the real LightningCLI parser (``--print_config``), so every key of the result is a
    constructor argument of the task, the data module or the trainer, with defaults filled in.

    Args:
        recipe: The recipe dict.
        source: What the recipe is, for error messages (e.g. its file).

    Returns:
        The parsed configuration as a nested dict.

    Raises:
        ValueError: With the parser's message, if the parser rejects the recipe.
    """
    printed, errors = io.StringIO(), io.StringIO()
    try:
        with redirect_stdout(printed), redirect_stderr(errors):
            lightning_cli(["--config", yaml.safe_dump(dict(recipe)), "--print_config"], run=False)
    except SystemExit as stop:
        if stop.code == 0:
            return yaml.safe_load(printed.getvalue())
        lines = errors.getvalue().splitlines()
        start = max((i for i, line in enumerate(lines) if line.startswith("error:")), default=0)
        message = " ".join(line.strip() for line in lines[start:]).removeprefix("error: ")
        raise ValueError(f"{source} is rejected by the recipe parser: {message}") from None
    raise RuntimeError("the recipe parser did not stop after --print_config")


def lookup(config: Mapping[str, Any], key: str) -> Any:
    """The value of dotted ``key`` in a parsed configuration.

    Raises:
        KeyError: Naming the key, the first missing part and the nearest known keys.
    """
    node: Any = config
    parts = key.split(".")
    for depth, name in enumerate(parts):
        prefix = ".".join(parts[:depth]) or "the top level"
        if not isinstance(node, Mapping):
            raise KeyError(f"{key!r} is not a recipe key: {prefix} is {node!r}, not a section")
        if name not in node:
            near = difflib.get_close_matches(name, [str(k) for k in node], n=3)
            hint = f"; did you mean {', '.join(near)}?" if near else ""
            raise KeyError(f"{key!r} is not a recipe key: no {name!r} under {prefix}{hint}")
        node = node[name]
    return node


def check_space(
    recipe: Mapping[str, Any], space: SearchSpace, source: str, fixed: Mapping[str, Any] | None = None
) -> dict[str, Any]:
    """Check, before any trial, that every searched key is a key of the recipe and takes its values.

    The recipe with ``fixed`` applied must parse; every searched key must exist in its parsed
    configuration (so a typo is caught even under a free-form mapping such as ``model.lora``); and
    the recipe must still parse with the key set to each end of its range or to each choice.

    Args:
        recipe: The base recipe dict.
        space: The search space.
        source: The recipe's file, for error messages.
        fixed: Dotted keys set the same in every trial.

    Returns:
        The parsed configuration of the base recipe with ``fixed`` applied.

    Raises:
        ValueError: Naming the key, for an unknown key or a value the recipe parser rejects.
    """
    base = with_values(recipe, fixed or {})
    config = parse_recipe(base, f"{source} with the overrides" if fixed else source)
    for distribution in space.distributions:
        try:
            lookup(config, distribution.key)
        except KeyError as error:
            raise ValueError(f"search key {error.args[0]} (recipe {source})") from None
        for value in distribution.edges():
            parse_recipe(
                with_values(base, {distribution.key: value}), f"search key {distribution.key!r} = {value!r}"
            )
    return config
