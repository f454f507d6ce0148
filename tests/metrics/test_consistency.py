"""Consistency and stability (EvalProtoPNet with part masks): hand-computed cases, a brute-force
check of the region arithmetic, and the driver end to end on a fake head over a tiny part world."""

from __future__ import annotations

import math
from fractions import Fraction

import pytest
import torch
import torch.nn.functional as F
from torch import nn

from sparsex.errors import InputError
from sparsex.metrics import (
    DEFAULT_REGION,
    Consistency,
    Stability,
    collect_part_vectors,
    consistency,
    consistency_per_prototype,
    consistency_stability,
    part_frequencies,
    part_vectors,
    prototype_classes,
    stability,
    stability_per_prototype,
)
from sparsex.models import PrototypeOutput

# ----------------------------------------------------------------------------------------------
# part_vectors
# ----------------------------------------------------------------------------------------------

# An 8x8 image under a 2x2 feature map: cell (i, j) covers rows 4i..4i+3 and columns 4j..4j+3.
# part 0: the pixel (1, 1)              -> cell (0, 0)
# part 1: rows 4..7 of column 7 (4 px)  -> cell (1, 1)
# part 2: the pixel (3, 4)              -> cell (0, 1)
MASKS = torch.zeros(1, 3, 8, 8, dtype=torch.bool)
MASKS[0, 0, 1, 1] = True
MASKS[0, 1, 4:8, 7] = True
MASKS[0, 2, 3, 4] = True
# flat locations in the 2x2 map: 0 = (0, 0), 1 = (0, 1), 2 = (1, 0), 3 = (1, 1)
LOCS = torch.tensor([[0, 1, 2, 3]])


def test_part_vectors_feature_cell():
    vecs = part_vectors(LOCS, (2, 2), MASKS, region=None)
    assert vecs.dtype == torch.bool and vecs.shape == (1, 4, 3)
    assert vecs[0].int().tolist() == [[1, 0, 0], [0, 0, 1], [0, 0, 0], [0, 1, 0]]
    # min_overlap = 2: only part 1 (4 pixels in cell (1, 1)) still counts
    assert part_vectors(LOCS, (2, 2), MASKS, region=None, min_overlap=2)[0].int().tolist() == [
        [0, 0, 0], [0, 0, 0], [0, 0, 0], [0, 1, 0]]
    assert part_vectors(LOCS, (2, 2), MASKS, region=None, min_overlap=5).sum() == 0


def test_part_vectors_region():
    # region 0.75: a 6x6 box centred on the cell centre, clipped to the image.
    # cell (0, 0), centre (2, 2): rows/cols [-1, 5) -> 0..4: parts 0 (1, 1) and 2 (3, 4)
    # cell (0, 1), centre (2, 6): rows 0..4, cols 3..7: part 2 (3, 4), part 1 at row 4, col 7
    # cell (1, 0), centre (6, 2): rows 3..7, cols 0..4: part 2 (3, 4)
    # cell (1, 1), centre (6, 6): rows 3..7, cols 3..7: parts 1 and 2
    vecs = part_vectors(LOCS, (2, 2), MASKS, region=0.75)
    assert vecs[0].int().tolist() == [[1, 0, 1], [0, 1, 1], [0, 0, 1], [0, 1, 1]]
    # region 1: an 8x8 box around the centre (2, 2) of cell (0, 0) is rows/cols [-2, 6), clipped
    # to 0..5: pixels (1, 1) and (3, 4) are in, column 7 is not
    assert part_vectors(LOCS, (2, 2), MASKS, region=1.0)[0, 0].int().tolist() == [1, 0, 1]
    # the default is EvalProtoPNet's 72/224: on 224 x 224 with a 7x7 map the box has 72 rows
    masks = torch.zeros(1, 1, 224, 224, dtype=torch.bool)
    masks[0, 0, :, 0] = True  # column 0
    centre = torch.tensor([[3 * 7 + 0]])  # cell (3, 0), centre x = 16: cols [-20, 52) -> 0..51
    assert part_vectors(centre, (7, 7), masks)[0, 0, 0]
    assert part_vectors(centre, (7, 7), masks, min_overlap=72)[0, 0, 0]  # rows 112-36 .. 112+35
    assert not part_vectors(centre, (7, 7), masks, min_overlap=73)[0, 0, 0]
    assert DEFAULT_REGION == 72 / 224


