import json
from pathlib import Path

import pytest

from sam3_adapt.jobs.pretrain_tiny import pretrain_tiny
from sam3_adapt.model.loading import load_sam3

SMALL = {"image_size": 112, "train_images": 4, "val_images": 2, "batch_size": 2, "val_every_steps": 2}


def test_an_interrupted_pretraining_resumes_with_ckpt_path_last(tmp_path):
    out, work = tmp_path / "base", tmp_path / "work"
    with pytest.raises(FileNotFoundError, match="no last.ckpt"):
        pretrain_tiny(out=str(out), work_dir=str(work), max_steps=2, ckpt_path="last", **SMALL)

    pretrain_tiny(out=str(out), work_dir=str(work), max_steps=2, **SMALL)
    first = json.loads((out / "provenance.json").read_text())
    assert first["steps"] == 2 and first["resumed_from"] is None

    pretrain_tiny(out=str(out), work_dir=str(work), max_steps=4, ckpt_path="last", **SMALL)
    resumed = json.loads((out / "provenance.json").read_text())
    assert resumed["steps"] == 4
    interrupted = ("lightning_logs", "version_0", "checkpoints", "last.ckpt")
    assert Path(resumed["resumed_from"]).parts[-4:] == interrupted
    network, processor = load_sam3(str(out))
    assert processor.image_processor.size["height"] == 112
