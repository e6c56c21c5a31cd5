"""The Lightning task: promptable concept segmentation with SAM 3, trained with the SAM 3 objective."""

from __future__ import annotations

from dataclasses import asdict
from typing import Any, Literal

import torch
from lightning import LightningModule
from lightning.pytorch.utilities import rank_zero_info

from adapt.coco_results import to_coco_results
from adapt.metrics import ConceptEvaluator
from adapt.objective import ConceptObjective, queries_needing_masks
from adapt.predictions import detections_per_query
from adapt.schedule import cosine_schedule, inverse_sqrt_schedule
from model.adaptation import LoraSettings, apply_full_finetune, apply_lora, describe_trainable
from model.forward import ConceptSegmenter
from model.loading import load_sam3
from model.memory import enable_activation_checkpointing
from model.outputs import ConceptOutputs
from model.param_groups import param_groups
from model.persistence import load_adapter


class ConceptSegmentationTask(LightningModule):
    """Fine-tune SAM 3 on (image, noun phrase) queries with LoRA or full fine-tuning.

    Every constructor argument is a recipe key under ``model:`` (``--model.<name>`` on the CLI).

    Args:
        checkpoint: Base SAM 3: hub id (``facebook/sam3``), local HF-format folder, or a built-in
            short name (``tiny``, ``tiny-random``).
        adapter: Optional PEFT adapter (hub id or folder) to start from instead of a fresh LoRA.
        adaptation: ``lora`` trains low-rank adapters only (``lora`` settings); ``full`` trains every
            weight except the components in ``freeze``.
        lora: LoRA settings (preset, rank, alpha, dropout, ...); used when ``adaptation`` is ``lora``.
        freeze: Components kept frozen under full fine-tuning, e.g. ``["text_encoder"]``.
        lr_detector: Learning rate of the detector (geometry/DETR encoder and decoder, mask decoder,
            scoring, text projection) and of LoRA weights placed there.
        lr_vision: Learning rate of the last ViT block; earlier blocks get ``layer_decay`` powers of it.
        lr_text: Learning rate of the CLIP text encoder.
        weight_decay: AdamW weight decay (0 on biases and norms).
        layer_decay: Layer-wise learning-rate decay over the ViT blocks.
        warmup_steps: Linear warm-up steps of the learning-rate schedule.
        schedule: ``inverse_sqrt`` (the SAM 3 fine-tuning recipe) or ``cosine`` (decays to 5% of the
            base rates at the trainer's last step; used to pretrain from scratch).
        mask_loss: Train masks (focal + dice). ``false`` for box-only data switches all mask terms off;
            instances without masks never get a mask loss either way.
        pos_weight: Weight of matched predictions in the IA-BCE classification loss (10 RF100-VL, 5 ODinW).
        aux_loss: Apply box, classification and presence losses on every decoder layer, not only the last.
        loss_weights: Overrides of the objective's term weights, e.g. ``{weight_class: 20.0}``.
        score_threshold: Score above which a detection counts as predicted (cgF1, predictions file).
        max_detections: Detections kept per (image, phrase) pair for evaluation and prediction.
        activation_checkpointing: Recompute transformer blocks in the backward pass instead of storing
            their activations (less GPU memory, about a third more compute).
    """

    def __init__(
        self,
        checkpoint: str = "facebook/sam3",
        adapter: str | None = None,
        adaptation: Literal["lora", "full"] = "lora",
        lora: LoraSettings | dict[str, Any] | None = None,
        freeze: list[str] | None = None,
        lr_detector: float = 8e-5,
        lr_vision: float = 2.5e-5,
        lr_text: float = 5e-6,
        weight_decay: float = 0.1,
        layer_decay: float = 0.9,
        warmup_steps: int = 20,
        schedule: Literal["inverse_sqrt", "cosine"] = "inverse_sqrt",
        mask_loss: bool = True,
        pos_weight: float = 10.0,
        aux_loss: bool = True,
        loss_weights: dict[str, float] | None = None,
        score_threshold: float = 0.5,
        max_detections: int = 100,
        activation_checkpointing: bool = False,
    ) -> None:
        super().__init__()
        # Stored as a plain dict so checkpoints and hparams.yaml stay readable without this class.
        lora = asdict(lora) if isinstance(lora, LoraSettings) else lora
        self.save_hyperparameters()
        # Frozen base weights come from `checkpoint` at construction; Lightning checkpoints hold only
        # what trains (see on_save_checkpoint), so loading them is not strict.
        self.strict_loading = False
        self.segmenter = self._build_segmenter()
        self.objective = ConceptObjective(
            mask_loss=mask_loss, pos_weight=pos_weight, aux_loss=aux_loss, **(loss_weights or {})
        )
        self.evaluator: ConceptEvaluator | None = None

    def _build_segmenter(self) -> ConceptSegmenter:
        hp = self.hparams
        network, processor = load_sam3(hp.checkpoint)
        if hp.adapter is not None:
            network = load_adapter(network, hp.adapter, expected_base=hp.checkpoint, trainable=True)
        elif hp.adaptation == "lora":
            network = apply_lora(network, LoraSettings(**(hp.lora or {})))
        else:
            network = apply_full_finetune(network, freeze=hp.freeze or [])
        if hp.activation_checkpointing:
            enable_activation_checkpointing(network)
        network.train()
        return ConceptSegmenter(network, processor.tokenizer)

    def forward(self, batch: dict[str, Any], mask_queries: torch.Tensor | None = None) -> ConceptOutputs:
        """Run every query of ``batch`` (the ``data_mix`` batch layout) through the network."""
        return self.segmenter(
            batch["pixel_values"],
            batch["phrases"],
            batch["query_image_index"],
            exemplar_boxes=batch.get("exemplar_boxes"),
            exemplar_labels=batch.get("exemplar_labels"),
            mask_queries=mask_queries,
        )

    def on_fit_start(self) -> None:
        """Report what trains, and refuse phrases that do not fit the text encoder before any step."""
        rank_zero_info(describe_trainable(self.segmenter.network))
        self._check_phrases()

    def _check_phrases(self) -> None:
        datamodule = getattr(self.trainer, "datamodule", None)
        if datamodule is None or not hasattr(datamodule, "phrase_origins"):
            return
        for phrase, origin in datamodule.phrase_origins():
            self.segmenter.check_phrase(phrase, origin)

    def training_step(self, batch: dict[str, Any], batch_idx: int) -> torch.Tensor:
        """One step of the SAM 3 objective; masks are decoded only for queries that have masks to learn."""
        targets = batch["targets"]
        mask_queries = queries_needing_masks(targets, mask_loss=self.hparams.mask_loss)
        losses = self.objective(self(batch, mask_queries=mask_queries), targets)
        size = len(batch["phrases"])
        self.log_dict({f"train/{k}": v for k, v in losses.items() if k != "loss"}, batch_size=size)
        self.log("train/loss", losses["loss"], prog_bar=True, batch_size=size)
        return losses["loss"]

    def _detections(self, batch: dict[str, Any]):
        with_masks = None if self.hparams.mask_loss else batch["query_image_index"].new_zeros(0)
        outputs = self(batch, mask_queries=with_masks)
        return detections_per_query(
            outputs, batch["orig_sizes"], batch["query_image_index"], top_k=self.hparams.max_detections
        )

    def on_validation_epoch_start(self) -> None:
        """Start a fresh evaluator on the validation set's original COCO annotations."""
        self._start_evaluation("val")

    def on_test_epoch_start(self) -> None:
        """Start a fresh evaluator on the test set's original COCO annotations."""
        self._start_evaluation("test")

    def _start_evaluation(self, split: str) -> None:
        self.evaluator = ConceptEvaluator(
            self.trainer.datamodule.gt_coco(split),
            iou_types=("bbox", "segm") if self.hparams.mask_loss else ("bbox",),
            score_threshold=self.hparams.score_threshold,
            max_dets=self.hparams.max_detections,
        )

    def validation_step(self, batch: dict[str, Any], batch_idx: int) -> None:
        """Predict every query and hand the detections to the evaluator."""
        detections = self._detections(batch)
        image_ids = batch["image_ids"][batch["query_image_index"]].tolist()
        for image_id, category_id, found in zip(image_ids, batch["query_category_ids"].tolist(), detections):
            self.evaluator.add(
                image_id, category_id, found.boxes.cpu(), found.scores.cpu(), _cpu(found.masks)
            )

    def test_step(self, batch: dict[str, Any], batch_idx: int) -> None:
        """Same as :meth:`validation_step`, on the test set."""
        self.validation_step(batch, batch_idx)

    def on_validation_epoch_end(self) -> None:
        """Compute COCO AP and cgF1 and log them as ``val/<name>``."""
        self._log_evaluation("val")

    def on_test_epoch_end(self) -> None:
        """Compute COCO AP and cgF1 and log them as ``test/<name>``."""
        self._log_evaluation("test")

    def _log_evaluation(self, prefix: str) -> None:
        metrics = self.evaluator.compute()
        self.log_dict({f"{prefix}/{k}": float(v) for k, v in metrics.items()}, sync_dist=True)
        self.evaluator = None

    def predict_step(self, batch: dict[str, Any], batch_idx: int) -> list[dict[str, Any]]:
        """COCO result records (boxes in xywh, masks as RLE) for every query of the batch."""
        detections = self._detections(batch)
        image_ids = batch["image_ids"][batch["query_image_index"]].tolist()
        records = []
        for image_id, category_id, found in zip(image_ids, batch["query_category_ids"].tolist(), detections):
            records += to_coco_results(
                image_id, category_id, found.boxes.cpu(), found.scores.cpu(), _cpu(found.masks)
            )
        return records

    def configure_optimizers(self) -> dict[str, Any]:
        """AdamW on the SAM 3 reference's parameter groups, with warm-up and the chosen decay."""
        hp = self.hparams
        groups = param_groups(
            self.segmenter.network,
            lr_detector=hp.lr_detector,
            lr_vision=hp.lr_vision,
            lr_text=hp.lr_text,
            weight_decay=hp.weight_decay,
            layer_decay=hp.layer_decay,
        )
        on_cuda = next(self.parameters()).is_cuda
        optimizer = torch.optim.AdamW(groups, fused=on_cuda or None, foreach=None if on_cuda else True)
        if hp.schedule == "cosine":
            total = int(self.trainer.estimated_stepping_batches)
            scheduler = cosine_schedule(optimizer, hp.warmup_steps, total)
        else:
            scheduler = inverse_sqrt_schedule(optimizer, hp.warmup_steps)
        return {"optimizer": optimizer, "lr_scheduler": {"scheduler": scheduler, "interval": "step"}}

    def on_save_checkpoint(self, checkpoint: dict[str, Any]) -> None:
        """Keep only trained weights: frozen base weights are reloaded from ``checkpoint`` anyway."""
        trainable = {name for name, p in self.named_parameters() if p.requires_grad}
        state = checkpoint["state_dict"]
        for key in [k for k in state if k not in trainable]:
            del state[key]


def _cpu(masks: torch.Tensor | None) -> torch.Tensor | None:
    return None if masks is None else masks.cpu()
