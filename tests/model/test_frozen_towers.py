import pytest
import torch
from transformers import Sam3Model

from sam3_adapt.model.adaptation import LoraSettings, apply_full_finetune, apply_lora
from sam3_adapt.model.forward import ConceptSegmenter
from sam3_adapt.model.tiny import sam3_processor, tiny_sam3_config

SIZE = 112


def network(recipe: str) -> torch.nn.Module:
    torch.manual_seed(0)
    model = Sam3Model(tiny_sam3_config(image_size=SIZE))
    if recipe == "lora-detector":
        model = apply_lora(model, LoraSettings(rank=4, dropout=0.0))
        with torch.no_grad():  # B starts at 0, which would leave every A without gradient
            for name, parameter in model.named_parameters():
                if "lora_B" in name:
                    parameter.normal_(std=0.05)
    elif recipe == "lora-detector+vision":
        model = apply_lora(model, LoraSettings(preset="detector+vision", rank=4, dropout=0.0))
    elif recipe == "full-freeze-vision":
        apply_full_finetune(model, freeze=["vision_encoder"])
    else:
        apply_full_finetune(model)
    return model.eval()  # no dropout, so that two runs are comparable


def run(model, frozen_no_grad: bool) -> tuple[dict[str, torch.Tensor], dict[str, bool]]:
    segmenter = ConceptSegmenter(model, sam3_processor(SIZE).tokenizer, frozen_no_grad=frozen_no_grad)
    sam3 = segmenter.sam3
    grad_mode = {}
    hooks = [
        sam3.get_submodule(name).register_forward_hook(
            lambda *_, name=name: grad_mode.__setitem__(name, torch.is_grad_enabled())
        )
        for name in ("vision_encoder", "text_encoder")
    ]
    model.zero_grad(set_to_none=True)
    images = torch.randn(2, 3, SIZE, SIZE, generator=torch.Generator().manual_seed(1))
    out = segmenter(images, ["red circle", "square", "cross"], torch.tensor([0, 0, 1]))
    (out.logits.sum() + out.boxes.sum() + out.presence_logits.sum() + out.masks.mean()).backward()
    for hook in hooks:
        hook.remove()
    return {n: p.grad.clone() for n, p in model.named_parameters() if p.grad is not None}, grad_mode


@pytest.mark.parametrize(
    ("recipe", "vision_grad", "text_grad"),
    [
        ("lora-detector", False, False),
        ("lora-detector+vision", True, False),
        ("full-freeze-vision", False, True),
        ("full", True, True),
    ],
)
def test_frozen_towers_run_without_grad_and_trainable_gradients_are_unchanged(recipe, vision_grad, text_grad):
    model = network(recipe)
    with_grad, plain_mode = run(model, frozen_no_grad=False)
    without, mode = run(model, frozen_no_grad=True)
    assert plain_mode == {"vision_encoder": True, "text_encoder": True}
    assert mode == {"vision_encoder": vision_grad, "text_encoder": text_grad}
    assert with_grad and with_grad.keys() == without.keys()
    for name, grad in with_grad.items():
        torch.testing.assert_close(without[name], grad, msg=name)
