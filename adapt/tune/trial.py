"""One trial of ``sam3-adapt tune``: a recipe with sampled values, fitted as ``sam3-adapt fit`` does."""

from __future__ import annotations

import gc
import statistics
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import optuna
import torch
import yaml
from lightning.pytorch.callbacks import Checkpoint

from sam3_adapt.fitting.lightning_cli import lightning_cli
from sam3_adapt.tune.pruning import PruningSettings, TrialMonitor
from sam3_adapt.tune.recipe import with_values, write_recipe
from sam3_adapt.tune.space import SearchSpace


@dataclass
class TrialObjective:
    """The function Optuna optimises: sample values, write the trial's recipe, fit it, return the metric.

    Each trial writes ``<out>/trials/<number>/recipe.yaml`` (the base recipe with its sampled values)
    and fits it through the same LightningCLI as ``sam3-adapt fit``, with the trial's folder as
    ``trainer.default_root_dir``, validation every ``pruning.val_every_n_epochs`` epochs and no
    checkpoints (the best recipe is meant to be fitted again). The value is ``metric`` after the
    last epoch. With several folds the value is the mean over folds; only the first fold reports
    to the pruner, so pruning compares like with like (the same epoch of the same split) across
    trials, and a pruned trial is stopped before its other folds run. Every fold still stops when
    its training diverges.

    Args:
        recipe: The base recipe dict (fixed overrides applied).
        space: The search space.
        metric: Logged validation metric to optimise, e.g. ``val/cgF1``.
        out: The study folder.
        folds: Extra recipe values of each fold (train/val files); ``[{}]`` validates on the recipe's
            own ``data.val_json``.
        pruning: Validation interval and pruning settings.
    """

    recipe: Mapping[str, Any]
    space: SearchSpace
    metric: str
    out: Path
    folds: Sequence[Mapping[str, Any]]
    pruning: PruningSettings

    def __call__(self, trial: optuna.Trial) -> float:
        """Run ``trial`` and return its objective value."""
        values = self.space.suggest(trial)
        folder = self.out / "trials" / f"{trial.number:04d}"
        path = write_recipe(
            with_values(self.recipe, values),
            folder / "recipe.yaml",
            header=f"Trial {trial.number} of study '{trial.study.study_name}' (sam3-adapt tune).",
        )
        scores = []
        for index, fold in enumerate(self.folds):
            fold_folder = folder / f"fold{index}" if len(self.folds) > 1 else folder
            scores.append(self._fit(trial, path, fold_folder, fold, report=index == 0))
            trial.set_user_attr("fold_values", scores)
        return statistics.fmean(scores)

    def _fit(
        self, trial: optuna.Trial, recipe: Path, folder: Path, fold: Mapping[str, Any], report: bool
    ) -> float:
        controls = {
            "trainer.default_root_dir": str(folder),
            "trainer.check_val_every_n_epoch": self.pruning.val_every_n_epochs,
            "trainer.num_sanity_val_steps": 0,
            **fold,
        }
        # A second config on top of the recipe, as YAML: values keep their types (a path stays a string).
        overrides = yaml.safe_dump(with_values({}, controls))
        cli = lightning_cli(["--config", str(recipe), "--config", overrides], run=False)
        trainer, model = cli.trainer, cli.model
        monitor = TrialMonitor(trial, self.metric, report=report)
        trainer.callbacks = [c for c in trainer.callbacks if not isinstance(c, Checkpoint)] + [monitor]
        trainer.fit(model, cli.datamodule)
        if monitor.validated_at_step != trainer.global_step:
            trainer.validate(model, datamodule=cli.datamodule, verbose=False)
        value = monitor.value
        del cli, trainer, model
        gc.collect()
        if torch.cuda.is_available():
            torch.cuda.empty_cache()
        return value
