"""Adversarial mining on a tiny SAM 3 whose weights are set so that the outcome is known.

The model is a real tiny ``Sam3Model`` with a few heads set by hand:

- the scoring head gives every object slot the logit ``k * d . (p - m)``, where ``p`` is the
  phrase's pooled text feature (the head's own input, read with a hook), ``d = p_fire - p_quiet``
  and ``m`` their midpoint: "yellow moon" scores near 1 and "green star" near 0 on every image
  (the text side of the head does not depend on the image);
- the presence head says "present" everywhere;
- the box head pushes every box to the bottom-right quadrant of the image.

The test checks these facts with ``Sam3Model.forward`` before mining, so the answer comes from the
model's own computation and not from the code under test.
"""

import csv
import json

import numpy as np
import pytest
import torch
from PIL import Image
from transformers import Sam3Model, Sam3Processor

from sam3_adapt.cli import main
from sam3_adapt.data_mix import read_coco_set
from sam3_adapt.data_mix.negatives.add import add_negatives
from sam3_adapt.data_mix.negatives.files import read_negative_phrases
from sam3_adapt.jobs.mine_negatives import candidates_per_image, mine_negatives
from sam3_adapt.model.tiny import write_tiny_random_sam3

FIRE, QUIET, SIZE = "yellow moon", "green star", 56


def _scores(network, processor, image, phrases):
    """Best score per phrase by ``Sam3Model.forward`` (the reference path), and the pooled texts."""
    pooled = []
    hook = network.dot_product_scoring.text_proj.register_forward_hook(
        lambda m, args, out: pooled.append(args[0])
    )
    tokens = processor.tokenizer(phrases, padding="max_length", max_length=32, return_tensors="pt")
    pixels = (torch.from_numpy(np.asarray(image)).permute(2, 0, 1).float() / 255 - 0.5) / 0.5
    with torch.no_grad():
        out = network(
            pixel_values=pixels[None].expand(len(phrases), -1, -1, -1),
            input_ids=tokens.input_ids,
            attention_mask=tokens.attention_mask,
        )
    hook.remove()
    scores = (out.pred_logits.sigmoid() * out.presence_logits.sigmoid()).max(-1).values
    return scores, pooled[0], out.pred_boxes


@pytest.fixture(scope="module")
def world(tmp_path_factory):
    root = tmp_path_factory.mktemp("mine")
    rng = np.random.default_rng(0)
    (root / "images").mkdir()
    images = [rng.integers(0, 256, (SIZE, SIZE, 3), dtype=np.uint8) for _ in range(3)]
    for i, image in enumerate(images):
        Image.fromarray(image).save(root / "images" / f"{i}.png")
    half = SIZE // 2
    coco = {
        "images": [{"id": i + 1, "file_name": f"{i}.png", "width": SIZE, "height": SIZE} for i in range(3)],
        "categories": [{"id": 1, "name": "grey square"}, {"id": 2, "name": "red circle"}],
        "annotations": [
            # image 1: a positive exactly where the model puts its boxes; image 2: far from them
            {"id": 1, "image_id": 1, "category_id": 1, "bbox": [half, half, half, half], "iscrowd": 0},
            {"id": 2, "image_id": 2, "category_id": 1, "bbox": [0, 0, 14, 14], "iscrowd": 0},
            {"id": 3, "image_id": 3, "category_id": 2, "bbox": [0, 0, 14, 14], "iscrowd": 0},
        ],
    }
    (root / "train.json").write_text(json.dumps(coco))

    folder = write_tiny_random_sam3(root / "model", seed=0, image_size=SIZE)
    network, processor = Sam3Model.from_pretrained(folder).eval(), Sam3Processor.from_pretrained(folder)
    _, pooled, _ = _scores(network, processor, images[0], [FIRE, QUIET])
    direction = pooled[0] - pooled[1]
    scoring, decoder = network.dot_product_scoring, network.detr_decoder
    with torch.no_grad():
        scoring.text_proj.weight.zero_()
        scoring.text_proj.bias.zero_()
        scoring.text_proj.weight[0] = direction
        scoring.text_proj.bias[0] = -direction @ (pooled[0] + pooled[1]) / 2
        scoring.query_proj.weight.zero_()
        scoring.query_proj.bias.zero_()
        scoring.query_proj.bias[0] = 1e4
        for head, bias in ((decoder.presence_head.layer3, 10.0), (decoder.box_head.layer3, 30.0)):
            head.weight.zero_()
            head.bias.fill_(bias)
    network.save_pretrained(folder)

    for image in images:
        scores, _, boxes = _scores(network, processor, image, [FIRE, QUIET])
        assert scores[0] > 0.99 and scores[1] < 0.01  # the construction holds on every image
        torch.testing.assert_close(boxes[0], torch.tensor([[0.5, 0.5, 1.5, 1.5]]).expand_as(boxes[0]))
    return {"data_json": str(root / "train.json"), "image_dir": str(root / "images"), "model": str(folder)}


