import contextlib
import copy
import io
import json

import numpy as np
import pycocotools.mask as mask_utils
import pytest
import torch
from pycocotools.coco import COCO
from pycocotools.cocoeval import COCOeval

from sam3_adapt.training.coco_ap import coco_ap
from sam3_adapt.training.coco_results import to_coco_results, write_coco_results
from sam3_adapt.training.metrics import ConceptEvaluator

# ---------------------------------------------------------------- helpers


def box_ann(ann_id, image_id, category_id, xyxy, **extra):
    x0, y0, x1, y1 = xyxy
    ann = {"id": ann_id, "image_id": image_id, "category_id": category_id, "iscrowd": 0}
    ann.update(bbox=[x0, y0, x1 - x0, y1 - y0], area=float((x1 - x0) * (y1 - y0)))
    ann.update(extra)
    return ann


def dataset(images, annotations, categories=(1, 2), height=100, width=100):
    return {
        "images": [{"id": i, "height": height, "width": width, "file_name": f"{i}.png"} for i in images],
        "annotations": annotations,
        "categories": [{"id": c, "name": f"cat{c}"} for c in categories],
    }


def rect_mask(xyxy, height, width):
    mask = np.zeros((height, width), dtype=bool)
    x0, y0, x1, y1 = (int(v) for v in xyxy)
    mask[y0:y1, x0:x1] = True
    return mask


def uncompressed_rle(mask):
    """COCO uncompressed RLE: run lengths of the column-major mask, starting with a run of zeros."""
    flat = mask.flatten(order="F").astype(np.int8)
    changes = np.flatnonzero(np.diff(flat)) + 1
    runs = np.diff(np.concatenate([[0], changes, [flat.size]])).tolist()
    if flat[0] == 1:
        runs = [0] + runs
    return {"size": list(mask.shape), "counts": runs}


def cocoeval_stats(gt, results, iou_type):
    """pycocotools run directly, default parameters."""
    with contextlib.redirect_stdout(io.StringIO()):
        coco_gt = COCO()
        coco_gt.dataset = copy.deepcopy(gt)
        coco_gt.createIndex()
        coco_dt = coco_gt.loadRes(copy.deepcopy(results))
        ev = COCOeval(coco_gt, coco_dt, iou_type)
        ev.evaluate()
        ev.accumulate()
        ev.summarize()
    return ev.stats


# ---------------------------------------------------------------- AP against pycocotools


def random_case(seed=0, height=48, width=64):
    """GT with polygon, compressed RLE, uncompressed RLE and crowd masks; jittered and junk detections."""
    rng = np.random.default_rng(seed)
    images, categories = [1, 2, 3, 4], [1, 2, 3]
    anns, preds = [], {}

    def random_box():
        x0, y0 = rng.integers(0, width - 12), rng.integers(0, height - 12)
        return [int(x0), int(y0), int(x0 + rng.integers(6, 12)), int(y0 + rng.integers(6, 12))]

    for image_id in images:
        for category_id in categories:
            boxes, scores = [], []
            for _ in range(rng.integers(0, 4)):
                xyxy = random_box()
                mask = rect_mask(xyxy, height, width)
                mask[xyxy[1], xyxy[0]] = False  # not quite a box, so mask and box IoU differ
                kind = len(anns) % 3
                if kind == 0:
                    x0, y0, x1, y1 = xyxy
                    segm = [[x0, y0, x1, y0, x1, y1, x0, y1]]
                elif kind == 1:
                    rle = mask_utils.encode(np.asfortranarray(mask.astype(np.uint8)))
                    segm = {"size": rle["size"], "counts": rle["counts"].decode()}
                else:
                    segm = uncompressed_rle(mask)
                area = float(mask_utils.area(mask_utils.encode(np.asfortranarray(mask.astype(np.uint8)))))
                anns.append(box_ann(len(anns) + 1, image_id, category_id, xyxy, segmentation=segm, area=area))
                jitter = rng.integers(-1, 2, size=4)
                boxes.append(np.clip(np.array(xyxy) + jitter, 0, [width, height, width, height]))
                scores.append(rng.uniform(0.3, 1.0))
            for _ in range(rng.integers(0, 3)):
                boxes.append(np.array(random_box()))
                scores.append(rng.uniform(0.0, 0.8))
            preds[image_id, category_id] = (
                np.array(boxes, dtype=np.float64).reshape(-1, 4),
                np.array(scores),
            )
    crowd = uncompressed_rle(rect_mask([0, 0, 20, 20], height, width))
    anns.append(box_ann(len(anns) + 1, 1, 1, [0, 0, 20, 20], iscrowd=1, segmentation=crowd, area=400.0))
    return dataset(images, anns, categories, height, width), preds


