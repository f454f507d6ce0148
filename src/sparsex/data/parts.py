"""The part world: a procedural, FunnyBirds-like benchmark where the right explanation is known.

Every image shows one creature on a light background. The creature is a **body** (torso + head,
the same shape for every class) plus six **part slots**, listed in :data:`PART_NAMES`::

    beak, eye, crest, wing, tail, feet

Each slot has four variants that differ in shape *and* colour (:data:`PART_VARIANTS`). A class is
a fixed combination of one variant per slot; the 24 classes (:data:`CLASS_TABLE`) are derived
from a fixed constant (not from the data seed) so that every class has a nearest neighbour that
differs in 1 to 3 parts. The class table, the shapes and the sampling rules together are versioned
by :data:`GENERATOR_VERSION`.

Each image has its own random **scene** (:class:`Scene`), drawn from
``np.random.SeedSequence([seed, split_id, index])``: the creature's pose (position, scale in
``SCALE_RANGE``, rotation within ``±MAX_ROTATION_DEG``, horizontal flip), a mild jitter of the body
and part colours, a smooth light gradient background with a faint texture, and 0 to
``max_clutter`` clutter objects (circles, squares, triangles, stars, rings, crosses) drawn behind
the creature. The label is ``index % 24``, so every split is balanced.

Rendering is a painter's algorithm in numpy, bottom to top::

    background -> clutter 0..n-1 -> tail -> feet -> body -> wing -> crest -> beak -> eye

Every shape is a signed distance function (SDF) evaluated in its own local frame (the inverse pose
applied to the pixel centres, only inside the shape's bounding box) and turned into an
anti-aliased coverage ``alpha = clip(0.5 - sdf_in_pixels, 0, 1)``, which is composited as
``C = C * (1 - alpha) + colour * alpha``.

Invariants (checked by the tests on many random scenes):

- **Pixel-exact masks.** A layer's visible contribution is where ``alpha * prod(1 - alpha_above)``
  is positive, i.e. where ``alpha > 0`` and no layer above is opaque (``alpha == 1``). The item's
  ``part_masks`` / ``background_masks`` / ``body_mask`` are these sets (a slot drawn as several
  layers, like an eye with a pupil, gets the union of its layers). Masks may overlap on
  anti-aliased edges.
- **Interventions are rendered, not pasted.** ``render(index, remove_parts=..., remove_background=...)``
  redraws the same scene without the named layers. Where a removed layer has ``alpha == 0`` the
  compositing is the identity (``C * 1 + colour * 0 == C`` in IEEE arithmetic), and where a layer
  above is opaque it overwrites exactly (``C * 0 + colour * 1 == colour``), so the pixels that
  change are a subset of the removed layer's mask, bit for bit; in practice they cover nearly all
  of it.
- **Determinism.** The same config gives the same bytes; the scene of an item does not depend on
  ``part_dropout`` (the dropout draw uses its own child seed).

The module also writes a scene set as a folder of PNGs (:func:`write_parts_tree`) and reads such a
folder back (``create_dataset("parts", root=...)``) by regenerating it from its ``meta.json``.
"""

from __future__ import annotations

import colorsys
import hashlib
import itertools
import math
import numbers
import operator
import os
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any, Iterable, Sequence

import numpy as np
import torch
from PIL import Image
from tqdm.auto import tqdm

from ..checks import from_settings
from ..errors import DataError
from ..io import atomic_dir, read_json, write_json
from .base import DATASETS, ImageDataset, check_split

GENERATOR_VERSION = "parts-2"  # parts-2: items are 8-bit images, identical to the written PNGs
SPLITS = ("train", "val", "test")
_SPLIT_IDS = {"train": 0, "val": 1, "test": 2}

SCALE_RANGE = (0.75, 1.1)
MAX_ROTATION_DEG = 25.0
#: Amplitude of the background's sinusoidal texture (intensity units).
TEXTURE_AMPLITUDE = 0.015
#: Clutter radius as a fraction of the image size.
CLUTTER_RADIUS_RANGE = (0.05, 0.12)
#: Mask PNG bit of the body; parts use bits 0..5 and clutter objects bits 6..6+max_clutter-1.
BODY_BIT = 15
MAX_CLUTTER_LIMIT = BODY_BIT - 6

Colour = tuple[float, float, float]


# ----------------------------------------------------------------------------------------------
# Signed distance functions. Coordinates are creature-local units (x forward, y down); every
# ``sdf(x, y)`` takes float32 arrays of equal shape and returns the signed distance (negative
# inside) in the same units. ``box`` is a local bounding box (x0, y0, x1, y1) of the shape.
# Parameters are plain Python floats so that float32 inputs stay float32.
# ----------------------------------------------------------------------------------------------


def _rotate(x: np.ndarray, y: np.ndarray, cx: float, cy: float, angle_deg: float) -> tuple[np.ndarray, np.ndarray]:
    """Coordinates relative to (cx, cy) in a frame rotated by ``angle_deg``."""
    dx, dy = x - cx, y - cy
    if angle_deg == 0.0:
        return dx, dy
    c, s = math.cos(math.radians(angle_deg)), math.sin(math.radians(angle_deg))
    return c * dx + s * dy, c * dy - s * dx


@dataclass(frozen=True)
class Circle:
    cx: float
    cy: float
    r: float

    @property
    def box(self) -> tuple[float, float, float, float]:
        return (self.cx - self.r, self.cy - self.r, self.cx + self.r, self.cy + self.r)

    def sdf(self, x: np.ndarray, y: np.ndarray) -> np.ndarray:
        dx, dy = x - self.cx, y - self.cy
        return np.sqrt(dx * dx + dy * dy) - self.r


@dataclass(frozen=True)
class Ring:
    """Annulus of mid radius ``r`` and half width ``w``."""

    cx: float
    cy: float
    r: float
    w: float

    @property
    def box(self) -> tuple[float, float, float, float]:
        e = self.r + self.w
        return (self.cx - e, self.cy - e, self.cx + e, self.cy + e)

    def sdf(self, x: np.ndarray, y: np.ndarray) -> np.ndarray:
        dx, dy = x - self.cx, y - self.cy
        return np.abs(np.sqrt(dx * dx + dy * dy) - self.r) - self.w


