"""``sam3-adapt mine-negatives``: phrases the current model fires on where they are absent.

As in the SAM 3 data engine, the model itself finds its hard negatives: every image of a labelled
set is queried with candidate phrases that are not labelled there, and a phrase whose best score
reaches the threshold is kept. Where the image has positives, the firing boxes are compared with
them, which tells a confusion ("car" fires on the crack) from a detection elsewhere (which may also
be a missing label). The result is written as a negatives file for a person to review and then
feed back as ``mined`` negatives (see :func:`sam3_adapt.data_mix.negatives.add.add_negatives`).
"""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass, replace
from pathlib import Path

import torch
from torchvision.ops import box_iou

from sam3_adapt.data_mix.negatives.add import file_names, resolve_images
from sam3_adapt.data_mix.negatives.files import NegativeEntry, read_candidate_phrases, write_negative_phrases
from sam3_adapt.data_mix.negatives.siblings import load_concept_tree, normalise_phrase, vocabulary_siblings
from sam3_adapt.data_mix.readers.coco import CocoSet, read_coco_set
from sam3_adapt.data_mix.samples import ConceptSample, Query
from sam3_adapt.inference.loop import predict_samples
from sam3_adapt.model.loading import load_segmenter

#: Keep every detection above the threshold: each object slot of the model is one at most.
_ALL_DETECTIONS = 10_000


@dataclass
class MinedNegative:
    """A phrase the model fired on in an image where it is not labelled.

    Attributes:
        image_id: COCO id of the image.
        file_name: COCO ``file_name`` of the image.
        phrase: The phrase.
        score: Its best detection score in the image.
        detections: Detections scoring at least the threshold.
        iou: Best IoU of a firing box with a positive instance's box; ``None`` without positives.
        overlaps: Phrase of that positive instance; ``None`` without positives.
    """

    image_id: int
    file_name: str
    phrase: str
    score: float
    detections: int
    iou: float | None
    overlaps: str | None


def candidates_per_image(
    coco: CocoSet,
    candidates: str | Path | None = None,
    siblings: bool = False,
    compose_siblings: bool = False,
    concept_tree: str | Path | None = None,
) -> dict[int, list[str]]:
    """Candidate phrases of each image, leaving out those present there.

    Args:
        coco: The labelled set.
        candidates: A text file of phrases (one per line) for every image, or a YAML/CSV negatives
            file (see `sam3_adapt.data_mix.negatives.files`) with phrases for every image and per image.
        siblings: Add the siblings of each positive phrase from the set's vocabulary.
        compose_siblings: With ``siblings``, also compose new phrases from the vocabulary's attributes
            and head nouns (see :func:`sam3_adapt.data_mix.negatives.siblings.vocabulary_siblings`).
        concept_tree: A concept tree YAML: adds the tree siblings of each positive phrase, and leaves
            out the ancestors and descendants of positives.

    Returns:
        Phrases by image id, in a fixed order, each once. A phrase is left out of an image where it
        is a positive, an annotated category (crowds included), or related to one by the tree.
    """
    names = file_names(coco)
    given = resolve_images(read_candidate_phrases(candidates), names) if candidates else {}
    tree = load_concept_tree(concept_tree) if concept_tree else None
    vocabulary = [phrase for phrase, _ in coco.phrases.values()]
    phrase_of = {cat_id: normalise_phrase(phrase) for cat_id, (phrase, _) in coco.phrases.items()}
    annotated: dict[int, set[str]] = {}
    for ann in coco.gt["annotations"]:
        annotated.setdefault(ann["image_id"], set()).add(phrase_of[ann["category_id"]])
    result = {}
    for sample in coco.samples:
        positives = [q.phrase for q in sample.positives]
        found = list(given.get(sample.image_id, []))
        for positive in positives:
            found += vocabulary_siblings(positive, vocabulary, compose_siblings) if siblings else []
            found += tree.siblings(positive) if tree else []
        blocked = annotated.get(sample.image_id, set()) | {normalise_phrase(p) for p in positives}
        blocked |= tree.related(positives) if tree else set()
        kept: dict[str, str] = {}
        for phrase in found:
            if normalise_phrase(phrase) not in blocked:
                kept.setdefault(normalise_phrase(phrase), phrase)
        result[sample.image_id] = list(kept.values())
    return result


def _best_overlap(firing: torch.Tensor, sample: ConceptSample) -> tuple[float | None, str | None]:
    """Best IoU of ``firing`` boxes (original pixels) with the sample's positive instances."""
    owners = [(q.phrase, inst.box_xyxy) for q in sample.positives for inst in q.instances]
    if not owners:
        return None, None
    ious = box_iou(firing, firing.new_tensor([box for _, box in owners]))
    best = int(ious.max(dim=0).values.argmax())
    return float(ious[:, best].max()), owners[best][0]


def candidate_samples(coco: CocoSet, per_image: dict[int, list[str]]) -> list[ConceptSample]:
    """The set's images, each queried with its candidate phrases only (as negative queries)."""
    samples = []
    for sample in coco.samples:
        phrases = per_image[sample.image_id]
        if phrases:
            queries = [
                Query(phrase, -1 - k, [], origin=f"candidate {phrase!r}", negative_kind="mined")
                for k, phrase in enumerate(phrases)
            ]
            samples.append(replace(sample, queries=queries))
    return samples


