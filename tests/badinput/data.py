"""Area "data": IDX files, image files, dataset folders and settings."""

from __future__ import annotations

import gzip
import io
import math
import shutil
import struct
import zlib
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Sequence

import numpy as np
import torch
from hypothesis import strategies as st
from PIL import Image

from sparsex.data import create_dataset
from sparsex.data.base import read_image_tensor
from sparsex.data.idx import read_idx

from .fixtures import Fixtures
from .harness import Area, Campaign, describe, same_result

#: IDX dtype codes and their big-endian numpy dtypes (as sparsex.data.idx reads them).
_IDX_CODES = {0x08: ">u1", 0x09: ">i1", 0x0B: ">i2", 0x0C: ">i4", 0x0D: ">f4", 0x0E: ">f8"}

IDX_KINDS = ("valid", "truncated", "extra", "empty", "short-magic", "wrong-magic", "bad-dtype", "zero-dims",
             "short-dims", "huge-dims", "random", "corrupt-gzip")


@dataclass
class IDXCase:
    """An IDX file to write: ``data`` bytes; ``kind`` (one of :data:`IDX_KINDS`); for a valid
    file the ``dims``, ``dtype`` and big-endian ``payload`` it must read back as."""

    kind: str
    data: bytes
    gz: bool
    dims: tuple[int, ...] = ()
    dtype: str = ">u1"
    payload: bytes = b""

    def __repr__(self) -> str:
        return f"IDXCase({self.kind}, gzip={self.gz}, {len(self.data)} bytes, dims={self.dims}, dtype={self.dtype})"


def _idx_header(code: int, dims: Sequence[int]) -> bytes:
    return bytes([0, 0, code, len(dims)]) + struct.pack(f">{len(dims)}I", *dims)


@st.composite
def idx_cases(draw: Callable) -> IDXCase:
    """A well-formed or malformed IDX file (raw or gzip)."""
    kind = draw(st.sampled_from(IDX_KINDS))
    gz = draw(st.booleans())
    code = draw(st.sampled_from(sorted(_IDX_CODES)))
    dtype = np.dtype(_IDX_CODES[code])
    dims = tuple(draw(st.lists(st.integers(0, 5), min_size=1, max_size=3)))
    size = math.prod(dims) * dtype.itemsize
    payload = draw(st.binary(min_size=size, max_size=size))
    header = _idx_header(code, dims)
    if kind == "valid":
        data = header + payload
    elif kind == "truncated":
        if size == 0:  # a header with a zero dimension needs no payload: make every dimension positive
            dims = tuple(max(d, 1) for d in dims)
            header, payload = _idx_header(code, dims), bytes(math.prod(dims) * dtype.itemsize)
        data = header + payload[: draw(st.integers(0, max(0, len(payload) - 1)))]
    elif kind == "extra":
        data = header + payload + draw(st.binary(min_size=1, max_size=64))
    elif kind == "empty":
        data = b""
    elif kind == "short-magic":
        data = draw(st.sampled_from([b"\x00", b"\x00\x00", b"\x00\x00\x08"]))
    elif kind == "wrong-magic":
        first = draw(st.integers(1, 255).filter(lambda b: b != 0x1F))
        data = bytes([first, draw(st.integers(0, 255))]) + header[2:] + payload
    elif kind == "bad-dtype":
        bad = draw(st.integers(0, 255).filter(lambda c: c not in _IDX_CODES))
        data = bytes([0, 0, bad]) + header[3:] + payload
    elif kind == "zero-dims":
        data = bytes([0, 0, code, 0]) + payload
    elif kind == "short-dims":
        ndim = draw(st.integers(1, 255))
        data = bytes([0, 0, code, ndim]) + b"\x00" * draw(st.integers(0, 4 * ndim - 1))
    elif kind == "huge-dims":
        huge = tuple(draw(st.lists(st.integers(2**20, 2**32 - 1), min_size=1, max_size=4)))
        dims = huge
        data = _idx_header(code, huge) + payload[:64]
    elif kind == "random":
        data = draw(st.binary(min_size=0, max_size=256))
    else:  # corrupt-gzip
        gz = False
        compressed = gzip.compress(header + payload + b"\x00" * 64, mtime=0)
        cut = draw(st.integers(2, len(compressed) - 1))
        data = compressed[:cut] if draw(st.booleans()) else compressed[:cut] + b"\xff" + compressed[cut + 1:]
    if gz:
        data = gzip.compress(data, mtime=0)
    return IDXCase(kind, data, gz, dims, dtype.str, payload if kind == "valid" else b"")


