import pytest
import torch
from transformers import Sam3Model

from sam3_adapt.model.forward import ConceptSegmenter
from sam3_adapt.model.tiny import sam3_processor, tiny_sam3_config


@pytest.fixture(scope="module")
def segmenter() -> ConceptSegmenter:
    torch.manual_seed(0)
    network = Sam3Model(tiny_sam3_config()).eval()
    return ConceptSegmenter(network, sam3_processor(224).tokenizer)


def reference(segmenter, pixel_values, phrase, boxes=None, labels=None):
    tokens = segmenter.tokenizer([phrase], padding="max_length", max_length=32, return_tensors="pt")
    return segmenter.network(
        pixel_values=pixel_values,
        input_ids=tokens.input_ids,
        attention_mask=tokens.attention_mask,
        input_boxes=boxes,
        input_boxes_labels=labels,
    )


def test_last_layer_equals_sam3model_forward_for_every_query(segmenter):
    images = torch.randn(2, 3, 224, 224)
    phrases = ["red circle", "blue square", "red circle", "a very small green triangle"]
    image_index = torch.tensor([0, 0, 1, 1])
    with torch.no_grad():
        out = segmenter(images, phrases, image_index)
        assert out.logits.shape == (2, 4, 20) and out.boxes.shape == (2, 4, 20, 4)
        assert out.presence_logits.shape == (2, 4) and out.masks.shape == (4, 20, 64, 64)
        for q, (phrase, i) in enumerate(zip(phrases, image_index.tolist())):
            ref = reference(segmenter, images[i : i + 1], phrase)
            torch.testing.assert_close(out.logits[-1, q], ref.pred_logits[0], atol=1e-5, rtol=1e-4)
            torch.testing.assert_close(out.boxes[-1, q], ref.pred_boxes[0], atol=1e-5, rtol=1e-4)
            torch.testing.assert_close(
                out.presence_logits[-1, q], ref.presence_logits[0, 0], atol=1e-5, rtol=1e-4
            )
            torch.testing.assert_close(out.masks[q], ref.pred_masks[0], atol=1e-4, rtol=1e-4)


def test_exemplar_queries_match_sam3model_and_leave_text_only_queries_alone(segmenter):
    images = torch.randn(1, 3, 224, 224)
    box = torch.tensor([[0.4, 0.5, 0.2, 0.3]])
    with torch.no_grad():
        out = segmenter(
            images,
            ["red circle", "red circle"],
            torch.tensor([0, 0]),
            exemplar_boxes=[box, torch.zeros(0, 4)],
            exemplar_labels=[torch.tensor([1]), torch.zeros(0, dtype=torch.long)],
        )
        with_box = reference(segmenter, images, "red circle", box[None], torch.tensor([[1]]))
        text_only = reference(segmenter, images, "red circle")
    torch.testing.assert_close(out.logits[-1, 0], with_box.pred_logits[0], atol=1e-5, rtol=1e-4)
    torch.testing.assert_close(out.masks[0], with_box.pred_masks[0], atol=1e-4, rtol=1e-4)
    torch.testing.assert_close(out.logits[-1, 1], text_only.pred_logits[0], atol=1e-5, rtol=1e-4)
    torch.testing.assert_close(out.boxes[-1, 1], text_only.pred_boxes[0], atol=1e-5, rtol=1e-4)


def test_mask_decoder_runs_only_for_chosen_queries(segmenter):
    images = torch.randn(1, 3, 224, 224)
    with torch.no_grad():
        full = segmenter(images, ["a", "b", "c"], torch.tensor([0, 0, 0]))
        some = segmenter(images, ["a", "b", "c"], torch.tensor([0, 0, 0]), mask_queries=torch.tensor([2]))
        none = segmenter(
            images, ["a", "b", "c"], torch.tensor([0, 0, 0]), mask_queries=torch.tensor([], dtype=torch.long)
        )
    assert some.masks.shape[0] == 1
    torch.testing.assert_close(some.masks[0], full.masks[2])
    torch.testing.assert_close(some.logits, full.logits)
    assert none.masks is None


def test_phrase_longer_than_32_tokens_is_refused_with_its_origin(segmenter):
    long_phrase = " ".join(["word"] * 40)
    with pytest.raises(ValueError, match=r"train.json: annotation 7.*41|train.json: annotation 7.*42"):
        segmenter.check_phrase(long_phrase, origin="train.json: annotation 7")
