"""The one LightningCLI of the kit: the task and the data module, read from a recipe.

``sam3-adapt fit|validate|test|predict``, :func:`sam3_adapt.finetune`, the demo and ``tune`` all build
their run here, so a recipe means the same thing everywhere.
"""

from __future__ import annotations

import csv
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
from sam3_adapt.fitting.exact_resume import ExactResume
from sam3_adapt.fitting.fit_health import FitHealth
from sam3_adapt.fitting.progress import LineProgress
from sam3_adapt.fitting.run_files import (
    load_checkpoint,
    newest_last_checkpoint,
    trim_metrics_csv,
    version_folder,
)
from sam3_adapt.training.task import ConceptSegmentationTask

# Lightning 2.6 calls a torch.utils._pytree API that torch 2.14 deprecates, once per loop: the
# message is about Lightning's code, not the user's run.
warnings.filterwarnings("ignore", message=r"`isinstance\(treespec, LeafSpec\)` is deprecated")


class ConceptCLI(LightningCLI):
    """LightningCLI whose resumed fits continue exactly, in the run folder they were stopped in.

    - ``--ckpt_path last`` finds the checkpoint of the interrupted run. Lightning resolves ``last``
      in the checkpoint folder of the run it is starting, a new ``version_N`` folder, so an
      interrupted fit would silently start again from scratch. Here ``last`` becomes the newest
      ``last.ckpt`` under ``trainer.default_root_dir`` (see
      `sam3_adapt.fitting.run_files.newest_last_checkpoint`), and a warning says so when there is none.
    - A fit resumed from a checkpoint of ``<logs>/version_N`` logs into that same folder (a CSV or
      TensorBoard logger's ``version``), and the rows its ``metrics.csv`` holds past the checkpoint's
      step are dropped first: they will be logged again, so no step appears twice.
    - Every trainer gets `sam3_adapt.fitting.exact_resume.ExactResume` (random streams in the
      checkpoint, logs flushed with it, the final step always saved).
    """

    _resume_version: Path | None = None
    #: Global step of the ``ckpt_path`` file `parse_arguments` read (``None``: no file given).
    _resume_step: int | None = None

    def parse_arguments(self, parser: LightningArgumentParser, args: Any) -> None:
        """Parse the command line, then refuse a ``ckpt_path`` file that cannot be loaded without code.

        Lightning reads the checkpoint's hyperparameters right after parsing, safely but with an
        error that does not name the file; `load_checkpoint` names it.
        """
        super().parse_arguments(parser, args)
        subcommand = self.config.get("subcommand")
        ckpt_path = self.config[subcommand].get("ckpt_path") if subcommand else None
        if ckpt_path and Path(ckpt_path).is_file():
            self._resume_step = int(load_checkpoint(ckpt_path).get("global_step", 0))

    def before_instantiate_classes(self) -> None:
        """Turn ``ckpt_path: last`` into the path of the newest ``last.ckpt`` of the run folder.

        That file is checked as `parse_arguments` checks a given one.
        """
        config = self.config.get(self.subcommand) if self.subcommand else None
        if config is None or not config.get("ckpt_path"):
            return
        if config.get("ckpt_path") != "last":
            if self._resume_step is not None:  # a file `parse_arguments` has read
                self._resume_in_version(config, Path(config["ckpt_path"]), self._resume_step)
            return
        root = config.get("trainer.default_root_dir") or "."
        found = newest_last_checkpoint(root)
        if found is None:
            rank_zero_warn(f"--ckpt_path last: no last.ckpt under {root}; starting from the recipe's model")
            return
        rank_zero_info(f"--ckpt_path last: resuming from {found}")
        step = int(load_checkpoint(found).get("global_step", 0))
        config["ckpt_path"] = str(found)
        self._resume_in_version(config, found, step)

    def _resume_in_version(self, config: Any, checkpoint: Path, step: int) -> None:
        """Log a resumed fit into the ``version_N`` folder of its checkpoint, without repeated steps.

        ``step`` is the checkpoint's global step: rows of ``metrics.csv`` from there on are dropped.
        """
        folder = version_folder(checkpoint)
        if self.subcommand != "fit" or folder is None:
            return
        self._resume_version = folder
        logger = config.get("trainer.logger")
        if getattr(logger, "class_path", "").endswith(("CSVLogger", "TensorBoardLogger")):
            if logger.init_args.get("version") is None:
                logger.init_args["version"] = folder.name
        trim_metrics_csv(folder / "metrics.csv", step)
        # The folder is reused on purpose; Lightning's CSV logger appends to its metrics.csv.
        warnings.filterwarnings("ignore", message=r"Experiment logs directory .* exists and is not empty")

    def instantiate_trainer(self, **kwargs: Any) -> Trainer:
        """The trainer: a CSV logger by default, line progress when stdout is not a terminal, fit health.

        `FitHealth` reports the train-set AP before and after a fit and warns when it did not move.
        """
        callbacks = [self._get(self.config_init, c) for c in self._parser(self.subcommand).callback_keys]
        callbacks.append(FitHealth())
        config = {**self._get(self.config_init, "trainer", default={}), **kwargs}
        if config.get("logger") in (None, True):
            # Lightning's own default when TensorBoard is absent, said explicitly: it would warn each run.
            root = config.get("default_root_dir") or os.getcwd()
            resumed = self._resume_version
            if resumed is not None and Path(root).absolute() == resumed.parent.parent.absolute():
                config["logger"] = CSVLogger(save_dir=root, name=resumed.parent.name, version=resumed.name)
            else:
                config["logger"] = CSVLogger(save_dir=root)
        callbacks.append(ExactResume())
        if not sys.stdout.isatty() and config.get("enable_progress_bar") is not False:
            config["enable_progress_bar"] = False
            callbacks.append(LineProgress())
        trainer = self._instantiate_trainer(config, callbacks)
        if self._resume_version is not None:
            self._keep_earlier_rows(trainer, self._resume_version)
        return trainer

    def _keep_earlier_rows(self, trainer: Trainer, folder: Path) -> None:
        """Put back the rows before the checkpoint that Lightning's CSV logger deletes on opening a folder."""
        metrics_csv = folder / "metrics.csv"
        if not metrics_csv.is_file():
            return
        with open(metrics_csv, newline="") as handle:
            reader = csv.DictReader(handle)
            fields, rows = list(reader.fieldnames or []), list(reader)
        for logger in trainer.loggers:
            if isinstance(logger, CSVLogger) and Path(logger.log_dir).absolute() == folder.absolute():
                writer = logger.experiment  # opening it deletes metrics.csv
                with open(metrics_csv, "w", newline="") as handle:
                    table = csv.DictWriter(handle, fieldnames=fields)
                    table.writeheader()
                    table.writerows(rows)
                writer.metrics_keys = sorted(fields)


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
