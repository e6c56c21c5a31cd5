"""The ``sam3-adapt`` command: LightningCLI verbs plus a few typed functions."""

from __future__ import annotations

import sys
from collections.abc import Callable
from pathlib import Path

from jsonargparse import CLI
from lightning.pytorch.cli import LightningCLI
from lightning.pytorch.utilities import rank_zero_info, rank_zero_warn

from adapt.ablation import ablation
from adapt.demo import demo
from adapt.evaluation import evaluate
from adapt.export import export
from adapt.mine_negatives import mine_negatives
from adapt.pretrain_tiny import pretrain_tiny
from adapt.publish import publish, upload
from adapt.run_files import newest_last_checkpoint
from adapt.task import ConceptSegmentationTask
from adapt.tune import tune
from data_mix.datamodule import ConceptDataModule
from data_mix.kshot import make_kshot
from data_mix.shapes import write_shapes_coco

LIGHTNING_VERBS = ("fit", "validate", "test", "predict")


def make_shapes(
    out: str = "runs/shapes",
    num_images: int = 48,
    image_size: int = 96,
    seed: int = 0,
    masks: bool = True,
) -> None:
    """Write a small synthetic COCO set of coloured shapes (train.json, val.json and images/).

    Args:
        out: Output folder.
        num_images: Images in the training split; the validation split gets half as many.
        image_size: Side of the square images in pixels.
        seed: Seed; the same seed writes the same files.
        masks: Write instance masks; ``false`` writes a box-only set.
    """
    root = Path(out)
    train_json, _ = write_shapes_coco(
        root / "train", num_images=num_images, image_size=image_size, seed=seed, masks=masks
    )
    val_json, _ = write_shapes_coco(
        root / "val", num_images=max(1, num_images // 2), image_size=image_size, seed=seed + 1, masks=masks
    )
    print(f"wrote {train_json} and {val_json}")


EXTRA_VERBS: dict[str, Callable[..., object]] = {
    "demo": demo,
    "ablation": ablation,
    "evaluate": evaluate,
    "make-kshot": make_kshot,
    "make-shapes": make_shapes,
    "mine-negatives": mine_negatives,
    "export": export,
    "pretrain-tiny": pretrain_tiny,
    "publish": publish,
    "tune": tune,
    "upload": upload,
}


class ConceptCLI(LightningCLI):
    """LightningCLI whose ``--ckpt_path last`` finds the checkpoint of the interrupted run.

    Lightning resolves ``last`` in the checkpoint folder of the run it is starting, a new
    ``version_N`` folder, so an interrupted fit would silently start again from scratch. Here
    ``last`` becomes the newest ``last.ckpt`` under ``trainer.default_root_dir`` (see
    `adapt.run_files.newest_last_checkpoint`), and a warning says so when there is none.
    """

    def before_instantiate_classes(self) -> None:
        """Turn ``ckpt_path: last`` into the path of the newest ``last.ckpt`` of the run folder."""
        config = self.config.get(self.subcommand) if self.subcommand else None
        if config is None or config.get("ckpt_path") != "last":
            return
        root = config.get("trainer.default_root_dir") or "."
        found = newest_last_checkpoint(root)
        if found is None:
            rank_zero_warn(f"--ckpt_path last: no last.ckpt under {root}; starting from the recipe's model")
            return
        rank_zero_info(f"--ckpt_path last: resuming from {found}")
        config["ckpt_path"] = str(found)


def lightning_cli(
    args: list[str] | None = None, run: bool = True, exit_on_error: bool = True
) -> LightningCLI:
    """The LightningCLI over :class:`ConceptSegmentationTask` and :class:`ConceptDataModule`.

    Args:
        args: Command-line arguments (``sys.argv[1:]`` when ``None``).
        run: Run the subcommand; ``False`` only parses and instantiates (used to check recipes).
        exit_on_error: Print the usage and exit on a bad argument; ``False`` raises
            ``jsonargparse.ArgumentError`` instead (for callers from Python; only with ``run=False``).

    Returns:
        The CLI object, with ``model``, ``datamodule`` and ``trainer``.
    """
    return ConceptCLI(
        ConceptSegmentationTask,
        ConceptDataModule,
        seed_everything_default=0,
        save_config_kwargs={"overwrite": True},
        parser_kwargs=None if exit_on_error else {"exit_on_error": False},
        args=args,
        run=run,
    )


def main(argv: list[str] | None = None) -> None:
    """Entry point of ``sam3-adapt``: ``fit | validate | test | predict`` (Lightning) or an extra verb."""
    args = list(sys.argv[1:] if argv is None else argv)
    if args and args[0] in EXTRA_VERBS:
        CLI(EXTRA_VERBS[args[0]], args=args[1:], prog=f"sam3-adapt {args[0]}", as_positional=False)
        return
    if not args or args[0] in ("-h", "--help"):
        print(_overview())
        if not args:
            sys.exit(2)
        return
    # LightningCLI reads sys.argv itself; pass args only when called from Python.
    lightning_cli(None if argv is None else args)


def _overview() -> str:
    lines = ["usage: sam3-adapt VERB [options]   (sam3-adapt VERB --help lists every option)", "", "verbs:"]
    lines += [
        f"  {verb:<12} Lightning {verb} with a recipe: --config recipes/<name>.yaml"
        for verb in LIGHTNING_VERBS
    ]
    for verb, function in EXTRA_VERBS.items():
        lines.append(f"  {verb:<12} {(function.__doc__ or '').splitlines()[0]}")
    return "\n".join(lines)


if __name__ == "__main__":
    main()