def _naive_part_vectors(locations, feature_size, masks, region, min_overlap):
    """Loops over pixels, exact (Fraction) box edges; a pixel is in when its centre is."""
    h, w = feature_size
    n, k, height, width = masks.shape
    out = torch.zeros(n, locations.shape[1], k, dtype=torch.bool)
    for a in range(n):
        for p in range(locations.shape[1]):
            i, j = divmod(int(locations[a, p]), w)
            if region is None:
                y0, y1 = Fraction(i * height, h), Fraction((i + 1) * height, h)
                x0, x1 = Fraction(j * width, w), Fraction((j + 1) * width, w)
            else:
                cy, cx = Fraction((2 * i + 1) * height, 2 * h), Fraction((2 * j + 1) * width, 2 * w)
                hy, hx = Fraction(region) * height / 2, Fraction(region) * width / 2
                y0, y1, x0, x1 = cy - hy, cy + hy, cx - hx, cx + hx
            rows = [r for r in range(height) if y0 <= r + Fraction(1, 2) < y1]
            cols = [c for c in range(width) if x0 <= c + Fraction(1, 2) < x1]
            for q in range(k):
                count = int(masks[a, q][rows][:, cols].sum()) if rows and cols else 0
                out[a, p, q] = count >= min_overlap
    return out


@pytest.mark.parametrize("region", [None, 0.3, 0.5, 1.0])
@pytest.mark.parametrize("min_overlap", [1, 3])
def test_part_vectors_match_brute_force(region, min_overlap):
    # 10x7 images under a 3x2 map: cells are 10/3 x 3.5 pixels (non-integer; region 0.5 puts a
    # box edge exactly on the pixel centre 3.5, which belongs to the box starting there)
    g = torch.Generator().manual_seed(1)
    masks = torch.rand(3, 4, 10, 7, generator=g) < 0.15
    locations = torch.randint(0, 6, (3, 5), generator=g)
    expected = _naive_part_vectors(locations, (3, 2), masks, region, min_overlap)
    assert torch.equal(part_vectors(locations, (3, 2), masks, region, min_overlap), expected)


# ----------------------------------------------------------------------------------------------
# prototype_classes, consistency, stability
# ----------------------------------------------------------------------------------------------


def test_prototype_classes():
    # 3 classes x 4 prototypes: p0 -> class 1; p1 max 0.0005 <= eps -> unused; p2 tie -> lowest
    # class 0; p3 -> class 2
    weights = torch.tensor([[0.1, 0.0, 0.2, 0.0],
                            [0.5, 0.0, 0.2, 0.0],
                            [0.0, 0.0005, 0.1, 2.0]])
    classes = prototype_classes(weights)
    assert classes.tolist() == [1, -1, 0, 2] and classes.dtype == torch.int64
    assert prototype_classes(weights, eps=0.0).tolist() == [1, 2, 0, 2]
    assert prototype_classes(weights, eps=0.3).tolist() == [1, -1, -1, 2]


LABELS = torch.tensor([0, 0, 0, 1, 1])
# p0, p1, p2 as in the comments below; p3 unused (-1); p4 of class 2, which has no image
CLASSES = torch.tensor([0, 1, 0, -1, 2])


def _vecs(rows: dict[int, list[list[int]]], fill: int = 1) -> torch.Tensor:
    """(5 images, 5 prototypes, 2 parts); entries not given are ``fill`` (they must not matter)."""
    vecs = torch.full((5, 5, 2), fill, dtype=torch.bool)
    for p, per_image in rows.items():
        for n, v in per_image:
            vecs[n, p] = torch.tensor(v, dtype=torch.bool)
    return vecs


