"""Scenes: the config, one random scene per image, and its rendering.

Each image has its own random :class:`Scene`, drawn from
``np.random.SeedSequence([seed, split_id, index])`` (:func:`sample_scene`). :func:`render_scene`
draws it with a painter's algorithm in numpy, bottom to top::

    background -> clutter 0..n-1 -> tail -> feet -> body -> wing -> crest -> beak -> eye -> occluders 0..m-1

Every shape's signed distance function is evaluated in its own local frame (the inverse pose
applied to the pixel centres, only inside the shape's bounding box) and turned into an
anti-aliased coverage ``alpha = clip(0.5 - sdf_in_pixels, 0, 1)``, which is composited as
``C = C * (1 - alpha) + colour * alpha``. The invariants this gives (pixel-exact masks, rendered
interventions, determinism) are described in :mod:`sparsex.partworld`.
"""

from __future__ import annotations

import colorsys
import math
from dataclasses import dataclass, fields
from typing import Any, Iterable

import numpy as np

from ..checks import check_int, check_number, from_settings
from ..errors import DataError
from .classes import ABSENT, NUM_CLASSES, class_names, class_parts, class_table
from .shapes import (
    ALL_VARIANTS,
    BODY_COLOUR,
    BODY_SHAPE,
    CLUTTER_KINDS,
    CLUTTER_SHAPES,
    MAX_VARIANTS,
    PART_NAMES,
    VARIANT_BY_NAME,
    VARIANTS,
    Z_ORDER,
    Colour,
)

GENERATOR_VERSION = "parts-2"  # parts-2: items are 8-bit images, identical to the written PNGs
SPLITS = ("train", "val", "test")
_SPLIT_IDS = {"train": 0, "val": 1, "test": 2}

SCALE_RANGE = (0.75, 1.1)
MAX_ROTATION_DEG = 25.0
#: Amplitude of the background's sinusoidal texture (intensity units).
TEXTURE_AMPLITUDE = 0.015
#: Clutter radius as a fraction of the image size.
CLUTTER_RADIUS_RANGE = (0.05, 0.12)
#: Occluder radius as a fraction of the image size.
OCCLUDER_RADIUS_RANGE = (0.04, 0.08)
#: An occluder's centre is drawn uniformly from this fraction of the creature's pixel box around its centre.
OCCLUDER_SPREAD = 0.8
#: Mask PNG bit of the body; parts use bits 0..5 and background objects (clutter, then occluders)
#: bits 6..6+max_clutter+max_occluders-1.
BODY_BIT = 15
MAX_CLUTTER_LIMIT = BODY_BIT - 6
#: Most classes a world can have.
MAX_CLASSES = 1000


# ----------------------------------------------------------------------------------------------
# Placement of the creature.
# ----------------------------------------------------------------------------------------------


