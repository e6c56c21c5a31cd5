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
