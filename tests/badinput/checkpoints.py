"""Area "checkpoint": corrupted safetensors, broken / wrong-family / future-format configs, through
every checkpoint loader."""

from __future__ import annotations

import json
import shutil
import struct
from pathlib import Path
from typing import Any, Callable

import torch
from hypothesis import strategies as st
from safetensors.torch import load_file, save_file

from sparsex.checkpoint import Checkpoint, load_checkpoint
from sparsex.io import sha256_file
from sparsex.models import load_model
from sparsex.models.classifier import load_classifier, load_image_classifier

from .fixtures import Fixtures
from .harness import Area, Campaign, describe

SAFETENSORS_MUTATIONS = ("truncate", "empty", "random", "huge-header", "header-garbage", "flip-header", "bad-offsets")
CONFIG_MUTATIONS = ("invalid-json", "empty-json", "non-utf8", "not-object", "missing-key", "format-version", "family",
                    "config-value", "model-entry", "backbone-entry", "unknown-key", "missing-file", "folder-is-file",
                    "state-missing-key", "state-extra-key", "state-wrong-shape", "state-int-dtype", "state-empty")
HASH_MODES = ("keep", "update", "drop")

#: The loaders a damaged checkpoint goes through, by name: ``load(checkpoint folder, family it was saved as)``.
LOADERS: dict[str, Callable[[Path, str], Any]] = {
    "load_checkpoint": lambda folder, base: load_checkpoint(folder),
    "load_checkpoint(family)": lambda folder, base: load_checkpoint(folder, family=base),
    "load_model": lambda folder, base: load_model(folder),
    "load_classifier": lambda folder, base: load_classifier(folder),
    "load_image_classifier": lambda folder, base: load_image_classifier(folder),
    "load_image_classifier(run)": lambda folder, base: load_image_classifier(folder.parent),  # the run folder
}


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
            "loader": draw(st.sampled_from(list(LOADERS)))}


def _safetensors_header(data: bytes) -> tuple[int, dict[str, Any]]:
    size = struct.unpack("<Q", data[:8])[0]
    return size, json.loads(data[8:8 + size])


def _mutate_checkpoint(folder: Path, case: dict[str, Any]) -> None:
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


def _check_loaded(result: Any) -> str | None:
    if isinstance(result, Checkpoint):
        if not isinstance(result.state, dict) or not all(isinstance(v, torch.Tensor) for v in result.state.values()):
            return "state is not a dict of tensors"
        return None
    if not (isinstance(result, tuple) and len(result) == 2 and isinstance(result[0], torch.nn.Module)):
        return f"not (model, checkpoint): {describe(result)}"
    model = result[0]
    if hasattr(model, "backbone"):  # an image classifier: it must run
        channels = model.backbone.info.in_chans
        logits = model(torch.rand(2, channels, 8, 8))
        if not isinstance(logits, torch.Tensor) or logits.shape[0] != 2 or not torch.isfinite(logits).all():
            return f"the loaded classifier returns {describe(logits)}"
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
                 f"hash {case['hash']}", lambda: LOADERS[case["loader"]](folder, case["base"]),
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


AREA = Area("checkpoint", checkpoint_cases, fixed_checkpoint_cases, check_checkpoint, test_examples=60)
