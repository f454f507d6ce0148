"""CUB-200-2011 loader on a miniature CUB_200_2011 tree (3 classes, 6 images, 15 keypoints each)."""

from __future__ import annotations

import re
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

import sparsex
from sparsex.errors import DataError

PARTS = [
    "back", "beak", "belly", "breast", "crown", "forehead", "left eye", "left leg",
    "left wing", "nape", "right eye", "right leg", "right wing", "tail", "throat",
]  # fmt: skip
CLASSES = ["001.Black_footed_Albatross", "002.Laysan_Albatross", "003.Sooty_Albatross"]
# image id -> (class id, file, width, height, is_train)
IMAGES = {
    1: (1, "A_1.jpg", 40, 20, 1),
    2: (1, "A_2.jpg", 30, 30, 0),
    3: (2, "B_1.jpg", 20, 40, 1),
    4: (2, "B_2.jpg", 24, 16, 0),
    5: (3, "C_1.jpg", 32, 32, 1),
    6: (3, "C_2.jpg", 16, 24, 0),
}
# hand-placed keypoints (part id -> (x, y, visible)); every other part sits at the image centre
SPECIAL = {
    1: {1: (12, 8, 1), 2: (4, 4, 1), 3: (30, 10, 1), 4: (29, 19, 1), 5: (0, 0, 0)},
    3: {1: (10, 24, 1), 2: (10, 30, 1), 3: (3, 11, 1)},
}
BOXES = {1: (10, 2, 20, 16)}  # x, y, w, h; the others cover the whole image


def make_cub(folder: Path) -> Path:
    """Write a miniature CUB_200_2011 tree into ``folder`` and return it."""
    rng = np.random.default_rng(0)
    lines: dict[str, list[str]] = {k: [] for k in ("images", "labels", "split", "boxes", "locs")}
    for i, (cid, name, w, h, train) in IMAGES.items():
        rel = f"{CLASSES[cid - 1]}/{name}"
        (folder / "images" / CLASSES[cid - 1]).mkdir(parents=True, exist_ok=True)
        Image.fromarray(rng.integers(0, 256, size=(h, w, 3), dtype=np.uint8)).save(folder / "images" / rel, quality=95)
        lines["images"].append(f"{i} {rel}")
        lines["labels"].append(f"{i} {cid}")
        lines["split"].append(f"{i} {train}")
        lines["boxes"].append("{} {:.1f} {:.1f} {:.1f} {:.1f}".format(i, *BOXES.get(i, (0, 0, w, h))))
        for p in range(1, 16):
            x, y, v = SPECIAL.get(i, {}).get(p, (w / 2, h / 2, 1))
            lines["locs"].append(f"{i} {p} {x:.1f} {y:.1f} {v}")
    (folder / "parts").mkdir(parents=True, exist_ok=True)
    files = {
        "images.txt": lines["images"],
        "image_class_labels.txt": lines["labels"],
        "train_test_split.txt": lines["split"],
        "bounding_boxes.txt": lines["boxes"],
        "classes.txt": [f"{k} {c}" for k, c in enumerate(CLASSES, 1)],
        "parts/parts.txt": [f"{k} {p}" for k, p in enumerate(PARTS, 1)],
        "parts/part_locs.txt": lines["locs"],
    }
    for name, rows in files.items():
        (folder / name).write_text("\n".join(rows) + "\n")
    return folder


@pytest.fixture
def cub(tmp_path: Path) -> Path:
    return make_cub(tmp_path / "CUB_200_2011")


def edit_line(path: Path, lineno: int, text: str) -> None:
    rows = path.read_text().splitlines()
    rows[lineno - 1] = text
    path.write_text("\n".join(rows) + "\n")


def test_splits_labels_and_metadata(cub: Path) -> None:
    train = sparsex.create_dataset("cub200", split="train", root=cub)
    test = sparsex.create_dataset("cub200", split="test", root=cub.parent)  # the parent folder works too
    assert (len(train), len(test)) == (3, 3)
    assert train.classes == CLASSES and train.num_classes == 3 and train.part_names == PARTS
    assert train.image_ids.tolist() == [1, 3, 5] and test.image_ids.tolist() == [2, 4, 6]
    assert train.labels().tolist() == [0, 1, 2] and test.labels().tolist() == [0, 1, 2]
    assert (train.image_size, train.channels) == ((224, 224), 3)
    item = train[1]
    assert item["image"].shape == (3, 224, 224) and item["image"].dtype == torch.float32
    assert item["label"] == 1 and item["image_id"] == 3 and item["path"].endswith("002.Laysan_Albatross/B_1.jpg")
    assert item["part_names"] == PARTS and item["part_locs"].shape == (15, 2) and item["part_visible"].dtype == torch.bool


