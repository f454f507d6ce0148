"""The bad-input campaign: malformed inputs to every public entry point, counted.

    python benchmarks/bad_inputs.py --out RESULT.json [--quick] [--examples N]

Runs the campaign of ``tests/badinput`` (the same cases as ``tests/test_bad_inputs.py``, with more
hypothesis examples): truncated, empty, wrong-magic and huge-header IDX files and non-image files
for the dataset loaders; corrupted safetensors and broken, wrong-family and future-format configs
for the checkpoint loaders; nonsense option values for every ``sparsex`` command; NaN/Inf, wrong
dtypes and wrong shapes for every explainer, metric and loss. A case passes when it ends in a
one-line error that names the problem (the CLI: exit status != 0, one ``error:`` line, no
output left behind) or a correct result; anything else (a traceback from inside torch, bad input
accepted, a hang) is a failure, listed in the JSON with its case.

Reports ``badinput.cases`` and ``badinput.failures`` (all areas), the same per area
(``badinput.<area>.cases``, ``badinput.<area>.failures``), the seconds per area, and the
failures themselves (``badinput.failure_list``).
"""

from __future__ import annotations

import sys
import time
from pathlib import Path

from _common import parse_args, write_result

# The campaign is test code (it needs hypothesis, a dev extra), kept in the repository's tests
# folder rather than in the installed package: this benchmark runs from a checkout and imports it
# from there.
sys.path.append(str(Path(__file__).resolve().parents[1] / "tests"))

from badinput import AREAS, Campaign, Fixtures, run_area  # noqa: E402 - needs the tests folder on sys.path

#: Hypothesis examples per area in a full run (the fixed cases of every area run as well).
EXAMPLES = {"data": 1000, "checkpoint": 500, "cli": 300, "explainers": 800, "metrics": 2000, "losses": 1500}


def main() -> None:
    args = parse_args(__doc__, extra=lambda p: p.add_argument(
        "--examples", type=int, default=None, help="hypothesis examples per area (default: a table per area)"))
    campaign = Campaign(strict=False)
    fixtures = Fixtures()
    seconds = {}
    try:
        for area in AREAS:
            examples = args.examples if args.examples is not None else EXAMPLES[area.name]
            if args.quick:
                examples = min(examples, 10)
            start = time.perf_counter()
            run_area(area, campaign, fixtures, examples)
            seconds[area.name] = round(time.perf_counter() - start, 1)
            print(f"{area.name}: {campaign.cases[area.name]} cases, "
                  f"{sum(f.area == area.name for f in campaign.failures)} failures, {seconds[area.name]} s", flush=True)
    finally:
        fixtures.close()
    write_result(args.out, args.quick, {
        **campaign.summary(),
        **{f"badinput.{name}.seconds": time_s for name, time_s in seconds.items()},
        "badinput.failure_list": [str(f) for f in campaign.failures],
    })


if __name__ == "__main__":
    main()