_IDX_EXPECT = {
    "truncated": ("truncated",), "extra": ("extra bytes",), "empty": ("empty",), "short-magic": ("truncated", "empty"),
    "wrong-magic": ("magic",), "bad-dtype": ("dtype",), "zero-dims": ("0 dimensions",), "short-dims": ("truncated",),
    "huge-dims": ("truncated",), "random": (), "corrupt-gzip": ("gzip", "truncated", "extra bytes"),
}


def check_idx(campaign: Campaign, fx: Fixtures, case: IDXCase) -> None:
    """``read_idx`` on the file of ``case``: the exact array for a valid file, else a one-line DataError."""
    path = fx.fresh("idx")
    path.write_bytes(case.data)

    def right(array: Any) -> str | None:
        if not isinstance(array, np.ndarray):
            return f"not an array: {describe(array)}"
        if case.kind != "valid":
            return None  # random bytes that happen to form a valid file
        if array.shape != case.dims:
            return f"shape {array.shape}, header says {case.dims}"
        if array.astype(np.dtype(case.dtype)).tobytes() != case.payload:
            return "values differ from the file's payload"
        return None

    campaign.run("data", f"read_idx {case!r}", lambda: read_idx(path), must_fail=case.kind not in ("valid", "random"),
                 expect=_IDX_EXPECT.get(case.kind, ()), check=right)
    path.unlink()


@st.composite
def idx_pair_cases(draw: Callable) -> dict[str, Any]:
    """A Fashion-MNIST folder: an images and a labels IDX file, possibly inconsistent, and a ``limit``."""
    n = draw(st.integers(0, 4))
    problem = draw(st.sampled_from(["none", "count-mismatch", "label-range", "images-1d", "images-int16",
                                    "labels-float", "labels-2d", "missing-labels", "limit"]))
    h, w = draw(st.integers(1, 4)), draw(st.integers(1, 4))
    images = (np.arange(n * h * w) % 256).astype(np.uint8).reshape(n, h, w)
    labels = (np.arange(n) % 10).astype(np.uint8)
    limit = None
    if problem == "count-mismatch":
        labels = np.zeros(n + draw(st.integers(1, 3)), dtype=np.uint8)
    elif problem == "label-range":
        labels = np.full(max(n, 1), draw(st.integers(10, 255)), dtype=np.uint8)
        images = np.zeros((len(labels), h, w), dtype=np.uint8)
    elif problem == "images-1d":
        images = images.reshape(-1)
    elif problem == "images-int16":
        images = images.astype(">i2")
    elif problem == "labels-float":
        labels = labels.astype(">f4")
    elif problem == "labels-2d":
        labels = labels.reshape(-1, 1)
    elif problem == "limit":
        limit = draw(st.sampled_from([0, -1, 1.5, "3", True, float("nan")]))
    elif problem == "none":
        limit = draw(st.sampled_from([None, 1, 2, 10]))
    return {"problem": problem, "images": images, "labels": labels, "limit": limit}


def _idx_bytes(array: np.ndarray) -> bytes:
    code = {np.dtype(v).newbyteorder("="): k for k, v in _IDX_CODES.items()}[array.dtype.newbyteorder("=")]
    big = array.astype(array.dtype.newbyteorder(">"))
    return _idx_header(code, array.shape) + big.tobytes()


