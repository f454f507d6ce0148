"""An oracle: a part-world classifier whose decision rule is known, and its exact explanation.

For sanity checks of the protocols (:mod:`sparsex.partworld.protocols`) and of explainers: the
oracle's own evidence (:func:`oracle_explanation`) should score near 1, trivial maps should not.
"""

from __future__ import annotations

import functools
import itertools
import math
from collections.abc import Sequence

import torch
from torch import nn

from .classes import ABSENT, CLASS_TABLE
from .scene import Background, Pose, Scene, render_scene
from .shapes import ALL_VARIANTS, BODY_COLOUR, PART_NAMES

#: A class table (``table[c][k]``: class ``c``'s variant of slot ``k``, or ``ABSENT``).
_Table = tuple[tuple[int, ...], ...]

#: Variant colours closer than this (RGB distance) are merged into one colour cluster.
_LINK = 0.25
#: Clusters whose channels differ by less than this are achromatic (white, grey, black).
_ACHROMATIC = 0.1
#: Achromatic clusters lighter than this (every channel) are left out of the oracle.
_DARK = 0.15


def _used_variants(table: _Table) -> tuple[tuple[int, int], ...]:
    """The variants ``(slot, variant)`` some class of ``table`` has, sorted (absent slots left out;
    for :data:`CLASS_TABLE` every variant of :data:`~sparsex.partworld.shapes.VARIANTS`)."""
    return tuple(sorted({(k, v) for row in table for k, v in enumerate(row) if v != ABSENT}))


@functools.cache
def _colour_clusters(
    variants: tuple[tuple[int, int], ...],
) -> tuple[tuple[tuple[float, ...], ...], tuple[float, ...], dict[tuple[int, int], tuple[int, ...]]]:
    """Single-linkage clusters (RGB distance < 0.25) of the base colours of every layer of the
    ``variants`` ``(slot, variant index into ALL_VARIANTS)``: centres, spreads (largest member
    distance from the centre) and the clusters of each variant ``(slot, variant)``. Achromatic
    clusters other than black are left out: white is the light background's colour and dark grey
    the colour of the anti-aliased edges of every dark part."""
    layers = [((k, v), colour) for k, v in variants for _, colour in ALL_VARIANTS[PART_NAMES[k]][v].layers]
    group = list(range(len(layers)))
    for a, b in itertools.combinations(range(len(layers)), 2):
        if math.dist(layers[a][1], layers[b][1]) < _LINK:
            old, new = group[b], group[a]
            group = [new if g == old else g for g in group]
    centres, spreads = [], []
    owner: dict[tuple[int, int], tuple[int, ...]] = {variant: () for variant, _ in layers}
    for g in sorted(set(group)):
        members = [i for i in range(len(layers)) if group[i] == g]
        colours = [layers[i][1] for i in members]
        centre = tuple(sum(c[ch] for c in colours) / len(colours) for ch in range(3))
        if max(centre) - min(centre) < _ACHROMATIC and min(centre) > _DARK:
            continue
        for i in members:
            owner[layers[i][0]] += (len(centres),)
        centres.append(centre)
        spreads.append(max(math.dist(c, centre) for c in colours))
    return tuple(centres), tuple(spreads), owner


@functools.cache
def _nominal_areas(table: _Table = CLASS_TABLE, size: int = 128) -> dict[tuple[int, int], float]:
    """Visible area (fraction of the image) of every variant ``(slot, variant)`` of ``table`` on a
    creature of nominal pose (scale 1, upright, centred) without jitter or clutter."""
    areas = {}
    flat = Background((0.9, 0.9, 0.9), (0.9, 0.9, 0.9), 0.0, (0.0, 0.0), 0.0)
    for c, row in enumerate(table):
        variants = {slot: ALL_VARIANTS[slot][v] for slot, v in zip(PART_NAMES, row) if v != ABSENT}
        scene = Scene(index=0, split="test", label=c, class_name=f"class_{c:02d}",
                      variants={slot: variant.name for slot, variant in variants.items()},
                      pose=Pose((size / 2, size / 2), 1.0, 0.0, False), body_colour=BODY_COLOUR,
                      part_colours={slot: tuple(colour for _, colour in variant.layers) for slot, variant in variants.items()},
                      background=flat, clutter=(), dropped_parts=())
        masks = render_scene(scene, size, 0)["part_masks"]
        for k, v in enumerate(row):
            if v != ABSENT:
                areas[k, v] = float(masks[k].mean())
    return areas


