"""Turn a Lightning checkpoint of the task into a PEFT adapter or merged Hugging Face weights."""

from __future__ import annotations

import warnings
from pathlib import Path

from sam3_adapt.fitting.run_files import load_checkpoint
from sam3_adapt.model.persistence import save_trained
from sam3_adapt.training.task import ConceptSegmentationTask


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
        ValueError: If it is no checkpoint, or holds objects other than tensors and plain data
            (it is never unpickled with code; see `sam3_adapt.fitting.run_files.load_checkpoint`).
    """
    if not Path(ckpt_path).is_file():
        raise FileNotFoundError(
            f"no checkpoint at {ckpt_path!r}; fit writes them under <root>/lightning_logs/"
        )
    load_checkpoint(ckpt_path)  # refuses, with a clear message, what weights_only loading cannot read
    with warnings.catch_warnings():
        # Checkpoints hold only the trained weights by design; the frozen rest comes from the base model.
        warnings.filterwarnings("ignore", message="Found keys that are in the model state dict but not in")
        task = ConceptSegmentationTask.load_from_checkpoint(ckpt_path, map_location="cpu", weights_only=True)
    network = task.segmenter.network.eval()
    adapter, folder = save_trained(network, out, str(task.hparams.checkpoint), merged=merged, subfolder=False)
    print(f"wrote {'adapter' if adapter else 'merged weights'} to {folder}")
    return folder
