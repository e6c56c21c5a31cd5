import pytest
import torch
from peft import PeftModel
from torch import nn
from transformers import Sam3Model

from sam3_adapt.model.adaptation import (
    LoraSettings,
    apply_full_finetune,
    apply_lora,
    describe_trainable,
    lora_target_modules,
    trainable_parameters,
)
from sam3_adapt.model.param_groups import param_groups
from sam3_adapt.model.tiny import tiny_sam3_config

DETECTOR = {"geometry_encoder", "detr_encoder", "detr_decoder", "mask_decoder", "dot_product_scoring"}


def tiny_model() -> Sam3Model:
    with torch.random.fork_rng():
        torch.manual_seed(0)
        return Sam3Model(tiny_sam3_config())  # 4 ViT blocks, 2 text layers


def linears(model: nn.Module) -> dict[str, nn.Linear]:
    return {name: module for name, module in model.named_modules() if isinstance(module, nn.Linear)}


def adapted(peft_model: PeftModel) -> set[str]:
    return {name for name, module in peft_model.get_base_model().named_modules() if hasattr(module, "lora_A")}


def component(name: str) -> str:
    return name.split(".", 1)[0]


@pytest.mark.parametrize(
    ("kwargs", "field"),
    [
        ({"preset": "vision"}, "preset"),
        ({"rank": 0}, "rank"),
        ({"rank": 4.5}, "rank"),
        ({"alpha": -1}, "alpha"),
        ({"dropout": 1.0}, "dropout"),
        ({"dropout": -0.1}, "dropout"),
        ({"last_vision_blocks": 0}, "last_vision_blocks"),
        ({"extra_modules": [""]}, "extra_modules"),
        ({"extra_modules": "detr_decoder"}, "extra_modules"),
    ],
)
def test_bad_settings_name_the_field(kwargs, field):
    with pytest.raises(ValueError, match=f"LoraSettings.{field}"):
        LoraSettings(**kwargs)


def test_detector_preset_adapts_exactly_the_detector_linears():
    model = tiny_model()
    all_linears = linears(model)
    shapes = {name: (m.in_features, m.out_features) for name, m in all_linears.items()}
    base_total = sum(p.numel() for p in model.parameters())
    settings = LoraSettings(preset="detector", rank=4, alpha=8, dropout=0.1)
    peft_model = apply_lora(model, settings)

    targets = adapted(peft_model)
    expected = {n for n in all_linears if component(n) in DETECTOR or n == "text_projection"}
    assert targets == expected == set(lora_target_modules(tiny_model(), settings))
    for name in (
        "text_projection",
        "detr_decoder.layers.1.vision_cross_attn.o_proj",
        "dot_product_scoring.query_proj",
    ):
        assert name in targets
    for name in (
        "text_encoder.text_projection",  # suffix of "text_projection": must not be caught
        "mask_decoder.instance_projection",  # Conv2d
        "geometry_encoder.boxes_pool_project",  # Conv2d
        "vision_encoder.backbone.layers.3.mlp.fc1",
        "text_encoder.text_model.encoder.layers.0.self_attn.q_proj",
    ):
        assert name not in targets

    config = peft_model.peft_config["default"]
    assert (config.r, config.lora_alpha, config.lora_dropout) == (4, 8, 0.1)
    layer = peft_model.get_base_model().get_submodule("detr_encoder.layers.0.mlp.fc1")
    assert layer.lora_dropout["default"].p == 0.1 and layer.scaling["default"] == 2.0
    assert layer.lora_A["default"].weight.shape == (4, shapes["detr_encoder.layers.0.mlp.fc1"][0])

    lora_size = sum(4 * (i + o) for name, (i, o) in shapes.items() if name in expected)
    assert trainable_parameters(peft_model) == (lora_size, base_total + lora_size)
    assert all("lora_" in n for n, p in peft_model.named_parameters() if p.requires_grad)

    table = describe_trainable(peft_model)
    rows = {line.split()[0]: line.split()[1:] for line in table.splitlines()[1:]}
    assert rows["vision_encoder"][0] == "0" and rows["text_encoder"][0] == "0"
    decoder_lora = sum(4 * (i + o) for name, (i, o) in shapes.items() if component(name) == "detr_decoder")
    assert rows["detr_decoder"][0] == f"{decoder_lora:,}"
    assert rows["all"] == [f"{lora_size:,}", f"{base_total + lora_size:,}"]


