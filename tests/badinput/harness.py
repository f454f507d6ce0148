"""The harness of the bad-input campaign: a :class:`Campaign` runs cases under a time limit and
classifies each outcome, an :class:`Area` holds one property's cases, :func:`run_area` runs it,
and :func:`finite_values` / :func:`same_result` check results."""

from __future__ import annotations

import contextlib
import math
import signal
import threading
import traceback
import warnings
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Iterator, Sequence

import numpy as np
import torch
from hypothesis import HealthCheck, given, settings
from hypothesis.strategies import SearchStrategy

from sparsex.errors import SparsexError

from .fixtures import Fixtures

#: Seconds a single case may take before it counts as a hang.
CASE_TIMEOUT = 60.0


@dataclass
class Failure:
    """One case that did not end in a one-line error or a correct result."""

    area: str
    case: str
    problem: str

    def __str__(self) -> str:
        return f"[{self.area}] {self.case}: {self.problem}"


class CaseFailed(AssertionError):
    """Raised in strict mode for the first failure (hypothesis then shrinks the case)."""


class _Hang(BaseException):
    """Raised by the time limit inside a case (a BaseException, so ``except Exception`` in the
    code under test does not swallow it)."""


@contextlib.contextmanager
def time_limit(seconds: float | None) -> Iterator[None]:
    """Raise :class:`_Hang` in the main thread after ``seconds`` of wall-clock time (no limit
    elsewhere, or without SIGALRM)."""
    if seconds is None or not hasattr(signal, "SIGALRM") or threading.current_thread() is not threading.main_thread():
        yield
        return

    def handler(signum: int, frame: Any) -> None:
        raise _Hang()

    previous = signal.signal(signal.SIGALRM, handler)
    signal.setitimer(signal.ITIMER_REAL, seconds)
    try:
        yield
    finally:
        signal.setitimer(signal.ITIMER_REAL, 0)
        signal.signal(signal.SIGALRM, previous)


def _where(error: BaseException) -> str:
    """``file:line`` of the innermost frame of ``error``'s traceback (where it was raised)."""
    frames = traceback.extract_tb(error.__traceback__)
    if not frames:
        return "?"
    frame = frames[-1]
    parts = Path(frame.filename).parts
    short = "/".join(parts[-3:]) if len(parts) >= 3 else frame.filename
    return f"{short}:{frame.lineno}"


def first_line(text: str, limit: int = 200) -> str:
    """The first line of ``text``, at most ``limit`` characters."""
    line = (text.strip().splitlines() or [""])[0]
    return line[:limit]


def describe(value: Any) -> str:
    """A short description of ``value`` for a case name or a failure: shape and dtype of a tensor
    or array, else its repr on one line (shortened)."""
    if isinstance(value, torch.Tensor):
        return f"tensor {tuple(value.shape)} {value.dtype}"
    if isinstance(value, np.ndarray):
        return f"array {value.shape} {value.dtype}"
    text = " ".join(repr(value).split())
    return text if len(text) < 120 else text[:117] + "..."


@dataclass
class Campaign:
    """Counts cases and failures per area. ``strict``: raise :class:`CaseFailed` at the first
    failure (hypothesis then shrinks it); otherwise record it and go on. ``timeout``: seconds a
    case may take before it counts as a hang."""

    strict: bool = False
    timeout: float = CASE_TIMEOUT
    cases: Counter = field(default_factory=Counter)
    failures: list[Failure] = field(default_factory=list)

    def fail(self, area: str, case: str, problem: str) -> None:
        failure = Failure(area, case, problem)
        self.failures.append(failure)
        if self.strict:
            raise CaseFailed(str(failure))

    def run(self, area: str, case: str, fn: Callable[[], Any], *, must_fail: bool = True,
            expect: Sequence[str] = (), check: Callable[[Any], str | None] | None = None) -> Any:
        """Run one case.

        ``fn()`` must raise a :class:`SparsexError` with a one-line message containing one of the
        words in ``expect`` (case-insensitive; any message when empty) or, when ``must_fail`` is
        False, may instead return a result that ``check(result)`` accepts (it returns ``None``
        when the result is right, else what is wrong). Returns the result (``None`` on error).
        """
        self.cases[area] += 1
        try:
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")
                with time_limit(self.timeout):
                    result = fn()
        except _Hang:
            self.fail(area, case, f"no answer within {self.timeout:.0f} s (hang)")
            return None
        except SparsexError as e:
            message = str(e)
            if not message.strip():
                self.fail(area, case, f"{type(e).__name__} with an empty message")
            elif "\n" in message.strip():
                self.fail(area, case, f"{type(e).__name__} message has several lines: {message!r}")
            elif expect and not any(word.lower() in message.lower() for word in expect):
                self.fail(area, case, f"message does not name the problem (wanted one of {list(expect)}): {message!r}")
            return None
        except CaseFailed:
            raise
        except Exception as e:  # noqa: BLE001 - any other exception is the failure we look for
            self.fail(area, case, f"{type(e).__name__} at {_where(e)}: {first_line(str(e))}")
            return None
        if must_fail:
            self.fail(area, case, f"accepted the bad input, returned {describe(result)}")
            return result
        if check is not None:
            try:
                problem = check(result)
            except Exception as e:  # noqa: BLE001
                problem = f"result check raised {type(e).__name__}: {first_line(str(e))}"
            if problem:
                self.fail(area, case, f"wrong result: {problem}")
        return result

    def summary(self) -> dict[str, Any]:
        """``badinput.cases``, ``badinput.failures`` and the same per area that ran (in the order
        they ran), as the benchmark reports them."""
        out: dict[str, Any] = {"badinput.cases": sum(self.cases.values()), "badinput.failures": len(self.failures)}
        for area in self.cases:
            out[f"badinput.{area}.cases"] = self.cases[area]
            out[f"badinput.{area}.failures"] = sum(f.area == area for f in self.failures)
        return out


