"""Proposals on disk: one JSON line per image, in per-process shards, appended and fsynced.

A proposals folder holds ``run.json`` (what made it: model, adapter, phrases, thresholds, and a run id
that the decision journal is tied to) and ``shard-<rank>.jsonl`` files. A line is written whole and
flushed to disk before the next image starts, so a killed run loses at most the image in flight; a
cut-short last line is dropped when the shard is next opened. Reading merges the shards (an image
written by two processes, which Lightning's distributed sampler does when it pads, counts once).
"""

from __future__ import annotations

import json
import os
import uuid
from pathlib import Path
from typing import Any

RUN_FILE = "run.json"


class ProposalRunError(ValueError):
    """A proposals folder, or a journal, belongs to another proposals run."""


def open_run(folder: str | Path, settings: dict[str, Any]) -> str:
    """Start or resume the proposals run in ``folder``; return its run id.

    Args:
        folder: The proposals folder (created when missing).
        settings: What defines the run (model, adapter, phrases, thresholds, pool). A folder made with
            other settings is not resumed: its proposals would mix two models.

    Raises:
        ProposalRunError: If ``folder`` holds a run with other settings.
    """
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / RUN_FILE
    if path.is_file():
        run = json.loads(path.read_text())
        if run["settings"] != settings:
            changed = sorted(
                k for k in set(run["settings"]) | set(settings) if run["settings"].get(k) != settings.get(k)
            )
            raise ProposalRunError(
                f"{folder} holds proposals of another run (run id {run['run_id']}; different "
                f"{', '.join(changed)}): give another --out, or the same settings to resume it"
            )
        return str(run["run_id"])
    run_id = uuid.uuid4().hex
    partial = path.with_suffix(".tmp")
    partial.write_text(json.dumps({"run_id": run_id, "settings": settings}, indent=1) + "\n")
    partial.replace(path)
    return run_id


def run_info(folder: str | Path) -> dict[str, Any]:
    """``{"run_id", "settings"}`` of a proposals folder.

    Raises:
        ProposalRunError: If the folder holds no proposals run.
    """
    path = Path(folder) / RUN_FILE
    if not path.is_file():
        raise ProposalRunError(
            f"{folder}: not a proposals folder (no {RUN_FILE}); run sam3-adapt propose first"
        )
    return json.loads(path.read_text())


class ShardWriter:
    """Appends image records to one shard, each line flushed and fsynced before the next.

    Args:
        path: The shard file; a cut-short last line left by a killed run is removed first.
    """

    def __init__(self, path: str | Path) -> None:
        self.path = Path(path)
        _drop_partial_line(self.path)
        self._file = open(self.path, "a", encoding="utf-8")  # noqa: SIM115 (closed in close())

    def write(self, record: dict[str, Any]) -> None:
        """Append one image's record durably."""
        self._file.write(json.dumps(record, separators=(",", ":")) + "\n")
        self._file.flush()
        os.fsync(self._file.fileno())

    def close(self) -> None:
        """Close the file."""
        self._file.close()


def _drop_partial_line(path: Path) -> None:
    """Cut a file back to its last complete line (a kill can leave half a line at the end)."""
    if not path.is_file():
        return
    data = path.read_bytes()
    if data and not data.endswith(b"\n"):
        with open(path, "r+b") as f:
            f.truncate(data.rfind(b"\n") + 1)


def read_proposals(folder: str | Path) -> dict[str, dict[str, Any]]:
    """Every image record of a proposals folder, merged over its shards, by ``file_name``.

    A cut-short last line (a run killed mid-write) is skipped.
    """
    records: dict[str, dict[str, Any]] = {}
    for shard in sorted(Path(folder).glob("shard-*.jsonl")):
        for line in shard.read_text(encoding="utf-8").splitlines():
            try:
                record = json.loads(line)
            except json.JSONDecodeError:
                continue
            records.setdefault(record["file_name"], record)
    return dict(sorted(records.items()))