@dataclass(frozen=True)
class Ellipse:
    """Ellipse with radii (rx, ry) rotated by ``angle`` degrees; Quilez's first-order distance
    ``k0 (k0 - 1) / k1``, accurate near the boundary, which is where alpha needs it."""

    cx: float
    cy: float
    rx: float
    ry: float
    angle: float = 0.0

    @property
    def box(self) -> tuple[float, float, float, float]:
        e = max(self.rx, self.ry)
        return (self.cx - e, self.cy - e, self.cx + e, self.cy + e)

    def sdf(self, x: np.ndarray, y: np.ndarray) -> np.ndarray:
        u, v = _rotate(x, y, self.cx, self.cy, self.angle)
        a, b = u / self.rx, v / self.ry
        k0 = np.sqrt(a * a + b * b)
        a, b = a / self.rx, b / self.ry
        k1 = np.sqrt(a * a + b * b)
        # k0 / k1 lies in [min r, max r]; clipping only fixes the 0/0 at the centre.
        ratio = np.clip(k0 / (k1 + 1e-20), min(self.rx, self.ry), max(self.rx, self.ry))
        return (k0 - 1.0) * ratio


@dataclass(frozen=True)
class Box:
    """Rectangle with half sizes (hx, hy), corner radius ``radius``, rotated by ``angle`` degrees."""

    cx: float
    cy: float
    hx: float
    hy: float
    angle: float = 0.0
    radius: float = 0.0

    @property
    def box(self) -> tuple[float, float, float, float]:
        e = math.hypot(self.hx, self.hy)
        return (self.cx - e, self.cy - e, self.cx + e, self.cy + e)

    def sdf(self, x: np.ndarray, y: np.ndarray) -> np.ndarray:
        u, v = _rotate(x, y, self.cx, self.cy, self.angle)
        qx = np.abs(u) - (self.hx - self.radius)
        qy = np.abs(v) - (self.hy - self.radius)
        ox, oy = np.maximum(qx, 0.0), np.maximum(qy, 0.0)
        return np.sqrt(ox * ox + oy * oy) + np.minimum(np.maximum(qx, qy), 0.0) - self.radius


@dataclass(frozen=True)
class Capsule:
    """Segment from (ax, ay) to (bx, by) thickened by radius ``r``."""

    ax: float
    ay: float
    bx: float
    by: float
    r: float

    @property
    def box(self) -> tuple[float, float, float, float]:
        return (
            min(self.ax, self.bx) - self.r,
            min(self.ay, self.by) - self.r,
            max(self.ax, self.bx) + self.r,
            max(self.ay, self.by) + self.r,
        )

    def sdf(self, x: np.ndarray, y: np.ndarray) -> np.ndarray:
        ex, ey = self.bx - self.ax, self.by - self.ay
        wx, wy = x - self.ax, y - self.ay
        t = np.clip((wx * ex + wy * ey) * (1.0 / (ex * ex + ey * ey)), 0.0, 1.0)
        dx, dy = wx - ex * t, wy - ey * t
        return np.sqrt(dx * dx + dy * dy) - self.r


@dataclass(frozen=True)
class Polygon:
    """Simple polygon (any winding, convex or not); exact distance (Quilez's polygon SDF)."""

    points: tuple[tuple[float, float], ...]

    @property
    def box(self) -> tuple[float, float, float, float]:
        xs, ys = zip(*self.points)
        return (min(xs), min(ys), max(xs), max(ys))

    def sdf(self, x: np.ndarray, y: np.ndarray) -> np.ndarray:
        pts = self.points
        d2 = None
        inside = np.zeros(x.shape, dtype=bool)
        above = [y >= py for _, py in pts]  # above[i]: the pixel is at or below vertex i (y down)
        for i, (vx, vy) in enumerate(pts):
            j = i - 1
            ex, ey = pts[j][0] - vx, pts[j][1] - vy
            wx, wy = x - vx, y - vy
            t = np.clip((wx * ex + wy * ey) * (1.0 / (ex * ex + ey * ey)), 0.0, 1.0)
            bx, by = wx - ex * t, wy - ey * t
            e2 = bx * bx + by * by
            d2 = e2 if d2 is None else np.minimum(d2, e2)
            # Crossing-number parity of a ray along +x (Quilez): the edge straddles y and the
            # pixel lies on the edge's side given by the cross product.
            side = ex * wy > ey * wx
            c1, c2 = above[i], ~above[j]
            inside ^= (c1 == c2) & (c2 == side)
        return np.where(inside, -1.0, 1.0).astype(np.float32) * np.sqrt(d2)


@dataclass(frozen=True)
class Union:
    shapes: tuple[Any, ...]

    @property
    def box(self) -> tuple[float, float, float, float]:
        boxes = [s.box for s in self.shapes]
        return (min(b[0] for b in boxes), min(b[1] for b in boxes), max(b[2] for b in boxes), max(b[3] for b in boxes))

    def sdf(self, x: np.ndarray, y: np.ndarray) -> np.ndarray:
        d = self.shapes[0].sdf(x, y)
        for s in self.shapes[1:]:
            d = np.minimum(d, s.sdf(x, y))
        return d


def _regular_polygon(n: int, radius: float, inner: float | None = None) -> Polygon:
    """Regular n-gon (or n-pointed star when ``inner`` is given) centred at 0, first vertex up."""
    pts = []
    for k in range(n * (2 if inner else 1)):
        r = radius if (inner is None or k % 2 == 0) else inner
        a = -math.pi / 2 + k * math.pi * (2 if inner is None else 1) / n
        pts.append((r * math.cos(a), r * math.sin(a)))
    return Polygon(tuple(pts))


