"""The CPU recipe for facebook/sam3, run for 2 steps on a network of its shape at reduced depth and width."""

import pytest
import torch
import yaml
from transformers import Sam3Config, Sam3Model

from sam3_adapt.data_mix.synthetic.concept_world import write_world
from sam3_adapt.fitting.cpu_fit import CpuThreads, cpu_has_bf16, usable_cores
from sam3_adapt.fitting.lightning_cli import lightning_cli
from sam3_adapt.fitting.recipe_files import recipe_path
from sam3_adapt.model.tiny import sam3_processor


def reduced_sam3_config() -> Sam3Config:
    """facebook/sam3's architecture (``Sam3Config()``: 1008 px, 14-px patches, 24-patch windows with a
    global layer every 8th, 200 object slots) with every tower narrower and shallower."""
    config = Sam3Config()
    vit = config.vision_config.backbone_config
    vit.hidden_size, vit.intermediate_size, vit.num_attention_heads = 64, 256, 4
    vit.num_hidden_layers, vit.global_attn_indexes = 4, [1, 3]
    config.vision_config.fpn_hidden_size = 32
    text = config.text_config
    text.hidden_size, text.intermediate_size, text.num_attention_heads, text.num_hidden_layers = 64, 256, 4, 2
    text.projection_dim = 64
    for name in ("geometry_encoder_config", "detr_encoder_config", "detr_decoder_config"):
        sub = getattr(config, name)
        sub.hidden_size, sub.intermediate_size, sub.num_attention_heads = 32, 64, 4
        sub.num_layers = 1 if name == "geometry_encoder_config" else 2
    config.mask_decoder_config.hidden_size, config.mask_decoder_config.num_attention_heads = 32, 4
    return config


@pytest.fixture(scope="module")
def reduced_checkpoint(tmp_path_factory):
    folder = tmp_path_factory.mktemp("sam3-reduced")
    torch.manual_seed(0)
    network = Sam3Model(reduced_sam3_config())
    assert network.config.detr_decoder_config.num_queries == 200 and network.config.image_size == 1008
    network.save_pretrained(folder)
    sam3_processor(1008).save_pretrained(folder)
    return folder


def test_cpu_recipe_fits_2_steps_running_each_tower_once_per_image_and_phrase(reduced_checkpoint, tmp_path):
    recipe = yaml.safe_load(recipe_path("cpu-lora").read_text())
    assert recipe["model"]["checkpoint"] == "facebook/sam3" and recipe["data"]["image_size"] == 504
    # The industrial world has 4 phrases: each image asks all of them (positives and negatives).
    train_json, image_dir = write_world(tmp_path / "shots", "industrial", 1, image_size=168)
    cli = lightning_cli(
        [
            "--config",
            str(recipe_path("cpu-lora")),
            f"--model.checkpoint={reduced_checkpoint}",
            f"--data.train_json={train_json}",
            f"--data.image_dir={image_dir}",
            "--trainer.max_steps=2",
            f"--trainer.default_root_dir={tmp_path / 'run'}",
            "--trainer.logger=false",
            "--trainer.enable_progress_bar=false",
        ],
        run=False,
    )
    assert any(isinstance(c, CpuThreads) for c in cli.trainer.callbacks)
    cli.trainer.fit(cli.model, cli.datamodule)
    assert cli.trainer.global_step == 2  # one image at batch 1: two passes
    segmenter = cli.model.segmenter
    assert segmenter.sam3.config.image_size == 504  # the recipe's side reached the ViT
    vision, text = segmenter.vision_cache, segmenter.text_cache
    # Four uses of the image: the fit-health check before and after the fit, and the two passes.
    assert (vision.misses, vision.hits) == (1, 3)  # the ViT ran once for the image
    assert (text.misses, text.hits) == (4, 12)  # the text encoder once per phrase
    trained = [n for n, p in segmenter.network.named_parameters() if p.requires_grad]
    assert trained and all("lora_" in n for n in trained)
    assert not any("vision_encoder" in n or "text_encoder" in n for n in trained)
    assert torch.get_num_threads() == usable_cores()


def test_threads_must_be_positive():
    with pytest.raises(ValueError, match="threads must be >= 1"):
        CpuThreads(0)


def test_bf16_support_is_read_from_the_cpu_flags(tmp_path):
    amx = tmp_path / "amx"
    amx.write_text("processor\t: 0\nflags\t\t: fpu sse avx2 avx512f amx_bf16 amx_tile\n")
    old = tmp_path / "old"
    old.write_text("processor\t: 0\nflags\t\t: fpu sse avx2\n")
    assert cpu_has_bf16(amx) is True
    assert cpu_has_bf16(old) is False
    assert cpu_has_bf16(tmp_path / "missing") is None