def mine_negatives(
    data_json: str,
    image_dir: str,
    out: str = "mined_negatives.yaml",
    model: str = "tiny",
    adapter: str | None = None,
    candidates: str | None = None,
    siblings: bool = False,
    compose_siblings: bool = False,
    concept_tree: str | None = None,
    threshold: float = 0.5,
    overlap_iou: float = 0.5,
    require_overlap: bool = False,
    image_size: int | None = None,
    prompt_map: dict[str, str] | str | None = None,
    phrases_per_batch: int = 32,
    device: str | None = None,
    progress: bool = True,
) -> list[MinedNegative]:
    """Mine hard negatives: candidate phrases the model fires on where they are not labelled.

    Writes them for review as a negatives file (YAML or CSV by the suffix of ``out``) that training
    reads back as mined negatives; each phrase carries its score and, on images with positives, its
    best IoU with them and the positive it overlaps (a YAML comment, or CSV columns).

    Args:
        data_json: COCO file of a labelled set (every image exhaustively labelled for its categories).
        image_dir: Folder that the images' ``file_name`` values are relative to.
        out: Output file, ``.yaml``/``.yml`` or ``.csv``.
        model: Base SAM 3: hub id, local HF-format folder, or ``tiny`` / ``tiny-random``.
        adapter: PEFT adapter (hub id or folder) to put on ``model``: mine the adapted model.
        candidates: Candidate phrases: a text file (one per line, ``#`` comments) for every image, or a
            YAML/CSV negatives file with phrases for every image and per image.
        siblings: Also try the siblings of each image's positive phrases from the set's vocabulary
            (same head noun, other attributes; same attributes, other kind).
        compose_siblings: With ``siblings``, also compose phrases the vocabulary lacks from its
            attributes and head nouns.
        concept_tree: YAML concept tree (parent -> children): also try the other children of each
            positive phrase's parents; never try an ancestor or descendant of a positive.
        threshold: Score at which a detection fires.
        overlap_iou: IoU with a positive's box from which a firing box counts as overlapping it.
        require_overlap: On images with positives keep only phrases that overlap one (confusions); on
            images without positives firing is enough.
        image_size: Network input side in pixels; default: the checkpoint's processor size.
        prompt_map: Phrase overrides ``{category name: phrase}`` or a JSON/YAML file with them.
        phrases_per_batch: Phrases per forward pass; the vision encoder runs once per image.
        device: ``cuda``, ``cpu``, ...; default: CUDA when available.
        progress: Show a progress bar.

    Returns:
        The mined phrases, by image in file order and best score first within an image.

    Raises:
        ValueError: If no candidate source is given, or on a bad setting or file.
    """
    if not (candidates or siblings or concept_tree):
        raise ValueError("nothing to try: give candidates, siblings=true and/or concept_tree")
    if not 0.0 < threshold <= 1.0 or not 0.0 < overlap_iou <= 1.0 or phrases_per_batch < 1:
        raise ValueError(
            f"need threshold and overlap_iou in (0, 1] and phrases_per_batch >= 1; got {threshold}, "
            f"{overlap_iou}, {phrases_per_batch}"
        )
    coco = read_coco_set(data_json, image_dir, prompt_map=prompt_map)
    per_image = candidates_per_image(coco, candidates, siblings, compose_siblings, concept_tree)
    device = device or ("cuda" if torch.cuda.is_available() else "cpu")
    segmenter = load_segmenter(model, adapter, device=device)
    for phrase in dict.fromkeys(p for phrases in per_image.values() for p in phrases):
        segmenter.check_phrase(phrase, f"candidate from {candidates or 'siblings'}")
    names = file_names(coco)
    found: dict[int, list[MinedNegative]] = {}
    results = predict_samples(
        segmenter,
        candidate_samples(coco, per_image),
        image_size=image_size,
        batch_size=1,
        max_detections=_ALL_DETECTIONS,
        min_score=threshold,
        masks=False,
        phrase_chunk=phrases_per_batch,
        progress=progress,
        desc="mine negatives",
    )
    labelled = {sample.image_id: sample for sample in coco.samples}
    for result in results:
        firing, sample = result.detections, labelled[result.sample.image_id]
        if not len(firing.scores):
            continue
        size = firing.boxes.new_tensor([sample.width, sample.height] * 2)
        iou, overlaps = _best_overlap(firing.boxes.clamp(min=0).minimum(size), sample)
        negative = MinedNegative(
            sample.image_id,
            names[sample.image_id],
            result.phrase,
            float(firing.scores.max()),
            len(firing.scores),
            iou,
            overlaps,
        )
        found.setdefault(sample.image_id, []).append(negative)
    mined = [
        m
        for sample in coco.samples
        for m in sorted(found.get(sample.image_id, []), key=lambda m: -m.score)
        if not require_overlap or m.iou is None or m.iou >= overlap_iou
    ]
    header = (
        f"Mined by sam3-adapt mine-negatives: model {model}{f' + {adapter}' if adapter else ''}, "
        f"data {data_json}, threshold {threshold}.\n"
        "Each phrase fired on an image where it is not labelled. Review: delete the phrases that are\n"
        "really present (missing labels), then train with this file as mined negatives."
    )
    counts = Counter(names.values())
    entries = [_entry(m, counts[m.file_name] > 1, overlap_iou) for m in mined]
    path = write_negative_phrases(out, entries, header)
    print(
        f"{len(mined)} phrase(s) fired on {len({m.image_id for m in mined})} of {len(coco.samples)} "
        f"image(s); wrote {path}"
    )
    return mined


def _entry(mined: MinedNegative, shared_name: bool, overlap_iou: float) -> NegativeEntry:
    """The file entry of a mined phrase: keyed by file name, or by id where images share the name."""
    notes: dict[str, object] = {"score": round(mined.score, 4), "detections": mined.detections}
    if mined.iou is not None:
        notes.update(
            iou=round(mined.iou, 4), positive=mined.overlaps, overlaps_positive=mined.iou >= overlap_iou
        )
    return NegativeEntry(mined.image_id if shared_name else mined.file_name, mined.phrase, notes)
