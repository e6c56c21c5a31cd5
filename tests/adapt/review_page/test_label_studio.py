"""The queue goes out as Label Studio tasks (brush RLE predictions); their answers come back as decisions."""

import json
import os

import numpy as np
import pytest
from pycocotools import mask as mask_utils

from sam3_adapt.review_page.label_studio import from_label_studio, to_label_studio
from sam3_adapt.review_page.session import ReviewSession, read_round

try:
    from label_studio_sdk.converter import brush
except ImportError:
    # Optional (pip install 'sam3-adapt[label-studio]'); CI installs it and sets the variable.
    if os.environ.get("SAM3_ADAPT_REQUIRE_LABEL_STUDIO"):
        raise
    pytest.skip("label-studio-sdk is not installed", allow_module_level=True)


def test_tasks_out_and_answers_back_through_the_sdks_brush_rle(round_copy, tmp_path):
    folder, _ = round_copy
    session = ReviewSession(read_round(folder), "tester")
    assert to_label_studio(session, tmp_path / "tasks.json") == len(session.files.queue)
    tasks = json.loads((tmp_path / "tasks.json").read_text())
    assert "<BrushLabels" in (tmp_path / "label_config.xml").read_text()
    with_two = next(k for k, r in enumerate(session.files.queue) if len(r.instances) >= 2)
    request = session.files.queue[with_two]
    # Each prediction decodes (with the SDK) to the proposal's own mask.
    predicted = tasks[with_two]["predictions"][0]["result"]
    for result, inst in zip(predicted, request.instances):
        alpha = brush.decode_rle(result["value"]["rle"]).reshape(request.height, request.width, 4)[:, :, 3]
        assert np.array_equal(alpha > 0, mask_utils.decode(inst["segmentation"]).astype(bool))

    # What Label Studio exports after a person worked two tasks: on the first, kept instance 0 as
    # predicted, deleted instance 1, painted a new square and ticked not_exhaustive; the second absent.
    new = np.zeros((request.height, request.width), dtype=np.uint8)
    new[5:25, 10:30] = 255
    painted = {**predicted[0], "id": "new1", "value": {**predicted[0]["value"], "rle": brush.mask2rle(new)}}
    choice = {"id": "c", "type": "choices", "from_name": "pair", "to_name": "image"}
    tasks[with_two]["annotations"] = [
        {
            "completed_by": 7,
            "result": [predicted[0], painted, {**choice, "value": {"choices": ["not_exhaustive"]}}],
        }
    ]
    other = next(k for k in range(len(tasks)) if k != with_two)
    tasks[other]["annotations"] = [
        {"completed_by": 7, "result": [{**choice, "value": {"choices": ["absent"]}}]}
    ]
    (tmp_path / "export.json").write_text(json.dumps(tasks))

    extra = len(request.instances) - 2  # instances past the first two were deleted too
    assert from_label_studio(session, tmp_path / "export.json") == 4 + extra + 1
    decisions = session.journal.decisions(actor_kind="human")
    first = [
        (d.kind, d.instance)
        for d in decisions
        if d.file_name == request.file_name and d.phrase == request.phrase
    ]
    rejects = [("reject", k) for k in range(1, len(request.instances))]
    assert first == [("accept", 0), *rejects, ("add", None), ("not_exhaustive", None)]
    added = next(d for d in decisions if d.kind == "add")
    assert added.value["box"] == [10.0, 5.0, 30.0, 25.0] and added.actor == "label-studio:7"
    assert np.array_equal(mask_utils.decode(added.value["segmentation"]) > 0, new > 0)
    assert [
        d.kind
        for d in decisions
        if d.file_name == session.files.queue[other].file_name
        and d.phrase == session.files.queue[other].phrase
    ] == ["absent"]
    # A second import of the same export writes nothing: those pairs are closed.
    assert from_label_studio(session, tmp_path / "export.json") == 0