# ----------------------------------------------------------------------------------------------
# The creature. Local units: the torso is an ellipse of radii 0.62 x 0.42 at the origin; the head
# faces +x. Shapes are stored in slot order, each variant as layers (shape, base colour).
# ----------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Variant:
    """One variant of a part slot: layers drawn bottom to top, each a shape and its base colour."""

    name: str
    layers: tuple[tuple[Any, Colour], ...]


BODY_SHAPE = Union((Ellipse(0.0, 0.0, 0.62, 0.42), Circle(0.62, -0.42, 0.30)))
BODY_COLOUR: Colour = (0.52, 0.60, 0.72)

PART_NAMES: tuple[str, ...] = ("beak", "eye", "crest", "wing", "tail", "feet")

_VARIANTS: dict[str, tuple[Variant, ...]] = {
    "beak": (
        Variant("short_wide_orange", ((Polygon(((0.84, -0.60), (1.18, -0.42), (0.84, -0.24))), (1.0, 0.55, 0.05)),)),
        Variant("long_thin_yellow", ((Polygon(((0.86, -0.50), (1.45, -0.42), (0.86, -0.34))), (0.98, 0.88, 0.10)),)),
        Variant(
            "hooked_dark_grey",
            ((Polygon(((0.84, -0.56), (1.08, -0.56), (1.22, -0.46), (1.24, -0.24), (1.13, -0.16),
                       (1.11, -0.31), (1.02, -0.37), (0.84, -0.31))), (0.22, 0.22, 0.25)),),
        ),
        Variant("blunt_red", ((Box(1.0, -0.42, 0.16, 0.11, radius=0.07), (0.85, 0.10, 0.12)),)),
    ),
    "eye": (
        Variant("round_black", ((Circle(0.70, -0.50, 0.09), (0.05, 0.05, 0.05)),)),
        Variant(
            "big_white_blue_pupil",
            ((Circle(0.70, -0.50, 0.13), (0.98, 0.98, 0.98)), (Circle(0.74, -0.50, 0.06), (0.10, 0.30, 0.95))),
        ),
        Variant("slit_green", ((Ellipse(0.70, -0.50, 0.14, 0.05, angle=-10.0), (0.05, 0.70, 0.20)),)),
        Variant("diamond_purple", ((Box(0.70, -0.50, 0.09, 0.09, angle=45.0), (0.55, 0.10, 0.75)),)),
    ),
    "crest": (
        Variant(
            "spiky_magenta",
            ((Polygon(((0.38, -0.58), (0.40, -0.98), (0.51, -0.74), (0.61, -1.06), (0.69, -0.76),
                       (0.82, -0.96), (0.80, -0.58))), (0.92, 0.15, 0.50)),),
        ),
        Variant("round_blue", ((Circle(0.56, -0.80, 0.18), (0.15, 0.35, 0.90)),)),
        Variant(
            "plume_green",
            ((Union((Ellipse(0.40, -0.86, 0.30, 0.07, angle=-40.0), Ellipse(0.30, -0.74, 0.28, 0.06, angle=-20.0))),
              (0.20, 0.65, 0.25)),),
        ),
        Variant(
            "tuft_black",
            ((Union((Capsule(0.60, -0.66, 0.44, -1.00, 0.035), Capsule(0.60, -0.66, 0.60, -1.06, 0.035),
                     Capsule(0.60, -0.66, 0.76, -1.00, 0.035))), (0.08, 0.08, 0.08)),),
        ),
    ),
    "wing": (
        Variant("round_brown", ((Ellipse(-0.08, -0.02, 0.36, 0.22, angle=10.0), (0.50, 0.30, 0.12)),)),
        Variant(
            "pointed_navy",
            ((Polygon(((0.28, -0.16), (0.22, 0.10), (-0.10, 0.17), (-0.72, 0.04), (-0.20, -0.15))), (0.10, 0.12, 0.45)),),
        ),
        Variant(
            "feathered_teal",
            ((Union((Ellipse(0.05, -0.02, 0.30, 0.09, angle=-5.0), Ellipse(-0.05, 0.06, 0.32, 0.08, angle=10.0),
                     Ellipse(-0.15, 0.14, 0.30, 0.07, angle=25.0))), (0.0, 0.55, 0.55)),),
        ),
        Variant("small_white", ((Ellipse(0.02, 0.04, 0.22, 0.14), (0.96, 0.96, 0.92)),)),
    ),
    "tail": (
        Variant(
            "fan_purple",
            ((Polygon(((-0.50, -0.06), (-1.02, -0.42), (-1.14, -0.16), (-1.16, 0.10), (-1.06, 0.32), (-0.50, 0.08))),
              (0.60, 0.20, 0.70)),),
        ),
        Variant("long_straight_black", ((Box(-0.92, -0.10, 0.42, 0.055, angle=12.0), (0.08, 0.08, 0.08)),)),
        Variant(
            "forked_red",
            ((Union((Capsule(-0.50, 0.0, -1.08, -0.36, 0.06), Capsule(-0.50, 0.0, -1.08, 0.26, 0.06))), (0.85, 0.15, 0.10)),),
        ),
        Variant("round_yellow", ((Circle(-0.80, -0.04, 0.23), (0.95, 0.85, 0.15)),)),
    ),
    "feet": (
        Variant(
            "long_legs_orange",
            ((Union((Capsule(0.10, 0.30, 0.12, 0.86, 0.035), Capsule(-0.20, 0.30, -0.24, 0.86, 0.035),
                     Capsule(0.12, 0.86, 0.27, 0.88, 0.035), Capsule(-0.24, 0.86, -0.09, 0.88, 0.035))), (1.0, 0.55, 0.05)),),
        ),
        Variant(
            "short_thick_grey",
            ((Union((Capsule(0.10, 0.30, 0.12, 0.58, 0.075), Capsule(-0.20, 0.30, -0.22, 0.58, 0.075))), (0.30, 0.30, 0.32)),),
        ),
        Variant(
            "webbed_red",
            ((Union((Capsule(0.10, 0.30, 0.12, 0.64, 0.035), Capsule(-0.20, 0.30, -0.22, 0.64, 0.035),
                     Polygon(((0.12, 0.60), (0.30, 0.80), (-0.02, 0.80))),
                     Polygon(((-0.22, 0.60), (-0.04, 0.80), (-0.36, 0.80))))),
              (0.80, 0.10, 0.10)),),
        ),
        Variant(
            "ball_blue",
            ((Union((Circle(0.13, 0.54, 0.14), Circle(-0.21, 0.54, 0.14))), (0.15, 0.35, 0.85)),),
        ),
    ),
}

