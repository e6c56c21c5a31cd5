"""One call from Python: fine-tune SAM 3 with a recipe, then evaluate, predict, show and publish.

:func:`finetune` builds the task, the data module and the trainer with the same LightningCLI parser as
``sam3-adapt fit``: the recipe YAML first, then the call's settings on top, exactly as
``--config recipe.yaml --key=value`` would. The recipe and the constructors' defaults are the only
defaults; nothing here adds its own.
"""

from __future__ import annotations

import json
import os
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from jsonargparse import ArgumentError
from matplotlib.figure import Figure

from sam3_adapt.fitting.lightning_cli import lightning_cli
from sam3_adapt.fitting.recipe_files import recipe_path
from sam3_adapt.inference.prediction import Prediction
from sam3_adapt.model.persistence import save_trained
from sam3_adapt.predictor import ImageLike, Predictor
from sam3_adapt.release.publish import publish
from sam3_adapt.training.task import ConceptSegmentationTask

#: The named arguments of :func:`finetune` and the recipe key each one sets.
SHORTCUTS = {
    "base": "model.checkpoint",
    "train": "data.train_json",
    "images": "data.image_dir",
    "val": "data.val_json",
    "val_images": "data.val_image_dir",
    "anchor": "data.anchor_json",
    "anchor_images": "data.anchor_image_dir",
    "negatives": "data.hard_negatives",
    "out": "trainer.default_root_dir",
}


def recipe_settings(
    shortcuts: Mapping[str, Any], overrides: Mapping[str, Any] | None = None, **options: Any
) -> dict[str, Any]:
    """Merge the named arguments and the overrides into ``{recipe key: value}``.

    Args:
        shortcuts: ``{name in SHORTCUTS: value}``; ``None`` values are left to the recipe.
        overrides: ``{dotted recipe key: value}``, e.g. ``{"model.lr_detector": 1e-3}``.
        **options: More overrides; ``__`` stands for ``.`` so that keys can be keyword arguments
            (``trainer__max_steps=400``).

    Returns:
        The settings, each key once.

    Raises:
        ValueError: If a key is set twice.
    """
    settings = {SHORTCUTS[name]: value for name, value in shortcuts.items() if value is not None}
    given = {key: f"{name}=" for name, key in SHORTCUTS.items() if shortcuts.get(name) is not None}
    for key, value in [*(overrides or {}).items(), *options.items()]:
        key = key.replace("__", ".")
        if key in settings:
            raise ValueError(f"{key} is set twice ({given.get(key, key)} and {key}); give it once")
        settings[key] = value
        given[key] = key
    return settings


def cli_arguments(recipe: str | os.PathLike, settings: Mapping[str, Any]) -> list[str]:
    """The ``sam3-adapt fit`` arguments of a recipe with settings on top (``--key=value``, JSON values)."""
    args = ["--config", str(recipe_path(recipe))]
    for key, value in settings.items():
        if isinstance(value, os.PathLike):
            value = os.fspath(value)
        text = value if isinstance(value, str) else json.dumps(value, default=os.fspath)
        args.append(f"--{key}={text}")
    return args


