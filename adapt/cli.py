"""The ``sam3-adapt`` command: the LightningCLI verbs plus the kit's own verbs, each a typed function.

A verb's module is imported only when that verb runs (or prints its ``--help``), so the overview,
``--version`` and a mistyped verb answer at once, without torch or Lightning. Nothing imports this
module: it is the top of the kit.
"""

from __future__ import annotations

import contextlib
import difflib
import hashlib
import io
import os
import sys
from importlib import import_module
from pathlib import Path
from typing import NamedTuple


class Verb(NamedTuple):
    """One of the kit's own verbs: where its function lives and what it does (for the overview)."""

    module: str
    function: str
    summary: str
    #: The parameter a leading bare argument stands for (``sam3-adapt review ROUND_DIR``), if any.
    positional: str = ""
    #: Boolean parameters that may be given bare (``--open`` for ``--open true``).
    flags: tuple[str, ...] = ()
    #: Options that stand for a parameter of another name: ``(("config", "recipe"),)`` lets ``--config X``
    #: name the recipe, as it does for ``fit``, where jsonargparse would take it for its own
    #: ``--config`` (a file of the verb's arguments). A verb's function never has a ``config`` parameter.
    aliases: tuple[tuple[str, str], ...] = ()


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
    "make-world": Verb(
        "sam3_adapt.jobs.make_world",
        "make_world",
        "Write the concept world's anchor and target splits (COCO JSON + PNG) for anchor mixing.",
    ),
    "make-shapes": Verb(
        "sam3_adapt.jobs.make_shapes",
        "make_shapes",
        "Write a small synthetic COCO set of coloured shapes (train.json, val.json and images/).",
    ),
    "memory": Verb(
        "sam3_adapt.jobs.memory",
        "memory",
        "Print the estimated peak GPU memory of one training step of a recipe, and the chunk that fits.",
        positional="recipe",
        aliases=(("config", "recipe"),),
    ),
    "mine-negatives": Verb(
        "sam3_adapt.jobs.mine_negatives",
        "mine_negatives",
        "Mine hard negatives: candidate phrases the model fires on where they are not labelled.",
    ),
    "propose": Verb(
        "sam3_adapt.engine.propose",
        "propose",
        "Propose masks for a phrase list over an unlabelled pool with a base + adapter, resumably.",
    ),
    "engine": Verb(
        "sam3_adapt.engine.rounds",
        "engine",
        "Run data-engine rounds: fit, propose, verify, review, export, and fit again.",
    ),
    "review": Verb(
        "sam3_adapt.review_page.server",
        "review",
        "Review an engine round in the browser: one key or one box drag per decision, each journalled.",
        positional="round_dir",
        flags=("open",),
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
    "recipes": Verb(
        "sam3_adapt.fitting.recipe_files", "recipes", "List the shipped recipes, or copy one out to edit it."
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


#: Exit codes of ``sam3-adapt`` (the README lists them too).
EXIT_OK, EXIT_ERROR, EXIT_USAGE, EXIT_INTERRUPTED = 0, 1, 2, 130


def main(argv: list[str] | None = None) -> None:
    """Entry point of ``sam3-adapt``: ``fit | validate | test | predict`` (Lightning) or a kit verb.

    An error about the input or the environment prints one line, ``sam3-adapt VERB: error: ...``, and
    exits with 1 (2 for a usage error, 130 when interrupted); ``--debug`` or ``SAM3_ADAPT_DEBUG=1``
    shows the traceback instead.
    """
    args = list(sys.argv[1:] if argv is None else argv)
    debug = "--debug" in args or os.environ.get("SAM3_ADAPT_DEBUG", "") not in ("", "0")
    args = [arg for arg in args if arg != "--debug"]
    if not args or args[0] in ("-h", "--help"):
        print(overview())
        if not args:
            sys.exit(EXIT_USAGE)
        return
    verb = args[0]
    if verb in ("-V", "--version"):
        print(f"sam3-adapt {version()}")
        return
    if verb not in all_verbs():
        print(unknown_verb(verb), file=sys.stderr)
        sys.exit(EXIT_USAGE)
    if args[1:] in (["-h"], ["--help"]):
        print(help_text(verb), end="")
        return
    try:
        run_verb(verb, args[1:])
    except KeyboardInterrupt:
        if debug:
            raise
        print(f"sam3-adapt {verb}: interrupted", file=sys.stderr)
        sys.exit(EXIT_INTERRUPTED)
    except Exception as error:  # the boundary: one line for the user, the traceback with --debug
        if debug:
            raise
        usage = isinstance(error, UsageError) or type(error).__name__ == "ArgumentError"
        hint = f"see sam3-adapt {verb} --help" if usage else "--debug shows the traceback"
        print(f"sam3-adapt {verb}: error: {error_line(error)} ({hint})", file=sys.stderr)
        sys.exit(EXIT_USAGE if usage else EXIT_ERROR)


def run_verb(verb: str, args: list[str]) -> None:
    """Run one verb with its arguments (without the verb itself); errors propagate."""
    if verb in EXTRA_VERBS:
        from jsonargparse import CLI

        entry = EXTRA_VERBS[verb]
        if entry.positional and args and not args[0].startswith("-"):
            args = [f"--{entry.positional}", *args]
        for alias, name in entry.aliases:
            args = [
                f"--{name}{arg[len(alias) + 2 :]}"
                if arg == f"--{alias}" or arg.startswith(f"--{alias}=")
                else arg
                for arg in args
            ]
        bare = {f"--{flag}" for flag in entry.flags}
        args = [
            f"{arg}=true" if arg in bare and (k + 1 == len(args) or args[k + 1].startswith("-")) else arg
            for k, arg in enumerate(args)
        ]

        CLI(
            verb_function(verb),
            args=args,
            prog=f"sam3-adapt {verb}",
            as_positional=False,
            parser_mode="yaml",
            exit_on_error=False,
        )
        return
    missing = missing_recipe(args)
    if missing:
        raise UsageError(missing)
    args = with_recipe_files(args)
    from sam3_adapt.fitting.lightning_cli import lightning_cli

    lightning_cli([verb, *args], exit_on_error=False)


class UsageError(ValueError):
    """The command line lacks what the verb needs (checked before anything is imported or loaded)."""


def missing_recipe(args: list[str]) -> str | None:
    """What a Lightning verb lacks to know its model and data, or ``None`` when a recipe is given.

    Without ``--config`` and without ``--model.checkpoint``, the task would fall back on nothing the
    user chose; say so before importing torch or touching the network.
    """
    given = {arg.split("=", 1)[0] for arg in args}
    if given & {"--config", "--model.checkpoint", "--print_config", "-h", "--help"}:
        return None
    from sam3_adapt.fitting.recipe_files import recipe_names

    return (
        "no recipe given: pass --config <recipe> (a YAML file, or one of "
        f"{', '.join(recipe_names())}), or at least --model.checkpoint and --data.train_json"
    )


def error_line(error: BaseException) -> str:
    """An exception as the one message the user reads: its text, with its type when that adds to it."""
    text = str(error).strip() or type(error).__name__
    if "Does not validate against any of the Union subtypes" in text:
        # jsonargparse tries each type of a setting (e.g. `LoraSettings | dict | None`) and lists why
        # each failed; the one that is not "Expected a <type>" is the reason the user needs.
        reasons = [
            line.strip().removeprefix("- ")
            for line in text.splitlines()
            if line.strip().startswith("- ") and not line.strip().startswith("- Expected a")
        ]
        text = "; ".join(reasons) or text
    generic = isinstance(error, (ValueError, OSError)) or type(error).__name__ in (
        "ArgumentError",
        "CocoFormatError",
        "PublishError",
        "DivergedError",
    )
    return text if generic else f"{type(error).__name__}: {text}"


def help_text(verb: str) -> str:
    """``sam3-adapt VERB --help``, from the help cache when this version of the kit wrote it before.

    Lightning's and jsonargparse's help needs torch, Lightning and transformers imported (seconds);
    the text only changes with the kit's code and its libraries' versions, which key the cache.
    """
    from sam3_adapt.model.cache import cache_dir

    cached = cache_dir() / "help" / f"{verb}-{help_fingerprint()}.txt"
    if cached.is_file():
        return cached.read_text()
    buffer = io.StringIO()
    with contextlib.redirect_stdout(buffer):
        try:
            run_verb(verb, ["--help"])
        except SystemExit:
            pass
    text = buffer.getvalue()
    try:
        cached.parent.mkdir(parents=True, exist_ok=True)
        for stale in cached.parent.glob(f"{verb}-*.txt"):
            stale.unlink()
        partial = cached.with_suffix(f".{os.getpid()}.tmp")
        partial.write_text(text)
        partial.replace(cached)
    except OSError:  # a read-only cache only costs the next call its speed
        pass
    return text


def help_fingerprint() -> str:
    """A key that changes whenever the help text can: the kit's files and its libraries' versions."""
    from importlib.metadata import PackageNotFoundError
    from importlib.metadata import version as installed

    digest = hashlib.sha256()
    for name in ("sam3-adapt", "lightning", "jsonargparse", "torch", "transformers", "peft"):
        try:
            digest.update(f"{name}={installed(name)};".encode())
        except PackageNotFoundError:
            digest.update(f"{name}=none;".encode())
    package = Path(__file__).resolve().parent
    roots = [package, *(package.parent / folder for folder in ("model", "data_mix", "recipes"))]
    for root in roots:
        for path in sorted(root.rglob("*.py")) + sorted(root.rglob("*.yaml")):
            stat = path.stat()
            digest.update(f"{path}:{stat.st_mtime_ns}:{stat.st_size};".encode())
    return digest.hexdigest()[:16]


def with_recipe_files(args: list[str]) -> list[str]:
    """``args`` with every ``--config`` recipe name (or ``recipes/<name>.yaml``) turned into its file.

    A file that exists wins, so a user's own ``recipes/tiny-cpu.yaml`` is read rather than the shipped
    one; an inline YAML document (``--config 'model: {...}'``) is left as it is.

    Raises:
        FileNotFoundError: If a ``--config`` value is neither a file, inline YAML, nor a shipped recipe.
        UsageError: If a recipe file is not valid YAML.
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
        if "\n" in value or ":" in value.split("/")[-1]:
            continue
        if not Path(value).is_file():
            out[index] = prefix + str(recipe_path(value))
        check_yaml(Path(out[index].removeprefix(prefix)))
    return out


def check_yaml(path: Path) -> None:
    """Refuse a recipe that is not valid YAML with one line naming the file, line and column.

    Raises:
        UsageError: If ``path`` cannot be parsed.
    """
    import yaml

    try:
        yaml.safe_load(path.read_text())
    except yaml.YAMLError as error:
        mark = getattr(error, "problem_mark", None)
        where = f" line {mark.line + 1}, column {mark.column + 1}" if mark else ""
        problem = getattr(error, "problem", None) or str(error).splitlines()[0]
        raise UsageError(f"{path}:{where}: not valid YAML: {problem}") from None


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
