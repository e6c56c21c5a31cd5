"""The decision journal: every decision of the data engine, append-only, crash-safe, in SQLite.

The journal is the engine's source of truth: exports and verifier training are derived from it.
Each decision is one committed row (SQLite in WAL mode with ``synchronous=FULL``: a committed row
survives a ``kill -9`` or a power cut, and a kill mid-commit leaves the file as it was before that
commit). Rows cannot be changed or deleted (triggers refuse it); a later decision on the same item
supersedes an earlier one when exports read the journal, and an ``undo`` decision takes back the
decisions it names (their ``seq``): readers never see an undone decision. A journal belongs to one
proposals run (its run id) and refuses to open on another.
"""

from __future__ import annotations

import json
import sqlite3
from dataclasses import asdict, dataclass, field
from datetime import datetime, timezone
from pathlib import Path
from typing import Any, Literal

from sam3_adapt.engine.store import ProposalRunError

#: What a decision says. Per instance (MV): ``accept``, ``reject``, ``fix`` (a new mask from a box).
#: Per pair (EV): ``add`` (a missing instance, from a box), ``absent`` (the phrase is not in the
#: image), ``exhaustive`` (every instance is there), ``not_exhaustive`` (some are missing and were
#: not added). Triage (a verifier): ``auto_accept``, ``auto_reject``, ``queue``. ``undo`` takes back the
#: decisions whose ``seq`` its value lists (``{"undoes": [seq, ...]}``).
Kind = Literal[
    "accept",
    "reject",
    "fix",
    "add",
    "absent",
    "exhaustive",
    "not_exhaustive",
    "auto_accept",
    "auto_reject",
    "queue",
    "undo",
]
#: Who decided: a person, a verifier (rules or learned), or the simulated annotator.
ActorKind = Literal["human", "verifier", "simulated"]


@dataclass
class Decision:
    """One decision on a proposal.

    Attributes:
        file_name: The image (its key in the proposals).
        phrase: The phrase.
        kind: What was decided (see `Kind`).
        actor: Who: a person's name, ``rules``, ``learned``, ``simulated``.
        actor_kind: ``human``, ``verifier`` or ``simulated``.
        instance: Index of the proposed instance (MV decisions), else ``None``.
        value: What goes with it: a box and mask for ``fix``/``add``, a verifier's score, ...
        round: The engine round it belongs to.
        at: UTC time of the decision (ISO 8601); set when written.
        seq: Its place in the journal (1, 2, ...); set when read.
    """

    file_name: str
    phrase: str
    kind: Kind
    actor: str
    actor_kind: ActorKind
    instance: int | None = None
    value: dict[str, Any] = field(default_factory=dict)
    round: int = 0
    at: str = ""
    seq: int = 0


_SCHEMA = """
CREATE TABLE IF NOT EXISTS meta (key TEXT PRIMARY KEY, value TEXT NOT NULL);
CREATE TABLE IF NOT EXISTS decisions (
    seq INTEGER PRIMARY KEY AUTOINCREMENT,
    file_name TEXT NOT NULL, phrase TEXT NOT NULL, instance INTEGER,
    kind TEXT NOT NULL, value TEXT NOT NULL,
    actor TEXT NOT NULL, actor_kind TEXT NOT NULL, round INTEGER NOT NULL, at TEXT NOT NULL
);
CREATE TRIGGER IF NOT EXISTS decisions_no_update BEFORE UPDATE ON decisions
    BEGIN SELECT RAISE(ABORT, 'the decision journal is append-only'); END;
CREATE TRIGGER IF NOT EXISTS decisions_no_delete BEFORE DELETE ON decisions
    BEGIN SELECT RAISE(ABORT, 'the decision journal is append-only'); END;
"""


class JournalConflict(RuntimeError):
    """A pair changed since the writer last read it (another tab or tool decided on it meanwhile)."""