# ----------------------------------------------------------------------------------------------
# Checks of results.
# ----------------------------------------------------------------------------------------------


def finite_values(value: Any, allow_nan: bool = False) -> str | None:
    """``None`` when every number in ``value`` (tensors, arrays, numbers, nested lists/dicts) is
    finite (NaN allowed with ``allow_nan``), else a description of the first bad one."""
    if isinstance(value, torch.Tensor):
        if value.is_floating_point() or value.is_complex():
            bad = ~torch.isfinite(value)
            if allow_nan:
                bad &= ~torch.isnan(value)
            if bad.any():
                return f"non-finite values in tensor {tuple(value.shape)}"
        return None
    if isinstance(value, np.ndarray):
        return finite_values(torch.from_numpy(np.ascontiguousarray(value))) if value.dtype.kind in "fc" else None
    if isinstance(value, bool) or value is None or isinstance(value, str):
        return None
    if isinstance(value, (int, float)):
        if math.isnan(value) and allow_nan:
            return None
        return None if math.isfinite(value) else f"non-finite number {value!r}"
    if isinstance(value, dict):
        value = list(value.values())
    if isinstance(value, (list, tuple)):
        for item in value:
            problem = finite_values(item, allow_nan)
            if problem:
                return problem
        return None
    if hasattr(value, "__dict__"):
        return finite_values(list(vars(value).values()), allow_nan)
    return None


def same_result(a: Any, b: Any, rtol: float = 1e-4, atol: float = 1e-5) -> str | None:
    """``None`` when ``a`` and ``b`` hold the same numbers (NaN equal to NaN)."""
    if isinstance(a, torch.Tensor) or isinstance(b, torch.Tensor):
        if not (isinstance(a, torch.Tensor) and isinstance(b, torch.Tensor)) or a.shape != b.shape:
            return f"{describe(a)} differs from {describe(b)}"
        if a.dtype == torch.bool or not (a.is_floating_point() or b.is_floating_point()):
            return None if torch.equal(a, b) else "values differ"
        ok = torch.allclose(a.double(), b.double(), rtol=rtol, atol=atol, equal_nan=True)
        return None if ok else f"values differ (max |diff| {float((a.double() - b.double()).abs().nan_to_num().max()):.3g})"
    if isinstance(a, dict) and isinstance(b, dict):
        if a.keys() != b.keys():
            return "keys differ"
        return next((p for k in a if (p := same_result(a[k], b[k], rtol, atol))), None)
    if isinstance(a, (list, tuple)) and isinstance(b, (list, tuple)):
        if len(a) != len(b):
            return "lengths differ"
        return next((p for x, y in zip(a, b) if (p := same_result(x, y, rtol, atol))), None)
    if isinstance(a, float) or isinstance(b, float):
        if isinstance(a, (int, float)) and isinstance(b, (int, float)):
            if math.isnan(a) and math.isnan(b):
                return None
            return None if math.isclose(a, b, rel_tol=rtol, abs_tol=atol) else f"{a!r} != {b!r}"
    if hasattr(a, "__dict__") and hasattr(b, "__dict__") and type(a) is type(b):
        return same_result(vars(a), vars(b), rtol, atol)
    return None if a == b else f"{describe(a)} != {describe(b)}"


# ----------------------------------------------------------------------------------------------
# Areas and running them.
# ----------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Area:
    """One area of the campaign: ``cases()`` the hypothesis strategy of its cases,
    ``fixed_cases()`` the cases that always run, ``check(campaign, fixtures, case)`` runs one
    case into the campaign; ``test_examples`` the hypothesis examples the tests take (the
    benchmark takes more)."""

    name: str
    cases: Callable[[], SearchStrategy]
    fixed_cases: Callable[[], list[Any]]
    check: Callable[[Campaign, Fixtures, Any], None]
    test_examples: int


def hypothesis_settings(max_examples: int, deadline_s: float | None = None) -> settings:
    """Reproducible settings: derandomized, no example database, a deadline per example."""
    return settings(max_examples=max_examples, derandomize=True, database=None,
                    deadline=None if deadline_s is None else deadline_s * 1000,
                    suppress_health_check=list(HealthCheck), print_blob=False)


def run_area(area: Area, campaign: Campaign, fx: Fixtures, max_examples: int | None = None,
             deadline_s: float | None = None) -> Campaign:
    """Run the fixed cases of ``area``, then ``max_examples`` hypothesis examples of its property
    (default ``area.test_examples``). Failures are recorded in ``campaign`` (or raised, when strict).

    Hangs are caught by the campaign's time limit per case (a failure of its own); ``deadline_s``
    adds hypothesis' deadline per example (none by default: a slow case is not a wrong one)."""
    # Derandomized hypothesis seeds each run from the source text of ``property_`` and mixes in
    # literals from the project's own modules: the examples are the same from run to run, and
    # change when either changes (the fixed cases do not).
    strategy, check, fixed = area.cases, area.check, area.fixed_cases
    for case in fixed():
        check(campaign, fx, case)
    examples = area.test_examples if max_examples is None else max_examples
    if examples < 1:
        return campaign
    @hypothesis_settings(examples, deadline_s)
    @given(strategy())
    def property_(case: Any) -> None:
        check(campaign, fx, case)

    property_()
    return campaign
