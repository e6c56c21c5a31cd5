"""Arithmetic of the evaluation report's analyses on small hand-made cases (no model)."""

import contextlib
import copy
import io
import json

import numpy as np
import pycocotools.mask as mask_utils
import pytest
from PIL import Image
from pycocotools.coco import COCO
from pycocotools.cocoeval import COCOeval

from sam3_adapt.data_mix.synthetic.concept_world import domain_categories, write_world
from sam3_adapt.evaluation.breakdowns import breakdowns, by_size, count_errors, crowd_bin, slice_metrics
from sam3_adapt.evaluation.calibration import THRESHOLDS, calibration, sweep_row
from sam3_adapt.evaluation.curves import pr_curves
from sam3_adapt.evaluation.data import read_eval_set
from sam3_adapt.evaluation.pairs import PairTable
from sam3_adapt.evaluation.pictures import pairs_figure, select_pairs
from sam3_adapt.training.metrics import ConceptEvaluator
from tests.data_mix.twins import coco_to_saco, view

SIZE = 100


def rect_mask(xyxy):
    mask = np.zeros((SIZE, SIZE), dtype=bool)
    x0, y0, x1, y1 = (int(round(v)) for v in xyxy)
    mask[y0:y1, x0:x1] = True
    return mask


def ann(ann_id, image_id, category_id, xyxy):
    x0, y0, x1, y1 = xyxy
    rle = mask_utils.encode(np.asfortranarray(rect_mask(xyxy).astype(np.uint8)))
    rle["counts"] = rle["counts"].decode("ascii")
    return {
        "id": ann_id,
        "image_id": image_id,
        "category_id": category_id,
        "bbox": [x0, y0, x1 - x0, y1 - y0],
        "area": float((x1 - x0) * (y1 - y0)),
        "iscrowd": 0,
        "segmentation": rle,
    }


A, B = (10, 10, 30, 30), (50, 50, 70, 70)  # small (400 px)
MEDIUM = (20, 20, 60, 60)  # 1600 px
LARGE = (0, 0, 98, 98)  # 9604 px
LARGE_PRED = (0, 0, 98, 58.8)  # IoU 0.6 with LARGE: a hit at 0.5, a miss at 0.75
STRAY = (75, 5, 95, 25)

GT = {
    "images": [{"id": i, "height": SIZE, "width": SIZE, "file_name": f"{i}.png"} for i in (1, 2)],
    "annotations": [ann(1, 1, 1, A), ann(2, 1, 1, B), ann(3, 2, 1, MEDIUM), ann(4, 2, 3, LARGE)],
    "categories": [{"id": c, "name": name} for c, name in ((1, "cell"), (2, "debris"), (3, "dish"))],
}
# (image, category): [(box, score)]. (1, 1): two exact hits, a stray false positive and a low-scoring
# duplicate; (1, 2): a false positive on a negative pair; (2, 1): a missed instance; (2, 2): an empty
# prediction on a negative pair; (2, 3): a hit at IoU 0.6.
PREDICTIONS = {
    (1, 1): [(A, 0.9), (B, 0.8), (STRAY, 0.6), (A, 0.3)],
    (1, 2): [(STRAY, 0.7)],
    (2, 1): [],
    (2, 2): [],
    (2, 3): [(LARGE_PRED, 0.56)],
}
PHRASES = {1: "cell", 2: "debris", 3: "dish"}


@pytest.fixture(scope="module")
def evaluated():
    evaluator = ConceptEvaluator(GT, score_threshold=0.5)
    table = PairTable(GT, evaluator.cgf1_iou_type)
    for (image_id, cat_id), found in PREDICTIONS.items():
        boxes = np.array([box for box, _ in found], dtype=np.float64).reshape(-1, 4)
        scores = np.array([score for _, score in found])
        masks = np.stack([rect_mask(box) for box, _ in found]) if found else np.zeros((0, SIZE, SIZE), bool)
        records = evaluator.add(image_id, cat_id, boxes, scores, masks)
        table.add(image_id, cat_id, PHRASES[cat_id], f"source{image_id}", records)
    return evaluator, table


def by_key(table):
    return {(p.image_id, p.category_id): p for p in table.pairs}


