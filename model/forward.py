"""Many phrases per image through ``Sam3Model``'s own modules, with every decoder layer's outputs.

``Sam3Model.forward`` takes one phrase per image and returns only the last decoder layer. Training
needs more: each image carries many queries (positive and negative phrases), the vision backbone
should run once per image, each distinct phrase should be encoded once, and the objective needs
the boxes, logits and presence logits of every decoder layer. :class:`ConceptSegmenter` composes
the same submodules in the same order as ``Sam3Model.forward`` (a test checks that the last layer
equals it) and adds those three things, plus running the mask decoder only for chosen queries.

A tower (vision or text encoder) without a trainable parameter runs under ``torch.no_grad``, and its
outputs can be kept across epochs by a content-keyed
:class:`~sam3_adapt.model.feature_cache.FrozenFeatureCache`.
"""

from __future__ import annotations

import contextlib
import os
from collections.abc import Sequence
from pathlib import Path

import torch
from torch import nn
from transformers import PreTrainedTokenizerBase, Sam3Model
from transformers.models.sam3.modeling_sam3 import (
    Sam3VisionEncoderOutput,
    box_cxcywh_to_xyxy,
    inverse_sigmoid,
)

from sam3_adapt.model.feature_cache import FrozenFeatureCache, Storage
from sam3_adapt.model.image_size import set_input_side
from sam3_adapt.model.outputs import ConceptOutputs
from sam3_adapt.model.tokenizer import MAX_PHRASE_TOKENS

#: Label value that marks a padded (absent) exemplar box, as in ``Sam3Processor``.
PAD_BOX_LABEL = -10


def is_frozen(module: nn.Module) -> bool:
    """True when no parameter of ``module`` requires grad."""
    return not any(p.requires_grad for p in module.parameters())


def unwrap_sam3(network: nn.Module) -> Sam3Model:
    """Return the ``Sam3Model`` inside ``network`` (itself, or the model a PEFT wrapper adapts).

    LoRA layers are injected in place, so calling the submodules of the returned model runs them.

    Args:
        network: A ``Sam3Model`` or a ``peft.PeftModel`` wrapping one.

    Returns:
        The ``Sam3Model``.

    Raises:
        TypeError: If no ``Sam3Model`` is found.
    """
    inner = network.get_base_model() if hasattr(network, "get_base_model") else network
    if not isinstance(inner, Sam3Model):
        raise TypeError(
            f"expected a transformers.Sam3Model (or a PEFT model wrapping one), got {type(inner)}"
        )
    return inner