def test_detector_vision_preset_adds_the_last_blocks_only():
    model = tiny_model()
    peft_model = apply_lora(model, LoraSettings(preset="detector+vision", last_vision_blocks=2))
    vision = {n for n in adapted(peft_model) if component(n) == "vision_encoder"}
    blocks = "vision_encoder.backbone.layers"
    assert vision == {
        f"{blocks}.{i}.{leaf}"
        for i in (2, 3)
        for leaf in (
            "attention.q_proj",
            "attention.k_proj",
            "attention.v_proj",
            "attention.o_proj",
            "mlp.fc1",
            "mlp.fc2",
        )
    }
    with pytest.raises(ValueError, match="only 4 ViT blocks"):
        lora_target_modules(tiny_model(), LoraSettings(preset="detector+vision", last_vision_blocks=5))


def test_text_flag_all_linear_and_extra_modules():
    model = tiny_model()
    names = set(linears(model))
    text = lora_target_modules(model, LoraSettings(text=True))
    detector = lora_target_modules(model, LoraSettings())
    text_linears = {n for n in names if n.startswith("text_encoder.text_model.")}
    assert len(text_linears) == 12 and set(text) == set(detector) | text_linears

    everything = lora_target_modules(model, LoraSettings(preset="all-linear"))
    assert set(everything) == names - {"text_encoder.text_projection"}
    assert all(isinstance(model.get_submodule(n), nn.Linear) for n in everything)

    extra = lora_target_modules(
        model, LoraSettings(extra_modules=["vision_encoder.backbone.layers.0.attention"])
    )
    assert set(extra) - set(detector) == {
        f"vision_encoder.backbone.layers.0.attention.{p}_proj" for p in "qkvo"
    }
    with pytest.raises(ValueError, match="not a module"):
        lora_target_modules(model, LoraSettings(extra_modules=["detr_decoder.nope"]))
    with pytest.raises(ValueError, match="no nn.Linear"):
        lora_target_modules(model, LoraSettings(extra_modules=["mask_decoder.instance_projection"]))


def test_full_finetune_freezes_named_components():
    model = apply_full_finetune(tiny_model(), freeze=["text_encoder", "vision_encoder.backbone.embeddings"])
    frozen = {n for n, p in model.named_parameters() if not p.requires_grad}
    assert frozen == {
        n
        for n, _ in model.named_parameters()
        if n.startswith(("text_encoder.", "vision_encoder.backbone.embeddings."))
    }
    trainable, total = trainable_parameters(model)
    assert total == sum(p.numel() for p in model.parameters())
    assert trainable == total - sum(p.numel() for n, p in model.named_parameters() if n in frozen)
    with pytest.raises(ValueError, match="text_encodr"):
        apply_full_finetune(tiny_model(), freeze=["text_encodr"])
    peft_model = apply_lora(tiny_model(), LoraSettings())
    with pytest.raises(TypeError):
        apply_full_finetune(peft_model)
    with pytest.raises(TypeError):
        apply_lora(peft_model, LoraSettings())


def assert_partition(groups, model):
    grouped = [id(p) for g in groups for p in g["params"]]
    trainable = [id(p) for p in model.parameters() if p.requires_grad]
    assert len(grouped) == len(set(grouped)) and set(grouped) == set(trainable)
    assert len({g["name"] for g in groups}) == len(groups)