def test_candidates_leave_out_phrases_present_in_the_image(world, tmp_path):
    (tmp_path / "phrases.txt").write_text(f"# candidates\n{FIRE}\n\n{QUIET}\nGrey  square\n")
    coco = read_coco_set(world["data_json"], world["image_dir"])
    per_image = candidates_per_image(coco, tmp_path / "phrases.txt", siblings=True, compose_siblings=True)
    assert per_image == {
        1: [FIRE, QUIET, "red square", "grey circle"],
        2: [FIRE, QUIET, "red square", "grey circle"],
        3: [FIRE, QUIET, "Grey square", "grey circle", "red square"],
    }
    assert candidates_per_image(coco, siblings=True) == {1: [], 2: [], 3: []}  # nothing shares a word


def test_keeps_the_phrase_that_fires_and_reports_overlap(world, tmp_path):
    (tmp_path / "phrases.txt").write_text(f"{FIRE}\n{QUIET}\n")
    mined = mine_negatives(**world, candidates=str(tmp_path / "phrases.txt"), out=str(tmp_path / "m.yaml"))
    found = {(m.image_id, m.phrase): m for m in mined}
    assert sorted(found) == [(1, FIRE), (2, FIRE), (3, FIRE)]  # "green star" never fires
    assert found[(1, FIRE)].score > 0.99 and found[(1, FIRE)].detections == 20  # every slot fires
    assert found[(1, FIRE)].overlaps == "grey square" and found[(1, FIRE)].iou == pytest.approx(1.0)
    assert found[(2, FIRE)].iou == 0.0 and found[(3, FIRE)].overlaps == "red circle"

    written = read_negative_phrases(tmp_path / "m.yaml")
    assert (written.dataset, written.images) == ([], {"0.png": [FIRE], "1.png": [FIRE], "2.png": [FIRE]})
    assert "overlaps_positive: True" in (tmp_path / "m.yaml").read_text()

    # Fed back after review, the phrases become mined hard negatives.
    coco = add_negatives(read_coco_set(world["data_json"], world["image_dir"]), mined=tmp_path / "m.yaml")
    assert [[(q.phrase, q.negative_kind) for q in s.negatives] for s in coco.samples] == [
        [("red circle", "implicit"), (FIRE, "mined")],
        [("red circle", "implicit"), (FIRE, "mined")],
        [("grey square", "implicit"), (FIRE, "mined")],
    ]


def test_require_overlap_keeps_confusions_only(world, tmp_path):
    candidates = tmp_path / "c.yaml"
    candidates.write_text(f"images:\n  0.png: [{FIRE}, {QUIET}]\n  1.png: [{FIRE}]\n")
    mined = mine_negatives(
        **world, candidates=str(candidates), require_overlap=True, out=str(tmp_path / "m.csv"), progress=False
    )
    assert [(m.image_id, m.phrase) for m in mined] == [
        (1, FIRE)
    ]  # on image 2 it fires away from the positive


def test_cli_verb_writes_csv(world, tmp_path):
    candidates = tmp_path / "c.txt"
    candidates.write_text(f"{QUIET}\n{FIRE}\n")
    out = tmp_path / "m.csv"
    args = [f"--{key}={value}" for key, value in world.items()]
    main(["mine-negatives", *args, f"--candidates={candidates}", f"--out={out}", "--progress=false"])
    with out.open() as handle:
        rows = list(csv.DictReader(handle))
    assert [(r["image"], r["phrase"], r["overlaps_positive"]) for r in rows] == [
        ("0.png", FIRE, "True"),
        ("1.png", FIRE, "False"),
        ("2.png", FIRE, "False"),
    ]


def test_needs_a_candidate_source(world):
    with pytest.raises(ValueError, match="nothing to try"):
        mine_negatives(**world)