def test_pair_outcomes_by_hand(evaluated):
    pairs = by_key(evaluated[1])
    assert pairs[(1, 1)].outcome(0.5) == (2, 1, 0)
    assert pairs[(1, 1)].outcome(0.25) == (2, 2, 0)
    assert pairs[(1, 2)].outcome(0.5) == (0, 1, 0)
    assert pairs[(2, 1)].outcome(0.5) == (0, 0, 1)
    assert pairs[(2, 2)].outcome(0.5) == (0, 0, 0)
    assert pairs[(2, 3)].outcome(0.5) == (1, 0, 0)
    assert pairs[(2, 3)].outcome(0.5, iou=0.75) == (0, 1, 1)
    assert pairs[(1, 1)].f1(0.5) == pytest.approx(0.8)
    assert pairs[(2, 2)].f1(0.5) == 1.0 and pairs[(1, 2)].f1(0.5) == 0.0
    assert [p.image_instances for p in (pairs[(1, 1)], pairs[(2, 2)])] == [2, 2]


def test_counts_by_hand(evaluated):
    counts = count_errors(evaluated[1].pairs, 0.5)
    # predicted vs true per pair: 3/2, 1/0, 0/1, 0/0, 1/1
    assert counts["MAE"] == pytest.approx(3 / 5)
    assert counts["MAE_positive"] == pytest.approx(2 / 3)
    assert counts["MAE_negative"] == pytest.approx(1 / 2)
    assert counts["bias"] == pytest.approx(1 / 5)
    assert counts["exact"] == pytest.approx(2 / 5)
    assert counts["mean_predicted"] == pytest.approx(1.0) and counts["mean_true"] == pytest.approx(4 / 5)
    # Training's validation logs the same number from the evaluator's own pair counts.
    assert evaluated[0].compute()["count_MAE"] == pytest.approx(counts["MAE"])


def test_sweep_row_by_hand(evaluated):
    row = sweep_row(evaluated[1].pairs, 0.5)
    assert (row["TP"], row["FP"], row["FN"]) == (3, 2, 1)
    assert row["precision"] == pytest.approx(3 / 5)
    assert row["recall"] == pytest.approx(3 / 4)
    assert row["F1"] == pytest.approx(2 / 3)
    # Image level: 2 TP, 1 FN (pair 2,1), 1 FP (pair 1,2), 1 TN: MCC = (2 - 1) / sqrt(3 * 3 * 2 * 2).
    assert row["IL_MCC"] == pytest.approx(1 / 6)
    # pmF1 at IoU 0.5 ignores the false positive on the negative pair: 2 * 3 / (6 + 1 + 1).
    assert row["pmF1@50"] == pytest.approx(3 / 4)
    assert row["cgF1@50"] == pytest.approx(3 / 4 / 6)
    low = sweep_row(evaluated[1].pairs, 0.25)
    assert (low["TP"], low["FP"], low["FN"]) == (3, 3, 1)


def test_sweep_at_the_evaluator_threshold_equals_its_cgf1(evaluated):
    evaluator, table = evaluated
    metrics = evaluator.compute()
    row = sweep_row(table.pairs, evaluator.score_threshold)
    for key in ("pmF1", "pmF1@50", "IL_MCC", "cgF1", "cgF1@50"):
        assert row[key] == pytest.approx(metrics[key]), key


def test_best_operating_point(evaluated):
    result = calibration(evaluated[1].pairs)
    assert [r["threshold"] for r in result["sweep"]] == list(THRESHOLDS)
    # Up to 0.30 the duplicate is a second false positive (F1 0.6); from 0.35 to 0.55 F1 is 2/3;
    # at 0.60 the 0.56 hit drops out (0.5); ties go to the lowest threshold.
    assert result["best_F1"]["threshold"] == pytest.approx(0.35)
    assert result["best_F1"]["F1"] == pytest.approx(2 / 3)
    assert result["sweep"][0]["F1"] == pytest.approx(0.6)


