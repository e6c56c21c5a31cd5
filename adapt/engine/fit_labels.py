"""One fit of the engine: train LoRA adapters on exported labels (plus anchor data) and save them.

The fit is the kit's own (`sam3_adapt.fitting.lightning_cli.lightning_cli` with a recipe), so the
engine trains exactly as ``sam3-adapt fit`` does; only the labels file, the step budget and the anchor
source change. A fit whose adapter is already saved is not repeated (a killed loop resumes there).
"""

from __future__ import annotations

from pathlib import Path

from sam3_adapt.fitting.lightning_cli import lightning_cli
from sam3_adapt.fitting.recipe_files import recipe_path
from sam3_adapt.model.persistence import save_trained


def fit_labels(
    labels: str | Path,
    image_root: str | Path,
    out: str | Path,
    *,
    recipe: str = "tiny-10shot",
    base: str | None = None,
    anchor_json: str | Path | None = None,
    anchor_image_dir: str | Path | None = None,
    max_steps: int = 300,
    seed: int = 0,
) -> Path:
    """Fit the recipe on ``labels`` (any format the kit reads) and save the adapter under ``out``.

    Args:
        labels: The training labels (an engine export: SA-Co-style pairs under ``image_root``).
        image_root: The folder the labels' ``file_name`` values are relative to.
        out: The fit's folder: ``fit/`` (checkpoints) and ``adapter/``.
        recipe: The recipe (its model, optimiser and data settings).
        base: Base model instead of the recipe's.
        anchor_json: Anchor data mixed in at the recipe's ``data.anchor_ratio``; ``None``: no mixing.
        anchor_image_dir: Its images.
        max_steps: Optimizer steps.
        seed: Seed of training.

    Returns:
        The adapter folder.
    """
    out = Path(out)
    adapter = out / "adapter"
    if (adapter / "adapter_config.json").is_file():
        return adapter
    args = [
        "--config",
        str(recipe_path(recipe)),
        f"--seed_everything={seed}",
        f"--data.train_json={labels}",
        f"--data.image_dir={image_root}",
        f"--data.seed={seed}",
        f"--trainer.default_root_dir={out / 'fit'}",
        "--trainer.logger=false",
        f"--trainer.max_steps={max_steps}",
        "--trainer.max_epochs=-1",
    ]
    if base is not None:
        args.append(f"--model.checkpoint={base}")
    if anchor_json is not None:
        args += [f"--data.anchor_json={anchor_json}", f"--data.anchor_image_dir={anchor_image_dir}"]
    cli = lightning_cli(args, run=False)
    cli.trainer.fit(cli.model, cli.datamodule)
    saved, _ = save_trained(cli.model.segmenter.network, out, str(cli.model.hparams.checkpoint))
    assert saved is not None, "the engine's recipes train LoRA adapters"
    return saved
