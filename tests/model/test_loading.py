import pytest
import torch
from transformers import Sam3Model, Sam3Processor

from sam3_adapt.model.loading import load_sam3, resolve_checkpoint
from sam3_adapt.model.tokenizer import clip_tokenizer


def test_clip_tokenizer_gives_standard_clip_ids():
    assert clip_tokenizer()("a red car").input_ids == [49406, 320, 736, 1615, 49407]


def test_tiny_random_loads_by_name_and_by_path_with_identical_weights():
    by_name, processor = load_sam3("tiny-random")
    folder = resolve_checkpoint("tiny-random")
    by_path, _ = load_sam3(folder)
    assert isinstance(by_name, Sam3Model) and isinstance(processor, Sam3Processor)
    assert processor.tokenizer("a red car").input_ids == [49406, 320, 736, 1615, 49407]
    for (name, a), (_, b) in zip(by_name.state_dict().items(), by_path.state_dict().items()):
        assert torch.equal(a, b), name
    assert not by_name.training


def test_missing_local_folder_is_named_in_the_error(tmp_path):
    with pytest.raises(FileNotFoundError, match="does-not-exist"):
        load_sam3(str(tmp_path / "does-not-exist"))


def test_unreachable_hub_id_explains_what_to_check():
    with pytest.raises(OSError, match="local folder"):
        load_sam3("nobody-here/sam3-not-a-model")
