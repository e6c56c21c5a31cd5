"""The one predict loop: a model over a set of samples, detections per (image, phrase) query.

Evaluation, the report and model-card figures, negative mining and the data engine's proposals all
run their model through :func:`predict_samples`. No Lightning here: Lightning's validation loop
calls the same detection step (`sam3_adapt.model.detections.detect`) through the task.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from contextlib import nullcontext
from dataclasses import dataclass
from typing import Literal

import torch
from tqdm.auto import tqdm

from sam3_adapt.data_mix.batch import QueryTarget
from sam3_adapt.data_mix.dataset import eval_loader
from sam3_adapt.data_mix.samples import ConceptSample
from sam3_adapt.inference.slots import check_slots
from sam3_adapt.model.detections import PHRASE_CHUNK, QueryDetections, Resize, detect
from sam3_adapt.model.forward import ConceptSegmenter


@dataclass
class QueryResult:
    """What the model found for one (image, phrase) query.

    Attributes:
        sample: The image's sample.
        phrase: The phrase asked.
        category_id: The query's category id in its source.
        target: Its ground truth in network-input coordinates (empty boxes for a negative); boxes
            only: masks are not decoded here (``has_mask`` is False).
        detections: The detections, in original image pixels, best first.
    """

    sample: ConceptSample
    phrase: str
    category_id: int
    target: QueryTarget
    detections: QueryDetections


def predict_samples(
    segmenter: ConceptSegmenter,
    samples: Sequence[ConceptSample],
    *,
    image_size: int | None = None,
    batch_size: int = 4,
    max_detections: int = 100,
    min_score: float = 0.0,
    masks: bool = True,
    phrase_chunk: int | None = PHRASE_CHUNK,
    num_workers: int = 0,
    progress: bool = False,
    desc: str = "predict",
    resize: Resize = "letterbox",
    hflip: bool = False,
    precision: Literal["32-true", "bf16-mixed"] = "32-true",
) -> Iterator[QueryResult]:
    """Run a model over every query of every sample, in file order.

    Images go through the evaluation transform (by default a letterbox: aspect ratio kept, padded
    to the square; see `sam3_adapt.data_mix.transforms.eval_transform`), each image's vision features are
    computed once for all of its phrases, and detections are mapped back to the original pixels.
    A query whose every object vanishes under the resize is skipped, as in validation. A set with
    more instances in one pair than the model has object slots gets a warning with the best
    recall any model of that size can reach (`sam3_adapt.inference.slots`).

    Args:
        segmenter: The model; put in eval mode here.
        samples: The images and their queries (the phrases to ask).
        image_size: Network input side; default the segmenter's (its processor's) size.
        batch_size: Images per forward pass.
        max_detections: Detections kept per query; a query never has more than the model's object
            slots (`ConceptSegmenter.num_slots`), so a larger value keeps them all.
        min_score: Detections scoring below this are dropped.
        masks: Decode masks; ``False`` for box-only models or when only scores and boxes matter.
        phrase_chunk: Phrases per detector pass (memory is flat in the number of phrases).
        num_workers: DataLoader worker processes.
        progress: Show a progress bar over images.
        desc: The progress bar's label.
        resize: ``"letterbox"`` (aspect ratio kept) or ``"squash"`` (stretched to the square).
        hflip: Run on the images mirrored left-right and mirror the detections back (a test-time
            transform: the data engine compares it with the plain pass).
        precision: ``bf16-mixed`` runs the network under bfloat16 autocast, as training does with that
            precision: on a GPU, or a CPU with bf16 arithmetic (see `sam3_adapt.fitting.cpu_fit`;
            there facebook/sam3's ViT ran 3x faster); scores, boxes and masks are post-processed in
            float32. ``32-true`` leaves autocast as the caller set it.

    Yields:
        One :class:`QueryResult` per query.

    Raises:
        ValueError: If no image size is given and the segmenter does not know its own.
    """
    size = image_size or segmenter.image_size
    if size is None:
        raise ValueError("give image_size: the segmenter was built without its processor's size")
    by_id = {sample.image_id: sample for sample in samples}
    if len(by_id) != len(samples):
        raise ValueError("predict_samples needs distinct image ids")
    check_slots(samples, segmenter.num_slots, ", ".join(sorted({s.source for s in samples})) or desc)
    segmenter.eval()
    # Ground-truth masks are not decoded: predictions are scored against the set's own annotations.
    loader = eval_loader(
        samples, size, batch_size=batch_size, num_workers=num_workers, resize=resize, target_masks=False
    )
    if precision not in ("32-true", "bf16-mixed"):
        raise ValueError(f"precision must be 32-true or bf16-mixed, got {precision!r}")
    device = next(segmenter.parameters()).device
    # 32-true leaves autocast as the caller set it: a fit's check runs inside Lightning's precision
    # context, and its ViT passes must fill the cache entries (keyed by dtype) that training reads.
    bf16 = torch.autocast(device.type, dtype=torch.bfloat16) if precision == "bf16-mixed" else None
    with tqdm(total=len(samples), desc=desc, unit="image", disable=not progress) as bar:
        for batch in loader:
            with bf16 or nullcontext():
                found = detect(
                    segmenter,
                    batch["pixel_values"],
                    batch["phrases"],
                    batch["query_image_index"],
                    batch["orig_sizes"],
                    top_k=max_detections,
                    min_score=min_score,
                    masks=masks,
                    phrase_chunk=phrase_chunk,
                    resize=resize,
                    hflip=hflip,
                )
            image_ids = batch["image_ids"][batch["query_image_index"]].tolist()
            for q, detections in enumerate(found):
                yield QueryResult(
                    sample=by_id[image_ids[q]],
                    phrase=batch["phrases"][q],
                    category_id=int(batch["query_category_ids"][q]),
                    target=batch["targets"][q],
                    detections=detections,
                )
            bar.update(len(batch["image_ids"]))
