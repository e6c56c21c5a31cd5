"""From people's decisions to verifier training data, and the switch from rules to learned verifiers.

MV learns from each instance a person decided on (accepted: yes; rejected or fixed: no). EV learns
from each pair a person closed (nothing added and not marked ``not_exhaustive``: yes).
"""

from __future__ import annotations

from collections import defaultdict
from typing import Any

from sam3_adapt.engine.journal import Decision
from sam3_adapt.engine.verifiers import Comparison, Verifiers, fit_learned


def decided_signals(
    records: dict[str, dict[str, Any]], decisions: list[Decision]
) -> dict[str, tuple[list[dict[str, float]], list[bool]]]:
    """``{"mv": (signals, labels), "ev": (signals, labels)}`` from the people's decisions."""
    pairs = {(name, pair["phrase"]): pair for name, record in records.items() for pair in record["pairs"]}
    mv: dict[tuple[str, str, int], bool] = {}
    added: dict[tuple[str, str], bool] = defaultdict(bool)
    closed: dict[tuple[str, str], str] = {}
    for d in decisions:
        if d.actor_kind == "verifier" or (d.file_name, d.phrase) not in pairs:
            continue
        key = (d.file_name, d.phrase)
        if d.instance is not None and d.kind in ("accept", "reject", "fix"):
            mv[(*key, d.instance)] = d.kind == "accept"
        elif d.kind == "add":
            added[key] = True
        elif d.kind in ("absent", "exhaustive", "not_exhaustive"):
            closed[key] = d.kind
    mv_signals = [pairs[(f, p)]["instances"][k]["signals"] for f, p, k in mv]
    ev_keys = list(closed)
    return {
        "mv": (mv_signals, list(mv.values())),
        "ev": (
            [pairs[key]["signals"] for key in ev_keys],
            [not added[key] and closed[key] != "not_exhaustive" for key in ev_keys],
        ),
    }


def compare_verifiers(
    records: dict[str, dict[str, Any]], decisions: list[Decision], seed: int = 0
) -> list[Comparison]:
    """The rules against learned verifiers on held-out people's decisions, MV and EV separately."""
    return learned_verifiers(records, decisions, seed)[1]


def learned_verifiers(
    records: dict[str, dict[str, Any]], decisions: list[Decision], seed: int = 0
) -> tuple[Verifiers, list[Comparison]]:
    """The verifiers for the next round: learned where they beat the rules, rules elsewhere."""
    verifiers = Verifiers()
    comparisons = []
    for check, (signals, labels) in decided_signals(records, decisions).items():
        learned, comparison = fit_learned(check, signals, labels, seed=seed)  # type: ignore[arg-type]
        comparisons.append(comparison)
        if learned is not None and comparison.use_learned:
            setattr(verifiers, check, learned)
            verifiers.names[check] = "learned"
    return verifiers, comparisons