#: Variant names per slot, in variant-index order.
PART_VARIANTS: dict[str, tuple[str, ...]] = {slot: tuple(v.name for v in _VARIANTS[slot]) for slot in PART_NAMES}

#: Drawing order of the creature's layers, bottom to top ("body" is the torso + head).
Z_ORDER: tuple[str, ...] = ("tail", "feet", "body", "wing", "crest", "beak", "eye")

_CLUTTER_SHAPES: dict[str, Any] = {
    "circle": Circle(0.0, 0.0, 1.0),
    "square": Box(0.0, 0.0, 0.8, 0.8),
    "triangle": _regular_polygon(3, 1.0),
    "star": _regular_polygon(5, 1.0, inner=0.45),
    "ring": Ring(0.0, 0.0, 0.8, 0.2),
    "cross": Union((Box(0.0, 0.0, 1.0, 0.3), Box(0.0, 0.0, 0.3, 1.0))),
}
CLUTTER_KINDS: tuple[str, ...] = tuple(_CLUTTER_SHAPES)


def _creature_box() -> tuple[float, float, float, float]:
    boxes = [BODY_SHAPE.box] + [shape.box for vs in _VARIANTS.values() for v in vs for shape, _ in v.layers]
    return (min(b[0] for b in boxes), min(b[1] for b in boxes), max(b[2] for b in boxes), max(b[3] for b in boxes))


_BOX = _creature_box()
#: Local point that the pose places at the sampled position (centre of the creature's bounding box).
_ORIGIN = ((_BOX[0] + _BOX[2]) / 2, (_BOX[1] + _BOX[3]) / 2)
_HALF = ((_BOX[2] - _BOX[0]) / 2, (_BOX[3] - _BOX[1]) / 2)
_MARGIN = 0.02  # fraction of the image kept free around the creature in the worst case


def _half_extent(scale_px: float, angle_deg: float) -> tuple[float, float]:
    """Half width and height in pixels of the rotated creature box at ``scale_px`` pixels/unit."""
    c, s = abs(math.cos(math.radians(angle_deg))), abs(math.sin(math.radians(angle_deg)))
    return scale_px * (_HALF[0] * c + _HALF[1] * s), scale_px * (_HALF[0] * s + _HALF[1] * c)


#: Pixels per local unit at scale 1, as a fraction of the image size: the largest value for which
#: the creature at the largest scale and rotation still fits inside the image with the margin.
UNIT = (0.5 - _MARGIN) / max(_half_extent(SCALE_RANGE[1], MAX_ROTATION_DEG))


# ----------------------------------------------------------------------------------------------
# The class table.
# ----------------------------------------------------------------------------------------------

NUM_CLASSES = 24
_CLASS_TABLE_KEY = "sparsex part world classes v1"


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
    k, n = len(PART_NAMES), len(_VARIANTS["beak"])
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


# ----------------------------------------------------------------------------------------------
# Config and scenes.
# ----------------------------------------------------------------------------------------------


def _is_int(value: Any) -> bool:
    return isinstance(value, numbers.Integral) and not isinstance(value, bool)


@dataclass(frozen=True)
class PartWorldConfig:
    """Everything that changes the part world's images (besides :data:`GENERATOR_VERSION`).

    ``colour_jitter`` is the half width of the uniform per-channel offset added to each body and
    part colour; ``part_dropout`` is the probability that a *train* item has a random non-empty
    proper subset of its parts removed; ``max_clutter`` is at most 9 so that masks fit the 16-bit
    mask PNGs.
    """

    seed: int = 0
    image_size: int = 224
    train_size: int = 2400
    val_size: int = 480
    test_size: int = 480
    max_clutter: int = 3
    part_dropout: float = 0.0
    colour_jitter: float = 0.05

    def __post_init__(self) -> None:
        def fail(name: str, rule: str) -> None:
            raise DataError(f"part world setting {name}={getattr(self, name)!r} is invalid: must be {rule}")

        if not _is_int(self.seed) or self.seed < 0:
            fail("seed", "a non-negative integer")
        if not _is_int(self.image_size) or self.image_size < 32:
            fail("image_size", "an integer >= 32")
        for name in ("train_size", "val_size", "test_size"):
            if not _is_int(getattr(self, name)) or getattr(self, name) < 0:
                fail(name, "a non-negative integer")
        if not _is_int(self.max_clutter) or not 0 <= self.max_clutter <= MAX_CLUTTER_LIMIT:
            fail("max_clutter", f"an integer in [0, {MAX_CLUTTER_LIMIT}]")
        if not isinstance(self.part_dropout, numbers.Real) or not 0.0 <= self.part_dropout < 1.0:
            fail("part_dropout", "a number in [0, 1)")
        if not isinstance(self.colour_jitter, numbers.Real) or not 0.0 <= self.colour_jitter <= 0.5:
            fail("colour_jitter", "a number in [0, 0.5]")

    @classmethod
    def from_dict(cls, settings: dict[str, Any]) -> "PartWorldConfig":
        """Build a config from keyword settings; unknown names raise :class:`DataError`."""
        return from_settings(cls, settings, "part world", DataError)

    def size(self, split: str) -> int:
        return getattr(self, f"{split}_size")


