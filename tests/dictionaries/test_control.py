"""Control edits on a constructed case: one channel per variant, a probe that counts matching variants."""

import math

import torch

from sparsex.dictionaries import Dictionary
from sparsex.dictionaries.concepts import NUM_VARIANT_CONCEPTS, variant_concept
from sparsex.dictionaries.control import controls, dictionary_edit, edit_outcomes, supervised_edit, swap_targets, variant_swaps
from sparsex.partworld import CLASS_TABLE, PART_NAMES, PART_VARIANTS

CLASSES = len(CLASS_TABLE)


def test_swap_targets_change_exactly_one_slot():
    for label in range(CLASSES):
        for slot, variant, other, target in swap_targets(label):
            differ = [k for k in range(6) if CLASS_TABLE[label][k] != CLASS_TABLE[target][k]]
            assert differ == [slot] and CLASS_TABLE[label][slot] == variant and CLASS_TABLE[target][slot] == other
    assert sum(len(swap_targets(label)) for label in range(CLASSES)) > 0


def constructed_case():
    """One image per class, 6 patches each, patch k holding the one-hot channel of (slot k, the class's
    variant). The probe scores a class by how many of its variants are present, so swapping one
    variant makes the one-slot neighbour win."""
    labels = torch.arange(CLASSES)
    concepts = torch.zeros(CLASSES * 6, NUM_VARIANT_CONCEPTS + 7, dtype=torch.bool)
    for c in range(CLASSES):
        for k in range(6):
            concepts[c * 6 + k, variant_concept(k, CLASS_TABLE[c][k])] = True
    activations = concepts[:, :NUM_VARIANT_CONCEPTS].float()
    probe = torch.nn.Linear(NUM_VARIANT_CONCEPTS, CLASSES)
    with torch.no_grad():
        probe.bias.zero_()
        probe.weight.zero_()
        for c in range(CLASSES):
            probe.weight[c, [variant_concept(k, CLASS_TABLE[c][k]) for k in range(6)]] = 1.0
    return labels, activations, concepts, probe


def variant_probes():
    """Per slot a probe that reads the slot's variant off its one-hot channels."""
    probes = []
    for slot, name in enumerate(PART_NAMES):
        probe = torch.nn.Linear(NUM_VARIANT_CONCEPTS, len(PART_VARIANTS[name]))
        with torch.no_grad():
            probe.bias.zero_()
            probe.weight.zero_()
            for v in range(len(PART_VARIANTS[name])):
                probe.weight[v, variant_concept(slot, v)] = 1.0
        probes.append(probe)
    return probes


SWAPS = sum(len(swap_targets(c)) for c in range(CLASSES))
VARIANT_SWAPS = CLASSES * sum(len(PART_VARIANTS[name]) - 1 for name in PART_NAMES)  # every image, slot and other variant


def control_success(x, labels, probe, edit):
    succeeded, tried = edit_outcomes(x, labels, probe, edit)
    return {"control": succeeded / tried if tried else math.nan, "control_edits": tried}


def test_variant_swaps_offer_every_other_variant():
    assert variant_swaps(2)(1) == [(2, 1, 0, 0), (2, 1, 2, 2), (2, 1, 3, 3)]


def test_variant_control_counts_every_slot_and_variant():
    labels, x, concepts, probe = constructed_case()
    atoms = torch.cat([torch.eye(NUM_VARIANT_CONCEPTS), torch.zeros(7, NUM_VARIANT_CONCEPTS)])
    result = controls(x.view(CLASSES, 6, -1), labels, probe, variant_probes(), supervised_edit(atoms, concepts, 6))
    assert result == {"control": 1.0, "control_edits": SWAPS, "variant_control": 1.0, "variant_control_edits": VARIANT_SWAPS}

    def add_only(activations, image, slot, variant, other):  # half the new variant, the old one kept: no success
        where = concepts[image * 6:(image + 1) * 6, variant_concept(slot, variant)].float()[:, None]
        return activations + 0.5 * where * atoms[variant_concept(slot, other)]

    assert controls(x.view(CLASSES, 6, -1), labels, probe, variant_probes(), add_only)["variant_control"] == 0.0


def test_supervised_edit_moves_every_swap():
    labels, x, concepts, probe = constructed_case()
    atoms = torch.cat([torch.eye(NUM_VARIANT_CONCEPTS), torch.zeros(7, NUM_VARIANT_CONCEPTS)])
    result = control_success(x.view(CLASSES, 6, -1), labels, probe, supervised_edit(atoms, concepts, 6))
    assert result["control"] == 1.0 and result["control_edits"] == SWAPS
    wrong = torch.zeros_like(atoms)  # an edit that changes nothing never succeeds
    assert control_success(x.view(CLASSES, 6, -1), labels, probe, supervised_edit(wrong, concepts, 6))["control"] == 0.0


def identity_dictionary(channels):
    dictionary = Dictionary("pca", channels, channels, channels)
    dictionary.encoder.copy_(torch.eye(channels))
    dictionary.atoms.copy_(torch.eye(channels))
    return dictionary


def test_dictionary_edit_moves_the_code_to_the_other_atom():
    labels, x, concepts, probe = constructed_case()
    dictionary = identity_dictionary(NUM_VARIANT_CONCEPTS)
    codes = dictionary.encode(x)
    assert torch.equal(codes, x)
    best_atom = list(range(NUM_VARIANT_CONCEPTS)) + [0] * 7
    edit = dictionary_edit(dictionary, codes, concepts, best_atom, 6)
    result = control_success(x.view(CLASSES, 6, -1), labels, probe, edit)
    assert result["control"] == 1.0 and result["control_edits"] == SWAPS
    same_atom = [0] * len(best_atom)  # every concept's best atom is atom 0: the edit is a no-op
    edit = dictionary_edit(dictionary, codes, concepts, same_atom, 6)
    assert control_success(x.view(CLASSES, 6, -1), labels, probe, edit)["control"] == 0.0


def test_misclassified_images_are_not_edited():
    labels, x, concepts, probe = constructed_case()
    shifted = (labels + 1) % CLASSES  # every image labelled as another class: the probe gets none right
    result = control_success(x.view(CLASSES, 6, -1), shifted, probe, supervised_edit(torch.zeros(31, 24), concepts, 6))
    assert result["control_edits"] == 0 and math.isnan(result["control"])
