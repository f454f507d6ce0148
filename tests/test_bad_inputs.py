"""The bad-input campaign (:mod:`sparsex.testing.badinput`) as tests.

Every area runs its fixed cases plus a modest number of hypothesis examples
(``TEST_EXAMPLES``, derandomized: CI sees the same cases on every run); each case must end in a
one-line error that names the problem or a correct result, within a time limit. The benchmark
``benchmarks/bad_inputs.py`` runs the same cases with more examples and counts them.
"""

from __future__ import annotations

import time

import pytest
import torch

from sparsex.errors import InputError
from sparsex.testing.badinput import AREAS, Campaign, Fixtures, run_area

@pytest.fixture(scope="module")
def fixtures(tmp_path_factory) -> Fixtures:
    return Fixtures(tmp_path_factory.mktemp("badinput"))


def _run(area: str, fixtures: Fixtures) -> Campaign:
    campaign = Campaign(strict=False, timeout=60)
    run_area(area, campaign, fixtures)
    assert campaign.cases[area] > 0
    if campaign.failures:
        listed = "\n".join(str(f) for f in campaign.failures[:20])
        pytest.fail(f"{len(campaign.failures)} of {campaign.cases[area]} cases failed:\n{listed}", pytrace=False)
    return campaign


@pytest.mark.parametrize("area", AREAS)
def test_bad_inputs(area, fixtures):
    _run(area, fixtures)


def test_campaign_flags_every_kind_of_failure():
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
