"""A LoRA run exported as an adapter or as merged weights reloads to the trained model's outputs."""

import lightning as L
import torch

from sam3_adapt.data_mix.datamodule import ConceptDataModule
from sam3_adapt.data_mix.synthetic.shapes import write_shapes_coco
from sam3_adapt.model.forward import ConceptSegmenter
from sam3_adapt.model.loading import load_sam3
from sam3_adapt.release.export import export
from sam3_adapt.training.task import ConceptSegmentationTask


def outputs_of(segmenter: ConceptSegmenter, images: torch.Tensor):
    with torch.no_grad():
        out = segmenter.eval()(images, ["red circle", "blue square"], torch.tensor([0, 0]))
    return out.logits, out.boxes, out.presence_logits, out.masks


def test_lora_fit_exports_an_adapter_and_merged_weights_with_equal_outputs(tmp_path):
    json_path, images = write_shapes_coco(tmp_path / "data", num_images=2, image_size=64, seed=0)
    data = ConceptDataModule(train_json=str(json_path), image_dir=str(images), image_size=224, batch_size=2)
    task = ConceptSegmentationTask(
        checkpoint="tiny-random",
        adaptation="lora",
        lora={"preset": "detector", "rank": 4, "alpha": 8, "dropout": 0.0},
        lr_detector=1e-2,
        lr_text=1e-2,
        warmup_steps=0,
    )
    trainer = L.Trainer(max_steps=3, accelerator="cpu", logger=False, enable_checkpointing=False)
    trainer.fit(task, data)
    ckpt = tmp_path / "run.ckpt"
    trainer.save_checkpoint(ckpt)
    saved = torch.load(ckpt, weights_only=False)["state_dict"]
    assert saved and all("lora_" in key for key in saved)  # only the adapter is in the checkpoint

    torch.manual_seed(0)
    images = torch.randn(1, 3, 224, 224)
    expected = outputs_of(task.segmenter, images)
    base, processor = load_sam3("tiny-random")
    assert not torch.allclose(outputs_of(ConceptSegmenter(base, processor.tokenizer), images)[0], expected[0])

    adapter = export(str(ckpt), str(tmp_path / "adapter"))
    assert (adapter / "adapter_config.json").is_file() and (adapter / "adapter_model.safetensors").is_file()
    with_adapter, processor = load_sam3("tiny-random", adapter=str(adapter))
    for got, want in zip(outputs_of(ConceptSegmenter(with_adapter, processor.tokenizer), images), expected):
        torch.testing.assert_close(got, want)

    merged = export(str(ckpt), str(tmp_path / "merged"), merged=True)
    merged_model, processor = load_sam3(str(merged))
    for got, want in zip(outputs_of(ConceptSegmenter(merged_model, processor.tokenizer), images), expected):
        torch.testing.assert_close(got, want, atol=1e-4, rtol=1e-4)
