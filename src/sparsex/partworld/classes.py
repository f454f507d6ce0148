"""The class table: 24 classes, each a fixed combination of one variant per part slot.

The table is derived from SHA-512 of a fixed key, not from the data seed, so that every class has a
nearest neighbour that differs in 1 to 3 parts; it is part of what
:data:`~sparsex.partworld.scene.GENERATOR_VERSION` versions.
"""

from __future__ import annotations

import hashlib
import itertools
from typing import Sequence

from .shapes import PART_NAMES, PART_VARIANTS, VARIANTS

NUM_CLASSES = 24
_CLASS_TABLE_KEY = "sparsex part world classes v1"


def _hamming(a: Sequence[int], b: Sequence[int]) -> int:
    return sum(x != y for x, y in zip(a, b))


def nearest_neighbour_distances(table: Sequence[Sequence[int]]) -> list[int]:
    """Per class, the Hamming distance (number of differing part slots) to its nearest other class."""
    return [min(_hamming(a, b) for j, b in enumerate(table) if j != i) for i, a in enumerate(table)]


def _derive_class_table() -> tuple[tuple[int, ...], ...]:
    """24 variant combinations from SHA-512 of a fixed key (independent of numpy's streams).

    Candidate tables are drawn until one has distinct classes, every nearest-neighbour distance
    in [1, 3], at least 4 classes whose nearest neighbour differs in a single part (the hardest
    case for an explanation), and every variant of every slot used by at least 3 classes.
    """
    k, n = len(PART_NAMES), len(VARIANTS["beak"])
    for attempt in itertools.count():
        digest = hashlib.sha512(f"{_CLASS_TABLE_KEY}/{attempt}".encode()).digest()
        values = [(byte >> shift) & 3 for byte in digest for shift in (0, 2, 4, 6)]
        table = tuple(tuple(values[c * k : (c + 1) * k]) for c in range(NUM_CLASSES))
        nearest = nearest_neighbour_distances(table)
        if len(set(table)) < NUM_CLASSES or max(nearest) > 3 or nearest.count(1) < 4:
            continue
        if all(sum(row[s] == v for row in table) >= 3 for s in range(k) for v in range(n)):
            return table
    raise AssertionError("unreachable")


#: ``CLASS_TABLE[c][k]``: variant index of part slot ``PART_NAMES[k]`` in class ``c``.
CLASS_TABLE: tuple[tuple[int, ...], ...] = _derive_class_table()
CLASS_NAMES: tuple[str, ...] = tuple(f"class_{c:02d}" for c in range(NUM_CLASSES))
#: ``CLASS_PARTS[c]``: slot -> variant name of class ``c``.
CLASS_PARTS: tuple[dict[str, str], ...] = tuple(
    {slot: PART_VARIANTS[slot][v] for slot, v in zip(PART_NAMES, row)} for row in CLASS_TABLE
)

