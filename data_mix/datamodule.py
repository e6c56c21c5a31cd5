"""Lightning DataModule over concept data: train (optionally mixed), validation, test and predict sets."""

from __future__ import annotations

import os
from dataclasses import fields, replace
from pathlib import Path
from typing import Any, Literal

import lightning as L
import torch
from torch.utils.data import ConcatDataset, DataLoader, Dataset

from sam3_adapt.data_mix.collate import VISUAL_PROMPT_TEXT, ConceptCollator
from sam3_adapt.data_mix.dataset import ConceptDataset, eval_loader
from sam3_adapt.data_mix.mixing import WeightedMixSampler
from sam3_adapt.data_mix.negatives.add import add_negatives
from sam3_adapt.data_mix.readers.coco import CocoSet
from sam3_adapt.data_mix.readers.sources import MixSource, Source
from sam3_adapt.data_mix.resumable import ResumableLoader
from sam3_adapt.data_mix.synthetic.shapes import is_synthetic_world
from sam3_adapt.data_mix.transforms import eval_transform, train_transform

#: Key prefix of the named training sources in `ConceptDataModule.files`.
MIX = "mix:"
#: Splits that get the hard negatives of the recipe (the user's own domain, not anchor data).
HARD_NEGATIVE_SPLITS = ("train", "val", "test", "predict")


