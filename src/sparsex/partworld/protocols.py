"""The part-world benchmark: the FunnyBirds evaluation protocols, batched, with every intervention
forwarded once.

Reference: R. Hesse, S. Schaub-Meyer, S. Roth, "FunnyBirds: A Synthetic Vision Dataset for a
Part-Based Analysis of Explainable AI Methods", ICCV 2023 (protocols as in its code release,
``evaluation_protocols.py``), on the part world of :mod:`sparsex.partworld`. Interventions are
rendered, not pasted (:meth:`PartWorld.render <sparsex.partworld.PartWorld.render>`).

Every protocol uses the world's own class table (``dataset.config.class_table``: the default
24-class :data:`~sparsex.partworld.classes.CLASS_TABLE`, or e.g. the ``parts-fine`` preset's,
where a class may lack some slots, :data:`~sparsex.partworld.classes.ABSENT`); the model must
output one logit per class of that table. Absent slots are never drawn, so they are never in
``P`` (the parts present on an image), and PC, DC, D and SD, which work on ``P``, need nothing
more; CSDC and TS read the table and are defined for absent slots as below.

Notation: an image ``x_i`` of class ``y_i`` with ``K = 6`` part slots and up to ``M`` clutter
objects; ``f_c(x)`` the model's logit of class ``c``; ``x_i \\ R`` the image re-rendered without the
parts / clutter objects ``R``; ``yhat_i = argmax_c f_c(x_i)``; ``A`` an attribution map ``(H, W)``
for a target class. Every protocol uses ``x_i`` as rendered by ``render(i)`` (the full scene: no
train-time part dropout), which is the item itself on the val and test splits.

- **Part importance** (:func:`part_importances`): ``imp_k = sum_p A[p] * D(mask_k)[p]`` with ``D``
  a ``5 x 5`` max-pool dilation; the map is used as given, *signed* (FunnyBirds sums the
  attribution as-is; a method that wants only positive evidence returns a non-negative map). The
  same for clutter objects with their masks. Part ``k`` is *important* at threshold ``tau`` iff
  ``imp_k > tau * sum_p A[p]`` (:func:`important_parts`).
- **Thresholds**: FunnyBirds' grid ``tau in linspace(0.01, 0.50, 80)`` (:data:`THRESHOLDS`).
- **accuracy**: ``mean_i [yhat_i = y_i and x_i does not abstain]`` (all logits equal: no evidence),
  beside the **abstention** fraction (:func:`~sparsex.metrics.accuracy_with_abstentions`).
- **BI** (background independence, a model property): over all pairs (image, present clutter
  object ``j``), ``o = f_y(x_i)``, ``n = f_y(x_i \\ {j})``; ``j`` is *relevant* iff
  ``|o - n| >= 0.05 |o|`` and ``o > n``; ``BI = 1 - #relevant / #pairs``.
- **CSDC** (controlled synthetic data check): for the correctly classified images, with the
  explanation for ``y_i`` and the important parts ``I``:
  ``max_{S in MS(y)} |S ∩ I| / |S|`` with ``MS(y)`` the inclusion-minimal sets of slots on which
  no other class has all of ``y``'s variants (:func:`minimal_sufficient_part_sets`); averaged.
  On a world whose class table has absent slots, ``MS(y)`` holds only slots ``y`` has, and an
  image whose class has no sufficient set (another class has all of its parts) is not scored.
- **PC** (preservation check): explanation for ``yhat_i``; ``[argmax f(x_i \\ (P \\ I)) = yhat_i]``
  (keep only the important parts; ``P`` = present parts); averaged over all images.
- **DC** (deletion check): ``[argmax f(x_i \\ I) != yhat_i]`` (with ``I`` empty the image is
  unchanged and DC is 0); averaged over all images.
- **D** (distractibility): explanation for ``y_i``. An item (present part or clutter object) ``r``
  is *irrelevant* iff ``|o - n_r| < 0.05 |o|`` or ``o < n_r`` (``n_r = f_y(x_i \\ {r})``). With
  ``I`` the important items (parts and clutter objects, same rule), the image scores
  ``1 - |I ∩ Irr| / |Irr|``; images without irrelevant items are skipped; averaged.
- **completeness** ``(tau) = ((CSDC + PC + DC) / 3 + D) / 2``; the best ``tau`` of the grid
  (the first on ties, as FunnyBirds) is reported with the four protocols at that ``tau``.
- **correctness** = SD (single deletion): per image, the Spearman rank correlation ``rho``
  (:func:`spearman`) between the part importances (explanation for ``y_i``) and the logit drops
  ``f_y(x_i) - f_y(x_i \\ {k})``; the image scores ``(rho + 1) / 2``; images whose correlation is
  undefined (a constant vector) are skipped; averaged.
- **contrastivity** = TS (target sensitivity): for class ``y`` two other classes ``c1, c2`` whose
  overlaps with ``y`` (slots both classes have, with equal variants) ``O1, O2`` are nonempty
  and disjoint (:func:`contrast_pair`). The image is scored only when the model agrees:
  ``f_c1(x \\ O1) < f_c1(x \\ O2)`` and ``f_c2(x \\ O2) < f_c2(x \\ O1)``. Then, with ``imp^c``
  the part importances of the explanation for class ``c``, it gets two binary scores
  ``[imp^c1(O1) > imp^c2(O1)]`` and ``[imp^c2(O2) > imp^c1(O2)]`` (``imp(O) = sum_{k in O} imp_k``);
  TS is the mean of all binary scores.

Every score is higher-is-better and lies in ``[0, 1]``; a score with nothing to average is NaN
(and its count says so). :func:`evaluate_parts` collects every intervention all protocols need,
forwards each once through an :class:`~sparsex.partworld.interventions.InterventionCache`
(shared between explainers of one model), then scores.
"""