def check_idx_pair(campaign: Campaign, fx: Fixtures, case: dict[str, Any]) -> None:
    """``create_dataset("fashion-mnist", root=...)`` on a possibly inconsistent pair of IDX files."""
    root = fx.fresh("fmnist")
    root.mkdir()
    (root / "train-images-idx3-ubyte").write_bytes(_idx_bytes(case["images"]))
    if case["problem"] != "missing-labels":
        (root / "train-labels-idx1-ubyte").write_bytes(_idx_bytes(case["labels"]))
    options = {} if case["limit"] is None else {"limit": case["limit"]}

    def load() -> list[dict[str, Any]]:
        dataset = create_dataset("fashion-mnist", split="train", root=root, **options)
        return [dataset[i] for i in range(len(dataset))]

    def right(items: list[dict[str, Any]]) -> str | None:
        n = len(case["labels"]) if case["limit"] is None else min(case["limit"], len(case["labels"]))
        if len(items) != n:
            return f"{len(items)} items, expected {n}"
        for k, item in enumerate(items):
            expected = torch.from_numpy(case["images"][k].astype(np.float32) / 255.0)[None]
            if not torch.equal(item["image"], expected) or item["label"] != int(case["labels"][k]):
                return f"item {k} differs from the files"
        return None

    expect = {"count-mismatch": ("labels",), "label-range": ("labels must lie",), "images-1d": ("expected uint8",),
              "images-int16": ("expected uint8",), "labels-float": ("integer labels",), "labels-2d": ("integer labels",),
              "missing-labels": ("not found",), "limit": ("limit",)}.get(case["problem"], ())
    campaign.run("data", f"fashion-mnist files ({case['problem']}, limit={case['limit']!r})", load,
                 must_fail=case["problem"] != "none", expect=expect, check=right)
    shutil.rmtree(root)


def _png_bytes(width: int = 6, height: int = 5, mode: str = "RGB") -> bytes:
    buffer = io.BytesIO()
    channels = len(mode)
    pixels = (np.arange(width * height * channels) * 11 % 256).astype(np.uint8).reshape(height, width, channels)
    Image.fromarray(pixels[..., 0] if channels == 1 else pixels, mode).save(buffer, format="PNG")
    return buffer.getvalue()


def _png_bomb(width: int, height: int) -> bytes:
    """A PNG whose header claims ``width x height`` pixels (and holds almost no data)."""
    def chunk(tag: bytes, body: bytes) -> bytes:
        return struct.pack(">I", len(body)) + tag + body + struct.pack(">I", zlib.crc32(tag + body) & 0xFFFFFFFF)

    ihdr = struct.pack(">IIBBBBB", width, height, 8, 0, 0, 0, 0)
    return b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", ihdr) + chunk(b"IDAT", zlib.compress(b"\x00" * 16)) + chunk(b"IEND", b"")


NON_IMAGE_KINDS = ("empty", "random", "text", "truncated-png", "png-garbage", "bomb", "folder", "missing")


@st.composite
def non_image_cases(draw: Callable) -> tuple[str, bytes | None]:
    """A file that is not a readable image: ``(kind, bytes)`` (``None`` for a folder or a missing file)."""
    kind = draw(st.sampled_from(NON_IMAGE_KINDS))
    png = _png_bytes()
    data: bytes | None
    if kind == "empty":
        data = b""
    elif kind == "random":
        data = draw(st.binary(min_size=1, max_size=200).filter(lambda b: not b.startswith((b"\x89PNG", b"BM", b"GIF", b"\xff\xd8", b"P"))))
    elif kind == "text":
        data = draw(st.text(min_size=1, max_size=80)).encode()
    elif kind == "truncated-png":
        data = png[: draw(st.integers(1, len(png) - 13))]
    elif kind == "png-garbage":
        data = png[:33] + draw(st.binary(min_size=1, max_size=64))
    elif kind == "bomb":
        side = draw(st.sampled_from([30_000, 65_535, 1_000_000]))
        data = _png_bomb(side, side)
    else:
        data = None
    return kind, data


def _write_non_image(path: Path, kind: str, data: bytes | None) -> None:
    if kind == "folder":
        path.mkdir(parents=True)
    elif kind != "missing":
        path.write_bytes(data or b"")


