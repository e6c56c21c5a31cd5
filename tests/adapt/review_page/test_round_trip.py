"""Decisions made on the page train the next round through ``engine``: absent is a negative, not exhaustive
trains on its positives only (its unmatched predictions get no class loss)."""

import dataclasses
import json
from pathlib import Path

import pytest
import torch
from fastapi.testclient import TestClient

from sam3_adapt.data_mix.dataset import eval_loader
from sam3_adapt.data_mix.readers.sources import read_source
from sam3_adapt.engine.rounds import engine
from sam3_adapt.model.loading import load_segmenter
from sam3_adapt.review_page.server import create_app
from sam3_adapt.review_page.session import ReviewSession, read_round
from sam3_adapt.training.loss import ConceptObjective

from .conftest import engine_arguments


def gradients(segmenter, sample, query):
    """Per decoder layer, how many object slots of ``query`` the class loss moves; the presence logit's
    gradient (positive: training lowers it); and the query's target."""
    batch = next(iter(eval_loader([dataclasses.replace(sample, queries=[query])], segmenter.image_size)))
    with torch.no_grad():
        outputs = segmenter(batch["pixel_values"], batch["phrases"], batch["query_image_index"])
    logits = outputs.logits.detach().clone().requires_grad_(True)
    presence = outputs.presence_logits.detach().clone().requires_grad_(True)
    outputs = dataclasses.replace(outputs, logits=logits, presence_logits=presence)
    losses = ConceptObjective()(outputs, batch["targets"])
    # Of the total, only the class term reads the slot logits and only the presence term the presence logit.
    by_class, by_presence = torch.autograd.grad(losses["loss"], [logits, presence])
    return (by_class[:, 0] != 0).sum(dim=1).tolist(), float(by_presence[-1, 0]), batch["targets"][0]


@pytest.mark.slow
def test_page_decisions_train_the_next_round_with_negatives_and_partial_pairs(tmp_path):
    # Its own engine run: the proposals record the adapter's absolute path, so a copy would not resume.
    arguments = engine_arguments(tmp_path)
    engine(**arguments)
    folder = tmp_path / "engine" / "round-0"
    client = TestClient(create_app(ReviewSession(read_round(folder), "tester")), base_url="http://127.0.0.1")
    queue = read_round(folder).queue
    # The pair to mark absent has instances MV accepted (the export would keep those otherwise).
    absent = next(k for k, r in enumerate(queue) if any(i["verdict"] == "accept" for i in r.instances))
    partial = next(k for k, r in enumerate(queue) if k != absent and r.instances)
    for index, action in ((absent, "absent"), (partial, "not_exhaustive")):
        version = client.get(f"/api/pair/{index}").json()["version"]
        answer = client.post("/api/act", json={"index": index, "action": action, "version": version})
        assert answer.status_code == 200

    rows = engine(**arguments)  # the same command goes on: round 0's labels, then round 1's fit
    assert [r["round"] for r in rows] == [0, 1]
    accepted = len(queue[partial].instances)  # "n" accepts what is shown, then closes the pair
    assert rows[1]["human_actions"] == 1 + accepted + 1  # absent, the accepts, not_exhaustive
    assert (Path(arguments["out"]) / "round-1" / "adapter" / "adapter_config.json").is_file()

    labels = folder / "labels.json"
    document = json.loads(labels.read_text())
    records = {(Path(i["file_name"]).name, i["text_input"]): i for i in document["images"]}
    annotated = {a["image_id"] for a in document["annotations"]}
    absent_record = records[(queue[absent].file_name, queue[absent].phrase)]
    partial_record = records[(queue[partial].file_name, queue[partial].phrase)]
    assert absent_record["id"] not in annotated and absent_record["is_instance_exhaustive"] == 1
    assert partial_record["id"] in annotated and partial_record["is_instance_exhaustive"] == 0

    # What training reads from that file, through the tiny model and the SAM 3 objective.
    root = Path(arguments["out"]).parent
    samples = {Path(s.image_path).name: s for s in read_source(labels, root).samples}
    segmenter = load_segmenter("tiny")
    slots = segmenter.num_slots

    sample = samples[queue[absent].file_name]
    query = next(q for q in sample.queries if q.phrase == queue[absent].phrase)
    assert query.instances == [] and query.exhaustive  # a negative
    moved, presence, target = gradients(segmenter, sample, query)
    assert target["boxes"].shape == (0, 4) and presence > 0  # training lowers "the phrase is here"

    sample = samples[queue[partial].file_name]
    query = next(q for q in sample.queries if q.phrase == queue[partial].phrase)
    assert query.instances and not query.exhaustive
    moved, presence, target = gradients(segmenter, sample, query)
    # Only the slots matched to a labelled instance learn; the unmatched ones get no negative class loss.
    assert set(moved) == {min(len(target["boxes"]), slots)} and len(target["boxes"]) < slots
    assert presence < 0  # the phrase is there
    query.exhaustive = True
    moved, _, _ = gradients(segmenter, sample, query)
    assert set(moved) == {slots}  # the same pair taken as exhaustive: every slot would learn
