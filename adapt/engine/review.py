"""Working the review queue: requests go to whoever answers them, decisions go to the journal.

A person answers through the review page; for measurement and tests the `SimulatedAnnotator`
answers. Each answered request is one journal transaction, so a killed review loses at most the
request in hand, and a restart skips the pairs already closed.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import replace

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
    pairs are not asked again. The budget is never exceeded: a request whose least cost (one action
    per proposed instance and one for the pair) does not fit what is left is passed over for cheaper
    ones further down the queue, and an answer that would overrun stops adding instances where the
    budget ends, closing the pair as not exhaustive (`within_budget`), as a person whose time is up
    would.

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
        if budget is not None and spent + len(request.instances) + 1 > budget:
            if spent >= budget:
                break
            continue
        decisions = answer(request, round_)
        if budget is not None:
            decisions = within_budget(decisions, budget - spent)
            if decisions is None:
                continue
        journal.append(decisions)
        spent += sum(ACTION_COST[d.kind] for d in decisions)
    return spent


def within_budget(decisions: list[Decision], actions: int) -> list[Decision] | None:
    """An answer cut to ``actions``: the added instances that do not fit are left out.

    Args:
        decisions: One request's answer: per-instance decisions, additions, then the pair's decision.
        actions: Actions left.

    Returns:
        ``decisions`` when they fit; else the answer without the last additions, the pair closed as
        ``not_exhaustive`` (an instance was left unlabelled); ``None`` when even the decisions on
        the proposed instances and the pair's do not fit.
    """
    cost = sum(ACTION_COST[d.kind] for d in decisions)
    if cost <= actions:
        return decisions
    *body, last = decisions
    adds = [d for d in body if d.kind == "add"]
    kept = [d for d in body if d.kind != "add"]
    room = actions - sum(ACTION_COST[d.kind] for d in kept) - ACTION_COST["not_exhaustive"]
    if room < 0:
        return None
    kept += adds[: room // ACTION_COST["add"]]
    return [*kept, replace(last, kind="not_exhaustive")]
