"""Patch-level concepts from part masks and the supervised dictionary, on hand-computed cases."""

import math

import pytest
import torch

from sparsex.dictionaries import concept_names, dataset_concepts, patch_concepts, supervised_dictionary
from sparsex.dictionaries.concepts import leaf_concepts, variant_concept
from sparsex.errors import DataError
from sparsex.partworld import CLASS_TABLE, PART_NAMES, PART_VARIANTS


def test_concept_names_order():
    names = concept_names()
    assert len(names) == 6 * 4 + 6 + 1 and names[-1] == "body" and names[24:30] == list(PART_NAMES)
    assert names[variant_concept(1, 2)] == f"eye={PART_VARIANTS['eye'][2]}"
    assert [names[c] for c in leaf_concepts()][-1] == "body" and len(leaf_concepts()) == 25


def test_patch_concepts_by_coverage():
    # 4x4 image, 2x2 grid of 2x2-pixel patches; the beak covers the whole top-left patch and one pixel (1/4) of the top-right
    part_masks = torch.zeros(1, 6, 4, 4, dtype=torch.bool)
    part_masks[0, 0, :2, :2] = True
    part_masks[0, 0, 0, 2] = True
    body = torch.zeros(1, 4, 4, dtype=torch.bool)
    body[0, 2:, 2:] = True  # bottom-right patch
    label = 5
    concepts = patch_concepts(part_masks, body, torch.tensor([label]), (2, 2), min_cover=0.25)
    beak_variant = variant_concept(0, CLASS_TABLE[label][0])
    assert concepts.shape == (4, 31)
    assert concepts[:, beak_variant].tolist() == [True, True, False, False]
    assert concepts[:, 24].tolist() == [True, True, False, False]  # the slot regardless of variant
    other_variants = [variant_concept(0, v) for v in range(4) if v != CLASS_TABLE[label][0]]
    assert not concepts[:, other_variants].any()
    assert concepts[:, 30].tolist() == [False, False, False, True]
    strict = patch_concepts(part_masks, body, torch.tensor([label]), (2, 2), min_cover=0.5)
    assert strict[:, beak_variant].tolist() == [True, False, False, False]


def test_supervised_dictionary_is_the_mean_difference():
    x = torch.tensor([[1.0, 0.0], [3.0, 0.0], [0.0, 2.0], [0.0, 4.0]])
    concepts = torch.tensor([[True, False], [True, False], [False, False], [False, False]])
    atoms = supervised_dictionary(x, concepts)
    assert atoms[0].tolist() == [2.0, -3.0]  # mean of rows 0-1 minus mean of rows 2-3
    assert all(math.isnan(v) for v in atoms[1].tolist())  # no patch contains concept 1


def test_dataset_without_part_masks_cannot_be_graded(tiny_images):
    with pytest.raises(DataError, match="no part masks.*cannot be graded"):
        dataset_concepts(tiny_images, (2, 2), 0.1, "tiny")