def check_non_image(campaign: Campaign, fx: Fixtures, case: tuple[tuple[str, bytes | None], Any, Any]) -> None:
    """``case`` is ``((kind, bytes), channels, size)``: ``read_image_tensor`` and the image-folder
    loader on a non-image file; ``read_image_tensor`` with possibly nonsense ``channels`` and
    ``size`` on a valid one."""
    (kind, data), channels, size = case
    folder = fx.fresh("tree")
    path = folder / "cls" / "bad.png"
    path.parent.mkdir(parents=True)
    _write_non_image(path, kind, data)
    good = folder / "good.png"
    good.write_bytes(_png_bytes())
    # A PNG cut inside its last chunks may still hold every pixel: then the image itself is the right result.
    may_load = kind == "truncated-png"

    def same_image(result: Any) -> str | None:
        return same_result(result, read_image_tensor(good), rtol=0, atol=0)

    campaign.run("data", f"read_image_tensor on a {kind} file", lambda: read_image_tensor(path), must_fail=not may_load,
                 expect=("image",), check=same_image)
    if kind not in ("folder", "missing"):
        shutil.copy(good, folder / "cls" / "good.png")
        campaign.run("data", f"imagefolder item of a {kind} file",
                     lambda: [item["image"] for item in create_dataset("imagefolder", root=folder, image_size=4)],
                     must_fail=not may_load, expect=("image",), check=lambda items: None if len(items) == 2 else "items lost")
        campaign.run("data", f"imagefolder verify() of a {kind} file",
                     lambda: create_dataset("imagefolder", root=folder).verify(), must_fail=not may_load, expect=("image",))
    good = fx.image_file(channels=3, size=6)
    valid = channels in (1, 3) and not isinstance(channels, bool) and (
        size is None or (isinstance(size, tuple) and len(size) == 2
                         and all(isinstance(s, int) and not isinstance(s, bool) and s >= 1 for s in size)))

    def right(x: Any) -> str | None:
        expected = (1, channels, *(size or (6, 6)))
        if not isinstance(x, torch.Tensor) or tuple(x.shape) != expected:
            return f"{describe(x)}, expected shape {expected}"
        if x.dtype != torch.float32 or x.min() < 0 or x.max() > 1:
            return "values not float32 in [0, 1]"
        return None

    campaign.run("data", f"read_image_tensor(channels={channels!r}, size={size!r})",
                 lambda: read_image_tensor(good, channels=channels, size=size), must_fail=not valid,
                 expect=("channels", "size"), check=right)
    shutil.rmtree(folder)


#: Dataset settings that are nonsense for the named dataset: (name, options, words the error must contain).
BAD_DATASET_SETTINGS = [
    ("parts", {"image_size": 0}, ("image_size",)), ("parts", {"image_size": -64}, ("image_size",)),
    ("parts", {"image_size": 64.5}, ("image_size",)), ("parts", {"image_size": "big"}, ("image_size",)),
    ("parts", {"train_size": -1}, ("train_size",)), ("parts", {"seed": -1}, ("seed",)),
    ("parts", {"seed": "abc"}, ("seed",)), ("parts", {"part_dropout": float("nan")}, ("part_dropout",)),
    ("parts", {"part_dropout": 1.5}, ("part_dropout",)), ("parts", {"colour_jitter": float("inf")}, ("colour_jitter",)),
    ("parts", {"max_clutter": 1000}, ("max_clutter",)), ("parts", {"bogus": 1}, ("bogus",)),
    ("parts", {"image_size": True}, ("image_size",)),
    ("digits", {"limit": 3}, ("limit",)), ("fashion-mnist", {"limit": 0}, ("limit",)),
    ("fashion-mnist", {"limit": -5}, ("limit",)), ("imagefolder", {}, ("folder",)),
    ("imagefolder", {"image_size": 0}, ("image_size", "folder")), ("cub200", {}, ("folder",)),
    ("nonexistent", {}, ("unknown dataset",)), ("parts", {"split": "bogus"}, ("split",)),
    ("digits", {"split": "val"}, ("split",)), ("mnist", {"split": 3}, ("split",)),
]


def check_dataset_settings(campaign: Campaign, fx: Fixtures, case: tuple[str, dict[str, Any], Sequence[str]]) -> None:
    """``create_dataset`` with one of :data:`BAD_DATASET_SETTINGS`: ``case`` is ``(name, options, words)``."""
    name, options, expect = case
    options = dict(options)
    split = options.pop("split", "train")
    root = fx.root / "fmnist-missing" if name in ("fashion-mnist", "mnist") else None
    campaign.run("data", f"create_dataset({name!r}, split={split!r}, **{options!r})",
                 lambda: create_dataset(name, split=split, root=root, **options), expect=expect)