class ConceptSegmenter(nn.Module):
    """A SAM 3 network and its tokenizer, run on batches of (image, phrase) queries.

    Args:
        network: ``transformers.Sam3Model`` or a ``peft.PeftModel`` wrapping one.
        tokenizer: The CLIP tokenizer of the checkpoint (``processor.tokenizer``).
        frozen_no_grad: Run a tower without trainable parameters under ``torch.no_grad`` (no autograd
            bookkeeping; gradients of the trainable parts are the same).
        image_size: Side of the square input the checkpoint's processor makes (1008 for
            ``facebook/sam3``); ``None`` when unknown.
    """

    def __init__(
        self,
        network: nn.Module,
        tokenizer: PreTrainedTokenizerBase,
        frozen_no_grad: bool = True,
        image_size: int | None = None,
    ) -> None:
        super().__init__()
        self.network = network
        self.tokenizer = tokenizer
        self.image_size = image_size
        self.frozen_no_grad = frozen_no_grad
        self.vision_cache: FrozenFeatureCache | None = None
        self.text_cache: FrozenFeatureCache | None = None
        self._checked_size: int | None = None

    @property
    def sam3(self) -> Sam3Model:
        """The underlying ``Sam3Model``."""
        return unwrap_sam3(self.network)

    @property
    def num_slots(self) -> int:
        """Object slots of the detector (DETR queries): the most instances it can find per phrase."""
        return int(self.sam3.config.detr_decoder_config.num_queries)

    def count_tokens(self, phrase: str) -> int:
        """Number of tokens of ``phrase`` including the start and end tokens."""
        return len(self.tokenizer(phrase).input_ids)

    def check_phrase(self, phrase: str, origin: str = "") -> None:
        """Raise if ``phrase`` is blank or does not fit SAM 3's 32-token text encoder.

        A blank phrase is refused because the network answers it anyway, with confident detections
        of nothing in particular.

        Args:
            phrase: The noun phrase.
            origin: Where the phrase comes from (file and record), put in the message.

        Raises:
            ValueError: If the phrase is not a string, is empty or blank, or is longer than 32 tokens.
        """
        where = f"{origin}: " if origin else ""
        if not isinstance(phrase, str) or not phrase.strip():
            raise ValueError(f"{where}phrase {phrase!r} is empty or blank; give a noun phrase")
        count = self.count_tokens(phrase)
        if count > MAX_PHRASE_TOKENS:
            raise ValueError(
                f"{where}phrase {phrase!r} is {count} tokens long; SAM 3's text encoder takes at most "
                f"{MAX_PHRASE_TOKENS} (start and end tokens included). Shorten it, e.g. with a prompt map."
            )

    def use_feature_cache(
        self,
        storage: Storage | None,
        directory: str | os.PathLike | None = None,
        max_memory_gb: float | None = None,
    ) -> list[str]:
        """Cache the outputs of the frozen towers (vision and/or text encoder) from now on.

        Args:
            storage: ``"memory"``, ``"disk"``, or ``None`` to stop caching.
            directory: Folder of a disk cache (one subfolder per tower).
            max_memory_gb: Size limit of a memory cache, per tower.

        Returns:
            Names of the cached towers, among ``"vision_encoder"`` and ``"text_encoder"``.

        Raises:
            ValueError: If caching is asked for but neither tower is frozen.
        """
        self.vision_cache = self.text_cache = None
        if storage is None:
            return []
        sam3 = self.sam3
        towers = {"vision_encoder": sam3.vision_encoder, "text_encoder": sam3.text_encoder}
        frozen = [name for name, tower in towers.items() if is_frozen(tower)]
        if not frozen:
            raise ValueError(
                "a feature cache needs a frozen vision or text encoder, but both train here (LoRA on them, "
                "or full fine-tuning without freeze: [vision_encoder])"
            )
        caches = {
            name: FrozenFeatureCache(
                towers[name], storage, None if directory is None else Path(directory) / name, max_memory_gb
            )
            for name in frozen
        }
        self.vision_cache = caches.get("vision_encoder")
        self.text_cache = caches.get("text_encoder")
        return frozen

    def _grad_context(self, tower: nn.Module, inputs: torch.Tensor) -> contextlib.AbstractContextManager:
        if self.frozen_no_grad and not inputs.requires_grad and is_frozen(tower):
            return torch.no_grad()
        return contextlib.nullcontext()

    def encode_images(self, pixel_values: torch.Tensor) -> Sam3VisionEncoderOutput:
        """Run the vision encoder (ViT + FPN neck) once per image, or take its output from the cache.

        Args:
            pixel_values: Images, shape ``(B, 3, S, S)``, normalised with mean = std = 0.5. ``S`` is any
                whole number of ViT patches (14 px): the network is set to it first
                (:func:`~sam3_adapt.model.image_size.set_input_side`).

        Returns:
            The vision encoder output (``fpn_hidden_states`` and ``fpn_position_encoding`` per level;
            from the cache, only these two).
        """
        side = pixel_values.shape[-1]
        if side != self._checked_size:
            set_input_side(self.sam3, side)
            self._checked_size = side
        encoder = self.sam3.vision_encoder
        if self.vision_cache is None:
            with self._grad_context(encoder, pixel_values):
                return encoder(pixel_values)

        def compute(rows: list[int]) -> list[tuple[torch.Tensor, ...]]:
            levels = encoder(pixel_values[rows]).fpn_hidden_states
            return [tuple(level[i] for level in levels) for i in range(len(rows))]

        per_image = self.vision_cache.fetch(list(pixel_values), compute)
        levels = tuple(torch.stack(level) for level in zip(*per_image))
        # The neck's sine position encoding depends only on the shape: recomputed, not stored.
        position = encoder.neck.position_encoding
        return Sam3VisionEncoderOutput(
            fpn_hidden_states=levels,
            fpn_position_encoding=tuple(position(lvl.shape, lvl.device, lvl.dtype) for lvl in levels),
        )

    def _text_states(self, input_ids: torch.Tensor, attention_mask: torch.Tensor) -> torch.Tensor:
        """Last hidden states of the CLIP text encoder, ``(P, 32, width)``, cached when frozen."""
        encoder = self.sam3.text_encoder
        if self.text_cache is None:
            with self._grad_context(encoder, input_ids):
                return encoder(
                    input_ids=input_ids, attention_mask=attention_mask, return_dict=True
                ).last_hidden_state

        def compute(rows: list[int]) -> list[tuple[torch.Tensor]]:
            states = encoder(
                input_ids=input_ids[rows], attention_mask=attention_mask[rows], return_dict=True
            ).last_hidden_state
            return [(state,) for state in states]

        keys = list(torch.cat([input_ids, attention_mask.to(input_ids.dtype)], dim=1))
        return torch.stack([entry[0] for entry in self.text_cache.fetch(keys, compute)])

    def encode_phrases(self, phrases: Sequence[str]) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """Encode each distinct phrase once.

        Args:
            phrases: One phrase per query (repeats allowed).

        Returns:
            ``(features, mask, index)``: projected text features of the distinct phrases, shape
            ``(P, 32, D)``; their validity mask ``(P, 32)`` (True = token); and for each query the
            row of its phrase, shape ``(Q,)``.
        """
        distinct = list(dict.fromkeys(phrases))
        row = {phrase: i for i, phrase in enumerate(distinct)}
        for phrase in distinct:
            self.check_phrase(phrase)
        device = self.sam3.text_projection.weight.device
        tokens = self.tokenizer(
            distinct, padding="max_length", max_length=MAX_PHRASE_TOKENS, return_tensors="pt"
        ).to(device)
        # As Sam3Model.get_text_features: CLIP token states, projected to the detector width.
        states = self._text_states(tokens["input_ids"], tokens["attention_mask"])
        features = self.sam3.text_projection(states)
        index = torch.tensor([row[p] for p in phrases], dtype=torch.long, device=device)
        return features, tokens["attention_mask"].bool(), index

    def forward(
        self,
        pixel_values: torch.Tensor,
        phrases: Sequence[str],
        query_image_index: torch.Tensor,
        exemplar_boxes: Sequence[torch.Tensor] | None = None,
        exemplar_labels: Sequence[torch.Tensor] | None = None,
        mask_queries: torch.Tensor | None = None,
        vision: Sam3VisionEncoderOutput | None = None,
        text: tuple[torch.Tensor, torch.Tensor, torch.Tensor] | None = None,
    ) -> ConceptOutputs:
        """Predict every query of a batch, running the vision encoder once per image.

        Args:
            pixel_values: Images, shape ``(B, 3, S, S)``.
            phrases: One noun phrase per query, length ``Q``.
            query_image_index: Image of each query, shape ``(Q,)``, values in ``[0, B)``.
            exemplar_boxes: Optional exemplar boxes per query, each ``(k, 4)`` normalised cxcywh
                (``k`` may be 0).
            exemplar_labels: Labels of those boxes, each ``(k,)``: 1 positive, 0 negative exemplar.
            mask_queries: Queries whose masks to decode, shape ``(Qm,)``; ``None`` decodes all. Training
                passes only the queries that have masks to learn, which skips the mask decoder for
                negatives and box-only queries.
            vision: Precomputed :meth:`encode_images` output for ``pixel_values`` (e.g. a cache of a
                frozen encoder); when given, ``pixel_values`` is not run again.
            text: Precomputed ``(features, mask, index)`` as :meth:`encode_phrases` returns them, with
                ``index`` giving each of these queries' row in ``features``; when given, ``phrases``
                are not encoded again.

        Returns:
            :class:`~sam3_adapt.model.outputs.ConceptOutputs` with all decoder layers.
        """
        sam3 = self.sam3
        if vision is None:
            vision = self.encode_images(pixel_values)
        fpn = vision.fpn_hidden_states[:-1]
        fpn_pos = vision.fpn_position_encoding[:-1]
        query_image_index = query_image_index.to(fpn[-1].device)

        text, text_mask, phrase_index = self.encode_phrases(phrases) if text is None else text
        prompt, prompt_mask = text[phrase_index], text_mask[phrase_index]
        if exemplar_boxes is not None and any(len(b) for b in exemplar_boxes):
            prompt, prompt_mask = self._add_exemplars(
                prompt, prompt_mask, exemplar_boxes, exemplar_labels, fpn, fpn_pos, query_image_index
            )

        encoded = sam3.detr_encoder(
            vision_features=[fpn[-1][query_image_index]],
            text_features=prompt,
            vision_pos_embeds=[fpn_pos[-1][query_image_index]],
            text_mask=prompt_mask,
        )
        decoded = sam3.detr_decoder(
            vision_features=encoded.last_hidden_state,
            text_features=encoded.text_features,
            vision_pos_encoding=encoded.pos_embeds_flattened,
            text_mask=prompt_mask,
            spatial_shapes=encoded.spatial_shapes,
        )
        hidden = decoded.intermediate_hidden_states
        offsets = sam3.detr_decoder.box_head(hidden)
        boxes = box_cxcywh_to_xyxy((inverse_sigmoid(decoded.reference_boxes) + offsets).sigmoid())
        logits = sam3.dot_product_scoring(
            decoder_hidden_states=hidden, text_features=encoded.text_features, text_mask=prompt_mask
        ).squeeze(-1)

        if mask_queries is None:
            mask_queries = torch.arange(len(phrases), device=hidden.device)
        mask_queries = mask_queries.to(hidden.device)
        masks = None
        if len(mask_queries):
            image_of = query_image_index[mask_queries]
            masks = sam3.mask_decoder(
                decoder_queries=hidden[-1][mask_queries],
                backbone_features=[level[image_of] for level in fpn],
                encoder_hidden_states=encoded.last_hidden_state[mask_queries],
                prompt_features=prompt[mask_queries],
                prompt_mask=prompt_mask[mask_queries],
            ).pred_masks
        return ConceptOutputs(
            logits=logits,
            boxes=boxes,
            presence_logits=decoded.presence_logits.squeeze(-1),
            masks=masks,
            mask_query_index=mask_queries,
        )

    def _add_exemplars(
        self,
        prompt: torch.Tensor,
        prompt_mask: torch.Tensor,
        exemplar_boxes: Sequence[torch.Tensor],
        exemplar_labels: Sequence[torch.Tensor] | None,
        fpn: Sequence[torch.Tensor],
        fpn_pos: Sequence[torch.Tensor],
        query_image_index: torch.Tensor,
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """Append geometry-encoder tokens for the queries that carry exemplar boxes.

        Queries without exemplars get masked-out padding, so they are predicted exactly as
        ``Sam3Model.forward`` predicts a text-only prompt.
        """
        sam3 = self.sam3
        with_boxes = [i for i, b in enumerate(exemplar_boxes) if len(b)]
        width = max(len(exemplar_boxes[i]) for i in with_boxes)
        device, dtype = prompt.device, prompt.dtype
        boxes = torch.zeros(len(with_boxes), width, 4, device=device, dtype=dtype)
        labels = torch.full((len(with_boxes), width), PAD_BOX_LABEL, device=device, dtype=torch.long)
        for row, i in enumerate(with_boxes):
            k = len(exemplar_boxes[i])
            boxes[row, :k] = exemplar_boxes[i].to(device, dtype)
            labels[row, :k] = (
                exemplar_labels[i].to(device) if exemplar_labels is not None else torch.ones(k, device=device)
            )
        images = query_image_index[torch.tensor(with_boxes, device=device)]
        geometry = sam3.geometry_encoder(
            box_embeddings=boxes,
            box_mask=labels != PAD_BOX_LABEL,
            box_labels=labels.clamp(min=0),
            img_feats=[fpn[-1][images]],
            img_pos_embeds=[fpn_pos[-1][images]],
        )
        tokens = geometry.last_hidden_state.shape[1]
        extra = prompt.new_zeros(prompt.shape[0], tokens, prompt.shape[-1])
        extra_mask = prompt_mask.new_zeros(prompt.shape[0], tokens)
        rows = torch.tensor(with_boxes, device=device)
        extra[rows] = geometry.last_hidden_state.to(dtype)
        extra_mask[rows] = geometry.attention_mask.bool()
        return torch.cat([prompt, extra], dim=1), torch.cat([prompt_mask, extra_mask], dim=1)