@pytest.mark.parametrize("iou_type", ["bbox", "segm"])
def test_ap_equals_cocoeval_run_directly(iou_type):
    height, width = 48, 64
    gt, preds = random_case(height=height, width=width)
    evaluator = ConceptEvaluator(gt, iou_types=(iou_type,))
    by_hand = []
    for (image_id, category_id), (boxes, scores) in preds.items():
        masks = (
            np.stack([rect_mask(b, height, width) for b in boxes]) if len(boxes) else np.zeros((0, 48, 64))
        )
        evaluator.add(image_id, category_id, boxes, scores, masks.astype(bool))
        for box, score, mask in zip(boxes, scores, masks, strict=True):
            record = {"image_id": image_id, "category_id": category_id, "score": float(score)}
            if iou_type == "bbox":
                record["bbox"] = [box[0], box[1], box[2] - box[0], box[3] - box[1]]
            else:
                record["segmentation"] = mask_utils.encode(np.asfortranarray(mask.astype(np.uint8)))
            by_hand.append(record)
    stats = cocoeval_stats(gt, by_hand, iou_type)
    metrics = evaluator.compute()
    assert 0.05 < stats[0] < 0.95  # a case where AP is neither trivial nor perfect
    assert metrics[f"{iou_type}/AP"] == pytest.approx(stats[0], abs=1e-12)
    assert metrics[f"{iou_type}/AP50"] == pytest.approx(stats[1], abs=1e-12)
    assert metrics[f"{iou_type}/AP75"] == pytest.approx(stats[2], abs=1e-12)
    assert metrics[f"{iou_type}/AR100"] == pytest.approx(stats[8], abs=1e-12)


def test_ap_keeps_top_100_per_image_across_categories():
    rng = np.random.default_rng(1)
    gt = dataset([1], [box_ann(1, 1, 1, [10, 10, 40, 40]), box_ann(2, 1, 2, [50, 50, 90, 90])])
    junk = np.array([[0, 60, 5, 65]] * 80, dtype=np.float64)
    # Category 2: its exact box plus 79 junk boxes, all scoring 0.9-0.99.
    boxes2 = np.concatenate([[[50, 50, 90, 90]], junk[:79]])
    scores2 = rng.uniform(0.9, 0.99, size=80)
    # Category 1: 79 junk boxes at 0.6-0.8 and its exact box at 0.2, which falls out of the image's top 100.
    boxes1 = np.concatenate([junk[:79], [[10, 10, 40, 40]]])
    scores1 = np.concatenate([rng.uniform(0.6, 0.8, size=79), [0.2]])
    results = to_coco_results(1, 1, boxes1, scores1) + to_coco_results(1, 2, boxes2, scores2)
    top_100 = sorted(results, key=lambda r: -r["score"])[:100]

    ours = coco_ap(gt, results, "bbox")
    assert ours["AP"] == pytest.approx(cocoeval_stats(gt, top_100, "bbox")[0], abs=1e-12)
    assert ours["AP"] != pytest.approx(cocoeval_stats(gt, results, "bbox")[0], abs=1e-6)


def test_ap_only_counts_evaluated_pairs():
    # Images 1, 2 and categories 1, 2 are all evaluated, but the pair (image 2, category 1) is never
    # queried: its ground truth must not count as a miss.
    box = [10, 10, 30, 30]
    gt = dataset([1, 2], [box_ann(1, 1, 1, box), box_ann(2, 2, 1, box), box_ann(3, 2, 2, box)])
    evaluator = ConceptEvaluator(gt, iou_types=("bbox",))
    evaluator.add(1, 1, np.array([box]), np.array([0.9]))
    evaluator.add(2, 2, np.array([box]), np.array([0.9]))
    evaluator.add(1, 2, np.zeros((0, 4)), np.zeros(0))
    assert evaluator.compute()["bbox/AP"] == pytest.approx(1.0)
    evaluator.reset()
    with pytest.raises(ValueError, match="no \\(image, phrase\\) pair"):
        evaluator.compute()


# ---------------------------------------------------------------- cgF1 against hand arithmetic