@dataclass(frozen=True)
class Pose:
    """Placement of the creature: ``center`` (x, y) in pixels, ``scale`` (1 = nominal size),
    rotation ``angle`` in degrees (clockwise on screen), horizontal ``flip`` (head facing left)."""

    center: tuple[float, float]
    scale: float
    angle: float
    flip: bool


@dataclass(frozen=True)
class ClutterObject:
    """A background object: ``kind`` in :data:`CLUTTER_KINDS`, ``center`` (x, y) and ``radius`` in
    pixels, rotation ``angle`` in degrees, RGB ``colour`` in [0, 1]."""

    kind: str
    center: tuple[float, float]
    radius: float
    angle: float
    colour: Colour


@dataclass(frozen=True)
class Background:
    """Linear gradient from ``colour_a`` to ``colour_b`` along direction ``angle`` (degrees), plus a
    sinusoid of amplitude :data:`TEXTURE_AMPLITUDE` with ``texture_freq`` (cycles per image in
    x, y) and ``texture_phase`` (radians)."""

    colour_a: Colour
    colour_b: Colour
    angle: float
    texture_freq: tuple[float, float]
    texture_phase: float


@dataclass(frozen=True)
class Scene:
    """Everything random about one image. ``variants`` maps slot -> variant name;
    ``part_colours`` maps slot -> one jittered colour per layer of that variant;
    ``dropped_parts`` are the parts that train-time part dropout removes from the item
    (empty unless ``part_dropout > 0`` on the train split)."""

    index: int
    split: str
    label: int
    class_name: str
    variants: dict[str, str]
    pose: Pose
    body_colour: Colour
    part_colours: dict[str, tuple[Colour, ...]]
    background: Background
    clutter: tuple[ClutterObject, ...]
    dropped_parts: tuple[str, ...]


def _colour(values: Iterable[float]) -> Colour:
    r, g, b = (float(v) for v in values)
    return (r, g, b)


def sample_scene(config: PartWorldConfig, split: str, index: int) -> Scene:
    """Draw the scene of item ``index`` of ``split`` from ``SeedSequence([seed, split_id, index])``."""
    size = config.image_size
    scene_seq, dropout_seq = np.random.SeedSequence([config.seed, _SPLIT_IDS[split], index]).spawn(2)
    rng = np.random.default_rng(scene_seq)
    label = index % NUM_CLASSES

    scale = float(rng.uniform(*SCALE_RANGE))
    angle = float(rng.uniform(-MAX_ROTATION_DEG, MAX_ROTATION_DEG))
    flip = bool(rng.random() < 0.5)
    half_x, half_y = _half_extent(UNIT * size * scale, angle)
    room = rng.uniform(-1.0, 1.0, 2)
    center = (
        size / 2 + float(room[0]) * max(0.0, size / 2 - half_x - _MARGIN * size),
        size / 2 + float(room[1]) * max(0.0, size / 2 - half_y - _MARGIN * size),
    )

    j = config.colour_jitter

    def jitter(c: Colour) -> Colour:
        return _colour(np.clip(np.asarray(c) + rng.uniform(-j, j, 3), 0.0, 1.0))

    variants = {slot: _VARIANTS[slot][CLASS_TABLE[label][k]] for k, slot in enumerate(PART_NAMES)}
    body_colour = jitter(BODY_COLOUR)
    part_colours = {slot: tuple(jitter(c) for _, c in variants[slot].layers) for slot in PART_NAMES}

    background = Background(
        colour_a=_colour(rng.uniform(0.78, 0.98, 3)),
        colour_b=_colour(rng.uniform(0.78, 0.98, 3)),
        angle=float(rng.uniform(0.0, 360.0)),
        texture_freq=(float(rng.uniform(-5.0, 5.0)), float(rng.uniform(-5.0, 5.0))),
        texture_phase=float(rng.uniform(0.0, 2 * math.pi)),
    )

    clutter = []
    for _ in range(int(rng.integers(0, config.max_clutter + 1))):
        kind = CLUTTER_KINDS[int(rng.integers(len(CLUTTER_KINDS)))]
        cx, cy = rng.uniform(0.0, size, 2)
        radius = float(rng.uniform(*CLUTTER_RADIUS_RANGE)) * size
        rot = float(rng.uniform(0.0, 360.0))
        hue, sat, val = rng.uniform((0.0, 0.4, 0.3), (1.0, 1.0, 0.95))
        clutter.append(ClutterObject(kind, (float(cx), float(cy)), radius, rot, _colour(colorsys.hsv_to_rgb(hue, sat, val))))

    dropped: tuple[str, ...] = ()
    if split == "train" and config.part_dropout > 0:
        drng = np.random.default_rng(dropout_seq)
        if drng.random() < config.part_dropout:
            k = len(PART_NAMES)
            chosen = drng.choice(k, size=int(drng.integers(1, k)), replace=False)
            dropped = tuple(PART_NAMES[i] for i in sorted(chosen))

    return Scene(
        index=index,
        split=split,
        label=label,
        class_name=CLASS_NAMES[label],
        variants={slot: v.name for slot, v in variants.items()},
        pose=Pose(center, scale, angle, flip),
        body_colour=body_colour,
        part_colours=part_colours,
        background=background,
        clutter=tuple(clutter),
        dropped_parts=dropped,
    )


# ----------------------------------------------------------------------------------------------
# Rendering.
# ----------------------------------------------------------------------------------------------


