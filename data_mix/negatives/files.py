"""Files of hard-negative phrases: user-given confusions, and mined phrases written out for review.

Two equivalent formats, chosen by the file suffix.

YAML (``.yaml`` / ``.yml``)::

    dataset: [yellow circle, pink square]   # negatives of every image of the set
    images:                                 # negatives of single images
      img_003.png: [blue circle]            # by file_name (as in the COCO "images" records)
      7: [green square, blue square]        # or by image id

CSV (``.csv``), a header with at least the columns ``image`` and ``phrase``; an empty image or
``*`` means every image, other columns (e.g. the scores that mining writes) are ignored::

    image,phrase
    *,yellow circle
    img_003.png,blue circle
    7,green square

An image key is looked up first as a ``file_name``, then as an image id.
"""

from __future__ import annotations

import csv
import json
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

#: The CSV image value that stands for every image of the set.
ALL_IMAGES = "*"
_YAML_SUFFIXES = (".yaml", ".yml")


class NegativeFileError(ValueError):
    """A negatives file that cannot be read; the message names the file and the entry."""


@dataclass
class NegativePhrases:
    """Hard-negative phrases of one data set, as read from a YAML or CSV file.

    Attributes:
        path: The file they were read from (named in error messages).
        dataset: Phrases that are negatives of every image.
        images: Phrases that are negatives of one image, by image key (a ``file_name`` or an id).
    """

    path: Path
    dataset: list[str] = field(default_factory=list)
    images: dict[str | int, list[str]] = field(default_factory=dict)


@dataclass
class NegativeEntry:
    """One phrase to write into a negatives file.

    Attributes:
        image: ``file_name`` or id of the image, or ``None`` for every image.
        phrase: The negative phrase.
        notes: Facts for the reviewer (e.g. ``{"score": 0.83}``): extra CSV columns, or a YAML
            comment after the phrase. Readers ignore them.
    """

    image: str | int | None
    phrase: str
    notes: dict[str, Any] = field(default_factory=dict)


def read_negative_phrases(path: str | Path) -> NegativePhrases:
    """Read a YAML or CSV file of hard-negative phrases (formats in the module docstring).

    Args:
        path: The file; its suffix picks the format.

    Returns:
        The phrases, with blanks stripped and repeats of one phrase for one image dropped.

    Raises:
        NegativeFileError: If the file is missing, has another suffix, or an entry is malformed.
    """
    path = Path(path)
    if not path.is_file():
        raise NegativeFileError(f"negatives file not found: {path}")
    if path.suffix in _YAML_SUFFIXES:
        return _read_yaml(path)
    if path.suffix == ".csv":
        return _read_csv(path)
    raise NegativeFileError(f"{path}: negatives files are .yaml, .yml or .csv")


def _read_yaml(path: Path) -> NegativePhrases:
    try:
        loaded = yaml.safe_load(path.read_text()) or {}
    except yaml.YAMLError as err:
        raise NegativeFileError(f"{path}: not valid YAML: {err}") from err
    if not isinstance(loaded, Mapping) or set(loaded) - {"dataset", "images"}:
        raise NegativeFileError(
            f"{path}: expected a mapping with the keys 'dataset' (a list of phrases) and/or 'images' "
            f"(image file_name or id -> list of phrases), got {_short(loaded)}"
        )
    result = NegativePhrases(path, _phrase_list(loaded.get("dataset") or [], f"{path}: 'dataset'"))
    images = loaded.get("images") or {}
    if not isinstance(images, Mapping):
        raise NegativeFileError(f"{path}: 'images' must map image file_name or id to a list of phrases")
    for key, phrases in images.items():
        if not isinstance(key, (str, int)) or isinstance(key, bool):
            raise NegativeFileError(f"{path}: image key {key!r} must be a file_name or an int id")
        result.images[key] = _phrase_list(phrases or [], f"{path}: image {key!r}")
    return result


def _read_csv(path: Path) -> NegativePhrases:
    result = NegativePhrases(path)
    with path.open(newline="") as handle:
        reader = csv.DictReader(handle)
        if reader.fieldnames is None or not {"image", "phrase"} <= set(reader.fieldnames):
            raise NegativeFileError(f"{path}: the header needs the columns 'image' and 'phrase'")
        for line, row in enumerate(reader, start=2):
            phrase = _clean(row["phrase"], f"{path}: line {line}")
            image = (row["image"] or "").strip()
            target = result.dataset if image in ("", ALL_IMAGES) else result.images.setdefault(image, [])
            if phrase not in target:
                target.append(phrase)
    return result