@dataclass
class FinetuneResult:
    """What :func:`finetune` returns: the trained model, where its files are, and what it scored.

    Attributes:
        metrics: The last logged training metrics (``train/loss``, ...) and, with a validation set, a
            final validation of the trained model (``val/segm/AP``, ``val/bbox/AP``, ``val/cgF1``, ...).
        run_dir: The run's log folder: ``config.yaml`` (the resolved recipe), ``metrics.csv``,
            ``checkpoints/`` and the saved weights.
        checkpoint: The last Lightning checkpoint (``--ckpt_path`` resumes from it), if one was written.
        adapter: The PEFT adapter folder (``adapter_config.json`` + ``adapter_model.safetensors``);
            ``None`` after full fine-tuning.
        weights: What to load the trained model from: ``adapter``, or the merged model folder after full
            fine-tuning.
        config: The resolved recipe, ``{"model": {...}, "data": {...}, "trainer": {...}, ...}``.
        task: The trained Lightning task.
        predictor: The trained model as a :class:`~sam3_adapt.predictor.Predictor`.
    """

    metrics: dict[str, float]
    run_dir: Path
    checkpoint: Path | None
    adapter: Path | None
    weights: Path
    config: dict[str, Any] = field(repr=False)
    task: ConceptSegmentationTask = field(repr=False)
    predictor: Predictor = field(repr=False)

    def predict(
        self, image: ImageLike, phrases: str | Sequence[str], threshold: float | None = None
    ) -> Prediction:
        """Find every instance of each phrase in an image (`sam3_adapt.predictor.Predictor.predict`)."""
        return self.predictor.predict(image, phrases, threshold)

    def show(
        self,
        image: ImageLike,
        phrases: str | Sequence[str],
        out: str | os.PathLike | None = None,
        threshold: float | None = None,
    ) -> Figure:
        """Draw the trained model's detections on an image (`sam3_adapt.predictor.Predictor.show`)."""
        return self.predictor.show(image, phrases, out, threshold)

    def evaluate(
        self,
        data_json: str | list[str] | None = None,
        image_dir: str | list[str] | None = None,
        out: str | os.PathLike | None = None,
        baseline: bool = False,
        **options: Any,
    ) -> dict[str, Any]:
        """Evaluate the trained model with ``sam3-adapt evaluate`` and write its report.

        Args:
            data_json: COCO file(s) to evaluate on; default the run's validation set.
            image_dir: Their image folder(s); default the validation set's.
            out: Output folder; default ``<run_dir>/evaluate``.
            baseline: Also evaluate the base model without the adapter, side by side with deltas.
            **options: Further arguments of :func:`sam3_adapt.evaluation.evaluate`.

        Returns:
            The content of ``metrics.json``.

        Raises:
            ValueError: If no set is given and the run had no validation set.
        """
        if data_json is None:
            data = self.config["data"]
            if not isinstance(data.get("val_json"), str):
                raise ValueError("the run had no validation file: give data_json and image_dir")
            data_json = data["val_json"]
            image_dir = image_dir or data.get("val_image_dir") or data["image_dir"]
        if image_dir is None:
            raise ValueError("give the image folder of data_json")
        folder = self.run_dir / "evaluate" if out is None else out
        return self.predictor.evaluate(data_json, image_dir, out=str(folder), baseline=baseline, **options)

    def publish(
        self, repo_id: str | None = None, out: str | os.PathLike | None = None, **options: Any
    ) -> Path:
        """Write the run as a Hub-ready folder and, given ``repo_id``, upload it (``sam3-adapt publish``).

        Args:
            repo_id: Hub repo (``org/name``) to upload to; ``None`` only writes the folder.
            out: Folder to write (new or empty); default ``<run_dir>/hub-<kind>``.
            **options: Further arguments of :func:`sam3_adapt.release.publish.publish` (``kind``, ``private``,
                ``metrics`` (e.g. an ``evaluate`` ``metrics.json``), ``create_pr``, ...).

        Returns:
            The published folder.
        """
        return publish(str(self.run_dir), repo_id=repo_id, out=None if out is None else str(out), **options)


