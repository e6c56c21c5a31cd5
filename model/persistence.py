"""Save and load adapters the PEFT way, and write LoRA merged into an ordinary SAM 3 folder."""

from __future__ import annotations

import copy
import json
import re
from pathlib import Path

from huggingface_hub import constants as hf_constants
from huggingface_hub import hf_hub_download
from huggingface_hub.utils import HFValidationError, validate_repo_id
from peft import PeftConfig, PeftModel
from torch import nn
from transformers import ProcessorMixin, Sam3Processor

from sam3_adapt.model.checkpoints import resolve_checkpoint
from sam3_adapt.model.image_size import native_image_size
from sam3_adapt.model.peft_compat import peft_wrapping

_HF_CACHE_SNAPSHOT = re.compile(r"models--([^/]+)--([^/]+)/snapshots/[^/]+$")


#: The kit's note beside PEFT's files in an adapter folder: the input side the adapter was trained at.
ADAPTER_NOTE = "sam3_adapt.json"


def save_adapter(peft_model: PeftModel, folder: str | Path, base_model_name: str) -> Path:
    """Write the adapter as ``adapter_config.json`` + ``adapter_model.safetensors``.

    Beside them, `ADAPTER_NOTE` records the input side the network last ran at (a recipe at 504 px
    gives ``{"image_size": 504}``), so that loading the adapter runs the model at the side it learnt.

    Args:
        peft_model: The model returned by :func:`sam3_adapt.model.adaptation.apply_lora` (or a loaded
            adapter).
        folder: Where to write; created if missing.
        base_model_name: Hub id or folder of the base model the adapter was trained on; recorded as
            ``base_model_name_or_path`` (also in the model's own PEFT config).

    Returns:
        The folder.

    Raises:
        TypeError: If ``peft_model`` is not a ``peft.PeftModel``.
    """
    if not isinstance(peft_model, PeftModel):
        raise TypeError(f"save_adapter needs a peft.PeftModel, got {type(peft_model).__name__}")
    for config in peft_model.peft_config.values():
        config.base_model_name_or_path = str(base_model_name)
    folder = Path(folder)
    peft_model.save_pretrained(str(folder), save_embedding_layers=False)
    note = {"image_size": native_image_size(peft_model.get_base_model().config)}
    (folder / ADAPTER_NOTE).write_text(json.dumps(note) + "\n")
    return folder


def adapter_image_size(adapter: str | Path) -> int | None:
    """The input side an adapter was trained at (its `ADAPTER_NOTE`), or ``None`` when not recorded.

    Args:
        adapter: A local adapter folder or a Hub repo id (the note is fetched like PEFT's files;
            offline, from the cache).

    Returns:
        The side in pixels; ``None`` for adapters saved without the note (by PEFT itself, or by
        earlier versions of the kit), which then run at the base's side.
    """
    path = Path(adapter) / ADAPTER_NOTE
    if not Path(adapter).is_dir():
        try:
            path = Path(hf_hub_download(str(adapter), ADAPTER_NOTE))
        except Exception:  # no note on the Hub, or offline without it cached: nothing recorded
            return None
    if not path.is_file():
        return None
    try:
        side = json.loads(path.read_text()).get("image_size")
    except (ValueError, AttributeError) as error:
        raise ValueError(f"{path}: not a JSON object with image_size ({error})") from None
    return int(side) if side else None


def save_merged(model: nn.Module, folder: str | Path, processor: ProcessorMixin | None = None) -> Path:
    """Write a Hugging Face folder with the LoRA updates merged into the weights.

    The merge runs on a deep copy, so ``model`` keeps its adapters and stays usable (for a large
    model this briefly holds a second copy of the weights on the model's device). A plain
    ``Sam3Model`` (full fine-tuning) is written as it is.

    Args:
        model: A ``peft.PeftModel`` around a ``Sam3Model``, or a ``Sam3Model``.
        folder: Where to write ``config.json`` and ``model.safetensors``; created if missing.
        processor: Optional ``Sam3Processor`` whose files are written beside the weights.

    Returns:
        The folder, loadable with ``Sam3Model.from_pretrained`` (and ``Sam3Processor`` when given).
    """
    folder = Path(folder)
    merged = copy.deepcopy(model).merge_and_unload() if isinstance(model, PeftModel) else model
    merged.save_pretrained(str(folder))
    if processor is not None:
        processor.save_pretrained(str(folder))
    return folder


def _base_key(name: str) -> str:
    """The part of a base-model reference that :func:`bases_match` compares."""
    text = name.strip().replace("\\", "/").rstrip("/")
    snapshot = _HF_CACHE_SNAPSHOT.search(text)
    if snapshot:
        text = f"{snapshot.group(1)}/{snapshot.group(2)}"
    return text.rsplit("/", 1)[-1].casefold()


def bases_match(recorded: str, expected: str) -> bool:
    """Whether two references to a base model denote the same one.

    The rule: equal strings match; otherwise the last path component of each is compared,
    case-insensitively, after turning a Hugging Face cache snapshot path
    (``.../models--ORG--NAME/snapshots/REV``) into ``ORG/NAME``. So ``"facebook/sam3"`` matches
    ``"/data/checkpoints/sam3/"`` and a cached snapshot of ``facebook/sam3``, but not
    ``"facebook/sam2"``.

    Args:
        recorded: The reference stored in the adapter.
        expected: The reference of the base model at hand.

    Returns:
        ``True`` if they match by this rule.
    """
    return recorded == expected or _base_key(recorded) == _base_key(expected)


