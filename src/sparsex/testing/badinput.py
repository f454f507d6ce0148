"""The bad-input campaign: malformed inputs for every public entry point, and a harness that
classifies what each one does.

Every case must end in one of two ways:

- a :class:`~sparsex.errors.SparsexError` whose message is one line that names the problem (for
  the CLI: exit status != 0, one ``error: ...`` line on stderr, no traceback, and no output
  folder or file left behind), or
- a correct result (checked per case: e.g. the array an IDX file holds, finite attributions of
  the input's shape, the same metric value as on a contiguous copy of the input).

Anything else is a *failure*: another exception (a traceback from inside torch, numpy, PIL, ...),
a message of several lines or without the words that name the problem, bad input accepted
silently, a wrong result, or a hang (each case runs under a time limit).

The cases come from `hypothesis <https://hypothesis.readthedocs.io>`_ strategies, one property per
area (:data:`AREAS`), plus a few fixed cases per area that always run:

- ``data``: IDX files (truncated, empty, wrong magic, unknown dtype, huge header dims, extra
  bytes, gzip-compressed and corrupt gzip; valid ones must read back exactly), the Fashion-MNIST
  loader on bad file pairs, non-image files for ``read_image_tensor`` and the image-folder, CUB
  and part-world loaders, and nonsense dataset settings;
- ``checkpoint``: corrupted safetensors (with and without a matching recorded hash), broken,
  wrong-family and future-format ``config.json`` files, through ``load_checkpoint``,
  ``load_model``, ``load_classifier`` and ``load_image_classifier``;
- ``cli``: nonsense option values for every ``sparsex`` command (run in-process through
  :func:`sparsex.cli.main`; the fixed cases also run ``python -m sparsex``);
- ``explainers``, ``metrics``, ``losses``: tensors with NaN/Inf, wrong dtypes, wrong shapes,
  non-tensors, non-contiguous views, and nonsense targets and settings, for every registered
  explainer and every metric and loss.

Every property runs derandomized (the same cases on every run) with no example database.
:func:`run_area` runs one area into a :class:`Campaign`, which counts cases and failures;
``tests/test_bad_inputs.py`` runs every area with :data:`TEST_EXAMPLES` and asserts that no case
failed (listing those that did), ``benchmarks/bad_inputs.py`` runs more examples and reports the
counts. A strict campaign raises at the first failure instead, which hypothesis then shrinks to
a minimal case (for debugging one property). Needs hypothesis (the ``dev`` extra).
"""

from __future__ import annotations

import contextlib
import gzip
import io
import json
import math
import os
import shutil
import signal
import struct
import subprocess
import sys
import tempfile
import traceback
import warnings
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Iterator, Sequence

import numpy as np
import torch
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from ..errors import SparsexError

#: The areas of the campaign, in the order they run.
AREAS = ("data", "checkpoint", "cli", "explainers", "metrics", "losses")

#: Default hypothesis examples per area in the tests (the benchmark takes more).
TEST_EXAMPLES = {"data": 150, "checkpoint": 60, "cli": 40, "explainers": 100, "metrics": 250, "losses": 250}

#: Seconds a single case may take before it counts as a hang.
CASE_TIMEOUT = 60.0


# ----------------------------------------------------------------------------------------------
# The harness.
# ----------------------------------------------------------------------------------------------


@dataclass
class Failure:
    """One case that did not end in a one-line error or a correct result."""

    area: str
    case: str
    problem: str

    def __str__(self) -> str:
        return f"[{self.area}] {self.case}: {self.problem}"


class CaseFailed(AssertionError):
    """Raised in strict mode for the first failure (hypothesis then shrinks the case)."""


class _Hang(BaseException):
    """Raised by the time limit inside a case (a BaseException, so ``except Exception`` in the
    code under test does not swallow it)."""


@contextlib.contextmanager
def time_limit(seconds: float) -> Iterator[None]:
    """Raise :class:`_Hang` in the main thread after ``seconds`` (no limit elsewhere, or without SIGALRM)."""
    import threading

    if seconds is None or not hasattr(signal, "SIGALRM") or threading.current_thread() is not threading.main_thread():
        yield
        return

    def handler(signum: int, frame: Any) -> None:
        raise _Hang()

    previous = signal.signal(signal.SIGALRM, handler)
    signal.setitimer(signal.ITIMER_REAL, seconds)
    try:
        yield
    finally:
        signal.setitimer(signal.ITIMER_REAL, 0)
        signal.signal(signal.SIGALRM, previous)


def _where(error: BaseException) -> str:
    """``file:line`` of the innermost frame of ``error``'s traceback (where it was raised)."""
    frames = traceback.extract_tb(error.__traceback__)
    if not frames:
        return "?"
    frame = frames[-1]
    parts = Path(frame.filename).parts
    short = "/".join(parts[-3:]) if len(parts) >= 3 else frame.filename
    return f"{short}:{frame.lineno}"


def _first_line(text: str, limit: int = 200) -> str:
    line = (text.strip().splitlines() or [""])[0]
    return line[:limit]


@dataclass
class Campaign:
    """Counts cases and failures per area. ``strict``: raise :class:`CaseFailed` at the first
    failure (hypothesis then shrinks it); otherwise record it and go on. ``timeout``: seconds a
    case may take before it counts as a hang."""

    strict: bool = False
    timeout: float = CASE_TIMEOUT
    cases: Counter = field(default_factory=Counter)
    failures: list[Failure] = field(default_factory=list)

    def fail(self, area: str, case: str, problem: str) -> None:
        failure = Failure(area, case, problem)
        self.failures.append(failure)
        if self.strict:
            raise CaseFailed(str(failure))

    def run(self, area: str, case: str, fn: Callable[[], Any], *, must_fail: bool = True,
            expect: Sequence[str] = (), check: Callable[[Any], str | None] | None = None) -> Any:
        """Run one case.

        ``fn()`` must raise a :class:`SparsexError` with a one-line message containing one of the
        words in ``expect`` (case-insensitive; any message when empty) or, when ``must_fail`` is
        False, may instead return a result that ``check(result)`` accepts (it returns ``None``
        when the result is right, else what is wrong). Returns the result (``None`` on error).
        """
        self.cases[area] += 1
        try:
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")
                with time_limit(self.timeout):
                    result = fn()
        except _Hang:
            self.fail(area, case, f"no answer within {self.timeout:.0f} s (hang)")
            return None
        except SparsexError as e:
            message = str(e)
            if not message.strip():
                self.fail(area, case, f"{type(e).__name__} with an empty message")
            elif "\n" in message.strip():
                self.fail(area, case, f"{type(e).__name__} message has several lines: {message!r}")
            elif expect and not any(word.lower() in message.lower() for word in expect):
                self.fail(area, case, f"message does not name the problem (wanted one of {list(expect)}): {message!r}")
            return None
        except CaseFailed:
            raise
        except Exception as e:  # noqa: BLE001 - any other exception is the failure we look for
            self.fail(area, case, f"{type(e).__name__} at {_where(e)}: {_first_line(str(e))}")
            return None
        if must_fail:
            self.fail(area, case, f"accepted the bad input, returned {_summary(result)}")
            return result
        if check is not None:
            try:
                problem = check(result)
            except Exception as e:  # noqa: BLE001
                problem = f"result check raised {type(e).__name__}: {_first_line(str(e))}"
            if problem:
                self.fail(area, case, f"wrong result: {problem}")
        return result

    def summary(self) -> dict[str, Any]:
        """``badinput.cases``, ``badinput.failures`` and the per-area counts, as the benchmark reports them."""
        out: dict[str, Any] = {"badinput.cases": sum(self.cases.values()), "badinput.failures": len(self.failures)}
        for area in AREAS:
            out[f"badinput.{area}.cases"] = self.cases[area]
            out[f"badinput.{area}.failures"] = sum(f.area == area for f in self.failures)
        return out


def _summary(value: Any) -> str:
    if isinstance(value, torch.Tensor):
        return f"tensor {tuple(value.shape)} {value.dtype}"
    if isinstance(value, np.ndarray):
        return f"array {value.shape} {value.dtype}"
    text = " ".join(repr(value).split())
    return text if len(text) < 120 else text[:117] + "..."


def hypothesis_settings(max_examples: int, deadline_s: float | None = None) -> settings:
    """Reproducible settings: derandomized, no example database, a deadline per example."""
    return settings(max_examples=max_examples, derandomize=True, database=None,
                    deadline=None if deadline_s is None else deadline_s * 1000,
                    suppress_health_check=list(HealthCheck), print_blob=False)


# ----------------------------------------------------------------------------------------------
# Checks of results.
# ----------------------------------------------------------------------------------------------


def finite_values(value: Any, allow_nan: bool = False) -> str | None:
    """``None`` when every number in ``value`` (tensors, arrays, numbers, nested lists/dicts) is
    finite (NaN allowed with ``allow_nan``), else a description of the first bad one."""
    if isinstance(value, torch.Tensor):
        if value.is_floating_point() or value.is_complex():
            bad = ~torch.isfinite(value)
            if allow_nan:
                bad &= ~torch.isnan(value)
            if bad.any():
                return f"non-finite values in tensor {tuple(value.shape)}"
        return None
    if isinstance(value, np.ndarray):
        return finite_values(torch.from_numpy(np.ascontiguousarray(value))) if value.dtype.kind in "fc" else None
    if isinstance(value, bool) or value is None or isinstance(value, str):
        return None
    if isinstance(value, (int, float)):
        if math.isnan(value) and allow_nan:
            return None
        return None if math.isfinite(value) else f"non-finite number {value!r}"
    if isinstance(value, dict):
        value = list(value.values())
    if isinstance(value, (list, tuple)):
        for item in value:
            problem = finite_values(item, allow_nan)
            if problem:
                return problem
        return None
    if hasattr(value, "__dict__"):
        return finite_values(list(vars(value).values()), allow_nan)
    return None


