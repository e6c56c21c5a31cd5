import pytest
import torch
from transformers import Sam3Model

from sam3_adapt.model.tiny import tiny_sam3_config


def test_init_std_reaches_every_component_but_clip():
    # CLIP's text encoder scales its own initialisation by width and depth (initializer_factor).
    torch.manual_seed(0)
    wide = Sam3Model(tiny_sam3_config(image_size=112, init_std=0.1))
    torch.manual_seed(0)
    default = Sam3Model(tiny_sam3_config(image_size=112))
    for name in ("vision_encoder.backbone", "detr_encoder", "detr_decoder", "mask_decoder"):
        wide_std, default_std = (_first_linear(m.get_submodule(name)).weight.std() for m in (wide, default))
        assert wide_std > 2.5 * default_std, name
    assert wide.detr_decoder.presence_head.layer1.weight.std().item() == pytest.approx(0.1, rel=0.2)
    assert default.detr_decoder.presence_head.layer1.weight.std().item() == pytest.approx(0.02, rel=0.2)


def _first_linear(module: torch.nn.Module) -> torch.nn.Linear:
    return next(m for m in module.modules() if isinstance(m, torch.nn.Linear))


def test_image_size_must_tile():
    with pytest.raises(ValueError, match="multiple of 56"):
        tiny_sam3_config(image_size=100)
