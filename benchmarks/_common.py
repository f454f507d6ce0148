"""What every benchmark shares: the command line, the machine description, the JSON result."""

from __future__ import annotations

import argparse
import os
import platform
import shlex
import sys
from pathlib import Path
from typing import Any, Callable

import torch

from sparsex.io import write_json


def parse_args(description: str, extra: Callable[[argparse.ArgumentParser], Any] | None = None) -> argparse.Namespace:
    """``--out RESULT.json`` and ``--quick``; ``extra(parser)`` may add a benchmark's own options."""
    parser = argparse.ArgumentParser(description=description, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--out", type=Path, required=True, help="JSON file to write the figures to")
    parser.add_argument("--quick", action="store_true", help="tiny settings for a smoke test (a couple of minutes)")
    if extra is not None:
        extra(parser)
    return parser.parse_args()


def machine_info() -> dict[str, Any]:
    """Cores, torch version, device and platform of the machine the benchmark ran on."""
    return {
        "cores": os.cpu_count(),
        "torch_threads": torch.get_num_threads(),
        "torch": torch.__version__,
        "device": "cpu",
        "python": platform.python_version(),
        "platform": platform.platform(),
        "processor": platform.processor() or platform.machine(),
    }


def write_result(out: Path, quick: bool, figures: dict[str, Any]) -> dict[str, Any]:
    """Write one flat JSON object: command, machine, quick, then the dotted figures; print it."""
    result = {"command": "python " + " ".join(shlex.quote(a) for a in sys.argv), "machine": machine_info(),
              "quick": quick, **figures}
    write_json(out, result)
    for key, value in figures.items():
        print(f"{key}: {value}")
    return result
