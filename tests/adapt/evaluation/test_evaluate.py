"""End to end: ``evaluate`` on a tiny concept-world set writes metrics, COCO results and a report."""

import base64
import contextlib
import io
import json
from html.parser import HTMLParser

import pytest
import torch
from PIL import Image
from pycocotools.coco import COCO
from transformers import Sam3Model

from sam3_adapt.data_mix.synthetic.concept_world import write_world
from sam3_adapt.evaluation import evaluate
from sam3_adapt.evaluation.calibration import THRESHOLDS
from sam3_adapt.model.adaptation import LoraSettings, apply_lora
from sam3_adapt.model.loading import load_sam3
from sam3_adapt.model.persistence import save_adapter, save_merged
from sam3_adapt.model.tiny import write_tiny_random_sam3

THRESHOLD = 0.25  # the random tiny model scores about 0.25, so this threshold splits its detections


def make_adapter(base_dir, folder, base_name):
    """A LoRA adapter with random weights (LoRA B starts at zero), so it changes the predictions."""
    peft_model = apply_lora(Sam3Model.from_pretrained(base_dir), LoraSettings(rank=4, dropout=0.0))
    generator = torch.Generator().manual_seed(1)
    with torch.no_grad():
        for name, parameter in peft_model.named_parameters():
            if "lora_B" in name:
                parameter.normal_(0.0, 0.3, generator=generator)
    return save_adapter(peft_model, folder, base_model_name=base_name)


@pytest.fixture(scope="module")
def setup(tmp_path_factory):
    root = tmp_path_factory.mktemp("evaluate")
    json_path, image_dir = write_world(root / "world", "microscopy", 2, image_size=112)
    base = write_tiny_random_sam3(root / "tiny", image_size=112)
    adapter = make_adapter(base, root / "adapter", str(base))
    return {"root": root, "json": json_path, "images": image_dir, "base": base, "adapter": adapter}


@pytest.fixture(scope="module")
def compared(setup):
    """The adapted model and its base evaluated side by side."""
    out = setup["root"] / "out"
    summary = evaluate(
        str(setup["json"]),
        str(setup["images"]),
        model=str(setup["base"]),
        adapter=str(setup["adapter"]),
        baseline=True,
        out=str(out),
        score_threshold=THRESHOLD,
        pictures=1,
        progress=False,
    )
    return summary, out


class ReportParser(HTMLParser):
    """Collects image sources and the cells of the table with id ``headline``."""

    def __init__(self):
        super().__init__()
        self.images, self.headline, self._table, self._cell = [], [], None, None

    def handle_starttag(self, tag, attrs):
        attrs = dict(attrs)
        if tag == "img":
            self.images.append(attrs["src"])
        elif tag == "table":
            self._table = attrs.get("id")
        elif tag == "tr" and self._table == "headline":
            self.headline.append([])
        elif tag in ("td", "th") and self._table == "headline":
            self._cell = ""

    def handle_endtag(self, tag):
        if tag == "table":
            self._table = None
        elif tag in ("td", "th") and self._cell is not None:
            self.headline[-1].append(self._cell.strip())
            self._cell = None

    def handle_data(self, data):
        if self._cell is not None:
            self._cell += data


def parse_report(path):
    parser = ReportParser()
    parser.feed(path.read_text(encoding="utf-8"))
    return parser


