"""The part world as a dataset: item contract, determinism, scenes, rendered interventions, settings."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from sparsex import SparsexError, create_dataset, list_datasets
from sparsex.errors import DataError
from sparsex.partworld import GENERATOR_VERSION, PART_NAMES, PartWorld, PartWorldConfig

K = len(PART_NAMES)


def small(**kw) -> PartWorldConfig:
    base = dict(image_size=80, train_size=48, val_size=24, test_size=24, max_clutter=4)
    base.update(kw)
    return PartWorldConfig(**base)


def changed(a: dict, b: dict) -> torch.Tensor:
    """(H, W) bool: pixels whose float value differs in any channel."""
    return (a["image"] != b["image"]).any(0)


def test_registered_and_item_contract():
    assert "parts" in list_datasets()
    ds = create_dataset("parts", split="val", image_size=64, val_size=30, max_clutter=3)
    assert isinstance(ds, PartWorld) and len(ds) == 30
    assert ds.classes == [f"class_{c:02d}" for c in range(24)] and ds.num_classes == 24
    assert ds.channels == 3 and ds.image_size == (64, 64) and ds.part_names == list(PART_NAMES)
    item = ds[5]
    assert item["image"].dtype == torch.float32 and item["image"].shape == (3, 64, 64)
    assert 0.0 <= item["image"].min() and item["image"].max() <= 1.0
    assert item["label"] == 5 and item["index"] == 5 and item["part_names"] == list(PART_NAMES)
    assert item["part_masks"].dtype == torch.bool and item["part_masks"].shape == (K, 64, 64)
    assert item["parts_present"].dtype == torch.bool and item["parts_present"].all()
    assert item["body_mask"].shape == (64, 64) and item["body_mask"].any()
    assert item["background_masks"].shape == (3, 64, 64) and item["background_present"].shape == (3,)
    assert all(m.any() for m in item["part_masks"])
    n = len(ds.scene(5).clutter)
    assert item["background_present"].tolist() == [j < n for j in range(3)]
    assert not item["background_masks"][n:].any()
    assert ds[-1]["index"] == 29
    with pytest.raises(IndexError):
        ds[30]
    batch = torch.utils.data.default_collate([ds[0], ds[1]])
    assert batch["image"].shape == (2, 3, 64, 64) and batch["part_masks"].shape == (2, K, 64, 64)


def test_scene_matches_class_table():
    ds = PartWorld("test", small(test_size=40))
    for i in (0, 7, 23, 30):
        scene = ds.scene(i)
        assert scene.label == i % 24 and scene.class_name == ds.classes[scene.label]
        assert scene.variants == ds.class_parts[scene.label]
        assert 0.75 <= scene.pose.scale <= 1.1 and abs(scene.pose.angle) <= 25.0
        assert len(scene.clutter) <= 4 and scene.dropped_parts == ()
        eye_layers = 2 if scene.variants["eye"] == "big_white_blue_pupil" else 1
        assert [len(scene.part_colours[p]) for p in PART_NAMES] == [eye_layers if p == "eye" else 1 for p in PART_NAMES]


def test_creature_stays_inside_the_image():
    ds = PartWorld("train", small(image_size=128))
    for i in range(24):
        item = ds[i]
        creature = item["part_masks"].any(0) | item["body_mask"]
        border = torch.cat([creature[0], creature[-1], creature[:, 0], creature[:, -1]])
        assert not border.any(), f"scene {i} touches the image border"


def test_determinism():
    a, b = PartWorld("train", small(seed=7)), PartWorld("train", small(seed=7))
    other_seed, other_split = PartWorld("train", small(seed=8)), PartWorld("val", small(seed=7))
    for i in (0, 3, 11):
        x, y = a[i], b[i]
        assert x["image"].numpy().tobytes() == y["image"].numpy().tobytes()
        assert torch.equal(x["part_masks"], y["part_masks"]) and torch.equal(x["background_masks"], y["background_masks"])
        assert not torch.equal(x["image"], other_seed[i]["image"])
        assert not torch.equal(x["image"], other_split[i]["image"])
    assert a.fingerprint() == b.fingerprint() != other_seed.fingerprint()
    assert a.fingerprint()["generator_version"] == GENERATOR_VERSION and a.fingerprint()["config"]["seed"] == 7


def test_removing_a_part_changes_exactly_its_mask():
    ds = PartWorld("val", small(seed=3, image_size=96))
    inside = total = 0
    for i in range(0, 24, 2):
        full = ds.render(i)
        for k, name in enumerate(PART_NAMES):
            out = ds.render(i, remove_parts=[name])
            diff, mask = changed(full, out), full["part_masks"][k]
            assert not (diff & ~mask).any(), f"scene {i}: removing {name} changed pixels outside its mask"
            inside += int((diff & mask).sum())
            total += int(mask.sum())
            assert not out["part_masks"][k].any() and out["parts_present"].tolist() == [j != k for j in range(K)]
            others = [j for j in range(K) if j != k]
            assert out["part_masks"][others].flatten(1).any(1).all()
            # Clutter behind the part shows through, and only there.
            revealed = out["background_masks"] & ~full["background_masks"]
            assert not (full["background_masks"] & ~out["background_masks"]).any()
            assert not (revealed & ~mask).any()
    assert inside >= 0.9 * total


def test_removing_several_parts_by_index_and_name():
    ds = PartWorld("test", small(seed=1))
    full = ds.render(4)
    out = ds.render(4, remove_parts=[0, "wing", 5])
    union = full["part_masks"][[0, 3, 5]].any(0)
    assert not (changed(full, out) & ~union).any()
    assert out["parts_present"].tolist() == [False, True, True, False, True, False]
    with pytest.raises(DataError):
        ds.render(4, remove_parts=["tentacle"])
    with pytest.raises(DataError):
        ds.render(4, remove_parts=[6])
    with pytest.raises(DataError):
        ds.render(4, remove_background=[4])


def test_removing_background_objects_changes_exactly_their_masks():
    ds = PartWorld("train", small(seed=5, max_clutter=5))
    inside = total = objects = 0
    for i in range(16):
        full = ds.render(i)
        for j in np.flatnonzero(full["background_present"].numpy()):
            out = ds.render(i, remove_background=[int(j)])
            diff, mask = changed(full, out), full["background_masks"][j]
            assert not (diff & ~mask).any(), f"scene {i}: removing clutter {j} changed pixels outside its mask"
            assert not out["background_masks"][j].any() and not out["background_present"][j]
            assert torch.equal(out["part_masks"], full["part_masks"])
            inside += int((diff & mask).sum())
            total += int(mask.sum())
            objects += 1
        bare = ds.render(i, remove_background=True)
        assert not bare["background_present"].any() and not bare["background_masks"].any()
        assert not (changed(full, bare) & ~full["background_masks"].any(0)).any()
    assert objects >= 10 and inside >= 0.9 * total


def test_part_dropout():
    cfg = small(part_dropout=0.5)
    ds, clean = PartWorld("train", cfg), PartWorld("train", small())
    dropped_items = 0
    for i in range(24):
        item = ds[i]
        present = item["parts_present"]
        nonempty = item["part_masks"].flatten(1).any(1)
        assert torch.equal(present, nonempty)
        assert present.any()
        scene = ds.scene(i)
        assert [p not in scene.dropped_parts for p in PART_NAMES] == present.tolist()
        if present.all():
            assert torch.equal(item["image"], clean[i]["image"])
        else:
            dropped_items += 1
            assert torch.equal(item["image"], clean.render(i, remove_parts=scene.dropped_parts)["image"])
    assert 4 <= dropped_items <= 20
    # The other splits and render() never drop parts.
    assert PartWorld("val", cfg)[0]["parts_present"].all()
    assert all(ds.render(i)["parts_present"].all() for i in range(3))


def test_labels_without_rendering():
    ds = PartWorld("val", small(val_size=50, image_size=48))
    labels = ds.labels()
    assert labels.dtype == np.int64 and labels.shape == (50,)
    assert labels.tolist() == [ds[i]["label"] for i in range(50)]
    assert np.bincount(labels, minlength=24).min() == 2


@pytest.mark.parametrize(
    "bad",
    [
        {"image_size": 16},
        {"image_size": 64.0},
        {"train_size": -1},
        {"seed": -1},
        {"seed": True},
        {"max_clutter": 10},
        {"part_dropout": 1.0},
        {"part_dropout": -0.1},
        {"colour_jitter": 0.9},
        {"colour": 0.1},
    ],
)
def test_bad_settings(bad):
    with pytest.raises(DataError) as info:
        create_dataset("parts", **bad)
    assert isinstance(info.value, SparsexError) and isinstance(info.value, ValueError)
    assert "\n" not in str(info.value) and next(iter(bad)) in str(info.value)


def test_bad_split():
    with pytest.raises(DataError, match="no split"):
        PartWorld("validation")


def test_items_and_renders_agree_on_the_test_split():
    world = PartWorld("test", PartWorldConfig(image_size=48, test_size=6, max_clutter=2))
    for i in range(len(world)):
        assert torch.equal(world[i]["image"], world.render(i)["image"])
        assert torch.equal(world[i]["part_masks"], world.render(i)["part_masks"])
