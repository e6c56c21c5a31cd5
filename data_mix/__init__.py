"""Concept data for SAM 3: COCO files to samples, augmented datasets and batches of many queries per image."""

from data_mix.coco import CocoSet, load_prompt_map, read_coco, read_coco_set
from data_mix.coco_checks import CocoFormatError, CocoSkipWarning
from data_mix.collate import VISUAL_PROMPT_TEXT, ConceptCollator, collate_concepts
from data_mix.concept_world import DOMAINS, domain_categories, write_demo_worlds, write_world
from data_mix.dataset import ConceptDataset
from data_mix.mixing import AnchorMixSampler
from data_mix.samples import ConceptSample, Instance, Query
from data_mix.shapes import shape_categories, write_shapes_coco
from data_mix.transforms import eval_transform, train_sizes, train_transform


def __getattr__(name: str) -> object:
    # Importing Lightning takes seconds; only the DataModule needs it.
    if name == "ConceptDataModule":
        from data_mix.datamodule import ConceptDataModule

        return ConceptDataModule
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
    "Instance",
    "Query",
    "collate_concepts",
    "domain_categories",
    "eval_transform",
    "load_prompt_map",
    "read_coco",
    "read_coco_set",
    "shape_categories",
    "train_sizes",
    "train_transform",
    "write_demo_worlds",
    "write_shapes_coco",
    "write_world",
]