def same_result(a: Any, b: Any, rtol: float = 1e-4, atol: float = 1e-5) -> str | None:
    """``None`` when ``a`` and ``b`` hold the same numbers (NaN equal to NaN)."""
    if isinstance(a, torch.Tensor) or isinstance(b, torch.Tensor):
        if not (isinstance(a, torch.Tensor) and isinstance(b, torch.Tensor)) or a.shape != b.shape:
            return f"{_summary(a)} differs from {_summary(b)}"
        if a.dtype == torch.bool or not (a.is_floating_point() or b.is_floating_point()):
            return None if torch.equal(a, b) else "values differ"
        ok = torch.allclose(a.double(), b.double(), rtol=rtol, atol=atol, equal_nan=True)
        return None if ok else f"values differ (max |diff| {float((a.double() - b.double()).abs().nan_to_num().max()):.3g})"
    if isinstance(a, dict) and isinstance(b, dict):
        if a.keys() != b.keys():
            return "keys differ"
        return next((p for k in a if (p := same_result(a[k], b[k], rtol, atol))), None)
    if isinstance(a, (list, tuple)) and isinstance(b, (list, tuple)):
        if len(a) != len(b):
            return "lengths differ"
        return next((p for x, y in zip(a, b) if (p := same_result(x, y, rtol, atol))), None)
    if isinstance(a, float) or isinstance(b, float):
        if isinstance(a, (int, float)) and isinstance(b, (int, float)):
            if math.isnan(a) and math.isnan(b):
                return None
            return None if math.isclose(a, b, rel_tol=rtol, abs_tol=atol) else f"{a!r} != {b!r}"
    if hasattr(a, "__dict__") and hasattr(b, "__dict__") and type(a) is type(b):
        return same_result(vars(a), vars(b), rtol, atol)
    return None if a == b else f"{_summary(a)} != {_summary(b)}"


# ----------------------------------------------------------------------------------------------
# Shared fixtures: a scratch folder and tiny models, built once per process.
# ----------------------------------------------------------------------------------------------


class Fixtures:
    """A scratch folder and tiny models shared by the cases of one campaign."""

    def __init__(self, root: str | os.PathLike | None = None) -> None:
        self._own = root is None
        self.root = Path(tempfile.mkdtemp(prefix="sparsex-badinput-")) if root is None else Path(root)
        self.root.mkdir(parents=True, exist_ok=True)
        self._cache: dict[str, Any] = {}
        self._counter = 0

    def close(self) -> None:
        if self._own:
            shutil.rmtree(self.root, ignore_errors=True)

    def fresh(self, stem: str = "case") -> Path:
        """A new, not yet existing path in the scratch folder."""
        self._counter += 1
        return self.root / f"{stem}-{self._counter}"

    def _once(self, key: str, build: Callable[[], Any]) -> Any:
        if key not in self._cache:
            self._cache[key] = build()
        return self._cache[key]

    # models -----------------------------------------------------------------------------------

    def classifier(self) -> torch.nn.Module:
        """A small-cnn :class:`~sparsex.models.classifier.ImageClassifier` on 1x8x8 images, 10 classes (random weights)."""
        return self._once("classifier", lambda: _tiny_classifier(channels=1, size=8, classes=10))

    def prototype_classifier(self) -> torch.nn.Module:
        """A :class:`~sparsex.models.classifier.PrototypeClassifier`: a tiny SIDE head on small-cnn, 3x8x8 images."""
        return self._once("prototype", _tiny_prototype_classifier)

    def classifier_run(self) -> Path:
        """A ``sparsex train classifier``-style run folder of :meth:`classifier` (digits, 8x8)."""
        return self._once("classifier_run", lambda: _write_classifier_run(self.root / "classifier-run", self.classifier()))

    def side_checkpoint(self) -> Path:
        """A ``side`` checkpoint folder of :meth:`prototype_classifier`'s head."""
        return self._once("side_checkpoint", lambda: _write_side_checkpoint(self.root / "side-checkpoint",
                                                                           self.prototype_classifier()))

    def vsc_run(self) -> Path:
        """A run folder with a ``vsc`` checkpoint (random weights, 8x8 digits, 4 latent dimensions)."""
        return self._once("vsc_run", lambda: _write_vsc_run(self.root / "vsc-run"))

    def image_file(self, channels: int = 1, size: int = 8) -> Path:
        """A valid PNG image."""
        def build() -> Path:
            from PIL import Image

            path = self.root / f"image-{channels}-{size}.png"
            pixels = (np.arange(size * size * channels) * 37 % 256).astype(np.uint8).reshape(size, size, channels)
            Image.fromarray(pixels[..., 0] if channels == 1 else pixels).save(path)
            return path

        return self._once(f"image-{channels}-{size}", build)


def _tiny_classifier(channels: int, size: int, classes: int) -> torch.nn.Module:
    from ..backbones import create_backbone
    from ..models.classifier import ImageClassifier, LinearProbe

    backbone = create_backbone("small-cnn", image_size=size, in_chans=channels, width=4, seed=0)
    torch.manual_seed(0)
    head = LinearProbe(backbone.info.channels, classes)
    return ImageClassifier(backbone, head, [f"c{i}" for i in range(classes)]).eval().requires_grad_(False)


def _tiny_prototype_classifier() -> torch.nn.Module:
    from ..backbones import create_backbone
    from ..models import create_model
    from ..models.classifier import PrototypeClassifier

    backbone = create_backbone("small-cnn", image_size=8, in_chans=3, width=4, seed=0)
    torch.manual_seed(0)
    head = create_model("side", in_channels=backbone.info.channels, num_classes=3, expanded_channels=4)
    return PrototypeClassifier(backbone, head, ["a", "b", "c"]).eval().requires_grad_(False)


def _write_classifier_run(run: Path, model: torch.nn.Module) -> Path:
    from ..checkpoint import save_checkpoint

    config = {
        "model": {"name": "linear-probe", "in_channels": model.head.in_channels, "num_classes": model.num_classes},
        "backbone": {"name": "small-cnn", "pretrained": False, "weights": None, "layer": None, "image_size": 8,
                     "in_chans": 1, "width": 4},
        "data": {"name": "digits", "root": None, "options": {}, "classes": list(model.classes)},
        "mode": "end-to-end",
    }
    run.mkdir(parents=True, exist_ok=True)
    save_checkpoint(run / "checkpoint", model, "classifier", config)
    return run


def _write_vsc_run(run: Path) -> Path:
    from ..checkpoint import save_checkpoint
    from ..models import create_model

    settings = {"image_size": 8, "channels": 1, "latent_dim": 4, "hidden_dim": 8}
    torch.manual_seed(0)
    model = create_model("vsc", **settings)
    config = {"model": {"name": "vsc", **settings},
              "data": {"name": "digits", "root": None, "options": {}, "classes": [str(i) for i in range(10)]}}
    save_checkpoint(run / "checkpoint", model, "vsc", config)
    return run


def _write_side_checkpoint(path: Path, model: torch.nn.Module) -> Path:
    from ..checkpoint import save_checkpoint

    head = model.head
    config = {
        "model": {"name": "side", "in_channels": head.config.in_channels, "num_classes": head.config.num_classes,
                  "expanded_channels": head.config.expanded_channels},
        "backbone": {"name": "small-cnn", "pretrained": False, "weights": None, "layer": None, "image_size": 8,
                     "in_chans": 3, "width": 4},
        "data": {"name": "digits", "root": None, "options": {}, "classes": ["a", "b", "c"]},
        "cache_dir": str(path.parent / "side-cache"),
    }
    save_checkpoint(path, head, "side", config)
    return path


# ----------------------------------------------------------------------------------------------
# Area "data": IDX files, image files, dataset folders and settings.
# ----------------------------------------------------------------------------------------------

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
    from ..data.idx import read_idx

    path = fx.fresh("idx")
    path.write_bytes(case.data)

    def right(array: Any) -> str | None:
        if not isinstance(array, np.ndarray):
            return f"not an array: {_summary(array)}"
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
    from ..data import create_dataset

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
    from PIL import Image

    buffer = io.BytesIO()
    channels = len(mode)
    pixels = (np.arange(width * height * channels) * 11 % 256).astype(np.uint8).reshape(height, width, channels)
    Image.fromarray(pixels[..., 0] if channels == 1 else pixels, mode).save(buffer, format="PNG")
    return buffer.getvalue()


def _png_bomb(width: int, height: int) -> bytes:
    """A PNG whose header claims ``width x height`` pixels (and holds almost no data)."""
    import zlib

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


def check_non_image(campaign: Campaign, fx: Fixtures, case: tuple[str, bytes | None], channels: Any, size: Any) -> None:
    """``read_image_tensor`` and the image-folder loader on a non-image file; ``read_image_tensor``
    with possibly nonsense ``channels`` and ``size`` on a valid one."""
    from ..data import create_dataset
    from ..data.base import read_image_tensor

    kind, data = case
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
            return f"{_summary(x)}, expected shape {expected}"
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


def check_dataset_settings(campaign: Campaign, fx: Fixtures, name: str, options: dict[str, Any],
                           expect: Sequence[str]) -> None:
    from ..data import create_dataset

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
    from ..data import create_dataset

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


def check_data(campaign: Campaign, fx: Fixtures, case: tuple[str, Any]) -> None:
    kind, value = case
    if kind == "idx":
        check_idx(campaign, fx, value)
    elif kind == "idx-pair":
        check_idx_pair(campaign, fx, value)
    elif kind == "non-image":
        check_non_image(campaign, fx, *value)
    elif kind == "settings":
        check_dataset_settings(campaign, fx, *value)
    else:
        check_cub(campaign, fx, value)


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


# ----------------------------------------------------------------------------------------------
# Area "checkpoint": corrupted safetensors, broken / wrong-family / future-format configs.
# ----------------------------------------------------------------------------------------------

SAFETENSORS_MUTATIONS = ("truncate", "empty", "random", "huge-header", "header-garbage", "flip-header", "bad-offsets")
CONFIG_MUTATIONS = ("invalid-json", "empty-json", "non-utf8", "not-object", "missing-key", "format-version", "family",
                    "config-value", "model-entry", "backbone-entry", "unknown-key", "missing-file", "folder-is-file",
                    "state-missing-key", "state-extra-key", "state-wrong-shape", "state-int-dtype", "state-empty")
HASH_MODES = ("keep", "update", "drop")
LOADERS = ("load_checkpoint", "load_checkpoint(family)", "load_model", "load_classifier", "load_image_classifier",
           "load_image_classifier(run)")


