"""SAM 3 as plain PyTorch and PEFT: loading, the tiny model, adaptation policies, the concept forward."""

from model.forward import ConceptSegmenter
from model.loading import TINY, TINY_RANDOM, load_sam3
from model.outputs import ConceptOutputs
from model.tiny import tiny_sam3_config, write_tiny_random_sam3
from model.tokenizer import clip_tokenizer

__all__ = [
    "TINY",
    "TINY_RANDOM",
    "ConceptOutputs",
    "ConceptSegmenter",
    "clip_tokenizer",
    "load_sam3",
    "tiny_sam3_config",
    "write_tiny_random_sam3",
]
