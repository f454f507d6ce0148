"""The part world on disk: the PNG tree written and read back, and bad meta.json files."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch
from PIL import Image

from sparsex import create_dataset
from sparsex.errors import DataError, MissingSplitError, OutputExistsError
from sparsex.partworld import GENERATOR_VERSION, PART_NAMES, PartWorld, PartWorldConfig, decode_masks, write_parts_tree


def test_write_tree_round_trip(tmp_path):
    cfg = PartWorldConfig(image_size=48, train_size=5, val_size=3, test_size=2, part_dropout=0.5, max_clutter=3)
    out = write_parts_tree(tmp_path / "pw", cfg, splits=("train", "val"), progress=False)
    meta = json.loads((out / "meta.json").read_text())
    assert meta["generator_version"] == GENERATOR_VERSION and meta["config"]["image_size"] == 48
    assert meta["counts"] == {"train": 5, "val": 3} and meta["part_names"] == list(PART_NAMES)
    assert meta["mask_bits"]["parts"]["beak"] == 0 and meta["mask_bits"]["background_objects"] == [6, 7, 8]
    assert meta["mask_bits"]["body"] == 15 and len(meta["classes"]) == 24
    assert not (out / "test").exists() and len(list((out / "train").iterdir())) == 24
    assert not [p for p in tmp_path.iterdir() if p.name.startswith(".")]
    with pytest.raises(MissingSplitError, match="has no split 'test'"):
        create_dataset("parts", split="test", root=out)
    # a split of size 0 is not written: readers say the data has no such split
    empty = write_parts_tree(tmp_path / "no-val", PartWorldConfig(image_size=32, train_size=2, val_size=0, test_size=1),
                             progress=False)
    assert json.loads((empty / "meta.json").read_text())["counts"] == {"train": 2, "test": 1}
    assert not (empty / "val").exists() and not (empty / "masks" / "val").exists()
    with pytest.raises(MissingSplitError, match="has no split folder 'val'"):
        create_dataset("imagefolder", split="val", root=empty)

    for split in ("train", "val"):
        ds = PartWorld(split, cfg)
        reread = create_dataset("parts", split=split, root=out)
        assert reread.config == cfg and reread.fingerprint() == ds.fingerprint()
        for i in range(len(ds)):
            item = ds[i]
            name = f"{ds.classes[item['label']]}/{split}_{i:06d}.png"
            rgb = np.array(Image.open(out / split / name))
            assert rgb.dtype == np.uint8 and rgb.shape == (48, 48, 3)
            # items are 8-bit images: the PNG read back as floats is the item, bit for bit
            assert np.array_equal(rgb.astype(np.float32) / 255.0, item["image"].numpy().transpose(1, 2, 0))
            bits = np.array(Image.open(out / "masks" / split / name))
            parts, background, body = decode_masks(bits, cfg.max_clutter)
            assert np.array_equal(parts, item["part_masks"].numpy())
            assert np.array_equal(background, item["background_masks"].numpy())
            assert np.array_equal(body, item["body_mask"].numpy())
            assert torch.equal(reread[i]["image"], item["image"])

    with pytest.raises(DataError, match="no split 'test'"):
        create_dataset("parts", split="test", root=out)
    with pytest.raises(DataError, match="cannot be combined"):
        create_dataset("parts", root=out, seed=3)
    with pytest.raises(OutputExistsError):
        write_parts_tree(out, cfg, splits=("val",), progress=False)
    write_parts_tree(out, cfg, splits=("val",), overwrite=True, progress=False)
    assert not (out / "train").exists() and json.loads((out / "meta.json").read_text())["counts"] == {"val": 3}


def test_bad_meta(tmp_path):
    with pytest.raises(DataError, match="missing"):
        create_dataset("parts", root=tmp_path)
    (tmp_path / "meta.json").write_text("{not json")
    with pytest.raises(DataError, match="cannot read"):
        create_dataset("parts", root=tmp_path)
    config = PartWorldConfig(image_size=32, train_size=1, val_size=0, test_size=0, max_clutter=4)
    out = write_parts_tree(tmp_path / "pw", config, progress=False)
    meta = json.loads((out / "meta.json").read_text())
    (out / "meta.json").write_text(json.dumps({**meta, "generator_version": "parts-0"}))
    with pytest.raises(DataError, match="generator"):
        create_dataset("parts", root=out)
    (out / "meta.json").write_text(json.dumps({**meta, "config": {**meta["config"], "image_size": 4}}))
    with pytest.raises(DataError, match="corrupt"):
        create_dataset("parts", root=out)