#: The values a config mutation puts in ``config.json``.
CHECKPOINT_VALUES: dict[str, list[Any]] = {
    "format-version": [2, 99, 10**30, 0, -1, "1", 1.5, None, [1], float("nan"), True],
    "family": ["side", "protosvit", "vsc", "minimal-mask", "classifier", "linear", "", 5, None, ["side"]],
    "config-value": [[], "config", None, 3, {}],
    "model-entry": [{"name": "bogus"}, {}, None, "linear-probe", {"name": "linear-probe", "in_channels": "x"},
                    {"name": "linear-probe", "in_channels": 16, "num_classes": 3, "bogus": 1},
                    {"name": "side", "in_channels": 16, "num_classes": 3, "expanded_channels": 4},
                    {"name": "linear-probe", "in_channels": -1, "num_classes": 3},
                    {"name": "side", "in_channels": 16, "num_classes": 3, "expanded_channels": 4.5},
                    {"name": "vsc", "latent_dim": 4}, {"name": 7}],
    "backbone-entry": [{"name": "bogus"}, {}, "small-cnn", None,
                       {"name": "small-cnn", "image_size": 8, "in_chans": 1, "width": 8},
                       {"name": "small-cnn", "image_size": -8, "in_chans": 1, "width": 4},
                       {"name": "small-cnn", "image_size": 8, "in_chans": 0, "width": 4},
                       {"name": "small-cnn", "image_size": 8, "in_chans": 1, "width": 4, "bogus": 2}],
    "missing-key": ["format_version", "family", "config", "model_sha256"],
    "missing-file": ["model.safetensors", "config.json", "folder"],
}


@st.composite
def checkpoint_cases(draw: Callable) -> dict[str, Any]:
    """A damaged copy of a valid checkpoint (classifier or SIDE), and the loader to feed it to."""
    base = draw(st.sampled_from(["classifier", "side"]))
    group = draw(st.sampled_from(["safetensors", "config", "config"]))
    mutation = draw(st.sampled_from(SAFETENSORS_MUTATIONS if group == "safetensors" else CONFIG_MUTATIONS))
    value: Any = None
    if mutation in CHECKPOINT_VALUES:
        value = draw(st.sampled_from(CHECKPOINT_VALUES[mutation]))
    if mutation in ("truncate", "flip-header"):
        value = draw(st.integers(0, 10**6))
    elif mutation == "random":
        value = draw(st.binary(min_size=1, max_size=300))
    elif mutation == "header-garbage":
        value = draw(st.binary(min_size=1, max_size=60))
    return {"base": base, "mutation": mutation, "value": value, "hash": draw(st.sampled_from(HASH_MODES)),
            "loader": draw(st.sampled_from(LOADERS))}


def _safetensors_header(data: bytes) -> tuple[int, dict[str, Any]]:
    size = struct.unpack("<Q", data[:8])[0]
    return size, json.loads(data[8:8 + size])