# Images of class 0: 0, 1, 2; of class 1: 3, 4.
# p0 (class 0): [1,0] [1,1] [1,0]  -> frequencies [3/3, 1/3] -> max 1   >= 0.8: consistent
# p1 (class 1): [1,0] [0,1]        -> frequencies [1/2, 1/2] -> max 1/2 <  0.8: not
# p2 (class 0): [0,1] [0,1] [1,0]  -> frequencies [1/3, 2/3] -> max 2/3 <  0.8: not
# consistency = 1/3; with mu = 0.5 all three are consistent; with mu = 0.6, p0 and p2.
CLEAN = {
    0: [(0, [1, 0]), (1, [1, 1]), (2, [1, 0])],
    1: [(3, [1, 0]), (4, [0, 1])],
    2: [(0, [0, 1]), (1, [0, 1]), (2, [1, 0])],
}


@pytest.mark.parametrize("fill", [0, 1])
def test_consistency_hand_computed(fill):
    vecs = _vecs(CLEAN, fill)
    freq = part_frequencies(vecs, LABELS, CLASSES)
    assert torch.allclose(freq[:3], torch.tensor([[1, 1 / 3], [0.5, 0.5], [1 / 3, 2 / 3]], dtype=torch.float64))
    assert freq[3:].isnan().all()  # unused, and class without images
    per = consistency_per_prototype(vecs, LABELS, CLASSES)
    assert per[:3].tolist() == [1.0, 0.0, 0.0] and per[3:].isnan().all()
    assert consistency(vecs, LABELS, CLASSES) == pytest.approx(1 / 3)
    assert consistency(vecs, LABELS, CLASSES, mu=0.5) == 1.0
    assert consistency(vecs, LABELS, CLASSES, mu=0.6) == pytest.approx(2 / 3)
    assert Consistency()(vecs, LABELS, CLASSES) == pytest.approx(1 / 3)
    assert Consistency.higher_is_better and Consistency.name == "consistency"


def test_consistency_with_visibility():
    # Part 1 is not visible on image 2 (its mask is empty there, so no region can hold it).
    # p0 part 1: 1 hit over the 2 images where it is visible -> 1/2; still consistent via part 0
    # p2 part 1: 2 hits over 2 visible images -> 1 -> now consistent
    # p1 (class 1) is unchanged -> consistency = 2/3
    vecs = _vecs(CLEAN, 0)
    visible = torch.ones(5, 2, dtype=torch.bool)
    visible[2, 1] = False
    freq = part_frequencies(vecs, LABELS, CLASSES, visible)
    assert torch.allclose(freq[:3], torch.tensor([[1, 0.5], [0.5, 0.5], [1 / 3, 1]], dtype=torch.float64))
    assert consistency(vecs, LABELS, CLASSES, visible=visible) == pytest.approx(2 / 3)
    # a part seen on no image of the class has frequency 0 (EvalProtoPNet's max(1, .) denominator)
    visible[:3, 1] = False
    assert part_frequencies(vecs, LABELS, CLASSES, visible)[0].tolist() == [1.0, 0.0]
    assert Consistency(mu=0.8)(vecs, LABELS, CLASSES, visible) == pytest.approx(1 / 3)


@pytest.mark.parametrize("fill", [0, 1])
def test_stability_hand_computed(fill):
    # p0 (images 0-2): clean [1,0] [1,1] [1,0], noisy [1,0] [1,0] [1,0] -> 2/3 unchanged
    # p1 (images 3-4): clean [1,0] [0,1], noisy the same             -> 1
    # p2 (images 0-2): clean [0,1] [0,1] [1,0], noisy [1,0] [0,1] [0,0] -> 1/3
    # stability = (2/3 + 1 + 1/3) / 3 = 2/3; p3 (unused) and p4 (no image) are skipped, and the
    # images of other classes (set to the opposite of `fill` in the noisy vectors) do not count
    noisy_rows = {
        0: [(0, [1, 0]), (1, [1, 0]), (2, [1, 0])],
        1: [(3, [1, 0]), (4, [0, 1])],
        2: [(0, [1, 0]), (1, [0, 1]), (2, [0, 0])],
    }
    clean, noisy = _vecs(CLEAN, fill), _vecs(noisy_rows, 1 - fill)
    per = stability_per_prototype(clean, noisy, LABELS, CLASSES)
    assert per[:3].tolist() == pytest.approx([2 / 3, 1, 1 / 3]) and per[3:].isnan().all()
    assert stability(clean, noisy, LABELS, CLASSES) == pytest.approx(2 / 3)
    assert Stability()(clean, noisy, LABELS, CLASSES) == pytest.approx(2 / 3)
    assert stability(clean, clean, LABELS, CLASSES) == 1.0
    assert Stability.higher_is_better and Stability.name == "stability"