# Category 1 ground truth (box-only), images of 100x100:
#   img1: A; img2: B and C; img3: D; img7: E; img8: F; images 4, 5, 6 have none.
CGF1_GT = dataset(
    [1, 2, 3, 4, 5, 6, 7, 8],
    [
        box_ann(1, 1, 1, [10, 10, 30, 30]),
        box_ann(2, 2, 1, [0, 0, 20, 20]),
        box_ann(3, 2, 1, [50, 50, 70, 70]),
        box_ann(4, 3, 1, [0, 0, 40, 40]),
        box_ann(5, 7, 1, [0, 0, 10, 10]),
        box_ann(6, 8, 1, [0, 0, 10, 10]),
    ],
)
CGF1_PREDS = {
    "perfect": (1, 1, [[10, 10, 30, 30]], [0.9]),
    "missed": (2, 1, [[0, 0, 20, 20], [50, 50, 70, 70]], [0.8, 0.3]),  # C only found below threshold
    "fp_on_positive": (3, 1, [[0, 0, 40, 40], [60, 60, 80, 80]], [0.9, 0.7]),
    "fp_on_negative": (4, 1, [[5, 5, 25, 25]], [0.6]),
    "empty_negative": (5, 1, [], []),
    "below_threshold_negative": (6, 1, [[0, 0, 10, 10]], [0.2]),
    "partial": (7, 1, [[0, 0, 10, 16]], [0.9]),  # IoU = 100 / 160 = 0.625
    "below_threshold_positive": (8, 1, [[0, 0, 10, 10]], [0.4]),
    "other_phrase_empty": (1, 2, [], []),
}


def evaluate(names, gt=CGF1_GT, **kwargs):
    evaluator = ConceptEvaluator(gt, **kwargs)
    for name in names:
        image_id, category_id, boxes, scores = CGF1_PREDS[name]
        evaluator.add(image_id, category_id, np.array(boxes, dtype=float).reshape(-1, 4), np.array(scores))
    return evaluator, evaluator.compute()


@pytest.mark.parametrize(
    ("names", "pm_f1", "il_mcc"),
    [
        # TP=1 -> F1 = 2/2 = 1; image level TP=1, TN=1 -> MCC = (1*1 - 0) / sqrt(1*1*1*1) = 1
        (["perfect", "empty_negative"], 1.0, 1.0),
        # TP=1, FN=1 -> F1 = 2*1 / (2*1 + 0 + 1) = 2/3; MCC = 1
        (["missed", "empty_negative"], 2 / 3, 1.0),
        # TP=1, FP=1 -> F1 = 2 / (2 + 1 + 0) = 2/3; MCC = 1
        (["fp_on_positive", "empty_negative"], 2 / 3, 1.0),
        # the negative pair's FP stays out of pmF1 -> F1 = 1;
        # TP=1, FP=1, TN=1, FN=0 -> MCC = (1*1 - 1*0) / sqrt((1+1)(1+0)(1+1)(1+0)) = 1/2
        (["perfect", "fp_on_negative", "empty_negative"], 1.0, 0.5),
        # an empty or below-threshold prediction on a negative pair is a TN: TP=1, TN=2
        # -> MCC = (1*2 - 0) / sqrt(1*1*2*2) = 1
        (["perfect", "empty_negative", "below_threshold_negative"], 1.0, 1.0),
    ],
)
def test_cgf1_small_cases(names, pm_f1, il_mcc):
    evaluator, metrics = evaluate(names)
    assert evaluator.cgf1_iou_type == "bbox"
    assert metrics["pmF1"] == pytest.approx(pm_f1, abs=1e-12)
    assert metrics["IL_MCC"] == pytest.approx(il_mcc, abs=1e-12)
    assert metrics["cgF1"] == pytest.approx(pm_f1 * il_mcc, abs=1e-12)