class Journal:
    """An append-only decision journal tied to one proposals run.

    Args:
        path: The SQLite file (created when missing).
        run_id: The proposals run (its ``run.json``) the decisions are about.

    Raises:
        ProposalRunError: If the file holds decisions about another proposals run.
        ValueError: If the file is not a journal.
    """

    def __init__(self, path: str | Path, run_id: str) -> None:
        self.path = Path(path)
        self.path.parent.mkdir(parents=True, exist_ok=True)
        try:
            self._db = sqlite3.connect(self.path, isolation_level=None)
            self._db.execute("PRAGMA journal_mode=WAL")
            self._db.execute("PRAGMA synchronous=FULL")
            self._db.executescript(_SCHEMA)
            row = self._db.execute("SELECT value FROM meta WHERE key = 'run_id'").fetchone()
        except sqlite3.DatabaseError as error:
            raise ValueError(f"{self.path}: not a decision journal ({error})") from error
        if row is None:
            self._db.execute("INSERT INTO meta VALUES ('run_id', ?)", (run_id,))
        elif row[0] != run_id:
            raise ProposalRunError(
                f"{self.path} records decisions about proposals run {row[0]}, not {run_id}: "
                "give the journal of these proposals, or a new file (nothing was written)"
            )
        self.run_id = run_id

    def append(self, decisions: list[Decision], expect: tuple[str, str, int] | None = None) -> list[int]:
        """Write decisions in one transaction: all of them are on disk when this returns, or none.

        Args:
            decisions: The decisions, in order.
            expect: ``(file_name, phrase, seq)``: write only if the latest row about that pair is still
                ``seq`` (0: none yet). The check and the write are one transaction, so of two writers
                that read the same state only the first writes; the other gets `JournalConflict`.

        Returns:
            The ``seq`` of each decision written.

        Raises:
            JournalConflict: If ``expect`` no longer holds (nothing was written).
        """
        now = datetime.now(timezone.utc).isoformat(timespec="microseconds")
        rows = [
            (
                d.file_name,
                d.phrase,
                d.instance,
                d.kind,
                json.dumps(d.value),
                d.actor,
                d.actor_kind,
                d.round,
                d.at or now,
            )
            for d in decisions
        ]
        with self._db:
            self._db.execute("BEGIN IMMEDIATE")
            if expect is not None and self.pair_seq(*expect[:2]) != expect[2]:
                raise JournalConflict(
                    f"{self.path}: {expect[0]} / {expect[1]!r} was decided on meanwhile (another tab?); "
                    "reload it (nothing was written)"
                )
            seqs = []
            for row in rows:
                cursor = self._db.execute(
                    "INSERT INTO decisions (file_name, phrase, instance, kind, value, actor, actor_kind, "
                    "round, at) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)",
                    row,
                )
                seqs.append(int(cursor.lastrowid))
        return seqs

    def pair_seq(self, file_name: str, phrase: str) -> int:
        """``seq`` of the latest row about a pair (0 when there is none): its version for `append`."""
        row = self._db.execute(
            "SELECT MAX(seq) FROM decisions WHERE file_name = ? AND phrase = ?", (file_name, phrase)
        ).fetchone()
        return int(row[0] or 0)

    def decisions(self, actor_kind: ActorKind | None = None, undone: bool = False) -> list[Decision]:
        """Every decision in the order written (of one kind of actor when given).

        Args:
            actor_kind: Only the decisions of this kind of actor.
            undone: Keep the decisions an ``undo`` took back, and the ``undo`` rows themselves.
        """
        columns = "file_name, phrase, instance, kind, value, actor, actor_kind, round, at, seq"
        query = f"SELECT {columns} FROM decisions"
        found = [
            Decision(f, p, k, a, ak, i, json.loads(v), r, at, seq)  # type: ignore[arg-type]
            for f, p, i, k, v, a, ak, r, at, seq in self._db.execute(query + " ORDER BY seq")
        ]
        if not undone:
            taken_back = {seq for d in found if d.kind == "undo" for seq in d.value.get("undoes", [])}
            found = [d for d in found if d.kind != "undo" and d.seq not in taken_back]
        return [d for d in found if actor_kind is None or d.actor_kind == actor_kind]

    def reviewed_pairs(self) -> set[tuple[str, str]]:
        """Pairs a person (or the simulated annotator) has closed with an EV decision (not undone)."""
        return {
            (d.file_name, d.phrase)
            for d in self.decisions()
            if d.actor_kind != "verifier" and d.kind in ("absent", "exhaustive", "not_exhaustive")
        }

    def __len__(self) -> int:
        return int(self._db.execute("SELECT COUNT(*) FROM decisions").fetchone()[0])

    def close(self) -> None:
        """Close the database."""
        self._db.close()


def decision_dict(decision: Decision) -> dict[str, Any]:
    """A decision as a JSON-ready dict."""
    return asdict(decision)
