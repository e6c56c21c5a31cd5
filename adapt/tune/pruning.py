"""Stopping bad trials early: report validation metrics to Optuna from Lightning, and catch divergence."""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

import optuna
import torch
from lightning.pytorch import Callback, LightningModule, Trainer
from lightning.pytorch.trainer.states import TrainerFn


@dataclass(frozen=True)
class PruningSettings:
    """When trials are validated and when Optuna may stop them.

    Pruning compares a trial's metric at an epoch with the median of earlier trials at the same
    epoch (Optuna's ``MedianPruner``); a trial whose outputs or loss stop being finite is always
    pruned at once, since it has diverged.

    Attributes:
        enabled: Prune trials below the median; ``False`` still stops diverging trials.
        val_every_n_epochs: Validate (and report to Optuna) every this many epochs; the objective is
            always measured after the last epoch.
        startup_trials: Trials that must finish before any trial is pruned.
        warmup_epochs: Epochs at the start of every trial during which it is never pruned.
    """

    enabled: bool = True
    val_every_n_epochs: int = 1
    startup_trials: int = 5
    warmup_epochs: int = 0

    def __post_init__(self) -> None:
        if self.val_every_n_epochs < 1:
            raise ValueError(f"pruning.val_every_n_epochs must be at least 1, got {self.val_every_n_epochs}")
        if self.startup_trials < 0 or self.warmup_epochs < 0:
            raise ValueError(
                f"pruning.startup_trials and warmup_epochs must be >= 0, got "
                f"{self.startup_trials} and {self.warmup_epochs}"
            )

    def pruner(self) -> optuna.pruners.BasePruner:
        """The Optuna pruner these settings describe."""
        if not self.enabled:
            return optuna.pruners.NopPruner()
        return optuna.pruners.MedianPruner(
            n_startup_trials=self.startup_trials, n_warmup_steps=self.warmup_epochs
        )


class TrialMonitor(Callback):
    """Reports ``metric`` to an Optuna trial after each validation and stops the fit when told to.

    Raises ``optuna.TrialPruned`` (which leaves ``Trainer.fit``) when the pruner says so after a
    validation, or as soon as the run diverges: the task's outputs (logits, boxes, masks) or its
    training loss are no longer finite. Outputs are checked as the task returns them, before the
    loss, whose box matching cannot take NaN costs. The epoch of the stop and its reason are kept in
    the trial's user attributes ``stopped_epoch`` and ``stop_reason``.

    Args:
        trial: The running trial.
        metric: A metric the task logs at validation, e.g. ``val/cgF1``.
        report: Report the metric to the trial (and prune on it); ``False`` only records it, as for
            every fold after the first (see :mod:`sam3_adapt.tune.trial`).
    """

    def __init__(self, trial: optuna.Trial, metric: str, report: bool = True) -> None:
        self.trial = trial
        self.metric = metric
        self.report = report
        self.value: float | None = None
        self.validated_at_step: int | None = None
        self._hook: torch.utils.hooks.RemovableHandle | None = None
        self._trainer: Trainer | None = None

    def on_fit_start(self, trainer: Trainer, pl_module: LightningModule) -> None:
        """Watch the network's outputs for non-finite values (every pass, chunked or not)."""
        self._trainer = trainer
        network = getattr(pl_module, "segmenter", pl_module)
        self._hook = network.register_forward_hook(self._check_outputs)

    def teardown(self, trainer: Trainer, pl_module: LightningModule, stage: str) -> None:
        """Stop watching the task's outputs."""
        if self._hook is not None:
            self._hook.remove()
            self._hook = None

    def _check_outputs(self, module: torch.nn.Module, args: Any, outputs: Any) -> None:
        for name, value in vars(outputs).items():
            if isinstance(value, torch.Tensor) and value.is_floating_point() and not value.isfinite().all():
                self._stop(self._trainer, f"diverged: non-finite {name} at step {self._trainer.global_step}")

    def on_train_batch_end(
        self, trainer: Trainer, pl_module: LightningModule, outputs: Any, batch: Any, batch_idx: int
    ) -> None:
        """Prune at once when the loss is no longer finite: the run has diverged."""
        loss = outputs["loss"] if isinstance(outputs, dict) else outputs
        if loss is not None and not torch.isfinite(loss).all():
            self._stop(trainer, f"diverged: training loss {float(loss)} at step {trainer.global_step}")

    def on_validation_end(self, trainer: Trainer, pl_module: LightningModule) -> None:
        """Read the metric; while fitting, report it and ask the pruner."""
        if trainer.sanity_checking:
            return
        if self.metric not in trainer.callback_metrics:
            logged = sorted(k for k in trainer.callback_metrics if k.startswith("val/"))
            raise ValueError(f"metric {self.metric!r} was not logged at validation; logged: {logged}")
        self.value = float(trainer.callback_metrics[self.metric])
        self.validated_at_step = trainer.global_step
        if not self.report or trainer.state.fn != TrainerFn.FITTING:
            return
        epoch = trainer.current_epoch
        self.trial.report(self.value, step=epoch)
        if not math.isfinite(self.value):
            self._stop(trainer, f"diverged: {self.metric}={self.value} at epoch {epoch}")
        if self.trial.should_prune():
            self._stop(trainer, f"pruned at epoch {epoch}: {self.metric}={self.value:.4g}")

    def _stop(self, trainer: Trainer, reason: str) -> None:
        self.trial.set_user_attr("stopped_epoch", trainer.current_epoch)
        self.trial.set_user_attr("stop_reason", reason)
        raise optuna.TrialPruned(reason)