def test_slices_by_hand(evaluated):
    evaluator, table = evaluated
    pairs = by_key(table)
    cells = slice_metrics(evaluator, [pairs[(1, 1)], pairs[(2, 1)]], 0.5)
    assert (cells["pairs"], cells["positives"], cells["negatives"], cells["instances"]) == (2, 2, 0, 3)
    assert cells["pmF1"] == pytest.approx(2 / 3)  # exact hits: the same at every IoU threshold
    assert cells["IL_MCC"] is None and cells["cgF1"] is None and cells["negatives_with_FP"] is None
    assert cells["count_MAE"] == pytest.approx(1.0)
    negatives = slice_metrics(evaluator, [pairs[(1, 2)], pairs[(2, 2)]], 0.5)
    assert negatives["AP"] is None and negatives["pmF1"] is None
    assert negatives["negatives_with_FP"] == pytest.approx(0.5)
    everything = slice_metrics(evaluator, table.pairs, 0.5)
    metrics = evaluator.compute()
    assert everything["AP"] == pytest.approx(metrics["segm/AP"])
    assert everything["cgF1"] == pytest.approx(metrics["cgF1"])


def test_hard_negatives_are_a_pair_kind_of_their_own(evaluated):
    evaluator, table = evaluated
    cocoeval = evaluator.cocoeval(evaluator.cgf1_iou_type)
    # (1, 2) fires above the threshold, (2, 2) is empty: as the only hard negative, (1, 2) has rate 1.
    kinds = breakdowns(evaluator, cocoeval, table.pairs, 0.5, hard_negatives={(1, 2)})["pair kind"]
    assert set(kinds) == {"positive", "negative", "hard negative"}
    assert (kinds["hard negative"]["pairs"], kinds["hard negative"]["negatives_with_FP"]) == (1, 1.0)
    assert (kinds["negative"]["pairs"], kinds["negative"]["negatives_with_FP"]) == (1, 0.0)
    plain = breakdowns(evaluator, cocoeval, table.pairs, 0.5)["pair kind"]
    assert set(plain) == {"positive", "negative"} and plain["negative"]["negatives_with_FP"] == 0.5


def test_crowd_bins():
    labels = [crowd_bin(n) for n in (0, 1, 2, 3, 5, 6, 10, 11, 20, 21, 50, 51, 300)]
    assert labels == ["0", "1-2", "1-2", "3-5", "3-5", "6-10", "6-10", "11-20", "11-20", "21-50", "21-50"] + [
        "51+",
        "51+",
    ]


def test_sizes_match_cocoeval(evaluated):
    evaluator, table = evaluated
    cocoeval = evaluator.cocoeval("segm")
    sizes = by_size(cocoeval, table.pairs, 0.5)
    assert {k: v["instances"] for k, v in sizes.items()} == {"small": 2, "medium": 1, "large": 1}
    assert {k: v["recall"] for k, v in sizes.items()} == {"small": 1.0, "medium": 0.0, "large": 1.0}
    # The same numbers straight from pycocotools.
    with contextlib.redirect_stdout(io.StringIO()):
        coco_gt = COCO()
        coco_gt.dataset = copy.deepcopy(GT)
        coco_gt.createIndex()
        dets = copy.deepcopy(evaluator.results)
        for det in dets:
            det.pop("bbox")
        direct = COCOeval(coco_gt, coco_gt.loadRes(dets), "segm")
        direct.evaluate()
        direct.accumulate()
        direct.summarize()
    for k, name in enumerate(("small", "medium", "large")):
        assert sizes[name]["AP"] == pytest.approx(direct.stats[3 + k])
        assert sizes[name]["AR"] == pytest.approx(direct.stats[9 + k])


def test_pr_curves_average_to_cocoeval_ap(evaluated):
    cocoeval = evaluated[0].cocoeval("segm")
    curves = pr_curves(cocoeval)
    assert np.mean(curves["overall"]["0.50:0.95"]) == pytest.approx(cocoeval.stats[0])
    assert np.mean(curves["overall"]["0.50"]) == pytest.approx(cocoeval.stats[1])
    assert np.mean(curves["overall"]["0.75"]) == pytest.approx(cocoeval.stats[2])
    assert set(curves["per_category"]) == {1, 3}  # "debris" has no ground truth


def test_pictures_pick_and_draw(evaluated, tmp_path):
    table = evaluated[1]
    picked = {k: [(p.image_id, p.category_id) for p in v] for k, v in select_pairs(table.pairs, 0.5).items()}
    assert picked == {
        "best": [(2, 3), (1, 1)],
        "worst": [(2, 1)],
        "false_positives_on_negatives": [(1, 2)],
        "missed_instances": [(2, 1)],
    }
    paths = {}
    for image_id in (1, 2):
        paths[image_id] = tmp_path / f"{image_id}.png"
        Image.fromarray(np.full((SIZE, SIZE, 3), 90 * image_id, dtype=np.uint8)).save(paths[image_id])
    figure = pairs_figure(select_pairs(table.pairs, 0.5)["best"], table, paths, 0.5)
    assert len(figure.axes) == 2
    figure.savefig(tmp_path / "best.png", dpi=50)
    with Image.open(tmp_path / "best.png") as image:
        assert image.format == "PNG"


