"""Control: swap one part's variant inside an image's activations and see the probe follow.

For a test image of class ``y`` (that the probe classifies correctly), a part slot ``s`` and another
variant ``v'`` of it such that some class ``y'`` has exactly ``y``'s variants except ``v'`` at ``s``
(:func:`swap_targets`), the image's patch activations ``x_p`` are edited and the frozen linear probe
``logits = W mean_p x'_p + b`` (trained on the same pooled features) is read again; the edit
*succeeds* when the arg-max is ``y'``. The success rate is over all such (image, slot, variant)
triples (after Makelov et al., arXiv 2405.08366: editing by exchanging attribute features).

Few classes of the default table have a one-slot neighbour (4 of 24), so that class control rests
on a few dozen edits. The **variant control** asks the same of every slot and every other variant:
per slot ``s`` a frozen linear probe on the same pooled features reads the variant of ``s`` (the
class's variant, :data:`~sparsex.partworld.CLASS_TABLE`); on every test image whose variant of
``s`` that probe reads right, each edit ``v -> v'`` succeeds when the probe then reads ``v'``.

- supervised dictionary: on the patches that contain ``(s, v)``, ``x'_p = x_p - u_(s,v) + u_(s,v')``;
- a learned dictionary: with ``a`` / ``a'`` the best atoms of ``(s, v)`` / ``(s, v')`` (concept
  recovery), the code of ``a`` moves to ``a'`` rescaled by their typical codes,
  ``z'_a' = z_a' + z_a m_(a',v') / m_(a,v)``, ``z'_a = 0`` (``m_(n,c)``: the mean code of atom ``n``
  on the patches containing ``c``), so ``x'_p = x_p + s (z'_p - z_p) D`` (``s`` the standardisation
  scale). When ``a = a'`` or ``m_(a,v) = 0`` the edit changes nothing.
"""

from __future__ import annotations

from typing import Callable

import torch

from ..partworld import CLASS_TABLE, PART_NAMES, PART_VARIANTS
from .concepts import variant_concept

#: ``edit(activations (S, C), image, slot, variant_from, variant_to) -> edited activations (S, C)``
Edit = Callable[[torch.Tensor, int, int, int, int], torch.Tensor]
#: ``swaps(label) -> [(slot, variant, other variant, the probe's target class), ...]``
Swaps = Callable[[int], list[tuple[int, int, int, int]]]


def swap_targets(label: int) -> list[tuple[int, int, int, int]]:
    """``(slot, variant, other variant, target class)`` for every single-slot change of class
    ``label``'s variants that gives another class of the table."""
    rows = {tuple(row): c for c, row in enumerate(CLASS_TABLE)}
    row = CLASS_TABLE[label]
    targets = []
    for slot in range(len(PART_NAMES)):
        for other in range(len(PART_VARIANTS[PART_NAMES[slot]])):
            changed = row[:slot] + (other,) + row[slot + 1:]
            if other != row[slot] and changed in rows:
                targets.append((slot, row[slot], other, rows[changed]))
    return targets


def variant_swaps(slot: int) -> Swaps:
    """For the variant probe of ``slot`` (whose labels are the slot's variants): every other variant."""
    count = len(PART_VARIANTS[PART_NAMES[slot]])
    return lambda variant: [(slot, variant, other, other) for other in range(count) if other != variant]


def slot_variants(labels: torch.Tensor, slot: int) -> torch.Tensor:
    """The variant of ``slot`` of every class label in ``labels``: the variant probes' labels."""
    return torch.tensor(CLASS_TABLE)[labels, slot]


@torch.no_grad()
def edit_outcomes(activations: torch.Tensor, labels: torch.Tensor, probe: torch.nn.Linear, edit: Edit,
                  swaps: Swaps = swap_targets) -> tuple[int, int]:
    """``(succeeded, tried)`` of ``edit`` over every swap (``swaps(label)``) of every image the probe
    gets right: ``activations (B, S, C)`` (S patches per image), the probe's ``labels (B,)``."""
    tried = succeeded = 0
    predicted = probe(activations.mean(1)).argmax(1)
    for image in range(activations.shape[0]):
        label = int(labels[image])
        if int(predicted[image]) != label:
            continue
        for slot, variant, other, target in swaps(label):
            edited = edit(activations[image], image, slot, variant, other)
            tried += 1
            succeeded += int(probe(edited.mean(0, keepdim=True)).argmax(1)) == target
    return succeeded, tried


def controls(activations: torch.Tensor, labels: torch.Tensor, probe: torch.nn.Linear, variant_probes: list[torch.nn.Linear],
             edit: Edit) -> dict[str, float]:
    """The class control (``control``, ``control_edits``: the class probe, :func:`swap_targets`) and
    the variant control (``variant_control``, ``variant_control_edits``: every slot's variant probe,
    :func:`variant_swaps`) of one ``edit``; class ``labels (B,)``; a rate with no edit is NaN."""
    succeeded, tried = edit_outcomes(activations, labels, probe, edit)
    outcomes = [edit_outcomes(activations, slot_variants(labels, slot), slot_probe, edit, variant_swaps(slot))
                for slot, slot_probe in enumerate(variant_probes)]
    variant_succeeded, variant_tried = sum(o[0] for o in outcomes), sum(o[1] for o in outcomes)
    return {"control": succeeded / tried if tried else float("nan"), "control_edits": tried,
            "variant_control": variant_succeeded / variant_tried if variant_tried else float("nan"),
            "variant_control_edits": variant_tried}


def supervised_edit(atoms: torch.Tensor, concepts: torch.Tensor, patches_per_image: int) -> Edit:
    """The supervised dictionary's edit; ``atoms (K, C)`` (:func:`~sparsex.dictionaries.supervised_dictionary`),
    ``concepts (B * S, K)`` the test patches' concepts."""

    def edit(x: torch.Tensor, image: int, slot: int, variant: int, other: int) -> torch.Tensor:
        source, target = variant_concept(slot, variant), variant_concept(slot, other)
        where = concepts[image * patches_per_image:(image + 1) * patches_per_image, source].to(x.dtype)[:, None]
        return x + where * (atoms[target] - atoms[source])

    return edit


def dictionary_edit(dictionary, codes: torch.Tensor, concepts: torch.Tensor, best_atom: list[int],
                    patches_per_image: int) -> Edit:
    """A learned dictionary's edit from its test ``codes (B * S, N)``, the patches' ``concepts`` and
    the best atom of every concept (:func:`~sparsex.dictionaries.grading.concept_recovery`)."""
    positive = concepts.to(codes.dtype)
    typical = (codes.T @ positive) / positive.sum(0).clamp_min(1)  # (N, K): m_(n, c)
    atoms = dictionary.dictionary() * dictionary.scale

    def edit(x: torch.Tensor, image: int, slot: int, variant: int, other: int) -> torch.Tensor:
        source, target = variant_concept(slot, variant), variant_concept(slot, other)
        a, b = best_atom[source], best_atom[target]
        if a == b or float(typical[a, source]) == 0:
            return x
        ratio = typical[b, target] / typical[a, source]
        code = codes[image * patches_per_image:(image + 1) * patches_per_image, a][:, None]
        return x + code * (ratio * atoms[b] - atoms[a])

    return edit