@pytest.mark.slow
def test_writes_metrics_results_and_report(compared, setup):
    summary, out = compared
    assert json.loads((out / "metrics.json").read_text()) == json.loads(json.dumps(summary))
    assert summary["data"]["images"] == 2 and summary["data"]["positive_pairs"] > 0
    assert summary["data"]["negative_pairs"] > 0
    expected = {"segm/AP", "segm/AP50", "segm/AP75", "segm/AR100", "bbox/AP", "cgF1", "cgF1@50", "cgF1@75"}
    expected |= {"pmF1", "pmF1@50", "pmF1@75", "IL_MCC", "count_MAE"}
    for run in ("model", "baseline"):
        assert set(summary[run]["metrics"]) >= expected
        assert set(summary[run]["breakdowns"]) == {
            "phrase",
            "source",
            "pair kind",
            "crowdedness",
            "instance size",
        }
        assert len(summary[run]["calibration"]["sweep"]) == len(THRESHOLDS)
    assert summary["model"]["adapter"] == str(setup["adapter"]) and summary["baseline"]["adapter"] is None
    # COCO results with RLE masks that pycocotools loads against the set's ground truth.
    with contextlib.redirect_stdout(io.StringIO()):
        gt = COCO(str(setup["json"]))
        for name in ("results.json", "baseline_results.json"):
            records = json.loads((out / name).read_text())
            assert records and all(isinstance(r["segmentation"]["counts"], str) for r in records)
            gt.loadRes(str(out / name))
    # The adapter changed the predictions, so the baseline really ran without it.
    assert (out / "results.json").read_text() != (out / "baseline_results.json").read_text()


@pytest.mark.slow
def test_report_images_are_valid_pngs(compared):
    _, out = compared
    images = parse_report(out / "report.html").images
    # calibration, PR curves and at least one picture, for each of the two models
    assert len(images) >= 6
    for source in images:
        assert source.startswith("data:image/png;base64,"), source[:40]
        with Image.open(io.BytesIO(base64.b64decode(source.split(",", 1)[1]))) as image:
            assert image.format == "PNG"
            image.verify()
    files = sorted((out / "figures").glob("*.png"))
    assert len(files) == len(images)
    for path in files:
        with Image.open(path) as image:
            assert image.format == "PNG"


@pytest.mark.slow
def test_side_by_side_table_matches_metrics_json(compared):
    summary, out = compared
    header, *rows = parse_report(out / "report.html").headline
    assert header == ["metric", summary["model"]["label"], summary["baseline"]["label"], "Δ"]
    table = {row[0]: row[1:] for row in rows}
    assert list(table) == list(summary["model"]["metrics"])
    for key, (model, base, delta) in table.items():
        assert model == f"{summary['model']['metrics'][key]:.4f}", key
        assert base == f"{summary['baseline']['metrics'][key]:.4f}", key
        assert delta == f"{summary['delta'][key]:+.4f}", key
        assert summary["delta"][key] == pytest.approx(
            summary["model"]["metrics"][key] - summary["baseline"]["metrics"][key]
        )


@pytest.mark.slow
def test_sweep_at_the_threshold_reproduces_the_headline(compared):
    summary, _ = compared
    for run in ("model", "baseline"):
        row = next(r for r in summary[run]["calibration"]["sweep"] if r["threshold"] == THRESHOLD)
        for key in ("pmF1", "IL_MCC", "cgF1", "cgF1@50"):
            assert row[key] == pytest.approx(summary[run]["metrics"][key]), (run, key)


@pytest.mark.slow
def test_baseline_is_the_base_model_alone(compared, setup, tmp_path):
    summary, out = compared
    alone = evaluate(
        str(setup["json"]),
        str(setup["images"]),
        model=str(setup["base"]),
        out=str(tmp_path / "alone"),
        score_threshold=THRESHOLD,
        pictures=0,
        progress=False,
    )
    assert "baseline" not in alone and "delta" not in alone
    assert alone["model"]["metrics"] == pytest.approx(summary["baseline"]["metrics"])
    alone_records = json.loads((tmp_path / "alone" / "results.json").read_text())
    base_records = json.loads((out / "baseline_results.json").read_text())
    assert len(alone_records) == len(base_records)
    for mine, theirs in zip(alone_records, base_records):
        assert (mine["image_id"], mine["category_id"]) == (theirs["image_id"], theirs["category_id"])
        assert mine["score"] == pytest.approx(theirs["score"], abs=1e-5)
        assert mine["bbox"] == pytest.approx(theirs["bbox"], abs=1e-3)
    header = parse_report(tmp_path / "alone" / "report.html").headline[0]
    assert header == ["metric", setup["base"].name]