def test_cgf1_all_cases_together():
    _, metrics = evaluate(list(CGF1_PREDS))
    # Positive pairs (img1, 2, 3, 7, 8 for category 1), per IoU threshold t:
    #   TP = 1 (img1) + 1 (img2) + 1 (img3) + [t <= 0.625] (img7)
    #   FP = 1 (img3) + [t > 0.625] (img7)              (img4's FP is on a negative pair: left out)
    #   FN = 1 (img2, C) + [t > 0.625] (img7) + 1 (img8, only below threshold)
    # t in {0.50, 0.55, 0.60}: TP=4, FP=1, FN=2 -> F1 = 8 / (8 + 1 + 2) = 8/11
    # t in {0.65, ..., 0.95} (7 thresholds): TP=3, FP=2, FN=3 -> F1 = 6 / (6 + 2 + 3) = 6/11
    # pmF1 = (3 * 8/11 + 7 * 6/11) / 10 = 66/110 = 0.6
    # Image level: TP = img1, 2, 3, 7 = 4; FN = img8 = 1; FP = img4 = 1; TN = img5, img6, (img1, cat2) = 3
    # IL_MCC = (4*3 - 1*1) / sqrt((4+1)(4+1)(3+1)(3+1)) = 11 / 20 = 0.55
    assert metrics["pmF1"] == pytest.approx(0.6, abs=1e-12)
    assert metrics["pmF1@50"] == pytest.approx(8 / 11, abs=1e-12)
    assert metrics["pmF1@75"] == pytest.approx(6 / 11, abs=1e-12)
    assert metrics["IL_MCC"] == pytest.approx(0.55, abs=1e-12)
    assert metrics["cgF1"] == pytest.approx(0.6 * 0.55, abs=1e-12)
    assert metrics["cgF1@50"] == pytest.approx(8 / 11 * 0.55, abs=1e-12)
    assert metrics["cgF1@75"] == pytest.approx(6 / 11 * 0.55, abs=1e-12)


def test_box_only_ground_truth_skips_segm_ap():
    evaluator, metrics = evaluate(["perfect", "empty_negative"])
    assert "segm" in evaluator.skipped and "no masks" in evaluator.skipped["segm"]
    assert not any(key.startswith("segm/") for key in metrics)
    assert metrics["bbox/AP"] == pytest.approx(1.0)


def test_without_negative_pairs_il_mcc_is_zero_and_warns():
    with pytest.warns(UserWarning, match="no negative pair"):
        _, metrics = evaluate(["perfect"])
    # image level TP=1 only: (1*0 - 0*0) / 0 -> 0, as in the reference
    assert metrics["pmF1"] == pytest.approx(1.0)
    assert metrics["IL_MCC"] == 0.0
    assert metrics["cgF1"] == 0.0


def test_no_predictions_give_zero_ap_and_cgf1():
    evaluator = ConceptEvaluator(CGF1_GT, iou_types=("bbox",))
    evaluator.add(1, 1, np.zeros((0, 4)), np.zeros(0))
    evaluator.add(5, 1, np.zeros((0, 4)), np.zeros(0))
    metrics = evaluator.compute()
    # TP=0, FP=0, FN=1 -> pmF1 = 0 / (0 + 0 + 1) = 0; image level FN=1, TN=1 -> MCC = 0 / 0 -> 0
    assert metrics["bbox/AP"] == 0.0
    assert metrics["pmF1"] == 0.0
    assert metrics["cgF1"] == 0.0


def test_cgf1_uses_mask_iou_when_masks_exist():
    size = 20
    l_shape = np.zeros((size, size), dtype=bool)
    l_shape[:, :4] = True
    l_shape[16:, :] = True  # area 20*4 + 16*4 = 144, box [0, 0, 20, 20]
    square = np.ones((size, size), dtype=bool)
    rle = mask_utils.encode(np.asfortranarray(l_shape.astype(np.uint8)))
    segm = {"size": rle["size"], "counts": rle["counts"].decode()}
    anns = [box_ann(i, i, 1, [0, 0, size, size], segmentation=segm, area=144.0) for i in (1, 2)]
    gt = dataset([1, 2, 3], anns, height=size, width=size)
    box = np.array([[0.0, 0.0, size, size]])
    metrics = {}
    for iou_types in [("bbox", "segm"), ("bbox",)]:
        evaluator = ConceptEvaluator(gt, iou_types=iou_types)
        evaluator.add(1, 1, box, np.array([0.9]), square[None])  # mask IoU 144/400 = 0.36, box IoU 1
        evaluator.add(2, 1, box, np.array([0.9]), l_shape[None])  # mask IoU 1, box IoU 1
        evaluator.add(3, 1, np.zeros((0, 4)), np.zeros(0), np.zeros((0, size, size), dtype=bool))
        metrics[evaluator.cgf1_iou_type] = evaluator.compute()
    # mask IoU: TP=1, FP=1, FN=1 -> pmF1 = 2 / (2 + 1 + 1) = 0.5; box IoU: TP=2 -> pmF1 = 1
    assert metrics["segm"]["pmF1"] == pytest.approx(0.5, abs=1e-12)
    assert metrics["bbox"]["pmF1"] == pytest.approx(1.0, abs=1e-12)
    assert "segm/AP" in metrics["segm"] and "segm/AP" not in metrics["bbox"]


