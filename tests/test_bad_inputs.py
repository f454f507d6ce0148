"""The bad-input campaign (the package ``badinput`` next to this file) as tests.

Every area runs its fixed cases plus a modest number of hypothesis examples (its
``test_examples``, derandomized: CI sees the same cases on every run); each case must end in a
one-line error that names the problem or a correct result, within a time limit. The benchmark
``benchmarks/bad_inputs.py`` runs the same cases with more examples and counts them.
"""

from __future__ import annotations

import time

import pytest
import torch
from badinput import AREAS, Area, Campaign, Fixtures, run_area

from sparsex.errors import InputError


@pytest.fixture(scope="module")
def fixtures(tmp_path_factory) -> Fixtures:
    return Fixtures(tmp_path_factory.mktemp("badinput"))


#: the command-line area runs every command in process, about 15 s: with the slow checks (`pytest -m slow`, which CI runs)
SLOW_AREAS = ("cli",)


@pytest.mark.parametrize("area", [pytest.param(area, marks=pytest.mark.slow) if area.name in SLOW_AREAS else area
                                  for area in AREAS], ids=lambda area: area.name)
def test_bad_inputs(area: Area, fixtures: Fixtures):
    campaign = Campaign(strict=False, timeout=60)
    run_area(area, campaign, fixtures)
    assert campaign.cases[area.name] > 0
    if campaign.failures:
        listed = "\n".join(str(f) for f in campaign.failures[:20])
        pytest.fail(f"{len(campaign.failures)} of {campaign.cases[area.name]} cases failed:\n{listed}", pytrace=False)


def test_campaign_flags_every_kind_of_failure():
    # The 0.5 s limit is wall-clock time, as it must be: a hang may sleep or wait without using
    # the CPU (the "hang" case below sleeps), so a CPU-time limit would never fire. The first
    # tensor error a process raises pays for torch's lazy set-up of its error path (about 10 ms
    # on an idle machine, past 0.5 s on a loaded one); raise it once, untimed, so that the limit
    # times the case itself, as it does every later case.
    with pytest.raises(RuntimeError):
        torch.zeros(2) @ torch.zeros(3)
    campaign = Campaign(strict=False, timeout=0.5)
    campaign.run("metrics", "torch error", lambda: torch.zeros(2) @ torch.zeros(3))
    campaign.run("metrics", "two lines", lambda: (_ for _ in ()).throw(InputError("first\nsecond")))
    campaign.run("metrics", "vague", lambda: (_ for _ in ()).throw(InputError("something went wrong")), expect=("NaN",))
    campaign.run("metrics", "accepted", lambda: 1.0)
    campaign.run("metrics", "wrong result", lambda: float("nan"), must_fail=False, check=lambda r: "NaN" if r != r else None)
    campaign.run("metrics", "hang", lambda: time.sleep(5))
    campaign.run("metrics", "good error", lambda: (_ for _ in ()).throw(InputError("x contain NaN values")), expect=("NaN",))
    campaign.run("metrics", "good result", lambda: 0.5, must_fail=False, check=lambda r: None)
    problems = [f.problem for f in campaign.failures]
    assert campaign.cases["metrics"] == 8 and len(problems) == 6, problems
    assert problems[0].startswith("RuntimeError at ") and "hang" in problems[5]
    assert campaign.summary()["badinput.metrics.failures"] == 6
    strict = Campaign(strict=True)
    with pytest.raises(AssertionError, match="accepted the bad input"):
        strict.run("losses", "accepted", lambda: 1.0)
