"""SAM 3 as plain PyTorch and PEFT: loading, the tiny model, adaptation policies, the concept forward."""

from sam3_adapt.model.detections import QueryDetections, detect
from sam3_adapt.model.forward import ConceptSegmenter
from sam3_adapt.model.loading import TINY, TINY_RANDOM, load_sam3, load_segmenter
from sam3_adapt.model.outputs import ConceptOutputs
from sam3_adapt.model.persistence import save_trained
from sam3_adapt.model.tiny import tiny_sam3_config, write_tiny_random_sam3
from sam3_adapt.model.tokenizer import clip_tokenizer

__all__ = [
    "TINY",
    "TINY_RANDOM",
    "ConceptOutputs",
    "ConceptSegmenter",
    "QueryDetections",
    "clip_tokenizer",
    "detect",
    "load_sam3",
    "load_segmenter",
    "save_trained",
    "tiny_sam3_config",
    "write_tiny_random_sam3",
]