def load_adapter(
    base_model: nn.Module,
    adapter: str | Path,
    *,
    expected_base: str | None = None,
    trainable: bool = False,
) -> PeftModel:
    """Put a saved LoRA adapter on a base model.

    Args:
        base_model: A plain ``Sam3Model``; it is modified in place (its linears are wrapped).
        adapter: Hub id or local folder holding ``adapter_config.json`` and the adapter weights.
        expected_base: Reference of ``base_model`` (hub id or folder); when given, the adapter's
            recorded ``base_model_name_or_path`` must match it by the rule of :func:`bases_match`.
        trainable: Keep the adapter weights trainable (to continue training) instead of frozen.

    Returns:
        The ``peft.PeftModel``.

    Raises:
        ValueError: If ``expected_base`` is given and the adapter was trained on another base model
            or records none, or the adapter cannot be read (see `check_adapter_source`).
        FileNotFoundError: If a file of the adapter is missing (see `check_adapter_source`).
    """
    adapter = str(adapter)
    check_adapter_source(adapter)
    if expected_base is not None:
        recorded = PeftConfig.from_pretrained(adapter).base_model_name_or_path
        if not recorded or not bases_match(recorded, str(expected_base)):
            raise ValueError(
                f"adapter {adapter!r} was trained on base model {recorded!r}, but it is being loaded onto "
                f"{str(expected_base)!r}; load the base model the adapter was made for"
            )
    with peft_wrapping():
        return PeftModel.from_pretrained(base_model, adapter, is_trainable=trainable)


#: The weight files PEFT writes; one of them must be in an adapter folder.
ADAPTER_WEIGHTS = ("adapter_model.safetensors", "adapter_model.bin")


def check_adapter_source(adapter: str) -> None:
    """Check that an adapter can be read before PEFT tries, so that what is wrong is said plainly.

    A local folder needs a readable ``adapter_config.json`` and a weights file. Anything else must
    be a Hub repo id, and with the Hub offline (``HF_HUB_OFFLINE=1``) a copy in the local cache.

    Raises:
        FileNotFoundError: If the folder lacks its config or weights.
        ValueError: If the config is not valid JSON, or ``adapter`` is a file or no repo id.
        OSError: If the Hub is offline and the adapter is not in the cache.
    """
    folder = Path(adapter)
    if folder.is_dir():
        config = folder / "adapter_config.json"
        if not config.is_file():
            raise FileNotFoundError(
                f"adapter folder {folder} has no adapter_config.json: give a folder written by "
                "`sam3-adapt export` or peft's save_pretrained"
            )
        try:
            json.loads(config.read_text())
        except (UnicodeDecodeError, ValueError) as err:
            raise ValueError(
                f"{config}: not valid JSON ({err}); the adapter is damaged: export it again"
            ) from None
        if not any((folder / name).is_file() for name in ADAPTER_WEIGHTS):
            raise FileNotFoundError(
                f"adapter folder {folder} has no weights ({' or '.join(ADAPTER_WEIGHTS)}): it was not saved "
                "to the end; export it again"
            )
        return
    if folder.exists():
        raise ValueError(f"adapter {adapter!r} is a file: give the folder that holds adapter_config.json")
    try:
        validate_repo_id(adapter)
    except HFValidationError:
        raise FileNotFoundError(
            f"adapter {adapter!r} is neither a local folder nor a Hub repo id (org/name)"
        ) from None
    if hf_constants.HF_HUB_OFFLINE:
        try:
            hf_hub_download(adapter, "adapter_config.json", local_files_only=True)
        except Exception:  # any miss of the local cache means the same thing here
            raise OSError(
                f"adapter {adapter!r} is not a local folder, and the Hugging Face Hub is offline "
                "(HF_HUB_OFFLINE=1) with no cached copy of it: download it once while online, or give "
                "its local folder"
            ) from None


def save_trained(
    network: nn.Module, folder: str | Path, base: str, merged: bool = False, subfolder: bool = True
) -> tuple[Path | None, Path]:
    """Save what a fit trained: the one place that decides between an adapter and merged weights.

    A LoRA network becomes ``folder/adapter`` (PEFT files, ``base`` recorded); with ``merged``, or
    after full fine-tuning, ``folder/model`` holds the merged weights and the base's processor files,
    an ordinary SAM 3 folder whose configuration and processor take the side the network last ran at
    (a recipe at 504 px gives a 504 px model). With ``subfolder=False`` either is written into
    ``folder`` itself.

    Args:
        network: The trained ``peft.PeftModel`` or ``Sam3Model``.
        folder: Parent folder of what is written.
        base: Hub id, folder or short name of the base model it was trained on.
        merged: Write merged weights even for a LoRA network.
        subfolder: Write into ``folder/adapter`` or ``folder/model`` rather than ``folder``.

    Returns:
        ``(adapter, weights)``: the adapter folder (``None`` when merged weights were written), and
        the folder to load the trained model from.
    """
    folder = Path(folder)
    if isinstance(network, PeftModel) and not merged:
        adapter = save_adapter(network, folder / "adapter" if subfolder else folder, base_model_name=base)
        return adapter, adapter
    processor = Sam3Processor.from_pretrained(resolve_checkpoint(base))
    # Trained at another side (set_input_side records it in the config): the folder's processor says so too.
    side = native_image_size(network.config)
    processor.image_processor.size = {"height": side, "width": side}
    return None, save_merged(network, folder / "model" if subfolder else folder, processor=processor)
