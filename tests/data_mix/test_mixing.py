from collections import Counter

import numpy as np
import pytest
from torch.utils.data import DistributedSampler

from sam3_adapt.data_mix.mixing import AnchorMixSampler, WeightedMixSampler


def test_each_epoch_has_every_domain_sample_and_ratio_anchor_samples():
    sampler = AnchorMixSampler(num_domain=10, num_anchor=100, ratio=1.0, seed=0)
    order = list(sampler)
    assert len(order) == len(sampler) == 20
    assert sorted(i for i in order if i < 10) == list(range(10))
    anchor = [i for i in order if i >= 10]
    assert len(anchor) == len(set(anchor)) == 10 and max(anchor) < 110


def test_draws_are_reproducible_and_change_with_the_epoch():
    a, b = AnchorMixSampler(10, 100, 2.0, seed=3), AnchorMixSampler(10, 100, 2.0, seed=3)
    assert list(a) == list(b)
    first = list(a)
    a.set_epoch(1)
    assert sorted(list(a)) != sorted(first)  # a fresh anchor subset, not only a new order


def test_small_anchor_sets_are_reused_and_zero_ratio_means_no_mixing():
    order = list(AnchorMixSampler(4, 3, ratio=2.0))
    assert len([i for i in order if i >= 4]) == 8
    assert sorted(AnchorMixSampler(4, 0, ratio=0.0)) == [0, 1, 2, 3]


def test_bad_settings_are_refused():
    with pytest.raises(ValueError, match="anchor set is empty"):
        AnchorMixSampler(4, 0, ratio=1.0)
    with pytest.raises(ValueError, match="domain set is empty"):
        AnchorMixSampler(0, 4)


def test_datamodule_mixes_anchor_images_into_every_training_epoch(tmp_path):
    from sam3_adapt.data_mix.datamodule import ConceptDataModule
    from sam3_adapt.data_mix.synthetic.shapes import write_shapes_coco

    domain_json, domain_images = write_shapes_coco(tmp_path / "domain", num_images=3, image_size=48, seed=0)
    anchor_json, anchor_images = write_shapes_coco(tmp_path / "anchor", num_images=5, image_size=48, seed=9)
    data = ConceptDataModule(
        train_json=str(domain_json),
        image_dir=str(domain_images),
        anchor_json=str(anchor_json),
        anchor_image_dir=str(anchor_images),
        anchor_ratio=1.0,
        image_size=56,
        batch_size=2,
    )
    data.setup("fit")
    batches = list(data.train_dataloader())
    image_ids = [i for batch in batches for i in batch["image_ids"].tolist()]
    assert len(image_ids) == 6  # 3 domain images + 3 anchor images drawn for this epoch
    assert len(data.train_dataloader().sampler) == 6


def _source_of(index, sizes):
    return int(np.searchsorted(np.cumsum(sizes), index, side="right"))


def test_weighted_mix_proportions_hold_over_many_draws():
    sizes, weights = [12, 500, 40], [1.0, 2.0, 0.5]
    sampler = WeightedMixSampler(sizes, weights, seed=0)
    assert sampler.quotas == [12, 24, 6]  # the first source seen once, the others by weight
    drawn = Counter()
    for epoch in range(200):
        sampler.set_epoch(epoch)
        order = list(sampler)
        assert len(order) == len(sampler) == 42
        assert len({i for i in order if 12 <= i < 512}) == 24  # no repeats within an epoch
        drawn.update(order)
    per_source = Counter()
    for index, n in drawn.items():
        per_source[_source_of(index, sizes)] += n
    shares = np.array([per_source[s] for s in range(3)]) / drawn.total()
    np.testing.assert_allclose(shares, np.array(weights) / sum(weights), atol=0.01)
    assert all(drawn[12 + i] for i in range(500))  # a fresh subset every epoch reaches the whole source

    fixed = WeightedMixSampler(sizes, weights, epoch_size=35, seed=0)
    assert fixed.quotas == [10, 20, 5] and len(list(fixed)) == 35


def test_two_processes_get_disjoint_shards_of_the_same_draw():
    sizes, weights = [10, 30], [1.0, 1.0]
    single = WeightedMixSampler(sizes, weights, seed=4)
    ranks = [WeightedMixSampler(sizes, weights, seed=4, num_replicas=2, rank=r) for r in (0, 1)]
    assert isinstance(single, DistributedSampler)  # so Lightning keeps it rather than re-sharding it
    for epoch in range(3):
        for sampler in (single, *ranks):
            sampler.set_epoch(epoch)
        shards = [list(r) for r in ranks]
        assert len(shards[0]) == len(shards[1]) == len(ranks[0]) == 10
        assert not set(shards[0]) & set(shards[1])
        assert sorted(shards[0] + shards[1]) == sorted(single)
    # an odd draw is padded with its first indices so that every process runs as many steps
    odd = [WeightedMixSampler([5, 4], [1.0, 0.4], num_replicas=2, rank=r) for r in (0, 1)]
    draw = odd[0].draw()
    assert len(draw) == 7 and [len(list(s)) for s in odd] == [4, 4]
    assert sorted(list(odd[0]) + list(odd[1])) == sorted(draw + draw[:1])


def test_anchor_mix_is_the_two_source_weighted_mix():
    a, w = AnchorMixSampler(7, 20, 0.5, seed=2), WeightedMixSampler([7, 20], [1.0, 0.5], seed=2)
    a.set_epoch(3), w.set_epoch(3)
    assert list(a) == list(w)
    with pytest.raises(ValueError, match="anchor is empty but its weight asks for 4 draws"):
        WeightedMixSampler([4, 0], [1.0, 1.0], names=["domain", "anchor"])