# ---------------------------------------------------------------- COCO result records


def test_rle_results_are_json_serialisable_and_decode_back(tmp_path):
    rng = np.random.default_rng(2)
    masks = rng.random((3, 17, 23)) > 0.5
    boxes = torch.tensor(
        [[1.0, 2.0, 5.0, 7.0], [0.0, 0.0, 23.0, 17.0], [3.5, 4.5, 6.5, 9.5]], dtype=torch.bfloat16
    )
    results = to_coco_results(7, 3, boxes, torch.tensor([0.9, 0.5, 0.1]), torch.from_numpy(masks))
    path = write_coco_results(tmp_path / "sub" / "results.json", results)
    loaded = json.loads(path.read_text())
    assert loaded == results
    assert loaded[0]["bbox"] == [1.0, 2.0, 4.0, 5.0]  # xyxy -> xywh
    assert [r["image_id"] for r in loaded] == [7, 7, 7] and loaded[2]["score"] == pytest.approx(0.1)
    for record, mask in zip(loaded, masks, strict=True):
        assert isinstance(record["segmentation"]["counts"], str)
        np.testing.assert_array_equal(mask_utils.decode(record["segmentation"]).astype(bool), mask)
    assert to_coco_results(7, 3, np.zeros((0, 4)), np.zeros(0), np.zeros((0, 17, 23), dtype=bool)) == []


# ---------------------------------------------------------------- errors


def test_errors():
    evaluator = ConceptEvaluator(CGF1_GT)
    no_box, no_score = np.zeros((0, 4)), np.zeros(0)
    with pytest.raises(ValueError, match="image id 999"):
        evaluator.add(999, 1, no_box, no_score)
    with pytest.raises(ValueError, match="category id 42"):
        evaluator.add(1, 42, no_box, no_score)
    evaluator.add(5, 1, no_box, no_score)
    with pytest.raises(ValueError, match="added twice"):
        evaluator.add(5, 1, no_box, no_score)
    with pytest.raises(ValueError, match="undefined without positives"):
        evaluator.compute()
    with pytest.raises(ValueError, match="3 boxes but 2 scores"):
        evaluator.add(1, 1, np.zeros((3, 4)), np.zeros(2))
    with pytest.raises(ValueError, match="image ids \\[999\\]"):
        coco_ap(CGF1_GT, to_coco_results(999, 1, np.ones((1, 4)), np.ones(1)), "bbox")


def test_mask_errors():
    mask_ann = box_ann(1, 1, 1, [0, 0, 10, 10], segmentation=[[0, 0, 10, 0, 10, 10, 0, 10]])
    gt = dataset([1, 2], [mask_ann])
    evaluator = ConceptEvaluator(gt)
    with pytest.raises(ValueError, match="no masks were given"):
        evaluator.add(1, 1, np.zeros((0, 4)), np.zeros(0))
    with pytest.raises(ValueError, match="masks are \\(50, 50\\)"):
        evaluator.add(1, 1, np.zeros((0, 4)), np.zeros(0), np.zeros((0, 50, 50), dtype=bool))
    mixed = dataset([1, 2], [mask_ann, box_ann(2, 2, 1, [0, 0, 10, 10])])
    with pytest.raises(ValueError, match="annotation 2 \\(image 2\\) has no segmentation"):
        ConceptEvaluator(mixed)
    assert ConceptEvaluator(mixed, iou_types=("bbox",)).cgf1_iou_type == "bbox"


def test_shards_merged_like_ddp_processes_give_the_metrics_of_the_whole_set():
    gt, preds = random_case(seed=3)
    pairs = sorted(preds)
    whole = ConceptEvaluator(gt, iou_types=("bbox",))
    # Two "processes": one gets even pairs, the other odd ones plus a repeat of the first pair, as a
    # distributed sampler pads the last shard.
    shards = [ConceptEvaluator(gt, iou_types=("bbox",)) for _ in range(2)]
    for index, key in enumerate(pairs):
        whole.add(*key, *preds[key])
        shards[index % 2].add(*key, *preds[key])
    shards[1].add(*pairs[0], *preds[pairs[0]])
    alone = shards[0].compute()
    for target in shards:
        for shard in shards:
            target.merge(shard.export())
    expected = whole.compute()
    assert alone != expected
    for merged in shards:
        assert merged.compute() == pytest.approx(expected, abs=1e-12)
        assert len(merged.pairs) == len(pairs)
