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
the creature. The label is ``index % 24``, so every split is balanced. Every shape is a signed
distance function, rendered with anti-aliased coverage ``alpha`` by a painter's algorithm
(:mod:`sparsex.partworld.scene`).

Harder worlds come from more settings of the same generator (:class:`PartWorldConfig`: ``classes``,
``variants``, ``absent_slots``, ``max_occluders``, ``texture``), bundled as named :data:`PRESETS`:
``parts-fine`` has 120 classes in genera of four that differ in one part, per-genus part subsets,
occluders in front of the creature and a textured background (``docs/partworld.md``). Their
defaults draw the 24-class world unchanged.

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

The modules, in import order:

- :mod:`~sparsex.partworld.shapes`: signed distance functions, the body, the part variants, the
  clutter shapes.
- :mod:`~sparsex.partworld.classes`: the class table and its derivation.
- :mod:`~sparsex.partworld.scene`: :class:`PartWorldConfig`, scene sampling and rendering.
- :mod:`~sparsex.partworld.dataset`: :class:`PartWorld`, one split as a dataset.
- :mod:`~sparsex.partworld.files`: :func:`write_parts_tree` writes a scene set as a folder of PNGs
  with mask PNGs and a ``meta.json``; ``create_dataset("parts", root=...)`` (:func:`create_parts`,
  registered as the dataset ``"parts"``) reads such a folder back by regenerating it.
- :mod:`~sparsex.partworld.interventions`: :class:`InterventionCache`, a model's logits on
  interventions, each forwarded once.
- :mod:`~sparsex.partworld.protocols`: the FunnyBirds protocols (CSDC, PC, DC, D, BI, SD, TS) as
  :func:`evaluate_parts` / :class:`PartProtocols`.
- :mod:`~sparsex.partworld.oracle`: :class:`PartOracle`, a classifier with a known decision rule,
  and its exact explanation.

The names of the last three are imported on first use: the protocols bring in
:mod:`sparsex.metrics`, which importing the world does not.
"""

from typing import Any

from .classes import CLASS_NAMES, CLASS_PARTS, CLASS_TABLE, NUM_CLASSES, nearest_neighbour_distances
from .dataset import PartWorld
from .files import create_parts, decode_masks, encode_masks, read_parts_meta, write_parts_tree
from .scene import GENERATOR_VERSION, PRESETS, SPLITS, PartWorldConfig, Scene, render_scene, sample_scene
from .shapes import NUM_PARTS, PART_NAMES, PART_VARIANTS

_LAZY = {
    "InterventionCache": "interventions",
    "intervention_key": "interventions",
    "THRESHOLDS": "protocols",
    "PartProtocols": "protocols",
    "PartsResult": "protocols",
    "contrast_pair": "protocols",
    "evaluate_parts": "protocols",
    "evaluate_parts_model": "protocols",
    "important_parts": "protocols",
    "minimal_sufficient_part_sets": "protocols",
    "part_importances": "protocols",
    "spearman": "protocols",
    "PartOracle": "oracle",
    "oracle_explanation": "oracle",
}

__all__ = [
    "CLASS_NAMES",
    "CLASS_PARTS",
    "CLASS_TABLE",
    "NUM_CLASSES",
    "nearest_neighbour_distances",
    "PartWorld",
    "create_parts",
    "decode_masks",
    "encode_masks",
    "read_parts_meta",
    "write_parts_tree",
    "GENERATOR_VERSION",
    "PRESETS",
    "SPLITS",
    "PartWorldConfig",
    "Scene",
    "render_scene",
    "sample_scene",
    "NUM_PARTS",
    "PART_NAMES",
    "PART_VARIANTS",
    *_LAZY,
]


def __getattr__(name: str) -> Any:
    if name in _LAZY:
        import importlib

        return getattr(importlib.import_module(f".{_LAZY[name]}", __name__), name)
    raise AttributeError(f"module 'sparsex.partworld' has no attribute {name!r}")