def finetune(
    base: str | None = None,
    train: str | os.PathLike | None = None,
    images: str | os.PathLike | None = None,
    recipe: str | os.PathLike = "tiny-10shot",
    *,
    val: str | os.PathLike | None = None,
    val_images: str | os.PathLike | None = None,
    anchor: str | os.PathLike | None = None,
    anchor_images: str | os.PathLike | None = None,
    negatives: str | os.PathLike | list[str] | None = None,
    out: str | os.PathLike | None = None,
    overrides: Mapping[str, Any] | None = None,
    **options: Any,
) -> FinetuneResult:
    """Fine-tune SAM 3 on a COCO set with a recipe, in one call; the same run as ``sam3-adapt fit``.

    Every named argument sets one recipe key (:data:`SHORTCUTS`); ``None`` leaves the recipe's value.
    Any other recipe key is set through ``overrides`` or keyword arguments, with ``__`` for ``.``::

        result = adapt.finetune(
            base="facebook/sam3", train="my/train.json", images="my/images", recipe="lora-10shot",
            val="my/val.json", overrides={"model.lr_detector": 1e-4}, trainer__max_steps=400,
        )

    After fitting, the model is validated once more on the validation set (if any) and its weights are
    saved in ``run_dir``: the adapter (LoRA) or the merged model (full fine-tuning).

    Args:
        base: Base SAM 3 (``model.checkpoint``): hub id, local folder, ``tiny`` or ``tiny-random``.
        train: COCO file of the few shots (``data.train_json``).
        images: Their image folder (``data.image_dir``).
        recipe: Recipe name in ``recipes/`` (``tiny-10shot``, ``lora-10shot``, ``box-only``, ...) or a
            YAML path.
        val: Held-out COCO file (``data.val_json``).
        val_images: Its image folder (``data.val_image_dir``; default ``images``).
        anchor: General "anchor" COCO data mixed into training (``data.anchor_json``).
        anchor_images: Its image folder (``data.anchor_image_dir``).
        negatives: YAML or CSV file(s) of hard-negative phrases, e.g. confusions or the reviewed
            output of ``sam3-adapt mine-negatives`` (``data.hard_negatives``). Categories absent
            from an image are negatives anyway (``data.include_negatives``).
        out: Folder of logs, checkpoints and weights (``trainer.default_root_dir``).
        overrides: ``{dotted recipe key: value}``, e.g. ``{"model.mask_loss": False}``.
        **options: More overrides as keyword arguments (``model__lr_detector=1e-3``).

    Returns:
        The :class:`FinetuneResult`.

    Raises:
        FileNotFoundError: If the recipe does not exist.
        ValueError: If a setting is unknown, malformed or given twice.
    """
    shortcuts = {
        "base": base,
        "train": train,
        "images": images,
        "val": val,
        "val_images": val_images,
        "anchor": anchor,
        "anchor_images": anchor_images,
        "negatives": negatives,
        "out": out,
    }
    args = cli_arguments(recipe, recipe_settings(shortcuts, overrides, **options))
    try:
        cli = lightning_cli(args, run=False, exit_on_error=False)
    except ArgumentError as error:
        raise ValueError(f"recipe {str(recipe)!r} with these settings: {error}") from error
    task, data, trainer = cli.model, cli.datamodule, cli.trainer
    trainer.fit(task, data)
    metrics = {key: float(value) for key, value in trainer.callback_metrics.items()}
    if data.hparams.val_json is not None:
        metrics |= {
            key: float(value) for key, value in trainer.validate(task, data, verbose=False)[0].items()
        }
    run_dir = Path(trainer.log_dir)
    adapter, weights = save_trained(task.segmenter.network, run_dir, str(task.hparams.checkpoint))
    callback = trainer.checkpoint_callback
    last = callback and (callback.last_model_path or callback.best_model_path)
    predictor = Predictor(
        task.segmenter,
        data.hparams.image_size,
        base=str(task.hparams.checkpoint) if adapter else str(weights),
        adapter=str(adapter) if adapter else None,
        score_threshold=task.hparams.score_threshold,
        max_detections=task.hparams.max_detections,
        masks=task.hparams.mask_loss,
    )
    return FinetuneResult(
        metrics=metrics,
        run_dir=run_dir,
        checkpoint=Path(last) if last else None,
        adapter=adapter,
        weights=weights,
        config=cli.config.as_dict(),
        task=task,
        predictor=predictor,
    )
