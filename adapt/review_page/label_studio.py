"""Label Studio, for teams that already use it: the review queue as tasks, and their answers as decisions.

`to_label_studio` writes one task per queued pair: the image, the phrase, and the proposed instances
as a prediction of brush masks (Label Studio's RLE, made by the label-studio-sdk's own converter), with
the labelling configuration beside it (``label_config.xml``: a brush per phrase and a choice of
``exhaustive``, ``not_exhaustive`` or ``absent``). `from_label_studio` reads Label Studio's JSON
export of those tasks back into the round's journal, one transaction per pair, as a person's
decisions: a proposed mask kept as it was is ``accept``, one edited is ``fix``, one deleted is
``reject``, a new brush mask is ``add``; the choice closes the pair (``exhaustive`` when none is
chosen). Pairs already closed in the journal are left as they are.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np
from pycocotools import mask as mask_utils

from sam3_adapt.engine.journal import Decision
from sam3_adapt.engine.signals import encode_rle
from sam3_adapt.review_page.session import CLOSING, ReviewError, ReviewSession

#: The labelling configuration of the tasks (``{labels}``: one ``<Label>`` per phrase).
LABEL_CONFIG = """<View>
  <Image name="image" value="$image" zoom="true"/>
  <Header value="$phrase"/>
  <BrushLabels name="mask" toName="image">
{labels}
  </BrushLabels>
  <Choices name="pair" toName="image" choice="single" showInline="true">
    <Choice value="exhaustive"/>
    <Choice value="not_exhaustive"/>
    <Choice value="absent"/>
  </Choices>
</View>
"""


def _sdk() -> Any:
    try:
        from label_studio_sdk.converter import brush
    except ImportError as error:
        raise ImportError(
            "Label Studio export and import need the label-studio-sdk: pip install 'sam3-adapt[label-studio]'"
        ) from error
    return brush


def to_label_studio(
    session: ReviewSession, out: str | Path, image_prefix: str = "/data/local-files/?d="
) -> int:
    """Write the round's queue as Label Studio tasks (and ``label_config.xml`` beside them).

    Args:
        session: The round under review.
        out: The tasks file (JSON, Label Studio's import format).
        image_prefix: Put before each image's ``file_name`` in ``data.image`` (Label Studio's local
            files by default; a URL prefix for images served elsewhere).

    Returns:
        The number of tasks written.
    """
    brush = _sdk()
    tasks = []
    for index, request in enumerate(session.files.queue):
        results = []
        for inst in request.instances:
            mask = mask_utils.decode(inst["segmentation"]).astype(np.uint8) * 255
            results.append(
                {
                    "id": f"p{inst['index']}",
                    "type": "brushlabels",
                    "from_name": "mask",
                    "to_name": "image",
                    "original_width": request.width,
                    "original_height": request.height,
                    "image_rotation": 0,
                    "value": {"format": "rle", "rle": brush.mask2rle(mask), "brushlabels": [request.phrase]},
                    "score": inst["score"],
                }
            )
        tasks.append(
            {
                "data": {
                    "image": image_prefix + request.file_name,
                    "file_name": request.file_name,
                    "phrase": request.phrase,
                    "queue_index": index,
                    "presence": request.presence,
                    "ev_verdict": request.ev_verdict,
                },
                "predictions": [
                    {
                        "model_version": f"sam3-adapt round {session.files.round}",
                        "score": request.presence,
                        "result": results,
                    }
                ],
            }
        )
    out = Path(out)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(tasks))
    phrases = sorted({r.phrase for r in session.files.queue})
    labels = "\n".join(f'    <Label value="{p}"/>' for p in phrases)
    (out.parent / "label_config.xml").write_text(LABEL_CONFIG.format(labels=labels))
    return len(tasks)


def from_label_studio(session: ReviewSession, export: str | Path) -> int:
    """Journal the answers of a Label Studio JSON export of `to_label_studio`'s tasks.

    Args:
        session: The round under review.
        export: Label Studio's JSON export (a list of tasks with ``annotations``).

    Returns:
        The number of decisions written.

    Raises:
        ReviewError: If a task names a pair that is not in the round's queue.
    """
    brush = _sdk()
    export = Path(export)
    pairs = {(r.file_name, r.phrase): k for k, r in enumerate(session.files.queue)}
    written = 0
    for number, task in enumerate(json.loads(export.read_text())):
        data = task.get("data", {})
        key = (data.get("file_name"), data.get("phrase"))
        if key not in pairs:
            raise ReviewError(
                f"{export}, task {task.get('id', number)}: {key} is not a pair of this round's queue"
            )
        done = [a for a in task.get("annotations", []) if not a.get("was_cancelled")]
        if not done:
            continue
        shown = session.pair(pairs[key])
        if shown["closed"] is not None:
            continue
        request = session.files.queue[pairs[key]]
        actor = f"label-studio:{done[-1].get('completed_by', session.actor)}"
        common = {"file_name": key[0], "phrase": key[1], "actor": actor, "actor_kind": "human"}
        common["round"] = session.files.round
        decisions = _decisions(brush, done[-1]["result"], request, common)
        session.journal.append(decisions, expect=(key[0], key[1], shown["version"]))
        written += len(decisions)
    return written


def _decisions(
    brush: Any, results: list[dict[str, Any]], request: Any, common: dict[str, Any]
) -> list[Decision]:
    """A pair's decisions from one Label Studio annotation of it."""
    masks: dict[str, np.ndarray] = {}
    choice = "exhaustive"
    for result in results:
        if result.get("type") == "choices" and result["value"].get("choices"):
            choice = result["value"]["choices"][0]
        elif result.get("type") == "brushlabels" and result["value"].get("format", "rle") == "rle":
            height, width = result["original_height"], result["original_width"]
            alpha = np.reshape(brush.decode_rle(result["value"]["rle"]), (height, width, 4))[:, :, 3]
            masks[str(result["id"])] = alpha > 0
    if choice not in CLOSING:
        raise ReviewError(
            f"{request.file_name} / {request.phrase!r}: unknown choice {choice!r}; one of {CLOSING}"
        )
    if choice == "absent":
        return [Decision(kind="absent", **common)]
    decisions = []
    for inst in request.instances:
        mask = masks.pop(f"p{inst['index']}", None)
        if mask is None:
            decisions.append(Decision(kind="reject", instance=inst["index"], **common))
        elif np.array_equal(mask, mask_utils.decode(inst["segmentation"]).astype(bool)):
            decisions.append(Decision(kind="accept", instance=inst["index"], **common))
        elif mask.any():
            decisions.append(Decision(kind="fix", instance=inst["index"], value=_instance(mask), **common))
    decisions += [Decision(kind="add", value=_instance(m), **common) for m in masks.values() if m.any()]
    return [*decisions, Decision(kind=choice, **common)]


def _instance(mask: np.ndarray) -> dict[str, Any]:
    """A mask as the journal keeps a person's instance: its tight box and its RLE."""
    rows, cols = np.flatnonzero(mask.any(axis=1)), np.flatnonzero(mask.any(axis=0))
    box = [float(cols[0]), float(rows[0]), float(cols[-1] + 1), float(rows[-1] + 1)]
    return {"box": box, "segmentation": encode_rle(mask)}
