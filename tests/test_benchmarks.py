"""Every benchmark runs in --quick mode and writes the JSON keys the README quotes."""

import json
import subprocess
import sys
from pathlib import Path

import pytest

BENCHMARKS = Path(__file__).resolve().parents[1] / "benchmarks"


@pytest.mark.parametrize("script, keys", [
    ("parts_generation.py", ["parts.images_per_s", "parts.images_per_s_with_masks_written"]),
    ("feature_cache.py", ["cache.epoch_s_cached", "cache.epoch_s_recomputed", "cache.speedup"]),
])
def test_benchmark_quick_run(tmp_path, script, keys):
    out = tmp_path / "result.json"
    subprocess.run([sys.executable, str(BENCHMARKS / script), "--out", str(out), "--quick"], check=True,
                   capture_output=True, timeout=300, cwd=BENCHMARKS)
    result = json.loads(out.read_text())
    assert result["quick"] is True and script in result["command"]
    assert {"cores", "torch", "device"} <= result["machine"].keys()
    for key in keys:
        assert result[key] > 0
