import json

import datasets
import pytest

from sam3_adapt.data_mix.readers.coco_checks import CocoFormatError
from sam3_adapt.data_mix.readers.sources import MixSource, Source, detect_format, read_source
from tests.data_mix.conftest import write_coco
from tests.data_mix.twins import coco_to_hf, coco_to_saco, view


@pytest.fixture(autouse=True)
def offline(monkeypatch, tmp_path):
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.setattr(datasets.config, "HF_HUB_OFFLINE", True)
    monkeypatch.setattr(datasets.config, "HF_DATASETS_CACHE", tmp_path / "hf_cache")


def test_every_format_reads_through_one_entry_point(tmp_path, basic_coco):
    json_path, image_dir = write_coco(tmp_path, basic_coco)
    (tmp_path / "saco.json").write_text(json.dumps(coco_to_saco(basic_coco)))
    coco_to_hf(basic_coco, image_dir).save_to_disk(tmp_path / "hf")
    assert [detect_format(p) for p in (json_path, tmp_path / "saco.json", tmp_path / "hf", "org/name")] == [
        "coco",
        "saco",
        "hf",
        "hf",
    ]
    expected = view(read_source(json_path, image_dir).samples, paths=False)
    saco = read_source(tmp_path / "saco.json", image_dir)
    hf = Source(str(tmp_path / "hf"), format="hf").read(cache_dir=tmp_path / "cache")
    assert view(saco.samples, paths=False) == expected
    # the Hub layout keeps masks as RLE: polygons and uncompressed RLE decode to the same pixels
    assert view(hf.samples, paths=False) == expected
    assert (
        view(read_source(json_path, image_dir, format="coco", include_negatives=False).samples)[1][-1] == []
    )


def test_clear_errors(tmp_path, basic_coco):
    json_path, image_dir = write_coco(tmp_path, basic_coco)
    with pytest.raises(CocoFormatError, match=r"train\.json: a coco file needs image_dir"):
        read_source(json_path)
    with pytest.raises(CocoFormatError, match=r"missing\.json: cannot tell its format.*does not exist"):
        read_source(tmp_path / "missing.json", image_dir)
    with pytest.raises(CocoFormatError, match=r"train\.json: COCO boxes are in pixels"):
        read_source(json_path, image_dir, normalized_boxes=True)
    with pytest.raises(ValueError, match="weight must be >= 0"):
        MixSource("x.json", weight=-1)
