import json

import lightning as L
import pytest
import torch

from sam3_adapt.data_mix import ConceptDataModule
from sam3_adapt.data_mix.mixing import WeightedMixSampler
from sam3_adapt.data_mix.readers.sources import MixSource, Source
from sam3_adapt.data_mix.synthetic.shapes import write_shapes_coco
from tests.data_mix.twins import coco_to_hf, coco_to_saco


def make_dm(shapes_set, **kwargs):
    json_path, image_dir = shapes_set
    args = {"image_size": 32, "batch_size": 2, **kwargs}
    return ConceptDataModule(str(json_path), str(image_dir), **args)


def test_train_batches(shapes_set):
    dm = make_dm(shapes_set, max_queries_per_image=3)
    dm.setup("fit")
    batches = list(dm.train_dataloader())
    assert len(batches) == 3  # 6 images, 2 per batch
    assert sorted(i for b in batches for i in b["image_ids"].tolist()) == list(range(1, 7))
    for batch in batches:
        assert batch["pixel_values"].shape == (2, 3, 32, 32)
        assert len(batch["phrases"]) == 6 and batch["query_image_index"].tolist() == [0, 0, 0, 1, 1, 1]
    assert dm.val_dataloader() == [] and dm.val_gt_coco() is None


def test_loaders_deterministic_given_seed(shapes_set):
    def run(seed):
        loader = make_dm(shapes_set, seed=seed, exemplar_prob=0.5).train_dataloader()
        return [b for _epoch in range(2) for b in loader]

    a, b, c = run(0), run(0), run(1)
    for x, y in zip(a, b, strict=True):
        assert torch.equal(x["image_ids"], y["image_ids"]) and torch.equal(
            x["pixel_values"], y["pixel_values"]
        )
        assert [len(e) for e in x["exemplar_boxes"]] == [len(e) for e in y["exemplar_boxes"]]
    assert any(not torch.equal(x["pixel_values"], z["pixel_values"]) for x, z in zip(a, c, strict=True))
    # worker processes draw the same streams as the main process
    loader = make_dm(shapes_set, seed=0, exemplar_prob=0.5, num_workers=2).train_dataloader()
    for x, y in zip(a, [b for _epoch in range(2) for b in loader], strict=True):
        assert torch.equal(x["image_ids"], y["image_ids"])
    # epochs differ from one another
    assert not all(
        torch.equal(x["pixel_values"], y["pixel_values"]) for x, y in zip(a[:3], a[3:], strict=True)
    )


def test_val_predict_ground_truth_and_phrases(shapes_set, tmp_path):
    json_path, image_dir = shapes_set
    other_json, other_dir = write_shapes_coco(tmp_path, num_images=2, image_size=48, seed=9, masks=False)
    dm = make_dm(
        shapes_set,
        val_json=str(json_path),
        predict_json=str(other_json),
        predict_image_dir=str(other_dir),
        prompt_map={"red circle": "scarlet disc"},
        exemplar_prob=1.0,
        visual_only_prob=0.5,
    )
    dm.setup("fit")
    val = list(dm.val_dataloader())
    assert [b["image_ids"].tolist() for b in val] == [[1, 2], [3, 4], [5, 6]]  # file order, not shuffled
    assert all(len(e) == 0 for b in val for e in b["exemplar_boxes"])  # exemplars are a training device
    assert dm.val_gt_coco()["annotations"] == json.loads(json_path.read_text())["annotations"]
    dm.setup("predict")
    predict = list(dm.predict_dataloader())
    assert predict[0]["orig_sizes"].tolist() == [[48, 48], [48, 48]]
    assert not any(t["has_mask"].any() for t in predict[0]["targets"])  # box-only set
    assert [i["id"] for i in dm.predict_gt_coco()["images"]] == [1, 2]
    origins = dict(dm.phrase_origins())
    assert origins["scarlet disc"] == "annotations.json: category 1 ('red circle') via prompt_map"
    assert "red circle" not in origins and "visual" in origins and len(origins) == 10


class _MeanModule(L.LightningModule):
    """The smallest module that consumes the batch contract."""

    def __init__(self):
        super().__init__()
        self.scale = torch.nn.Parameter(torch.ones(()))
        self.val_batches = 0

    def training_step(self, batch, batch_idx):
        per_query = batch["pixel_values"].mean(dim=(1, 2, 3))[batch["query_image_index"]]
        return (self.scale * per_query).pow(2).mean()

    def validation_step(self, batch, batch_idx):
        self.val_batches += 1

    def configure_optimizers(self):
        return torch.optim.SGD(self.parameters(), lr=0.1)


def test_trainer_fit_with_and_without_validation(shapes_set):
    json_path, _ = shapes_set
    flags = {"max_epochs": 1, "logger": False, "enable_checkpointing": False, "enable_progress_bar": False}
    flags |= {"enable_model_summary": False, "num_sanity_val_steps": 0}
    for val_json, expected in ((None, 0), (str(json_path), 3)):
        module = _MeanModule()
        L.Trainer(**flags).fit(module, datamodule=make_dm(shapes_set, val_json=val_json))
        assert module.val_batches == expected
        assert module.scale.item() != 1.0