def test_adapter_for_another_base_is_refused(setup, tmp_path):
    other = make_adapter(setup["base"], tmp_path / "other", "facebook/sam3")
    with pytest.raises(ValueError, match="was trained on base model 'facebook/sam3'"):
        evaluate(
            str(setup["json"]),
            str(setup["images"]),
            model=str(setup["base"]),
            adapter=str(other),
            out=str(tmp_path / "out"),
            progress=False,
        )


def test_set_without_positive_pairs_is_refused(setup, tmp_path):
    coco = json.loads(setup["json"].read_text())
    coco["annotations"] = []
    empty = tmp_path / "empty.json"
    empty.write_text(json.dumps(coco))
    with pytest.raises(ValueError, match="empty.json: no image has an instance of any phrase"):
        evaluate(str(empty), str(setup["images"]), model=str(setup["base"]), out=str(tmp_path / "out"))


def test_baseline_needs_an_adapter(setup, tmp_path):
    with pytest.raises(ValueError, match="also pass adapter"):
        evaluate(str(setup["json"]), str(setup["images"]), model=str(setup["base"]), baseline=True)


def test_sibling_negatives_are_reported_as_hard_negatives(setup, tmp_path):
    summary = evaluate(
        str(setup["json"]),
        str(setup["images"]),
        model=str(setup["base"]),
        sibling_negatives=True,
        out=str(tmp_path / "out"),
        score_threshold=THRESHOLD,
        pictures=0,
        progress=False,
    )
    kinds = summary["model"]["breakdowns"]["pair kind"]
    coco = json.loads(setup["json"].read_text())
    present = {(a["image_id"], a["category_id"]) for a in coco["annotations"]}
    # Every microscopy phrase but "stained nucleus" ends in "cell": an absent "... cell" is a sibling
    # of a present one, so it is a hard negative.
    cells = {c["id"] for c in coco["categories"] if c["name"].endswith(" cell")}
    hard = {
        (image["id"], c)
        for image in coco["images"]
        for c in cells
        if (image["id"], c) not in present and any((image["id"], o) in present for o in cells)
    }
    assert kinds["hard negative"]["pairs"] == len(hard) > 0
    total_negatives = len(coco["images"]) * len(coco["categories"]) - len(present)
    assert kinds["hard negative"]["pairs"] + kinds.get("negative", {"pairs": 0})["pairs"] == total_negatives


def test_merged_weights_get_a_side_by_side_report_against_any_baseline(compared, setup, tmp_path):
    # Full fine-tuning exports merged weights: the adapter merged into the base stands in for them.
    network, processor = load_sam3(str(setup["base"]), adapter=str(setup["adapter"]))
    merged = save_merged(network, tmp_path / "merged", processor)
    out = tmp_path / "out"
    summary = evaluate(
        str(setup["json"]),
        str(setup["images"]),
        model=str(merged),
        baseline=str(setup["base"]),
        out=str(out),
        score_threshold=THRESHOLD,
        pictures=0,
        progress=False,
    )
    adapted, base = compared[0]["model"]["metrics"], compared[0]["baseline"]["metrics"]
    assert summary["model"]["metrics"] == pytest.approx(adapted, abs=1e-6)
    assert summary["baseline"]["metrics"] == pytest.approx(base, abs=1e-6)
    assert summary["delta"] == pytest.approx({k: adapted[k] - base[k] for k in adapted}, abs=1e-6)
    assert summary["baseline"]["model"] == str(setup["base"]) and summary["baseline"]["adapter"] is None
    header = parse_report(out / "report.html").headline[0]
    assert header[:3] == ["metric", "merged", f"{setup['base'].name} (baseline)"]


def test_an_adapter_folder_as_baseline_goes_on_the_model(compared, setup, tmp_path):
    summary = evaluate(
        str(setup["json"]),
        str(setup["images"]),
        model=str(setup["base"]),
        baseline=str(setup["adapter"]),
        out=str(tmp_path / "out"),
        score_threshold=THRESHOLD,
        pictures=0,
        progress=False,
    )
    assert summary["baseline"]["adapter"] == str(setup["adapter"])
    assert summary["baseline"]["metrics"] == pytest.approx(compared[0]["model"]["metrics"], abs=1e-6)