class _Frame:
    """Similarity transform from a shape's local frame to pixels (x right, y down):
    ``p = t + unit * R(angle) @ diag(flip, 1) @ (l - origin)``. Pixel (row i, col j) has its
    centre at ``(j + 0.5, i + 0.5)``."""

    def __init__(self, t: tuple[float, float], unit: float, angle_deg: float, flip: bool, origin: tuple[float, float]) -> None:
        self.tx, self.ty = t
        self.unit = unit
        self.cos, self.sin = math.cos(math.radians(angle_deg)), math.sin(math.radians(angle_deg))
        self.f = -1.0 if flip else 1.0
        self.ox, self.oy = origin

    def pixel_box(self, box: tuple[float, float, float, float], h: int, w: int) -> tuple[int, int, int, int]:
        """Integer pixel box (y0, y1, x0, x1), clipped to the image, covering the local ``box``
        with one pixel to spare (alpha vanishes half a pixel outside a shape)."""
        xs, ys = [], []
        for lx, ly in ((box[0], box[1]), (box[2], box[1]), (box[0], box[3]), (box[2], box[3])):
            u, v = self.f * (lx - self.ox), ly - self.oy
            xs.append(self.tx + self.unit * (self.cos * u - self.sin * v))
            ys.append(self.ty + self.unit * (self.sin * u + self.cos * v))
        return (
            max(0, math.floor(min(ys)) - 1),
            min(h, math.ceil(max(ys)) + 1),
            max(0, math.floor(min(xs)) - 1),
            min(w, math.ceil(max(xs)) + 1),
        )

    def local_grid(self, y0: int, y1: int, x0: int, x1: int) -> tuple[np.ndarray, np.ndarray]:
        """Local coordinates ``(lx, ly)``, each float32 ``(y1 - y0, x1 - x0)``, of the pixel centres."""
        xs = np.arange(x0, x1, dtype=np.float32) + (0.5 - self.tx)
        ys = np.arange(y0, y1, dtype=np.float32) + (0.5 - self.ty)
        k = 1.0 / self.unit
        # l - origin = diag(flip, 1) @ R(-angle) @ (p - t) / unit
        lx = (self.f * k * self.cos * xs + self.ox)[None, :] + (self.f * k * self.sin * ys)[:, None]
        ly = (-k * self.sin * xs + self.oy)[None, :] + (k * self.cos * ys)[:, None]
        return lx, ly


def _background(bg: Background, h: int, w: int) -> np.ndarray:
    """The background as float32 ``(3, H, W)``: gradient plus faint texture (both separable)."""
    xs = np.arange(w, dtype=np.float32) + (0.5 - w / 2)
    ys = np.arange(h, dtype=np.float32) + (0.5 - h / 2)
    c, s = math.cos(math.radians(bg.angle)), math.sin(math.radians(bg.angle))
    norm = 0.5 / (abs(c) * w / 2 + abs(s) * h / 2)
    t = (c * norm * xs + 0.5)[None, :] + (s * norm * ys)[:, None]  # in [0, 1]
    ax = (2 * math.pi * bg.texture_freq[0] / w) * xs + bg.texture_phase
    ay = (2 * math.pi * bg.texture_freq[1] / h) * ys
    a = TEXTURE_AMPLITUDE
    texture = (a * np.sin(ax))[None, :] * np.cos(ay)[:, None] + (a * np.cos(ax))[None, :] * np.sin(ay)[:, None]
    ca = np.asarray(bg.colour_a, dtype=np.float32)[:, None, None]
    dc = (np.asarray(bg.colour_b, dtype=np.float32) - np.asarray(bg.colour_a, dtype=np.float32))[:, None, None]
    return ca + dc * t[None] + texture[None]


def render_scene(
    scene: Scene, image_size: int, max_clutter: int, remove_parts: Iterable[int] = (), remove_background: Iterable[int] = ()
) -> dict[str, Any]:
    """Render ``scene`` without the part slots ``remove_parts`` and clutter ``remove_background``
    (indices). Returns numpy arrays: ``image`` float32 ``(3, H, W)`` in [0, 1], ``part_masks``
    bool ``(K, H, W)``, ``background_masks`` bool ``(max_clutter, H, W)``, ``body_mask`` bool
    ``(H, W)``, ``parts_present`` bool ``(K,)``, ``background_present`` bool ``(max_clutter,)``.
    """
    h = w = image_size
    removed_parts, removed_bg = set(remove_parts), set(remove_background)
    k = len(PART_NAMES)
    canvas = _background(scene.background, h, w)
    part_masks = np.zeros((k, h, w), dtype=bool)
    background_masks = np.zeros((max_clutter, h, w), dtype=bool)
    body_mask = np.zeros((h, w), dtype=bool)
    drawn: list[tuple[np.ndarray, tuple[int, int, int, int], np.ndarray]] = []  # (mask, box, alpha)

    def draw(frame: _Frame, shape: Any, colour: Colour, mask: np.ndarray) -> None:
        y0, y1, x0, x1 = box = frame.pixel_box(shape.box, h, w)
        if y0 >= y1 or x0 >= x1:
            return
        lx, ly = frame.local_grid(y0, y1, x0, x1)
        alpha = np.clip(0.5 - frame.unit * shape.sdf(lx, ly), 0.0, 1.0)
        region = canvas[:, y0:y1, x0:x1]
        # Where alpha == 0 this is exactly the identity (x * 1 + c * 0 == x), so compositing the
        # whole box equals skipping those pixels: removing a layer leaves them bit-identical.
        region *= 1.0 - alpha
        region += np.asarray(colour, dtype=np.float32)[:, None, None] * alpha
        drawn.append((mask, box, alpha))

    for j, obj in enumerate(scene.clutter):
        if j not in removed_bg:
            frame = _Frame(obj.center, obj.radius, obj.angle, False, (0.0, 0.0))
            draw(frame, _CLUTTER_SHAPES[obj.kind], obj.colour, background_masks[j])

    pose = scene.pose
    frame = _Frame(pose.center, UNIT * image_size * pose.scale, pose.angle, pose.flip, _ORIGIN)
    for name in Z_ORDER:
        if name == "body":
            draw(frame, BODY_SHAPE, scene.body_colour, body_mask)
            continue
        slot = PART_NAMES.index(name)
        if slot in removed_parts:
            continue
        variant = _VARIANTS[name][PART_VARIANTS[name].index(scene.variants[name])]
        for (shape, _), colour in zip(variant.layers, scene.part_colours[name]):
            draw(frame, shape, colour, part_masks[slot])

    # Visible contribution, top to bottom: alpha > 0 and no opaque (alpha == 1) layer above.
    opaque = np.zeros((h, w), dtype=bool)
    for mask, (y0, y1, x0, x1), alpha in reversed(drawn):
        covered = opaque[y0:y1, x0:x1]
        mask[y0:y1, x0:x1] |= (alpha > 0) & ~covered
        covered |= alpha >= 1.0

    return {
        "image": canvas,
        "part_masks": part_masks,
        "background_masks": background_masks,
        "body_mask": body_mask,
        "parts_present": np.array([i not in removed_parts for i in range(k)]),
        "background_present": np.array([j < len(scene.clutter) and j not in removed_bg for j in range(max_clutter)]),
    }


