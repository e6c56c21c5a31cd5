"""Add hard negatives (explicit, mined, generated siblings) to the samples of a COCO set.

Implicit negatives come from the reader (a category absent from an exhaustively labelled image).
:func:`add_negatives` adds phrases chosen because they are confusable. A phrase that is already a
category of the set reuses its category (an implicit negative is relabelled as hard); a new phrase
becomes a new category without annotations, in the samples and in the ground truth, so evaluation
scores it as a negative pair like any other.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field, replace
from pathlib import Path

from sam3_adapt.data_mix.negatives.files import NegativePhrases, read_negative_phrases
from sam3_adapt.data_mix.negatives.siblings import (
    ConceptTree,
    load_concept_tree,
    normalise_phrase,
    vocabulary_siblings,
)
from sam3_adapt.data_mix.readers.coco import CocoSet
from sam3_adapt.data_mix.samples import NegativeKind, Query

PathLike = str | Path


class NegativeConflictError(ValueError):
    """A phrase given as a negative of an image in which it is present."""


def resolve_images(negatives: NegativePhrases, file_names: Mapping[int, str]) -> dict[int, list[str]]:
    """The phrases of a negatives file for each image of a set, by image id.

    Args:
        negatives: The file's phrases.
        file_names: The ``file_name`` of every image of the set, by image id.

    Returns:
        For every image, the dataset-wide phrases then its own, each once.

    Raises:
        ValueError: If an image key names no image of the set, or a file name names several.
    """
    by_file: dict[str, list[int]] = {}
    for image_id, name in file_names.items():
        by_file.setdefault(name, []).append(image_id)
    per_image = {image_id: list(negatives.dataset) for image_id in file_names}
    for key, phrases in negatives.images.items():
        matches = by_file.get(str(key), [])
        if not matches and str(key).lstrip("-").isdigit() and int(key) in file_names:
            matches = [int(key)]
        if len(matches) != 1:
            problem = "names no image of the set" if not matches else f"names {len(matches)} images"
            raise ValueError(
                f"{negatives.path}: image {key!r} {problem} (keys are COCO file_name values or image ids)"
            )
        per_image[matches[0]] = list(dict.fromkeys(per_image[matches[0]] + phrases))
    return per_image


@dataclass
class _Pending:
    """Negatives to add to one image, in order, with the kind and origin of each."""

    phrases: dict[str, tuple[str, NegativeKind, str]] = field(default_factory=dict)

    def add(self, phrase: str, kind: NegativeKind, origin: str) -> None:
        self.phrases.setdefault(normalise_phrase(phrase), (phrase, kind, origin))


def add_negatives(
    coco: CocoSet,
    *,
    explicit: PathLike | Sequence[PathLike] | None = None,
    mined: PathLike | Sequence[PathLike] | None = None,
    siblings: bool = False,
    concept_tree: PathLike | ConceptTree | None = None,
) -> CocoSet:
    """Add hard-negative queries to every image of a set; the input set is left unchanged.

    An explicit or mined phrase that is present in its image (a positive query, or an annotation of
    that phrase's category, crowds included) is the user's mistake and raises. A generated sibling
    is dropped where it is present, or where the concept tree relates it to a present phrase (an
    ancestor or descendant: a "car" is present where a "sedan" is).

    Args:
        coco: The set, as read by :func:`sam3_adapt.data_mix.readers.coco.read_coco_set`.
        explicit: YAML or CSV files of confusions (see `sam3_adapt.data_mix.negatives.files`), kind
            ``explicit``.
        mined: Reviewed output of ``sam3-adapt mine-negatives`` (same formats), kind ``mined``.
        siblings: Add, for each positive phrase, its siblings from the set's own vocabulary
            (same head noun, other attributes; same attributes, other kind), kind ``generated``.
        concept_tree: A concept tree (YAML file or :class:`ConceptTree`): adds the other children of
            each positive phrase's parents, kind ``generated``.

    Returns:
        The set with the negatives added to its samples (after the existing queries) and new
        phrases added to ``phrases`` and to the ground-truth categories.

    Raises:
        NegativeConflictError: If an explicit or mined phrase is present in its image; the message
            names the file, the image and the phrase.
        ValueError: On a malformed file or an image key that names no image.
    """
    tree = load_concept_tree(concept_tree) if isinstance(concept_tree, (str, Path)) else concept_tree
    files = [(p, "explicit") for p in _paths(explicit)] + [(p, "mined") for p in _paths(mined)]
    names = file_names(coco)
    pending = {s.image_id: _Pending() for s in coco.samples}
    present = _present_phrases(coco)
    for path, kind in files:
        negatives = read_negative_phrases(path)
        for image_id, phrases in resolve_images(negatives, names).items():
            where = f"{Path(path).name}: image id {image_id} ({names[image_id]})"
            for phrase in phrases:
                if normalise_phrase(phrase) in present[image_id]:
                    raise NegativeConflictError(
                        f"{where}: {kind} negative {phrase!r} is present in the image (a labelled "
                        "positive); remove it from the file, or list it for other images only"
                    )
                pending[image_id].add(phrase, kind, f"{where}, {kind} negative {phrase!r}")
    vocabulary = [phrase for phrase, _ in coco.phrases.values()]
    if siblings or tree is not None:
        for sample in coco.samples:
            positives = [q.phrase for q in sample.positives]
            blocked = present[sample.image_id] | (tree.related(positives) if tree else set())
            where = f"{coco.json_path.name}: image id {sample.image_id} ({names[sample.image_id]})"
            for positive in positives:
                found = (vocabulary_siblings(positive, vocabulary) if siblings else []) + (
                    tree.siblings(positive) if tree else []
                )
                for phrase in found:
                    if normalise_phrase(phrase) not in blocked:
                        origin = f"{where}, generated negative {phrase!r} (sibling of {positive!r})"
                        pending[sample.image_id].add(phrase, "generated", origin)
    return _apply(coco, pending)


def _paths(value: PathLike | Sequence[PathLike] | None) -> list[PathLike]:
    if value is None:
        return []
    return [value] if isinstance(value, (str, Path)) else list(value)


def file_names(coco: CocoSet) -> dict[int, str]:
    """The ``file_name`` of every image of the set that has a sample, by image id."""
    ids = {s.image_id for s in coco.samples}
    return {im["id"]: im["file_name"] for im in coco.gt["images"] if im["id"] in ids}


def _present_phrases(coco: CocoSet) -> dict[int, set[str]]:
    """Normalised phrases present in each image: positive queries and annotated categories (crowds too)."""
    phrase_of = {cat_id: normalise_phrase(phrase) for cat_id, (phrase, _) in coco.phrases.items()}
    present = {s.image_id: {normalise_phrase(q.phrase) for q in s.positives} for s in coco.samples}
    for ann in coco.gt["annotations"]:
        if ann["image_id"] in present:
            present[ann["image_id"]].add(phrase_of[ann["category_id"]])
    return present


def _apply(coco: CocoSet, pending: dict[int, _Pending]) -> CocoSet:
    """New samples, phrases and ground truth with the pending negatives in them."""
    category_of = {normalise_phrase(phrase): cat_id for cat_id, (phrase, _) in coco.phrases.items()}
    phrases = dict(coco.phrases)
    next_id = max(phrases, default=0) + 1
    samples = []
    for sample in coco.samples:
        queries = list(sample.queries)
        row = {normalise_phrase(q.phrase): i for i, q in enumerate(queries)}
        for key, (phrase, kind, origin) in pending[sample.image_id].phrases.items():
            if key in row:  # an implicit negative of the same phrase: now a hard one
                queries[row[key]] = replace(queries[row[key]], negative_kind=kind)
                continue
            if key not in category_of:
                category_of[key] = next_id
                phrases[next_id] = (phrase, origin)
                next_id += 1
            cat_id = category_of[key]
            queries.append(Query(phrases[cat_id][0], cat_id, [], origin=origin, negative_kind=kind))
        samples.append(replace(sample, queries=queries))
    new = [
        {"id": cat_id, "name": phrase}
        for cat_id, (phrase, _) in phrases.items()
        if cat_id not in coco.phrases
    ]
    gt = {**coco.gt, "categories": [*coco.gt["categories"], *new]}
    return replace(coco, samples=samples, gt=gt, phrases=phrases)
