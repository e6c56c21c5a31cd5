"""Bad inputs through the command line: a non-zero exit, one line naming file and record, no traceback,
the input unchanged and no output folder."""

from __future__ import annotations

import json
import math
import os
import re
import subprocess
import sys

import pytest

from tests.robustness.conftest import write_coco
from tests.robustness.test_images import UNREADABLE
from tests.robustness.test_labels import CASES as LABELS


def _nan_polygon(coco, image_dir):
    coco["annotations"][0]["segmentation"] = [[5, 5, math.nan, 5, 15, 15]]


def _escaping_path(coco, image_dir):
    coco["images"][1]["file_name"] = "../../b.png"


def _empty_image(coco, image_dir):
    (image_dir / "a.png").write_bytes(b"")


def _label_case(mutate):
    return lambda coco, image_dir: mutate(coco)


def _image_case(damage):
    return lambda coco, image_dir: damage(image_dir / "a.png")


#: name -> (damage(coco, image_dir), regular expression the message must hold). The catalogue: every
#: bad label of test_labels.py and unreadable image of test_images.py, now through the command line.
CASES = {
    "NaN polygon": (_nan_polygon, re.escape("annotation id 10 (image id 1, a.png): a polygon has a NaN")),
    "file_name outside image_dir": (
        _escaping_path,
        re.escape("image id 2 (../../b.png): file_name must be a path inside"),
    ),
    "0-byte image": (_empty_image, re.escape("image id 1 (a.png): ")),
    **{f"label: {name}": (_label_case(mutate), pattern) for name, (mutate, pattern) in LABELS.items()},
    **{
        f"image: {name}": (_image_case(damage), r"image id 1 \(a\.png\): .*a\.png: " + pattern)
        for name, (damage, pattern) in UNREADABLE.items()
    },
}


@pytest.mark.slow
@pytest.mark.parametrize("case", sorted(CASES))
def test_evaluate_refuses_bad_input_in_one_line(tmp_path, basic_coco, case):
    damage, expected = CASES[case]
    coco = basic_coco
    json_path, image_dir = write_coco(tmp_path, coco, "ann.json")
    damage(coco, image_dir)
    json_path.write_text(json.dumps(coco))
    before = {p: p.read_bytes() for p in [json_path, *image_dir.iterdir()]}
    done = subprocess.run(
        [sys.executable, "-m", "sam3_adapt.cli", "evaluate", "--data_json", str(json_path)]
        + ["--image_dir", str(image_dir), "--out", str(tmp_path / "out"), "--progress", "false"],
        capture_output=True,
        text=True,
        env={**os.environ, "HF_HUB_OFFLINE": "1", "SAM3_ADAPT_DEBUG": "0", "SAM3_ADAPT_MAX_PIXELS": "1e6"},
        timeout=300,
    )
    last = done.stderr.strip().splitlines()[-1]
    assert done.returncode != 0
    assert "Traceback" not in done.stderr + done.stdout
    assert "ann.json" in last and re.search(expected, last), last
    assert len(done.stderr.strip().splitlines()) == 1, done.stderr
    assert {p: p.read_bytes() for p in before} == before
    assert not (tmp_path / "out").exists()


def _adapter_with_bad_json(tmp_path):
    (tmp_path / "adapter").mkdir()
    (tmp_path / "adapter" / "adapter_config.json").write_text('{"peft_type": "LORA", ')
    return ["--adapter", str(tmp_path / "adapter")]


def _adapter_without_weights(tmp_path):
    (tmp_path / "adapter").mkdir()
    (tmp_path / "adapter" / "adapter_config.json").write_text('{"peft_type": "LORA", "r": 4}')
    return ["--adapter", str(tmp_path / "adapter")]


#: name -> (verb, extra arguments(tmp_path), regular expression the one line must hold)
SETTINGS = {
    "adapter config not JSON": ("evaluate", _adapter_with_bad_json, r"adapter_config\.json: not valid JSON"),
    "adapter without weights": ("evaluate", _adapter_without_weights, r"has no weights \(adapter_model"),
    "hub adapter while offline": (
        "evaluate",
        lambda tmp_path: ["--adapter", "org/not-cached-adapter"],
        r"'org/not-cached-adapter' is not a local folder, and the Hugging Face Hub is offline",
    ),
    "adapter path that does not exist": (
        "evaluate",
        lambda tmp_path: ["--adapter", "./no/such/adapter"],
        r"neither a local folder nor a Hub repo id",
    ),
    "recipe with a YAML syntax error": (
        "fit",
        lambda tmp_path: ["--config", str(_write(tmp_path / "broken.yaml", "model:\n  lora: [1, 2\n"))],
        r"broken\.yaml: line 3, column 1: not valid YAML",
    ),
    "LoRA rank 0": (
        "fit",
        lambda tmp_path: ["--config", "tiny-10shot", "--model.lora.rank", "0"],
        r"rank must be",
    ),
    "export of a file that is no checkpoint": (
        "export",
        lambda tmp_path: [
            "--ckpt_path",
            str(_write(tmp_path / "x.ckpt", "no")),
            "--out",
            str(tmp_path / "out"),
        ],
        r"x\.ckpt: refused to load: not a checkpoint",
    ),
    "resume from a file that is no checkpoint": (
        "fit",
        lambda tmp_path: ["--config", "tiny-10shot", "--ckpt_path", str(_write(tmp_path / "x.ckpt", "no"))],
        r"x\.ckpt: refused to load: not a checkpoint",
    ),
}


def _write(path, text):
    path.write_text(text)
    return path


@pytest.mark.slow
@pytest.mark.parametrize("case", sorted(SETTINGS))
def test_bad_settings_and_files_are_refused_in_one_line(tmp_path, basic_coco, case):
    verb, extra, expected = SETTINGS[case]
    json_path, image_dir = write_coco(tmp_path, basic_coco, "ann.json")
    data = {
        "evaluate": [
            "--data_json",
            str(json_path),
            "--image_dir",
            str(image_dir),
            "--out",
            str(tmp_path / "out"),
        ],
        "fit": ["--data.train_json", str(json_path), "--data.image_dir", str(image_dir)],
        "export": [],
    }[verb]
    args = [*data, *extra(tmp_path)]
    before = {p: p.read_bytes() for p in tmp_path.rglob("*") if p.is_file()}
    done = subprocess.run(
        [sys.executable, "-m", "sam3_adapt.cli", verb, *args],
        capture_output=True,
        text=True,
        cwd=tmp_path,
        env={**os.environ, "HF_HUB_OFFLINE": "1", "SAM3_ADAPT_DEBUG": "0"},
        timeout=300,
    )
    last = done.stderr.strip().splitlines()[-1]
    assert done.returncode != 0
    assert "Traceback" not in done.stderr + done.stdout
    assert last.startswith(f"sam3-adapt {verb}: error: ") and re.search(expected, last), last
    assert {p: p.read_bytes() for p in before} == before
    assert not (tmp_path / "out").exists() and not (tmp_path / "lightning_logs").exists()
