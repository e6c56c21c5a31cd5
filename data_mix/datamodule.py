"""Lightning DataModule over COCO files: train, validation and predict sets of concept queries."""

from __future__ import annotations

from typing import Any, Literal

import lightning as L
import torch
from torch.utils.data import ConcatDataset, DataLoader, Dataset

from data_mix.coco import CocoSet, read_coco_set
from data_mix.collate import VISUAL_PROMPT_TEXT, ConceptCollator
from data_mix.dataset import ConceptDataset
from data_mix.mixing import AnchorMixSampler
from data_mix.transforms import eval_transform, train_transform


class ConceptDataModule(L.LightningDataModule):
    """COCO files in, batches of images with many phrase queries out (see `data_mix.collate`).

    The train set is augmented as in the SAM 3 reference (random square squash and pad) unless
    ``augment`` is False; validation and predict sets are resized to ``image_size`` without padding,
    so their normalised outputs map back to original pixels by multiplying by width and height.
    Without ``val_json`` there is no validation loader and ``Trainer.fit`` skips validation.
    Loaders are deterministic given ``seed`` (and ``num_workers``).

    Args:
        train_json: COCO file of the training set; ``None`` when only validating or predicting.
        image_dir: Folder that the training images' ``file_name`` values are relative to.
        val_json: COCO file of the validation set; ``None`` for no validation.
        val_image_dir: Image folder of the validation set; defaults to ``image_dir``.
        test_json: COCO file of the test set (``sam3-adapt test``); ``None`` for none.
        test_image_dir: Image folder of the test set; defaults to ``val_image_dir``.
        predict_json: COCO file of the predict set (its categories give the phrases); defaults to
            ``val_json``.
        predict_image_dir: Image folder of the predict set; defaults to ``val_image_dir`` (which
            defaults to ``image_dir``).
        anchor_json: COCO file of general "anchor" data mixed into training so the model keeps what it
            knew (the SAM 3 paper mixes new-domain data 1:1 with general data); ``None`` for none.
        anchor_image_dir: Image folder of the anchor set; defaults to ``image_dir``.
        anchor_ratio: Anchor images drawn per training image each epoch (a fresh draw every epoch).
        image_size: Side of the square network input in pixels (1008 for SAM 3).
        batch_size: Images per batch; every image brings all of its queries.
        num_workers: DataLoader worker processes.
        include_negatives: Add a negative query for every category absent from an image.
        prompt_map: Phrase overrides ``{category name: phrase}`` or a path to a JSON/YAML file with one;
            applied to every set.
        on_error: ``"raise"`` stops at the first invalid record; ``"skip"`` drops invalid records with
            one warning per file.
        augment: Use the reference train augmentation; ``False`` uses the plain resize for training too.
        max_queries_per_image: Cap on queries per training image (positives kept first, then
            negatives); ``None`` keeps all. Validation and predict sets always keep all.
        exemplar_prob: Probability that a positive training query gets one of its boxes as an
            exemplar prompt.
        visual_only_prob: Probability that a training query with an exemplar drops its phrase
            (visual-only prompt, text ``"visual"``).
        seed: Seed of shuffling, augmentation, query capping and exemplar sampling.
    """

    def __init__(
        self,
        train_json: str | None,
        image_dir: str | None,
        val_json: str | None = None,
        val_image_dir: str | None = None,
        test_json: str | None = None,
        test_image_dir: str | None = None,
        predict_json: str | None = None,
        predict_image_dir: str | None = None,
        anchor_json: str | None = None,
        anchor_image_dir: str | None = None,
        anchor_ratio: float = 1.0,
        image_size: int = 1008,
        batch_size: int = 1,
        num_workers: int = 0,
        include_negatives: bool = True,
        prompt_map: dict[str, str] | str | None = None,
        on_error: Literal["raise", "skip"] = "raise",
        augment: bool = True,
        max_queries_per_image: int | None = None,
        exemplar_prob: float = 0.0,
        visual_only_prob: float = 0.0,
        seed: int = 0,
    ) -> None:
        super().__init__()
        if image_size < 1 or batch_size < 1 or num_workers < 0:
            raise ValueError(
                f"need image_size >= 1, batch_size >= 1, num_workers >= 0; got {image_size}, {batch_size}, "
                f"{num_workers}"
            )
        if train_json is not None and image_dir is None:
            raise ValueError("train_json needs image_dir")
        self.save_hyperparameters()
        val_image_dir = val_image_dir or image_dir
        if val_json is not None and val_image_dir is None:
            raise ValueError("val_json needs val_image_dir (or image_dir)")
        predict_json = predict_json or val_json
        predict_image_dir = predict_image_dir or val_image_dir
        self.files = {
            "train": (train_json, image_dir),
            "val": (val_json, val_image_dir),
            "test": (test_json, test_image_dir or val_image_dir),
            "predict": (predict_json, predict_image_dir),
            "anchor": (anchor_json, anchor_image_dir or image_dir),
        }
        self.train_collator = ConceptCollator(exemplar_prob, visual_only_prob, seed)
        self.eval_collator = ConceptCollator()
        self.sets: dict[str, CocoSet] = {}

    def _load(self, split: str) -> CocoSet | None:
        """Read a split's file once; ``None`` when the split has no file."""
        json_path, image_dir = self.files[split]
        if json_path is None:
            return None
        if split not in self.sets:
            same = [s for s in self.sets if self.files[s] == (json_path, image_dir)]
            self.sets[split] = self.sets[same[0]] if same else self._read(json_path, image_dir)
        return self.sets[split]

    def _read(self, json_path: str, image_dir: str | None) -> CocoSet:
        if image_dir is None:
            raise ValueError(f"{json_path} has no image folder: set the matching *_image_dir")
        hp = self.hparams
        return read_coco_set(
            json_path,
            image_dir,
            prompt_map=hp.prompt_map,
            include_negatives=hp.include_negatives,
            on_error=hp.on_error,
        )

    def setup(self, stage: str | None = None) -> None:
        """Read the files the stage needs (fit: train and val; validate; test; predict; else all)."""
        splits = {
            "fit": ["train", "anchor", "val"],
            "validate": ["val"],
            "test": ["test"],
            "predict": ["predict"],
        }
        for split in splits.get(stage or "", list(self.files)):
            self._load(split)

    def train_dataloader(self) -> DataLoader:
        """Shuffled, augmented training batches."""
        coco = self._load("train")
        if coco is None:
            raise ValueError("no training set: set train_json (--data.train_json)")
        hp = self.hparams
        transform = train_transform(hp.image_size) if hp.augment else eval_transform(hp.image_size)
        dataset = ConceptDataset(coco.samples, transform, hp.max_queries_per_image, seed=hp.seed)
        anchor = self._load("anchor")
        if anchor is None:
            return self._loader(dataset, self.train_collator, shuffle=True)
        anchor_set = ConceptDataset(anchor.samples, transform, hp.max_queries_per_image, seed=hp.seed + 1)
        sampler = AnchorMixSampler(len(dataset), len(anchor_set), hp.anchor_ratio, seed=hp.seed)
        return self._loader(ConcatDataset([dataset, anchor_set]), self.train_collator, sampler=sampler)

    def val_dataloader(self) -> DataLoader | list:
        """Validation batches, or an empty list (no validation) when ``val_json`` is unset."""
        return self._eval_loader("val")

    def test_dataloader(self) -> DataLoader | list:
        """Test batches, or an empty list when ``test_json`` is unset."""
        return self._eval_loader("test")

    def predict_dataloader(self) -> DataLoader | list:
        """Predict batches, or an empty list when there is no predict set."""
        return self._eval_loader("predict")

    def _eval_loader(self, split: str) -> DataLoader | list:
        coco = self._load(split)
        if coco is None:
            return []
        dataset = ConceptDataset(
            coco.samples, eval_transform(self.hparams.image_size), seed=self.hparams.seed
        )
        return self._loader(dataset, self.eval_collator, shuffle=False)

    def _loader(
        self,
        dataset: Dataset,
        collate: ConceptCollator,
        shuffle: bool = False,
        sampler: AnchorMixSampler | None = None,
    ) -> DataLoader:
        return DataLoader(
            dataset,
            batch_size=self.hparams.batch_size,
            shuffle=shuffle,
            sampler=sampler,
            num_workers=self.hparams.num_workers,
            collate_fn=collate,
            generator=torch.Generator().manual_seed(self.hparams.seed),
        )

    def gt_coco(self, split: Literal["train", "val", "test", "predict"]) -> dict[str, Any] | None:
        """Ground truth of a split in original image coordinates (see `CocoSet.gt`); ``None`` if unset."""
        coco = self._load(split)
        return None if coco is None else coco.gt

    def val_gt_coco(self) -> dict[str, Any] | None:
        """Ground truth of the validation set in original image coordinates (see `CocoSet.gt`)."""
        return self.gt_coco("val")

    def predict_gt_coco(self) -> dict[str, Any] | None:
        """Ground truth of the predict set in original image coordinates (see `CocoSet.gt`)."""
        return self.gt_coco("predict")

    def phrase_origins(self) -> list[tuple[str, str]]:
        """Every distinct phrase the loaders can produce, with the record it comes from.

        Lets the task check phrase lengths against the text encoder before training, with messages
        that name the category (and whether ``prompt_map`` set the phrase).

        Returns:
            ``(phrase, origin)`` pairs over all configured sets, first origin per phrase.
        """
        found: dict[str, str] = {}
        for split in self.files:
            coco = self._load(split)
            for phrase, origin in coco.phrases.values() if coco else []:
                found.setdefault(phrase, origin)
        if self.hparams.exemplar_prob > 0 and self.hparams.visual_only_prob > 0:
            found.setdefault(VISUAL_PROMPT_TEXT, "visual-only exemplar prompts (visual_only_prob > 0)")
        return list(found.items())
