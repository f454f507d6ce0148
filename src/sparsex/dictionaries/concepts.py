"""Ground-truth concepts of the part world at the resolution of a feature map, and the supervised
reference dictionary built from them.

The concepts, in this order (:func:`concept_names`): every part slot x variant
(``beak=short_wide_orange``, ...: 6 x 4), every part slot regardless of its variant (``beak``, ...),
and the ``body``. A feature-map cell (a patch) *contains* a concept when at least ``min_cover`` of
the image area it covers is covered by the concept's mask: with ``m`` the part's (or body's) mask
and the cell's pixel block ``B``, ``coverage = |m ∩ B| / |B|`` (adaptive average pooling of the
mask onto the ``h x w`` grid). A slot's variant is the image's class's variant
(:data:`~sparsex.partworld.CLASS_TABLE`); a slot rendered away (train-time part dropout) has an
empty mask and so contains nothing.
"""

from __future__ import annotations

from typing import Any, Iterable

import torch
import torch.nn.functional as F

from ..checks import check_number
from ..errors import DataError, InputError
from ..partworld import CLASS_TABLE, PART_NAMES, PART_VARIANTS
from ..progress import progress_bar

NUM_VARIANT_CONCEPTS = sum(len(PART_VARIANTS[slot]) for slot in PART_NAMES)


def concept_names() -> list[str]:
    """``slot=variant`` for every slot and variant, then every slot, then ``body``."""
    return ([f"{slot}={variant}" for slot in PART_NAMES for variant in PART_VARIANTS[slot]] + list(PART_NAMES)
            + ["body"])


def variant_concept(slot: int, variant: int) -> int:
    """Index of concept ``PART_NAMES[slot] = PART_VARIANTS[...][variant]`` in :func:`concept_names`."""
    return sum(len(PART_VARIANTS[s]) for s in PART_NAMES[:slot]) + variant


def leaf_concepts() -> list[int]:
    """The concepts that do not contain other concepts: every slot x variant, and the body (the
    ones an atom's purity is measured against)."""
    return list(range(NUM_VARIANT_CONCEPTS)) + [NUM_VARIANT_CONCEPTS + len(PART_NAMES)]


def patch_concepts(part_masks: torch.Tensor, body_masks: torch.Tensor, labels: torch.Tensor, grid: tuple[int, int],
                   min_cover: float) -> torch.Tensor:
    """Which patch contains which concept: bool ``(B * h * w, num_concepts)``, rows image-major
    (the order of :func:`~sparsex.dictionaries.patches`), from ``part_masks (B, K, H, W)`` bool,
    ``body_masks (B, H, W)`` bool, class ``labels (B,)`` and the feature grid ``(h, w)``."""
    check_number(min_cover, "min_cover", 0, 1, low_open=True)
    if part_masks.dim() != 4 or part_masks.shape[1] != len(PART_NAMES) or body_masks.shape != (part_masks.shape[0],
                                                                                                 *part_masks.shape[2:]):
        raise InputError(f"part masks must be (B, {len(PART_NAMES)}, H, W) with body masks (B, H, W), got "
                         f"{tuple(part_masks.shape)} and {tuple(body_masks.shape)}")
    slot_cover = F.adaptive_avg_pool2d(part_masks.float(), grid) >= min_cover  # (B, K, h, w)
    body_cover = F.adaptive_avg_pool2d(body_masks[:, None].float(), grid)[:, 0] >= min_cover  # (B, h, w)
    table = torch.tensor(CLASS_TABLE)[labels]  # (B, K): variant of every slot
    variant_cover = [slot_cover[:, k] & (table[:, k] == v)[:, None, None]
                     for k, slot in enumerate(PART_NAMES) for v in range(len(PART_VARIANTS[slot]))]
    planes = variant_cover + [slot_cover[:, k] for k in range(len(PART_NAMES))] + [body_cover]
    return torch.stack(planes, dim=-1).reshape(-1, len(planes))


def dataset_concepts(dataset: Iterable[dict[str, Any]], grid: tuple[int, int], min_cover: float, name: str,
                     progress: bool = False) -> torch.Tensor:
    """:func:`patch_concepts` of every item of ``dataset`` (in order). A dataset whose items carry
    no part masks raises :class:`~sparsex.errors.DataError`: there is no ground truth to grade on."""
    rows = []
    for item in progress_bar(dataset, desc=f"concept masks {name}", unit="img", disable=not progress):
        if "part_masks" not in item or "body_mask" not in item:
            raise DataError(f"dataset {name!r} has no part masks, so a dictionary cannot be graded on it (ground truth "
                            f"exists for the part world only: --data parts); reconstruction, sparsity and galleries work")
        rows.append(patch_concepts(item["part_masks"][None], item["body_mask"][None], torch.tensor([item["label"]]), grid,
                                   min_cover))
    return torch.cat(rows)


def supervised_dictionary(activations: torch.Tensor, concepts: torch.Tensor) -> torch.Tensor:
    """The supervised reference dictionary (Makelov et al., arXiv 2405.08366: one atom per known
    attribute value): for every concept ``c``,

        ``u_c = mean_{p : c in p} x_p - mean_{p : c not in p} x_p``

    over patch activations ``x_p`` (``activations (P, C)``, ``concepts (P, num_concepts)`` bool).
    Returns ``(num_concepts, C)``; a concept that no patch (or every patch) contains has a NaN row."""
    if activations.shape[0] != concepts.shape[0]:
        raise InputError(f"{activations.shape[0]} activation rows but {concepts.shape[0]} concept rows")
    positive = concepts.T.to(activations.dtype)  # (K, P)
    negative = 1 - positive
    with torch.no_grad():
        mean_in = positive @ activations / positive.sum(1, keepdim=True)
        mean_out = negative @ activations / negative.sum(1, keepdim=True)
    return mean_in - mean_out