def to_8bit(image: np.ndarray) -> np.ndarray:
    """Round a float render to the 256 levels of an 8-bit image (still float32 in [0, 1]).

    Items are exactly what ``write_parts_tree`` stores as PNG, so a model trained on items sees the
    same input when it is given the written files (frozen CNN features on these flat images move by
    20-35% under the rounding alone). Removing a layer still changes only pixels inside its mask.
    """
    return (np.round(np.clip(image, 0.0, 1.0) * 255.0) / 255.0).astype(np.float32)


# ----------------------------------------------------------------------------------------------
# The dataset.
# ----------------------------------------------------------------------------------------------


class PartWorld(ImageDataset):
    """One split of the part world (see the module docstring).

    Items are dicts: ``image`` float32 ``(3, H, W)`` in [0, 1]; ``label`` int; ``index`` int;
    ``part_names`` list of K=6 str; ``part_masks`` bool ``(K, H, W)``; ``parts_present`` bool
    ``(K,)``; ``body_mask`` bool ``(H, W)``; ``background_masks`` bool ``(max_clutter, H, W)``
    (rows beyond the scene's clutter count are all False); ``background_present`` bool
    ``(max_clutter,)``. On the train split with ``part_dropout > 0`` some items have parts removed
    (rendered away; their masks are all False and ``parts_present`` is False).
    """

    name = "parts"
    channels = 3

    def __init__(self, split: str = "train", config: PartWorldConfig | None = None) -> None:
        self.split = check_split(split, SPLITS, "parts")
        self.config = config if config is not None else PartWorldConfig()
        self.classes = list(CLASS_NAMES)
        self.image_size = (self.config.image_size, self.config.image_size)
        self.part_names = list(PART_NAMES)
        self.class_parts: list[dict[str, str]] = [dict(parts) for parts in CLASS_PARTS]

    def __len__(self) -> int:
        return self.config.size(self.split)

    def _index(self, index: int) -> int:
        n = len(self)
        i = operator.index(index)
        if i < 0:
            i += n
        if not 0 <= i < n:
            raise IndexError(f"index {index} out of range for part world split {self.split!r} of size {n}")
        return i

    def scene(self, index: int) -> Scene:
        """The random scene of item ``index`` (no rendering)."""
        return sample_scene(self.config, self.split, self._index(index))

    def render(
        self,
        index: int,
        remove_parts: Iterable[str | int] = (),
        remove_background: Iterable[int] | bool = (),
    ) -> dict[str, Any]:
        """Render item ``index``'s scene without the given parts (names or slot indices) and
        clutter objects (indices, or ``True`` for all). Returns an item dict (see the class
        docstring). Train-time part dropout is *not* applied: the full scene minus exactly the
        named layers is drawn.
        """
        scene = self.scene(index)
        parts = {self._part_index(p) for p in remove_parts}
        if remove_background is True:
            background = set(range(self.config.max_clutter))
        elif remove_background is False:
            background = set()
        else:
            background = {self._clutter_index(j) for j in remove_background}
        return self._item(scene, parts, background)

    def __getitem__(self, index: int) -> dict[str, Any]:
        scene = self.scene(index)
        return self._item(scene, {PART_NAMES.index(p) for p in scene.dropped_parts}, set())

    def _item(self, scene: Scene, parts: set[int], background: set[int]) -> dict[str, Any]:
        out = render_scene(scene, self.config.image_size, self.config.max_clutter, parts, background)
        return {
            "image": torch.from_numpy(to_8bit(out["image"])),
            "label": scene.label,
            "index": scene.index,
            "part_names": list(PART_NAMES),
            "part_masks": torch.from_numpy(out["part_masks"]),
            "parts_present": torch.from_numpy(out["parts_present"]),
            "body_mask": torch.from_numpy(out["body_mask"]),
            "background_masks": torch.from_numpy(out["background_masks"]),
            "background_present": torch.from_numpy(out["background_present"]),
        }

    def _part_index(self, part: str | int) -> int:
        if isinstance(part, str):
            if part not in PART_NAMES:
                raise DataError(f"unknown part {part!r}; valid parts: {', '.join(PART_NAMES)}")
            return PART_NAMES.index(part)
        if not _is_int(part) or not 0 <= part < len(PART_NAMES):
            raise DataError(f"part index {part!r} is invalid: must be a name or an integer in [0, {len(PART_NAMES)})")
        return int(part)

    def _clutter_index(self, j: int) -> int:
        if not _is_int(j) or not 0 <= j < self.config.max_clutter:
            raise DataError(f"background object index {j!r} is invalid: must be an integer in [0, {self.config.max_clutter})")
        return int(j)

    def labels(self) -> np.ndarray:
        """Labels without rendering: ``index % 24``."""
        return np.arange(len(self), dtype=np.int64) % NUM_CLASSES

    def fingerprint(self) -> dict[str, Any]:
        return {"name": self.name, "split": self.split, "generator_version": GENERATOR_VERSION, "config": asdict(self.config)}


# ----------------------------------------------------------------------------------------------
# Writing and reading a part-world tree.
# ----------------------------------------------------------------------------------------------


