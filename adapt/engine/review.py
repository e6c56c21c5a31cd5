"""Working the review queue: requests go to whoever answers them, decisions go to the journal.

A person answers through the review page; for measurement and tests the `SimulatedAnnotator`
answers. Each answered request is one journal transaction, so a killed review loses at most the
request in hand, and a restart skips the pairs already closed.
"""

from __future__ import annotations

from collections.abc import Callable

from sam3_adapt.engine.annotator import ACTION_COST
from sam3_adapt.engine.journal import Decision, Journal
from sam3_adapt.engine.triage import ReviewRequest

#: Anything that answers a review request with decisions: a page, a person's tool, the simulation.
Answerer = Callable[[ReviewRequest, int], list[Decision]]


def work_queue(
    queue: list[ReviewRequest],
    answer: Answerer,
    journal: Journal,
    round_: int = 0,
    budget: int | None = None,
) -> int:
    """Answer the queue in order until it or the action budget runs out; return the actions spent.

    Actions already in the journal (from a run that was killed) count against the budget, and their
    pairs are not asked again.

    Args:
        queue: Review requests, most useful first.
        answer: Who answers.
        journal: Where decisions go.
        round_: The engine round.
        budget: Most actions to spend in this round (``None``: the whole queue).

    Returns:
        Actions spent on this round's queue, the earlier ones included.
    """
    earlier = [d for d in journal.decisions() if d.actor_kind != "verifier" and d.round == round_]
    spent = sum(ACTION_COST.get(d.kind, 0) for d in earlier)
    closed = journal.reviewed_pairs()
    for request in queue:
        if (request.file_name, request.phrase) in closed:
            continue
        if budget is not None and spent >= budget:
            break
        decisions = answer(request, round_)
        journal.append(decisions)
        spent += sum(ACTION_COST[d.kind] for d in decisions)
    return spent
