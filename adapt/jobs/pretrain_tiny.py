"""Pretrain the built-in tiny SAM 3 on the concept world's anchor data (``sam3-adapt pretrain-tiny``).

This is how ``model/assets/tiny-sam3`` was made: a randomly initialised tiny ``Sam3Model`` trained
from scratch with the kit's own objective (negatives included) on the anchor world, then written
as an ordinary Hugging Face folder that ``load_sam3("tiny")`` loads.
"""

from __future__ import annotations

import json
import shutil
import time
from pathlib import Path

import lightning as L
import torch
from lightning.pytorch.callbacks import ModelCheckpoint
from lightning.pytorch.loggers import CSVLogger

from sam3_adapt.data_mix.datamodule import ConceptDataModule
from sam3_adapt.data_mix.synthetic.concept_world import write_world
from sam3_adapt.fitting.run_files import newest_last_checkpoint
from sam3_adapt.model.persistence import save_merged
from sam3_adapt.model.tiny import sam3_processor, write_tiny_random_sam3
from sam3_adapt.training.task import ConceptSegmentationTask

#: Objective weights for training from scratch: a tenth of the fine-tuning reference's class, mask
#: and dice weights (as in the FINDINGS probe), presence at half the reference, no sqrt(Q) scaling.
#: Presence is what takes longest to learn (it alone decides the score on absent phrases).
PRETRAIN_LOSS_WEIGHTS: dict[str, float | bool] = {
    "weight_class": 2.0,
    "weight_presence": 10.0,
    "weight_bbox": 5.0,
    "weight_giou": 2.0,
    "weight_mask": 20.0,
    "weight_dice": 1.0,
    "scale_by_sqrt_queries": False,
}