def test_stability_compares_whole_part_vectors():
    # One prototype of class 0 on one image swaps part 0 for part 1 under the noise: not stable.
    # EvalProtoPNet's 2022 eval_stability.py tested (clean - noisy).sum(-1) == 0, which calls
    # this stable ([1,0] - [0,1] sums to 0); its 2023 code and sparsex compare the whole vectors.
    clean, noisy = torch.tensor([[[True, False]]]), torch.tensor([[[False, True]]])
    labels, classes = torch.tensor([0]), torch.tensor([0])
    assert stability(clean, noisy, labels, classes) == 0.0
    summed_2022 = float(((clean.int() - noisy.int()).sum(-1) == 0).float().mean())
    assert summed_2022 == 1.0  # the old rule, for the record
    assert stability(clean, clean, labels, classes) == 1.0


def test_average_over_classes_hand_computed():
    # Stability per prototype (test_stability_hand_computed): p0 2/3 and p2 1/3 (class 0), p1 1
    # (class 1). Over prototypes: (2/3 + 1 + 1/3) / 3 = 2/3; over classes: ((2/3 + 1/3) / 2 + 1) / 2 = 3/4.
    # Consistency per prototype: p0 1, p2 0 (class 0), p1 0 (class 1): 1/3 over prototypes,
    # (1/2 + 0) / 2 = 1/4 over classes.
    noisy_rows = {
        0: [(0, [1, 0]), (1, [1, 0]), (2, [1, 0])],
        1: [(3, [1, 0]), (4, [0, 1])],
        2: [(0, [1, 0]), (1, [0, 1]), (2, [0, 0])],
    }
    clean, noisy = _vecs(CLEAN, 0), _vecs(noisy_rows, 1)
    assert stability(clean, noisy, LABELS, CLASSES, average="classes") == pytest.approx(3 / 4)
    assert Stability(average="classes")(clean, noisy, LABELS, CLASSES) == pytest.approx(3 / 4)
    assert consistency(clean, LABELS, CLASSES, average="classes") == pytest.approx(1 / 4)
    assert Consistency(average="classes")(clean, LABELS, CLASSES) == pytest.approx(1 / 4)
    # with one prototype per class the two averages agree (ProtoPNet's equal classes)
    one_each = torch.tensor([0, 1, -1, -1, 2])
    assert stability(clean, noisy, LABELS, one_each, average="classes") == pytest.approx(
        stability(clean, noisy, LABELS, one_each))
    _one_line_error("average must be one of 'prototypes', 'classes', got 'images'", stability, clean, noisy, LABELS,
                    CLASSES, average="images")
    _one_line_error("average must be one of 'prototypes', 'classes', got 'images'", Consistency, 0.8, "images")


def _one_line_error(match: str, fn, *args, **kwargs) -> None:
    with pytest.raises(InputError, match=match) as info:
        fn(*args, **kwargs)
    assert "\n" not in str(info.value)


