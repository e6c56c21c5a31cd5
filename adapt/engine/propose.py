"""``sam3-adapt propose``: the current model proposes masks for a phrase list over an unlabelled pool.

For every (image, phrase) it records the presence score, the instances above the threshold (RLE
mask, box, score) and the verifier signals (`sam3_adapt.engine.signals`). The phrases of an image
go through the model together (vision runs once per image; twice with the mirrored pass). It runs
in Lightning's predict loop, so ``--trainer.devices`` / ``--trainer.num_nodes`` shard the pool over
processes: each writes its own shard and reading merges them. Killed, the same command skips the
images already written.
"""

from __future__ import annotations

import json
import sys
from collections import defaultdict
from dataclasses import dataclass
from pathlib import Path
from statistics import median
from typing import Any, Literal

import lightning as L
import torch
from torch.utils.data import DataLoader

from sam3_adapt.data_mix.readers.sources import read_source
from sam3_adapt.data_mix.samples import ConceptSample
from sam3_adapt.engine.pool import PoolImage, pool_samples, read_phrases, read_pool
from sam3_adapt.engine.signals import pair_record
from sam3_adapt.engine.store import ShardWriter, open_run, read_proposals
from sam3_adapt.inference.loop import predict_samples
from sam3_adapt.model.forward import ConceptSegmenter
from sam3_adapt.model.loading import load_segmenter


@dataclass
class TrainerOptions:
    """Where ``propose`` runs: Lightning ``Trainer`` settings (``--trainer.devices 2`` on the command line).

    Attributes:
        devices: Processes per node; each proposes for its share of the pool and writes its own shard.
        num_nodes: Nodes.
        accelerator: ``cpu``, ``gpu`` or ``auto``.
        strategy: Lightning strategy; several CPU processes need ``ddp_spawn`` (or ``ddp`` when launched
            by ``torchrun``).
    """

    devices: int | str = 1
    num_nodes: int = 1
    accelerator: str = "auto"
    strategy: str = "auto"


class ProposalTask(L.LightningModule):
    """Lightning's predict loop around the kit's one predict loop: each step proposes for a few images.

    Args:
        segmenter: The model (base + adapter).
        folder: The proposals folder; process ``r`` appends to ``shard-<r>.jsonl``.
        images: The pool's images by sample id.
        threshold: Score from which a detection is a proposed instance.
        near_low: Score from which a detection below ``threshold`` is a near-threshold leftover.
        typical_areas: Median labelled mask area of each phrase (pixels), for the size signal.
        image_size: Network input side.
        phrase_chunk: Phrases per detector pass.
    """

    def __init__(
        self,
        segmenter: ConceptSegmenter,
        folder: Path,
        images: dict[int, PoolImage],
        threshold: float,
        near_low: float,
        typical_areas: dict[str, float],
        image_size: int | None,
        phrase_chunk: int | None,
    ) -> None:
        super().__init__()
        self.segmenter = segmenter
        self.folder, self.images = folder, images
        self.threshold, self.near_low = threshold, near_low
        self.typical_areas, self.image_size, self.phrase_chunk = typical_areas, image_size, phrase_chunk
        self._writer: ShardWriter | None = None

    def on_predict_start(self) -> None:
        """Open this process's shard."""
        self._writer = ShardWriter(self.folder / f"shard-{self.global_rank}.jsonl")

    def on_predict_end(self) -> None:
        """Close it."""
        if self._writer is not None:
            self._writer.close()

    def predict_step(self, batch: list[ConceptSample], batch_idx: int) -> int:
        """Propose for the images of ``batch``, append one record per image to the shard; return how many."""
        common = {
            "image_size": self.image_size,
            "batch_size": len(batch),
            "min_score": self.near_low,
            "phrase_chunk": self.phrase_chunk,
        }
        plain = list(predict_samples(self.segmenter, batch, **common))
        flipped = list(predict_samples(self.segmenter, batch, hflip=True, **common))
        pairs: dict[int, list[dict[str, Any]]] = defaultdict(list)
        for a, b in zip(plain, flipped, strict=True):
            record = pair_record(
                a.detections, b.detections, self.threshold, self.near_low, self.typical_areas.get(a.phrase)
            )
            pairs[a.sample.image_id].append({"phrase": a.phrase, **record})
        assert self._writer is not None
        for sample in batch:
            image = self.images[sample.image_id]
            self._writer.write(
                {
                    "file_name": image.file_name,
                    "width": image.width,
                    "height": image.height,
                    "pairs": pairs[sample.image_id],
                }
            )
        return len(batch)


def typical_areas(labelled: str | None, image_dir: str | None) -> dict[str, float]:
    """Median instance area per phrase of a labelled set (the few shots), for the size signal."""
    if labelled is None:
        return {}
    areas: dict[str, list[float]] = defaultdict(list)
    for sample in read_source(labelled, image_dir).samples:
        for query in sample.positives:
            areas[query.phrase] += [inst.area for inst in query.instances]
    return {phrase: float(median(values)) for phrase, values in areas.items()}


