"""One engine round under review: its queue, its images, its journal, and what each page action writes.

The queue is the round's ``review_queue.jsonl`` (written by ``sam3-adapt engine``, most useful pair
first); a pair is done once a person closed it in the round's ``journal.sqlite`` (``exhaustive``,
``not_exhaustive`` or ``absent``, not undone). Every action is one journal transaction, written
before the page is answered, and conditional on the pair being as the page last saw it
(`Journal.append`'s ``expect``): of two tabs acting on one pair from the same state, one writes and
the other is told to reload. Undo appends an ``undo`` decision naming the decisions of the last
action, which readers of the journal (export, the engine, this page) then ignore.
"""

from __future__ import annotations

import json
import threading
import uuid
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
from pycocotools import mask as mask_utils
from torchvision.ops import box_iou

from sam3_adapt.engine.annotator import ACTION_COST
from sam3_adapt.engine.journal import Decision, Journal, JournalConflict
from sam3_adapt.engine.pool import read_pool
from sam3_adapt.engine.signals import encode_rle
from sam3_adapt.engine.store import run_info
from sam3_adapt.engine.triage import ReviewRequest

#: What closes a pair.
CLOSING = ("absent", "exhaustive", "not_exhaustive")
#: Page actions and what they write (``box`` writes ``add``, or ``fix`` with ``fix: true``).
ACTIONS = ("accept", "reject", "absent", "not_exhaustive", "box", "undo")


class ReviewError(ValueError):
    """A round folder that cannot be reviewed, or an action that does not apply (the message says why)."""


@dataclass
class RoundFiles:
    """Where a round's review material lies.

    Attributes:
        folder: The round folder.
        queue: Its review requests, most useful first.
        run: Its proposals run (``run_id``, ``settings``).
        images: Image file of each ``file_name`` the queue names (the only files the page serves).
        round: The engine round number.
    """

    folder: Path
    queue: list[ReviewRequest]
    run: dict[str, Any]
    images: dict[str, Path]
    round: int


def read_round(folder: str | Path, pool: str | Path | None = None) -> RoundFiles:
    """Read an engine round folder (``review_queue.jsonl``, ``proposals/``, the pool's images).

    Args:
        folder: The round folder (``round-<r>`` of ``sam3-adapt engine``).
        pool: The pool's image folder, when it moved since the proposals were made.

    Raises:
        ReviewError: If the folder has no queue or proposals, or a queued image is missing.
    """
    folder = Path(folder)
    queue_file = folder / "review_queue.jsonl"
    if not queue_file.is_file():
        raise ReviewError(
            f"{folder}: no review_queue.jsonl; run `sam3-adapt engine` without --truth_json first, "
            "which writes the round's queue and waits for the review"
        )
    queue = []
    for number, line in enumerate(queue_file.read_text().splitlines(), start=1):
        try:
            queue.append(ReviewRequest(**json.loads(line)))
        except (json.JSONDecodeError, TypeError) as error:
            raise ReviewError(f"{queue_file}, line {number}: not a review request ({error})") from error
    run = run_info(folder / "proposals")
    source = Path(pool or run["settings"]["pool"])
    if not source.exists():
        raise ReviewError(
            f"{folder / 'proposals' / 'run.json'}: the pool {source} is not there; give --pool (where it is)"
        )
    found = {image.file_name: image.path for image in read_pool(source, on_error="skip")[0]}
    missing = sorted({r.file_name for r in queue} - set(found))
    if missing:
        raise ReviewError(
            f"{queue_file}: image {missing[0]} is not in the pool {source} ({len(missing)} missing)"
        )
    number = folder.name.rpartition("-")[2]
    return RoundFiles(
        folder,
        queue,
        run,
        {r.file_name: found[r.file_name] for r in queue},
        int(number) if number.isdigit() else 0,
    )


def run_lengths(rle: dict[str, Any]) -> list[int]:
    """A mask's uncompressed run lengths, column by column (COCO order), for the page to paint."""
    flat = np.asfortranarray(mask_utils.decode(rle).astype(bool)).ravel(order="F")
    edges = np.flatnonzero(np.diff(flat.astype(np.int8))) + 1
    bounds = np.concatenate([[0], edges, [flat.size]])
    runs = np.diff(bounds).tolist()
    return runs if not flat[0] else [0, *runs]


