"""Results of several sets carry the user's own ids and file names, and score with pycocotools as they are."""

import contextlib
import io
import json

import pytest
from pycocotools.coco import COCO
from pycocotools.cocoeval import COCOeval

from sam3_adapt.data_mix.synthetic.concept_world import write_world
from sam3_adapt.evaluation import evaluate
from sam3_adapt.evaluation.data import image_names, read_eval_set
from sam3_adapt.evaluation.pictures import pairs_figure
from sam3_adapt.evaluation.run import predict_set
from sam3_adapt.model.loading import load_segmenter

THRESHOLD = 0.5


def renumbered(json_path, offset):
    """The file with its image and category ids moved by ``offset`` (so they are not 1..N)."""
    coco = json.loads(json_path.read_text())
    for image in coco["images"]:
        image["id"] += offset
    for category in coco["categories"]:
        category["id"] += offset
    for ann in coco["annotations"]:
        ann["image_id"] += offset
        ann["category_id"] += offset
    out = json_path.with_name("renumbered.json")
    out.write_text(json.dumps(coco))
    return out


@pytest.fixture(scope="module")
def two_sets(tmp_path_factory):
    root = tmp_path_factory.mktemp("ids")
    sets = []
    # Two files of the anchor world, which the pretrained tiny base knows (AP well above 0), with the
    # same phrases under other ids: the merge joins them, the results must split them again.
    for k in range(2):
        json_path, image_dir = write_world(root / f"set{k}", "anchor", 3, seed=k)
        sets.append((renumbered(json_path, 100 * (k + 1)), image_dir))
    out = root / "out"
    summary = evaluate(
        [str(j) for j, _ in sets],
        [str(d) for _, d in sets],
        model="tiny",
        out=str(out),
        score_threshold=THRESHOLD,
        pictures=1,
        progress=False,
    )
    return sets, summary, out


def test_results_carry_original_ids_and_file_names(two_sets):
    sets, summary, out = two_sets
    records = json.loads((out / "results.json").read_text())
    originals = set()
    for json_path, _ in sets:
        coco = json.loads(json_path.read_text())
        originals |= {(image["id"], image["file_name"]) for image in coco["images"]}
    assert records
    assert {(r["image_id"], r["file_name"]) for r in records} <= set(originals)
    assert {r["image_id"] // 100 for r in records} == {1, 2}  # both files, their own ids
    assert len(summary["model"]["results_by_source"]) == 2


def test_each_source_scores_against_its_own_file_as_the_kit_does(two_sets):
    sets, summary, out = two_sets
    per_source = summary["model"]["breakdowns"]["source"]
    files = summary["model"]["results_by_source"]
    for (json_path, _), (source, results_file) in zip(sets, files.items(), strict=True):
        with contextlib.redirect_stdout(io.StringIO()):
            gt = COCO(str(json_path))
            cocoeval = COCOeval(gt, gt.loadRes(results_file), "segm")
            cocoeval.evaluate()
            cocoeval.accumulate()
            cocoeval.summarize()
        assert source.endswith(json_path.parent.name + "/renumbered.json")
        assert cocoeval.stats[0] > 0.1
        assert cocoeval.stats[0] == pytest.approx(per_source[source]["AP"], abs=1e-9)


def test_pictures_name_the_file_and_its_own_id(two_sets):
    sets, _, _ = two_sets
    merged = read_eval_set([str(j) for j, _ in sets], [str(d) for _, d in sets])
    names = set(image_names(merged).values())
    coco = json.loads(sets[1][0].read_text())
    image = coco["images"][0]
    assert f"{image['file_name']} (id {image['id']})" in names


def test_report_pictures_title_images_by_file_and_own_id(two_sets):
    sets, _, _ = two_sets
    merged = read_eval_set([str(j) for j, _ in sets], [str(d) for _, d in sets])
    settings = {"image_size": 168, "batch_size": 4, "score_threshold": 0.5, "max_detections": 100}
    run = predict_set(merged, load_segmenter("tiny"), "tiny", **settings, num_workers=0, progress=False)
    pairs = [p for p in run.table.pairs if p.is_positive][-2:]  # from the second file, ids 201, ...
    paths = {s.image_id: s.image_path for s in merged.samples}
    figure = pairs_figure(pairs, run.table, paths, 0.5, names=image_names(merged))
    titles = [ax.get_title() for ax in figure.axes if ax.get_title()]
    originals = {i["id"]: i["file_name"] for i in json.loads(sets[1][0].read_text())["images"]}
    assert len(titles) == 2 and all(" (id 20" in t for t in titles)
    assert all(any(f"{name} (id {i})" in t for i, name in originals.items()) for t in titles)
