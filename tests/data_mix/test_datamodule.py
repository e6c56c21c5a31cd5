import json

import lightning as L
import torch

from data_mix import ConceptDataModule
from data_mix.shapes import write_shapes_coco


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
