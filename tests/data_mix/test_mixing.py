import pytest

from data_mix.mixing import AnchorMixSampler


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
    from data_mix.datamodule import ConceptDataModule
    from data_mix.shapes import write_shapes_coco

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