def _mask_layout(max_clutter: int) -> dict[str, Any]:
    k = len(PART_NAMES)
    return {
        "encoding": "16-bit grey PNG; pixel bit b is set where the layer with bit b is visible",
        "parts": {name: i for i, name in enumerate(PART_NAMES)},
        "background_objects": [k + j for j in range(max_clutter)],
        "body": BODY_BIT,
    }


def encode_masks(part_masks: np.ndarray, background_masks: np.ndarray, body_mask: np.ndarray) -> np.ndarray:
    """Pack masks into a uint16 ``(H, W)`` bitfield: bit k = part slot k (k < 6), bit 6 + j =
    clutter object j, bit 15 = body. Inputs are bool ``(6, H, W)``, ``(M, H, W)``, ``(H, W)``."""
    bits = np.zeros(body_mask.shape, dtype=np.uint16)
    for b, m in enumerate(itertools.chain(part_masks, background_masks)):
        bits |= m.astype(np.uint16) << b
    bits |= body_mask.astype(np.uint16) << BODY_BIT
    return bits


def decode_masks(bits: np.ndarray, max_clutter: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Inverse of :func:`encode_masks`: ``(part_masks (6, H, W), background_masks (M, H, W),
    body_mask (H, W))``, all bool."""
    bits = bits.astype(np.uint16)
    k = len(PART_NAMES)
    planes = [(bits >> b) & 1 == 1 for b in range(k + max_clutter)]
    parts = np.stack(planes[:k])
    background = np.stack(planes[k:]) if max_clutter else np.zeros((0, *bits.shape), dtype=bool)
    return parts, background, (bits >> BODY_BIT) & 1 == 1


def write_parts_tree(
    out: str | os.PathLike,
    config: PartWorldConfig,
    splits: Sequence[str] = SPLITS,
    overwrite: bool = False,
    progress: bool = True,
) -> Path:
    """Write the part world as PNG files and return the folder.

    Layout: ``out/<split>/<class_name>/<split>_<index:06d>.png`` (8-bit RGB),
    ``out/masks/<split>/<class_name>/<same name>.png`` (16-bit bitfield, see
    :func:`encode_masks`; the layout is repeated in ``meta.json``) and ``out/meta.json``
    (generator version, full config, classes with their part variants, part names, mask bit
    layout, counts per split). Every class folder exists even when it is empty. The folder is
    built under a temporary name and moved into place only when complete.
    """
    datasets = [PartWorld(split, config) for split in dict.fromkeys(splits)]
    with atomic_dir(out, overwrite) as tmp:
        with tqdm(total=sum(len(d) for d in datasets), desc="parts", unit="img", disable=not progress) as bar:
            for ds in datasets:
                for sub in (tmp / ds.split, tmp / "masks" / ds.split):
                    for name in CLASS_NAMES:
                        (sub / name).mkdir(parents=True)
                for i in range(len(ds)):
                    item = ds[i]
                    rel = Path(CLASS_NAMES[item["label"]]) / f"{ds.split}_{i:06d}.png"
                    rgb = np.round(item["image"].numpy().transpose(1, 2, 0) * 255.0).astype(np.uint8)
                    Image.fromarray(rgb).save(tmp / ds.split / rel, compress_level=1)
                    bits = encode_masks(item["part_masks"].numpy(), item["background_masks"].numpy(), item["body_mask"].numpy())
                    Image.fromarray(bits).save(tmp / "masks" / ds.split / rel, compress_level=1)
                    bar.update()
        write_json(
            tmp / "meta.json",
            {
                "format": "sparsex-parts",
                "generator_version": GENERATOR_VERSION,
                "seed": config.seed,
                "config": asdict(config),
                "part_names": list(PART_NAMES),
                "part_variants": {slot: list(names) for slot, names in PART_VARIANTS.items()},
                "classes": [{"name": n, "label": c, "parts": p} for c, (n, p) in enumerate(zip(CLASS_NAMES, CLASS_PARTS))],
                "mask_bits": _mask_layout(config.max_clutter),
                "counts": {ds.split: len(ds) for ds in datasets},
            },
        )
    return Path(out)


def read_parts_meta(root: str | os.PathLike) -> tuple[PartWorldConfig, tuple[str, ...]]:
    """Config and written splits of a tree made by :func:`write_parts_tree`.

    Raises :class:`DataError` when ``meta.json`` is missing or corrupt, or was written by another
    generator version.
    """
    path = Path(root) / "meta.json"
    meta = read_json(path, "part-world meta.json")
    if not isinstance(meta, dict) or meta.get("format") != "sparsex-parts":
        raise DataError(f"{path} is not a part-world meta.json (no format 'sparsex-parts')")
    if meta.get("generator_version") != GENERATOR_VERSION:
        raise DataError(
            f"{path} was written by part-world generator {meta.get('generator_version')!r}, this is "
            f"{GENERATOR_VERSION!r}; regenerate the folder with write_parts_tree"
        )
    try:
        config = PartWorldConfig.from_dict(meta["config"])
        splits = tuple(check_split(s, SPLITS, "parts") for s in meta["counts"])
    except (KeyError, TypeError, AttributeError, DataError) as e:
        raise DataError(f"corrupt {path}: {e}") from None
    return config, splits


@DATASETS.register("parts", description="procedural part world with pixel-exact part masks and rendered interventions")
def create_parts(split: str = "train", root: str | os.PathLike | None = None, **cfg: Any) -> PartWorld:
    """The part world split ``split``.

    With ``root=None`` the images are generated from ``PartWorldConfig(**cfg)``. With ``root``
    pointing at a folder written by :func:`write_parts_tree`, the config is read from its
    ``meta.json`` (no other settings allowed) and the same images are regenerated exactly; the PNG
    files are not read.
    """
    if root is None:
        return PartWorld(split, PartWorldConfig.from_dict(cfg))
    if cfg:
        raise DataError(
            f"part world settings ({', '.join(sorted(cfg))}) cannot be combined with root={root}; they come from its meta.json"
        )
    config, splits = read_parts_meta(root)
    return PartWorld(check_split(split, splits, "parts"), config)
