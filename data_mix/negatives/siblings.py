"""Sibling phrases: confusable concepts made from a vocabulary or from a concept tree.

A sibling of a phrase names another concept of the same family, so it is a hard negative where the
phrase is present and the sibling is not:

- From a vocabulary (the data set's own phrases), by word: same head noun with other attributes
  (``"red circle"`` -> ``"blue circle"``), or the same attributes on another kind
  (``"red circle"`` -> ``"red square"``). A phrase is read as attributes then a head noun, with an
  optional tail from the first preposition (``"man in red"``: head ``"man"``, tail ``"in red"``).
  Attributes are swapped as a whole and only for as many attributes: ``"big red circle"`` gets
  ``"small red circle"`` if the vocabulary has it, never ``"circle"`` or ``"red circle"``, which
  would be present. The rule trusts that attributes in the same place are of the same sort (a
  colour for a colour): a concept tree is the way to say more.
- From a concept tree (YAML, parent -> children): the other children of the phrase's parents
  ("same parent, different kind").

Everything here is deterministic: outputs follow the order of the vocabulary or the tree file.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, NamedTuple

import yaml

#: Words that end the head noun of a phrase ("cup of tea": head "cup").
PREPOSITIONS = frozenset("of with without in on at for from by near under over behind inside outside".split())


def normalise_phrase(phrase: str) -> str:
    """Lower-case ``phrase`` with single spaces: the form phrases are compared in."""
    return " ".join(phrase.lower().split())


class PhraseParts(NamedTuple):
    """A noun phrase split into its attributes, head noun and tail (all normalised)."""

    attributes: tuple[str, ...]
    head: str
    tail: tuple[str, ...]

    def text(self) -> str:
        """The phrase put back together."""
        return " ".join((*self.attributes, self.head, *self.tail))


def split_phrase(phrase: str) -> PhraseParts:
    """Split a noun phrase into attributes, head noun and tail.

    Args:
        phrase: E.g. ``"big red circle"`` or ``"cup of tea"``.

    Returns:
        ``(("big", "red"), "circle", ())`` and ``((), "cup", ("of", "tea"))`` for those examples.
    """
    words = normalise_phrase(phrase).split()
    cut = next((i for i, w in enumerate(words) if w in PREPOSITIONS and i > 0), len(words))
    return PhraseParts(tuple(words[: cut - 1]), words[cut - 1], tuple(words[cut:]))


def vocabulary_siblings(phrase: str, vocabulary: Sequence[str], compose: bool = False) -> list[str]:
    """Siblings of ``phrase`` by word: same head with other attributes, same attributes on another head.

    Args:
        phrase: The (positive) phrase.
        vocabulary: The known phrases, e.g. a data set's categories.
        compose: Also build phrases the vocabulary lacks, from its attribute sets and heads
            (``"red circle"`` and ``"blue square"`` give ``"blue circle"`` and ``"red square"``).
            Such phrases may name objects that are present but unlabelled, so they suit mining
            candidates (reviewed by a person) more than training data.

    Returns:
        Vocabulary phrases (as spelt there) first, then composed ones, each once, never ``phrase``.
    """
    own = split_phrase(phrase)
    parts = [split_phrase(p) for p in vocabulary]
    siblings = [
        p
        for p, q in zip(vocabulary, parts)
        if q.tail == own.tail
        and (
            (
                q.head == own.head
                and q.attributes != own.attributes
                and len(q.attributes) == len(own.attributes)
            )
            or (q.attributes == own.attributes and q.head != own.head and own.attributes)
        )
    ]
    if compose:
        attribute_sets = dict.fromkeys(
            q.attributes for q in parts if len(q.attributes) == len(own.attributes)
        )
        heads = dict.fromkeys(q.head for q in parts)
        made = [PhraseParts(a, own.head, own.tail) for a in attribute_sets if a != own.attributes and a]
        if own.attributes:
            made += [PhraseParts(own.attributes, h, own.tail) for h in heads if h != own.head]
        siblings += [m.text() for m in made]
    seen = {normalise_phrase(phrase)}
    unique = []
    for s in siblings:
        if normalise_phrase(s) not in seen:
            seen.add(normalise_phrase(s))
            unique.append(s)
    return unique


@dataclass
class ConceptTree:
    """A hierarchy of concepts: each concept's parents and children (a concept may have several parents).

    Attributes:
        path: The YAML file it was read from, or ``None`` when built in code.
        children: For each parent (normalised), its children in file order.
        spelling: The phrase as written in the file, by normalised form.
    """

    path: Path | None
    children: dict[str, list[str]] = field(default_factory=dict)
    spelling: dict[str, str] = field(default_factory=dict)

    @classmethod
    def from_mapping(cls, tree: Mapping[str, Any], path: Path | None = None) -> ConceptTree:
        """Build a tree from ``{parent: [child, ...]}``; a child may be a ``{child: [...]}`` mapping.

        Args:
            tree: The mapping, nested to any depth. ``{parent: {child: [grandchild]}}`` also works.
            path: The file it comes from, for error messages.

        Returns:
            The tree.

        Raises:
            ValueError: If a node is not a phrase, a list or a mapping, or a concept is its own ancestor.
        """
        result = cls(path)
        result._add(tree, None, str(path) if path else "concept tree")
        for concept in result.spelling:
            if concept in result.ancestors(concept):
                raise ValueError(
                    f"{path or 'concept tree'}: {result.spelling[concept]!r} is its own ancestor"
                )
        return result

    def _add(self, node: Any, parent: str | None, where: str) -> None:
        if isinstance(node, Mapping):
            for key, sub in node.items():
                self._add_concept(key, parent, where)
                self._add(sub, normalise_phrase(key), f"{where}: {key!r}")
        elif isinstance(node, list):
            for item in node:
                self._add(item, parent, where)
        elif isinstance(node, str):
            self._add_concept(node, parent, where)
        elif node is not None:
            raise ValueError(f"{where}: {node!r} is not a phrase, a list or a mapping")

    def _add_concept(self, phrase: Any, parent: str | None, where: str) -> None:
        if not isinstance(phrase, str) or not phrase.strip():
            raise ValueError(f"{where}: {phrase!r} is not a non-empty phrase")
        key = normalise_phrase(phrase)
        self.spelling.setdefault(key, " ".join(phrase.split()))
        if parent is not None and key not in self.children.setdefault(parent, []):
            self.children[parent].append(key)

    def parents(self, phrase: str) -> list[str]:
        """Normalised parents of ``phrase`` (empty for a root or an unknown phrase)."""
        key = normalise_phrase(phrase)
        return [p for p, kids in self.children.items() if key in kids]

    def ancestors(self, phrase: str) -> set[str]:
        """Every normalised concept above ``phrase``."""
        found: set[str] = set()
        todo = self.parents(phrase)
        while todo:
            parent = todo.pop()
            if parent not in found:
                found.add(parent)
                todo += self.parents(parent)
        return found

    def descendants(self, phrase: str) -> set[str]:
        """Every normalised concept below ``phrase``."""
        found: set[str] = set()
        todo = list(self.children.get(normalise_phrase(phrase), []))
        while todo:
            child = todo.pop()
            if child not in found:
                found.add(child)
                todo += self.children.get(child, [])
        return found

    def related(self, phrases: Iterable[str]) -> set[str]:
        """Normalised ``phrases`` with all their ancestors and descendants: concepts present with them."""
        found = set()
        for phrase in phrases:
            found |= {normalise_phrase(phrase)} | self.ancestors(phrase) | self.descendants(phrase)
        return found

    def siblings(self, phrase: str) -> list[str]:
        """The other children of the parents of ``phrase``, as spelt in the tree, in tree order."""
        key = normalise_phrase(phrase)
        found = dict.fromkeys(c for p in self.parents(phrase) for c in self.children[p] if c != key)
        return [self.spelling[c] for c in found]


def load_concept_tree(path: str | Path) -> ConceptTree:
    """Read a concept tree from YAML: ``{parent: [child, ...]}``, nested to any depth.

    Example::

        vehicle:
          car: [sedan, suv]
          truck: [pickup]
          bicycle:

    Args:
        path: The YAML file.

    Returns:
        The tree.

    Raises:
        ValueError: If the file is missing or is not such a mapping.
    """
    path = Path(path)
    if not path.is_file():
        raise ValueError(f"concept tree file not found: {path}")
    loaded = yaml.safe_load(path.read_text())
    if not isinstance(loaded, Mapping):
        raise ValueError(f"{path}: a concept tree is a YAML mapping of parent -> children")
    return ConceptTree.from_mapping(loaded, path)
