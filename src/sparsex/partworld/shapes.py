"""Shape primitives and the creature: signed distance functions, the body, the six part slots
with their four variants each (and up to :data:`MAX_VARIANTS` with recoloured shades of them), the
creature's drawing order, and the clutter shapes.

Every shape is a signed distance function (SDF) evaluated in its own local frame; the scene
module poses and rasterises them (:func:`sparsex.partworld.scene.render_scene`).
"""

from __future__ import annotations

import colorsys
import math
from dataclasses import dataclass
from typing import Any

import numpy as np

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
NUM_PARTS = len(PART_NAMES)

#: The :class:`Variant` objects of each slot, in variant-index order (:data:`PART_VARIANTS` holds their names).
VARIANTS: dict[str, tuple[Variant, ...]] = {
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
PART_VARIANTS: dict[str, tuple[str, ...]] = {slot: tuple(v.name for v in VARIANTS[slot]) for slot in PART_NAMES}

#: Shades a variant's shape can be drawn in (shade 0 is :data:`VARIANTS` itself), and so the most
#: variants a slot can have: ``len(VARIANTS[slot]) * SHADES``.
SHADES = 3
MAX_VARIANTS = 4 * SHADES
#: Hue rotation (in turns) from one shade to the next.
SHADE_HUE_STEP = 0.37


def shade_colour(colour: Colour, shade: int) -> Colour:
    """The base colour of a layer in shade ``shade``: in HSV, the hue rotated by
    ``shade * SHADE_HUE_STEP`` turns. An achromatic colour (saturation below 0.25: black, white,
    greys) is first given saturation 0.7 and its value clipped to ``[0.35, 0.85]``, so that its
    shades differ from it too. Shade 0 is ``colour`` itself."""
    if shade == 0:
        return colour
    h, s, v = colorsys.rgb_to_hsv(*colour)
    if s < 0.25:
        s, v = 0.7, min(max(v, 0.35), 0.85)
    r, g, b = colorsys.hsv_to_rgb((h + shade * SHADE_HUE_STEP) % 1.0, s, v)
    return (r, g, b)


def _shaded_variants(slot: str) -> tuple[Variant, ...]:
    """Variant ``v`` of ``slot`` in the extended order: shape of ``VARIANTS[slot][v % 4]`` in shade
    ``v // 4`` (named ``<name>_shade<k>`` for shade k >= 1)."""
    base = VARIANTS[slot]
    return tuple(
        variant if shade == 0 else
        Variant(f"{variant.name}_shade{shade}", tuple((shape, shade_colour(c, shade)) for shape, c in variant.layers))
        for shade in range(SHADES) for variant in base
    )


#: Every variant a slot can have, in variant-index order: the first four are :data:`VARIANTS`;
#: a world with ``variants = n`` uses the first ``n`` (:func:`slot_variants`).
ALL_VARIANTS: dict[str, tuple[Variant, ...]] = {slot: _shaded_variants(slot) for slot in PART_NAMES}
#: ``VARIANT_BY_NAME[slot][name]``: the :class:`Variant` of that name.
VARIANT_BY_NAME: dict[str, dict[str, Variant]] = {slot: {v.name: v for v in vs} for slot, vs in ALL_VARIANTS.items()}


def slot_variants(count: int) -> dict[str, tuple[str, ...]]:
    """Variant names per slot of a world with ``count`` variants per slot (``count`` <= :data:`MAX_VARIANTS`)."""
    return {slot: tuple(v.name for v in ALL_VARIANTS[slot][:count]) for slot in PART_NAMES}

#: Drawing order of the creature's layers, bottom to top ("body" is the torso + head).
Z_ORDER: tuple[str, ...] = ("tail", "feet", "body", "wing", "crest", "beak", "eye")

#: Clutter shapes in a unit frame (the scene scales them to the object's radius), by kind.
CLUTTER_SHAPES: dict[str, Any] = {
    "circle": Circle(0.0, 0.0, 1.0),
    "square": Box(0.0, 0.0, 0.8, 0.8),
    "triangle": _regular_polygon(3, 1.0),
    "star": _regular_polygon(5, 1.0, inner=0.45),
    "ring": Ring(0.0, 0.0, 0.8, 0.2),
    "cross": Union((Box(0.0, 0.0, 1.0, 0.3), Box(0.0, 0.0, 0.3, 1.0))),
}
CLUTTER_KINDS: tuple[str, ...] = tuple(CLUTTER_SHAPES)
