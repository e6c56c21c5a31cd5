"""An input side the ViT cannot take is refused by name, for tiny and the full architecture alike."""

import pytest
import torch
from transformers import Sam3Config

from sam3_adapt.model.image_size import check_image_size, supported_image_sizes
from sam3_adapt.model.loading import load_segmenter


def test_full_architecture_takes_1008_only():
    config = Sam3Config()  # facebook/sam3's shape; only the config, no weights
    assert supported_image_sizes(config) == [1008]
    check_image_size(config, 1008)
    with pytest.raises(
        ValueError, match=r"image_size 336 does not fit facebook/sam3: .*72x72 .*set image_size to 1008"
    ):
        check_image_size(config, 336, "facebook/sam3")


def test_tiny_refuses_336_before_transformers_fails():
    segmenter = load_segmenter("tiny")
    assert supported_image_sizes(segmenter.sam3.config) == [168]
    with pytest.raises(
        ValueError, match=r"image_size 336 does not fit .*tiny-sam3.*12x12.*set image_size to 168"
    ):
        segmenter.encode_images(torch.zeros(1, 3, 336, 336))
    levels = segmenter.encode_images(torch.zeros(1, 3, 168, 168)).fpn_hidden_states
    assert levels[0].shape[0] == 1


def test_a_vit_without_global_layers_takes_multiples_of_the_patch():
    config = Sam3Config()
    config.vision_config.backbone_config.global_attn_indexes = []
    sizes = supported_image_sizes(config)
    assert sizes[0] == 14 and sizes[-1] == 1008 and 336 in sizes
