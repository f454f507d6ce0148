"""Checkpoints: a folder with ``model.safetensors`` and ``config.json``. No pickle, ever.

``config.json`` holds::

    {"format_version": 1, "family": "side", "sparsex_version": "0.1.0",
     "config": {...the model's resolved config...}, "model_sha256": "<hash of model.safetensors>"}

The folder is written atomically (built beside the target, then renamed), and verified on load:
a missing file, corrupt JSON, a hash mismatch, a checkpoint of another family or from a newer
format each raise :class:`~sparsex.errors.CheckpointError` with one line. Unknown top-level keys
(from a later minor release) are ignored with a warning.
"""

from __future__ import annotations

import json
import os
import warnings
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from safetensors import SafetensorError
from safetensors.torch import load_file, save_file
from torch import nn

from .checks import check_int
from .errors import CheckpointError
from .io import atomic_dir, read_json, sha256_file
from .weights import load_state_dict_checked

FORMAT_VERSION = 1
MODEL_FILE = "model.safetensors"
CONFIG_FILE = "config.json"
KNOWN_KEYS = {"format_version", "family", "sparsex_version", "config", "model_sha256"}


@dataclass
class Checkpoint:
    """A loaded checkpoint: the tensors, the model family and its config."""

    state: dict[str, torch.Tensor]
    family: str
    config: dict[str, Any]
    format_version: int
    path: Path

    def load_into(self, module: nn.Module) -> nn.Module:
        """Load the tensors into ``module`` strictly (one-line error naming mismatched keys)."""
        load_state_dict_checked(module, self.state, f"checkpoint {self.path}")
        return module


def save_checkpoint(path: str | os.PathLike, model: nn.Module | dict[str, torch.Tensor], family: str,
                    config: dict[str, Any], overwrite: bool = False,
                    extra_json: dict[str, Any] | None = None) -> Path:
    """Write ``model`` (a module or a state dict) and ``config`` as a checkpoint folder at ``path``.

    ``extra_json`` maps file names to JSON objects written into the folder with the checkpoint,
    atomically with it (e.g. a run stage's metrics): the folder appears with all of them or not at all.
    """
    from . import __version__

    state = model.state_dict() if isinstance(model, nn.Module) else model
    # safetensors refuses tensors that share memory (tied weights): store independent copies.
    tensors = {k: v.detach().to("cpu").contiguous().clone() for k, v in state.items()}
    try:
        json.dumps(config)
        json.dumps(extra_json)
    except TypeError as e:
        raise CheckpointError(f"checkpoint config is not JSON-serialisable: {e}") from None
    extra = dict(extra_json or {})
    if {MODEL_FILE, CONFIG_FILE} & extra.keys() or any(Path(name).name != name for name in extra):
        raise CheckpointError(f"checkpoint extra files must be plain file names other than {MODEL_FILE}/{CONFIG_FILE}: "
                              f"{sorted(extra)}")
    with atomic_dir(path, overwrite=overwrite) as tmp:  # the folder appears whole or not at all
        save_file(tensors, str(tmp / MODEL_FILE))
        for name, obj in extra.items():
            _dump_json(tmp / name, obj)
        _dump_json(tmp / CONFIG_FILE, {
            "format_version": FORMAT_VERSION, "family": family, "sparsex_version": __version__,
            "config": config, "model_sha256": sha256_file(tmp / MODEL_FILE),
        })
    return Path(path)


def _dump_json(path: Path, obj: Any) -> None:
    """Indented JSON into a file of a folder that :func:`~sparsex.io.atomic_dir` is building."""
    path.write_text(json.dumps(obj, indent=2) + "\n")


def checkpoint_dir(path: str | os.PathLike) -> Path:
    """The checkpoint folder ``path`` names: ``path`` itself, or for a run folder (one without
    ``model.safetensors`` that holds a ``checkpoint/`` folder) its final ``<run>/checkpoint``."""
    if not isinstance(path, (str, os.PathLike)):
        raise CheckpointError(f"a checkpoint is a folder path, got {type(path).__name__} {path!r}")
    path = Path(path)
    if not (path / MODEL_FILE).is_file() and (path / "checkpoint").is_dir():
        return path / "checkpoint"
    return path


def load_checkpoint(path: str | os.PathLike, family: str | None = None) -> Checkpoint:
    """Read and verify a checkpoint folder (or the final checkpoint of a run folder,
    :func:`checkpoint_dir`); ``family`` (if given) must match the stored one."""
    path = checkpoint_dir(path)
    if not path.is_dir():
        raise CheckpointError(f"checkpoint folder not found: {path}")
    for name in (CONFIG_FILE, MODEL_FILE):
        if not (path / name).is_file():
            raise CheckpointError(f"checkpoint {path} has no {name}")
    meta = read_json(path / CONFIG_FILE, f"checkpoint {CONFIG_FILE}", CheckpointError)
    if not isinstance(meta, dict) or not {"format_version", "family", "config"} <= meta.keys():
        raise CheckpointError(f"checkpoint {path}: {CONFIG_FILE} lacks format_version/family/config")
    version = check_int(meta["format_version"], f"checkpoint {path}: format_version", 1, error=CheckpointError)
    if version > FORMAT_VERSION:
        raise CheckpointError(
            f"checkpoint {path} has format version {version}, newer than this sparsex reads ({FORMAT_VERSION}); upgrade sparsex"
        )
    if not isinstance(meta["family"], str) or not meta["family"]:
        raise CheckpointError(f"checkpoint {path}: {CONFIG_FILE} family must be a model family name, got {meta['family']!r}")
    if not isinstance(meta["config"], dict):
        raise CheckpointError(f"checkpoint {path}: {CONFIG_FILE} config must be a JSON object, "
                              f"got {type(meta['config']).__name__}")
    unknown = sorted(set(meta) - KNOWN_KEYS)
    if unknown:
        warnings.warn(f"checkpoint {path}: ignoring unknown keys in {CONFIG_FILE}: {', '.join(unknown)}", stacklevel=2)
    if family is not None and meta["family"] != family:
        raise CheckpointError(f"checkpoint {path} holds a {meta['family']!r} model, not a {family!r} model")
    expected = meta.get("model_sha256")
    if expected is not None and sha256_file(path / MODEL_FILE) != expected:
        raise CheckpointError(f"checkpoint {path}: {MODEL_FILE} does not match its recorded hash (corrupt or modified)")
    try:
        state = load_file(str(path / MODEL_FILE))
    except (SafetensorError, OSError, ValueError) as e:
        raise CheckpointError(f"checkpoint {path}: {MODEL_FILE} is corrupt ({str(e).splitlines()[0]})") from None
    return Checkpoint(state, meta["family"], meta["config"], version, path)