def write_empty_set(folder):
    folder.mkdir()
    Image.fromarray(np.zeros((64, 64, 3), dtype=np.uint8)).save(folder / "a.png")
    coco = {
        "images": [{"id": 1, "file_name": "a.png", "height": 64, "width": 64}],
        "annotations": [],
        "categories": [{"id": 1, "name": "cell"}],
    }
    (folder / "empty.json").write_text(json.dumps(coco))
    return folder / "empty.json"


def test_set_without_positive_pairs_is_refused(tmp_path):
    json_path = write_empty_set(tmp_path / "empty")
    with pytest.raises(ValueError, match="empty.json: no image has an instance"):
        read_eval_set(json_path, json_path.parent)


def test_several_files_merge_as_sources(tmp_path):
    anchor = write_world(tmp_path / "anchor", "anchor", 2, image_size=64)
    industrial = write_world(tmp_path / "industrial", "industrial", 2, image_size=64)
    merged = read_eval_set([anchor[0], industrial[0]], [anchor[1], industrial[1]])
    assert len({s.image_id for s in merged.samples}) == 4
    sources = {s.source for s in merged.samples}
    assert sources == {"anchor/annotations.json", "industrial/annotations.json"}
    for sample in merged.samples:
        domain = sample.source.split("/")[0]
        own = {c["name"] for c in domain_categories(domain)}
        assert {merged.phrases[q.category_id][0] for q in sample.queries} == own
        for query in sample.queries:
            for instance in query.instances:
                record = next(a for a in merged.gt["annotations"] if a["id"] == instance.annotation_id)
                assert (record["image_id"], record["category_id"]) == (sample.image_id, query.category_id)
    originals = [json.loads(p.read_text()) for p in (anchor[0], industrial[0])]
    assert len(merged.gt["annotations"]) == sum(len(o["annotations"]) for o in originals)


def test_box_only_data_matches_and_draws_boxes(tmp_path):
    gt = copy.deepcopy(GT)
    for annotation in gt["annotations"]:
        del annotation["segmentation"]
    evaluator = ConceptEvaluator(gt, score_threshold=0.5)
    assert evaluator.cgf1_iou_type == "bbox"
    table = PairTable(gt, evaluator.cgf1_iou_type)
    boxes = np.array([A, STRAY], dtype=np.float64)
    records = evaluator.add(1, 1, boxes, np.array([0.9, 0.7]))
    pair = table.add(1, 1, "cell", "s", records)
    assert pair.outcome(0.5) == (1, 1, 1)
    assert sweep_row(table.pairs, 0.5)["pmF1@50"] == pytest.approx(0.5)
    Image.fromarray(np.zeros((SIZE, SIZE, 3), dtype=np.uint8)).save(tmp_path / "1.png")
    figure = pairs_figure([pair], table, {1: tmp_path / "1.png"}, 0.5)
    # two predictions and two true instances, all drawn as rectangles
    assert len(figure.axes[0].patches) == 4


def test_an_saco_set_evaluates_as_its_coco_twin(tmp_path):
    json_path, image_dir = write_world(tmp_path / "anchor", "anchor", 3, image_size=64)
    saco_path = tmp_path / "saco.json"
    saco_path.write_text(json.dumps(coco_to_saco(json.loads(json_path.read_text()))))
    coco_set, saco_set = read_eval_set(json_path, image_dir), read_eval_set(saco_path, image_dir)
    assert view(saco_set.samples) == view(coco_set.samples)


def test_the_sweep_reaches_down_to_001(evaluated):
    assert THRESHOLDS[0] == 0.01 and list(THRESHOLDS) == sorted(THRESHOLDS)
    evaluator, table = evaluated
    # Scores of a model that never reaches 0.05: its best operating point is below that.
    low = copy.deepcopy(table.pairs)
    for pair in low:
        pair.scores = pair.scores * 0.04
    rows = calibration(low)
    assert rows["best_F1"]["threshold"] < 0.05 and rows["best_F1"]["F1"] > 0