class PartOracle(nn.Module):
    """A part-world classifier whose decision rule is known, for sanity checks.

    The variants' base colours are merged into colour clusters ``q`` (single linkage at RGB
    distance 0.25: e.g. the orange beak and the orange feet share one, so do the black eye,
    crest and tail; white and dark grey are left out, see :func:`_colour_clusters`). A pixel
    ``x_p`` matches cluster ``q`` softly, ``m_q(p) = sigmoid((r_q - ||x_p - mu_q||) / s)``, with
    centre ``mu_q``, radius ``r_q = spread_q + sqrt(3) * jitter`` (the part world's colour
    jitter) and softness ``s``. A cluster's pixels weigh ``w_q = mean_q' a_q' / a_q``, with ``a_q``
    the mean visible area of its variants on a nominal creature, so that a part's evidence does
    not grow with its typical size. With ``Q(c)`` the clusters of class ``c``'s variants,

    ``f_c(x) = sum_{q in Q(c)} w_q sum_p m_q(p) - bias * sum_{q in Q(c)} w_q``:

    the weighted pixel count of the class's colours, less a prior against classes with more
    colours (it decides between a class and one whose colours are a superset of its own). The
    logit is linear in the pixels' evidence, so :func:`oracle_explanation` (the summand) is its
    exact decomposition; it is differentiable (soft matches), so gradient explainers produce maps.

    ``table``: the class table (default :data:`CLASS_TABLE`; for another world pass its own,
    ``dataset.config.class_table``, so that the oracle has one logit per class of that world). The
    clusters are those of the variants some class of the table has; a slot a class does not have
    (:data:`~sparsex.partworld.classes.ABSENT`) contributes no cluster to ``Q(c)``.
    """

    def __init__(self, jitter: float = 0.05, softness: float = 0.01, bias: float = 1.0,
                 table: Sequence[Sequence[int]] = CLASS_TABLE) -> None:
        super().__init__()
        table = tuple(tuple(int(v) for v in row) for row in table)
        centres, spreads, owner = _colour_clusters(_used_variants(table))
        areas = _nominal_areas(table)
        mean_area = torch.zeros(len(centres), dtype=torch.float64)
        members = torch.zeros(len(centres), dtype=torch.float64)
        for variant, clusters in owner.items():
            for q in clusters:
                mean_area[q] += areas[variant]
                members[q] += 1
        mean_area /= members
        self.register_buffer("centres", torch.tensor(centres))
        self.register_buffer("radii", torch.tensor(spreads) + math.sqrt(3) * jitter)
        self.register_buffer("weights", (mean_area.mean() / mean_area).float())
        member = torch.zeros(len(table), len(centres))
        for c, row in enumerate(table):
            for k, v in enumerate(row):
                if v != ABSENT:
                    member[c, list(owner[k, v])] = 1.0
        self.register_buffer("member", member)
        self.softness = softness
        self.bias = bias

    def evidence(self, x: torch.Tensor) -> torch.Tensor:
        """Weighted soft matches ``w_q m_q(p)``: ``(B, Q, H, W)`` for images ``(B, 3, H, W)``."""
        diff = x[:, None, :, :, :] - self.centres[None, :, :, None, None]
        dist = (diff.square().sum(dim=2) + 1e-8).sqrt()
        match = torch.sigmoid((self.radii[None, :, None, None] - dist) / self.softness)
        return match * self.weights[None, :, None, None]

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.evidence(x).sum(dim=(2, 3)) @ self.member.T - self.bias * (self.member * self.weights).sum(dim=1)


@torch.no_grad()
def oracle_explanation(oracle: PartOracle, images: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
    """The oracle's own evidence for each target class: ``A[p] = sum_{q in Q(t)} w_q m_q(p)``
    ``(B, 1, H, W)`` — the pixels of the parts that decide for ``t`` (the present parts whose
    colour cluster belongs to ``t``'s variants; for the label, every part but the white wing,
    the dark grey beak and the grey feet, which the oracle cannot see), each weighted as in the
    oracle's logit, plus any clutter pixel of such a colour, which counts for the oracle too.
    ``images (B, 3, H, W)``, ``targets (B,)`` int64. Computed from the images, not the masks, so
    that it fits :func:`~sparsex.partworld.protocols.evaluate_parts`' ``explain(images, targets)``."""
    return (oracle.evidence(images) * oracle.member[targets][:, :, None, None]).sum(dim=1, keepdim=True)
