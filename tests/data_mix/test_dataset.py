from pathlib import Path

import albumentations as A
import numpy as np
import torch
from PIL import Image

from sam3_adapt.data_mix import (
    ConceptDataset,
    ConceptSample,
    Instance,
    Query,
    eval_transform,
    read_coco,
    train_transform,
)


def _mask_box(mask):
    ys, xs = torch.nonzero(mask, as_tuple=True)
    return torch.tensor([xs.min(), ys.min(), xs.max() + 1, ys.max() + 1], dtype=torch.float32)


def test_item_keys_and_targets(shapes_set):
    samples = read_coco(*shapes_set)
    dataset = ConceptDataset(samples, train_transform(96, max_size=80, step=16), seed=0)
    for index in range(len(dataset)):
        item = dataset[index]
        sample = samples[index]
        assert item["pixel_values"].shape == (3, 96, 96) and item["pixel_values"].dtype == torch.float32
        assert -1.0 <= item["pixel_values"].min() and item["pixel_values"].max() <= 1.0
        assert item["pixel_values"].min() == -1.0  # the zero padding, normalised
        assert (item["image_id"], item["orig_size"], item["source"]) == (
            sample.image_id,
            (64, 64),
            "annotations.json",
        )
        assert item["phrases"] == [q.phrase for q in sample.queries]
        for query, boxes, masks, has_mask in zip(
            sample.queries, item["boxes"], item["masks"], item["has_mask"], strict=True
        ):
            n = len(query.instances)
            assert boxes.shape == (n, 4) and masks.shape == (n, 96, 96) and masks.dtype == torch.bool
            assert has_mask.tolist() == [True] * n
            assert ((boxes >= 0) & (boxes <= 1)).all()
            for box, mask in zip(boxes, masks, strict=True):
                assert (box * 96 - _mask_box(mask)).abs().max() <= 1.5


def test_box_only_instances_have_empty_masks(tmp_path):
    Image.fromarray(np.zeros((20, 30, 3), np.uint8)).save(tmp_path / "x.png")
    boxed = Instance((3.0, 2.0, 12.0, 10.0), None, 72.0, 1)
    masked_array = np.zeros((20, 30), bool)
    masked_array[5:15, 15:27] = True
    masked = Instance((15.0, 5.0, 27.0, 15.0), masked_array, 120.0, 2)
    sample = ConceptSample(
        7, tmp_path / "x.png", 20, 30, [Query("thing", 1, [boxed, masked], origin="test")], "t"
    )
    item = ConceptDataset([sample], eval_transform(60))[0]
    assert item["has_mask"][0].tolist() == [False, True]
    assert not item["masks"][0][0].any()
    # Letterboxed: both axes normalised by the longer side (30 px).
    torch.testing.assert_close(item["boxes"][0][0], torch.tensor([3 / 30, 2 / 30, 12 / 30, 10 / 30]))
    torch.testing.assert_close(_mask_box(item["masks"][0][1]), torch.tensor([30.0, 10.0, 54.0, 30.0]))


def test_vanished_instances_drop_with_their_masks(tmp_path):
    Image.fromarray(np.zeros((40, 40, 3), np.uint8)).save(tmp_path / "x.png")

    def inst(x0, y0, x1, y1, ann_id):
        mask = np.zeros((40, 40), bool)
        mask[y0:y1, x0:x1] = True
        return Instance(
            (float(x0), float(y0), float(x1), float(y1)), mask, float((x1 - x0) * (y1 - y0)), ann_id
        )

    queries = [
        Query("a", 1, [inst(2, 2, 8, 8, 1), inst(25, 25, 35, 35, 2)], origin="t"),  # first leaves the crop
        Query("b", 2, [inst(0, 0, 6, 6, 3)], origin="t"),  # leaves the crop entirely: query dropped
        Query("c", 3, [], origin="t"),  # negative: kept
        Query("d", 4, [inst(22, 30, 28, 38, 4)], origin="t"),
    ]
    crop = A.Compose(
        [A.Crop(20, 20, 40, 40)],
        bbox_params=A.BboxParams(format="pascal_voc", label_fields=["instance_index"]),
    )
    item = ConceptDataset([ConceptSample(1, tmp_path / "x.png", 40, 40, queries, "t")], crop)[0]
    assert item["phrases"] == ["a", "c", "d"]
    assert [len(b) for b in item["boxes"]] == [1, 0, 1]
    for boxes, masks in zip(item["boxes"], item["masks"], strict=True):
        for box, mask in zip(boxes, masks, strict=True):
            torch.testing.assert_close(box * 20, _mask_box(mask))


def test_query_cap_keeps_positives_first(shapes_set):
    samples = read_coco(*shapes_set)
    dataset = ConceptDataset(samples, eval_transform(32), max_queries_per_image=4, seed=1)
    for sample, item in zip(samples, (dataset[i] for i in range(len(samples))), strict=True):
        n_pos = len(sample.positives)
        assert len(item["phrases"]) == 4
        assert sum(len(b) > 0 for b in item["boxes"]) == min(n_pos, 4)
        order = [q.phrase for q in sample.queries]
        assert [order.index(p) for p in item["phrases"]] == sorted(order.index(p) for p in item["phrases"])


def test_same_seed_same_items(shapes_set):
    samples = read_coco(*shapes_set)

    def items(seed):
        ds = ConceptDataset(samples, train_transform(64, step=8), max_queries_per_image=3, seed=seed)
        return [ds[i] for i in range(len(ds))]

    a, b, c = items(0), items(0), items(1)
    for x, y in zip(a, b, strict=True):
        torch.testing.assert_close(x["pixel_values"], y["pixel_values"])
        assert x["phrases"] == y["phrases"]
    assert any(not torch.equal(x["pixel_values"], z["pixel_values"]) for x, z in zip(a, c, strict=True))
    assert Path(samples[0].image_path).is_file()