def test_param_groups_full_model_decay_rules_and_layer_decay():
    model = apply_full_finetune(tiny_model())
    groups = param_groups(model)
    assert_partition(groups, model)
    group_of = {id(p): g for g in groups for p in g["params"]}
    owners = {
        f"{m_name}.{p_name}": m
        for m_name, m in model.named_modules()
        for p_name, _ in m.named_parameters(recurse=False)
    }
    for name, parameter in model.named_parameters():
        group = group_of[id(parameter)]
        no_decay = name.endswith(".bias") or isinstance(owners[name], (nn.LayerNorm, nn.GroupNorm))
        assert group["weight_decay"] == (0.0 if no_decay else 0.1), name
        assert group["name"].endswith(".no_decay") == no_decay
    for name in (
        "vision_encoder.backbone.embeddings.position_embeddings",
        "text_encoder.text_model.embeddings.token_embedding.weight",
    ):
        assert group_of[id(model.get_parameter(name))]["weight_decay"] == 0.1
    assert (
        group_of[id(model.get_parameter("mask_decoder.pixel_decoder.norms.0.weight"))]["weight_decay"] == 0.0
    )

    lr = {g["name"].removesuffix(".no_decay"): g["lr"] for g in groups}
    vision = 2.5e-5
    expected = {f"vision.block{i:02d}": vision * 0.9 ** (4 - i) for i in range(4)}
    expected |= {"vision.stem": vision * 0.9**5, "vision.position": vision, "vision.neck": vision}
    expected |= {"detector": 8e-5, "text": 5e-6}
    assert lr.keys() == expected.keys()
    for name, value in expected.items():
        assert lr[name] == pytest.approx(value), name

    def lr_of(name):
        return group_of[id(model.get_parameter(name))]["lr"]

    assert lr_of("vision_encoder.backbone.embeddings.patch_embeddings.projection.weight") == pytest.approx(
        vision * 0.9**5
    )
    assert lr_of("vision_encoder.backbone.layer_norm.weight") == pytest.approx(vision * 0.9**5)
    assert lr_of("vision_encoder.neck.fpn_layers.0.proj1.weight") == vision
    assert lr_of("text_projection.weight") == 5e-6 and lr_of("geometry_encoder.final_proj.weight") == 8e-5

    flat = param_groups(model, lr_vision=1e-4, layer_decay=1.0)
    assert {g["lr"] for g in flat if g["name"].startswith("vision")} == {1e-4}
    with pytest.raises(ValueError, match="layer_decay"):
        param_groups(model, layer_decay=0.0)


def test_param_groups_lora_params_join_their_component_groups():
    model = tiny_model()
    peft_model = apply_lora(model, LoraSettings(preset="detector+vision", last_vision_blocks=2, text=True))
    groups = param_groups(peft_model, lr_detector=1e-3)
    assert_partition(groups, peft_model)
    names = {id(p): n for n, p in peft_model.get_base_model().named_parameters()}
    by_group = {g["name"]: {names[id(p)] for p in g["params"]} for g in groups}
    assert set(by_group) == {"detector", "text", "vision.block02", "vision.block03"}
    assert all(".lora_" in n for members in by_group.values() for n in members)
    assert all(n.startswith("vision_encoder.backbone.layers.3.") for n in by_group["vision.block03"])
    assert {component(n) for n in by_group["text"]} == {"text_encoder", "text_projection"}
    assert {component(n) for n in by_group["detector"]} == DETECTOR
    assert {g["name"]: g["weight_decay"] for g in groups} == dict.fromkeys(by_group, 0.1)
    torch.optim.AdamW(groups)  # AdamW accepts the groups (extra "name" key included)

    apply_full_finetune(model := tiny_model(), freeze=["text_encoder", "text_projection"])
    assert not any(g["name"].startswith("text") for g in param_groups(model))
    with pytest.raises(ValueError, match="no trainable"):
        param_groups(tiny_model().requires_grad_(False))
