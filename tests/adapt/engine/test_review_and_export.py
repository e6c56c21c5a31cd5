import json

import numpy as np
import pytest
from PIL import Image
from pycocotools import mask as mask_utils

from sam3_adapt.data_mix.readers.sources import read_source
from sam3_adapt.engine.annotator import SimulatedAnnotator, from_scratch_actions, model_masker
from sam3_adapt.engine.export import engine_pairs, provenance_counts, truth_of, write_pairs
from sam3_adapt.engine.journal import Decision, Journal
from sam3_adapt.engine.review import work_queue
from sam3_adapt.engine.signals import encode_rle, mask_iou
from sam3_adapt.engine.triage import ReviewRequest, triage
from sam3_adapt.engine.verifiers import Verifiers

from .conftest import SIZE, A, B, C, square

TRUTH = {("a.png", "circle"): [A, B], ("a.png", "square"): [C]}


def request(file_name, phrase, proposed):
    instances = [
        {"index": k, "box": box, "score": 0.9, "segmentation": rle} for k, (box, rle) in enumerate(proposed)
    ]
    return ReviewRequest(file_name, phrase, SIZE, SIZE, 0.9, instances, "unsure", 1.0)


def test_simulated_annotator_counts_are_exact_on_a_built_case():
    annotator = SimulatedAnnotator(TRUTH)
    half_b = square(10, 10, 14, 12)  # IoU 0.5 with B: the right object, a poor mask -> fix (2)
    elsewhere = square(16, 0, 20, 4)  # no object there -> reject (1)
    first = annotator.answer(request("a.png", "circle", [A, half_b, elsewhere]))
    assert [(d.kind, d.instance) for d in first] == [
        ("accept", 0),
        ("fix", 1),
        ("reject", 2),
        ("exhaustive", None),
    ]
    assert first[1].value["segmentation"] == B[1]  # the corrected mask is the true one
    assert annotator.actions == 1 + 2 + 1 + 1
    second = annotator.answer(request("a.png", "square", []))  # missed C: add (2), confirm (1)
    assert [d.kind for d in second] == ["add", "exhaustive"] and annotator.actions == 5 + 3
    third = annotator.answer(request("b.png", "circle", []))  # nothing there, nothing found: absent (1)
    assert [d.kind for d in third] == ["absent"] and annotator.actions == 9
    # Two proposals of one object: the first takes it, the duplicate is rejected.
    dup = SimulatedAnnotator(TRUTH).answer(request("a.png", "square", [C, C]))
    assert [d.kind for d in dup] == ["accept", "reject", "exhaustive"]
    assert annotator.by_kind == {"accept": 1, "fix": 1, "reject": 1, "exhaustive": 2, "add": 1, "absent": 1}
    # From scratch: per pair 1 presence decision plus 2 per instance; 4 pairs, 3 instances.
    assert from_scratch_actions(TRUTH, num_pairs=4) == 4 + 2 * 3


