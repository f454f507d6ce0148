"""Every benchmark runs in --quick mode and writes the JSON keys the README quotes."""

import json
import subprocess
import sys
from pathlib import Path

import pytest

BENCHMARKS = Path(__file__).resolve().parents[1] / "benchmarks"


@pytest.mark.parametrize("script, keys, extra", [
    ("parts_generation.py", ["parts.images_per_s", "parts.images_per_s_with_masks_written"], []),
    ("feature_cache.py", ["cache.epoch_s_cached", "cache.epoch_s_recomputed", "cache.speedup"], []),
    ("side_parts.py", ["side.global_size", "dense.global_size", "time_s.side"], ["--cache", "{tmp}/cache"]),
    ("protosvit_parts.py", ["protosvit.global_size", "ablation.hs0.global_size", "time_s.protosvit"],
     ["--cache", "{tmp}/cache"]),
])
def test_benchmark_quick_run(tmp_path, script, keys, extra):
    out = tmp_path / "result.json"
    extra = [a.replace("{tmp}", str(tmp_path)) for a in extra]
    subprocess.run([sys.executable, str(BENCHMARKS / script), "--out", str(out), "--quick", *extra], check=True,
                   capture_output=True, timeout=600, cwd=BENCHMARKS)
    result = json.loads(out.read_text())
    assert result["quick"] is True and script in result["command"]
    assert {"cores", "torch", "device"} <= result["machine"].keys()
    for key in keys:
        assert result[key] > 0
    if script == "side_parts.py":  # every key the README and the issue quote is there
        for key in ["side.accuracy", "side.local_size", "side.local_size_all", "side.ocla_score", "dense.accuracy",
                    "dense.local_size", "ablation.asl.zero_weight_fraction", "ablation.bce.zero_weight_fraction",
                    "ablation.ocla0.ocla_score", "ablation.ocla200.ocla_score"]:
            assert 0 <= result[key] <= (1 if "size" not in key else 10_000), key
    if script == "protosvit_parts.py":
        for key in ["protosvit.accuracy", "protosvit.local_size", "probe.accuracy", "ablation.hs0.local_size"]:
            assert 0 <= result[key] <= (1 if "size" not in key else 10_000), key