class ConceptDataModule(L.LightningDataModule):
    """Concept data in, batches of images with many phrase queries out (see `sam3_adapt.data_mix.collate`).

    Every set (``train_json``, ``val_json``, ..., ``anchor_json`` and each of ``train_sources``) is
    read by `sam3_adapt.data_mix.readers.sources.read_source`: a path string is a COCO or SA-Co JSON file, a
    Hugging
    Face dataset folder or a Hub name (format detected), and a `sam3_adapt.data_mix.readers.sources.Source`
    mapping
    (``{path: ..., format: hf, split: validation}``) sets the format and its options. A source without
    its own ``image_dir`` uses the split's ``*_image_dir`` argument.

    Training mixes sources when ``anchor_json`` or ``train_sources`` is set (or ``mix_epoch_size``):
    a `sam3_adapt.data_mix.mixing.WeightedMixSampler` draws each epoch afresh from every source by weight,
    deterministically given ``seed`` and the epoch, and gives each process its own shard of the same
    draw (Lightning keeps it as it is, being a ``DistributedSampler``). ``train_json`` with
    ``anchor_json`` is the mix ``{train: 1, anchor: anchor_ratio}``. Box-only and masked sources mix
    in one batch: every target carries its ``has_mask`` flags.

    The train set is augmented as in the SAM 3 reference (a random side, then padding at a random
    offset), but keeping each image's aspect ratio (`sam3_adapt.data_mix.transforms.train_transform`)
    unless ``augment`` is False; validation and predict sets are letterboxed: the longer side resized
    to ``image_size``, black padding right and below, so normalised outputs map back to original
    pixels by multiplying by the longer side.
    Without ``val_json`` there is no validation loader and ``Trainer.fit`` skips validation.
    Loaders are deterministic given ``seed`` (and ``num_workers``), and the training loader is a
    `sam3_adapt.data_mix.resumable.ResumableLoader`: a run resumed from a checkpoint, even one
    written mid-epoch, sees exactly the batches the uninterrupted run would have seen.

    Args:
        train_json: Training set (a path, Hub name or `Source`); ``None`` when only validating or
            predicting, or when ``train_sources`` is given.
        image_dir: Folder that the training images' ``file_name`` values are relative to.
        val_json: Validation set; ``None`` for no validation.
        val_image_dir: Image folder of the validation set; defaults to ``image_dir``.
        test_json: Test set (``sam3-adapt test``); ``None`` for none.
        test_image_dir: Image folder of the test set; defaults to ``val_image_dir``.
        predict_json: Predict set (its categories give the phrases); defaults to ``val_json``.
        predict_image_dir: Image folder of the predict set; defaults to ``val_image_dir`` (which
            defaults to ``image_dir``).
        anchor_json: General "anchor" data mixed into training so the model keeps what it knew (the
            SAM 3 paper mixes new-domain data 1:1 with general data); ``None`` for none.
        anchor_image_dir: Image folder of the anchor set; defaults to ``image_dir``.
        anchor_ratio: Anchor images drawn per training image each epoch (a fresh draw every epoch).
        train_sources: Named training sources with weights, instead of ``train_json``/``anchor_json``:
            ``{domain: {path: d.json, image_dir: d/, weight: 1}, anchor: {path: a.json, ...}}``. By
            default an epoch sees the first source once and the others in proportion to their weights.
        mix_epoch_size: Images per epoch over all sources and processes when mixing; ``None`` sees
            the first source (``train_json``) once.
        cache_dir: Cache of decoded Hugging Face datasets; ``None`` for
            `sam3_adapt.data_mix.readers.hf.default_cache_dir`.
        image_size: Side of the square network input in pixels (1008 for SAM 3).
        batch_size: Images per batch; every image brings all of its queries.
        num_workers: DataLoader worker processes.
        include_negatives: Add a negative query for every category absent from an image (a source's own
            ``negatives`` setting, see `sam3_adapt.data_mix.readers.sources.Source`, overrides it for that
            source).
        prompt_map: Phrase overrides ``{category name: phrase}`` or a path to a JSON/YAML file with one;
            applied to every set.
        on_error: ``"raise"`` stops at the first invalid record; ``"skip"`` drops invalid records with
            one warning per file.
        allow_outside_image_dir: Accept ``file_name`` values that are absolute or lead out of their
            image folder through ``..`` (refused by default, so that a shared annotation file cannot
            make a run read files elsewhere).
        augment: Use the reference train augmentation (aspect kept); ``False`` uses the evaluation
            letterbox for training too.
        max_queries_per_image: Cap on queries per training image (positives kept first, then
            negatives); ``None`` keeps all. Validation and predict sets always keep all.
        hard_negatives: YAML or CSV file(s) of confusions, phrases absent from the whole set or from
            given images (see `sam3_adapt.data_mix.negatives.files`); added as negative queries.
        mined_negatives: Reviewed output of ``sam3-adapt mine-negatives`` (same formats).
        sibling_negatives: Add each positive phrase's siblings from the set's own vocabulary as
            negatives where they are absent ("red circle" -> "blue circle", "red square").
        concept_tree: YAML concept tree (parent -> children): the other children of a positive
            phrase's parents become negatives.
        max_negatives_per_image: Cap on negative queries per training image, hard negatives kept
            before implicit ones; ``None`` for no cap.
        negatives_per_positive: Cap on negatives per positive query of a training image (an image
            without positives counts as one); ``None`` for no cap.

            Hard negatives (the four arguments above) apply to the ``train``, ``val``, ``test`` and
            ``predict`` sets, never to anchor data or named ``train_sources``: confusions are about
            your domain, and a phrase present in an anchor image would be a contradiction.
        exemplar_prob: Probability that a positive training query gets one of its boxes as an
            exemplar prompt.
        visual_only_prob: Probability that a training query with an exemplar drops its phrase
            (visual-only prompt, text ``"visual"``).
        seed: Seed of shuffling, augmentation, query capping and exemplar sampling.
    """

    def __init__(
        self,
        train_json: str | Source | None = None,
        image_dir: str | None = None,
        val_json: str | Source | None = None,
        val_image_dir: str | None = None,
        test_json: str | Source | None = None,
        test_image_dir: str | None = None,
        predict_json: str | Source | None = None,
        predict_image_dir: str | None = None,
        anchor_json: str | Source | None = None,
        anchor_image_dir: str | None = None,
        anchor_ratio: float = 1.0,
        train_sources: dict[str, MixSource] | None = None,
        mix_epoch_size: int | None = None,
        cache_dir: str | None = None,
        image_size: int = 1008,
        batch_size: int = 1,
        num_workers: int = 0,
        include_negatives: bool = True,
        prompt_map: dict[str, str] | str | None = None,
        on_error: Literal["raise", "skip"] = "raise",
        allow_outside_image_dir: bool = False,
        augment: bool = True,
        max_queries_per_image: int | None = None,
        hard_negatives: str | list[str] | None = None,
        mined_negatives: str | list[str] | None = None,
        sibling_negatives: bool = False,
        concept_tree: str | None = None,
        max_negatives_per_image: int | None = None,
        negatives_per_positive: float | None = None,
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
        if train_sources and (train_json is not None or anchor_json is not None):
            raise ValueError("give train_sources, or train_json (with anchor_json), not both")
        if train_sources is not None and not train_sources:
            raise ValueError("train_sources is empty")
        self.save_hyperparameters()
        val_image_dir = val_image_dir or image_dir
        predict_json = predict_json or val_json
        predict_image_dir = predict_image_dir or val_image_dir
        self.files: dict[str, Source | None] = {
            "train": _source(train_json, image_dir),
            "val": _source(val_json, val_image_dir),
            "test": _source(test_json, test_image_dir or val_image_dir),
            "predict": _source(predict_json, predict_image_dir),
            "anchor": _source(anchor_json, anchor_image_dir or image_dir),
        }
        self.weights: dict[str, float] = {}
        if train_sources:
            for name, source in train_sources.items():
                self.files[MIX + name] = _source(source, image_dir)
                self.weights[MIX + name] = source.weight
        elif train_json is not None:
            self.weights = {"train": 1.0} | ({"anchor": anchor_ratio} if anchor_json is not None else {})
        self.train_collator = ConceptCollator(exemplar_prob, visual_only_prob, seed)
        self.sets: dict[str, CocoSet] = {}

    def trains_on_synthetic_world(self) -> bool:
        """Whether every training source is a COCO file of the kit's synthetic concept world."""
        training = [
            source
            for split, source in self.files.items()
            if split in ("train", "anchor") or split.startswith(MIX)
        ]
        present = [source for source in training if source is not None]
        return bool(present) and all(is_synthetic_world(source.path) for source in present)

    def _load(self, split: str) -> CocoSet | None:
        """Read a split's source once; ``None`` when the split has none."""
        source = self.files[split]
        if source is None:
            return None
        if split not in self.sets:
            hard = split in HARD_NEGATIVE_SPLITS
            same = [s for s in self.sets if self.files[s] == source and (s in HARD_NEGATIVE_SPLITS) == hard]
            self.sets[split] = self.sets[same[0]] if same else self._read(source, split)
        return self.sets[split]

    def _read(self, source: Source, split: str = "") -> CocoSet:
        hp = self.hparams
        coco = source.read(
            prompt_map=hp.prompt_map,
            include_negatives=hp.include_negatives,
            on_error=hp.on_error,
            cache_dir=hp.cache_dir,
            allow_outside_image_dir=hp.allow_outside_image_dir,
        )
        if split in HARD_NEGATIVE_SPLITS and (
            hp.hard_negatives or hp.mined_negatives or hp.sibling_negatives or hp.concept_tree
        ):
            coco = add_negatives(
                coco,
                explicit=hp.hard_negatives,
                mined=hp.mined_negatives,
                siblings=hp.sibling_negatives,
                concept_tree=hp.concept_tree,
            )
        return coco

    def prepare_data(self) -> None:
        """Decode Hugging Face sources into their cache once, before every process reads them in `setup`.

        Lightning calls this on one process per node first, so processes do not decode side by side.
        """
        done: list[Source] = []
        for source in self.files.values():
            if source is None or source in done:
                continue
            done.append(source)
            if source.format == "hf" or (source.format == "auto" and not Path(source.path).is_file()):
                self._read(source)

    def setup(self, stage: str | None = None) -> None:
        """Read the sets a stage needs (fit: training sources and val; validate; test; predict; else all)."""
        splits = {
            "fit": [*self.weights, "val"],
            "validate": ["val"],
            "test": ["test"],
            "predict": ["predict"],
        }
        for split in splits.get(stage or "", list(self.files)):
            self._load(split)
        if stage == "fit" and self.files["val"] is None and self.trainer is not None:
            # No validation set: no validation loop, rather than an empty one Lightning warns about.
            self.trainer.limit_val_batches = 0

    def target_set(self) -> CocoSet | None:
        """The first training source (``train_json``, or the first of ``train_sources``), never the anchor.

        Returns:
            Its set, or ``None`` when there is no training set.
        """
        return self._load(next(iter(self.weights))) if self.weights else None

    def train_dataloader(self) -> DataLoader:
        """Augmented training batches: shuffled, or drawn from the mixed sources afresh each epoch."""
        if not self.weights:
            raise ValueError("no training set: set train_json (--data.train_json) or train_sources")
        hp = self.hparams
        transform = train_transform(hp.image_size) if hp.augment else eval_transform(hp.image_size)
        datasets = [
            ConceptDataset(
                self._load(key).samples,
                transform,
                hp.max_queries_per_image,
                seed=hp.seed + i,
                max_negatives_per_image=hp.max_negatives_per_image,
                negatives_per_positive=hp.negatives_per_positive,
            )
            for i, key in enumerate(self.weights)
        ]
        if list(self.weights) == ["train"] and hp.mix_epoch_size is None:
            return self._loader(datasets[0], self.train_collator, shuffle=True)
        # Built here, once any process group exists, so that each process takes its own shard.
        sampler = WeightedMixSampler(
            [len(d) for d in datasets],
            list(self.weights.values()),
            epoch_size=hp.mix_epoch_size,
            seed=hp.seed,
            names=[key.removeprefix(MIX) for key in self.weights],
        )
        return self._loader(ConcatDataset(datasets), self.train_collator, sampler=sampler)

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
        hp = self.hparams
        return eval_loader(coco.samples, hp.image_size, hp.batch_size, hp.num_workers, hp.seed)

    def _loader(
        self,
        dataset: Dataset,
        collate: ConceptCollator,
        shuffle: bool = False,
        sampler: WeightedMixSampler | None = None,
    ) -> DataLoader:
        return ResumableLoader(
            dataset,
            batch_size=self.hparams.batch_size,
            shuffle=shuffle,
            sampler=sampler,
            num_workers=self.hparams.num_workers,
            collate_fn=collate,
            generator=torch.Generator().manual_seed(self.hparams.seed),
            progress=self._fit_progress,
        )

    def _fit_progress(self) -> tuple[int, int]:
        """Batches the trainer has finished in the current epoch, and the batches of an epoch."""
        trainer = self.trainer
        return trainer.fit_loop.epoch_loop.batch_progress.current.processed, int(trainer.num_training_batches)

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


def _source(spec: str | os.PathLike | Source | None, image_dir: str | os.PathLike | None) -> Source | None:
    """A split's source as a plain `Source`, its image folder defaulting to the split's."""
    if spec is None:
        return None
    image_dir = None if image_dir is None else os.fspath(image_dir)
    if isinstance(spec, (str, os.PathLike)):
        return Source(os.fspath(spec), image_dir)
    plain = Source(**{f.name: getattr(spec, f.name) for f in fields(Source)})
    return replace(plain, image_dir=plain.image_dir or image_dir)