def _creature_box() -> tuple[float, float, float, float]:
    boxes = [BODY_SHAPE.box] + [shape.box for vs in VARIANTS.values() for v in vs for shape, _ in v.layers]
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
# Config and scenes.
# ----------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class PartWorldConfig:
    """Everything that changes the part world's images (besides :data:`GENERATOR_VERSION`).

    ``colour_jitter`` is the half width of the uniform per-channel offset added to each body and
    part colour; ``part_dropout`` is the probability that a *train* item has a random non-empty
    proper subset of its parts removed; ``max_clutter + max_occluders`` is at most 9 so that masks
    fit the 16-bit mask PNGs.

    The last five settings make harder worlds (the defaults are the 24-class world): ``classes``
    (labels are ``index % classes``), ``variants`` per slot (4 to 12: the four shapes in up to
    three shades, :data:`~sparsex.partworld.shapes.ALL_VARIANTS`) and ``absent_slots`` (a genus of
    classes lacks up to this many slots) choose the class table
    (:func:`~sparsex.partworld.classes.class_table`); ``max_occluders`` objects at most are drawn
    *in front of* the creature, over its parts; ``texture`` is the amplitude of the background's
    sinusoidal texture. :data:`PRESETS` names bundles of settings (``from_dict({"preset": ...})``).
    """

    seed: int = 0
    image_size: int = 224
    train_size: int = 2400
    val_size: int = 480
    test_size: int = 480
    max_clutter: int = 3
    part_dropout: float = 0.0
    colour_jitter: float = 0.05
    classes: int = NUM_CLASSES
    variants: int = 4
    absent_slots: int = 0
    max_occluders: int = 0
    texture: float = TEXTURE_AMPLITUDE

    def __post_init__(self) -> None:
        what = "part world setting"
        check_int(self.seed, f"{what} seed", 0, error=DataError)
        check_int(self.image_size, f"{what} image_size", 32, error=DataError)
        for name in ("train_size", "val_size", "test_size"):
            check_int(getattr(self, name), f"{what} {name}", 0, error=DataError)
        check_int(self.max_clutter, f"{what} max_clutter", 0, MAX_CLUTTER_LIMIT, error=DataError)
        check_number(self.part_dropout, f"{what} part_dropout", 0, 1, high_open=True, error=DataError)
        check_number(self.colour_jitter, f"{what} colour_jitter", 0, 0.5, error=DataError)
        check_int(self.classes, f"{what} classes", 2, MAX_CLASSES, error=DataError)
        check_int(self.variants, f"{what} variants", 4, MAX_VARIANTS, error=DataError)
        check_int(self.absent_slots, f"{what} absent_slots", 0, len(PART_NAMES) - 1, error=DataError)
        check_int(self.max_occluders, f"{what} max_occluders", 0, MAX_CLUTTER_LIMIT - self.max_clutter, error=DataError)
        check_number(self.texture, f"{what} texture", 0, 0.25, error=DataError)

    @classmethod
    def from_dict(cls, settings: dict[str, Any]) -> "PartWorldConfig":
        """Build a config from keyword settings; unknown names raise :class:`DataError`. A ``preset``
        (a name in :data:`PRESETS`) supplies its settings first; the other names override them."""
        settings = dict(settings)
        preset = settings.pop("preset", None)
        if preset is not None:
            if preset not in PRESETS:
                raise DataError(f"unknown part world preset {preset!r}; known presets: {', '.join(PRESETS)}")
            settings = {**PRESETS[preset], **settings}
        return from_settings(cls, settings, "part world", DataError)

    def size(self, split: str) -> int:
        return getattr(self, f"{split}_size")

    @property
    def background_objects(self) -> int:
        """Rows of an item's ``background_masks``: ``max_clutter`` clutter objects, then ``max_occluders`` occluders."""
        return self.max_clutter + self.max_occluders

    @property
    def class_table(self) -> tuple[tuple[int, ...], ...]:
        """``class_table[c][k]``: class ``c``'s variant index of slot ``PART_NAMES[k]``, or ``ABSENT``."""
        return class_table(self.classes, self.variants, self.absent_slots)

    @property
    def class_names(self) -> tuple[str, ...]:
        return class_names(self.classes)

    @property
    def class_parts(self) -> tuple[dict[str, str], ...]:
        """Per class, slot -> variant name of the slots it shows."""
        return class_parts(self.class_table, self.variants)


