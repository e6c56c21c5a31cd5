"""Turn a Lightning checkpoint of the task into a PEFT adapter or merged Hugging Face weights."""

from __future__ import annotations

import warnings
from pathlib import Path

from sam3_adapt.fitting.out_folder import OutFolder
from sam3_adapt.fitting.run_files import find_run, warn_if_stale
from sam3_adapt.model.persistence import save_trained
from sam3_adapt.training.task import ConceptSegmentationTask


def export(ckpt_path: str, out: str, merged: bool = False, overwrite: bool = False) -> Path:
    """Write the trained model of a ``sam3-adapt fit`` checkpoint in a form others can load.

    LoRA runs become an adapter folder (``adapter_config.json`` + ``adapter_model.safetensors``,
    the base model recorded) that ``load_sam3(base, adapter=out)`` and ``peft.PeftModel`` load;
    with ``merged`` (and always for full fine-tuning) the folder holds merged weights and the
    processor, loadable with ``Sam3Model.from_pretrained`` and ``load_sam3(out)``. The folder also
    holds ``manifest.json`` and appears only once complete (see `sam3_adapt.fitting.out_folder`). A
    checkpoint older than the run's last logged step is exported with a warning.

    Args:
        ckpt_path: A ``.ckpt`` written by ``sam3-adapt fit`` (e.g. ``.../checkpoints/last.ckpt``).
        out: Output folder; it must be new or empty unless ``overwrite`` is given.
        merged: Merge LoRA weights into the base and write full weights instead of an adapter.
        overwrite: Replace what ``out`` holds.

    Returns:
        The output folder.

    Raises:
        FileNotFoundError: If ``ckpt_path`` does not exist.
        ValueError: If it is no checkpoint of ``sam3-adapt fit``, or holds objects other than tensors
            and plain data (it is never unpickled with code; see
            `sam3_adapt.fitting.run_files.load_checkpoint`).
        OutFolderError: If ``out`` is not empty (without ``overwrite``) or another run writes it.
    """
    if not Path(ckpt_path).is_file():
        raise FileNotFoundError(
            f"no checkpoint at {ckpt_path!r}; fit writes them under <root>/lightning_logs/"
        )
    warn_if_stale(find_run(ckpt_path))  # find_run refuses, with a clear message, what is no checkpoint
    with OutFolder(out, "export", {"ckpt_path": ckpt_path, "merged": merged}, overwrite) as folder:
        adapter = write_export(ckpt_path, folder, merged)
    print(f"wrote {'adapter' if adapter else 'merged weights'} to {Path(out)}")
    return Path(out)


def write_export(ckpt_path: str | Path, folder: Path, merged: bool) -> bool:
    """Write a checkpoint's trained model into ``folder`` (an adapter, or merged weights).

    Returns:
        Whether an adapter (rather than merged weights) was written.
    """
    with warnings.catch_warnings():
        # Checkpoints hold only the trained weights by design; the frozen rest comes from the base model.
        warnings.filterwarnings("ignore", message="Found keys that are in the model state dict but not in")
        task = ConceptSegmentationTask.load_from_checkpoint(ckpt_path, map_location="cpu", weights_only=True)
    network = task.segmenter.network.eval()
    adapter, _ = save_trained(network, folder, str(task.hparams.checkpoint), merged=merged, subfolder=False)
    return adapter
