"""Which weights of SAM 3 train: LoRA presets over named components, or full fine-tuning.

A preset names components of ``transformers.Sam3Model``; :func:`lora_target_modules` turns it into
the exact list of ``nn.Linear`` module names for the model at hand, so convolutions, embeddings and
norms are never adapted and the targets can be checked by name.
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Literal, get_args

from peft import LoraConfig, PeftModel, get_peft_model
from torch import nn

from sam3_adapt.model.memory import enable_activation_checkpointing
from sam3_adapt.model.peft_compat import peft_wrapping

Preset = Literal["detector", "detector+vision", "all-linear"]

#: Components after the backbones: prompt encoding, DETR encoder/decoder, heads, and the projection of
#: text features into the detector width.
DETECTOR_COMPONENTS = (
    "geometry_encoder",
    "detr_encoder",
    "detr_decoder",
    "mask_decoder",
    "dot_product_scoring",
    "text_projection",
)
#: The ViT blocks of the image backbone.
VISION_BLOCKS = "vision_encoder.backbone.layers"
#: The CLIP text transformer (embeddings, layers, final norm).
TEXT_MODEL = "text_encoder.text_model"
#: CLIP's own output projection: computed by ``CLIPTextModelWithProjection`` but its result is discarded
#: by ``Sam3Model`` (which projects the token states with ``text_projection``), so it never gets a gradient.
UNUSED_MODULES = ("text_encoder.text_projection",)


@dataclass
class LoraSettings:
    """Where LoRA adapters go and how large they are.

    Attributes:
        preset: Which components get adapters. ``"detector"``: every linear layer of the geometry
            encoder, DETR encoder and decoder, mask decoder, dot-product scoring and the text
            projection. ``"detector+vision"``: the detector plus the attention and MLP linears of the
            last ``last_vision_blocks`` ViT blocks. ``"all-linear"``: every linear layer of the model
            that takes part in the forward pass, text encoder included.
        rank: LoRA rank ``r``.
        alpha: LoRA ``alpha``; the update is scaled by ``alpha / rank``.
        dropout: Dropout on the adapter input during training.
        last_vision_blocks: How many of the last ViT blocks ``"detector+vision"`` adapts.
        text: Also adapt the CLIP text encoder's linears (useful when the domain brings new words).
            ``"all-linear"`` always includes them.
        extra_modules: More modules to adapt, each the full name of a module of ``Sam3Model`` (e.g.
            ``"vision_encoder.backbone.layers.0"``); every ``nn.Linear`` at or under it is adapted.
    """

    preset: Preset = "detector"
    rank: int = 16
    alpha: int = 32
    dropout: float = 0.05
    last_vision_blocks: int = 4
    text: bool = False
    extra_modules: list[str] = field(default_factory=list)

    def __post_init__(self) -> None:
        presets = get_args(Preset)
        if self.preset not in presets:
            raise ValueError(f"LoraSettings.preset={self.preset!r} is not one of {list(presets)}")
        for name in ("rank", "alpha", "last_vision_blocks"):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, int) or value < 1:
                raise ValueError(f"LoraSettings.{name} must be a positive integer, got {value!r}")
        if not 0.0 <= self.dropout < 1.0:
            raise ValueError(f"LoraSettings.dropout must be in [0, 1), got {self.dropout!r}")
        if not isinstance(self.extra_modules, list) or not all(
            isinstance(name, str) and name.strip() == name and name for name in self.extra_modules
        ):
            raise ValueError(
                f"LoraSettings.extra_modules must be a list of module names, got {self.extra_modules!r}"
            )


def _linear_names(model: nn.Module, prefix: str) -> list[str]:
    """Names of the ``nn.Linear`` modules at or under ``prefix`` (a module name), in model order."""
    return [
        name
        for name, module in model.named_modules()
        if isinstance(module, nn.Linear) and (name == prefix or name.startswith(prefix + "."))
    ]


def lora_target_modules(model: nn.Module, settings: LoraSettings) -> list[str]:
    """Exact names of the linear layers that ``settings`` adapts in ``model``.

    Args:
        model: A plain ``transformers.Sam3Model`` (not yet wrapped by PEFT).
        settings: The LoRA settings.

    Returns:
        Module names relative to ``model``, in the order of ``model.named_modules()``, without
        duplicates; every one is an ``nn.Linear``.

    Raises:
        ValueError: If ``last_vision_blocks`` exceeds the ViT depth, or an ``extra_modules`` entry
            names no module or a module without linear layers.
    """
    if settings.preset == "all-linear":
        chosen = {
            name
            for name, module in model.named_modules()
            if isinstance(module, nn.Linear) and name not in UNUSED_MODULES
        }
    else:
        chosen = {name for component in DETECTOR_COMPONENTS for name in _linear_names(model, component)}
        if settings.preset == "detector+vision":
            depth = len(model.get_submodule(VISION_BLOCKS))
            if settings.last_vision_blocks > depth:
                raise ValueError(
                    f"LoraSettings.last_vision_blocks={settings.last_vision_blocks} but the model has "
                    f"only {depth} ViT blocks"
                )
            for index in range(depth - settings.last_vision_blocks, depth):
                chosen.update(_linear_names(model, f"{VISION_BLOCKS}.{index}"))
        if settings.text:
            chosen.update(_linear_names(model, TEXT_MODEL))
    module_names = {name for name, _ in model.named_modules()}
    for extra in settings.extra_modules:
        if extra not in module_names:
            raise ValueError(
                f"LoraSettings.extra_modules: {extra!r} is not a module of {type(model).__name__}"
            )
        linears = _linear_names(model, extra)
        if not linears:
            raise ValueError(f"LoraSettings.extra_modules: {extra!r} contains no nn.Linear layer to adapt")
        chosen.update(linears)
    return [name for name, _ in model.named_modules() if name in chosen]


def lora_config(model: nn.Module, settings: LoraSettings) -> LoraConfig:
    """The ``peft.LoraConfig`` for ``settings`` on ``model``.

    ``target_modules`` is a regular expression that matches exactly the names of
    :func:`lora_target_modules`: PEFT's list form also matches name suffixes, so ``"text_projection"``
    would catch ``"text_encoder.text_projection"`` as well.

    Args:
        model: A plain ``transformers.Sam3Model``.
        settings: The LoRA settings.

    Returns:
        The config (bias not trained, no task type).
    """
    names = lora_target_modules(model, settings)
    return LoraConfig(
        r=settings.rank,
        lora_alpha=settings.alpha,
        lora_dropout=settings.dropout,
        target_modules="^(?:" + "|".join(re.escape(name) for name in names) + ")$",
        bias="none",
    )


def apply_lora(model: nn.Module, settings: LoraSettings) -> PeftModel:
    """Wrap ``model`` with LoRA adapters; only the adapter weights stay trainable.

    Args:
        model: A plain ``transformers.Sam3Model``; it is modified in place (its linears are wrapped).
        settings: Where the adapters go and their size.

    Returns:
        The ``peft.PeftModel``; call it like the ``Sam3Model``.

    Raises:
        TypeError: If ``model`` already carries a PEFT adapter.
        RuntimeError: If PEFT adapted other modules than the ones chosen (a PEFT behaviour change).
    """
    if isinstance(model, PeftModel):
        raise TypeError("apply_lora expects a plain Sam3Model, got a PeftModel that already has adapters")
    config = lora_config(model, settings)
    expected = lora_target_modules(model, settings)
    with peft_wrapping():
        peft_model = get_peft_model(model, config)
    adapted = sorted(peft_model.targeted_module_names)
    if adapted != sorted(expected):
        raise RuntimeError(
            f"PEFT adapted {len(adapted)} modules but {len(expected)} were chosen; "
            f"difference: {sorted(set(adapted) ^ set(expected))[:10]}"
        )
    return peft_model


def apply_full_finetune(model: nn.Module, freeze: list[str] | None = None) -> nn.Module:
    """Make every parameter trainable except those of the named modules.

    Args:
        model: A plain ``transformers.Sam3Model``.
        freeze: Module names to keep frozen, components such as ``"text_encoder"`` or any deeper
            module name such as ``"vision_encoder.backbone.embeddings"``.

    Returns:
        The same model, with ``requires_grad`` set.

    Raises:
        TypeError: If ``model`` is a ``PeftModel`` (full fine-tuning would train base and adapter).
        ValueError: If a name in ``freeze`` is not a module of ``model``.
    """
    if isinstance(model, PeftModel):
        raise TypeError("apply_full_finetune expects a plain Sam3Model, got a PeftModel with adapters")
    freeze = list(freeze or [])
    module_names = {name for name, _ in model.named_modules() if name}
    unknown = [name for name in freeze if name not in module_names]
    if unknown:
        components = [name for name, _ in model.named_children()]
        raise ValueError(f"cannot freeze {unknown}: not modules of the model (components: {components})")
    model.requires_grad_(True)
    for name in freeze:
        model.get_submodule(name).requires_grad_(False)
    return model


def adapt_network(
    network: nn.Module,
    adaptation: Literal["lora", "full"] | None = "lora",
    lora: LoraSettings | dict | None = None,
    freeze: list[str] | None = None,
    activation_checkpointing: bool = False,
) -> nn.Module:
    """Turn a SAM 3 network into a recipe's trainable network: the one place training and estimates do it.

    Args:
        network: A plain ``transformers.Sam3Model`` (or, with ``adaptation=None``, a network whose
            trainable weights are already set, such as a loaded trainable adapter).
        adaptation: ``lora`` (:func:`apply_lora`), ``full`` (:func:`apply_full_finetune`), or ``None``
            to keep the network's own trainable weights.
        lora: LoRA settings (a :class:`LoraSettings` or its fields), for ``lora``.
        freeze: Modules kept frozen under ``full``.
        activation_checkpointing: Recompute transformer blocks in the backward pass
            (:func:`~sam3_adapt.model.memory.enable_activation_checkpointing`).

    Returns:
        The network to train (a ``peft.PeftModel`` under LoRA).
    """
    if adaptation == "lora":
        settings = lora if isinstance(lora, LoraSettings) else LoraSettings(**(lora or {}))
        network = apply_lora(network, settings)
    elif adaptation == "full":
        network = apply_full_finetune(network, freeze=freeze or [])
    if activation_checkpointing:
        enable_activation_checkpointing(network)
    return network


def sam3_named_parameters(model: nn.Module) -> Iterator[tuple[str, nn.Parameter]]:
    """Parameters with names relative to the ``Sam3Model``, whether or not PEFT wraps it.

    Args:
        model: A ``Sam3Model`` or a ``PeftModel`` around one.

    Yields:
        ``(name, parameter)``; LoRA weights appear under the layer they adapt, e.g.
        ``"detr_decoder.layers.0.self_attn.q_proj.lora_A.default.weight"``.
    """
    base = model.get_base_model() if isinstance(model, PeftModel) else model
    yield from base.named_parameters()


def trainable_parameters(model: nn.Module) -> tuple[int, int]:
    """Count parameters.

    Args:
        model: Any module (a ``Sam3Model`` or a ``PeftModel``).

    Returns:
        ``(trainable, total)`` numbers of parameter elements; LoRA weights count in both.
    """
    trainable = total = 0
    for _, parameter in sam3_named_parameters(model):
        total += parameter.numel()
        if parameter.requires_grad:
            trainable += parameter.numel()
    return trainable, total


def describe_trainable(model: nn.Module) -> str:
    """A small table of trainable and total parameters per top-level component, for logs.

    Args:
        model: A ``Sam3Model`` or a ``PeftModel`` around one.

    Returns:
        Lines ``component  trainable  total`` (one per component, then ``all``).
    """
    rows: dict[str, list[int]] = {}
    for name, parameter in sam3_named_parameters(model):
        counts = rows.setdefault(name.split(".", 1)[0], [0, 0])
        counts[1] += parameter.numel()
        if parameter.requires_grad:
            counts[0] += parameter.numel()
    rows["all"] = list(trainable_parameters(model))
    width = max(len("component"), *(len(name) for name in rows))
    lines = [f"{'component':<{width}}  {'trainable':>13}  {'total':>13}"]
    lines += [f"{name:<{width}}  {trained:>13,}  {total:>13,}" for name, (trained, total) in rows.items()]
    return "\n".join(lines)
