"""The labelled set an evaluation runs on: one COCO file, or several merged so each stays a source."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import replace
from pathlib import Path
from typing import Any

from sam3_adapt.data_mix.readers.coco import CocoSet
from sam3_adapt.data_mix.readers.sources import read_source


def as_list(value: str | Path | Sequence[str | Path]) -> list[Path]:
    """One path or a sequence of paths, as a list of paths."""
    return [Path(value)] if isinstance(value, (str, Path)) else [Path(v) for v in value]


def source_labels(json_paths: Sequence[Path]) -> list[str]:
    """Short distinct names for annotation files: the file name, with parent folders where needed.

    ``world/microscopy/val/annotations.json`` and ``world/anchor/val/annotations.json`` become
    ``microscopy/val/annotations.json`` and ``anchor/val/annotations.json``.
    """
    parts = [path.resolve().parts for path in json_paths]
    depth = 1
    while depth < max(len(p) for p in parts):
        labels = ["/".join(p[-depth:]) for p in parts]
        if len(set(labels)) == len(labels):
            return labels
        depth += 1
    return [str(path) for path in json_paths]


def read_eval_set(
    data_json: str | Path | Sequence[str | Path],
    image_dir: str | Path | Sequence[str | Path],
    prompt_map: dict[str, str] | str | None = None,
) -> CocoSet:
    """Read the labelled set, every absent category of an image queried as a negative phrase.

    Each set is anything `sam3_adapt.data_mix.readers.sources.read_source` reads: a COCO or SA-Co JSON file,
    a Hugging
    Face dataset folder or a Hub dataset name (format detected; a Hugging Face set's image folder is
    not used). Several files are merged into one set: images, annotations and categories get new ids (phrases
    that are equal across files share one category), and each sample's ``source`` names its file, so
    breakdowns by source compare them. An image is queried only with its own file's phrases. The
    merged records keep the originals: an image record its ``original_id`` and ``source``, a category
    record its ``original_ids`` per source (`original_records` maps results back with them).

    Args:
        data_json: One set (COCO or SA-Co JSON, Hugging Face folder or Hub name) or several.
        image_dir: The image folder of each file (one folder serves every file).
        prompt_map: Phrase overrides ``{category name: phrase}`` (or a JSON/YAML file), for every file.

    Returns:
        The set; ``json_path`` is the first file.

    Raises:
        ValueError: If the numbers of files and folders disagree, or no (image, phrase) pair has an
            instance (AP and cgF1 need positives).
    """
    jsons, dirs = as_list(data_json), as_list(image_dir)
    if not jsons:
        raise ValueError("data_json names no annotation file")
    if len(dirs) == 1:
        dirs = dirs * len(jsons)
    if len(dirs) != len(jsons):
        raise ValueError(f"{len(jsons)} annotation files but {len(dirs)} image folders; give one or as many")
    sets = [read_source(j, d, prompt_map=prompt_map) for j, d in zip(jsons, dirs, strict=True)]
    merged = sets[0] if len(sets) == 1 else merge_sets(sets, source_labels(jsons))
    if not any(sample.positives for sample in merged.samples):
        names = ", ".join(str(j) for j in jsons)
        raise ValueError(
            f"{names}: no image has an instance of any phrase ({len(merged.samples)} images, "
            f"{sum(len(s.queries) for s in merged.samples)} negative pairs); AP and cgF1 need positive pairs"
        )
    return merged


def merge_sets(sets: Sequence[CocoSet], labels: Sequence[str]) -> CocoSet:
    """Merge COCO sets into one with fresh ids, categories joined by phrase.

    Args:
        sets: The sets, as read by :func:`sam3_adapt.data_mix.readers.coco.read_coco_set`.
        labels: Source name of each set, written into its samples' ``source``.

    Returns:
        The merged set.
    """
    category_of: dict[str, int] = {}
    phrases: dict[int, tuple[str, str]] = {}
    images: list[dict[str, Any]] = []
    annotations: list[dict[str, Any]] = []
    samples = []
    for coco, label in zip(sets, labels, strict=True):
        new_cat = {}
        for cat_id, (phrase, origin) in coco.phrases.items():
            new_cat[cat_id] = category_of.setdefault(phrase, len(category_of) + 1)
            phrases.setdefault(new_cat[cat_id], (phrase, origin))
        new_image = {}
        for image in coco.gt["images"]:
            new_image[image["id"]] = len(images) + 1
            images.append(
                {**image, "id": new_image[image["id"]], "original_id": image["id"], "source": label}
            )
        new_ann = {}
        for ann in coco.gt["annotations"]:
            new_ann[ann["id"]] = len(annotations) + 1
            annotations.append(
                {
                    **ann,
                    "id": new_ann[ann["id"]],
                    "image_id": new_image[ann["image_id"]],
                    "category_id": new_cat[ann["category_id"]],
                }
            )
        for sample in coco.samples:
            queries = [
                replace(
                    query,
                    category_id=new_cat[query.category_id],
                    instances=[replace(i, annotation_id=new_ann[i.annotation_id]) for i in query.instances],
                )
                for query in sample.queries
            ]
            samples.append(
                replace(sample, image_id=new_image[sample.image_id], queries=queries, source=label)
            )
    original: dict[int, dict[str, int]] = {}
    for coco, label in zip(sets, labels, strict=True):
        for cat_id, (phrase, _) in coco.phrases.items():
            original.setdefault(category_of[phrase], {})[label] = cat_id
    categories = [
        {"id": cat_id, "name": phrase, "original_ids": original[cat_id]}
        for phrase, cat_id in category_of.items()
    ]
    gt = {"images": images, "annotations": annotations, "categories": categories}
    return CocoSet(json_path=sets[0].json_path, samples=samples, gt=gt, phrases=phrases)


def original_records(records: Sequence[dict[str, Any]], coco: CocoSet) -> dict[str, list[dict[str, Any]]]:
    """COCO result records with the ids of the user's own files, grouped by source file.

    Each record gets its image's ``file_name`` and, for a merged set (`merge_sets`), the image and
    category ids it has in its own file and its ``source``, so that every group can be scored against
    its file with pycocotools as it is (``COCO(file).loadRes(group)``).

    Args:
        records: Result records with the set's ``image_id`` and ``category_id``.
        coco: The set they were made on.

    Returns:
        ``{source: records}``; one group, named by the set's file, when nothing was merged.
    """
    images = {image["id"]: image for image in coco.gt["images"]}
    categories = {cat["id"]: cat.get("original_ids") for cat in coco.gt["categories"]}
    groups: dict[str, list[dict[str, Any]]] = {}
    for record in records:
        image = images[record["image_id"]]
        source = image.get("source")
        if source is None:
            out = {**record, "file_name": image["file_name"]}
            groups.setdefault(str(coco.json_path), []).append(out)
            continue
        out = {
            **record,
            "image_id": image["original_id"],
            "category_id": categories[record["category_id"]][source],
            "file_name": image["file_name"],
            "source": source,
        }
        groups.setdefault(source, []).append(out)
    return groups


def image_names(coco: CocoSet) -> dict[int, str]:
    """How pictures name each image of the set: its ``file_name`` and the id in its own file."""
    return {
        image["id"]: f"{image['file_name']} (id {image.get('original_id', image['id'])})"
        for image in coco.gt["images"]
    }