# A minimal CUB_200_2011 folder: 2 classes, 2 images each (one train, one test per class).
_CUB_FILES = {
    "images.txt": "1 001.A/a1.jpg\n2 001.A/a2.jpg\n3 002.B/b1.jpg\n4 002.B/b2.jpg\n",
    "image_class_labels.txt": "1 1\n2 1\n3 2\n4 2\n",
    "train_test_split.txt": "1 1\n2 0\n3 1\n4 0\n",
    "classes.txt": "1 001.A\n2 002.B\n",
    "bounding_boxes.txt": "1 0 0 6 5\n2 1 1 4 3\n3 0 0 6 5\n4 2 1 3 3\n",
    "parts/parts.txt": "1 beak\n2 tail\n",
    "parts/part_locs.txt": "1 1 2.0 3.0 1\n1 2 0.0 0.0 0\n2 1 1.0 1.0 1\n2 2 4.0 2.0 1\n"
                           "3 1 2.0 2.0 1\n3 2 0.0 0.0 0\n4 1 5.0 4.0 1\n4 2 1.0 1.0 1\n",
}
CUB_MUTATIONS = ("none", "delete", "empty", "garbage-line", "non-utf8", "short-line", "duplicate-id", "unknown-id",
                 "bad-number", "nan-number", "corrupt-image", "missing-image", "negative-box", "bad-flag")


@st.composite
def cub_cases(draw: Callable) -> dict[str, Any]:
    """A mutation of one file of the minimal CUB folder, and the loader's settings."""
    mutation = draw(st.sampled_from(CUB_MUTATIONS))
    target = draw(st.sampled_from(sorted(_CUB_FILES)))
    line = draw(st.integers(0, 3))
    return {"mutation": mutation, "file": target, "line": line, "crop_to_bbox": draw(st.booleans()),
            "split": draw(st.sampled_from(["train", "test"])), "garbage": draw(st.text(min_size=1, max_size=20))}


def _mutate_lines(text: str, mutation: str, line: int, garbage: str) -> str:
    lines = text.splitlines()
    k = line % len(lines)
    fields = lines[k].split()
    if mutation == "garbage-line":
        lines[k] = garbage.replace("\n", " ").replace("\r", " ")
    elif mutation == "short-line":
        lines[k] = fields[0]
    elif mutation == "duplicate-id":
        lines.append(lines[k])
    elif mutation == "unknown-id":
        lines[k] = " ".join(["999", *fields[1:]])
    elif mutation == "bad-number":
        lines[k] = " ".join([fields[0], "x" * len(fields[1]), *fields[2:]]) if len(fields) > 1 else "1 x"
    elif mutation == "nan-number":
        lines[k] = " ".join([fields[0], *(["nan"] * (len(fields) - 1))])
    elif mutation == "negative-box":
        lines[k] = " ".join([fields[0], "0", "0", "-3", "0"])
    elif mutation == "bad-flag":
        lines[k] = " ".join([fields[0], "7", *fields[2:]])
    return "\n".join(lines) + "\n"


def check_cub(campaign: Campaign, fx: Fixtures, case: dict[str, Any]) -> None:
    """The ``cub200`` loader on a minimal folder with one file damaged: a one-line DataError, or a
    dataset whose every item loads with finite keypoints."""
    root = fx.fresh("cub")
    for name, text in _CUB_FILES.items():
        (root / name).parent.mkdir(parents=True, exist_ok=True)
        (root / name).write_text(text)
    for rel in ("001.A/a1.jpg", "001.A/a2.jpg", "002.B/b1.jpg", "002.B/b2.jpg"):
        (root / "images" / rel).parent.mkdir(parents=True, exist_ok=True)
        (root / "images" / rel).write_bytes(_png_bytes(6, 5))
    mutation, target = case["mutation"], root / case["file"]
    if mutation == "delete":
        target.unlink()
    elif mutation == "empty":
        target.write_text("")
    elif mutation == "non-utf8":
        target.write_bytes(b"1 \xff\xfe\xfa\n")
    elif mutation == "corrupt-image":
        (root / "images" / "001.A" / "a1.jpg").write_bytes(b"\xff\xd8 not a jpeg")
        (root / "images" / "002.B" / "b2.jpg").write_bytes(b"")
    elif mutation == "missing-image":
        (root / "images" / "001.A" / "a1.jpg").unlink()
        (root / "images" / "002.B" / "b2.jpg").unlink()
    elif mutation != "none":
        target.write_text(_mutate_lines(target.read_text(), mutation, case["line"], case["garbage"]))

    def load() -> list[dict[str, Any]]:
        dataset = create_dataset("cub200", split=case["split"], root=root, image_size=4, crop_to_bbox=case["crop_to_bbox"])
        return [dataset[i] for i in range(len(dataset))]

    def right(items: list[dict[str, Any]]) -> str | None:
        if not items:
            return "no items"
        for item in items:
            if tuple(item["image"].shape) != (3, 4, 4) or not torch.isfinite(item["part_locs"]).all():
                return f"item {item.get('image_id')}: image {tuple(item['image'].shape)}, part_locs {item['part_locs'].tolist()}"
        return None

    campaign.run("data", f"cub200 with {case['file']} {mutation} (line {case['line']}, crop_to_bbox={case['crop_to_bbox']})",
                 load, must_fail=False, check=right)
    shutil.rmtree(root)


