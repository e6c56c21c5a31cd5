"""The one LightningCLI of the kit: the task and the data module, read from a recipe.

``sam3-adapt fit|validate|test|predict``, :func:`sam3_adapt.finetune`, the demo and ``tune`` all build
their run here, so a recipe means the same thing everywhere.
"""

from __future__ import annotations

import os
import sys
import warnings
from pathlib import Path
from typing import Any

from lightning import Trainer
from lightning.pytorch.cli import LightningArgumentParser, LightningCLI
from lightning.pytorch.loggers import CSVLogger
from lightning.pytorch.utilities import rank_zero_info, rank_zero_warn

from sam3_adapt.data_mix.datamodule import ConceptDataModule
from sam3_adapt.fitting.fit_health import FitHealth
from sam3_adapt.fitting.progress import LineProgress
from sam3_adapt.fitting.run_files import load_checkpoint, newest_last_checkpoint
from sam3_adapt.training.task import ConceptSegmentationTask

# Lightning 2.6 calls a torch.utils._pytree API that torch 2.14 deprecates, once per loop: the
# message is about Lightning's code, not the user's run.
warnings.filterwarnings("ignore", message=r"`isinstance\(treespec, LeafSpec\)` is deprecated")


class ConceptCLI(LightningCLI):
    """LightningCLI whose ``--ckpt_path last`` finds the checkpoint of the interrupted run.

    Lightning resolves ``last`` in the checkpoint folder of the run it is starting, a new
    ``version_N`` folder, so an interrupted fit would silently start again from scratch. Here
    ``last`` becomes the newest ``last.ckpt`` under ``trainer.default_root_dir`` (see
    `sam3_adapt.fitting.run_files.newest_last_checkpoint`), and a warning says so when there is none.
    """

    def parse_arguments(self, parser: LightningArgumentParser, args: Any) -> None:
        """Parse the command line, then refuse a ``ckpt_path`` file that cannot be loaded without code.

        Lightning reads the checkpoint's hyperparameters right after parsing, safely but with an
        error that does not name the file; `load_checkpoint` names it.
        """
        super().parse_arguments(parser, args)
        subcommand = self.config.get("subcommand")
        ckpt_path = self.config[subcommand].get("ckpt_path") if subcommand else None
        if ckpt_path and Path(ckpt_path).is_file():
            load_checkpoint(ckpt_path)

    def before_instantiate_classes(self) -> None:
        """Turn ``ckpt_path: last`` into the path of the newest ``last.ckpt`` of the run folder.

        That file is checked as `parse_arguments` checks a given one.
        """
        config = self.config.get(self.subcommand) if self.subcommand else None
        if config is None or config.get("ckpt_path") != "last":
            return
        root = config.get("trainer.default_root_dir") or "."
        found = newest_last_checkpoint(root)
        if found is None:
            rank_zero_warn(f"--ckpt_path last: no last.ckpt under {root}; starting from the recipe's model")
            return
        rank_zero_info(f"--ckpt_path last: resuming from {found}")
        load_checkpoint(found)
        config["ckpt_path"] = str(found)

    def instantiate_trainer(self, **kwargs: Any) -> Trainer:
        """The trainer: a CSV logger by default, line progress when stdout is not a terminal, fit health.

        `FitHealth` reports the train-set AP before and after a fit and warns when it did not move.
        """
        callbacks = [self._get(self.config_init, c) for c in self._parser(self.subcommand).callback_keys]
        callbacks.append(FitHealth())
        config = {**self._get(self.config_init, "trainer", default={}), **kwargs}
        if config.get("logger") in (None, True):
            # Lightning's own default when TensorBoard is absent, said explicitly: it would warn each run.
            config["logger"] = CSVLogger(save_dir=config.get("default_root_dir") or os.getcwd())
        if not sys.stdout.isatty() and config.get("enable_progress_bar") is not False:
            config["enable_progress_bar"] = False
            callbacks.append(LineProgress())
        return self._instantiate_trainer(config, callbacks)


def lightning_cli(
    args: list[str] | None = None, run: bool = True, exit_on_error: bool = True
) -> LightningCLI:
    """The LightningCLI over :class:`ConceptSegmentationTask` and :class:`ConceptDataModule`.

    Args:
        args: Command-line arguments (``sys.argv[1:]`` when ``None``). Given from Python (the API,
            the demo, ``tune``), the process's own ``sys.argv`` is ignored, as it should be.
        run: Run the subcommand; ``False`` only parses and instantiates (the caller runs the trainer).
        exit_on_error: Print the usage and exit on a bad argument; ``False`` raises
            ``jsonargparse.ArgumentError`` instead (for callers from Python; only with ``run=False``).

    Returns:
        The CLI object, with ``model``, ``datamodule`` and ``trainer``.
    """
    # Lightning's CLI calls jsonargparse APIs that jsonargparse 4.49 deprecates: notices about
    # Lightning's code that would reach every user of `sam3-adapt fit`. A user's own setting wins.
    os.environ.setdefault("JSONARGPARSE_DEPRECATION_WARNINGS", "off")
    with warnings.catch_warnings():
        # Lightning warns that sys.argv is ignored when args are given, which is the point here.
        warnings.filterwarnings("ignore", message="LightningCLI's args parameter is intended")
        return ConceptCLI(
            ConceptSegmentationTask,
            ConceptDataModule,
            seed_everything_default=0,
            save_config_kwargs={"overwrite": True},
            parser_kwargs=None if exit_on_error else {"exit_on_error": False},
            args=args,
            run=run,
        )
