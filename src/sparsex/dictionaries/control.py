"""Control: swap one part's variant inside an image's activations and see the probe follow.

For a test image of class ``y`` (that the probe classifies correctly), a part slot ``s`` and another
variant ``v'`` of it such that some class ``y'`` has exactly ``y``'s variants except ``v'`` at ``s``
(:func:`swap_targets`), the image's patch activations ``x_p`` are edited and the frozen linear probe
``logits = W mean_p x'_p + b`` (trained on the same pooled features) is read again; the edit
*succeeds* when the arg-max is ``y'``. The success rate is over all such (image, slot, variant)
triples (after Makelov et al., arXiv 2405.08366: editing by exchanging attribute features).

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


@torch.no_grad()
def control_success(activations: torch.Tensor, labels: torch.Tensor, probe: torch.nn.Linear, edit: Edit) -> dict[str, float]:
    """Success rate of ``edit`` over every swap of every correctly classified image:
    ``activations (B, S, C)`` (S patches per image), class ``labels (B,)``."""
    tried = succeeded = 0
    predicted = probe(activations.mean(1)).argmax(1)
    for image in range(activations.shape[0]):
        label = int(labels[image])
        if int(predicted[image]) != label:
            continue
        for slot, variant, other, target in swap_targets(label):
            edited = edit(activations[image], image, slot, variant, other)
            tried += 1
            succeeded += int(probe(edited.mean(0, keepdim=True)).argmax(1)) == target
    return {"control": succeeded / tried if tried else float("nan"), "control_edits": tried}


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
