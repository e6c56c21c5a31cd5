import numpy as np
import pytest
import torch
from PIL import Image
from torchvision.ops import box_convert

from sam3_adapt.data_mix import (
    ConceptCollator,
    ConceptDataset,
    ConceptSample,
    Instance,
    Query,
    collate_concepts,
    eval_transform,
    read_coco,
)


@pytest.fixture(scope="module")
def items(shapes_set):
    samples = read_coco(*shapes_set)
    dataset = ConceptDataset(samples[:3], eval_transform(32))
    return [dataset[i] for i in range(3)]


def test_batch_contract(items):
    batch = collate_concepts(items)
    n_queries = [len(item["phrases"]) for item in items]
    q = sum(n_queries)
    assert batch["pixel_values"].shape == (3, 3, 32, 32) and batch["pixel_values"].dtype == torch.float32
    assert batch["image_ids"].dtype == torch.long and batch["image_ids"].tolist() == [
        i["image_id"] for i in items
    ]
    assert batch["orig_sizes"].dtype == torch.long and batch["orig_sizes"].tolist() == [[64, 64]] * 3
    assert batch["sources"] == ["annotations.json"] * 3
    assert len(batch["phrases"]) == q == 27  # 9 categories per image
    assert batch["query_image_index"].dtype == torch.long
    assert batch["query_image_index"].tolist() == [b for b, n in enumerate(n_queries) for _ in range(n)]
    assert batch["query_category_ids"].dtype == torch.long
    assert batch["query_category_ids"].tolist() == [c for item in items for c in item["category_ids"]]
    assert len(batch["exemplar_boxes"]) == len(batch["exemplar_labels"]) == len(batch["targets"]) == q
    assert all(e.shape == (0, 4) and e.dtype == torch.float32 for e in batch["exemplar_boxes"])
    assert all(lab.shape == (0,) and lab.dtype == torch.long for lab in batch["exemplar_labels"])
    for target in batch["targets"]:
        assert set(target) == {"boxes", "masks", "has_mask", "exhaustive"}
        n = len(target["boxes"])
        assert target["boxes"].shape == (n, 4) and target["boxes"].dtype == torch.float32
        assert target["masks"].shape == (n, 32, 32) and target["masks"].dtype == torch.bool
        assert target["has_mask"].shape == (n,) and target["has_mask"].dtype == torch.bool
    # targets follow their phrase: image 0's first query is category 1 of image 0
    assert batch["targets"][0]["boxes"] is items[0]["boxes"][0]


def test_exemplar_sampling_with_probability_one(items):
    batch = ConceptCollator(exemplar_prob=1.0, seed=3)(items)
    for phrase, ex, lab, target in zip(
        batch["phrases"], batch["exemplar_boxes"], batch["exemplar_labels"], batch["targets"], strict=True
    ):
        assert phrase != "visual"
        if len(target["boxes"]) == 0:
            assert ex.shape == (0, 4) and lab.shape == (0,)
            continue
        assert ex.shape == (1, 4) and lab.tolist() == [1]
        as_xyxy = box_convert(ex, "cxcywh", "xyxy")
        assert any(torch.allclose(as_xyxy[0], box, atol=1e-6) for box in target["boxes"])


def test_visual_only_replaces_phrase_of_exemplar_queries(items):
    plain = collate_concepts(items)
    batch = ConceptCollator(exemplar_prob=1.0, visual_only_prob=1.0)(items)
    for phrase, original, ex in zip(batch["phrases"], plain["phrases"], batch["exemplar_boxes"], strict=True):
        assert phrase == ("visual" if len(ex) else original)
    assert batch["query_category_ids"].tolist() == plain["query_category_ids"].tolist()


def test_exemplar_sampling_is_seeded_and_partial(items):
    def picks(seed):
        batch = ConceptCollator(exemplar_prob=0.5, seed=seed)(items * 4)
        return [
            len(e) for e, t in zip(batch["exemplar_boxes"], batch["targets"], strict=True) if len(t["boxes"])
        ]

    first = picks(0)
    assert first == picks(0)
    assert 0 < sum(first) < len(first)
    with pytest.raises(ValueError, match="exemplar_prob"):
        ConceptCollator(exemplar_prob=1.5)


def test_exemplar_box_is_drawn_among_the_instances(tmp_path):
    Image.fromarray(np.zeros((30, 30, 3), np.uint8)).save(tmp_path / "x.png")
    instances = [Instance((x, 5.0, x + 4.0, 9.0), None, 16.0, k) for k, x in enumerate((2.0, 10.0, 20.0))]
    sample = ConceptSample(1, tmp_path / "x.png", 30, 30, [Query("dot", 1, instances, origin="t")], "t")
    item = ConceptDataset([sample], eval_transform(30))[0]
    batch = ConceptCollator(exemplar_prob=1.0, seed=0)([item] * 12)
    centres = {round(float(ex[0, 0]) * 30) for ex in batch["exemplar_boxes"]}
    assert centres == {4, 12, 22}
