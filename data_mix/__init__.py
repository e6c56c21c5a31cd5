"""Concept data for SAM 3: COCO files to samples, augmented datasets and batches of many queries per image."""

import importlib

from data_mix import _offline  # noqa: F401  (before albumentations is imported)
from data_mix.coco import CocoSet, load_prompt_map, read_coco, read_coco_set
from data_mix.coco_checks import CocoFormatError, CocoSkipWarning
from data_mix.collate import VISUAL_PROMPT_TEXT, ConceptCollator, collate_concepts
from data_mix.concept_world import DOMAINS, domain_categories, write_demo_worlds, write_world
from data_mix.dataset import ConceptDataset
from data_mix.hard_negatives import NegativeConflictError, add_negatives
from data_mix.kshot import kshot_split, make_kshot
from data_mix.mixing import AnchorMixSampler, WeightedMixSampler
from data_mix.negative_files import (
    NegativeEntry,
    NegativePhrases,
    read_negative_phrases,
    write_negative_phrases,
)
from data_mix.saco import read_saco_set
from data_mix.samples import ConceptSample, Instance, NegativeKind, Query
from data_mix.shapes import shape_categories, write_shapes_coco
from data_mix.siblings import ConceptTree, load_concept_tree, vocabulary_siblings
from data_mix.transforms import eval_transform, train_sizes, train_transform

#: Names whose modules import Lightning or `datasets`, which take seconds: imported on first use.
_LAZY = {
    "ConceptDataModule": "data_mix.datamodule",
    "MixSource": "data_mix.sources",
    "Source": "data_mix.sources",
    "read_hf_set": "data_mix.hf",
    "read_source": "data_mix.sources",
}


def __getattr__(name: str) -> object:
    if name in _LAZY:
        return getattr(importlib.import_module(_LAZY[name]), name)
    raise AttributeError(f"module 'data_mix' has no attribute {name!r}")


__all__ = [
    "DOMAINS",
    "VISUAL_PROMPT_TEXT",
    "AnchorMixSampler",
    "CocoFormatError",
    "CocoSet",
    "CocoSkipWarning",
    "ConceptCollator",
    "ConceptDataModule",
    "ConceptDataset",
    "ConceptSample",
    "ConceptTree",
    "Instance",
    "MixSource",
    "NegativeConflictError",
    "NegativeEntry",
    "NegativeKind",
    "NegativePhrases",
    "Query",
    "Source",
    "WeightedMixSampler",
    "add_negatives",
    "collate_concepts",
    "domain_categories",
    "eval_transform",
    "kshot_split",
    "load_concept_tree",
    "load_prompt_map",
    "make_kshot",
    "read_coco",
    "read_coco_set",
    "read_hf_set",
    "read_negative_phrases",
    "read_saco_set",
    "read_source",
    "shape_categories",
    "train_sizes",
    "train_transform",
    "vocabulary_siblings",
    "write_demo_worlds",
    "write_negative_phrases",
    "write_shapes_coco",
    "write_world",
]
