"""The data engine: the adapted model proposes, verifiers check, people correct, the model retrains.

``propose`` (`sam3_adapt.engine.propose`) runs a base + adapter over an unlabelled pool for a phrase
list and records every (image, phrase) proposal with its verifier signals; ``triage`` sorts each pair
into auto-accept, auto-reject or a review queue; a person (or the `SimulatedAnnotator`) answers the
queue; every decision goes to the append-only `Journal`; ``export`` turns the journal into a verified
SA-Co-style COCO file that training reads; ``engine`` (`sam3_adapt.engine.rounds`) runs the rounds.
"""

from sam3_adapt.engine.annotator import SimulatedAnnotator, from_scratch_actions
from sam3_adapt.engine.journal import Decision, Journal
from sam3_adapt.engine.triage import ReviewRequest, Triage, triage
from sam3_adapt.engine.verifiers import Verifiers, fit_learned

__all__ = [
    "Decision",
    "Journal",
    "ReviewRequest",
    "SimulatedAnnotator",
    "Triage",
    "Verifiers",
    "fit_learned",
    "from_scratch_actions",
    "triage",
]
