import os
import signal
import sqlite3
import subprocess
import sys
import time

import pytest

from sam3_adapt.engine.journal import Decision, Journal
from sam3_adapt.engine.store import ProposalRunError

WRITER = """
import sys
from sam3_adapt.engine.journal import Decision, Journal
journal = Journal(sys.argv[1], "run-a")
start = len(journal)
for i in range(start, start + 100000):
    journal.append([Decision(f"img{i}.png", "circle", "accept", "simulated", "simulated", 0, {"i": i})])
    print(i + 1, flush=True)  # written after the commit returned
"""


def test_journal_survives_kill_9_mid_writing_and_resumes(tmp_path):
    path = tmp_path / "journal.sqlite"
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    child = subprocess.Popen(
        [sys.executable, "-c", WRITER, str(path)], stdout=subprocess.PIPE, text=True, env=env
    )
    acknowledged = 0
    deadline = time.monotonic() + 60
    while acknowledged < 200 and time.monotonic() < deadline:
        acknowledged = int(child.stdout.readline())
    os.kill(child.pid, signal.SIGKILL)  # in the middle of its stream of commits
    child.wait()
    assert acknowledged >= 200
    # Acknowledgements printed before the kill but not read yet are commits too: read them all.
    acknowledged = max([acknowledged, *(int(line) for line in child.stdout.read().split())])

    check = sqlite3.connect(path)
    assert check.execute("PRAGMA integrity_check").fetchone()[0] == "ok"
    check.close()
    journal = Journal(path, "run-a")
    found = [d.value["i"] for d in journal.decisions()]
    # Every acknowledged decision is there, in order, without gaps (at most the one in flight more).
    assert found == list(range(len(found))) and acknowledged <= len(found) <= acknowledged + 1
    # Resume: a new writer continues where the journal ends.
    journal.append([Decision("next.png", "circle", "absent", "ann", "human")])
    assert len(journal) == len(found) + 1 and journal.decisions()[-1].file_name == "next.png"
    journal.close()


def test_journal_is_append_only_and_tied_to_its_proposals_run(tmp_path):
    path = tmp_path / "journal.sqlite"
    journal = Journal(path, "run-a")
    journal.append([Decision("a.png", "circle", "exhaustive", "ann", "human", round=1)])
    with pytest.raises(sqlite3.DatabaseError, match="append-only"):
        journal._db.execute("UPDATE decisions SET kind = 'absent'")
    with pytest.raises(sqlite3.DatabaseError, match="append-only"):
        journal._db.execute("DELETE FROM decisions")
    journal.close()
    with pytest.raises(ProposalRunError, match="run-a"):
        Journal(path, "run-b")
    again = Journal(path, "run-a")  # nothing was lost by the refusal
    [decision] = again.decisions()
    assert (decision.kind, decision.actor, decision.round) == ("exhaustive", "ann", 1) and decision.at
    assert again.reviewed_pairs() == {("a.png", "circle")}
    (tmp_path / "not.sqlite").write_text("plain text, not a database" * 100)
    with pytest.raises(ValueError, match="not a decision journal"):
        Journal(tmp_path / "not.sqlite", "run-a")