def test_keypoints_follow_resize_and_centre_crop(cub: Path) -> None:
    ds = sparsex.create_dataset("cub200", root=cub, image_size=10)
    # 40x20 image: scale 0.5 -> 20x10, crop columns 5..15: (x, y) -> (x/2 - 5, y/2)
    item = ds[0]
    expected = {0: (1.0, 4.0), 3: (9.5, 9.5)}  # parts 1 and 4; part 2 lands at x=-3, part 3 at x=10 (outside)
    visible = [p in expected or p >= 5 for p in range(15)]
    assert item["part_visible"].tolist() == visible
    for p in range(15):
        want = expected.get(p, (5.0, 5.0) if p >= 5 else (0.0, 0.0))  # part 5 is invisible in CUB
        assert item["part_locs"][p].tolist() == list(want), p
    # 20x40 image: scale 0.5 -> 10x20, crop rows 5..15: (x, y) -> (x/2, y/2 - 5)
    item = ds[1]
    assert item["part_locs"][0].tolist() == [5.0, 7.0] and item["part_locs"][2].tolist() == [1.5, 0.5]
    assert item["part_visible"][:3].tolist() == [True, False, True]  # part 2 lands at y=10 (outside)
    assert item["part_locs"][1].tolist() == [0.0, 0.0]


def test_keypoints_and_pixels_follow_the_bounding_box_crop(cub: Path) -> None:
    ds = sparsex.create_dataset("cub200", root=cub, image_size=8, crop_to_bbox=True)
    item = ds[0]
    # box (10, 2, 20, 16) -> 20x16 crop; scale 0.5 -> 10x8; crop columns 1..9:
    # (x, y) -> ((x - 10)/2 - 1, (y - 2)/2)
    assert item["part_locs"][0].tolist() == [0.0, 3.0] and item["part_visible"][0]
    assert not item["part_visible"][1:5].any()  # (-4, 1), (9, 4), (8.5, 8.5) are outside; part 5 invisible
    assert item["part_locs"][5].tolist() == [4.0, 4.0] and item["part_visible"][5:].all()
    with Image.open(cub / "images" / CLASSES[0] / "A_1.jpg") as img:
        expected = img.convert("RGB").crop((10, 2, 30, 18)).resize((10, 8), Image.BILINEAR).crop((1, 0, 9, 8))
    assert torch.equal(item["image"], torch.from_numpy(np.array(expected, dtype=np.float32) / 255).permute(2, 0, 1))


def test_native_size_keeps_coordinates(cub: Path) -> None:
    ds = sparsex.create_dataset("cub200", root=cub, image_size=None)
    assert ds.image_size is None
    item = ds[0]
    assert item["image"].shape == (3, 20, 40)
    assert item["part_locs"][:4].tolist() == [[12, 8], [4, 4], [30, 10], [29, 19]]
    assert item["part_visible"][:5].tolist() == [True, True, True, True, False]


def test_batches_through_a_dataloader(cub: Path) -> None:
    ds = sparsex.create_dataset("cub200", root=cub, split="test", image_size=16)
    batch = next(iter(torch.utils.data.DataLoader(ds, batch_size=3)))
    assert batch["image"].shape == (3, 3, 16, 16) and batch["part_locs"].shape == (3, 15, 2)
    assert batch["part_visible"].shape == (3, 15) and batch["label"].tolist() == [0, 1, 2]


def test_fingerprint(cub: Path) -> None:
    fp = sparsex.create_dataset("cub200", root=cub).fingerprint()
    assert {k: fp[k] for k in ("name", "split", "image_size", "crop_to_bbox")} == {
        "name": "cub200", "split": "train", "image_size": 224, "crop_to_bbox": False,
    }  # fmt: skip
    assert sparsex.create_dataset("cub200", root=cub).fingerprint() == fp
    assert sparsex.create_dataset("cub200", root=cub, crop_to_bbox=True).fingerprint() != fp
    assert sparsex.create_dataset("cub200", root=cub, split="test").fingerprint()["files_sha256"] != fp["files_sha256"]