def test_bad_inputs():
    vecs = _vecs(CLEAN)
    _one_line_error("locations have 2 images but part_masks have 1", part_vectors, torch.zeros(2, 4, dtype=torch.long),
                    (2, 2), MASKS)
    _one_line_error(r"flat indices in \[0, 4\).*got 4", part_vectors, torch.tensor([[0, 4]]), (2, 2), MASKS)
    _one_line_error(r"flat indices in \[0, 4\).*got -1", part_vectors, torch.tensor([[-1, 0]]), (2, 2), MASKS)
    _one_line_error("locations must have an integer dtype", part_vectors, LOCS.float(), (2, 2), MASKS)
    _one_line_error("part_masks must be a bool tensor", part_vectors, LOCS, (2, 2), MASKS.float())
    _one_line_error(r"part_masks must be a tensor of shape \(N, K, H, W\)", part_vectors, LOCS, (2, 2), MASKS[0])
    _one_line_error("feature_size w must be a positive integer", part_vectors, LOCS, (2, 0), MASKS)
    _one_line_error(r"region \(a fraction of the image side.*\) must be a finite number in \(0, 1\]", part_vectors, LOCS, (2, 2), MASKS, region=1.5)
    _one_line_error(r"region \(a fraction of the image side.*\) must be a finite number in \(0, 1\]", part_vectors, LOCS, (2, 2), MASKS, region=0)
    _one_line_error("min_overlap must be a positive integer", part_vectors, LOCS, (2, 2), MASKS, min_overlap=0)
    for mu in (0, 1.5, -0.2, float("nan")):
        _one_line_error(r"mu must be a finite number in \(0, 1\]", consistency, vecs, LABELS, CLASSES, mu=mu)
        _one_line_error(r"mu must be a finite number in \(0, 1\]", Consistency, mu)
    assert consistency(vecs, LABELS, CLASSES, mu=1) == pytest.approx(1 / 3)  # mu = 1 is allowed
    _one_line_error("labels have 4 entries but part_vecs have 5 images", consistency, vecs, LABELS[:4], CLASSES)
    _one_line_error("prototype_classes have 4 entries but part_vecs have 5 prototypes", consistency, vecs, LABELS,
                    CLASSES[:4])
    _one_line_error("part_vecs must be a bool tensor", consistency, vecs.float(), LABELS, CLASSES)
    _one_line_error(r"visible must have shape \(5, 2\)", consistency, vecs, LABELS, CLASSES,
                    visible=torch.ones(5, 3, dtype=torch.bool))
    _one_line_error("labels must be class indices >= 0", consistency, vecs, LABELS - 1, CLASSES)
    _one_line_error(r"noisy_part_vecs must have the shape of part_vecs \(5, 5, 2\)", stability, vecs, vecs[:, :4],
                    LABELS, CLASSES)
    _one_line_error("no prototype can be scored", consistency, vecs, LABELS, torch.tensor([-1, 3, -1, -1, 2]))
    _one_line_error("no prototype can be scored", stability, vecs, vecs, LABELS, torch.full((5,), -1))
    _one_line_error(r"weights must have shape \(C, P\)", prototype_classes, torch.zeros(4))
    _one_line_error("eps must be a finite number >= 0", prototype_classes, torch.zeros(2, 4), eps=-1)


# ----------------------------------------------------------------------------------------------
# The driver, end to end on a tiny part world.
# ----------------------------------------------------------------------------------------------


class FakeBackbone(nn.Module):
    """Features = the normalised image (mean 0.5, std ``std``) average-pooled by ``pool``
    (``pool=16`` on 48 px: a 3x3 map), with a sparsex Backbone's ``preprocess`` / ``forward`` /
    ``extract``."""

    def __init__(self, pool: int, std: tuple[float, float, float] = (0.5, 0.5, 0.5)) -> None:
        super().__init__()
        self.pool = pool
        self.register_buffer("mean", torch.full((1, 3, 1, 1), 0.5))
        self.register_buffer("std", torch.tensor(std).view(1, 3, 1, 1))

    def preprocess(self, images: torch.Tensor) -> torch.Tensor:
        return (images - self.mean) / self.std

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return F.avg_pool2d(x, self.pool) if self.pool > 1 else x

    def extract(self, images: torch.Tensor) -> torch.Tensor:
        return self.forward(self.preprocess(images))


class ExtractOnly(nn.Module):
    """A backbone with ``extract`` alone: pixel-space noise only."""

    def extract(self, images: torch.Tensor) -> torch.Tensor:
        return F.avg_pool2d(images, 16)