def pretrain_tiny(
    out: str = "model/assets/tiny-sam3",
    work_dir: str = "runs/pretrain-tiny",
    image_size: int = 168,
    train_images: int = 4000,
    val_images: int = 100,
    max_minutes: float = 70.0,
    max_steps: int = 7200,
    batch_size: int = 8,
    max_queries_per_image: int = 8,
    sibling_negatives: bool = True,
    lr: float = 1e-3,
    warmup_steps: int = 200,
    loss_weights: dict[str, float | bool] | None = None,
    aux_loss: bool = False,
    augment: bool = False,
    init_std: float = 0.1,
    val_every_steps: int = 500,
    seed: int = 0,
    ckpt_path: str | None = None,
) -> dict[str, float]:
    """Train a tiny SAM 3 from random weights on the anchor world and write it to ``out``.

    Args:
        out: Folder that receives ``config.json``, ``model.safetensors``, the processor files and
            ``provenance.json`` (settings, time, held-out anchor AP).
        work_dir: Where the generated world, logs and checkpoints go.
        image_size: Input side of the tiny model and of the generated images.
        train_images: Anchor-world training images (generated from ``seed``).
        val_images: Held-out anchor images (from seed ``2 * seed + 1``; training uses ``2 * seed``).
        max_minutes: Wall-clock budget of training.
        max_steps: Step budget of training (whichever budget ends first).
        batch_size: Images per step.
        max_queries_per_image: Phrases per image and step: its positives, then negatives (a fresh
            draw each time, hard ones first).
        sibling_negatives: Make the absent siblings of each positive phrase hard negatives ("blue
            circle" and "red square" where only red circles are), so every step asks for colour and
            for shape; without them the text side learns shape first and leaves colours alike.
        lr: Learning rate of every component (from scratch, so no per-component decay).
        warmup_steps: Linear warm-up before the cosine decay to 5% of ``lr`` at ``max_steps``.
        loss_weights: Objective term weights; default :data:`PRETRAIN_LOSS_WEIGHTS`.
        aux_loss: Also supervise the intermediate decoder layers.
        augment: Use the reference squash-and-pad augmentation. Off by default: it shrinks the
            objects to as little as 96/168 of their size, and from scratch the model then stayed on
            the presence plateau for the first 1,700 steps (no augmentation is needed for an
            endless generated world).
        val_every_steps: Held-out evaluation interval (logged to ``work_dir``).
        init_std: Standard deviation of the random initial weights (Hugging Face's default 0.02
            leaves the presence head of so narrow a model almost without gradient).
        seed: Seed of the world, the initial weights, the data order and the augmentation.
        ckpt_path: Resume an interrupted or extended run from this Lightning checkpoint (``last``
            for the newest in ``work_dir``); ``max_minutes`` and ``max_steps`` count the whole run.

    Returns:
        The final held-out anchor metrics.
    """
    L.seed_everything(seed)
    loss_weights = PRETRAIN_LOSS_WEIGHTS if loss_weights is None else loss_weights
    work = Path(work_dir)
    if ckpt_path == "last":  # Lightning alone would look only in this run's new version_N folder
        found = newest_last_checkpoint(work)
        if found is None:
            raise FileNotFoundError(f"--ckpt_path last: no last.ckpt under {work} to resume from")
        ckpt_path = str(found)
    train_json, train_dir = write_world(
        work / "anchor-train", "anchor", train_images, seed=2 * seed, image_size=image_size
    )
    val_json, val_dir = write_world(
        work / "anchor-val", "anchor", val_images, seed=2 * seed + 1, image_size=image_size
    )
    init = write_tiny_random_sam3(work / "init", seed=seed, image_size=image_size, init_std=init_std)
    data = ConceptDataModule(
        train_json=str(train_json),
        image_dir=str(train_dir),
        val_json=str(val_json),
        val_image_dir=str(val_dir),
        image_size=image_size,
        batch_size=batch_size,
        max_queries_per_image=max_queries_per_image,
        sibling_negatives=sibling_negatives,
        augment=augment,
        seed=seed,
    )
    task = ConceptSegmentationTask(
        checkpoint=str(init),
        adaptation="full",
        lr_detector=lr,
        lr_vision=lr,
        lr_text=lr,
        layer_decay=1.0,
        weight_decay=1e-4,
        warmup_steps=warmup_steps,
        schedule="cosine",
        aux_loss=aux_loss,
        loss_weights=loss_weights,
        # The shipped base was trained with the class term over its own 20 slots.
        class_pad_slots=None,
    )
    trainer = L.Trainer(
        accelerator="cpu",
        max_steps=max_steps,
        max_time={"minutes": max_minutes},
        val_check_interval=val_every_steps,
        check_val_every_n_epoch=None,
        gradient_clip_val=1.0,
        default_root_dir=str(work),
        logger=CSVLogger(str(work)),
        log_every_n_steps=25,
        num_sanity_val_steps=0,
        callbacks=[ModelCheckpoint(save_last=True)],  # last.ckpt, for `--ckpt_path last`
    )
    started = time.time()
    trainer.fit(task, data, ckpt_path=ckpt_path)
    minutes = (time.time() - started) / 60
    metrics = trainer.validate(task, data, verbose=False)[0]

    target = Path(out)
    if target.exists():
        shutil.rmtree(target)
    save_merged(task.segmenter.network.eval(), target, processor=sam3_processor(image_size))
    provenance = {
        "made_by": "sam3-adapt pretrain-tiny",
        "settings": {
            "image_size": image_size,
            "train_images": train_images,
            "val_images": val_images,
            "batch_size": batch_size,
            "max_queries_per_image": max_queries_per_image,
            "sibling_negatives": sibling_negatives,
            "lr": lr,
            "warmup_steps": warmup_steps,
            "schedule": "cosine",
            "max_steps": max_steps,
            "loss_weights": loss_weights,
            "aux_loss": aux_loss,
            "augment": augment,
            "init_std": init_std,
            "seed": seed,
            "torch": torch.__version__,
            "threads": torch.get_num_threads(),
        },
        "steps": trainer.global_step,
        "resumed_from": ckpt_path,
        "minutes": round(minutes, 1),
        "held_out_anchor": {k: round(float(v), 4) for k, v in metrics.items()},
    }
    (target / "provenance.json").write_text(json.dumps(provenance, indent=2) + "\n")
    print(json.dumps(provenance, indent=2))
    return metrics
