"""Fit health: does the model learn its own training images? Measured before and after ``fit``.

An adapter that cannot reach the features a domain needs (LoRA on the detector and text encoder
over a frozen ViT that has never seen such pixels) does not fit even the images it trains on:
its train-set AP stays at the base's. Held-out metrics cannot tell that apart from overfitting or
a hard test set; the train-set AP can, cheaply, on a few training images.
"""

from __future__ import annotations

import warnings
from dataclasses import dataclass, replace
from typing import Any

import numpy as np
from lightning import Callback, LightningModule, Trainer
from lightning.pytorch.utilities import rank_zero_only

from sam3_adapt.data_mix.readers.coco import CocoSet
from sam3_adapt.evaluation.run import predict_set
from sam3_adapt.inference.slots import check_slots

#: Training images the health check predicts (a seeded draw of those with instances).
IMAGES = 8
#: Train-set AP gain over the base below which the fit is reported as not learning.
MARGIN = 0.05


@dataclass
class Health:
    """Train-set AP of the base and of the trained model on the same training images.

    Attributes:
        metric: ``segm/AP`` (``bbox/AP`` for box-only data).
        images: Training images measured.
        base: The base model's AP (before the first step).
        after: The trained model's AP.
    """

    metric: str
    images: int
    base: float
    after: float

    @property
    def learning(self) -> bool:
        """Whether the trained model fits its training images clearly better than the base."""
        return self.after - self.base >= MARGIN

    def line(self) -> str:
        """One line for the log: what was measured."""
        return (
            f"fit health: train-set {self.metric} on {self.images} training images: "
            f"base {self.base:.3f}, after training {self.after:.3f}"
        )

    def warning(self, adaptation: str) -> str:
        """What to do when the model does not learn (``adaptation``: ``lora`` or ``full``)."""
        who = "the adapter" if adaptation == "lora" else "the model"
        levers = ["more steps (--trainer.max_steps)", "a higher rate (--model.lr_detector, --model.lr_text)"]
        if adaptation == "lora":
            levers.insert(0, "full fine-tuning (--model.adaptation full)")
        return (
            f"{who} is not learning: its train-set {self.metric} ({self.after:.3f} on {self.images} "
            f"training images) stays within {MARGIN} of the base's ({self.base:.3f}), so it does not fit "
            f"even the images it trains on. The usual levers: {', '.join(levers)}."
        )


class FitHealth(Callback):
    """Measure the train-set AP on a few training images before the first step and after the fit.

    At the start it also warns when the training or validation set has more instances in one
    image-phrase pair than the model has object slots (`sam3_adapt.inference.slots`).

    The base's figure is kept in the checkpoint, so a resumed fit compares with the real base. The
    result is printed (`Health.line`), warned about when the model is not learning, and kept as
    ``health``. Runs on the first process only.

    Args:
        images: Training images to measure on.
        seed: Seed of their draw.
    """

    def __init__(self, images: int = IMAGES, seed: int = 0) -> None:
        self.images, self.seed = images, seed
        self.base: dict[str, Any] | None = None
        self.health: Health | None = None

    def state_dict(self) -> dict[str, Any]:
        """The base's train-set AP, saved in checkpoints."""
        return {"base": self.base}

    def load_state_dict(self, state_dict: dict[str, Any]) -> None:
        """Take the base's train-set AP back from a checkpoint."""
        self.base = state_dict.get("base")

    @rank_zero_only
    def on_fit_start(self, trainer: Trainer, pl_module: LightningModule) -> None:
        """Check the sets against the object slots; measure the base (a resumed fit already has it)."""
        sets = [training_set(trainer), getattr(trainer.datamodule, "sets", {}).get("val")]
        for coco in sets:
            if coco is not None:
                check_slots(coco.samples, pl_module.segmenter.num_slots, str(coco.json_path))
        if self.base is None and trainer.global_step == 0:
            measured = self._measure(trainer, pl_module)
            self.base = None if measured is None else {"metric": measured[0], "value": measured[1]}

    @rank_zero_only
    def on_fit_end(self, trainer: Trainer, pl_module: LightningModule) -> None:
        """Measure the trained model, print the comparison and warn when it did not learn."""
        if self.base is None or trainer.interrupted:
            return
        measured = self._measure(trainer, pl_module)
        if measured is None:
            return
        self.health = Health(measured[0], len(self._sample(trainer)), self.base["value"], measured[1])
        print(self.health.line())
        if not self.health.learning:
            warnings.warn(self.health.warning(str(pl_module.hparams.get("adaptation", "lora"))), stacklevel=1)

    def _sample(self, trainer: Trainer) -> list:
        coco = training_set(trainer)
        if coco is None:
            return []
        with_instances = [s for s in coco.samples if s.positives]
        rng = np.random.default_rng(self.seed)
        picked = set(
            rng.choice(len(with_instances), size=min(self.images, len(with_instances)), replace=False)
        )
        return [s for i, s in enumerate(with_instances) if i in picked]

    def _measure(self, trainer: Trainer, pl_module: LightningModule) -> tuple[str, float] | None:
        samples = self._sample(trainer)
        coco = training_set(trainer)
        if not samples or coco is None:
            return None
        segmenter = pl_module.segmenter
        was_training = segmenter.training
        # Under the fit's precision, as validation runs: the numbers match, and a feature cache's
        # entries (keyed by the autocast dtype) are the ones training reads.
        with trainer.precision_plugin.val_step_context():
            run = self._predict(trainer, pl_module, replace(coco, samples=samples))
        segmenter.train(was_training)
        with warnings.catch_warnings():
            warnings.simplefilter(
                "ignore", UserWarning
            )  # a sample without negative pairs: cgF1 is not asked for
            metrics = run.evaluator.compute()
        metric = f"{run.evaluator.cgf1_iou_type}/AP"
        return metric, float(metrics[metric])

    @staticmethod
    def _predict(trainer: Trainer, pl_module: LightningModule, coco: CocoSet) -> Any:
        hp = pl_module.hparams
        return predict_set(
            coco,
            pl_module.segmenter,
            "train sample",
            image_size=int(trainer.datamodule.hparams.image_size),
            batch_size=int(trainer.datamodule.hparams.batch_size),
            score_threshold=float(hp.get("score_threshold", 0.5)),
            max_detections=int(hp.get("max_detections", 100)),
            num_workers=0,
            progress=False,
        )


def training_set(trainer: Trainer) -> CocoSet | None:
    """The fit's own training set (``train_json`` or the first of ``train_sources``), if there is one."""
    data = trainer.datamodule
    return data.target_set() if hasattr(data, "target_set") else None