class FakeHead(nn.Module):
    """Four prototypes over 24 classes: p0 (class 0) always peaks on the centre cell, p1 (class 1)
    on the top-left cell, p2 (class 2) on the greenest cell (most green minus red), p3 has no class
    weight (unused)."""

    def __init__(self) -> None:
        super().__init__()
        weights = torch.zeros(24, 4)
        weights[0, 0] = weights[1, 1] = weights[2, 2] = 1.0
        self.weights = nn.Parameter(weights)

    def class_weights(self) -> torch.Tensor:
        return self.weights.clamp(min=0)

    def forward(self, features: torch.Tensor) -> PrototypeOutput:
        b, _, h, w = features.shape
        maps = torch.zeros(b, 4, h, w)
        maps[:, 0, h // 2, w // 2] = 1.0
        maps[:, 1, 0, 0] = 1.0
        maps[:, 2] = features[:, 1] - features[:, 0]
        scores = maps.flatten(2).amax(dim=2)
        return PrototypeOutput(scores @ self.class_weights().T, scores, maps, maps.flatten(2).argmax(dim=2))


class CachedItems(torch.utils.data.Dataset):
    def __init__(self, items: list[dict]) -> None:
        self.items = items

    def __len__(self) -> int:
        return len(self.items)

    def __getitem__(self, i: int) -> dict:
        return self.items[i]


@pytest.fixture(scope="module")
def world() -> CachedItems:
    from sparsex.partworld import PartWorld, PartWorldConfig

    data = PartWorld("test", PartWorldConfig(image_size=48, train_size=0, val_size=0, test_size=24))
    return CachedItems([data[i] for i in range(len(data))])  # labels 0..23, one image per class


@pytest.fixture(scope="module")
def world3(world) -> CachedItems:
    """The same images relabelled ``index % 3``: classes 0, 1, 2 with 8 images each."""
    return CachedItems([{**item, "label": item["index"] % 3} for item in world.items])


def _region_frequencies(masks: torch.Tensor, labels: torch.Tensor, c: int, rows: slice, cols: slice) -> torch.Tensor:
    """EvalProtoPNet's part frequencies of a fixed image region over the images of class ``c``."""
    masks = masks[labels == c]
    visible = masks.flatten(2).any(2)
    inside = masks[:, :, rows, cols].flatten(2).any(2)
    return (inside & visible).sum(0) / visible.sum(0).clamp(min=1)


def test_driver_fixed_peaks(world, world3):
    from sparsex.explainers.prototypes import PrototypeExplainer

    masks = torch.stack([item["part_masks"] for item in world3.items])
    labels = torch.tensor([item["label"] for item in world3.items])
    model = (FakeHead(), FakeBackbone(16))  # 3x3 maps of 16 px cells
    vecs = collect_part_vectors(model, world3, region=None)
    assert vecs.clean.shape == (24, 4, 6) and vecs.classes.tolist() == [0, 1, 2, -1]
    assert torch.equal(vecs.labels, labels) and vecs.indices.tolist() == list(range(24))
    # p0's region is the centre cell (rows/cols 16..31), p1's the top-left one (0..15), on every image
    assert torch.equal(vecs.clean[:, 0], masks[:, :, 16:32, 16:32].flatten(2).any(2))
    assert torch.equal(vecs.clean[:, 1], masks[:, :, :16, :16].flatten(2).any(2))
    assert torch.equal(vecs.visible, masks.flatten(2).any(2))
    # the same region as a 16 px box around the centre pixel of an unpooled 48x48 map
    fine = collect_part_vectors((FakeHead(), FakeBackbone(1)), world3, region=1 / 3, sigma=0.0)
    assert torch.equal(fine.clean[:, 0], vecs.clean[:, 0])

    # p0: centre-cell frequencies over class 0; p1: top-left over class 1 (on this world p0 is
    # consistent, max 1.0, and p1 is not, max 0.25); p2 peaks on the greenest cell, whatever it is.
    centre = _region_frequencies(masks, labels, 0, slice(16, 32), slice(16, 32))
    corner = _region_frequencies(masks, labels, 1, slice(0, 16), slice(0, 16))
    assert centre.max() == 1.0 and corner.max() == 0.25
    freq = part_frequencies(vecs.clean, vecs.labels, vecs.classes, vecs.visible)
    assert torch.allclose(freq[0], centre.double()) and torch.allclose(freq[1], corner.double())
    for mu in (0.8, 0.25, 0.2):
        greenest = float(freq[2].max() >= mu)
        expected = (float(centre.max() >= mu) + float(corner.max() >= mu) + greenest) / 3
        result = consistency_stability(PrototypeExplainer(*model), world3, region=None, mu=mu, batch_size=5)
        assert result["consistency"] == pytest.approx(expected)
        assert (result["prototypes_counted"], result["prototypes_skipped"], result["prototypes_unused"]) == (3, 0, 1)
        assert result["num_images"] == 24 and result["mu"] == mu and result["region"] is None
    # a region the size of the image around the centre cell holds every visible part: p0's
    # frequencies are all 1
    whole = collect_part_vectors(model, world3, region=1.0, sigma=0.0)
    assert torch.equal(whole.clean[:, 0], whole.visible)
    assert part_frequencies(whole.clean, whole.labels, whole.classes, whole.visible)[0].tolist() == [1.0] * 6
    # without the images of class 1, p1 is skipped (and counted as such); without noise nothing
    # moves (stability 1)
    subset = consistency_stability(model, world3, indices=[i for i in range(24) if i % 3 != 1], region=None, sigma=0.0)
    assert (subset["prototypes_counted"], subset["prototypes_skipped"], subset["prototypes_unused"]) == (2, 1, 1)
    assert subset["consistency"] == pytest.approx((1.0 + float(freq[2].max() >= 0.8)) / 2)
    assert subset["stability"] == 1.0
    # on the original labels (one image per class) every used prototype is still scored
    single = consistency_stability(model, world, region=None)
    assert single["num_images"] == 24 and single["prototypes_counted"] == 3


def test_driver_stability(world3):
    # On the unpooled 48x48 map, p2 peaks on the greenest pixel, which sigma = 0.2 noise moves;
    # p0 and p1 never move (stability 1).
    world = world3
    model = (FakeHead(), FakeBackbone(1))
    region = 1 / 6
    assert consistency_stability(model, world, region=region, sigma=0.0)["stability"] == 1.0
    vecs = collect_part_vectors(model, world, region=region, batch_size=7, seed=3)
    per = stability_per_prototype(vecs.clean, vecs.noisy, vecs.labels, vecs.classes)
    assert per[:2].tolist() == [1.0, 1.0] and math.isnan(per[3])
    result = consistency_stability(model, world, region=region, seed=3)  # batch size 32
    assert result["stability"] == pytest.approx(per[:3].mean().item())
    assert result["stability"] < 1.0  # p2's noisy peak lands on other parts (noise 0.2 x std 0.5 = 0.1 per pixel)
    assert (result["noise_space"], result["noise_bound"], result["average"]) == ("normalised", 0.25, "prototypes")
    assert result["sigma_pixels"] == pytest.approx(0.1)
    # the noise depends on (seed, item index) only: a subset sees the same noisy images
    sub = collect_part_vectors(model, world, indices=[5, 2], region=region, seed=3)
    assert torch.equal(sub.noisy, vecs.noisy[[5, 2]]) and sub.indices.tolist() == [5, 2]


def test_noise_spaces():
    from sparsex.metrics.consistency import _noisy_features, pixel_sigma

    backbone = FakeBackbone(1, std=(0.2, 0.25, 0.5))
    gen = torch.Generator().manual_seed(0)
    images, z = torch.rand(2, 3, 8, 8, generator=gen), torch.randn(2, 3, 8, 8, generator=gen)
    std = backbone.std
    # normalised, unbounded: EvalProtoPNet's norm_img + N(0, sigma) = pixel noise sigma * std, the image not clipped
    unbounded = _noisy_features(backbone, images, z, 0.2, "normalised", None)
    assert torch.allclose(unbounded, backbone.extract(images + 0.2 * std * z), atol=1e-5)
    assert ((images + 0.2 * std * z) > 1).any() or ((images + 0.2 * std * z) < 0).any()  # some pixels leave [0, 1]
    # normalised, bounded at 0.25 (EvalProtoPNet's torch.clip(noise, -eps, eps))
    bounded = _noisy_features(backbone, images, z, 0.2, "normalised", 0.25)
    assert torch.allclose(bounded, backbone.preprocess(images) + (0.2 * z).clamp(-0.25, 0.25), atol=1e-6)
    assert not torch.allclose(bounded, unbounded)  # |0.2 z| > 0.25 happens (|z| > 1.25 on ~21% of draws)
    # pixel: sparsex's earlier default, clipped to [0, 1]
    pixel = _noisy_features(backbone, images, z, 0.2, "pixel", 0.25)
    assert torch.allclose(pixel, backbone.extract((images + 0.2 * z).clamp(0, 1)), atol=1e-6)
    assert pixel_sigma(backbone, 0.2) == pytest.approx(0.2 * (0.2 + 0.25 + 0.5) / 3)
    assert pixel_sigma(backbone, 0.2, "pixel") == 0.2
    # ImageNet statistics: about 0.045 in pixel units
    assert pixel_sigma(FakeBackbone(1, std=(0.229, 0.224, 0.225)), 0.2) == pytest.approx(0.0452, abs=1e-4)


def test_driver_noise_space_pixel(world3):
    # pixel-space noise of 0.2 is stronger than normalised-space 0.2 x std 0.5 (bounded): p2 moves more often
    model = (FakeHead(), FakeBackbone(1))
    pixel = consistency_stability(model, world3, region=1 / 6, seed=3, noise_space="pixel")
    assert pixel["noise_space"] == "pixel" and pixel["noise_bound"] is None and pixel["sigma_pixels"] == 0.2
    # extract-only backbones measure pixel noise; normalised noise needs preprocess and std
    assert consistency_stability((FakeHead(), ExtractOnly()), world3, noise_space="pixel")["num_images"] == 24
    _one_line_error("noise_space='normalised' needs a backbone with preprocess", consistency_stability,
                    (FakeHead(), ExtractOnly()), world3)
    _one_line_error("noise_space must be one of 'normalised', 'pixel', got 'raw'", consistency_stability, model, world3,
                    noise_space="raw")
    _one_line_error("noise_bound must be a finite number > 0", consistency_stability, model, world3, noise_bound=0)
    by_class = consistency_stability(model, world3, region=1 / 6, seed=3, average="classes")
    by_prototype = consistency_stability(model, world3, region=1 / 6, seed=3)
    assert pixel["stability"] < by_prototype["stability"]  # seed 3: p2 keeps its parts on 3/8 vs 6/8 of its images
    assert by_class["average"] == "classes"
    # one prototype per class here (p0, p1, p2 of classes 0, 1, 2): both averages agree
    assert by_class["stability"] == pytest.approx(by_prototype["stability"])


def test_driver_bad_inputs(world, tiny_images):
    model = (FakeHead(), FakeBackbone(16))
    _one_line_error("dataset items have no part_masks", consistency_stability, model, tiny_images)
    _one_line_error("model must be a PrototypeExplainer or a", consistency_stability, FakeHead(), world)
    _one_line_error("has no class_weights", consistency_stability, (nn.Identity(), FakeBackbone(16)), world)
    _one_line_error(r"mu must be a finite number in \(0, 1\]", consistency_stability, model, world, mu=0)
    _one_line_error("sigma must be a finite number >= 0", consistency_stability, model, world, sigma=-0.1)
    _one_line_error(r"index into \d+ items must be an integer in \[0, \d+\], got 24", consistency_stability, model,
                    world, indices=[0, 24])
    _one_line_error("batch_size must be a positive integer", consistency_stability, model, world, batch_size=0)
