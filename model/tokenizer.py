"""A CLIP tokenizer that needs no network: the standard CLIP BPE vocabulary ships with the package."""

from __future__ import annotations

from importlib import resources

from transformers import CLIPTokenizer

#: SAM 3's text encoder has 32 positions; the processor pads every phrase to this length.
MAX_PHRASE_TOKENS = 32


def clip_tokenizer() -> CLIPTokenizer:
    """Build the standard CLIP tokenizer from the vocabulary shipped in ``model/assets/clip_tokenizer``.

    The files were converted from OpenAI CLIP's ``bpe_simple_vocab_16e6.txt.gz`` (MIT licence), so
    the ids equal those of ``openai/clip-vit-base-patch32`` and of ``facebook/sam3``'s tokenizer:
    ``"a red car"`` encodes to ``[49406, 320, 736, 1615, 49407]``.

    Returns:
        A ``transformers.CLIPTokenizer`` with ``model_max_length`` set to SAM 3's 32 tokens.
    """
    folder = resources.files("sam3_adapt.model") / "assets" / "clip_tokenizer"
    with resources.as_file(folder) as path:
        tokenizer = CLIPTokenizer.from_pretrained(str(path), model_max_length=MAX_PHRASE_TOKENS)
    return tokenizer