from __future__ import annotations

import functools
import itertools
import math
import operator
from collections.abc import Callable, Iterable, Sequence
from dataclasses import asdict, dataclass, field
from typing import Any, ClassVar

import torch
import torch.nn.functional as F
from torch import nn

from ..checks import check_indices, check_int, check_tensor
from ..errors import InputError
from ..inference import DEFAULT_BATCH, frozen
from ..metrics.accuracy import accuracy_with_abstentions
from ..metrics.base import Metric
from ..progress import progress_bar
from .classes import ABSENT, CLASS_TABLE
from .dataset import PartWorld
from .interventions import InterventionCache, Key, intervention_key, resolve_cache
from .shapes import NUM_PARTS

#: ``explain(images (B, 3, H, W), targets (B,) int64) -> maps (B, 1, H, W)``.
Explain = Callable[[torch.Tensor, torch.Tensor], torch.Tensor]

#: FunnyBirds' threshold grid (``np.linspace(0.01, 0.50, num=80)`` in its explainer wrapper).
THRESHOLDS = torch.linspace(0.01, 0.50, 80, dtype=torch.float64)
#: FunnyBirds' relative logit change below which an item counts as irrelevant (BI and D).
RELEVANCE = 0.05


# ----------------------------------------------------------------------------------------------
# Checks.
# ----------------------------------------------------------------------------------------------


def _check_thresholds(thresholds: Sequence[float] | torch.Tensor | None) -> torch.Tensor:
    if thresholds is None:
        return THRESHOLDS.clone()
    if isinstance(thresholds, torch.Tensor) and (thresholds.is_complex() or thresholds.dtype == torch.bool):
        raise InputError(f"thresholds must be real numbers, got a tensor of dtype {thresholds.dtype}")
    try:
        taus = torch.as_tensor(thresholds, dtype=torch.float64).cpu()
    except (TypeError, ValueError, RuntimeError):
        raise InputError(f"thresholds must be a 1-D sequence of numbers, got {type(thresholds).__name__}") from None
    if taus.dim() != 1 or taus.numel() == 0 or not torch.isfinite(taus).all():
        raise InputError(f"thresholds must be a non-empty 1-D sequence of finite numbers, got shape {tuple(taus.shape)}")
    return taus


def _check_dilation(dilation: int) -> int:
    dilation = check_int(dilation, "dilation", 1)
    if dilation % 2 == 0:
        raise InputError(f"dilation must be odd (1: no dilation), got {dilation}")
    return dilation


#: A class table: ``table[c][k]`` is class ``c``'s variant index of part slot ``k`` (``K = 6``
#: slots), or :data:`~sparsex.partworld.classes.ABSENT` where class ``c`` does not have the slot.
Table = tuple[tuple[int, ...], ...]


def _check_table(table: Any) -> Table:
    """``table`` as a tuple of rows of ``K`` ints (variant indices >= 0, or ``ABSENT``), >= 2 rows."""
    if table is CLASS_TABLE:
        return table
    try:
        rows = tuple(tuple(operator.index(v) for v in row) for row in table)
    except TypeError:
        raise InputError(f"table must be a class table: a sequence of rows of {NUM_PARTS} integer variant indices "
                         f"(or ABSENT = {ABSENT}), got {type(table).__name__}") from None
    if len(rows) < 2 or any(len(row) != NUM_PARTS for row in rows):
        raise InputError(f"table must have at least 2 rows (classes) of {NUM_PARTS} variant indices (one per part slot), "
                         f"got {len(rows)} rows of lengths {sorted({len(row) for row in rows})}")
    if any(v < 0 and v != ABSENT for row in rows for v in row):
        raise InputError(f"table entries must be variant indices >= 0 or ABSENT ({ABSENT})")
    return rows


def _check_label(label: Any, table: Table = CLASS_TABLE) -> int:
    return check_int(label, f"label (a class of the part world's {len(table)}-class table)", 0, len(table) - 1)


def _as_maps(maps: Any, name: str = "maps") -> torch.Tensor:
    """Attribution maps ``(B, 1, H, W)`` or ``(B, H, W)`` as ``(B, H, W)``, finite floats."""
    if isinstance(maps, torch.Tensor) and maps.dim() == 4 and maps.shape[1] == 1:
        maps = maps[:, 0]
    if not isinstance(maps, torch.Tensor) or maps.dim() != 3:
        got = tuple(maps.shape) if isinstance(maps, torch.Tensor) else type(maps).__name__
        raise InputError(f"{name} must have shape (B, 1, H, W) or (B, H, W), got {got}")
    return check_tensor(maps, name, "(B, H, W)")


# ----------------------------------------------------------------------------------------------
# Part importances and the class table.
# ----------------------------------------------------------------------------------------------