#: Named bundles of :class:`PartWorldConfig` settings (``PartWorldConfig.from_dict({"preset": name, ...})``,
#: ``--data-options preset=NAME``). ``parts-fine``: 120 classes in genera of four that differ in one
#: slot, 8 variants per slot, up to 2 slots absent per genus, up to 6 clutter objects behind and 3
#: occluders in front of the creature, a stronger background texture; 40 / 10 / 10 images per class.
PRESETS: dict[str, dict[str, Any]] = {
    "parts-fine": dict(classes=120, variants=8, absent_slots=2, max_clutter=6, max_occluders=3, texture=0.08,
                       train_size=4800, val_size=1200, test_size=1200),
}
#: The settings added for harder worlds (their defaults draw the 24-class world of before).
HARDER_WORLD_SETTINGS = ("classes", "variants", "absent_slots", "max_occluders", "texture")
_CONFIG_FIELDS = {f.name for f in fields(PartWorldConfig)}
assert all(set(p) <= _CONFIG_FIELDS for p in PRESETS.values())


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
    sinusoid of amplitude ``texture`` (the config's, default :data:`TEXTURE_AMPLITUDE`) with
    ``texture_freq`` (cycles per image in x, y) and ``texture_phase`` (radians)."""

    colour_a: Colour
    colour_b: Colour
    angle: float
    texture_freq: tuple[float, float]
    texture_phase: float
    texture: float = TEXTURE_AMPLITUDE


@dataclass(frozen=True)
class Scene:
    """Everything random about one image. ``variants`` maps slot -> variant name, for the slots
    the class shows; ``part_colours`` maps those slots -> one jittered colour per layer of the
    variant; ``dropped_parts`` are the parts that train-time part dropout removes from the item
    (empty unless ``part_dropout > 0`` on the train split); ``occluders`` are drawn in front of
    the creature."""

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
    occluders: tuple[ClutterObject, ...] = ()


def _colour(values: Iterable[float]) -> Colour:
    r, g, b = (float(v) for v in values)
    return (r, g, b)


def sample_scene(config: PartWorldConfig, split: str, index: int) -> Scene:
    """Draw the scene of item ``index`` of ``split`` from ``SeedSequence([seed, split_id, index])``."""
    size = config.image_size
    scene_seq, dropout_seq = np.random.SeedSequence([config.seed, _SPLIT_IDS[split], index]).spawn(2)
    rng = np.random.default_rng(scene_seq)
    label = index % config.classes

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

    row = config.class_table[label]
    variants = {slot: ALL_VARIANTS[slot][row[k]] for k, slot in enumerate(PART_NAMES) if row[k] != ABSENT}
    body_colour = jitter(BODY_COLOUR)
    part_colours = {slot: tuple(jitter(c) for _, c in variant.layers) for slot, variant in variants.items()}

    background = Background(
        colour_a=_colour(rng.uniform(0.78, 0.98, 3)),
        colour_b=_colour(rng.uniform(0.78, 0.98, 3)),
        angle=float(rng.uniform(0.0, 360.0)),
        texture_freq=(float(rng.uniform(-5.0, 5.0)), float(rng.uniform(-5.0, 5.0))),
        texture_phase=float(rng.uniform(0.0, 2 * math.pi)),
        texture=config.texture,
    )

    def background_object(centre_low: Any, centre_high: Any, radius_range: tuple[float, float]) -> ClutterObject:
        kind = CLUTTER_KINDS[int(rng.integers(len(CLUTTER_KINDS)))]
        cx, cy = rng.uniform(centre_low, centre_high, 2)
        radius = float(rng.uniform(*radius_range)) * size
        rot = float(rng.uniform(0.0, 360.0))
        hue, sat, val = rng.uniform((0.0, 0.4, 0.3), (1.0, 1.0, 0.95))
        return ClutterObject(kind, (float(cx), float(cy)), radius, rot, _colour(colorsys.hsv_to_rgb(hue, sat, val)))

    clutter = [background_object(0.0, size, CLUTTER_RADIUS_RANGE) for _ in range(int(rng.integers(0, config.max_clutter + 1)))]
    # Drawn only when the world has occluders, after every other draw: the other worlds' scenes are unchanged.
    spread = np.array([half_x, half_y]) * OCCLUDER_SPREAD
    occluders = []
    if config.max_occluders:
        occluders = [background_object(np.array(center) - spread, np.array(center) + spread, OCCLUDER_RADIUS_RANGE)
                     for _ in range(int(rng.integers(0, config.max_occluders + 1)))]

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
        class_name=config.class_names[label],
        variants={slot: v.name for slot, v in variants.items()},
        pose=Pose(center, scale, angle, flip),
        body_colour=body_colour,
        part_colours=part_colours,
        background=background,
        clutter=tuple(clutter),
        dropped_parts=dropped,
        occluders=tuple(occluders),
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
    a = bg.texture
    texture = (a * np.sin(ax))[None, :] * np.cos(ay)[:, None] + (a * np.cos(ax))[None, :] * np.sin(ay)[:, None]
    ca = np.asarray(bg.colour_a, dtype=np.float32)[:, None, None]
    dc = (np.asarray(bg.colour_b, dtype=np.float32) - np.asarray(bg.colour_a, dtype=np.float32))[:, None, None]
    return ca + dc * t[None] + texture[None]


def render_scene(
    scene: Scene, image_size: int, max_clutter: int, remove_parts: Iterable[int] = (), remove_background: Iterable[int] = (),
    max_occluders: int = 0,
) -> dict[str, Any]:
    """Render ``scene`` without the part slots ``remove_parts`` and background objects
    ``remove_background`` (indices: clutter ``j`` is ``j``, occluder ``j`` is ``max_clutter + j``).
    Returns numpy arrays: ``image`` float32 ``(3, H, W)`` in [0, 1], ``part_masks`` bool
    ``(K, H, W)``, ``background_masks`` bool ``(M, H, W)`` with ``M = max_clutter + max_occluders``,
    ``body_mask`` bool ``(H, W)``, ``parts_present`` bool ``(K,)`` (False for removed slots and
    slots the class does not show), ``background_present`` bool ``(M,)``.
    """
    h = w = image_size
    removed_parts, removed_bg = set(remove_parts), set(remove_background)
    k = len(PART_NAMES)
    canvas = _background(scene.background, h, w)
    part_masks = np.zeros((k, h, w), dtype=bool)
    background_masks = np.zeros((max_clutter + max_occluders, h, w), dtype=bool)
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
            draw(frame, CLUTTER_SHAPES[obj.kind], obj.colour, background_masks[j])

    pose = scene.pose
    frame = _Frame(pose.center, UNIT * image_size * pose.scale, pose.angle, pose.flip, _ORIGIN)
    for name in Z_ORDER:
        if name == "body":
            draw(frame, BODY_SHAPE, scene.body_colour, body_mask)
            continue
        slot = PART_NAMES.index(name)
        if slot in removed_parts or name not in scene.variants:
            continue
        variant = VARIANT_BY_NAME[name][scene.variants[name]]
        for (shape, _), colour in zip(variant.layers, scene.part_colours[name]):
            draw(frame, shape, colour, part_masks[slot])

    for j, obj in enumerate(scene.occluders):
        if max_clutter + j not in removed_bg:
            frame = _Frame(obj.center, obj.radius, obj.angle, False, (0.0, 0.0))
            draw(frame, CLUTTER_SHAPES[obj.kind], obj.colour, background_masks[max_clutter + j])

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
        "parts_present": np.array([i not in removed_parts and PART_NAMES[i] in scene.variants for i in range(k)]),
        "background_present": np.array([(j < len(scene.clutter) if j < max_clutter else j - max_clutter < len(scene.occluders))
                                        and j not in removed_bg for j in range(max_clutter + max_occluders)]),
    }


def to_8bit(image: np.ndarray) -> np.ndarray:
    """Round a float render to the 256 levels of an 8-bit image (still float32 in [0, 1]).

    Items are exactly what ``write_parts_tree`` stores as PNG, so a model trained on items sees the
    same input when it is given the written files (frozen CNN features on these flat images move by
    20-35% under the rounding alone). Removing a layer still changes only pixels inside its mask.
    """
    return (np.round(np.clip(image, 0.0, 1.0) * 255.0) / 255.0).astype(np.float32)
