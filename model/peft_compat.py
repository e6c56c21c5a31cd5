"""Wrapping a transformers model in PEFT without the deprecation notice that the pairing triggers."""

from __future__ import annotations

import contextlib
import warnings
from collections.abc import Iterator


@contextlib.contextmanager
def peft_wrapping() -> Iterator[None]:
    """Silence one warning while PEFT wraps a model: nothing the user did or can change causes it.

    ``peft.PeftModel.__init__`` reads ``model.is_gradient_checkpointing``, which transformers 5
    deprecates in favour of ``is_activation_checkpointing``; every LoRA model the kit builds or loads
    would print that ``FutureWarning``.
    """
    with warnings.catch_warnings():
        warnings.filterwarnings(
            "ignore", message="`is_gradient_checkpointing` is deprecated", category=FutureWarning
        )
        yield
