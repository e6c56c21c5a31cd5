"""The Lightning task: promptable concept segmentation with SAM 3, trained with the SAM 3 objective."""

from __future__ import annotations

from dataclasses import asdict
from typing import Any, Literal

import torch
import torch.distributed as dist
from lightning import LightningModule
from lightning.pytorch.utilities import rank_zero_info, rank_zero_warn

from sam3_adapt.data_mix.batch import ConceptBatch, EvaluationData, Split
from sam3_adapt.model.adaptation import LoraSettings, adapt_network, describe_trainable
from sam3_adapt.model.checkpoints import resolve_checkpoint
from sam3_adapt.model.detections import PHRASE_CHUNK, QueryDetections, detect
from sam3_adapt.model.forward import ConceptSegmenter
from sam3_adapt.model.loading import load_segmenter
from sam3_adapt.model.outputs import ConceptOutputs
from sam3_adapt.model.param_groups import param_groups
from sam3_adapt.training.chunked_step import check_chunk, objective_step
from sam3_adapt.training.coco_results import to_coco_results
from sam3_adapt.training.loss import ConceptObjective
from sam3_adapt.training.matcher import DIVERGED_HINT, DivergedError
from sam3_adapt.training.memory_estimate import auto_chunk
from sam3_adapt.training.metrics import ConceptEvaluator
from sam3_adapt.training.schedule import cosine_schedule, inverse_sqrt_schedule

#: Said once when the built-in tiny base is fitted on data that is not the kit's synthetic world.
TINY_ON_REAL_DATA = (
    "the base is the built-in tiny SAM 3, a stand-in pretrained on a synthetic world of coloured shapes: "
    "it scores 0 AP on real photographs before and after adaptation, so this fit can teach it little. "
    "Real pictures need facebook/sam3 (--model.checkpoint facebook/sam3, e.g. --config lora-10shot on a GPU)"
)


