import torch
from transformers import Sam3Model

from sam3_adapt.model.forward import ConceptSegmenter
from sam3_adapt.model.memory import enable_activation_checkpointing
from sam3_adapt.model.tiny import sam3_processor, tiny_sam3_config


def _grads(checkpointing: bool) -> tuple[dict[str, torch.Tensor], int]:
    torch.manual_seed(0)
    network = Sam3Model(tiny_sam3_config()).train()
    if checkpointing:
        assert enable_activation_checkpointing(network) == 6  # 4 ViT blocks + 2 text layers
    calls = []
    block = network.vision_encoder.backbone.layers[0]
    inner = next(m for m in block.modules() if isinstance(m, torch.nn.Linear))
    inner.register_forward_hook(lambda *_: calls.append(1))
    segmenter = ConceptSegmenter(network, sam3_processor(224).tokenizer)
    torch.manual_seed(1)
    images = torch.randn(1, 3, 224, 224)
    out = segmenter(images, ["red circle", "square"], torch.tensor([0, 0]))
    (out.logits.sum() + out.boxes.sum() + out.masks.mean()).backward()
    return {n: p.grad.clone() for n, p in network.named_parameters() if p.grad is not None}, len(calls)


def test_activation_checkpointing_gives_the_same_gradients():
    (plain, plain_calls), (checkpointed, recomputed_calls) = _grads(False), _grads(True)
    assert (plain_calls, recomputed_calls) == (1, 2)  # the block really runs again in the backward pass
    assert plain.keys() == checkpointed.keys()
    for name in plain:
        torch.testing.assert_close(checkpointed[name], plain[name], atol=1e-5, rtol=1e-4, msg=name)
