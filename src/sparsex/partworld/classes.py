"""The class table: 24 classes, each a fixed combination of one variant per part slot.

The table is derived from SHA-512 of a fixed key, not from the data seed, so that every class has a
nearest neighbour that differs in 1 to 3 parts; it is part of what
:data:`~sparsex.partworld.scene.GENERATOR_VERSION` versions.

Worlds with other class settings (``classes``, ``variants``, ``absent_slots`` of
:class:`~sparsex.partworld.scene.PartWorldConfig`, e.g. the ``parts-fine`` preset) get a
fine-grained table from :func:`class_table`: genera of :data:`SPECIES_PER_GENUS` classes that differ
in a single slot, and per-genus part subsets (:data:`ABSENT` marks a slot the class does not show).
"""

from __future__ import annotations

import functools
import hashlib
import itertools
from typing import Sequence

import numpy as np

from .shapes import PART_NAMES, PART_VARIANTS, VARIANTS, slot_variants

NUM_CLASSES = 24
_CLASS_TABLE_KEY = "sparsex part world classes v1"
_FINE_TABLE_KEY = "sparsex part world classes v2"
#: Table entry of a slot that a class does not show (its part is never drawn).
ABSENT = -1
#: Classes per genus in a fine-grained table: the species of a genus differ in one slot only.
SPECIES_PER_GENUS = 4


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



def _derive_fine_table(classes: int, variants: int, absent_slots: int) -> tuple[tuple[int, ...], ...]:
    """A fine-grained table of ``classes`` rows, from SHA-512 of a key naming the three settings.

    The classes come in genera of :data:`SPECIES_PER_GENUS` (the last one may be smaller). A genus
    draws a base row (one of ``variants`` variants per slot), a *key slot*, and ``U{0..absent_slots}``
    other slots that its classes do not show (:data:`ABSENT`); its species are the base row with
    distinct variants in the key slot, so they differ from each other in exactly that slot (the
    fine-grained case: a class is told from its siblings by one part). Candidate tables (attempt =
    0, 1, ...) are drawn until all rows are distinct.
    """
    k = len(PART_NAMES)
    for attempt in itertools.count():
        digest = hashlib.sha512(f"{_FINE_TABLE_KEY}/{classes}/{variants}/{absent_slots}/{attempt}".encode()).digest()
        rng = np.random.default_rng(int.from_bytes(digest, "little"))
        table: list[tuple[int, ...]] = []
        while len(table) < classes:
            base = rng.integers(0, variants, k)
            key_slot = int(rng.integers(k))
            others = [s for s in range(k) if s != key_slot]
            base[rng.choice(others, size=int(rng.integers(0, absent_slots + 1)), replace=False)] = ABSENT
            for v in rng.choice(variants, size=min(SPECIES_PER_GENUS, variants, classes - len(table)), replace=False):
                base[key_slot] = v
                table.append(tuple(int(x) for x in base))
        if len(set(table)) == classes:
            return tuple(table)
    raise AssertionError("unreachable")


@functools.lru_cache(maxsize=None)
def class_table(classes: int = NUM_CLASSES, variants: int = 4, absent_slots: int = 0) -> tuple[tuple[int, ...], ...]:
    """The class table of a world with these settings: :data:`CLASS_TABLE` for the defaults (24, 4,
    0), else :func:`_derive_fine_table`. ``table[c][k]`` is class ``c``'s variant index of slot
    ``PART_NAMES[k]`` (into :func:`~sparsex.partworld.shapes.slot_variants`), or :data:`ABSENT`."""
    if (classes, variants, absent_slots) == (NUM_CLASSES, 4, 0):
        return CLASS_TABLE
    return _derive_fine_table(classes, variants, absent_slots)


def class_names(classes: int) -> tuple[str, ...]:
    """``class_00`` ... (zero-padded to at least two digits, so the names sort in label order)."""
    width = max(2, len(str(classes - 1)))
    return tuple(f"class_{c:0{width}d}" for c in range(classes))


def class_parts(table: Sequence[Sequence[int]], variants: int) -> tuple[dict[str, str], ...]:
    """Per class, slot -> variant name, for the slots the class shows (absent slots are left out)."""
    names = slot_variants(variants)
    return tuple({slot: names[slot][v] for slot, v in zip(PART_NAMES, row) if v != ABSENT} for row in table)
