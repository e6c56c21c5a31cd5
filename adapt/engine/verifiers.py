"""MV and EV verifiers: documented rules first, a small classifier learned from people's decisions later.

MV (per instance) answers "is this mask good and does it match the phrase?"; EV (per image-phrase
pair) "were all instances found, or is the phrase absent?". Each gives a verdict (``accept`` /
``reject`` / ``unsure``; for EV ``complete`` / ``incomplete`` / ``unsure``) and a probability that the
answer is yes. The rules (`RULES`) come first: Phase 1 of SAM 3's engine, where people decide what the
rules cannot. Once people have decided enough, `fit_learned` fits a logistic regression on their
decisions and the signals (`sam3_adapt.engine.signals`), measured by cross-validation against the rules
on the same held-out decisions; it replaces the rules only where it beats them (Phase 2).
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any, Literal

import numpy as np

from sam3_adapt.engine.signals import EV_SIGNALS, MV_SIGNALS

Check = Literal["mv", "ev"]


@dataclass(frozen=True)
class RuleThresholds:
    """The rules' thresholds.

    They were set from the simulated annotator's decisions on the proposals of the concept world's
    industrial 10-shot model at seed 0 (the engine study's first seed; the second seed is the check).

    MV accepts an instance whose score, stability, flip agreement and box-mask agreement all reach
    their ``*_accept`` value and whose area is within ``size_ratio`` times the labelled median either
    way; it rejects one whose flip agreement, stability or box-mask agreement falls below the
    ``*_reject`` value; otherwise it is unsure. EV calls a pair with instances complete when no
    detection left over near the threshold (one that overlaps nothing found) scores ``quiet_near_max``
    or more and the mirrored pass finds as many distinct objects; incomplete when a leftover scores
    ``loud_near_max`` or more and the counts differ, or the counts differ by two or more; otherwise
    unsure. (Leftovers between ``near_low`` and 0.4 are common on complete pairs of a small model, so
    their number alone says little.)

    A pair with no instance is a confirmed negative only when the model is far from firing: the
    presence score is below ``absent_presence``, no detection is left over near the threshold (none
    reaches propose's ``near_low``) and the mirrored pass finds nothing either. ``absent_presence`` is
    propose's ``near_low`` default (0.2): neither the presence score nor any detection reaches the
    score from which propose counts a leftover. A wrong confirmed negative teaches the model to
    suppress a concept that is there, so a pair that misses any of the three is unsure (a person
    decides it, or it is left out of the labels). This threshold is not fitted to any pool's data;
    the learned EV verifier replaces the rule once people's decisions show it does better.
    """

    score_accept: float = 0.6
    stability_accept: float = 0.8
    flip_accept: float = 0.8
    box_mask_accept: float = 0.65
    size_ratio: float = 3.0
    flip_reject: float = 0.5
    stability_reject: float = 0.6
    box_mask_reject: float = 0.45
    absent_presence: float = 0.2
    quiet_near_max: float = 0.4
    loud_near_max: float = 0.45


RULES = RuleThresholds()


def mv_rule(signals: dict[str, float], rules: RuleThresholds = RULES) -> tuple[str, float]:
    """The MV rule's verdict on one instance and its probability that the mask is good.

    The probability is the product of the quality signals (score, stability, flip IoU, box-mask IoU)
    times a penalty for a size far from the labelled median.
    """
    s = signals
    size_ok = abs(s["log_size_ratio"]) <= math.log(rules.size_ratio)
    if (
        s["score"] >= rules.score_accept
        and s["stability"] >= rules.stability_accept
        and s["flip_iou"] >= rules.flip_accept
        and s["box_mask_iou"] >= rules.box_mask_accept
        and size_ok
    ):
        verdict = "accept"
    elif (
        s["flip_iou"] < rules.flip_reject
        or s["stability"] < rules.stability_reject
        or s["box_mask_iou"] < rules.box_mask_reject
    ):
        verdict = "reject"
    else:
        verdict = "unsure"
    excess = max(0.0, abs(s["log_size_ratio"]) - math.log(rules.size_ratio))
    p = s["score"] * s["stability"] * s["flip_iou"] * s["box_mask_iou"] * math.exp(-excess)
    return verdict, float(p)


def ev_rule(signals: dict[str, float], rules: RuleThresholds = RULES) -> tuple[str, float]:
    """The EV rule's verdict on one pair and its probability that the pair is complete (or absent)."""
    s = signals
    if s["count"] > 0:
        sure = s["near_max"] < rules.quiet_near_max and s["flip_count_diff"] == 0
    else:
        sure = s["presence"] < rules.absent_presence and s["near_count"] == 0 and s["flip_count_diff"] == 0
    if sure:
        verdict = "complete"
    elif (s["near_max"] >= rules.loud_near_max and s["flip_count_diff"] >= 1) or s["flip_count_diff"] >= 2:
        verdict = "incomplete"
    else:
        verdict = "unsure"
    p = math.exp(-(s["near_count"] + s["flip_count_diff"])) * (1.0 - 0.5 * s["near_max"])
    if s["count"] == 0:  # "absent" is as likely as the presence score is low
        p *= 1.0 - s["presence"]
    return verdict, float(p)


def features(check: Check, signals: dict[str, float]) -> list[float]:
    """The learned verifier's input: the signals in a fixed order (`MV_SIGNALS` or `EV_SIGNALS`).

    The size signal enters as its magnitude: a mask far too small is as suspect as one far too large,
    and a linear model cannot fold the sign by itself.
    """
    names = MV_SIGNALS if check == "mv" else EV_SIGNALS
    return [abs(float(signals[n])) if n == "log_size_ratio" else float(signals[n]) for n in names]


@dataclass
class LearnedVerifier:
    """A logistic regression on the signals, fitted on people's decisions.

    Attributes:
        check: ``mv`` or ``ev``.
        model: The fitted scikit-learn pipeline (standardise, then logistic regression).
        accept: Probability from which the verdict is yes (``accept`` / ``complete``).
        reject: Probability up to which it is no.
    """

    check: Check
    model: Any
    accept: float = 0.85
    reject: float = 0.15

    def __call__(self, signals: dict[str, float]) -> tuple[str, float]:
        """Verdict and probability for one instance (MV) or pair (EV)."""
        p = float(self.model.predict_proba(np.array([features(self.check, signals)]))[0, 1])
        yes, no = ("accept", "reject") if self.check == "mv" else ("complete", "incomplete")
        return (yes if p >= self.accept else no if p <= self.reject else "unsure"), p


@dataclass
class Comparison:
    """Rules and learned verifier on the same held-out decisions (cross-validated for the learned one).

    Attributes:
        check: ``mv`` or ``ev``.
        decisions: How many decisions (positives, negatives).
        rules_accuracy: Accuracy of the rules' yes/no (an unsure verdict counts as yes when its
            probability is at least 0.5).
        rules_auc: ROC AUC of the rules' probability.
        learned_accuracy: Accuracy of the learned verifier's held-out probability at 0.5.
        learned_auc: Its ROC AUC.
        use_learned: Whether the learned verifier replaces the rules (higher held-out accuracy, and
            an AUC not lower).
    """

    check: Check
    decisions: tuple[int, int]
    rules_accuracy: float
    rules_auc: float | None
    learned_accuracy: float | None
    learned_auc: float | None
    use_learned: bool
    notes: list[str] = field(default_factory=list)


def fit_learned(
    check: Check, signals: list[dict[str, float]], labels: list[bool], folds: int = 5, seed: int = 0
) -> tuple[LearnedVerifier | None, Comparison]:
    """Fit the learned verifier on people's decisions and compare it with the rules on held-out ones.

    Args:
        check: ``mv`` (labels: the person accepted the mask) or ``ev`` (the pair was complete: nothing
            added).
        signals: The signals of each decided instance or pair.
        labels: The decisions.
        folds: Cross-validation folds (fewer when a class has fewer decisions).
        seed: Seed of the fold split.

    Returns:
        ``(verifier, comparison)``; the verifier is ``None`` when the decisions hold fewer than two
        of either answer (nothing to learn from), and is fitted on all decisions otherwise.
    """
    from sklearn.linear_model import LogisticRegression
    from sklearn.metrics import roc_auc_score
    from sklearn.model_selection import StratifiedKFold, cross_val_predict
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import StandardScaler

    y = np.array(labels, dtype=int)
    rule = mv_rule if check == "mv" else ev_rule
    ruled = [rule(s) for s in signals]
    yes = "accept" if check == "mv" else "complete"
    rule_pred = np.array([v == yes or (v == "unsure" and p >= 0.5) for v, p in ruled], dtype=int)
    rule_p = np.array([p for _, p in ruled])
    counts = (int(y.sum()), int(len(y) - y.sum()))
    two_classes = min(counts) >= 2
    comparison = Comparison(
        check,
        counts,
        rules_accuracy=float((rule_pred == y).mean()) if len(y) else float("nan"),
        rules_auc=float(roc_auc_score(y, rule_p)) if min(counts) >= 1 else None,
        learned_accuracy=None,
        learned_auc=None,
        use_learned=False,
    )
    if not two_classes:
        comparison.notes.append(f"{counts[0]} yes and {counts[1]} no decisions: too few to learn from")
        return None, comparison
    x = np.array([features(check, s) for s in signals])
    model = make_pipeline(StandardScaler(), LogisticRegression(class_weight="balanced", max_iter=1000))
    split = StratifiedKFold(n_splits=min(folds, *counts), shuffle=True, random_state=seed)
    held_out = cross_val_predict(model, x, y, cv=split, method="predict_proba")[:, 1]
    comparison.learned_accuracy = float(((held_out >= 0.5) == y).mean())
    comparison.learned_auc = float(roc_auc_score(y, held_out))
    comparison.use_learned = comparison.learned_accuracy > comparison.rules_accuracy and (
        comparison.rules_auc is None or comparison.learned_auc >= comparison.rules_auc
    )
    return LearnedVerifier(check, model.fit(x, y)), comparison


@dataclass
class Verifiers:
    """The MV and EV verifiers in use: the rules, or a learned one where it beat them."""

    mv: Any = mv_rule
    ev: Any = ev_rule
    names: dict[str, str] = field(default_factory=lambda: {"mv": "rules", "ev": "rules"})