def _mutate_checkpoint(folder: Path, case: dict[str, Any]) -> None:
    from ..io import sha256_file

    model, config = folder / "model.safetensors", folder / "config.json"
    meta = json.loads(config.read_text())
    mutation, value = case["mutation"], case["value"]
    data = model.read_bytes()
    header_size, header = _safetensors_header(data)
    raw_config: bytes | None = None
    if mutation == "truncate":
        model.write_bytes(data[: value % len(data)])
    elif mutation == "empty":
        model.write_bytes(b"")
    elif mutation == "random":
        model.write_bytes(value)
    elif mutation == "huge-header":
        model.write_bytes(struct.pack("<Q", 2**62) + data[8:])
    elif mutation == "header-garbage":
        model.write_bytes(data[:8] + value + data[8 + len(value):])
    elif mutation == "flip-header":
        k = 8 + value % header_size
        model.write_bytes(data[:k] + bytes([data[k] ^ 0x5A]) + data[k + 1:])
    elif mutation == "bad-offsets":
        name = sorted(k for k in header if k != "__metadata__")[0]
        header[name]["data_offsets"] = [0, len(data) * 4]
        text = json.dumps(header).encode()
        model.write_bytes(struct.pack("<Q", len(text)) + text + data[8 + header_size:])
    elif mutation.startswith("state-"):
        from safetensors.torch import load_file, save_file

        state = load_file(str(model))
        name = sorted(state)[0]
        if mutation == "state-missing-key":
            del state[name]
        elif mutation == "state-extra-key":
            state["bogus.weight"] = torch.zeros(2)
        elif mutation == "state-wrong-shape":
            state[name] = torch.zeros(*[s + 1 for s in state[name].shape])
        elif mutation == "state-int-dtype":
            state = {k: v.round().to(torch.int64) if v.is_floating_point() else v for k, v in state.items()}
        else:
            state = {}
        save_file(state, str(model))
    elif mutation == "invalid-json":
        raw_config = config.read_bytes()[: len(config.read_bytes()) // 2]
    elif mutation == "empty-json":
        raw_config = b""
    elif mutation == "non-utf8":
        raw_config = b'{"format_version": 1, "family": "\xff\xfe"}'
    elif mutation == "not-object":
        raw_config = b"[1, 2, 3]"
    elif mutation == "missing-key":
        meta.pop(value, None)
    elif mutation == "format-version":
        meta["format_version"] = value
    elif mutation == "family":
        meta["family"] = value
    elif mutation == "config-value":
        meta["config"] = value
    elif mutation == "model-entry":
        meta["config"]["model"] = value
    elif mutation == "backbone-entry":
        meta["config"]["backbone"] = value
    elif mutation == "unknown-key":
        meta["from_the_future"] = {"x": 1}
    if case["hash"] == "update" and model.is_file():
        meta["model_sha256"] = sha256_file(model)
    elif case["hash"] == "drop":
        meta.pop("model_sha256", None)
    if raw_config is not None:
        config.write_bytes(raw_config)
    else:
        config.write_text(json.dumps(meta))
    if mutation == "missing-file":
        if value == "folder":
            shutil.rmtree(folder)
        else:
            (folder / value).unlink()
    elif mutation == "folder-is-file":
        shutil.rmtree(folder)
        folder.write_text("not a folder")


def _checkpoint_must_fail(case: dict[str, Any]) -> bool:
    """Whether the loader must refuse the damaged checkpoint (else a working result is fine too)."""
    mutation, loader, value = case["mutation"], case["loader"], case["value"]
    only_file = loader in ("load_checkpoint", "load_checkpoint(family)")
    if mutation in ("truncate", "empty", "random", "huge-header", "bad-offsets", "invalid-json", "empty-json",
                    "non-utf8", "not-object", "missing-file", "folder-is-file"):
        return True
    if mutation in ("header-garbage", "flip-header"):
        return case["hash"] == "keep"
    if mutation == "missing-key":
        return value != "model_sha256"
    if mutation == "format-version":
        return value != 1
    if mutation == "family":
        if loader == "load_checkpoint":
            return not isinstance(value, str)
        if loader == "load_checkpoint(family)" or loader == "load_classifier":
            return value != case["base"]
        if loader == "load_model":
            return not isinstance(value, str)
        return value not in ("classifier", "side", "protosvit") or (case["base"] == "classifier") != (value == "classifier")
    if mutation.startswith("state-") and mutation != "state-int-dtype":
        return not only_file
    if mutation in ("config-value", "model-entry"):
        return not only_file
    if mutation == "backbone-entry":
        return loader in ("load_classifier", "load_image_classifier", "load_image_classifier(run)") and value != {
            "name": "small-cnn", "image_size": 8, "in_chans": 1, "width": 4}
    return False


def _load_with(loader: str, folder: Path, base: str) -> Any:
    from ..checkpoint import load_checkpoint
    from ..models import load_model
    from ..models.classifier import load_classifier, load_image_classifier

    if loader == "load_checkpoint":
        return load_checkpoint(folder)
    if loader == "load_checkpoint(family)":
        return load_checkpoint(folder, family=base)
    if loader == "load_model":
        return load_model(folder)
    if loader == "load_classifier":
        return load_classifier(folder)
    if loader == "load_image_classifier":
        return load_image_classifier(folder)
    return load_image_classifier(folder.parent)  # the run folder holding checkpoint/


def _check_loaded(result: Any) -> str | None:
    from ..checkpoint import Checkpoint

    if isinstance(result, Checkpoint):
        if not isinstance(result.state, dict) or not all(isinstance(v, torch.Tensor) for v in result.state.values()):
            return "state is not a dict of tensors"
        return None
    if not (isinstance(result, tuple) and len(result) == 2 and isinstance(result[0], torch.nn.Module)):
        return f"not (model, checkpoint): {_summary(result)}"
    model = result[0]
    if hasattr(model, "backbone"):  # an image classifier: it must run
        channels = model.backbone.info.in_chans
        logits = model(torch.rand(2, channels, 8, 8))
        if not isinstance(logits, torch.Tensor) or logits.shape[0] != 2 or not torch.isfinite(logits).all():
            return f"the loaded classifier returns {_summary(logits)}"
    return None


def check_checkpoint(campaign: Campaign, fx: Fixtures, case: dict[str, Any]) -> None:
    """Damage a copy of a valid checkpoint as ``case`` says and load it."""
    source = fx.classifier_run() / "checkpoint" if case["base"] == "classifier" else fx.side_checkpoint()
    run = fx.fresh("run")
    folder = run / "checkpoint"
    shutil.copytree(source, folder)
    _mutate_checkpoint(folder, case)
    must_fail = _checkpoint_must_fail(case)
    value = case["value"]
    shown = value if not isinstance(value, bytes) else f"{len(value)} bytes"
    campaign.run("checkpoint", f"{case['loader']} on a {case['base']} checkpoint, {case['mutation']} {shown!r}, "
                 f"hash {case['hash']}", lambda: _load_with(case["loader"], folder, case["base"]),
                 must_fail=must_fail, expect=("checkpoint", "unknown model", "backbone", "weights", "setting"),
                 check=_check_loaded)
    shutil.rmtree(run, ignore_errors=True)


def fixed_checkpoint_cases() -> list[dict[str, Any]]:
    """Every loader on every config mutation (first value), and every safetensors mutation with its hash updated."""
    cases = []
    for loader in LOADERS:
        for mutation, value in (("format-version", 2), ("family", "vsc"), ("truncate", 100), ("huge-header", None),
                                ("config-value", []), ("model-entry", {"name": "linear-probe", "bogus": 1}),
                                ("unknown-key", None), ("state-wrong-shape", None), ("bad-offsets", None)):
            cases.append({"base": "classifier", "mutation": mutation, "value": value, "hash": "update", "loader": loader})
    for base in ("classifier", "side"):  # every config value, through the loader that uses the most of it
        for mutation, values in CHECKPOINT_VALUES.items():
            cases += [{"base": base, "mutation": mutation, "value": value, "hash": "update",
                       "loader": "load_image_classifier(run)"} for value in values]
    return cases


# ----------------------------------------------------------------------------------------------
# Area "cli": nonsense option values for every command.
# ----------------------------------------------------------------------------------------------

#: Placeholders in :data:`CLI_CASES`: OUT a fresh output path; RUN the tiny classifier run; SIDE a SIDE
#: checkpoint; IMG a valid image; BAD a non-image file; MISSING a path that does not exist;
#: JSON_BAD / JSON_LIST config files that are not JSON / not an object; PNG an output .png path.
TINY_PARTS = ["--image-size", "32", "--train-size", "2", "--val-size", "1", "--test-size", "1", "--quiet"]
_MAKE = ["data", "make", "parts", "--out", "OUT", *TINY_PARTS]
_PREVIEW = ["data", "preview", "digits", "--out", "PNG"]
_EXTRACT = ["features", "extract", "--data", "digits", "--backbone", "small-cnn", "--random-weights", "--out", "OUT", "--quiet"]
_CLASSIFIER = ["train", "classifier", "--data", "digits", "--backbone", "small-cnn", "--out", "OUT", "--quiet"]
_VSC = ["train", "vsc", "--data", "digits", "--out", "OUT", "--quiet"]
_SIDE = ["train", "side", "--data", "digits", "--backbone", "small-cnn", "--random-weights", "--out", "OUT", "--quiet"]
_PROTOSVIT = ["train", "protosvit", "--data", "digits", "--backbone", "small-cnn", "--random-weights", "--out", "OUT", "--quiet"]
_EXPLAINER = ["train", "explainer", "--classifier", "RUN", "--out", "OUT", "--quiet"]
_CIRCUIT = ["circuit", "--classifier", "RUN", "--image", "IMG", "--out", "OUT"]
_EVALUATE = ["evaluate", "--model", "RUN", "--out", "OUT", "--quiet"]
_ANALYZE = ["analyze", "vsc", "VSC", "--out", "OUT", "--quiet"]

#: (command prefix, option, nonsense values, a word the error must contain).
CLI_OPTIONS: list[tuple[list[str], str | None, list[str], str]] = [
    (_MAKE, "--seed", ["-1", "abc", "1.5", ""], "seed"),
    (_MAKE, "--image-size", ["0", "-64", "16", "abc", "1e3"], "image"),
    (_MAKE, "--train-size", ["-1", "x"], "train"),
    (_MAKE, "--max-clutter", ["-1", "1000"], "clutter"),
    (_MAKE, "--part-dropout", ["nan", "inf", "-0.1", "1", "2", "x"], "dropout"),
    (["data", "make", "bogus", "--out", "OUT"], None, [""], "parts"),
    (_PREVIEW, "--n", ["0", "-3", "x"], "n"),
    (_PREVIEW, "--seed", ["-1", "x"], "seed"),
    (_PREVIEW, "--split", ["bogus", ""], "split"),
    (_PREVIEW, "--data-opt", ["noequals", "=1", "limit=-1", "bogus=1", "limit=abc"], "data"),
    (["data", "preview", "bogus", "--out", "PNG"], None, [""], "dataset"),
    (["data", "preview", "digits", "--out", "OUT"], None, [""], "png"),
    (["data", "preview", "imagefolder", "--out", "PNG", "--root"], None, ["MISSING", "BAD"], "folder"),
    (_EXTRACT, "--dtype", ["int8", "float128", "bogus", ""], "dtype"),
    (_EXTRACT, "--batch-size", ["0", "-1", "x"], "batch"),
    (_EXTRACT, "--device", ["bogus", "cuda:99", "gpu", "cuda"], "device"),
    (_EXTRACT, "--layer", ["3", "-1"], "layer"),
    (_EXTRACT, "--image-size", ["0", "-1"], "image"),
    (_EXTRACT, "--num-workers", ["-1", "x"], "workers"),
    (_EXTRACT, "--split", ["bogus"], "split"),
    (_EXTRACT, "--weights", ["MISSING", "BAD"], "weights"),
    (["features", "extract", "--data", "digits", "--backbone", "bogus", "--out", "OUT"], None, [""], "backbone"),
    (_CLASSIFIER, "--epochs", ["0", "-1", "x"], "epochs"),
    (_CLASSIFIER, "--mode", ["bogus"], "mode"),
    (_CLASSIFIER, "--set", ["lr=nan", "lr=-1", "lr=abc", "batch_size=0", "seed=x", "bogus=1", "noequals", "epochs=1.5"],
     "set"),
    (_CLASSIFIER, "--config", ["MISSING", "JSON_BAD", "JSON_LIST", "BAD"], "config"),
    (_CLASSIFIER, "--data-opt", ["bogus=1", "limit=0"], "data"),
    (_CLASSIFIER, "--device", ["bogus", "cuda:7"], "device"),
    (["train", "classifier", "--data", "bogus", "--out", "OUT", "--quiet"], None, [""], "dataset"),
    (_VSC, "--latent-dim", ["0", "-4"], "latent"),
    (_VSC, "--lambda-jsd", ["-1", "nan", "inf"], "lambda"),
    (_VSC, "--alpha", ["0", "1", "1.5", "nan"], "alpha"),
    (_VSC, "--epochs", ["0"], "epochs"),
    (_VSC, "--arch", ["bogus"], "arch"),
    (_SIDE, "--prune-k", ["0", "-1"], "prune"),
    (_SIDE, "--ocla-lambda", ["nan", "-1"], "ocla"),
    (_SIDE, "--hoyer-weight", ["-1", "inf"], "hoyer"),
    (_SIDE, "--stages", ["bogus", "finetune,bogus"], "stage"),
    (_PROTOSVIT, "--prototypes", ["0", "-1"], "prototypes"),
    (_PROTOSVIT, "--hoyer-weight", ["nan"], "hoyer"),
    (_PROTOSVIT, "--stages", ["bogus"], "stage"),
    (["train", "infodisent", "--data", "digits", "--out", "OUT", "--quiet", "--set"], None, ["bogus=1"], "bogus"),
    (_EXPLAINER, "--epochs", ["0", "-2"], "epochs"),
    (_EXPLAINER, "--layers", ["bogus", ","], "layer"),
    (_EXPLAINER, "--set", ["width=0", "weights.area=-1", "bogus=1", "lr=nan"], "set"),
    (["train", "explainer", "--out", "OUT", "--quiet", "--classifier"], None, ["MISSING", "SIDE"], "checkpoint"),
    (["explain", "side", "--image", "IMG", "--out", "OUT", "--checkpoint"], None, ["MISSING", "RUN"], "checkpoint"),
    (["explain", "protosvit", "--checkpoint", "SIDE", "--image", "IMG", "--out", "OUT", "--k"], None, ["0", "-1"], "k"),
    (["explain", "side", "--checkpoint", "SIDE", "--out", "OUT", "--image"], None, ["BAD", "MISSING"], "image"),
    (["explain", "mask", "--image", "IMG", "--out", "OUT", "--explainer"], None, ["MISSING", "RUN"], "checkpoint"),
    (_CIRCUIT, "--top-k", ["0", "-1"], "top_k"),
    (_CIRCUIT, "--threshold", ["nan", "-0.1", "1", "inf"], "threshold"),
    (_CIRCUIT, "--edge-top-k", ["0", "-2"], "edge_top_k"),
    (_CIRCUIT, "--other-classes", ["-1"], "other_classes"),
    (_CIRCUIT, "--target", ["-1", "99"], "target"),
    (_CIRCUIT, "--layers", ["bogus", ",", "head"], "layer"),
    (["circuit", "--classifier", "RUN", "--out", "OUT", "--image"], None, ["BAD", "MISSING"], "image"),
    (["circuit", "--image", "IMG", "--out", "OUT", "--classifier"], None, ["MISSING", "SIDE"], "checkpoint"),
    (_EVALUATE, "--limit", ["-1"], "limit"),
    (_EVALUATE, "--internal-batch-size", ["0", "-1"], "batch"),
    (_EVALUATE, "--explainer", ["bogus", ","], "explainer"),
    (_EVALUATE, "--set", ["noequals", "bogus.x=1", "integrated-gradients.n_steps=0", "n_steps=3"], "set"),
    (_EVALUATE, "--split", ["bogus"], "split"),
    (_EVALUATE, "--data", ["bogus", "parts"], "data"),
    (["evaluate", "--out", "OUT", "--model"], None, ["MISSING", "BAD"], "checkpoint"),
    (_ANALYZE, "--steps", ["0", "-1"], "steps"),
    (_ANALYZE, "--span", ["nan", "-1", "0", "inf"], "span"),
    (_ANALYZE, "--dims", ["a,b", "-1", "999"], "dims"),
    (["analyze", "vsc", "--out", "OUT"], None, ["MISSING", "RUN"], "checkpoint"),
    (_ANALYZE, "--device", ["bogus", "cuda:3"], "device"),
    (_ANALYZE, "--classes", ["bogus"], "class"),
    (["demo", "--out"], None, ["BAD"], "output"),
    ([], None, ["bogus", "--bogus"], "bogus"),
    (["data", "make", "parts", "--out"], None, [""], "out"),
    (["train", "classifier", "--out", "OUT", "--bogus-option"], None, [""], "bogus"),
]


def cli_argv(prefix: list[str], option: str | None, value: str) -> list[str]:
    argv = list(prefix)
    if option is not None:
        argv += [option, value]
    elif value != "":
        argv.append(value)
    return argv


def _cli_files(fx: Fixtures) -> dict[str, str]:
    def build() -> dict[str, str]:
        inputs = fx.root / "cli-inputs"
        inputs.mkdir(exist_ok=True)
        (inputs / "bad.png").write_bytes(b"this is not an image")
        (inputs / "bad.json").write_text("{not json")
        (inputs / "list.json").write_text("[1, 2]")
        return {"RUN": str(fx.classifier_run()), "SIDE": str(fx.side_checkpoint()), "VSC": str(fx.vsc_run()), "IMG": str(fx.image_file(1, 8)),
                "BAD": str(inputs / "bad.png"), "MISSING": str(inputs / "missing"), "JSON_BAD": str(inputs / "bad.json"),
                "JSON_LIST": str(inputs / "list.json")}

    return fx._once("cli-files", build)


def run_cli(argv: list[str], subprocess_: bool = False, timeout: float = 120) -> tuple[int, str, str]:
    """Run ``sparsex argv`` in-process (through :func:`sparsex.cli.main`) or as ``python -m sparsex``;
    returns ``(exit status, stdout, stderr)``."""
    if subprocess_:
        env = {**os.environ, "OMP_NUM_THREADS": os.environ.get("OMP_NUM_THREADS", "1"), "COLUMNS": "200"}
        done = subprocess.run([sys.executable, "-m", "sparsex", *argv], capture_output=True, text=True, timeout=timeout,
                              env=env)
        return done.returncode, done.stdout, done.stderr
    from ..cli import main

    out, err = io.StringIO(), io.StringIO()
    code = 0
    with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
        try:
            main(argv)
        except SystemExit as e:
            code = e.code if isinstance(e.code, int) else (0 if e.code is None else 1)
    return code, out.getvalue(), err.getvalue()


class CLIFailure(SparsexError):
    """Stands for a CLI run that failed as it should (one error line, non-zero exit, no output)."""


def check_cli(campaign: Campaign, fx: Fixtures, case: tuple[int, str, bool]) -> None:
    """Run one nonsense command line: it must exit non-zero with one ``error:`` line naming the
    option, no traceback, and leave no output behind."""
    index, value, use_subprocess = case
    prefix, option, _, word = CLI_OPTIONS[index]
    files = _cli_files(fx)
    parent = fx.fresh("cli-out")
    parent.mkdir()
    places = {**files, "OUT": str(parent / "out"), "PNG": str(parent / "preview.png")}
    argv = [places.get(a, a) for a in cli_argv(prefix, option, places.get(value, value))]
    shown = " ".join(a.replace(str(fx.root), "<tmp>") for a in argv)

    def command() -> None:
        code, out, err = run_cli(argv, use_subprocess)
        lines = [line for line in err.splitlines() if line.strip()]
        left = sorted(p.name for p in parent.iterdir())
        if "Traceback" in out + err:
            raise AssertionError(f"traceback: {_first_line(err.split('Traceback')[-1], 300)}")
        if code == 0:
            raise AssertionError(f"exit status 0 (accepted the nonsense value); stdout {_first_line(out)!r}")
        if len(lines) != 1 or not lines[0].startswith("error: "):
            raise AssertionError(f"exit status {code} but stderr is not one error line: {err[:300]!r}")
        if left:
            raise AssertionError(f"left output behind: {left}")
        raise CLIFailure(lines[0][len("error: "):])

    key = value.partition("=")[0] if "=" in value and option in ("--set", "--data-opt") else None
    words = [key.rpartition(".")[2]] if key else [word, word.replace("_", "-"), word.replace("-", "_")]
    if value and value not in places and key is None:
        words.append(value)  # naming the bad value names the problem too
    campaign.run("cli", f"sparsex {shown}{' (subprocess)' if use_subprocess else ''}", command, expect=words)
    shutil.rmtree(parent, ignore_errors=True)


@st.composite
def cli_cases(draw: Callable) -> tuple[int, str, bool]:
    index = draw(st.integers(0, len(CLI_OPTIONS) - 1))
    return index, draw(st.sampled_from(CLI_OPTIONS[index][2])), False


def fixed_cli_cases() -> list[tuple[int, str, bool]]:
    """The first nonsense value of every option, and two runs of ``python -m sparsex``."""
    cases = [(index, values[0], False) for index, (_, _, values, _) in enumerate(CLI_OPTIONS)]
    cases += [(0, "-1", True), (len(CLI_OPTIONS) - 3, "bogus", True)]
    return cases


# ----------------------------------------------------------------------------------------------
# Areas "explainers", "metrics", "losses": tensors with NaN/Inf, wrong dtypes and shapes.
# ----------------------------------------------------------------------------------------------

#: How a tensor argument may be broken: NaN / Inf values, another dtype, one dimension more or
#: less, one size changed or zero, not a tensor at all; or changed harmlessly (a non-contiguous
#: view, a leaf that requires grad), which must give the same result as the original.
MUTATIONS = ("nan", "inf", "dtype", "ndim+", "ndim-", "size", "empty", "type", "noncontig", "requires_grad")
_DTYPES = (torch.float16, torch.bfloat16, torch.float64, torch.int64, torch.int32, torch.uint8, torch.bool, torch.complex64)
_SHAPE_WORDS = ("shape", "size", "match", "dimension", "channels", "classes", "prototypes", "images", "rows", "entries",
                "empty", "one shape", "pairs", "sample", "same number", "at least")


#: Other words that name a setting in an error message.
_SYNONYMS = {"target": ("class",), "indices": ("index",), "group": ("class",), "classes": ("class",),
             "feature_size": ("feature map",), "num_classes": ("classes",), "dataset": ("part world",),
             "weights": ("weight", "mask objective")}


@dataclass
class Arg:
    """A tensor argument: ``kind`` "float" (finite floats), "int" (integer classes or indices),
    "bool", or "mask" (floats in [0, 1]; bool and integer 0/1 accepted too). ``nan_ok``: NaN values
    are meaningful (e.g. a class without samples); ``flex_ndim``: another rank may be valid."""

    kind: str = "float"
    nan_ok: bool = False
    flex_ndim: bool = False
    optional: bool = False  # None is a valid value
    inf_ok: bool = False  # +-Inf are valid values (ranks, comparisons)
    sequence_ok: bool = False  # nested lists / arrays of numbers are valid too


@dataclass
class Target:
    """One entry point: ``call(**kwargs)`` with valid kwargs from ``build(fx)``; ``args`` the tensor
    arguments to break; ``settings`` nonsense values for its other arguments (each must be
    refused, naming the setting); ``nan_out`` results may hold NaN (documented)."""

    area: str
    name: str
    call: Callable[..., Any]
    build: Callable[[Fixtures], dict[str, Any]]
    args: dict[str, Arg] = field(default_factory=dict)
    settings: dict[str, list[Any]] = field(default_factory=dict)
    nan_out: bool = False
    check: Callable[[Any, dict[str, Any]], str | None] | None = None


def _rand(*shape: int, seed: int = 0, low: float = 0.0, high: float = 1.0) -> torch.Tensor:
    return low + (high - low) * torch.rand(*shape, generator=torch.Generator().manual_seed(seed))


def _classes(n: int, k: int, seed: int = 0) -> torch.Tensor:
    return torch.arange(n) % k if seed == 0 else torch.randint(k, (n,), generator=torch.Generator().manual_seed(seed))


def _explainer_targets() -> list[Target]:
    from ..explainers import create_explainer, list_explainers

    tiny = {"integrated-gradients": {"n_steps": 4, "internal_batch_size": 8}, "per-image-mask": {"steps": 2},
            "occlusion": {"window": 2}, "saliency": {}, "gradcam": {}, "prototypes": {}}
    nonsense: dict[str, dict[str, list[Any]]] = {
        "integrated-gradients": {"n_steps": [0, -1, 1.5, float("nan"), "5", True], "baseline": ["bogus", float("nan"), [1], True],
                                 "sigma": [0, -1.0, float("inf"), "x"], "method": ["bogus", 3],
                                 "internal_batch_size": [0, -2, 2.5]},
        "saliency": {"bogus": [1]},
        "gradcam": {"layer": ["bogus", 3, ""], "interpolate_mode": ["bogus", None]},
        "occlusion": {"window": [0, -1, (0, 2), (2,), 1000, "2"], "stride": [0, (3, 0)], "baseline": ["bogus", float("inf")],
                      "sigma": [-1.0], "internal_batch_size": [0]},
        "per-image-mask": {"steps": [0, -1, 2.5], "lr": [float("nan"), -1.0, 0.0, float("inf"), "x"], "downsample": [0, -2],
                           "weights": [{"bogus": 1.0}, {"area": -1.0}, {"area": float("nan")}], "area_budget": [0, 1.5, float("nan")],
                           "internal_batch_size": [0], "blur_sigma": [-1.0, float("nan")], "seed": [-1, 1.5, "x"],
                           "layers": [["bogus"], "bogus", []]},
        "prototypes": {"eps": [float("nan"), -1.0, "x", None]},
    }
    targets = []
    for name in list_explainers():
        proto = name == "prototypes"

        def build(fx: Fixtures, name: str = name, proto: bool = proto) -> dict[str, Any]:
            model = fx.prototype_classifier() if proto else fx.classifier()
            explainer = fx._once(f"explainer-{name}", lambda: create_explainer(name, model, **tiny.get(name, {})))
            return {"explainer": explainer, "inputs": _rand(2, 3 if proto else 1, 8, 8, seed=1), "target": None}

        def call(explainer: Any, inputs: Any, target: Any) -> Any:
            return explainer.attribute(inputs, target)

        def check(result: Any, kwargs: dict[str, Any]) -> str | None:
            x = kwargs["inputs"]
            expected = (x.shape[0], 1, *x.shape[2:])
            if not isinstance(result, torch.Tensor) or tuple(result.shape) != expected:
                return f"{_summary(result)}, expected maps {expected}"
            return finite_values(result)

        settings = {key: values for key, values in nonsense.get(name, {}).items()}
        targets.append(Target("explainers", name, call, build, {"inputs": Arg("float")},
                              {"target": [-1, 10**6, 2**63 - 1, 1.5, True, "a", [0], [0, 1, 2], torch.tensor([0.5, 1.0]),
                                          torch.tensor([[0], [1]]), float("nan")],
                               **{f"create:{k}": v for k, v in settings.items()},
                               "create:model": [None, "model", torch.zeros(3)]}, check=check))
    return targets + _other_explainer_targets()


def _other_explainer_targets() -> list[Target]:
    """The explainers outside the registry: the circuit readout, the amortised mask explainer and
    a prototype head's per-image explanation."""
    from ..explainers.circuit import readout
    from ..explainers.minimal_mask import MinimalMask
    from ..explainers.prototypes import PrototypeExplainer

    def mask_explainer(fx: Fixtures) -> Any:
        return fx._once("minimal-mask", lambda: MinimalMask(fx.classifier()))

    def explanation(fx: Fixtures) -> Any:
        model = fx.prototype_classifier()
        return fx._once("prototype-explainer", lambda: PrototypeExplainer(model.head, model.backbone))

    return [
        Target("explainers", "circuit.readout", readout, lambda fx: {"model": fx.classifier(), "x": _rand(1, 8, 8, seed=50)},
               {"x": Arg(flex_ndim=True)},
               {"top_k": [0, -1, 1.5, "x"], "threshold": [float("nan"), -0.1, 1.0, float("inf"), "x"], "edge_top_k": [0, -1],
                "other_classes": [-1, 1.5], "target": [-1, 10**6, 1.5, "x", [0, 1]], "layers": ["bogus", [], ["bogus"], 5],
                "model": [None, "model"]}),
        Target("explainers", "MinimalMask.attribute", lambda explainer, inputs, **kw: explainer.attribute(inputs, **kw),
               lambda fx: {"explainer": mask_explainer(fx), "inputs": _rand(2, 1, 8, 8, seed=51)}, {"inputs": Arg()},
               {"target": [-1, 10**6, 1.5, "x"]},
               check=lambda result, kw: None if tuple(result.shape) == (kw["inputs"].shape[0], 1, *kw["inputs"].shape[2:])
               else f"masks {tuple(result.shape)}"),
        Target("explainers", "PrototypeExplainer.explain", lambda explainer, image, **kw: explainer.explain(image, **kw),
               lambda fx: {"explainer": explanation(fx), "image": _rand(3, 8, 8, seed=52)}, {"image": Arg(flex_ndim=True)},
               {"top_classes": [0, -1, "x", 1.5], "eps": [float("nan"), -1.0, "x"], "target": [-1, 5, 1.5, "x", True]}),
        Target("explainers", "PrototypeExplainer.attribute", lambda explainer, inputs, **kw: explainer.attribute(inputs, **kw),
               lambda fx: {"explainer": explanation(fx), "inputs": _rand(2, 3, 8, 8, seed=53)}, {"inputs": Arg()},
               {"target": [-1, 5, 1.5, "x", [0, 1, 2], torch.tensor([0.5, 0.5])]}),
    ]


def _model_metric(fx: Fixtures) -> dict[str, Any]:
    return {"model": fx.classifier(), "x": _rand(2, 1, 8, 8, seed=2)}


def _metric_targets() -> list[Target]:
    from .. import metrics as M
    from ..metrics import latent as L
    from ..metrics import parts as P

    pos_int = [0, -1, 2.5, "3", True]
    eps_bad = [float("nan"), -1.0, float("inf"), "x", None]
    t = [
        Target("metrics", "mask_area", M.mask_area, lambda fx: {"masks": _rand(2, 1, 4, 4, seed=3)},
               {"masks": Arg("mask", flex_ndim=True)}),
        Target("metrics", "MaskArea", lambda masks: M.MaskArea()(masks), lambda fx: {"masks": _rand(2, 4, 4, seed=3)},
               {"masks": Arg("mask", flex_ndim=True)}),
        Target("metrics", "sufficiency", M.sufficiency,
               lambda fx: {**_model_metric(fx), "masks": (_rand(2, 1, 8, 8, seed=4) > 0.5).float()},
               {"x": Arg(), "masks": Arg("mask", flex_ndim=True)},
               {"baseline": ["bogus", float("nan"), True, [0.5]], "internal_batch_size": pos_int}),
        Target("metrics", "Sufficiency", lambda model, x, masks, baseline=None: M.Sufficiency(baseline)(model, x, masks),
               lambda fx: {**_model_metric(fx), "masks": torch.ones(2, 1, 8, 8)}, {"masks": Arg("mask", flex_ndim=True)},
               {"baseline": ["bogus", float("inf"), torch.zeros(2, 1, 8, 8)]}),
        Target("metrics", "deletion_auc", M.deletion_auc,
               lambda fx: {**_model_metric(fx), "attributions": _rand(2, 1, 8, 8, seed=5), "steps": 4},
               {"x": Arg(), "attributions": Arg(flex_ndim=True)},
               {"steps": pos_int, "target": [-1, 10, 1.5, [0]], "baseline": ["bogus", float("nan")],
                "internal_batch_size": pos_int}),
        Target("metrics", "insertion_auc", M.insertion_auc,
               lambda fx: {**_model_metric(fx), "attributions": _rand(2, 8, 8, seed=5), "steps": 3},
               {"x": Arg(), "attributions": Arg(flex_ndim=True)}, {"target": [10, "x"]}),
        Target("metrics", "perturbation_curve", M.perturbation_curve,
               lambda fx: {**_model_metric(fx), "attributions": _rand(2, 1, 8, 8, seed=5), "steps": 2},
               {"attributions": Arg(flex_ndim=True)}, {"mode": ["bogus", None, 1]}),
        Target("metrics", "DeletionAUC", lambda model, x, attributions, steps=3: M.DeletionAUC(steps)(model, x, attributions),
               lambda fx: {**_model_metric(fx), "attributions": _rand(2, 1, 8, 8, seed=5)},
               {"attributions": Arg(flex_ndim=True)}, {"steps": pos_int}),
        Target("metrics", "global_size", M.global_size, lambda fx: {"weights": _rand(3, 5, seed=6)},
               {"weights": Arg()}, {"eps": eps_bad}),
        Target("metrics", "local_size", M.local_size,
               lambda fx: {"scores": _rand(4, 5, seed=7), "weights": _rand(3, 5, seed=6), "predicted": _classes(4, 3)},
               {"scores": Arg(), "weights": Arg(), "predicted": Arg("int")}, {"eps": eps_bad}),
        Target("metrics", "local_size_all_classes", M.local_size_all_classes,
               lambda fx: {"scores": _rand(4, 5, seed=7), "weights": _rand(3, 5, seed=6)},
               {"scores": Arg(), "weights": Arg()}, {"eps": eps_bad}),
        Target("metrics", "ocla_score", M.ocla_score, lambda fx: {"probs": _rand(4, 3, seed=8), "targets": _classes(4, 3)},
               {"probs": Arg(), "targets": Arg("int")}, {"threshold": [0, 1, float("nan"), -0.5, "x"]}),
        Target("metrics", "classes_above_histogram", M.classes_above_histogram, lambda fx: {"probs": _rand(4, 3, seed=8)},
               {"probs": Arg()}, {"threshold": [1.5, float("nan")], "max_bins": [0, -1, 1.5, "x"]}),
        Target("metrics", "accuracy", M.accuracy, lambda fx: {"logits": _rand(4, 3, seed=9), "targets": _classes(4, 3)},
               {"logits": Arg(), "targets": Arg("int")}),
        Target("metrics", "zero_weight_fraction", M.zero_weight_fraction, lambda fx: {"weights": _rand(3, 5, seed=6)},
               {"weights": Arg()}, {"eps": eps_bad}),
        Target("metrics", "prototype_metrics", M.prototype_metrics,
               lambda fx: {"scores": _rand(4, 5, seed=7), "weights": _rand(3, 5, seed=6), "logits": _rand(4, 3, seed=9),
                           "probs": _rand(4, 3, seed=8), "targets": _classes(4, 3)},
               {"scores": Arg(), "weights": Arg(), "logits": Arg(), "probs": Arg(), "targets": Arg("int")},
               {"eps": eps_bad, "threshold": [0, 2], "contribution_eps": [float("nan"), -1.0]}),
        Target("metrics", "active_dims", L.active_dims, lambda fx: {"gamma": _rand(4, 6, seed=10)}, {"gamma": Arg()},
               {"threshold": [float("nan"), -1.0, 2.0, "x", None]}),
        Target("metrics", "within_class_jsd", L.within_class_jsd,
               lambda fx: {"gamma": _rand(6, 4, seed=10), "labels": _classes(6, 2)}, {"gamma": Arg(), "labels": Arg("int")},
               {"max_pairs": [0, -5, 2.5, "x"], "seed": ["x", 1.5, None]}),
        Target("metrics", "class_mean_gamma", L.class_mean_gamma,
               lambda fx: {"gamma": _rand(6, 4, seed=10), "labels": _classes(6, 2), "num_classes": 3},
               {"gamma": Arg(), "labels": Arg("int")}, {"num_classes": [0, -1, 1.5, "3", None]}, nan_out=True),
        Target("metrics", "class_correlation", L.class_correlation,
               lambda fx: {"class_means": L.class_mean_gamma(_rand(6, 4, seed=10), _classes(6, 2), 3)},
               {"class_means": Arg(nan_ok=True)}, nan_out=True),
        Target("metrics", "classify_dimensions", L.classify_dimensions,
               lambda fx: {"class_means": L.class_mean_gamma(_rand(6, 4, seed=10), _classes(6, 2), 3), "classes": ["a", "b", "c"]},
               {"class_means": Arg(nan_ok=True)}, {"classes": [["a"], "abc", None], "threshold": [float("nan"), "x"]}),
        Target("metrics", "group_correlation", L.group_correlation,
               lambda fx: {"corr": L.class_correlation(_rand(3, 4, seed=11)), "classes": ["a", "b", "c"], "group": ["a", "b"]},
               {"corr": Arg("any-real", nan_ok=True, sequence_ok=True)},
               {"group": [["a"], ["z", "a"], "ab", None], "classes": [["a", "b"], None, "abc"]},
               nan_out=True),
        Target("metrics", "linear_probe_accuracy", L.linear_probe_accuracy,
               lambda fx: {"train_gamma": _rand(8, 3, seed=12), "train_labels": _classes(8, 2), "test_gamma": _rand(4, 3, seed=13),
                           "test_labels": _classes(4, 2), "max_iter": 20},
               {"train_gamma": Arg(), "train_labels": Arg("int"), "test_gamma": Arg(), "test_labels": Arg("int")},
               {"max_iter": [0, -1, 2.5, "x"], "l2": [0, -1.0, float("nan"), float("inf"), "x"]}),
        Target("metrics", "latent_metrics", L.latent_metrics,
               lambda fx: {"gamma": _rand(6, 3, seed=14), "labels": _classes(6, 2), "classes": ["a", "b", "c"],
                           "train_gamma": _rand(8, 3, seed=12), "train_labels": _classes(8, 2), "probe_max_iter": 20},
               {"gamma": Arg(), "labels": Arg("int"), "train_gamma": Arg(), "train_labels": Arg("int")},
               {"jsd_pairs": [0, -1], "classes": [["a"], None]}, nan_out=True),
        Target("metrics", "prototype_classes", M.prototype_classes, lambda fx: {"weights": _rand(3, 5, seed=6)},
               {"weights": Arg()}, {"eps": eps_bad}),
        Target("metrics", "part_vectors", M.part_vectors,
               lambda fx: {"locations": torch.tensor([[0, 3, 1], [2, 2, 0]]), "feature_size": (2, 2),
                           "part_masks": _rand(2, 4, 8, 8, seed=15) > 0.7},
               {"locations": Arg("int"), "part_masks": Arg("bool")},
               {"feature_size": [(0, 2), (2,), "2x2", (2.5, 2), None, (1, 1)], "region": [0, -0.5, 2.0, float("nan"), "x"],
                "min_overlap": [0, -1, 1.5]}),
        Target("metrics", "part_frequencies", M.part_frequencies,
               lambda fx: {"part_vecs": _rand(4, 5, 3, seed=16) > 0.5, "labels": _classes(4, 2),
                           "prototype_classes": torch.tensor([0, 1, -1, 0, 1]), "visible": _rand(4, 3, seed=17) > 0.2},
               {"part_vecs": Arg("bool"), "labels": Arg("int"), "prototype_classes": Arg("int"),
                "visible": Arg("bool", optional=True)},
               nan_out=True),
        Target("metrics", "consistency", M.consistency,
               lambda fx: {"part_vecs": _rand(4, 5, 3, seed=16) > 0.5, "labels": _classes(4, 2),
                           "prototype_classes": torch.tensor([0, 1, -1, 0, 1])},
               {"part_vecs": Arg("bool"), "labels": Arg("int"), "prototype_classes": Arg("int")},
               {"mu": [0, -0.5, 1.5, float("nan"), "x"]}),
        Target("metrics", "stability", M.stability,
               lambda fx: {"part_vecs": _rand(4, 5, 3, seed=16) > 0.5, "noisy_part_vecs": _rand(4, 5, 3, seed=18) > 0.5,
                           "labels": _classes(4, 2), "prototype_classes": torch.tensor([0, 1, -1, 0, 1])},
               {"part_vecs": Arg("bool"), "noisy_part_vecs": Arg("bool"), "labels": Arg("int"), "prototype_classes": Arg("int")}),
        Target("metrics", "part_importances", P.part_importances,
               lambda fx: {"maps": _rand(2, 1, 8, 8, seed=19), "part_masks": _rand(2, 3, 8, 8, seed=20) > 0.6, "dilation": 3},
               {"maps": Arg(flex_ndim=True), "part_masks": Arg("bool")}, {"dilation": [0, 2, -3, 1.5, "5"]}),
        Target("metrics", "important_parts", P.important_parts,
               lambda fx: {"importances": _rand(2, 3, seed=21), "totals": _rand(2, seed=22), "thresholds": torch.tensor([0.1, 0.3])},
               {"importances": Arg(), "totals": Arg(), "thresholds": Arg("any-real", sequence_ok=True)}),
        Target("metrics", "spearman", P.spearman, lambda fx: {"x": _rand(3, 5, seed=23), "y": _rand(3, 5, seed=24)},
               {"x": Arg("any-real", inf_ok=True), "y": Arg("any-real", inf_ok=True)}, nan_out=True),
        Target("metrics", "minimal_sufficient_part_sets", P.minimal_sufficient_part_sets, lambda fx: {"label": 3},
               {}, {"label": [-1, 10**6, 1.5, "3", None, True]}),
        Target("metrics", "contrast_pair", P.contrast_pair, lambda fx: {"label": 5}, {}, {"label": [-2, 999, 2.0, "a"]}),
        Target("metrics", "Consistency", lambda part_vecs, labels, prototype_classes, mu=0.8:
               M.Consistency(mu)(part_vecs, labels, prototype_classes),
               lambda fx: {"part_vecs": _rand(4, 5, 3, seed=16) > 0.5, "labels": _classes(4, 2),
                           "prototype_classes": torch.tensor([0, 1, -1, 0, 1])},
               {"part_vecs": Arg("bool")}, {"mu": [0, 2, float("nan")]}),
        Target("metrics", "evaluate_parts", lambda model, dataset, explain, **kw: P.evaluate_parts(model, dataset, explain, **kw),
               lambda fx: {"model": P.PartOracle(), "dataset": fx._once("parts-world", lambda: _tiny_world()),
                           "explain": lambda x, t: P.oracle_explanation(P.PartOracle(), x, t), "indices": [0]},
               {}, {"indices": [[-1], [99], [], [0.5], "0"], "thresholds": [[float("nan")], [], "x", [[0.1]]],
                    "dilation": [0, 2], "internal_batch_size": [0, -1], "dataset": [None, [1, 2]], "explain": [None, 3],
                    "model": [None, "model"]}),
    ]
    return t


def _tiny_world() -> Any:
    from ..data import create_dataset

    return create_dataset("parts", split="test", image_size=32, test_size=2, max_clutter=1)


def _loss_targets() -> list[Target]:
    from .. import losses as Ls
    from ..losses import mask as Mk

    nonneg = [float("nan"), -1.0, float("inf"), "x", None]
    return [
        Target("losses", "asymmetric_loss", Ls.asymmetric_loss, lambda fx: {"logits": _rand(4, 3, seed=30, low=-3, high=3),
                                                                            "targets": _classes(4, 3)},
               {"logits": Arg(), "targets": Arg("int")},
               {"gamma_pos": nonneg, "gamma_neg": nonneg, "margin": [-0.1, 1.0, float("nan"), "x"], "eps": [0, 1, -1e-3, "x"]}),
        Target("losses", "asymmetric_loss(matrix)", Ls.asymmetric_loss,
               lambda fx: {"logits": _rand(4, 3, seed=30, low=-3, high=3), "targets": torch.eye(3)[_classes(4, 3)]},
               {"logits": Arg(), "targets": Arg("mask")}),
        Target("losses", "binary_cross_entropy_loss", Ls.binary_cross_entropy_loss,
               lambda fx: {"logits": _rand(4, 3, seed=31, low=-3, high=3), "targets": _classes(4, 3)},
               {"logits": Arg(), "targets": Arg("int")}),
        Target("losses", "ocla_loss", Ls.ocla_loss, lambda fx: {"logits": _rand(4, 3, seed=32, low=-3, high=3), "targets": _classes(4, 3)},
               {"logits": Arg(), "targets": Arg("int")},
               {"threshold": [0, 1, float("nan"), "x"], "weight": nonneg, "margin": [-0.1, 0.6, float("nan"), "x"]}),
        Target("losses", "tanh_loss", Ls.tanh_loss, lambda fx: {"scores": _rand(4, 5, seed=33)}, {"scores": Arg()},
               {"eps": [0, -1.0, float("nan"), "x"]}),
        Target("losses", "hoyer_square", Ls.hoyer_square, lambda fx: {"x": _rand(4, 5, seed=34)}, {"x": Arg()},
               {"eps": [-1.0, float("nan"), "x", None]}),
        Target("losses", "hoyer_square_loss", Ls.hoyer_square_loss, lambda fx: {"importances": _rand(4, 5, seed=34)},
               {"importances": Arg()}),
        Target("losses", "class_importance_hoyer_loss", Ls.class_importance_hoyer_loss,
               lambda fx: {"scores": _rand(4, 5, seed=35), "class_weights": _rand(3, 5, seed=36), "targets": _classes(4, 3)},
               {"scores": Arg(), "class_weights": Arg(), "targets": Arg("int")}),
        Target("losses", "spike_slab_kl", Ls.spike_slab_kl,
               lambda fx: {"mu": _rand(4, 3, seed=37, low=-1), "logvar": _rand(4, 3, seed=38, low=-1), "gamma": _rand(4, 3, seed=39),
                           "alpha": 0.2},
               {"mu": Arg(), "logvar": Arg(), "gamma": Arg()}, {"alpha": [0, 1, float("nan"), -0.5, "x", None]}),
        Target("losses", "bernoulli_jsd", Ls.bernoulli_jsd, lambda fx: {"p": _rand(4, 3, seed=40), "q": _rand(4, 3, seed=41)},
               {"p": Arg(), "q": Arg()}),
        Target("losses", "pairwise_bernoulli_jsd", Ls.pairwise_bernoulli_jsd,
               lambda fx: {"p": _rand(4, 3, seed=40), "q": _rand(2, 3, seed=41)}, {"p": Arg(), "q": Arg(optional=True)}),
        Target("losses", "mean_pairwise_jsd", Ls.mean_pairwise_jsd, lambda fx: {"gamma": _rand(4, 3, seed=42)}, {"gamma": Arg()}),
        Target("losses", "class_alignment_loss", Ls.class_alignment_loss,
               lambda fx: {"gamma": _rand(6, 3, seed=43), "labels": _classes(6, 2)}, {"gamma": Arg(), "labels": Arg("int")}),
        Target("losses", "activation_matching_loss", Mk.activation_matching_loss,
               lambda fx: {"reference": _rand(2, 4, 3, 3, seed=44), "explained": _rand(2, 4, 3, 3, seed=45)},
               {"reference": Arg(flex_ndim=True), "explained": Arg(flex_ndim=True)},
               {"kl_weight": [float("nan"), -1.0, "x"], "cosine_weight": [float("inf"), None]}),
        Target("losses", "mask_area_loss", Mk.mask_area_loss, lambda fx: {"mask": _rand(2, 1, 4, 4, seed=46)}, {"mask": Arg()},
               {"target": [float("nan"), -0.5, 1.5, "x", None]}),
        Target("losses", "total_variation_loss", Mk.total_variation_loss, lambda fx: {"mask": _rand(2, 1, 4, 4, seed=47)},
               {"mask": Arg()}),
        Target("losses", "binarisation_loss", Mk.binarisation_loss, lambda fx: {"mask": _rand(2, 1, 4, 4, seed=48)},
               {"mask": Arg()}),
    ]


def tensor_targets(area: str) -> list[Target]:
    """The entry points of ``area`` ("explainers", "metrics" or "losses")."""
    return {"explainers": _explainer_targets, "metrics": _metric_targets, "losses": _loss_targets}[area]()


def _mutate(x: torch.Tensor, mutation: str, rng: Any) -> Any:
    """``x`` broken (or harmlessly changed) as ``mutation`` says; ``rng`` (a ``random.Random``) picks the details."""
    if mutation in ("nan", "inf"):
        y = x.clone()
        flat = y.view(-1)
        value = float("nan") if mutation == "nan" else rng.choice([float("inf"), float("-inf")])
        flat[rng.randint(0, flat.numel() - 1)] = value
        return y
    if mutation == "dtype":
        dtype = rng.choice([d for d in _DTYPES if d != x.dtype])
        return x.to(dtype) if not (dtype.is_complex and x.dtype == torch.bool) else x.float().to(dtype)
    if mutation == "ndim+":
        return x.unsqueeze(rng.randint(0, x.dim()))
    if mutation == "ndim-":
        return x[0] if x.dim() > 1 and rng.random() < 0.5 else x.flatten()[0] if x.dim() == 1 else x.flatten(0, 1)
    if mutation in ("size", "empty"):
        dim = rng.randint(0, x.dim() - 1)
        if mutation == "empty":
            return x.narrow(dim, 0, 0)
        if x.shape[dim] > 1 and rng.random() < 0.5:
            return x.narrow(dim, 0, x.shape[dim] - 1)
        return torch.cat([x, x.narrow(dim, 0, 1)], dim=dim)
    if mutation == "type":
        return rng.choice([x.tolist(), x.numpy(), None, "tensor", 3.0])
    if mutation == "noncontig":
        if x.dim() >= 2:
            return x.transpose(0, 1).contiguous().transpose(0, 1)
        return torch.stack([x, x], dim=-1)[..., 0]
    if mutation == "requires_grad":
        return x.clone().requires_grad_() if x.is_floating_point() else x
    raise ValueError(mutation)


def _applicable(arg: Arg, x: torch.Tensor, mutation: str) -> bool:
    if mutation in ("nan", "inf"):
        return x.is_floating_point() and x.numel() > 0
    if mutation in ("ndim-", "size", "empty", "noncontig"):
        return x.dim() >= 1 and x.numel() > 0
    if mutation == "requires_grad":
        return x.is_floating_point()
    return True


def _must_fail(arg: Arg, original: torch.Tensor, broken: Any, mutation: str) -> tuple[bool, tuple[str, ...]]:
    """Whether ``broken`` must be refused, and the words the error must contain."""
    if mutation in ("nan", "inf"):
        ok = arg.nan_ok if mutation == "nan" else arg.nan_ok or arg.inf_ok
        return not ok, ("nan" if mutation == "nan" else "inf", "finite", "0 and 1", "[0, 1]")
    if mutation == "type":
        valid = (broken is None and arg.optional) or (arg.sequence_ok and isinstance(broken, (list, np.ndarray)))
        return not valid, ("tensor", "must be", "got")
    if mutation == "dtype":
        dtype = broken.dtype
        words = ("dtype", "float", "integer", "bool", "real", "complex")
        if arg.kind == "float":
            return not dtype.is_floating_point, words
        if arg.kind == "int":
            return dtype.is_floating_point or dtype.is_complex or dtype == torch.bool, words
        if arg.kind == "bool":
            return dtype != torch.bool, words
        return dtype.is_complex, words  # mask / any-real
    if mutation in ("ndim+", "ndim-"):
        return not arg.flex_ndim, _SHAPE_WORDS
    return False, _SHAPE_WORDS


@st.composite
def tensor_cases(draw: Callable, area: str) -> tuple[str, int, str, str, Any]:
    """``(area, target index, argument or setting, mutation, value)``."""
    targets = tensor_targets_cached(area)
    index = draw(st.integers(0, len(targets) - 1))
    target = targets[index]
    choices = [("arg", a) for a in target.args] + [("setting", s) for s in target.settings]
    if not choices:
        return area, index, "", "base", None
    kind, name = draw(st.sampled_from(choices))
    if kind == "setting":
        return area, index, name, "setting", draw(st.sampled_from(target.settings[name]))
    mutation = draw(st.sampled_from(MUTATIONS))
    return area, index, name, mutation, draw(st.integers(0, 2**32 - 1))


_TARGETS: dict[str, list[Target]] = {}


def tensor_targets_cached(area: str) -> list[Target]:
    if area not in _TARGETS:
        _TARGETS[area] = tensor_targets(area)
    return _TARGETS[area]


def _call(target: Target, kwargs: dict[str, Any]) -> Any:
    return target.call(**kwargs)


def _base_result(fx: Fixtures, target: Target) -> Any:
    def build() -> Any:
        return _call(target, target.build(fx))

    return fx._once(f"base-{target.area}-{target.name}", build)


def check_tensor_case(campaign: Campaign, fx: Fixtures, case: tuple[str, int, str, str, Any]) -> None:
    """Call one entry point with one argument broken (or one setting nonsense)."""
    area, index, name, mutation, value = case
    target = tensor_targets_cached(area)[index]
    kwargs = target.build(fx)

    def right(result: Any) -> str | None:
        problem = finite_values(result, allow_nan=target.nan_out)
        if problem is None and target.check is not None:
            problem = target.check(result, kwargs)
        return problem

    if mutation == "base":
        campaign.run(area, f"{target.name} on valid inputs", lambda: _call(target, kwargs), must_fail=False, check=right)
        return
    if mutation == "setting":
        if name.startswith("create:"):  # an explainer's constructor setting
            from ..explainers import create_explainer

            setting = name.split(":", 1)[1]
            model = kwargs["explainer"].model
            x = kwargs["inputs"]
            if setting == "model":
                campaign.run(area, f"create_explainer({target.name!r}, model={_summary(value)})",
                             lambda: create_explainer(target.name, value).attribute(x), expect=("model",))
                return
            campaign.run(area, f"create_explainer({target.name!r}, {setting}={value!r}).attribute",
                         lambda: create_explainer(target.name, model, **{setting: value}).attribute(x),
                         expect=(setting, str(value), *_SYNONYMS.get(setting, ())))
            return
        kwargs[name] = value
        words = (name, *name.split("_"), *_SYNONYMS.get(name, ()))
        campaign.run(area, f"{target.name}({name}={_summary(value)})", lambda: _call(target, kwargs), expect=words)
        return
    arg = target.args[name]
    original = kwargs[name]
    if not _applicable(arg, original, mutation):
        mutation = "type"
    import random

    broken = _mutate(original, mutation, random.Random(value))
    kwargs[name] = broken
    must_fail, words = _must_fail(arg, original, broken, mutation)
    words = (*words, name)
    shown = f"{target.name}({name}={_summary(broken)}) [{mutation}]"
    if mutation in ("noncontig", "requires_grad"):
        try:
            base = _base_result(fx, target)
        except Exception:  # noqa: BLE001 - the valid inputs fail (a case of its own): the view must fail too
            campaign.run(area, shown, lambda: _call(target, kwargs))
            return
        campaign.run(area, shown, lambda: _call(target, kwargs), must_fail=False,
                     check=lambda result: same_result(result, base) or right(result))
        return
    campaign.run(area, shown, lambda: _call(target, kwargs), must_fail=must_fail, expect=words, check=right)


def fixed_tensor_cases(area: str) -> list[tuple[str, int, str, str, Any]]:
    """Every target on valid inputs, each tensor argument with NaN and as a non-tensor, and every nonsense setting."""
    cases = []
    for index, target in enumerate(tensor_targets_cached(area)):
        cases.append((area, index, "", "base", None))
        for name in target.args:
            cases += [(area, index, name, "nan", 1), (area, index, name, "type", 2), (area, index, name, "dtype", 3)]
        for name, values in target.settings.items():
            cases += [(area, index, name, "setting", v) for v in values]
    return cases


# ----------------------------------------------------------------------------------------------
# Running an area.
# ----------------------------------------------------------------------------------------------


def _area_table() -> dict[str, tuple[Callable[[], st.SearchStrategy], Callable, Callable[[], list]]]:
    return {
        "data": (data_cases, check_data, fixed_data_cases),
        "checkpoint": (checkpoint_cases, check_checkpoint, fixed_checkpoint_cases),
        "cli": (cli_cases, check_cli, fixed_cli_cases),
        **{area: (lambda area=area: tensor_cases(area), check_tensor_case, lambda area=area: fixed_tensor_cases(area))
           for area in ("explainers", "metrics", "losses")},
    }


def run_area(area: str, campaign: Campaign, fx: Fixtures, max_examples: int | None = None,
             deadline_s: float | None = None) -> Campaign:
    """Run the fixed cases of ``area``, then ``max_examples`` hypothesis examples of its property
    (default :data:`TEST_EXAMPLES`). Failures are recorded in ``campaign`` (or raised, when strict).

    Hangs are caught by the campaign's time limit per case (a failure of its own); ``deadline_s``
    adds hypothesis' deadline per example (none by default: a slow case is not a wrong one)."""
    strategy, check, fixed = _area_table()[area]
    for case in fixed():
        check(campaign, fx, case)
    examples = TEST_EXAMPLES[area] if max_examples is None else max_examples
    if examples < 1:
        return campaign
    @hypothesis_settings(examples, deadline_s)
    @given(strategy())
    def property_(case: Any) -> None:
        check(campaign, fx, case)

    property_()
    return campaign
