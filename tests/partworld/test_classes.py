"""The class table: derived from a fixed constant, every class near another, every variant used."""

from __future__ import annotations

from sparsex.partworld import CLASS_TABLE, PART_NAMES, PART_VARIANTS, PartWorld, PartWorldConfig, nearest_neighbour_distances

K = len(PART_NAMES)


def test_class_table():
    assert len(CLASS_TABLE) == 24 and len(set(CLASS_TABLE)) == 24
    assert all(len(row) == K and all(0 <= v < 4 for v in row) for row in CLASS_TABLE)
    nearest = nearest_neighbour_distances(CLASS_TABLE)
    assert min(nearest) >= 1 and max(nearest) <= 3 and 1 in nearest
    ds = PartWorld("train", PartWorldConfig(image_size=32))
    assert len(ds.class_parts) == 24
    assert all(set(parts) == set(PART_NAMES) and all(parts[s] in PART_VARIANTS[s] for s in PART_NAMES) for parts in ds.class_parts)
    assert all(len(set(PART_VARIANTS[s])) == 4 for s in PART_NAMES)
    # Derived from a fixed constant: the seed does not change the table.
    assert PartWorld("train", PartWorldConfig(image_size=32, seed=99)).class_parts == ds.class_parts
