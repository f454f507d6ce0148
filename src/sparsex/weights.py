"""Local weight files: read them without unpickling, and load them with clear errors.

Supported: ``.safetensors`` (preferred) and PyTorch state-dict files (``.pt``, ``.pth``, ``.bin``),
the latter read with ``torch.load(weights_only=True)`` so no user code is ever executed.
"""

from __future__ import annotations

import hashlib
import os
from pathlib import Path
from typing import Iterable

import torch
from safetensors import SafetensorError
from safetensors.torch import load_file

from .errors import CheckpointError

#: Prefixes that training frameworks put in front of every key (DDP, Lightning, EMA wrappers).
WRAPPER_PREFIXES = ("module.", "model.", "state_dict.")


def read_state_dict(path: str | os.PathLike) -> dict[str, torch.Tensor]:
    """Read a state dict from a local ``.safetensors`` or PyTorch file, never unpickling code."""
    path = Path(path)
    if not path.is_file():
        raise CheckpointError(f"weights file not found: {path}")
    try:
        if path.suffix == ".safetensors":
            state = load_file(str(path))
        else:
            state = torch.load(path, map_location="cpu", weights_only=True)
    except (SafetensorError, RuntimeError, OSError, EOFError, ValueError) as e:
        first_line = str(e).strip().splitlines()[0] if str(e).strip() else type(e).__name__
        raise CheckpointError(f"cannot read weights file {path}: corrupt or not a weight file ({first_line})") from None
    except Exception as e:  # the unpickler refuses anything but tensors and containers
        raise CheckpointError(f"cannot read weights file {path}: {type(e).__name__} ({str(e).splitlines()[0][:200]})") from None
    for key in ("state_dict", "model", "model_state_dict"):
        if isinstance(state, dict) and key in state and isinstance(state[key], dict):
            state = state[key]
    if not isinstance(state, dict) or not all(isinstance(v, torch.Tensor) for v in state.values()):
        raise CheckpointError(f"weights file {path} does not hold a flat dict of tensors")
    for prefix in WRAPPER_PREFIXES:
        if state and all(k.startswith(prefix) for k in state):
            state = {k[len(prefix):]: v for k, v in state.items()}
    return state


def _short(keys: Iterable[str], n: int = 4) -> str:
    keys = sorted(keys)
    more = f" (+{len(keys) - n} more)" if len(keys) > n else ""
    return ", ".join(keys[:n]) + more


def load_state_dict_checked(
    module: torch.nn.Module,
    state: dict[str, torch.Tensor],
    source: str,
    optional_prefixes: tuple[str, ...] = (),
) -> None:
    """Load ``state`` into ``module`` strictly, raising one line that names the mismatch.

    Keys under ``optional_prefixes`` (e.g. a classifier head that feature extraction does not use)
    may be missing from, or differ in shape in, the file; they are then left as initialised.
    """

    def optional(key: str) -> bool:
        return any(key == p or key.startswith(p + ".") for p in optional_prefixes)

    own = module.state_dict()
    unexpected = [k for k in state if k not in own and not optional(k)]
    missing = [k for k in own if k not in state and not optional(k)]
    wrong = [
        f"{k} {tuple(state[k].shape)} vs {tuple(own[k].shape)}"
        for k in state
        if k in own and state[k].shape != own[k].shape and not optional(k)
    ]
    if wrong:
        raise CheckpointError(f"{source}: shape mismatch for {len(wrong)} tensors: {_short(wrong, 2)}")
    if missing or unexpected:
        parts = []
        if missing:
            parts.append(f"missing keys: {_short(missing)}")
        if unexpected:
            parts.append(f"unexpected keys: {_short(unexpected)}")
        raise CheckpointError(f"{source} does not match the model; " + "; ".join(parts))
    usable = {k: v for k, v in state.items() if k in own and v.shape == own[k].shape}
    module.load_state_dict(usable, strict=False)


def module_sha256(module: torch.nn.Module) -> str:
    """SHA-256 over every parameter and buffer of ``module`` (names and bytes, in name order):
    identifies the weights whatever file they came from."""
    h = hashlib.sha256()
    for key, value in sorted(module.state_dict().items()):
        h.update(key.encode())
        h.update(value.detach().cpu().contiguous().numpy().tobytes())
    return h.hexdigest()