def test_named_sources_of_any_format_mix_box_only_and_masked_images_in_one_batch(shapes_set, tmp_path):
    json_path, image_dir = shapes_set  # 6 images with masks
    box_json, box_dir = write_shapes_coco(tmp_path, num_images=4, image_size=48, seed=5, masks=False)
    saco_path = tmp_path / "boxes_saco.json"
    saco_path.write_text(json.dumps(coco_to_saco(json.loads(box_json.read_text()))))
    dm = ConceptDataModule(
        train_sources={
            "domain": MixSource(str(json_path), str(image_dir), weight=1.0),
            "anchor": MixSource(str(saco_path), format="saco", weight=0.5),
        },
        image_dir=str(box_dir),  # the image folder of sources that name none
        val_json=Source(str(saco_path)),
        image_size=32,
        batch_size=9,
    )
    dm.setup("fit")
    loader = dm.train_dataloader()
    assert isinstance(loader.sampler, WeightedMixSampler) and loader.sampler.quotas == [6, 3]
    (batch,) = list(loader)
    assert sorted(batch["sources"]) == ["annotations.json"] * 6 + ["boxes_saco.json"] * 3
    has_mask = torch.cat([t["has_mask"] for t in batch["targets"]])
    assert has_mask.any() and not has_mask.all()
    assert [i["file_name"] for i in dm.val_gt_coco()["images"]] == [
        i["file_name"] for i in json.loads(box_json.read_text())["images"]
    ]
    origins = dict(dm.phrase_origins())
    assert origins["red circle"] == "boxes_saco.json: image record id 100 (text_input 'red circle')"
    with pytest.raises(ValueError, match="give train_sources, or train_json"):
        ConceptDataModule(str(json_path), str(image_dir), train_sources={"a": MixSource(str(json_path))})


def test_hugging_face_split_is_decoded_once_in_prepare_data(shapes_set, tmp_path, monkeypatch):
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    json_path, image_dir = shapes_set
    coco_to_hf(json.loads(json_path.read_text()), image_dir).save_to_disk(tmp_path / "hf")
    dm = make_dm(
        shapes_set, val_json=Source(str(tmp_path / "hf"), format="hf"), cache_dir=str(tmp_path / "cache")
    )
    dm.prepare_data()
    assert any((tmp_path / "cache").rglob("*.arrow")) and not dm.sets  # cached, nothing held yet
    dm.setup("validate")
    assert [b["image_ids"].tolist() for b in dm.val_dataloader()] == [[1, 2], [3, 4], [5, 6]]
    assert dm.val_gt_coco()["categories"][0] == {"id": 0, "name": "red circle"}  # ClassLabel ids


def test_hard_negatives_and_caps_reach_training_and_validation_but_not_anchor(tmp_path):
    from sam3_adapt.data_mix.synthetic.concept_world import write_world

    train_json, train_dir = write_world(tmp_path / "train", "anchor", 4, seed=0, image_size=64)
    anchor_json, anchor_dir = write_world(tmp_path / "anchor", "anchor", 4, seed=1, image_size=64)
    confusions = tmp_path / "confusions.yaml"
    confusions.write_text("dataset: [purple hexagon]\n")
    data = ConceptDataModule(
        train_json=str(train_json),
        image_dir=str(train_dir),
        val_json=str(train_json),
        anchor_json=str(anchor_json),
        anchor_image_dir=str(anchor_dir),
        image_size=56,
        batch_size=4,
        augment=False,
        hard_negatives=str(confusions),
        max_negatives_per_image=2,
    )
    data.setup("fit")
    train_phrases = [q.phrase for s in data.sets["train"].samples for q in s.queries]
    assert train_phrases.count("purple hexagon") == 4
    assert "purple hexagon" in [q.phrase for s in data.sets["val"].samples for q in s.queries]
    assert "purple hexagon" not in [q.phrase for s in data.sets["anchor"].samples for q in s.queries]
    for batch in data.train_dataloader():
        for image in range(len(batch["image_ids"])):
            rows = (batch["query_image_index"] == image).nonzero().flatten().tolist()
            negatives = [r for r in rows if len(batch["targets"][r]["boxes"]) == 0]
            assert len(negatives) <= 2


def test_a_source_without_negatives_mixes_with_one_that_keeps_them(tmp_path):
    from sam3_adapt.data_mix.synthetic.concept_world import write_world

    train_json, train_dir = write_world(tmp_path / "train", "microscopy", 3, seed=0, image_size=64)
    anchor_json, anchor_dir = write_world(tmp_path / "anchor", "anchor", 3, seed=1, image_size=64)
    data = ConceptDataModule(
        train_json=Source(str(train_json), str(train_dir), negatives=False),
        anchor_json=str(anchor_json),
        anchor_image_dir=str(anchor_dir),
        image_size=56,
        augment=False,
    )
    data.setup("fit")
    assert data.sets["train"].samples and all(not s.negatives for s in data.sets["train"].samples)
    assert any(s.negatives for s in data.sets["anchor"].samples)
    assert all(s.positives for s in data.sets["train"].samples)
