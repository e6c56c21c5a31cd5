import copy
import json

import pytest
import torch
from peft import PeftModel
from safetensors import safe_open
from transformers import Sam3Model, Sam3Processor

from sam3_adapt.model.adaptation import LoraSettings, apply_lora
from sam3_adapt.model.persistence import bases_match, load_adapter, save_adapter, save_merged
from sam3_adapt.model.tiny import sam3_processor, write_tiny_random_sam3
from sam3_adapt.model.tokenizer import clip_tokenizer

KEYS = ("pred_logits", "pred_boxes", "pred_masks", "presence_logits")


@pytest.fixture(scope="module")
def base_dir(tmp_path_factory):
    return write_tiny_random_sam3(tmp_path_factory.mktemp("base"), seed=0)


@pytest.fixture(scope="module")
def loaded_base(base_dir):
    return Sam3Model.from_pretrained(base_dir)


@pytest.fixture
def fresh_base(loaded_base):
    """A new untouched base model on every call (a copy of the one loaded from ``base_dir``)."""
    return lambda: copy.deepcopy(loaded_base)


@pytest.fixture(scope="module")
def inputs():
    generator = torch.Generator().manual_seed(0)
    tokens = clip_tokenizer()(["a red car"], padding="max_length", return_tensors="pt")
    return {
        "pixel_values": torch.randn(1, 3, 224, 224, generator=generator),
        "input_ids": tokens.input_ids,
        "attention_mask": tokens.attention_mask,
    }


def outputs(model, inputs) -> dict[str, torch.Tensor]:
    model.eval()
    with torch.no_grad():
        result = model(**inputs)
    return {key: result[key] for key in KEYS}


def assert_outputs_close(actual, expected, **tolerance):
    for key in KEYS:
        torch.testing.assert_close(actual[key], expected[key], **tolerance, msg=lambda m, k=key: f"{k}: {m}")


@pytest.fixture(scope="module")
def trained(loaded_base):
    """A LoRA model whose adapter weights are random, so the adapter changes every output."""
    settings = LoraSettings(preset="detector+vision", last_vision_blocks=1, text=True, rank=4, dropout=0.0)
    peft_model = apply_lora(copy.deepcopy(loaded_base), settings)
    generator = torch.Generator().manual_seed(1)
    with torch.no_grad():
        for name, parameter in peft_model.named_parameters():
            if "lora_B" in name:  # zero at initialisation
                parameter.normal_(0.0, 0.05, generator=generator)
    return peft_model


def test_adapter_roundtrip_gives_the_trained_outputs(trained, base_dir, fresh_base, inputs, tmp_path):
    expected = outputs(trained, inputs)
    untouched = outputs(fresh_base(), inputs)
    assert not torch.allclose(expected["pred_logits"], untouched["pred_logits"], atol=1e-3)

    folder = save_adapter(trained, tmp_path / "adapter", base_model_name=str(base_dir))
    assert {p.name for p in folder.iterdir()} >= {"adapter_config.json", "adapter_model.safetensors"}
    config = json.loads((folder / "adapter_config.json").read_text())
    assert config["base_model_name_or_path"] == str(base_dir) and config["r"] == 4

    loaded = load_adapter(fresh_base(), folder, expected_base=str(base_dir))
    assert isinstance(loaded, PeftModel)
    assert not any(p.requires_grad for p in loaded.parameters())
    assert_outputs_close(outputs(loaded, inputs), expected)

    plain = PeftModel.from_pretrained(fresh_base(), str(folder))
    assert_outputs_close(outputs(plain, inputs), expected)

    resumed = load_adapter(fresh_base(), folder, trainable=True)
    trainable = {n for n, p in resumed.named_parameters() if p.requires_grad}
    assert trainable == {n for n, p in trained.named_parameters() if p.requires_grad}


def test_merged_folder_loads_as_plain_sam3_with_the_same_outputs(trained, base_dir, inputs, tmp_path):
    expected = outputs(trained, inputs)
    folder = save_merged(trained, tmp_path / "merged", processor=sam3_processor(224))

    with safe_open(folder / "model.safetensors", framework="pt") as merged_file:
        with safe_open(base_dir / "model.safetensors", framework="pt") as base_file:
            assert set(merged_file.keys()) == set(base_file.keys())
    merged = Sam3Model.from_pretrained(folder)
    assert_outputs_close(outputs(merged, inputs), expected, atol=1e-5, rtol=1e-4)
    assert Sam3Processor.from_pretrained(folder).tokenizer("a red car").input_ids[:3] == [49406, 320, 736]

    # The caller's model keeps its adapters and its outputs.
    assert isinstance(trained, PeftModel) and any("lora_A" in n for n, _ in trained.named_parameters())
    assert_outputs_close(outputs(trained, inputs), expected, atol=0.0, rtol=0.0)


def test_expected_base_mismatch_names_both(trained, fresh_base, tmp_path):
    folder = save_adapter(trained, tmp_path / "adapter", base_model_name="facebook/sam3")
    with pytest.raises(ValueError, match="facebook/sam3") as error:
        load_adapter(fresh_base(), folder, expected_base="facebook/sam2")
    assert "facebook/sam2" in str(error.value)
    # Same model under another reference: hub id versus a local copy's folder.
    assert isinstance(load_adapter(fresh_base(), folder, expected_base="/data/sam3/"), PeftModel)


@pytest.mark.parametrize(
    ("recorded", "expected", "same"),
    [
        ("facebook/sam3", "facebook/sam3", True),
        ("facebook/sam3", "/checkpoints/SAM3/", True),
        ("facebook/sam3", "/home/me/.cache/huggingface/hub/models--facebook--sam3/snapshots/0a1b2c", True),
        ("C:\\models\\sam3", "facebook/sam3", True),
        ("facebook/sam3", "facebook/sam2", False),
        ("/models/sam3", "/models/sam3-finetuned", False),
    ],
)
def test_bases_match_rule(recorded, expected, same):
    assert bases_match(recorded, expected) is same


def test_save_adapter_needs_a_peft_model(fresh_base, tmp_path):
    with pytest.raises(TypeError, match="PeftModel"):
        save_adapter(fresh_base(), tmp_path, base_model_name="facebook/sam3")