@pytest.mark.parametrize(
    "name", ["images.txt", "classes.txt", "train_test_split.txt", "parts/parts.txt", "parts/part_locs.txt"]
)
def test_missing_file_is_named(cub: Path, name: str) -> None:
    (cub / name).unlink()
    expected = f"{cub / 'images.txt'} not found" if name == "images.txt" else f"missing file {cub / name}"
    with pytest.raises(DataError, match=re.escape(expected)):
        sparsex.create_dataset("cub200", root=cub)


def test_bounding_boxes_needed_only_for_crop(cub: Path) -> None:
    (cub / "bounding_boxes.txt").unlink()
    assert len(sparsex.create_dataset("cub200", root=cub)) == 3
    with pytest.raises(DataError, match=r"missing file .*bounding_boxes\.txt"):
        sparsex.create_dataset("cub200", root=cub, crop_to_bbox=True)


@pytest.mark.parametrize(
    ("name", "lineno", "text", "message"),
    [
        ("images.txt", 3, "3", r"images\.txt, line 3: expected 'integer text', got '3'"),
        ("image_class_labels.txt", 2, "2 one", r"image_class_labels\.txt, line 2: expected 'integer integer'"),
        ("parts/part_locs.txt", 17, "2 2 x 3.0 1", r"part_locs\.txt, line 17: expected 'integer integer number number"),
        ("parts/part_locs.txt", 18, "2 3.5 3.0 3.0 1", r"part_locs\.txt, line 18: expected 'integer integer number"),
        ("parts/part_locs.txt", 4, "1 16 3.0 3.0 1", r"part_locs\.txt, line 4: unknown part id 16"),
        ("parts/part_locs.txt", 5, "9 5 3.0 3.0 1", r"part_locs\.txt, line 5: unknown image id 9"),
        ("parts/part_locs.txt", 6, "1 6 3.0 3.0 2", r"part_locs\.txt, line 6: visibility 2 \(must be 0 or 1\)"),
        ("train_test_split.txt", 1, "1 2", r"train_test_split\.txt: image id 1 has split flag 2"),
        ("train_test_split.txt", 4, "1 0", r"train_test_split\.txt, line 4: id 1 appears twice"),
        ("image_class_labels.txt", 5, "5 7", r"image_class_labels\.txt: image id 5 has class 7, not in classes\.txt"),
        ("image_class_labels.txt", 3, "", r"image_class_labels\.txt: no entry for image id 3"),
    ],
)
def test_malformed_lines_are_located(cub: Path, name: str, lineno: int, text: str, message: str) -> None:
    edit_line(cub / name, lineno, text)
    with pytest.raises(DataError, match=message):
        sparsex.create_dataset("cub200", root=cub)


def test_bad_boxes_and_missing_images(cub: Path) -> None:
    edit_line(cub / "bounding_boxes.txt", 1, "1 50.0 2.0 20.0 16.0")
    ds = sparsex.create_dataset("cub200", root=cub, crop_to_bbox=True)
    with pytest.raises(DataError, match=r"bounding_boxes\.txt: box of image id 1 lies outside its 40x20 image"):
        ds[0]
    edit_line(cub / "bounding_boxes.txt", 1, "1 10.0 2.0 0.0 16.0")
    with pytest.raises(DataError, match=r"image id 1 has a box of zero or negative size"):
        sparsex.create_dataset("cub200", root=cub, crop_to_bbox=True)
    (cub / "images" / CLASSES[1] / "B_1.jpg").unlink()
    with pytest.raises(DataError, match=r"image file not found: .*B_1\.jpg"):
        sparsex.create_dataset("cub200", root=cub)[1]


def test_bad_root_split_and_settings(cub: Path, tmp_path: Path) -> None:
    with pytest.raises(DataError, match="folder .*absent does not exist"):
        sparsex.create_dataset("cub200", root=tmp_path / "absent")
    with pytest.raises(DataError, match="needs its folder: pass --root DIR"):
        sparsex.create_dataset("cub200")
    with pytest.raises(DataError, match="dataset 'cub200' has no split 'val'; valid splits: train, test"):
        sparsex.create_dataset("cub200", root=cub, split="val")
    with pytest.raises(DataError, match="has no setting 'bbox'; valid settings: crop_to_bbox, image_size"):
        sparsex.create_dataset("cub200", root=cub, bbox=True)
    with pytest.raises(DataError, match="'crop_to_bbox' must be true or false, got 'yes'"):
        sparsex.create_dataset("cub200", root=cub, crop_to_bbox="yes")
