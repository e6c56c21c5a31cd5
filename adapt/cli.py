"""The ``sam3-adapt`` command: the LightningCLI verbs plus the kit's own verbs, each a typed function.

A verb's module is imported only when that verb runs (or prints its ``--help``), so the overview,
``--version`` and a mistyped verb answer at once, without torch or Lightning. Nothing imports this
module: it is the top of the kit.
"""

from __future__ import annotations

import difflib
import sys
from importlib import import_module
from pathlib import Path
from typing import NamedTuple


class Verb(NamedTuple):
    """One of the kit's own verbs: where its function lives and what it does (for the overview)."""

    module: str
    function: str
    summary: str


LIGHTNING_VERBS = ("fit", "validate", "test", "predict")

#: The kit's own verbs. ``summary`` is the first line of the function's docstring (a test keeps
#: them equal), written here so that the overview needs no import.
EXTRA_VERBS: dict[str, Verb] = {
    "demo": Verb(
        "sam3_adapt.jobs.demo",
        "demo",
        "Adapt the built-in tiny SAM 3 to a target domain of the concept world and show what changed.",
    ),
    "ablation": Verb(
        "sam3_adapt.jobs.ablation",
        "ablation",
        "Adapt with {no mixing, anchor mixing} x {positives only, hard negatives} and compare.",
    ),
    "evaluate": Verb(
        "sam3_adapt.evaluation.run",
        "evaluate",
        "Evaluate a SAM 3 model (optionally adapted) on a labelled COCO set and write a report.",
    ),
    "make-kshot": Verb(
        "sam3_adapt.data_mix.kshot",
        "make_kshot",
        "Write a K-shot (or N-image) split of a COCO file, reproducible from its seed.",
    ),
    "make-shapes": Verb(
        "sam3_adapt.jobs.make_shapes",
        "make_shapes",
        "Write a small synthetic COCO set of coloured shapes (train.json, val.json and images/).",
    ),
    "mine-negatives": Verb(
        "sam3_adapt.jobs.mine_negatives",
        "mine_negatives",
        "Mine hard negatives: candidate phrases the model fires on where they are not labelled.",
    ),
    "export": Verb(
        "sam3_adapt.release.export",
        "export",
        "Write the trained model of a ``sam3-adapt fit`` checkpoint in a form others can load.",
    ),
    "pretrain-tiny": Verb(
        "sam3_adapt.jobs.pretrain_tiny",
        "pretrain_tiny",
        "Train a tiny SAM 3 from random weights on the anchor world and write it to ``out``.",
    ),
    "publish": Verb(
        "sam3_adapt.release.publish",
        "publish",
        "Turn a finished fit into a Hub-ready folder and, given a repo id, upload it to the Hugging Face "
        "Hub.",
    ),
    "tune": Verb(
        "sam3_adapt.tune.run",
        "tune",
        "Search a recipe's settings with Optuna and write the best one as a ready recipe.",
    ),
    "upload": Verb(
        "sam3_adapt.release.upload",
        "upload",
        "Upload a published folder to a Hub model repo, creating the repo and the branch when missing.",
    ),
}


def verb_function(verb: str):
    """The function behind one of :data:`EXTRA_VERBS` (imports its module)."""
    entry = EXTRA_VERBS[verb]
    return getattr(import_module(entry.module), entry.function)


def main(argv: list[str] | None = None) -> None:
    """Entry point of ``sam3-adapt``: ``fit | validate | test | predict`` (Lightning) or a kit verb."""
    args = list(sys.argv[1:] if argv is None else argv)
    if not args or args[0] in ("-h", "--help"):
        print(overview())
        if not args:
            sys.exit(2)
        return
    verb = args[0]
    if verb in ("-V", "--version"):
        print(f"sam3-adapt {version()}")
        return
    if verb in EXTRA_VERBS:
        from jsonargparse import CLI

        CLI(verb_function(verb), args=args[1:], prog=f"sam3-adapt {verb}", as_positional=False)
        return
    if verb not in LIGHTNING_VERBS:
        print(unknown_verb(verb), file=sys.stderr)
        sys.exit(2)
    try:
        args = with_recipe_files(args)
    except FileNotFoundError as error:
        print(f"sam3-adapt {verb}: {error}", file=sys.stderr)
        sys.exit(2)
    from sam3_adapt.fitting.lightning_cli import lightning_cli

    lightning_cli(args)


def with_recipe_files(args: list[str]) -> list[str]:
    """``args`` with every ``--config`` recipe name (or ``recipes/<name>.yaml``) turned into its file.

    A file that exists wins, so a user's own ``recipes/tiny-cpu.yaml`` is read rather than the shipped
    one; an inline YAML document (``--config 'model: {...}'``) is left as it is.

    Raises:
        FileNotFoundError: If a ``--config`` value is neither a file, inline YAML, nor a shipped recipe.
    """
    from sam3_adapt.fitting.recipe_files import recipe_path

    out = list(args)
    for i, arg in enumerate(out):
        if arg == "--config" and i + 1 < len(out):
            index, value, prefix = i + 1, out[i + 1], ""
        elif arg.startswith("--config="):
            index, value, prefix = i, arg.removeprefix("--config="), "--config="
        else:
            continue
        if "\n" in value or ":" in value.split("/")[-1] or Path(value).is_file():
            continue
        out[index] = prefix + str(recipe_path(value))
    return out


def version() -> str:
    """The installed version of sam3-adapt."""
    from importlib.metadata import PackageNotFoundError
    from importlib.metadata import version as installed

    try:
        return installed("sam3-adapt")
    except PackageNotFoundError:
        return "unknown (not installed)"


def all_verbs() -> list[str]:
    """Every verb, Lightning's first."""
    return [*LIGHTNING_VERBS, *EXTRA_VERBS]


def unknown_verb(verb: str) -> str:
    """The message for a verb that does not exist: the nearest verb, and every verb."""
    near = difflib.get_close_matches(verb, all_verbs(), n=1)
    hint = f" Did you mean '{near[0]}'?" if near else ""
    return f"sam3-adapt: unknown verb '{verb}'.{hint}\nverbs: {', '.join(all_verbs())}"


def overview() -> str:
    """What ``sam3-adapt --help`` prints."""
    lines = [
        "usage: sam3-adapt VERB [options]   (sam3-adapt VERB --help lists every option)",
        "       sam3-adapt --version",
        "",
        "verbs:",
    ]
    lines += [
        f"  {verb:<15} Lightning {verb} with a recipe: --config <recipe name or YAML file>"
        for verb in LIGHTNING_VERBS
    ]
    lines += [f"  {verb:<15} {entry.summary}" for verb, entry in EXTRA_VERBS.items()]
    return "\n".join(lines)


if __name__ == "__main__":
    main()
