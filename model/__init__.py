"""SAM 3 as plain PyTorch and PEFT: loading, the tiny model, adaptation policies, the concept forward.

The public names below are imported on first use: they pull in transformers, which takes seconds.
"""

import importlib

_LAZY = {
    "QueryDetections": "detections",
    "detect": "detections",
    "ConceptSegmenter": "forward",
    "TINY": "checkpoints",
    "TINY_RANDOM": "checkpoints",
    "load_sam3": "loading",
    "load_segmenter": "loading",
    "ConceptOutputs": "outputs",
    "save_trained": "persistence",
    "tiny_sam3_config": "tiny",
    "write_tiny_random_sam3": "tiny",
    "clip_tokenizer": "tokenizer",
}


def __getattr__(name: str) -> object:
    if name in _LAZY:
        return getattr(importlib.import_module(f"{__name__}.{_LAZY[name]}"), name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


__all__ = sorted(_LAZY)
