"""The harder worlds' settings and the ``parts-fine`` preset: class table, part subsets, occluders, masks."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from sparsex import create_dataset
from sparsex.errors import DataError
from sparsex.partworld import PART_NAMES, PartWorld, PartWorldConfig, decode_masks, encode_masks, write_parts_tree
from sparsex.partworld.classes import ABSENT, CLASS_TABLE, SPECIES_PER_GENUS, class_table, nearest_neighbour_distances
from sparsex.partworld.scene import PRESETS, render_scene
from sparsex.partworld.shapes import ALL_VARIANTS, slot_variants


def fine(**kw) -> PartWorldConfig:
    return PartWorldConfig.from_dict({"preset": "parts-fine", "image_size": 64, "train_size": 240, "val_size": 0,
                                      "test_size": 120, **kw})


def test_preset_settings_and_overrides():
    config = fine(seed=3)
    assert config.classes == PRESETS["parts-fine"]["classes"] >= 100 and config.seed == 3 and config.image_size == 64
    assert config.max_occluders > 0 and config.absent_slots > 0 and config.variants > 4
    ds = create_dataset("parts", split="test", preset="parts-fine", image_size=32, test_size=10)
    assert len(ds.classes) == config.classes and ds.classes[0] == "class_000" and len(ds) == 10


def test_unknown_preset_and_bad_settings_are_one_line_errors():
    with pytest.raises(DataError, match="unknown part world preset 'nope'; known presets: parts-fine"):
        PartWorldConfig.from_dict({"preset": "nope"})
    with pytest.raises(DataError, match="variants"):
        PartWorldConfig(variants=13)
    with pytest.raises(DataError, match="max_occluders"):
        PartWorldConfig(max_clutter=8, max_occluders=2)  # 10 background objects do not fit the 16-bit masks


def test_fine_table_genera_differ_in_one_slot_and_subsets():
    config = fine()
    table = config.class_table
    assert len(table) == config.classes and len(set(table)) == config.classes
    assert set(nearest_neighbour_distances(table)) == {1}
    for g in range(0, config.classes, SPECIES_PER_GENUS):
        genus = table[g:g + SPECIES_PER_GENUS]
        differing = [k for k in range(len(PART_NAMES)) if len({row[k] for row in genus}) > 1]
        assert len(differing) == 1 and ABSENT not in {row[differing[0]] for row in genus}
    absent = [sum(v == ABSENT for v in row) for row in table]
    assert max(absent) == config.absent_slots and min(absent) == 0
    assert {v for row in table for v in row} == {ABSENT, *range(config.variants)}
    assert class_table() is CLASS_TABLE and class_table(120, 8, 2) is table  # the default world keeps its table


def test_shaded_variants_keep_shapes_and_change_colours():
    names = slot_variants(8)
    for slot in PART_NAMES:
        base, shaded = ALL_VARIANTS[slot][0], ALL_VARIANTS[slot][4]
        assert names[slot][4] == f"{base.name}_shade1" and len(set(names[slot])) == 8
        assert [s for s, _ in base.layers] == [s for s, _ in shaded.layers]
        assert all(np.abs(np.subtract(a, b)).max() > 0.2 for (_, a), (_, b) in zip(base.layers, shaded.layers))


def test_fine_items_are_deterministic_with_absent_parts_not_drawn():
    config = fine()
    a, b = PartWorld("train", config), PartWorld("train", config)
    for i in (0, 5, 121):
        x, y = a[i], b[i]
        assert torch.equal(x["image"], y["image"]) and torch.equal(x["part_masks"], y["part_masks"])
        assert x["label"] == i % config.classes
        shown = torch.tensor([v != ABSENT for v in config.class_table[x["label"]]])
        assert torch.equal(x["parts_present"], shown)
        assert not x["part_masks"][~shown].any()
        assert set(a.class_parts[x["label"]]) == {PART_NAMES[k] for k in range(len(PART_NAMES)) if shown[k]}
    assert not torch.equal(a[0]["image"], PartWorld("train", fine(seed=1))[0]["image"])


def test_occluders_hide_parts_and_the_masks_are_the_visible_pixels():
    config = fine(image_size=96)
    ds = PartWorld("test", config)
    hidden_somewhere = False
    for i in range(40):
        item, scene = ds[i], ds.scene(i)
        occluder_rows = item["background_masks"][config.max_clutter:]
        assert item["background_masks"].shape[0] == config.max_clutter + config.max_occluders
        assert torch.equal(item["background_present"][config.max_clutter:],
                           torch.arange(config.max_occluders) < len(scene.occluders))
        if not scene.occluders:
            continue
        # Without the occluders, the same scene shows each part on a superset of its pixels; the pixels it gains
        # are exactly where an occluder is opaque-free-visible now, i.e. the occluders' masks cover them.
        bare = ds.render(i, remove_background=[config.max_clutter + j for j in range(len(scene.occluders))])
        assert (bare["part_masks"] | ~item["part_masks"]).all()
        gained = bare["part_masks"] & ~item["part_masks"]
        assert (~gained | occluder_rows.any(0)).all()
        hidden_somewhere |= bool(gained.any())
        # the image changes only inside the occluders' masks
        assert ((item["image"] != bare["image"]).any(0) <= occluder_rows.any(0)).all()
    assert hidden_somewhere


def test_masks_are_exact_visible_contributions():
    """A mask pixel is where removing that layer changes the image (before 8-bit rounding), up to
    the layer's alpha being positive under only non-opaque layers; checked by rendering without it."""
    config = fine(image_size=80)
    ds = PartWorld("test", config)
    for i in range(12):
        scene = ds.scene(i)
        full = render_scene(scene, 80, config.max_clutter, max_occluders=config.max_occluders)
        for k in range(len(PART_NAMES)):
            without = render_scene(scene, 80, config.max_clutter, remove_parts=[k], max_occluders=config.max_occluders)
            changed = np.any(full["image"] != without["image"], axis=0)
            assert not (changed & ~full["part_masks"][k]).any()  # every change lies in the mask
            if full["part_masks"][k].sum() > 20:
                assert changed[full["part_masks"][k]].mean() > 0.5


def test_fine_tree_round_trip(tmp_path):
    config = fine(image_size=32, train_size=0, test_size=6)
    out = write_parts_tree(tmp_path / "fine", config, splits=("test",), progress=False)
    assert len(list((out / "test").iterdir())) == config.classes
    back = create_dataset("parts", split="test", root=out)
    assert back.config == config
    item = back[2]
    bits = encode_masks(item["part_masks"].numpy(), item["background_masks"].numpy(), item["body_mask"].numpy())
    parts, background, body = decode_masks(bits, config.background_objects)
    assert np.array_equal(parts, item["part_masks"].numpy()) and np.array_equal(background, item["background_masks"].numpy())


def test_default_world_fingerprint_has_no_new_settings():
    fingerprint = PartWorld("test", PartWorldConfig()).fingerprint()["config"]
    assert "classes" not in fingerprint and "max_occluders" not in fingerprint
    assert PartWorld("test", fine()).fingerprint()["config"]["classes"] == fine().classes


def test_protocols_accept_a_world_with_another_class_table():
    from sparsex.partworld import InterventionCache

    cache = InterventionCache(torch.nn.Identity(), PartWorld("test", fine()))
    assert cache.num_classes == fine().classes