class ReviewSession:
    """The review of one round: reads the journal for the page and writes each action to it.

    Args:
        files: The round (`read_round`).
        actor: The person's name, written on every decision.
        prompter: Gives the mask of a drawn box (`sam3_adapt.inference.box_prompt.BoxPrompter`);
            ``None`` until the model is loaded (`set_prompter`).
    """

    def __init__(self, files: RoundFiles, actor: str = "reviewer", prompter: Any = None) -> None:
        self.files = files
        self.actor = actor
        self.prompter = prompter
        self.model_lock = threading.Lock()
        self._local = threading.local()
        self.journal  # noqa: B018 (opens the file now: a journal of another run fails at start)

    @property
    def journal(self) -> Journal:
        """The calling thread's connection to the journal (an SQLite connection stays in its thread)."""
        if getattr(self._local, "journal", None) is None:
            self._local.journal = Journal(self.files.folder / "journal.sqlite", self.files.run["run_id"])
        return self._local.journal

    def _mine(self) -> list[Decision]:
        return [
            d for d in self.journal.decisions() if d.actor_kind == "human" and d.round == self.files.round
        ]

    def next_index(self, after: int = -1) -> int | None:
        """The first pair not closed after ``after`` (wrapping round), or ``None`` when all are done."""
        closed = {(d.file_name, d.phrase) for d in self._mine() if d.kind in CLOSING}
        count = len(self.files.queue)
        for step in range(1, count + 1):
            index = (after + step) % count
            request = self.files.queue[index]
            if (request.file_name, request.phrase) not in closed:
                return index
        return None

    def progress(self, mine: list[Decision] | None = None) -> dict[str, Any]:
        """Pairs done of all, per phrase, and the actions spent (as the engine counts them)."""
        mine = self._mine() if mine is None else mine
        closed = {(d.file_name, d.phrase) for d in mine if d.kind in CLOSING}
        phrases: dict[str, list[int]] = {}
        for request in self.files.queue:
            counts = phrases.setdefault(request.phrase, [0, 0])
            counts[0] += (request.file_name, request.phrase) in closed
            counts[1] += 1
        return {
            "done": sum(c[0] for c in phrases.values()),
            "total": len(self.files.queue),
            "phrases": phrases,
            "actions": sum(ACTION_COST.get(d.kind, 0) for d in mine),
        }

    def pair(self, index: int) -> dict[str, Any]:
        """What the page shows of pair ``index``: the request, each instance's state, adds, version.

        Raises:
            ReviewError: If there is no such pair.
        """
        request = self._request(index)
        mine = self._mine()
        here = [d for d in mine if (d.file_name, d.phrase) == (request.file_name, request.phrase)]
        state = {d.instance: d for d in here if d.instance is not None}
        instances = []
        for inst in request.instances:
            d = state.get(inst["index"])
            shown = d.value if d is not None and d.kind == "fix" else inst
            instances.append(
                {
                    "index": inst["index"],
                    "box": shown["box"],
                    "score": inst["score"],
                    "verdict": inst["verdict"],
                    "p": inst["p"],
                    "state": d.kind if d is not None else "proposed",
                    "runs": run_lengths(shown["segmentation"]),
                }
            )
        added = [
            {"box": d.value["box"], "runs": run_lengths(d.value["segmentation"])}
            for d in here
            if d.kind == "add"
        ]
        closed = [d.kind for d in here if d.kind in CLOSING]
        return {
            "index": index,
            "file_name": request.file_name,
            "phrase": request.phrase,
            "width": request.width,
            "height": request.height,
            "presence": request.presence,
            "ev_verdict": request.ev_verdict,
            "instances": instances,
            "added": added,
            "closed": closed[-1] if closed else None,
            "version": self.journal.pair_seq(request.file_name, request.phrase),
            "progress": self.progress(mine),
        }

    def act(self, index: int, action: str, version: int, **details: Any) -> dict[str, Any]:
        """Write one page action to the journal; returns ``{"index": pair to show next, "wrote": n}``.

        The pair to show next is the same pair after a reject or a box, the next open one after a
        closing action (``None`` when none is left), and the pair of the undone action after an undo.

        Args:
            index: The pair.
            action: One of `ACTIONS`.
            version: The pair's ``version`` as the page last saw it (see the module's docstring).
            **details: ``instance`` for ``reject``; ``box`` (xyxy pixels) and ``fix`` for ``box``.

        Raises:
            ReviewError: For an unknown action or one that does not apply here.
            sam3_adapt.engine.journal.JournalConflict: If the pair changed since ``version``, or is closed.
        """
        if action == "undo":
            return self._undo()
        request = self._request(index)
        common = {
            "file_name": request.file_name,
            "phrase": request.phrase,
            "actor": self.actor,
            "actor_kind": "human",
            "round": self.files.round,
            "value": {"action": uuid.uuid4().hex},
        }
        shown = self.pair(index)
        if shown["closed"] is not None:
            raise JournalConflict(
                f"{request.file_name} / {request.phrase!r} is already {shown['closed']}; undo first"
            )
        open_ = [inst["index"] for inst in shown["instances"] if inst["state"] == "proposed"]
        if action in ("accept", "not_exhaustive"):
            kinds = [("accept", k) for k in open_] + [("exhaustive" if action == "accept" else action, None)]
        elif action == "absent":
            kinds = [("absent", None)]
        elif action == "reject":
            instance = int(details.get("instance", -1))
            if instance not in open_:
                raise ReviewError(
                    f"instance {instance} of {request.file_name} / {request.phrase!r} is not open"
                )
            kinds = [("reject", instance)]
        elif action == "box":
            return self._box(index, request, shown, common, version, details)
        else:
            raise ReviewError(f"unknown action {action!r}; one of {', '.join(ACTIONS)}")
        decisions = [Decision(kind=kind, instance=k, **common) for kind, k in kinds]  # type: ignore[arg-type]
        self.journal.append(decisions, expect=(request.file_name, request.phrase, version))
        return {"index": self.next_index(index) if action != "reject" else index, "wrote": len(decisions)}

    def _box(
        self,
        index: int,
        request: ReviewRequest,
        shown: dict[str, Any],
        common: dict[str, Any],
        version: int,
        details: dict[str, Any],
    ) -> dict[str, Any]:
        """A drawn box: the model's mask for it becomes an ``add``, or a ``fix`` of the instance it covers."""
        if self.prompter is None:
            raise ReviewError("the model is still loading; draw the box again in a moment")
        with self.model_lock:
            found = self.prompter(
                self.files.images[request.file_name], request.phrase, details.get("box", [])
            )
        value = {
            **common["value"],
            "box": found.box,
            "segmentation": encode_rle(found.mask),
            "score": found.score,
            "drawn": [float(v) for v in details["box"]],
            "from_box": found.from_box,
        }
        kind, instance = "add", None
        if details.get("fix"):
            candidates = [inst for inst in shown["instances"] if inst["state"] == "proposed"]
            if not candidates:
                raise ReviewError("no open instance to fix here; drag without Shift to add one")
            overlaps = box_iou(torch.tensor([c["box"] for c in candidates]), torch.tensor([value["drawn"]]))[
                :, 0
            ]
            if float(overlaps.max()) <= 0:
                raise ReviewError("the box covers no open instance; drag without Shift to add one")
            kind, instance = "fix", candidates[int(overlaps.argmax())]["index"]
        decision = Decision(kind=kind, instance=instance, **{**common, "value": value})  # type: ignore[arg-type]
        self.journal.append([decision], expect=(request.file_name, request.phrase, version))
        return {"index": index, "wrote": 1}

    def _undo(self) -> dict[str, Any]:
        """Take back the last action of this round (all the decisions it wrote)."""
        mine = self._mine()
        if not mine:
            raise ReviewError("nothing to undo")
        last = mine[-1]
        action = last.value.get("action")
        taken = [d.seq for d in mine if d.value.get("action") == action] if action else [last.seq]
        undo = Decision(
            file_name=last.file_name,
            phrase=last.phrase,
            kind="undo",
            actor=self.actor,
            actor_kind="human",
            round=self.files.round,
            value={"undoes": taken},
        )
        self.journal.append(
            [undo], expect=(last.file_name, last.phrase, self.journal.pair_seq(last.file_name, last.phrase))
        )
        index = next(
            i
            for i, r in enumerate(self.files.queue)
            if (r.file_name, r.phrase) == (last.file_name, last.phrase)
        )
        return {"index": index, "wrote": 1}

    def _request(self, index: int) -> ReviewRequest:
        if not 0 <= index < len(self.files.queue):
            raise ReviewError(f"no pair {index}: the queue has {len(self.files.queue)}")
        return self.files.queue[index]