def _phrase_list(value: Any, where: str) -> list[str]:
    if isinstance(value, str) or not isinstance(value, Sequence):
        raise NegativeFileError(f"{where}: expected a list of phrases, got {_short(value)}")
    return list(dict.fromkeys(_clean(v, where) for v in value))


def _clean(value: Any, where: str) -> str:
    phrase = " ".join(value.split()) if isinstance(value, str) else ""
    if not phrase:
        raise NegativeFileError(f"{where}: {_short(value)} is not a non-empty phrase")
    return phrase


def read_candidate_phrases(path: str | Path) -> NegativePhrases:
    """Read candidate phrases for mining: a negatives file, or a text file of one phrase per line.

    In a text file blank lines and lines starting with ``#`` are skipped; every phrase applies to
    every image.

    Args:
        path: ``.yaml``/``.yml``/``.csv`` (read by :func:`read_negative_phrases`) or any other text file.

    Returns:
        The candidates.

    Raises:
        NegativeFileError: If the file is missing or malformed.
    """
    path = Path(path)
    if path.suffix in (*_YAML_SUFFIXES, ".csv"):
        return read_negative_phrases(path)
    if not path.is_file():
        raise NegativeFileError(f"candidates file not found: {path}")
    lines = (" ".join(line.split()) for line in path.read_text().splitlines())
    return NegativePhrases(path, list(dict.fromkeys(p for p in lines if p and not p.startswith("#"))))


def write_negative_phrases(path: str | Path, entries: Sequence[NegativeEntry], header: str = "") -> Path:
    """Write phrases as a YAML or CSV negatives file that :func:`read_negative_phrases` reads back.

    Args:
        path: Output file; its suffix picks the format.
        entries: The phrases, in the order to write them (grouped by image in YAML).
        header: Text put at the top of a YAML file as comment lines (CSV has no comments).

    Returns:
        The path.

    Raises:
        NegativeFileError: If the suffix is not ``.yaml``, ``.yml`` or ``.csv``.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    if path.suffix == ".csv":
        columns = ["image", "phrase", *dict.fromkeys(k for e in entries for k in e.notes)]
        with path.open("w", newline="") as handle:
            writer = csv.DictWriter(handle, fieldnames=columns)
            writer.writeheader()
            for e in entries:
                writer.writerow(
                    {"image": ALL_IMAGES if e.image is None else e.image, "phrase": e.phrase, **e.notes}
                )
        return path
    if path.suffix not in _YAML_SUFFIXES:
        raise NegativeFileError(f"{path}: negatives files are .yaml, .yml or .csv")
    lines = [f"# {line}".rstrip() for line in header.splitlines()]
    everywhere = [e for e in entries if e.image is None]
    lines.append("dataset:" + ("" if everywhere else " []"))
    lines += [_yaml_item(e, "  ") for e in everywhere]
    per_image: dict[str | int, list[NegativeEntry]] = {}
    for e in entries:
        if e.image is not None:
            per_image.setdefault(e.image, []).append(e)
    lines.append("images:" + ("" if per_image else " {}"))
    for image, group in per_image.items():
        # Ids stay bare ints; file names are quoted, so "7" stays a file name.
        lines.append(f"  {image if isinstance(image, int) else json.dumps(image, ensure_ascii=False)}:")
        lines += [_yaml_item(e, "    ") for e in group]
    path.write_text("\n".join(lines) + "\n")
    return path


def _yaml_item(entry: NegativeEntry, indent: str) -> str:
    # A JSON string is a valid YAML double-quoted scalar.
    item = f"{indent}- {json.dumps(entry.phrase, ensure_ascii=False)}"
    if entry.notes:
        item += "  # " + ", ".join(f"{k}: {v}" for k, v in entry.notes.items())
    return item


def _short(value: Any, limit: int = 80) -> str:
    text = repr(value)
    return text if len(text) <= limit else text[: limit - 3] + "..."
