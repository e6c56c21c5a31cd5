"""The model card states the base, licence, data and results in metadata the Hub client parses back."""

import pytest
from huggingface_hub import ModelCard

from sam3_adapt.release.model_card import (
    CardFacts,
    base_license,
    build_model_card,
    hub_base_model,
    usage_snippet,
)


def facts(**overrides) -> CardFacts:
    values = {
        "name": "sam3-cells-lora",
        "kind": "adapter",
        "base": "facebook/sam3",
        "load_from": "org/sam3-cells-lora",
        "phrases": ["nucleus", "mitotic cell"],
        "shots": 10,
        "dataset": "cells",
        "dataset_id": "org/cells",
        "metrics": {"segm/AP": 0.41, "bbox/AP": 0.38, "cgF1@50": 0.52},
        "metrics_source": "Validation metrics.",
        "license": base_license("facebook/sam3"),
        "figures": {"figures/training_curves.png": "Training curves"},
    }
    return CardFacts(**{**values, **overrides})


def test_card_metadata_round_trips_through_the_hub_parser():
    card = ModelCard(str(build_model_card(facts())))
    data = card.data
    assert data.base_model == "facebook/sam3" and data.library_name == "peft"
    assert (data.license, data.license_name) == ("other", "sam-license")
    assert data.datasets == ["org/cells"] and "lora" in data.tags
    assert data.model_name == "sam3-cells-lora"
    assert {r.metric_name: r.metric_value for r in data.eval_results} == facts().metrics
    assert {(r.task_type, r.dataset_type, r.dataset_split) for r in data.eval_results} == {
        ("image-segmentation", "org/cells", "validation")
    }
    assert "![Training curves](figures/training_curves.png)" in card.text


def test_usage_snippet_fits_the_kind_and_the_base():
    peft_only = usage_snippet(facts(), "nucleus")
    assert 'PeftModel.from_pretrained(base, "org/sam3-cells-lora")' in peft_only
    assert 'Sam3Model.from_pretrained("facebook/sam3")' in peft_only and "sam3-adapt" not in peft_only
    merged = usage_snippet(facts(kind="merged"), "nucleus")
    assert 'Sam3Model.from_pretrained("org/sam3-cells-lora")' in merged and "peft" not in merged
    tiny = usage_snippet(facts(base="tiny"), "nucleus")
    assert 'load_sam3("tiny", adapter="org/sam3-cells-lora")' in tiny
    for code in (peft_only, merged, tiny):
        compile(code, "snippet", "exec")
    card = build_model_card(facts(kind="merged", metrics={}))
    assert card.data.library_name == "transformers" and card.data.eval_results is None


def test_base_model_metadata_and_licence_rules(tmp_path):
    assert hub_base_model("facebook/sam3") == "facebook/sam3"
    for not_on_hub in ("tiny", "tiny-random", str(tmp_path), "sam3", "bad id/x"):
        assert hub_base_model(not_on_hub) is None
    assert base_license("tiny-random") == {"license": "apache-2.0"}
    assert base_license("facebook/sam3", license="mit") == {"license": "mit"}
    (tmp_path / "README.md").write_text("---\nlicense: cc-by-4.0\n---\n# a local base\n")
    assert base_license(str(tmp_path)) == {"license": "cc-by-4.0"}
    # Offline (the test setting), a Hub base the kit does not know cannot be looked up: ask.
    with pytest.raises(ValueError, match="pass it with --license"):
        base_license("someone/sam3-finetune")
