"""The benchmarks' aggregation over part worlds (``benchmarks/_common.py``: over_worlds, world_options, world_runs) and
the tuning scripts' choice over it (choose_setting)."""

import math
import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "benchmarks"))

from _common import choose_setting, over_worlds, split_sizes, world_options, world_runs  # noqa: E402


def fake_run(seed, clutter):
    """Figures that depend on the world in a known way."""
    return {"side.accuracy": 0.9 - 0.1 * seed, "side.local_size": 5.0 + seed + (clutter or 0),
            "side.ocla_score": 0.8 + 0.05 * seed, "time_s.side": 10.0 * (seed + 1),
            "side.classes_above_t_histogram": [seed, 1], "settings.prune_k": 7, "side.mystery": float(seed)}


def test_mean_sd_worst_over_a_grid():
    calls = []

    def run_one(seed, clutter):
        calls.append((seed, clutter))
        return fake_run(seed, clutter)

    figures = over_worlds(run_one, [0, 1, 2], [3, 6])
    assert calls == [(0, 3), (0, 6), (1, 3), (1, 6), (2, 3), (2, 6)]
    assert figures["worlds"] == [0, 1, 2] and figures["clutter"] == [3, 6]
    accuracy = [0.9, 0.9, 0.8, 0.8, 0.7, 0.7]
    assert figures["side.accuracy.values"] == pytest.approx(accuracy)
    assert figures["side.accuracy.mean"] == pytest.approx(0.8)
    assert figures["side.accuracy.sd"] == pytest.approx(math.sqrt(sum((a - 0.8) ** 2 for a in accuracy) / 5))
    assert figures["side.accuracy.worst"] == pytest.approx(0.7)  # higher is better: the minimum
    assert figures["side.ocla_score.worst"] == pytest.approx(0.8)
    assert figures["side.local_size.worst"] == 13.0  # a size: the maximum (seed 2, clutter 6)
    assert figures["side.local_size.mean"] == pytest.approx(sum(5 + s + c for s in (0, 1, 2) for c in (3, 6)) / 6)
    assert figures["time_s.side.worst"] == 30.0
    assert "side.mystery.worst" not in figures and figures["side.mystery.mean"] == pytest.approx(1.0)  # no direction
    assert figures["settings.prune_k"] == 7 and "settings.prune_k.mean" not in figures
    assert figures["side.classes_above_t_histogram"] == [0, 1]  # non-numeric: the first world's
    assert "side.accuracy" not in figures  # several worlds: only the aggregates


def test_one_world_keeps_the_plain_keys_and_a_prefix():
    figures = over_worlds(fake_run, [1], [None], prefix="fine")
    assert figures["fine.worlds"] == [1] and figures["fine.clutter"] == [None]
    assert figures["fine.side.accuracy"] == pytest.approx(0.8) and figures["fine.side.accuracy.sd"] == 0.0
    assert figures["fine.side.accuracy.worst"] == figures["fine.side.accuracy.mean"] == pytest.approx(0.8)


def test_world_options_and_run_folders():
    sizes = {"train_size": 96}
    assert world_options(0, None, None, sizes) == sizes  # the default world: options (and caches) as before
    assert world_options(2, 6, "parts-fine", sizes) == {"train_size": 96, "preset": "parts-fine", "seed": 2, "max_clutter": 6}
    default_sizes = {"train_size": 2400, "test_size": 480}
    assert split_sizes(default_sizes, None, quick=False) == default_sizes
    assert split_sizes(default_sizes, "parts-fine", quick=False) == {"train_size": 4800, "test_size": 1200}  # 40 / 10 per class
    assert split_sizes(default_sizes, "parts-fine", quick=True) == default_sizes
    runs = Path("runs")
    assert world_runs(runs, 0, None, None) == runs
    assert world_runs(runs, 1, 6, None) == runs / "parts_seed1_clutter6"
    assert world_runs(runs, 0, None, "parts-fine") == runs / "parts-fine_seed0"


def test_choose_setting_takes_the_largest_worst_slack():
    settings = [{"a": 1}, {"a": 2}, {"a": 3}]
    slacks = {1: [0.5, -0.2], 2: [0.1, 0.3], 3: [0.1, 0.4]}  # worst: -0.2, 0.1, 0.1 (a tie: the earlier wins)
    figures = {f"grid.a{a}.slack.values": values for a, values in slacks.items()}
    choice = choose_setting(figures, settings, lambda s: f"a{s['a']}")
    assert choice["worst_slack.a1"] == -0.2 and choice["worst_slack.a3"] == 0.1
    assert choice["chosen.a"] == 2 and choice["chosen.worst_slack"] == 0.1 and choice["chosen.meets_every_check"] is True
    figures["grid.a2.slack.values"] = [-0.1, 0.3]
    figures["grid.a3.slack.values"] = [-0.3, 0.3]
    choice = choose_setting(figures, settings, lambda s: f"a{s['a']}")
    assert choice["chosen.a"] == 2 and choice["chosen.meets_every_check"] is False
