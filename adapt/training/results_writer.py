"""Write what ``sam3-adapt predict`` finds as a COCO results file (boxes in xywh, masks as RLE)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from lightning import LightningModule, Trainer
from lightning.pytorch.callbacks import BasePredictionWriter

from sam3_adapt.training.coco_results import write_coco_results


class CocoResultsWriter(BasePredictionWriter):
    """Collect the task's per-batch COCO records and write them once prediction ends.

    Args:
        output_path: Where to write the JSON list of COCO result records. With several processes,
            each writes ``<stem>.rank<N>.json`` beside it.
    """

    def __init__(self, output_path: str = "predictions.json") -> None:
        super().__init__(write_interval="epoch")
        self.output_path = Path(output_path)

    def write_on_epoch_end(
        self,
        trainer: Trainer,
        pl_module: LightningModule,
        predictions: Any,
        batch_indices: Any,
    ) -> None:
        """Flatten the records of every predict dataloader and write them."""
        records = list(_records(predictions))
        path = self.output_path
        if trainer.world_size > 1:
            path = path.with_name(f"{path.stem}.rank{trainer.global_rank}{path.suffix}")
        write_coco_results(path, records)
        print(f"wrote {len(records)} detections to {path}")


def _records(nested: Any):
    """Yield the record dicts of a list of batches (one loader) or of a list of such lists (several)."""
    if isinstance(nested, dict):
        yield nested
    else:
        for item in nested:
            yield from _records(item)
