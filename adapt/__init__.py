"""sam3-adapt: adapt SAM 3 to a new domain from a handful of examples.

Rooms (README, "Layout"): ``model`` and ``data_mix`` below; the core, ``training`` (task, loss,
metrics) and ``inference`` (the predict loop); workflows (``evaluation``, ``release``, ``jobs``,
``tune``, ``fitting``); and the facades ``cli``, ``api`` and ``predictor``.

The one-call API::

    import sam3_adapt

    result = sam3_adapt.finetune(
        base="facebook/sam3", train="train.json", images="images/", recipe="lora-10shot"
    )
    result.evaluate("test.json", "images/", baseline=True)
    result.predict("slide.png", "round cell").to_coco()
    predictor = sam3_adapt.load("facebook/sam3", adapter=result.adapter)
"""

from typing import Any

#: Public names, imported on first use: the API pulls in Lightning and transformers, which take seconds.
_LAZY = {
    "finetune": "sam3_adapt.api",
    "FinetuneResult": "sam3_adapt.api",
    "load": "sam3_adapt.predictor",
    "Predictor": "sam3_adapt.predictor",
    "Prediction": "sam3_adapt.inference.prediction",
    "evaluate": "sam3_adapt.evaluation",
}


def __getattr__(name: str) -> Any:
    if name in _LAZY:
        from importlib import import_module

        return getattr(import_module(_LAZY[name]), name)
    raise AttributeError(f"module 'adapt' has no attribute {name!r}")


__all__ = sorted(_LAZY)