@st.composite
def data_cases(draw: Callable) -> tuple[str, Any]:
    """One case of the data area: ``(kind, case)``."""
    kind = draw(st.sampled_from(["idx", "idx", "idx", "idx-pair", "non-image", "settings", "cub"]))
    if kind == "idx":
        return kind, draw(idx_cases())
    if kind == "idx-pair":
        return kind, draw(idx_pair_cases())
    if kind == "non-image":
        channels = draw(st.sampled_from([3, 1, 3, 0, 2, 4, -1, "rgb", True, None]))
        size = draw(st.sampled_from([None, None, (4, 5), (0, 4), (-1, 3), (2.5, 3), "big", (3,), (True, 2), 7]))
        return kind, (draw(non_image_cases()), channels, size)
    if kind == "settings":
        return kind, draw(st.sampled_from(BAD_DATASET_SETTINGS))
    return kind, draw(cub_cases())


#: The check of each kind of data case.
_DATA_CHECKS: dict[str, Callable[[Campaign, Fixtures, Any], None]] = {
    "idx": check_idx, "idx-pair": check_idx_pair, "non-image": check_non_image, "settings": check_dataset_settings,
    "cub": check_cub,
}


def check_data(campaign: Campaign, fx: Fixtures, case: tuple[str, Any]) -> None:
    """One case of :func:`data_cases`, ``(kind, case)``, through the check of its kind."""
    kind, value = case
    _DATA_CHECKS[kind](campaign, fx, value)


def fixed_data_cases() -> list[tuple[str, Any]]:
    """Cases that always run: one file of each IDX kind and each non-image kind, every bad setting."""
    cases: list[tuple[str, Any]] = []
    payload = bytes(range(24))
    cases.append(("idx", IDXCase("valid", _idx_header(0x08, (2, 3, 4)) + payload, False, (2, 3, 4), ">u1", payload)))
    cases.append(("idx", IDXCase("truncated", _idx_header(0x08, (60000, 28, 28)) + payload, False)))
    cases.append(("idx", IDXCase("empty", b"", False)))
    cases.append(("idx", IDXCase("empty", gzip.compress(b"", mtime=0), True)))
    cases.append(("idx", IDXCase("wrong-magic", b"\x08\x03\x00\x00" + payload, False)))
    cases.append(("idx", IDXCase("huge-dims", _idx_header(0x0E, (2**32 - 1,) * 4) + payload, False)))
    cases.append(("idx", IDXCase("huge-dims", gzip.compress(_idx_header(0x0E, (2**32 - 1,) * 4) + payload, mtime=0), True)))
    cases.append(("idx", IDXCase("extra", _idx_header(0x08, (2,)) + payload, False)))
    cases.append(("idx", IDXCase("corrupt-gzip", gzip.compress(_idx_header(0x08, (24,)) + payload, mtime=0)[:-9], False)))
    for kind in NON_IMAGE_KINDS:
        data = {"empty": b"", "random": b"\x01\x02garbage", "text": b"hello", "truncated-png": _png_bytes()[:40],
                "png-garbage": _png_bytes()[:33] + b"\x00" * 40, "bomb": _png_bomb(1_000_000, 1_000_000)}.get(kind)
        cases.append(("non-image", ((kind, data), 3, None)))
    cases += [("settings", setting) for setting in BAD_DATASET_SETTINGS]
    cases += [("cub", {"mutation": mutation, "file": name, "line": 0, "crop_to_bbox": True, "split": "train",
                       "garbage": "0 \u00e9 -"})
              for mutation in CUB_MUTATIONS for name in sorted(_CUB_FILES)]
    return cases


AREA = Area("data", data_cases, fixed_data_cases, check_data, test_examples=150)
