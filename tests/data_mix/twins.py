"""Synthetic twins of a COCO set in the other source formats, and a comparable view of samples."""

from __future__ import annotations

import copy
from pathlib import Path

import datasets
import numpy as np

from sam3_adapt.data_mix.readers.coco_checks import parse_segmentation


def coco_to_saco(coco: dict, normalized: bool = True) -> dict:
    """The SA-Co layout of an exhaustive COCO dict: one pair per (image, category), ids from 100."""
    images, annotations = [], []
    for image in coco["images"]:
        w, h = image["width"], image["height"]
        for cat in sorted(coco["categories"], key=lambda c: c["id"]):
            pair_id = 100 + len(images)
            images.append(
                {
                    "id": pair_id,
                    "file_name": image["file_name"],
                    "text_input": cat["name"],
                    "width": w,
                    "height": h,
                    "queried_category": str(cat["id"]),
                    "is_instance_exhaustive": 1,
                    "is_pixel_exhaustive": 1,
                }
            )
            for ann in coco["annotations"]:
                if ann["image_id"] != image["id"] or ann["category_id"] != cat["id"]:
                    continue
                ann = {**copy.deepcopy(ann), "image_id": pair_id, "category_id": 1}
                if normalized:
                    x, y, bw, bh = ann["bbox"]
                    ann["bbox"] = [x / w, y / h, bw / w, bh / h]
                    if "area" in ann:
                        ann["area"] = ann["area"] / (w * h)
                annotations.append(ann)
    return {"images": images, "annotations": annotations, "categories": [{"id": 1, "name": "object"}]}


def coco_to_hf(coco: dict, image_dir: Path) -> datasets.Dataset:
    """A Hub-style detection dataset of a COCO dict: image, image_id, objects (masks as compressed RLE)."""
    categories = sorted(coco["categories"], key=lambda c: c["id"])
    label = {c["id"]: k for k, c in enumerate(categories)}
    rows = []
    for image in coco["images"]:
        objects = []
        for ann in coco["annotations"]:
            if ann["image_id"] != image["id"]:
                continue
            rle = parse_segmentation(ann.get("segmentation"), image)
            if rle is not None:
                rle = {"size": rle["size"], "counts": rle["counts"].decode()}
            objects.append(
                {
                    "id": ann["id"],
                    "bbox": [float(v) for v in ann["bbox"]],
                    "category": label[ann["category_id"]],
                    "area": float(ann["area"]) if "area" in ann else None,
                    "segmentation": rle,
                }
            )
        rows.append(
            {"image": str(image_dir / image["file_name"]), "image_id": image["id"], "objects": objects}
        )
    features = datasets.Features(
        {
            "image": datasets.Image(),
            "image_id": datasets.Value("int64"),
            "objects": datasets.List(
                {
                    "id": datasets.Value("int64"),
                    "bbox": datasets.List(datasets.Value("float64"), length=4),
                    "category": datasets.ClassLabel(names=[c["name"] for c in categories]),
                    "area": datasets.Value("float64"),
                    "segmentation": {
                        "size": datasets.List(datasets.Value("int64")),
                        "counts": datasets.Value("string"),
                    },
                }
            ),
        }
    )
    return datasets.Dataset.from_list(rows, features=features)


def view(samples, paths: bool = True) -> list:
    """Samples as plain comparable values, queries by phrase (category ids may differ between formats)."""
    out = []
    for s in samples:
        queries = []
        for q in sorted(s.queries, key=lambda q: q.phrase):
            instances = [
                (
                    i.annotation_id,
                    tuple(round(v, 6) for v in i.box_xyxy),
                    round(i.area, 3),
                    None if i.mask is None else np.packbits(i.mask_array()).tobytes(),
                )
                for i in q.instances
            ]
            queries.append((q.phrase, q.exhaustive, instances))
        out.append((str(s.image_path) if paths else None, s.image_id, s.height, s.width, queries))
    return out
