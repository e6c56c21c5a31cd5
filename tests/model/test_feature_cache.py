import pytest
import torch
from transformers import Sam3Model

from sam3_adapt.model.adaptation import LoraSettings, apply_full_finetune, apply_lora
from sam3_adapt.model.feature_cache import FrozenFeatureCache
from sam3_adapt.model.forward import ConceptSegmenter
from sam3_adapt.model.tiny import sam3_processor, tiny_sam3_config

SIZE = 112


def segmenter(freeze=("vision_encoder", "text_encoder"), vision_dropout: float = 0.0) -> ConceptSegmenter:
    config = tiny_sam3_config(image_size=SIZE)
    config.vision_config.backbone_config.hidden_dropout = vision_dropout
    torch.manual_seed(0)
    network = apply_full_finetune(Sam3Model(config), freeze=list(freeze))
    return ConceptSegmenter(network.train(), sam3_processor(SIZE).tokenizer)


def images(seed: int = 1, count: int = 2) -> torch.Tensor:
    return torch.randn(count, 3, SIZE, SIZE, generator=torch.Generator().manual_seed(seed))


def assert_same_vision(a, b):
    for x, y in zip(a.fpn_hidden_states, b.fpn_hidden_states, strict=True):
        torch.testing.assert_close(x, y, atol=1e-6, rtol=1e-5)
    for x, y in zip(a.fpn_position_encoding, b.fpn_position_encoding, strict=True):
        torch.testing.assert_close(x, y)


@pytest.mark.parametrize("storage", ["memory", "disk"])
def test_second_epoch_is_served_from_the_cache_and_equals_the_encoder(storage, tmp_path):
    model = segmenter()
    pixels = images()
    fresh = model.encode_images(pixels)
    assert model.use_feature_cache(storage, tmp_path) == ["vision_encoder", "text_encoder"]
    first = model.encode_images(pixels)
    second = model.encode_images(pixels)
    assert (model.vision_cache.misses, model.vision_cache.hits) == (2, 2)
    assert_same_vision(first, fresh)
    assert_same_vision(second, fresh)
    if storage == "disk":
        assert len(list((tmp_path / "vision_encoder").rglob("*.safetensors"))) == 2
        # Another process (a new cache object on the same folder) reads the entries back.
        model.use_feature_cache(storage, tmp_path)
        assert_same_vision(model.encode_images(pixels), fresh)
        assert (model.vision_cache.misses, model.vision_cache.hits) == (0, 2)


def test_text_features_are_cached_per_phrase_and_equal_the_encoder():
    model = segmenter()
    fresh, _, _ = model.encode_phrases(["red circle", "square"])
    model.use_feature_cache("memory")
    model.encode_phrases(["red circle", "square"])
    cached, _, index = model.encode_phrases(["square", "red circle", "square"])
    assert (model.text_cache.misses, model.text_cache.hits) == (2, 2)
    torch.testing.assert_close(cached[index], fresh[[1, 0, 1]])


def test_changed_pixels_or_changed_frozen_weights_are_never_served_stale():
    model = segmenter()
    model.use_feature_cache("memory")
    pixels = images()
    model.encode_images(pixels)
    # Same images, one pixel of the second changed (e.g. another augmentation): only it is recomputed.
    changed = pixels.clone()
    changed[1, 0, 5, 5] += 0.5
    out = model.encode_images(changed)
    assert (model.vision_cache.misses, model.vision_cache.hits) == (3, 1)
    model.use_feature_cache(None)
    assert_same_vision(out, model.encode_images(changed))

    model.use_feature_cache("memory")
    model.encode_images(pixels)
    with torch.no_grad():
        model.sam3.vision_encoder.neck.fpn_layers[0].proj1.weight.mul_(1.5)
    out = model.encode_images(pixels)
    assert model.vision_cache.hits == 0 and model.vision_cache.misses == 4
    model.use_feature_cache(None)
    assert_same_vision(out, model.encode_images(pixels))


def test_the_autocast_dtype_is_part_of_the_key():
    model = segmenter()
    model.use_feature_cache("memory")
    pixels = images()
    model.encode_images(pixels)
    with torch.autocast("cpu", dtype=torch.bfloat16):
        out = model.encode_images(pixels)
    assert model.vision_cache.hits == 0
    assert out.fpn_hidden_states[0].dtype == torch.bfloat16


def test_caching_is_refused_while_a_tower_trains():
    with pytest.raises(ValueError, match="frozen vision or text encoder"):
        segmenter(freeze=()).use_feature_cache("memory")

    # Full fine-tuning that freezes the text encoder only: the vision encoder is not cached.
    assert segmenter(freeze=("text_encoder",)).use_feature_cache("memory") == ["text_encoder"]

    # LoRA on the last ViT blocks means the vision encoder trains.
    torch.manual_seed(0)
    network = apply_lora(Sam3Model(tiny_sam3_config(image_size=SIZE)), LoraSettings(preset="detector+vision"))
    lora = ConceptSegmenter(network, sam3_processor(SIZE).tokenizer)
    assert lora.use_feature_cache("memory") == ["text_encoder"]

    # A tower unfrozen after the cache was set up is refused at the next use.
    model = segmenter()
    model.use_feature_cache("memory")
    model.sam3.vision_encoder.neck.fpn_layers[0].proj1.weight.requires_grad_(True)
    with pytest.raises(RuntimeError, match="only a frozen tower"):
        model.encode_images(images())


def test_caching_is_refused_while_dropout_makes_the_frozen_tower_random():
    model = segmenter(vision_dropout=0.1)
    model.use_feature_cache("memory")
    with pytest.raises(RuntimeError, match="dropout is active"):
        model.encode_images(images())
    model.sam3.vision_encoder.eval()
    model.encode_images(images())
    assert model.vision_cache.misses == 2


def test_memory_limit_drops_the_least_recently_used_entries():
    tower = torch.nn.Linear(4, 4).requires_grad_(False)
    cache = FrozenFeatureCache(tower, "memory", max_memory_gb=2 * 4 * 4 / 2**30)  # room for 2 rows
    rows = list(torch.eye(4))

    def compute(missing):
        return [(tower(rows[i]),) for i in missing]

    cache.fetch(rows[:3], compute)
    assert cache.memory_bytes == 2 * 16
    cache.fetch(rows[1:3], compute)
    assert (cache.hits, cache.misses) == (2, 3)


@pytest.mark.parametrize("storage", ["memory", "disk"])
def test_entries_made_during_validation_serve_a_training_step(storage, tmp_path):
    model = segmenter()
    model.use_feature_cache(storage, tmp_path)
    pixels = images()
    with torch.inference_mode():
        model(pixels, ["red circle", "square"], torch.tensor([0, 1]))
    out = model(pixels, ["red circle", "square"], torch.tensor([0, 1]))
    (out.logits.sum() + out.boxes.sum() + out.masks.mean()).backward()
    assert model.vision_cache.hits == 2 and model.text_cache.hits == 2
    assert model.sam3.detr_decoder.box_head.layer1.weight.grad is not None