def test_the_simulated_persons_box_gives_the_models_mask_at_the_same_cost(anchor_pool):
    """A fix or an addition sends the true instance's box to the model as a prompt; the mask is its own."""
    truth = truth_of(*anchor_pool)
    (file_name, phrase), instances = next((k, v) for k, v in sorted(truth.items()) if len(v) >= 2)
    width, height = Image.open(anchor_pool[1] / file_name).size
    first_box, first_mask = instances[0]
    poor = mask_utils.decode(first_mask).astype(bool)  # the right object, its upper half only: a fix
    poor[(int(first_box[1]) + int(first_box[3])) // 2 :] = False
    instance = {"index": 0, "box": first_box, "score": 0.9, "segmentation": encode_rle(poor)}
    asked = ReviewRequest(file_name, phrase, width, height, 0.9, [instance], "unsure", 1.0)
    decode = mask_utils.decode
    assert 0.3 <= mask_iou(poor, decode(first_mask).astype(bool)) < 0.7
    by_model = SimulatedAnnotator(truth, masker=model_masker("tiny", None, anchor_pool[1]))
    by_truth = SimulatedAnnotator(truth)
    answers = by_model.answer(asked)
    assert [d.kind for d in by_truth.answer(asked)] == ["fix"] + ["add"] * (len(instances) - 1) + [
        "exhaustive"
    ]
    assert [d.kind for d in answers[:-1]] == ["fix"] + ["add"] * (len(instances) - 1)
    assert by_model.actions == by_truth.actions == 2 * len(instances) + 1  # the costs are kept
    kept = 0
    for d, (box, rle) in zip(answers[:-1], instances, strict=True):
        assert d.value["drawn_box"] == box  # the person drew the true instance's box ...
        if not d.value.get("discarded"):  # ... and kept the model's mask where it is the object
            assert d.value["segmentation"] != rle  # the model's mask, not the truth
            assert mask_iou(decode(d.value["segmentation"]).astype(bool), decode(rle).astype(bool)) >= 0.7
            kept += 1
    assert kept  # the tiny base finds anchor shapes from a box
    assert answers[-1].kind == ("exhaustive" if kept == len(instances) else "not_exhaustive")


def test_a_box_mask_the_person_would_not_accept_is_discarded_and_the_pair_left_open():
    def other_object(file_name, phrase, box):  # a model that answers every box with B's mask
        return B

    annotator = SimulatedAnnotator(TRUTH, masker=other_object)
    answers = annotator.answer(request("a.png", "square", []))  # C missed; the box around C gives B
    assert [d.kind for d in answers] == ["add", "not_exhaustive"] and answers[0].value["discarded"]
    assert annotator.actions == 2 + 1  # the box was drawn all the same
    kept = annotator.answer(request("a.png", "circle", []))  # the box around B gives B: kept
    assert [d.kind for d in kept] == ["add", "add", "not_exhaustive"]  # A's box gave B too
    assert kept[1].value["segmentation"] == B[1] and "discarded" not in kept[1].value
    records = {"a.png": record([pair("circle", []), pair("square", [])])}
    exported = engine_pairs(records, [*answers, *kept], "verified")
    pairs = {(p.phrase, len(p.instances), p.exhaustive) for p in exported}
    assert pairs == {("circle", 1, False)}  # the square pair has nothing to train on: left out


def record(pairs):
    return {"width": SIZE, "height": SIZE, "pairs": pairs}


def pair(phrase, proposed, near=0.0, flip_diff=0.0):
    good = {"score": 0.9, "stability": 0.95, "flip_iou": 0.9, "box_mask_iou": 0.95, "log_size_ratio": 0.0}
    instances = [{"box": box, "score": 0.9, "segmentation": rle, "signals": good} for box, rle in proposed]
    presence = 0.9 if proposed else 0.1
    signals = {
        "presence": presence,
        "count": float(len(proposed)),
        "near_count": near,
        "near_max": 0.42 * bool(near),
        "flip_count_diff": flip_diff,
    }
    return {"phrase": phrase, "presence": presence, "instances": instances, "signals": signals}


@pytest.fixture
def world(tmp_path):
    root = tmp_path / "root"
    (root / "pool").mkdir(parents=True)
    for name in ("a.png", "b.png"):
        Image.new("RGB", (SIZE, SIZE)).save(root / "pool" / name)
    records = {
        # circle: one object found, one left near the threshold -> EV incomplete-ish: queued.
        "a.png": record([pair("circle", [A], near=1.0), pair("square", [C])]),
        # b: nothing anywhere, EV sure: auto-accepted as confirmed negatives.
        "b.png": record([pair("circle", []), pair("square", [])]),
    }
    return root, records


def test_triage_then_review_then_export_round_trips_through_the_reader(world, tmp_path):
    root, records = world
    sorted_out = triage(records, Verifiers())
    assert sorted_out.counts == {"auto_accept": 3, "auto_reject": 0, "queue": 1}
    assert [(r.file_name, r.phrase) for r in sorted_out.queue] == [("a.png", "circle")]
    journal = Journal(tmp_path / "journal.sqlite", "run-x")
    journal.append(sorted_out.decisions)
    annotator = SimulatedAnnotator(TRUTH)
    spent = work_queue(sorted_out.queue, annotator.answer, journal)
    assert spent == annotator.actions == 1 + 2 + 1  # accept A, add B, confirm exhaustive
    assert work_queue(sorted_out.queue, annotator.answer, journal) == spent  # resumed: nothing asked twice
    pairs = engine_pairs(records, journal.decisions(), "verified", prefix="pool")
    assert provenance_counts(pairs) == {
        "human": 2,
        "auto-verified": 1,
        "negative pairs": 2,
        "non-exhaustive pairs": 0,
    }
    out = write_pairs(pairs, tmp_path / "labels.json")
    document = json.loads(out.read_text())
    assert {
        (r["file_name"], r["text_input"], r["is_instance_exhaustive"], r["provenance"])
        for r in document["images"]
    } == {
        ("pool/a.png", "circle", 1, "human"),
        ("pool/a.png", "square", 1, "auto-verified"),
        ("pool/b.png", "circle", 1, "auto-verified"),
        ("pool/b.png", "square", 1, "auto-verified"),
    }
    assert sorted(a["provenance"] for a in document["annotations"]) == ["auto-verified", "human", "human"]

    samples = {s.image_path.name: s for s in read_source(out, root).samples}
    queries = {(name, q.phrase): q for name, s in samples.items() for q in s.queries}
    assert set(queries) == {
        ("a.png", "circle"),
        ("a.png", "square"),
        ("b.png", "circle"),
        ("b.png", "square"),
    }
    assert len(queries[("a.png", "circle")].instances) == 2 and queries[("a.png", "circle")].exhaustive
    circle = sorted(v for i in queries[("a.png", "circle")].instances for v in i.box_xyxy)
    assert circle == pytest.approx(sorted(A[0] + B[0]))
    masks = sorted((i.mask_array() for i in queries[("a.png", "circle")].instances), key=lambda m: m.argmax())
    assert np.array_equal(masks[0], _mask(A)) and np.array_equal(masks[1], _mask(B))
    assert queries[("b.png", "square")].is_negative and queries[("b.png", "square")].exhaustive


def _mask(item):
    from pycocotools import mask as mask_utils

    return mask_utils.decode(item[1]).astype(bool)


def test_not_exhaustive_pairs_export_their_positives_only_and_raw_takes_everything(world, tmp_path):
    root, records = world
    journal = Journal(tmp_path / "journal.sqlite", "run-x")
    journal.append(triage(records, Verifiers()).decisions)
    person = {"actor": "ann", "actor_kind": "human"}
    journal.append(
        [
            Decision("a.png", "circle", "accept", instance=0, **person),
            Decision("a.png", "circle", "not_exhaustive", **person),
        ]
    )
    pairs = {
        (p.file_name, p.phrase): p for p in engine_pairs(records, journal.decisions(), "verified", "pool")
    }
    assert (
        not pairs[("pool/a.png", "circle")].exhaustive and len(pairs[("pool/a.png", "circle")].instances) == 1
    )
    out = write_pairs(list(pairs.values()), tmp_path / "labels.json")
    samples = {s.image_path.name: s for s in read_source(out, root).samples}
    [circle] = [q for q in samples["a.png"].queries if q.phrase == "circle"]
    assert not circle.exhaustive and len(circle.instances) == 1  # trained on its positives only
    auto = engine_pairs(records, journal.decisions(), "auto", "pool")
    assert ("pool/a.png", "circle") not in {(p.file_name, p.phrase) for p in auto}
    raw = engine_pairs(records, [], "raw", "pool")
    assert len(raw) == 4 and all(p.exhaustive and p.provenance == "pseudo" for p in raw)


def test_cleaned_labels_keep_accepted_positives_of_unreviewed_pairs_once(world):
    root, records = world
    # Nobody reviews the queued circle pair; its accepted instance comes twice (two slots, one object).
    records["a.png"]["pairs"][0]["instances"] *= 2
    decisions = triage(records, Verifiers()).decisions
    assert [d.kind for d in decisions if d.phrase == "circle" and d.file_name == "a.png"] == [
        "accept",
        "accept",
        "queue",
    ]
    dropped = {(p.file_name, p.phrase) for p in engine_pairs(records, decisions, "auto", "pool")}
    assert ("pool/a.png", "circle") not in dropped
    cleaned = {
        (p.file_name, p.phrase): p
        for p in engine_pairs(records, decisions, "auto", "pool", unreviewed="positives")
    }
    circle = cleaned[("pool/a.png", "circle")]
    assert len(circle.instances) == 1 and not circle.exhaustive  # the duplicate is dropped; positives only
    assert cleaned[("pool/b.png", "circle")].instances == [] and cleaned[("pool/b.png", "circle")].exhaustive