class ConceptSegmentationTask(LightningModule):
    """Fine-tune SAM 3 on (image, noun phrase) queries with LoRA or full fine-tuning.

    Every constructor argument is a recipe key under ``model:`` (``--model.<name>`` on the CLI).

    Several GPUs or nodes go through Lightning's DDP with
    ``strategy: ddp_find_unused_parameters_true``: some trainable weights get no gradient in a step
    (the geometry encoder without exemplar prompts, the mask decoder on a process whose queries are
    all negatives). The objective normalises by counts of the global batch and validation gathers
    every process's predictions, so losses, gradients and metrics do not depend on the split.

    Args:
        checkpoint: Base SAM 3: hub id (``facebook/sam3``), local HF-format folder, or a built-in
            short name (``tiny``, ``tiny-random``). Required: there is no default model.
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
            base rates at the trainer's last step; keeps the rate up through a short run, so
            ``tiny-10shot`` and ``pretrain-tiny`` use it).
        mask_loss: Train masks (focal + dice). ``false`` for box-only data switches all mask terms off;
            instances without masks never get a mask loss either way.
        pos_weight: Weight of matched predictions in the IA-BCE classification loss (10 RF100-VL, 5 ODinW).
        aux_loss: Apply box, classification and presence losses on every decoder layer, not only the last.
        loss_weights: Overrides of the objective's term weights, e.g. ``{weight_class: 20.0}``.
        class_pad_slots: Slots per exhaustive query the class term divides by at least: 200, the
            reference's ``pad_n_queries``, keeps the term's scale whatever the model's slot count;
            ``null`` divides by the model's own slots (20 for the tiny model: a class term 10x
            the reference's, what ``tiny-10shot`` and the tiny base were tuned with).
        score_threshold: Score above which a detection counts as predicted (cgF1, predictions file).
        max_detections: Detections kept per (image, phrase) pair for evaluation and prediction.
        activation_checkpointing: Recompute transformer blocks in the backward pass instead of storing
            their activations (less GPU memory, about a third more compute).
        feature_cache: Keep the outputs of the frozen towers (vision and/or text encoder) across epochs:
            ``memory`` (CPU memory of each process) or ``disk`` (``feature_cache_dir``, shared by
            processes and runs). Entries are keyed by the exact pixels and the frozen weights, so it
            pays only when the same images come back unchanged (``augment: false``); with random
            augmentation every epoch draws new pixels. Needs a frozen tower (LoRA presets without
            vision, or ``freeze: [vision_encoder]``).
        phrase_chunk: Queries (image, phrase pairs) per detector pass in training, validation and
            prediction, so that memory stays flat in the phrases per image: a training step then
            caches the gradients of each chunk and gives the same losses and gradients as the whole
            batch at once (:mod:`~sam3_adapt.training.chunked_step`). ``auto`` picks the largest chunk
            whose estimated peak memory fits ``memory_budget_gb``; ``null`` runs every query at once.
        memory_budget_gb: GPU memory (GiB) the ``auto`` chunk must fit; default 90% of the card's
            memory, and no chunking on a CPU. ``sam3-adapt memory`` prints the estimates.
        feature_cache_dir: Folder of the disk cache.
        feature_cache_max_gb: Size limit of a memory cache per tower (least recently used entries go);
            unlimited when unset. One 1008 px image takes about 56 MB in bf16 (113 MB in float32).
            A memory cache is per process: under DDP each process sees other images every epoch,
            so use ``disk`` on a folder all processes share.
    """

    def __init__(
        self,
        checkpoint: str,
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
        class_pad_slots: int | None = 200,
        score_threshold: float = 0.5,
        max_detections: int = 100,
        activation_checkpointing: bool = False,
        feature_cache: Literal["none", "memory", "disk"] = "none",
        feature_cache_dir: str | None = None,
        feature_cache_max_gb: float | None = None,
        phrase_chunk: int | Literal["auto"] | None = None,
        memory_budget_gb: float | None = None,
    ) -> None:
        super().__init__()
        if feature_cache == "disk" and feature_cache_dir is None:
            raise ValueError("feature_cache: disk needs feature_cache_dir (--model.feature_cache_dir)")
        # Stored as a plain dict so checkpoints and hparams.yaml stay readable without this class.
        lora = asdict(lora) if isinstance(lora, LoraSettings) else lora
        self.save_hyperparameters()
        # Frozen base weights come from `checkpoint` at construction; Lightning checkpoints hold only
        # what trains (see on_save_checkpoint), so loading them is not strict.
        self.strict_loading = False
        self.segmenter = self._build_segmenter()
        self.objective = ConceptObjective(
            mask_loss=mask_loss,
            pos_weight=pos_weight,
            aux_loss=aux_loss,
            pad_slots=class_pad_slots,
            **(loss_weights or {}),
        )
        self.evaluator: ConceptEvaluator | None = None
        self._cache_counts = (0, 0)
        if phrase_chunk != "auto":
            check_chunk(phrase_chunk)
        self.chunk: int | None = None if phrase_chunk == "auto" else phrase_chunk

    def _build_segmenter(self) -> ConceptSegmenter:
        hp = self.hparams
        segmenter = load_segmenter(hp.checkpoint, hp.adapter, adapter_trainable=True)
        adaptation = None if hp.adapter is not None else hp.adaptation  # an adapter trains as loaded
        segmenter.network = adapt_network(
            segmenter.network, adaptation, hp.lora, hp.freeze, hp.activation_checkpointing
        )
        segmenter.train()
        if hp.feature_cache != "none":
            segmenter.use_feature_cache(hp.feature_cache, hp.feature_cache_dir, hp.feature_cache_max_gb)
        return segmenter

    def forward(self, batch: ConceptBatch, mask_queries: torch.Tensor | None = None) -> ConceptOutputs:
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
        if self.hparams.feature_cache != "none":
            segmenter = self.segmenter
            caches = {"vision_encoder": segmenter.vision_cache, "text_encoder": segmenter.text_cache}
            cached = [name for name, cache in caches.items() if cache is not None]
            rank_zero_info(f"feature cache ({self.hparams.feature_cache}) on the frozen {', '.join(cached)}")
        self._check_phrases()
        self._warn_if_tiny_on_real_data()

    def _evaluation_data(self) -> EvaluationData | None:
        """The trainer's data module when it offers ground truth and phrase origins (`EvaluationData`)."""
        datamodule = getattr(self.trainer, "datamodule", None)
        return datamodule if isinstance(datamodule, EvaluationData) else None

    def _warn_if_tiny_on_real_data(self) -> None:
        data = getattr(self.trainer, "datamodule", None)
        synthetic = getattr(data, "trains_on_synthetic_world", None)
        if synthetic is None or resolve_checkpoint(self.hparams.checkpoint) != resolve_checkpoint("tiny"):
            return
        if not synthetic():
            rank_zero_warn(TINY_ON_REAL_DATA)

    def _check_phrases(self) -> None:
        data = self._evaluation_data()
        for phrase, origin in data.phrase_origins() if data is not None else []:
            self.segmenter.check_phrase(phrase, origin)

    def setup(self, stage: str) -> None:
        """Choose the ``auto`` phrase chunk from the memory estimate, before the first batch."""
        if self.hparams.phrase_chunk == "auto" and self.chunk is None:
            self.chunk = auto_chunk(self, self._image_size(), self.hparams.memory_budget_gb)

    def _image_size(self) -> int:
        data = getattr(getattr(self.trainer, "datamodule", None), "hparams", {})
        size = data.get("image_size") or self.segmenter.image_size
        return int(size or self.segmenter.sam3.config.vision_config.backbone_config.image_size)

    def training_step(self, batch: ConceptBatch, batch_idx: int) -> torch.Tensor:
        """One step of the SAM 3 objective, queries in chunks of ``phrase_chunk``.

        Masks are decoded only for queries that have masks to learn.
        """
        step = objective_step(self.segmenter, self.objective, batch, self.chunk)
        if not torch.isfinite(step.loss):
            raise DivergedError(
                f"training diverged at step {self.global_step}: the loss is {float(step.loss)}; "
                + DIVERGED_HINT
            )
        size = len(batch["phrases"])
        self.log_dict({f"train/{k}": v for k, v in step.terms.items()}, batch_size=size)
        self.log("train/loss", step.loss.detach(), prog_bar=True, batch_size=size)
        return step.loss

    def on_train_epoch_start(self) -> None:
        """Remember the vision cache's counters, to report this epoch's hit rate."""
        cache = self.segmenter.vision_cache
        self._cache_counts = (0, 0) if cache is None else (cache.hits, cache.misses)

    def on_train_epoch_end(self) -> None:
        """Log the vision cache's hit rate over the epoch, and say when it never hits after the first."""
        cache = self.segmenter.vision_cache
        if cache is None:
            return
        hits, misses = cache.hits - self._cache_counts[0], cache.misses - self._cache_counts[1]
        rate = hits / max(1, hits + misses)
        self.log("train/feature_cache_hit_rate", rate)
        if self.current_epoch > 0 and hits == 0:
            rank_zero_warn(
                "the feature cache had no hit this epoch: the training images change every epoch (random "
                "augmentation?), so caching only costs time and space; use augment: false or "
                "feature_cache: none"
            )

    def _detections(self, batch: ConceptBatch) -> list[QueryDetections]:
        return detect(
            self.segmenter,
            batch["pixel_values"],
            batch["phrases"],
            batch["query_image_index"],
            batch["orig_sizes"],
            top_k=self.hparams.max_detections,
            masks=self.hparams.mask_loss,
            exemplar_boxes=batch.get("exemplar_boxes"),
            exemplar_labels=batch.get("exemplar_labels"),
            phrase_chunk=self.chunk or PHRASE_CHUNK,
        )

    def on_validation_epoch_start(self) -> None:
        """Start a fresh evaluator on the validation set's original COCO annotations."""
        self._start_evaluation("val")

    def on_test_epoch_start(self) -> None:
        """Start a fresh evaluator on the test set's original COCO annotations."""
        self._start_evaluation("test")

    def _start_evaluation(self, split: Split) -> None:
        data = self._evaluation_data()
        if data is None or data.gt_coco(split) is None:
            raise TypeError(
                f"{split} metrics need the ground truth of the {split} set: pass a data module that "
                "implements sam3_adapt.data_mix.batch.EvaluationData (gt_coco, phrase_origins), such as "
                "ConceptDataModule"
            )
        self.evaluator = ConceptEvaluator(
            data.gt_coco(split),
            iou_types=("bbox", "segm") if self.hparams.mask_loss else ("bbox",),
            score_threshold=self.hparams.score_threshold,
            max_dets=self.hparams.max_detections,
        )

    def validation_step(self, batch: ConceptBatch, batch_idx: int) -> None:
        """Predict every query and hand the detections to the evaluator."""
        detections = self._detections(batch)
        image_ids = batch["image_ids"][batch["query_image_index"]].tolist()
        for image_id, category_id, found in zip(image_ids, batch["query_category_ids"].tolist(), detections):
            self.evaluator.add(
                image_id, category_id, found.boxes.cpu(), found.scores.cpu(), _cpu(found.masks)
            )

    def test_step(self, batch: ConceptBatch, batch_idx: int) -> None:
        """Same as :meth:`validation_step`, on the test set."""
        self.validation_step(batch, batch_idx)

    def on_validation_epoch_end(self) -> None:
        """Compute COCO AP and cgF1 and log them as ``val/<name>``."""
        self._log_evaluation("val")

    def on_test_epoch_end(self) -> None:
        """Compute COCO AP and cgF1 and log them as ``test/<name>``."""
        self._log_evaluation("test")

    def _log_evaluation(self, prefix: str) -> None:
        # AP and cgF1 are not averages of per-process values: every process gathers all pairs and
        # computes the same metrics on the whole set.
        if dist.is_available() and dist.is_initialized() and dist.get_world_size() > 1:
            shards = [None] * dist.get_world_size()
            dist.all_gather_object(shards, self.evaluator.export())
            for shard in shards:
                self.evaluator.merge(shard)
        metrics = self.evaluator.compute()
        # Equal on every process, so averaging them (sync_dist) changes nothing but Lightning's warning.
        self.log_dict({f"{prefix}/{k}": float(v) for k, v in metrics.items()}, sync_dist=True)
        self.evaluator = None

    def predict_step(self, batch: ConceptBatch, batch_idx: int) -> list[dict[str, Any]]:
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
        clips = bool(self.trainer.gradient_clip_val)
        optimizer = torch.optim.AdamW(groups, **adamw_options(on_cuda, clips))
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


def adamw_options(on_cuda: bool, clips_gradients: bool) -> dict[str, bool]:
    """The AdamW implementation to use: fused on a GPU, unless gradients are clipped.

    A fused AdamW unscales gradients inside its own step, so Lightning's mixed-precision plugins
    (``bf16-mixed``, ``16-mixed``) refuse to clip its gradients; with clipping on, the multi-tensor
    (``foreach``) implementation is the fast one that allows it.

    Args:
        on_cuda: Whether the parameters live on a CUDA device.
        clips_gradients: Whether the trainer clips gradients (``gradient_clip_val`` set).

    Returns:
        Keyword arguments for ``torch.optim.AdamW``.
    """
    if on_cuda and not clips_gradients:
        return {"fused": True}
    return {"foreach": True}


def _cpu(masks: torch.Tensor | None) -> torch.Tensor | None:
    return None if masks is None else masks.cpu()