@torch.no_grad()
def part_importances(maps: torch.Tensor, part_masks: torch.Tensor, dilation: int = 5) -> torch.Tensor:
    """Importance of each masked region: ``imp[b, k] = sum_p A_b[p] * D(mask_bk)[p]``, with ``D``
    a ``dilation x dilation`` max-pool (stride 1; FunnyBirds: 5 x 5; 1: none).

    ``maps (B, H, W)`` or ``(B, 1, H, W)`` attributions, used as given (signed: FunnyBirds sums
    the attribution as-is); ``part_masks (B, K, H, W)`` bool — the item's ``part_masks`` for the
    parts, its ``background_masks`` for the clutter objects. Returns ``(B, K)`` in the maps'
    dtype, on their device. FunnyBirds' 5 x 5 is meant for its 256-pixel images; on much smaller
    images it is wider than the small parts (an eye is about 10 pixels at 64 x 64), and a
    smaller dilation keeps neighbouring parts apart.
    """
    maps = _as_maps(maps)
    if not isinstance(part_masks, torch.Tensor) or part_masks.dim() != 4 or part_masks.dtype != torch.bool:
        got = f"{_shape(part_masks)} {part_masks.dtype}" if isinstance(part_masks, torch.Tensor) else _shape(part_masks)
        raise InputError(f"part_masks must be a bool tensor of shape (B, K, H, W), got {got}")
    b, k, h, w = part_masks.shape
    if (b, h, w) != tuple(maps.shape):
        raise InputError(f"part_masks {tuple(part_masks.shape)} do not match the maps {tuple(maps.shape)}")
    dilation = _check_dilation(dilation)
    if k == 0:
        return maps.new_zeros(b, 0)
    masks = part_masks.to(device=maps.device, dtype=maps.dtype)
    if dilation > 1:
        masks = F.max_pool2d(masks, dilation, stride=1, padding=dilation // 2)
    return torch.einsum("bkhw,bhw->bk", masks, maps)


def important_parts(importances: torch.Tensor, totals: torch.Tensor, thresholds: torch.Tensor) -> torch.Tensor:
    """FunnyBirds' importance test: ``important[b, t, k] = imp[b, k] > tau_t * total[b]``.

    ``importances (B, K)``, ``totals (B,)`` (the map summed over the image), ``thresholds (T,)``.
    Returns ``(B, T, K)`` bool.
    """
    check_tensor(importances, "importances", "(B, K)")
    check_tensor(totals, "totals", "(B)")
    if totals.shape[0] != importances.shape[0]:
        raise InputError(f"totals {tuple(totals.shape)} do not match the importances {tuple(importances.shape)}")
    taus = _check_thresholds(thresholds)
    imp = importances.double()
    return imp[:, None, :] > taus.to(imp)[None, :, None] * totals.double()[:, None, None]


def _shared(a: Sequence[int], b: Sequence[int]) -> frozenset[int]:
    """The slots two classes share: both have the slot, with the same variant."""
    return frozenset(k for k in range(NUM_PARTS) if a[k] != ABSENT and a[k] == b[k])


@functools.cache
def _minimal_sets(label: int, table: Table) -> tuple[frozenset[int], ...]:
    row = table[label]
    own = [k for k in range(NUM_PARTS) if row[k] != ABSENT]
    others = [r for c, r in enumerate(table) if c != label]
    sufficient = [
        frozenset(s)
        for size in range(1, len(own) + 1)
        for s in itertools.combinations(own, size)
        if all(any(other[k] != row[k] for k in s) for other in others)
    ]
    return tuple(s for s in sufficient if not any(t < s for t in sufficient))


def minimal_sufficient_part_sets(label: int, table: Sequence[Sequence[int]] = CLASS_TABLE) -> tuple[frozenset[int], ...]:
    """FunnyBirds' minimal sufficient part sets of class ``label``: the inclusion-minimal sets
    ``S`` of part slots such that no other class of ``table`` (default :data:`CLASS_TABLE`; a
    world's own is ``dataset.config.class_table``) has ``label``'s variant on every slot of ``S``
    (brute force over the ``2^6`` subsets; cached per class and table).

    Absent slots (:data:`~sparsex.partworld.classes.ABSENT`): ``S`` is made only of slots that
    ``label`` has (a slot it does not have is never part of its evidence: nothing of it is drawn),
    and another class matches ``label`` on a slot only where it has the same (present) variant —
    a class that lacks the slot differs there. So a class whose present slots all match another
    class's (the other has a superset of its parts) has no sufficient set: the result is empty,
    and CSDC does not score its images (nothing an explanation can point to tells the two apart).
    """
    table = _check_table(table)
    return _minimal_sets(_check_label(label, table), table)


@functools.cache
def _pair(label: int, table: Table) -> tuple[int, int, frozenset[int], frozenset[int]] | None:
    row = table[label]
    overlap = {c: _shared(row, r) for c, r in enumerate(table) if c != label}
    candidates = [
        (-min(len(overlap[a]), len(overlap[b])), -len(overlap[a]) - len(overlap[b]), a, b)
        for a, b in itertools.combinations(sorted(overlap), 2)
        if overlap[a] and overlap[b] and not overlap[a] & overlap[b]
    ]
    if not candidates:
        return None
    *_, a, b = min(candidates)
    return a, b, overlap[a], overlap[b]


def contrast_pair(label: int,
                  table: Sequence[Sequence[int]] = CLASS_TABLE) -> tuple[int, int, frozenset[int], frozenset[int]] | None:
    """The two classes the target-sensitivity protocol contrasts on images of class ``label``.

    FunnyBirds takes two classes at distance 3 of its 5 parts (two shared parts each) whose
    overlaps with the image's class are disjoint. With 6 slots the rule here is: among the pairs
    ``c1 < c2`` of other classes of ``table`` (default :data:`CLASS_TABLE`; a world's own is
    ``dataset.config.class_table``) whose overlaps ``O1, O2`` with ``label`` (slots with equal
    variants) are nonempty and disjoint, take the one with the largest ``min(|O1|, |O2|)``, then
    the largest ``|O1| + |O2|``, then the smallest ``(c1, c2)``. Returns ``(c1, c2, O1, O2)``, or
    ``None`` when no such pair exists (every class of :data:`CLASS_TABLE` has one).

    Absent slots (:data:`~sparsex.partworld.classes.ABSENT`): an overlap holds only slots that
    both classes have, with the same variant (two classes that both lack a slot do not share it:
    there is nothing to remove or attribute), so ``O1`` and ``O2`` are always parts drawn on the
    image of ``label`` and the protocol's removals and importances are defined as on the default
    world.
    """
    table = _check_table(table)
    return _pair(_check_label(label, table), table)


# ----------------------------------------------------------------------------------------------
# Rank correlation.
# ----------------------------------------------------------------------------------------------


def _average_ranks(x: torch.Tensor) -> torch.Tensor:
    """Ranks 1..n along the last dimension; tied values share the mean of their ranks."""
    less = (x[..., None, :] < x[..., :, None]).sum(dim=-1)
    equal = (x[..., None, :] == x[..., :, None]).sum(dim=-1)
    return less.double() + (equal.double() + 1) / 2


def spearman(x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
    """Spearman's rank correlation along the last dimension: the Pearson correlation
    ``sum (r - mean r)(s - mean s) / sqrt(sum (r - mean r)^2 sum (s - mean s)^2)`` of the ranks
    ``r`` of ``x`` and ``s`` of ``y``, ties given their average rank (as ``scipy.stats.spearmanr``).

    ``x, y (..., n)`` real. Returns ``(...)`` float64 on their device; NaN where either vector
    is constant (the correlation is undefined).
    """
    for name, t in (("x", x), ("y", y)):
        if not isinstance(t, torch.Tensor) or t.dim() == 0 or t.is_complex() or t.dtype == torch.bool:
            raise InputError(f"{name} must be a real tensor of shape (..., n), got {_shape(t)}")
        if t.is_floating_point() and torch.isnan(t).any():
            raise InputError(f"{name} contain NaN values")
    if x.shape != y.shape:
        raise InputError(f"x and y must have one shape (..., n), got {tuple(x.shape)} and {tuple(y.shape)}")
    rx = _average_ranks(x)
    ry = _average_ranks(y)
    rx = rx - rx.mean(dim=-1, keepdim=True)
    ry = ry - ry.mean(dim=-1, keepdim=True)
    den = (rx.square().sum(dim=-1) * ry.square().sum(dim=-1)).sqrt()
    rho = (rx * ry).sum(dim=-1) / den
    return torch.where(den > 0, rho, torch.full_like(rho, math.nan))


def _shape(x: Any) -> Any:
    return tuple(x.shape) if isinstance(x, torch.Tensor) else type(x).__name__


# ----------------------------------------------------------------------------------------------
# The protocols.
# ----------------------------------------------------------------------------------------------


@dataclass
class PartsResult:
    """The part-world scores of one explainer (see the module docstring).

    ``metrics``: flat dict of plain numbers — ``accuracy``, ``bi``, ``csdc``, ``pc``, ``dc``,
    ``distractibility`` (these four at ``completeness_tau``), ``completeness`` (the best over
    the grid), ``completeness_tau``, ``correctness`` (SD), ``contrastivity`` (TS), and the counts
    ``images``, ``bi_objects`` (image-object pairs), ``csdc_images`` (correctly classified, of a
    class with a minimal sufficient part set: every class of the default table has one),
    ``distractibility_images`` / ``distractibility_skipped`` (images with / without an
    irrelevant item), ``correctness_images`` / ``correctness_skipped`` (undefined correlation),
    ``contrastivity_images`` / ``contrastivity_skipped_model`` (the model does not meet the
    protocol's assumption) / ``contrastivity_skipped_no_pair``. ``curves``: per threshold, lists
    ``tau``, ``csdc``, ``pc``, ``dc``, ``distractibility``, ``completeness``.
    :func:`evaluate_parts_model` fills only ``accuracy``, ``bi``, ``images`` and ``bi_objects``.
    """

    metrics: dict[str, float | int]
    curves: dict[str, list[float]] = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def _mean(values: torch.Tensor, dim: int = 0) -> torch.Tensor:
    """Mean over ``dim`` (NaN where there is nothing to average)."""
    if values.shape[dim] == 0:
        shape = list(values.shape)
        del shape[dim]
        return torch.full(shape, math.nan, dtype=torch.float64)
    return values.double().mean(dim=dim)


def _bits(code: int) -> frozenset[int]:
    return frozenset(k for k in range(NUM_PARTS) if code >> k & 1)


_POWERS = 1 << torch.arange(NUM_PARTS)


@dataclass
class _Originals:
    """What the protocols keep per image (CPU): labels ``(N,)``, logits ``(N, C)``, present
    parts ``(N, 6)`` and clutter objects ``(N, M)``."""

    indices: list[int]
    labels: torch.Tensor
    logits: torch.Tensor
    parts: torch.Tensor
    clutter: torch.Tensor

    def key(self, n: int, parts: Iterable[int] = (), clutter: Iterable[int] = ()) -> Key:
        """The key of image ``n`` without the present ones among ``parts`` and ``clutter``."""
        present = self.parts[n]
        objects = self.clutter[n]
        return intervention_key(self.indices[n], (k for k in parts if present[k]), (j for j in clutter if objects[j]))

    def single_keys(self) -> tuple[list[tuple[int, int]], list[Key], list[tuple[int, int]], list[Key]]:
        """Single removals: ``(n, k)`` and keys for every present part, then for every present
        clutter object."""
        part_pos = [(n, k) for n, k in self.parts.nonzero().tolist()]
        clutter_pos = [(n, j) for n, j in self.clutter.nonzero().tolist()]
        return (part_pos, [self.key(n, [k]) for n, k in part_pos],
                clutter_pos, [self.key(n, clutter=[j]) for n, j in clutter_pos])


def _items_tensors(items: list[dict[str, Any]]) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]:
    labels = torch.tensor([int(item["label"]) for item in items], dtype=torch.long)
    return (labels, torch.stack([item["parts_present"] for item in items]).bool(),
            torch.stack([item["background_present"] for item in items]).bool(), torch.stack([item["image"] for item in items]))


def _explain(explain: Explain, images: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
    """``explain(images, targets)`` checked: maps ``(B, H, W)``, finite, detached."""
    b, _, h, w = images.shape
    maps = _as_maps(explain(images, targets.to(images.device)), "explain(images, targets)'s maps")
    if tuple(maps.shape) != (b, h, w):
        raise InputError(f"explain(images, targets) must return maps (B, 1, H, W) = {(b, 1, h, w)} for images "
                         f"{tuple(images.shape)}, got {tuple(maps.shape)}")
    return maps.detach()


def _importances(maps: torch.Tensor, masks: torch.Tensor, dilation: int) -> torch.Tensor:
    return part_importances(maps, masks, dilation).double().cpu()


def _after_removal(orig: _Originals, cache: InterventionCache, positions: list[tuple[int, int]], keys: list[Key],
                   width: int) -> torch.Tensor:
    """Label logits ``(N, width)`` after the single removals ``keys`` of the items at
    ``positions`` ``(image row, item)``; NaN where nothing was removed (absent items)."""
    out = torch.full((len(orig.indices), width), math.nan, dtype=torch.float64)
    for (row, col), values in zip(positions, cache.fetch(keys).double()):
        out[row, col] = values[orig.labels[row]]
    return out


def _label_logit(orig: _Originals) -> torch.Tensor:
    return orig.logits.double().gather(1, orig.labels[:, None]).squeeze(1)


def _irrelevant(original: torch.Tensor, removed: torch.Tensor) -> torch.Tensor:
    """FunnyBirds: removing the item changes the label logit by less than 5% or raises it (NaN,
    an absent item, is never irrelevant)."""
    o = original[:, None]
    return ((o - removed).abs() < RELEVANCE * o.abs()) | (o < removed)


def _model_scores(orig: _Originals, clutter_logits: torch.Tensor) -> dict[str, float | int]:
    original = _label_logit(orig)[:, None]
    present = ~clutter_logits.isnan()
    relevant = ((original - clutter_logits).abs() >= RELEVANCE * original.abs()) & (original > clutter_logits) & present
    pairs = int(present.sum())
    return {
        **accuracy_with_abstentions(orig.logits, orig.labels),
        "bi": 1.0 - relevant.sum().item() / pairs if pairs else math.nan,
        "images": len(orig.indices),
        "bi_objects": pairs,
    }


def _load_originals(cache: InterventionCache, indices: list[int]) -> _Originals:
    labels, logits, parts, clutter = [], [], [], []
    step = cache.internal_batch_size
    for start in progress_bar(range(0, len(indices), step), desc="images", unit="batch", disable=not cache.progress):
        items, out = cache.originals(indices[start:start + step])
        y, p, c, _ = _items_tensors(items)
        labels.append(y)
        logits.append(out)
        parts.append(p)
        clutter.append(c)
    return _Originals(indices, torch.cat(labels), torch.cat(logits), torch.cat(parts), torch.cat(clutter))


def evaluate_parts_model(model: nn.Module, dataset: PartWorld, indices: Sequence[int] | None = None,
                         internal_batch_size: int = DEFAULT_BATCH, cache: InterventionCache | None = None,
                         progress: bool = False) -> PartsResult:
    """The model-only part-world scores, no explainer: ``metrics`` holds ``accuracy`` and ``bi``
    (background independence) with the counts ``images`` and ``bi_objects`` (see the module
    docstring); ``curves`` is empty. Forwards each image and each single clutter removal once
    (through ``cache`` when given, so that :func:`evaluate_parts` reuses them)."""
    cache = resolve_cache(model, dataset, cache, internal_batch_size, progress)
    orig = _load_originals(cache, check_indices(indices, len(dataset)))
    _, _, clutter_pos, clutter_keys = orig.single_keys()
    return PartsResult(_model_scores(orig, _after_removal(orig, cache, clutter_pos, clutter_keys, orig.clutter.shape[1])))


def evaluate_parts(model: nn.Module, dataset: PartWorld, explain: Explain, indices: Sequence[int] | None = None,
                   thresholds: Sequence[float] | torch.Tensor | None = None, dilation: int = 5,
                   internal_batch_size: int = DEFAULT_BATCH, cache: InterventionCache | None = None,
                   progress: bool = False) -> PartsResult:
    """Every FunnyBirds protocol (module docstring) for one explainer of ``model``.

    ``explain(images (B, 3, H, W), targets (B,) int64) -> maps (B, 1, H, W)`` (or ``(B, H, W)``),
    e.g. ``lambda x, t: explainer.attribute(x, target=t)``; it is called on at most
    ``internal_batch_size`` images at a time, on the cache's device: for the labels, for the
    predictions where they differ, and for the contrast classes of the images the
    target-sensitivity protocol scores. ``indices``: the images (default: all); ``thresholds``:
    the ``tau`` grid (default :data:`THRESHOLDS`); ``dilation``: of the masks in
    :func:`part_importances`. Pass one ``cache`` (an :class:`InterventionCache` of this model and
    dataset) to several calls to forward each intervention once over all of them.

    Order of work: the images are rendered, forwarded and explained; then every intervention is
    collected — single removals of each present part and clutter object, the two removals of
    the target-sensitivity protocol, and the preservation / deletion removals of every threshold
    (distinct sets only) — and forwarded in batches; then everything is scored. The model is
    frozen (eval mode, no parameter gradients) throughout, explanations included.
    """
    cache = resolve_cache(model, dataset, cache, internal_batch_size, progress)
    indices = check_indices(indices, len(dataset))
    taus = _check_thresholds(thresholds)
    dilation = _check_dilation(dilation)
    step = check_int(internal_batch_size, "internal_batch_size", 1)
    if not callable(explain):
        raise InputError(f"explain must be a callable explain(images, targets) -> maps, got {type(explain).__name__}")
    with frozen(model):
        return _evaluate(cache, explain, indices, taus, dilation, step, progress)


@dataclass
class _Explained:
    """Per image (CPU, float64): part and clutter importances ``(N, 6)``, ``(N, M)`` and the
    map's total ``(N,)`` of the explanation for the label; part importances and total of the
    explanation for the prediction (the same where the prediction is the label)."""

    label_parts: torch.Tensor
    label_clutter: torch.Tensor
    label_total: torch.Tensor
    pred_parts: torch.Tensor
    pred_total: torch.Tensor


def _explain_images(cache: InterventionCache, explain: Explain, indices: list[int], dilation: int, step: int,
                    progress: bool) -> tuple[_Originals, _Explained]:
    """Render, forward and explain the images ``step`` at a time (for the label; for the
    prediction where it differs)."""
    chunks: list[tuple[torch.Tensor, ...]] = []
    for start in progress_bar(range(0, len(indices), step), desc="explanations", unit="batch", disable=not progress):
        items, logits = cache.originals(indices[start:start + step])
        labels, parts, clutter, images = _items_tensors(items)
        images = images.to(cache.device)
        part_masks = torch.stack([item["part_masks"] for item in items])
        maps = _explain(explain, images, labels)
        label_parts = _importances(maps, part_masks, dilation)
        label_clutter = _importances(maps, torch.stack([item["background_masks"] for item in items]), dilation)
        label_total = maps.double().sum(dim=(1, 2)).cpu()
        pred_parts, pred_total = label_parts.clone(), label_total.clone()
        predicted = logits.argmax(dim=1)
        differ = predicted != labels
        if differ.any():
            maps = _explain(explain, images[differ.to(images.device)], predicted[differ])
            pred_parts[differ] = _importances(maps, part_masks[differ], dilation)
            pred_total[differ] = maps.double().sum(dim=(1, 2)).cpu()
        chunks.append((labels, logits, parts, clutter, label_parts, label_clutter, label_total, pred_parts, pred_total))
    columns = [torch.cat(column) for column in zip(*chunks)]
    return _Originals(indices, *columns[:4]), _Explained(*columns[4:])


def _check_removals(orig: _Originals, explained: _Explained,
                    taus: torch.Tensor) -> tuple[torch.Tensor, dict[tuple[int, int], Key], dict[tuple[int, int], Key]]:
    """The important parts of the explanation for the prediction at every threshold, as bit
    codes ``(N, T)``, and the keys of the preservation check (remove the present parts that are
    not important) and the deletion check (remove the important ones) per ``(image, code)``."""
    important = important_parts(explained.pred_parts, explained.pred_total, taus) & orig.parts[:, None, :]
    codes = (important.long() * _POWERS).sum(dim=-1)
    present = (orig.parts.long() * _POWERS).sum(dim=-1).tolist()
    distinct = [(row, code) for row, values in enumerate(codes.tolist()) for code in sorted(set(values))]
    preserve = {(row, code): orig.key(row, _bits(present[row] & ~code)) for row, code in distinct}
    delete = {(row, code): orig.key(row, _bits(code)) for row, code in distinct}
    return codes, preserve, delete


def _contrast_removals(orig: _Originals, table: Table) -> tuple[list, dict[int, tuple[Key, Key]]]:
    """Per image its :func:`contrast_pair` (or ``None``) and, where there is one, the keys
    without ``O1`` and without ``O2``."""
    pairs = [_pair(int(y), table) for y in orig.labels]
    keys = {row: (orig.key(row, pair[2]), orig.key(row, pair[3])) for row, pair in enumerate(pairs) if pair}
    return pairs, keys


def _csdc_rows(orig: _Originals, table: Table) -> torch.Tensor:
    """The images CSDC scores ``(N,)`` bool: correctly classified, of a class with a minimal
    sufficient part set (every class of :data:`CLASS_TABLE` has one)."""
    has_sets = torch.tensor([bool(_minimal_sets(int(y), table)) for y in orig.labels], dtype=torch.bool)
    return (orig.logits.argmax(dim=1) == orig.labels) & has_sets


def _csdc_curve(orig: _Originals, explained: _Explained, taus: torch.Tensor, table: Table) -> torch.Tensor:
    """CSDC ``(T,)``: over the correctly classified images (of a class with a sufficient set),
    ``max_S |S ∩ I| / |S|``."""
    sets = [_minimal_sets(int(y), table) for y in orig.labels]
    width = max(1, max(len(s) for s in sets))
    members = torch.zeros(len(sets), width, NUM_PARTS, dtype=torch.float64)
    sizes = torch.ones(len(sets), width, dtype=torch.float64)  # padding: empty sets score 0
    for row, class_sets in enumerate(sets):
        for col, s in enumerate(class_sets):
            members[row, col, list(s)] = 1.0
            sizes[row, col] = len(s)
    important = important_parts(explained.label_parts, explained.label_total, taus) & orig.parts[:, None, :]
    score = (torch.einsum("ntk,nsk->nts", important.double(), members) / sizes[:, None, :]).amax(dim=-1)
    return _mean(score[_csdc_rows(orig, table)])


def _check_curves(orig: _Originals, cache: InterventionCache, codes: torch.Tensor, preserve: dict[tuple[int, int], Key],
                  delete: dict[tuple[int, int], Key]) -> tuple[torch.Tensor, torch.Tensor]:
    """PC and DC ``(T,)``: the fractions of images whose prediction is kept when only the
    important parts are kept, and changed when they are removed."""
    predicted = orig.logits.argmax(dim=1)[:, None]

    def after(keys: dict[tuple[int, int], Key]) -> torch.Tensor:
        classes = dict(zip(keys, cache.fetch(list(keys.values())).argmax(dim=1).tolist()))
        return torch.tensor([[classes[row, code] for code in values] for row, values in enumerate(codes.tolist())])

    return _mean((after(preserve) == predicted).double()), _mean((after(delete) != predicted).double())


def _distractibility_curve(orig: _Originals, explained: _Explained, taus: torch.Tensor, part_logits: torch.Tensor,
                           clutter_logits: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """D ``(T,)`` over the images with an irrelevant item, and which images those are ``(N,)``."""
    original = _label_logit(orig)
    irrelevant = torch.cat([_irrelevant(original, part_logits), _irrelevant(original, clutter_logits)], dim=1)
    importances = torch.cat([explained.label_parts, explained.label_clutter], dim=1)
    important = important_parts(importances, explained.label_total, taus)
    scored = irrelevant.any(dim=1)
    caught = (important & irrelevant[:, None, :]).sum(dim=-1) / irrelevant.sum(dim=1).clamp_min(1)[:, None]
    return _mean(1.0 - caught[scored].double()), scored


def _single_deletion(orig: _Originals, explained: _Explained, part_logits: torch.Tensor) -> torch.Tensor:
    """Per image the Spearman correlation ``(N,)`` of the label explanation's part importances
    and the label logit's drops, over the present parts (NaN where undefined)."""
    drops = _label_logit(orig)[:, None] - part_logits
    rho = torch.full((len(orig.indices),), math.nan, dtype=torch.float64)
    for pattern in orig.parts.unique(dim=0):
        rows = (orig.parts == pattern).all(dim=1)
        rho[rows] = spearman(explained.label_parts[rows][:, pattern], drops[rows][:, pattern])
    return rho


def _target_sensitivity(cache: InterventionCache, explain: Explain, orig: _Originals, pairs: list,
                        keys: dict[int, tuple[Key, Key]], dilation: int, step: int) -> tuple[torch.Tensor, int]:
    """The TS binary scores of the images where the model meets the protocol's assumption, and
    the number of those images; their explanations for ``c1`` and ``c2`` are computed here."""
    rows = []
    for row, (without1, without2) in keys.items():
        c1, c2 = pairs[row][:2]
        logits1, logits2 = cache.fetch([without1, without2])
        if logits1[c1] < logits2[c1] and logits2[c2] < logits1[c2]:
            rows.append(row)
    scores = [torch.zeros(0, dtype=torch.float64)]
    for start in range(0, len(rows), step):
        chunk = rows[start:start + step]
        items, _ = cache.originals([orig.indices[row] for row in chunk])
        images = torch.stack([item["image"] for item in items]).to(cache.device)
        part_masks = torch.stack([item["part_masks"] for item in items])
        overlaps = torch.zeros(2, len(chunk), NUM_PARTS, dtype=torch.float64)
        for r, row in enumerate(chunk):
            overlaps[0, r, list(pairs[row][2])] = 1.0
            overlaps[1, r, list(pairs[row][3])] = 1.0
        imp = [_importances(_explain(explain, images, torch.tensor([pairs[row][c] for row in chunk])), part_masks, dilation)
               for c in (0, 1)]
        scores.append(((imp[0] * overlaps[0]).sum(dim=1) > (imp[1] * overlaps[0]).sum(dim=1)).double())
        scores.append(((imp[1] * overlaps[1]).sum(dim=1) > (imp[0] * overlaps[1]).sum(dim=1)).double())
    return torch.cat(scores), len(rows)


def _evaluate(cache: InterventionCache, explain: Explain, indices: list[int], taus: torch.Tensor, dilation: int,
              step: int, progress: bool) -> PartsResult:
    # 1. Images, predictions and explanations.
    orig, explained = _explain_images(cache, explain, indices, dilation, step, progress)
    # 2. Every intervention, requested at once and forwarded in batches.
    table = _check_table(cache.dataset.config.class_table)
    part_pos, part_keys, clutter_pos, clutter_keys = orig.single_keys()
    pairs, contrast_keys = _contrast_removals(orig, table)
    codes, preserve, delete = _check_removals(orig, explained, taus)
    cache.request(part_keys + clutter_keys + [key for both in contrast_keys.values() for key in both]
                  + list(preserve.values()) + list(delete.values()))
    cache.compute()
    # 3. Scores.
    part_logits = _after_removal(orig, cache, part_pos, part_keys, NUM_PARTS)
    clutter_logits = _after_removal(orig, cache, clutter_pos, clutter_keys, orig.clutter.shape[1])
    scores = _model_scores(orig, clutter_logits)
    csdc = _csdc_curve(orig, explained, taus, table)
    pc, dc = _check_curves(orig, cache, codes, preserve, delete)
    distractibility, scored = _distractibility_curve(orig, explained, taus, part_logits, clutter_logits)
    completeness = ((csdc + pc + dc) / 3 + distractibility) / 2
    defined = ~completeness.isnan()
    best = int(torch.where(defined, completeness, -math.inf).argmax()) if defined.any() else None
    rho = _single_deletion(orig, explained, part_logits)
    ts, ts_images = _target_sensitivity(cache, explain, orig, pairs, contrast_keys, dilation, step)

    def at_best(curve: torch.Tensor) -> float:
        return math.nan if best is None else float(curve[best])

    n = len(indices)
    scores.update({
        "csdc": at_best(csdc),
        "pc": at_best(pc),
        "dc": at_best(dc),
        "distractibility": at_best(distractibility),
        "completeness": at_best(completeness),
        "completeness_tau": at_best(taus),
        "correctness": float(_mean(rho[~rho.isnan()] * 0.5 + 0.5)),
        "contrastivity": float(_mean(ts)),
        "csdc_images": int(_csdc_rows(orig, table).sum()),
        "distractibility_images": int(scored.sum()),
        "distractibility_skipped": n - int(scored.sum()),
        "correctness_images": int((~rho.isnan()).sum()),
        "correctness_skipped": int(rho.isnan().sum()),
        "contrastivity_images": ts_images,
        "contrastivity_skipped_model": len(contrast_keys) - ts_images,
        "contrastivity_skipped_no_pair": n - len(contrast_keys),
    })
    curves = {"tau": taus.tolist(), "csdc": csdc.tolist(), "pc": pc.tolist(), "dc": dc.tolist(),
              "distractibility": distractibility.tolist(), "completeness": completeness.tolist()}
    return PartsResult(scores, curves)


@dataclass(frozen=True)
class PartProtocols(Metric):
    """:func:`evaluate_parts` as a metric (settings at construction, data at call):
    ``PartProtocols(thresholds, dilation)(model, dataset, explain, indices=None, cache=None) -> PartsResult``.
    Every score in the result is higher-is-better."""

    thresholds: tuple[float, ...] = tuple(THRESHOLDS.tolist())
    dilation: int = 5
    internal_batch_size: int = DEFAULT_BATCH
    progress: bool = False
    name: ClassVar[str] = "parts"

    def __post_init__(self) -> None:
        _check_thresholds(self.thresholds)
        _check_dilation(self.dilation)
        check_int(self.internal_batch_size, "internal_batch_size", 1)

    def __call__(self, model: nn.Module, dataset: PartWorld, explain: Explain, indices: Sequence[int] | None = None,
                 cache: InterventionCache | None = None) -> PartsResult:
        return evaluate_parts(model, dataset, explain, indices, self.thresholds, self.dilation, self.internal_batch_size,
                              cache, self.progress)