def propose(
    pool: str,
    phrases: str | list[str],
    out: str,
    model: str = "tiny",
    adapter: str | None = None,
    image_dir: str | None = None,
    labelled: str | None = None,
    labelled_image_dir: str | None = None,
    threshold: float = 0.5,
    near_low: float = 0.2,
    images_per_step: int = 4,
    phrase_chunk: int | None = 32,
    image_size: int | None = None,
    on_error: Literal["skip", "raise"] = "skip",
    trainer: TrainerOptions | None = None,
    progress: bool = True,
) -> dict[str, Any]:
    """Propose masks for a phrase list over an unlabelled pool with a base + adapter, resumably.

    Args:
        pool: A folder of images, or a COCO JSON listing them (labels missing or partial).
        phrases: The domain's vocabulary plus candidate hard negatives: a list, or a text file with
            one phrase a line.
        out: The proposals folder (``run.json``, ``shard-<rank>.jsonl``); a second call with the same
            settings resumes, skipping the images already done.
        model: Base SAM 3: hub id, local folder, or ``tiny``.
        adapter: PEFT adapter trained on ``model``.
        image_dir: For a COCO pool, the folder its ``file_name`` values are relative to.
        labelled: The labelled set (COCO or SA-Co file) whose instance sizes the size signal compares with.
        labelled_image_dir: Its images.
        threshold: Score from which a detection is a proposed instance.
        near_low: Score from which a detection below ``threshold`` is a near-threshold leftover (EV).
        images_per_step: Images per predict step.
        phrase_chunk: Phrases per detector pass.
        image_size: Network input side; default: the model's.
        on_error: ``skip`` an unreadable pool image (named, and counted in the summary) or ``raise``.
        trainer: Where it runs (`TrainerOptions`): ``--trainer.devices 2 --trainer.num_nodes 4`` shard
            the pool over processes and nodes; default one process, a GPU when there is one.
        progress: Show Lightning's progress bar.

    Returns:
        A summary: ``run_id``, ``images`` (proposed in all), ``new`` (this call), ``skipped_unreadable``
        (names), ``pairs`` and ``instances``.

    Raises:
        sam3_adapt.engine.pool.PoolError: On an empty pool or phrase list, or an unreadable image with
            ``on_error="raise"``.
        sam3_adapt.engine.store.ProposalRunError: If ``out`` holds proposals made with other settings.
        ValueError: If the adapter was trained on another base.
    """
    if not 0.0 < near_low <= threshold <= 1.0:
        raise ValueError(f"need 0 < near_low <= threshold <= 1, got {near_low} and {threshold}")
    phrase_list = read_phrases(phrases)
    images, unreadable = read_pool(pool, image_dir, on_error)
    for line in unreadable:
        print(f"skipped unreadable image {line}", file=sys.stderr)
    settings = {
        "pool": str(pool),
        "model": model,
        "adapter": adapter,
        "phrases": phrase_list,
        "threshold": threshold,
        "near_low": near_low,
        "image_size": image_size,
        "labelled": labelled,
    }
    folder = Path(out)
    segmenter = load_segmenter(model, adapter)  # checks the adapter's base before anything is written
    for phrase in phrase_list:
        segmenter.check_phrase(phrase, f"phrase list {phrases if isinstance(phrases, str) else ''}".strip())
    run_id = open_run(folder, settings)
    done = set(read_proposals(folder))
    pending = [image for image in images if image.file_name not in done]
    samples = pool_samples(pending, phrase_list)
    by_id = {sample.image_id: image for sample, image in zip(samples, pending, strict=True)}
    if samples:
        where = trainer or TrainerOptions()
        task = ProposalTask(
            segmenter,
            folder,
            by_id,
            threshold,
            near_low,
            typical_areas(labelled, labelled_image_dir),
            image_size,
            phrase_chunk,
        )
        runner = L.Trainer(
            accelerator=where.accelerator,
            devices=where.devices,
            num_nodes=where.num_nodes,
            strategy=where.strategy,
            logger=False,
            enable_checkpointing=False,
            enable_model_summary=False,
            enable_progress_bar=progress,
        )
        loader = DataLoader(samples, batch_size=images_per_step, shuffle=False, collate_fn=list)
        with torch.inference_mode():
            runner.predict(task, loader, return_predictions=False)
    records = read_proposals(folder)
    summary = {
        "run_id": run_id,
        "images": len(records),
        "new": len(pending),
        "skipped_unreadable": unreadable,
        "pairs": sum(len(r["pairs"]) for r in records.values()),
        "instances": sum(len(p["instances"]) for r in records.values() for p in r["pairs"]),
    }
    (folder / "summary.json").write_text(json.dumps(summary, indent=1) + "\n")
    print(
        f"proposals of {summary['images']} image(s) ({summary['new']} new, "
        f"{len(unreadable)} unreadable skipped), {summary['instances']} instance(s) in {folder}"
    )
    return summary
