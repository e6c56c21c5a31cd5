"""Turn a Lightning checkpoint of the task into a PEFT adapter or merged Hugging Face weights."""

from __future__ import annotations

import warnings
from pathlib import Path

from peft import PeftModel
from transformers import Sam3Processor

from adapt.task import ConceptSegmentationTask
from model.loading import resolve_checkpoint
from model.persistence import save_adapter, save_merged


def export(ckpt_path: str, out: str, merged: bool = False) -> Path:
    """Write the trained model of a ``sam3-adapt fit`` checkpoint in a form others can load.

    LoRA runs become an adapter folder (``adapter_config.json`` + ``adapter_model.safetensors``,
    the base model recorded) that ``load_sam3(base, adapter=out)`` and ``peft.PeftModel`` load;
    with ``merged`` (and always for full fine-tuning) the folder holds merged weights and the
    processor, loadable with ``Sam3Model.from_pretrained`` and ``load_sam3(out)``.

    Args:
        ckpt_path: A ``.ckpt`` written by ``sam3-adapt fit`` (e.g. ``.../checkpoints/last.ckpt``).
        out: Output folder.
        merged: Merge LoRA weights into the base and write full weights instead of an adapter.

    Returns:
        The output folder.

    Raises:
        FileNotFoundError: If ``ckpt_path`` does not exist.
    """
    if not Path(ckpt_path).is_file():
        raise FileNotFoundError(
            f"no checkpoint at {ckpt_path!r}; fit writes them under <root>/lightning_logs/"
        )
    with warnings.catch_warnings():
        # Checkpoints hold only the trained weights by design; the frozen rest comes from the base model.
        warnings.filterwarnings("ignore", message="Found keys that are in the model state dict but not in")
        task = ConceptSegmentationTask.load_from_checkpoint(ckpt_path, map_location="cpu")
    network = task.segmenter.network.eval()
    base = task.hparams.checkpoint
    if isinstance(network, PeftModel) and not merged:
        folder = save_adapter(network, out, base_model_name=base)
    else:
        folder = save_merged(network, out, processor=Sam3Processor.from_pretrained(resolve_checkpoint(base)))
    print(
        f"wrote {'merged weights' if merged or not isinstance(network, PeftModel) else 'adapter'} to {folder}"
    )
    return folder
