"""Concept data for SAM 3: files to samples, augmented datasets and batches of many queries per image.

Rooms: ``readers`` (COCO, SA-Co, Hugging Face: a format in, a `CocoSet` out), ``negatives``
(explicit, sibling and concept-tree hard negatives), ``synthetic`` (seeded worlds written to disk as
COCO; never used by the pipeline itself), and at this level samples, datasets, transforms, the batch
contract (`batch`), mixing, K-shot splits and the Lightning data module.

Every public name below is imported on first use: the modules behind them pull in albumentations,
Lightning or `datasets`, which take seconds.
"""

import importlib

from sam3_adapt.data_mix import _offline  # noqa: F401  (before albumentations is imported)

_LAZY = {
    "VISUAL_PROMPT_TEXT": "collate",
    "ConceptCollator": "collate",
    "collate_concepts": "collate",
    "ConceptBatch": "batch",
    "EvaluationData": "batch",
    "ConceptDataset": "dataset",
    "ConceptDataModule": "datamodule",
    "kshot_split": "kshot",
    "make_kshot": "kshot",
    "AnchorMixSampler": "mixing",
    "WeightedMixSampler": "mixing",
    "NegativeConflictError": "negatives.add",
    "add_negatives": "negatives.add",
    "NegativeEntry": "negatives.files",
    "NegativePhrases": "negatives.files",
    "read_negative_phrases": "negatives.files",
    "write_negative_phrases": "negatives.files",
    "ConceptTree": "negatives.siblings",
    "load_concept_tree": "negatives.siblings",
    "vocabulary_siblings": "negatives.siblings",
    "CocoSet": "readers.coco",
    "load_prompt_map": "readers.coco",
    "read_coco": "readers.coco",
    "read_coco_set": "readers.coco",
    "CocoFormatError": "readers.coco_checks",
    "CocoSkipWarning": "readers.coco_checks",
    "read_hf_set": "readers.hf",
    "read_saco_set": "readers.saco",
    "MixSource": "readers.sources",
    "Source": "readers.sources",
    "read_source": "readers.sources",
    "ConceptSample": "samples",
    "Instance": "samples",
    "NegativeKind": "samples",
    "Query": "samples",
    "eval_transform": "transforms",
    "train_sizes": "transforms",
    "train_transform": "transforms",
}


def __getattr__(name: str) -> object:
    if name in _LAZY:
        return getattr(importlib.import_module(f"{__name__}.{_LAZY[name]}"), name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


__all__ = sorted(_LAZY)
