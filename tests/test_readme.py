"""The README runs as pasted: every ```python block (in order, one namespace) and every ```bash
block, each line a command, from an empty folder; the set-up block is what .ci/run runs. The
command-line tour (six processes, ~40 s) and the demo run in the slow suite."""

from __future__ import annotations

import os
import re
import shlex
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
README = ROOT / "README.md"
BLOCK = re.compile(r"^```(\w+)\n(.*?)^```", re.S | re.M)


def blocks(language: str) -> list[str]:
    return [code for lang, code in BLOCK.findall(README.read_text()) if lang == language]


def commands(block: str) -> list[str]:
    """The commands of a bash block: its lines without comments, blank lines and line continuations."""
    joined = block.replace("\\\n", " ")
    return [line.split("  #")[0].strip() for line in joined.splitlines() if line.strip() and not line.startswith("#")]


def setup_block() -> list[str]:
    return commands(blocks("bash")[0])


def demo_blocks() -> list[str]:
    return [b for b in blocks("bash")[1:] if any(c.startswith("sparsex demo") for c in commands(b))]


def tour_blocks() -> list[str]:
    return [b for b in blocks("bash")[1:] if b not in demo_blocks()]


def run_commands(block: str, cwd: Path, timeout: int) -> None:
    """Run each command as a shell would (words split, globs expanded), ``sparsex`` as this checkout's."""
    env = {**os.environ, "PYTHONPATH": str(ROOT / "src")}
    for command in commands(block):
        argv = [match for word in shlex.split(command)
                for match in (sorted(str(p.relative_to(cwd)) for p in cwd.glob(word)) if "*" in word else [word])]
        assert argv[0] in ("sparsex", "python"), f"README command {command!r} is not a sparsex or python command"
        if argv[0] == "python":
            argv[0] = sys.executable
        else:
            argv = [sys.executable, "-m", "sparsex", *argv[1:]]
        result = subprocess.run(argv, cwd=cwd, env=env, capture_output=True, text=True, timeout=timeout)
        assert result.returncode == 0, f"README command {command!r} failed:\n{result.stdout[-2000:]}\n{result.stderr[-2000:]}"


def test_the_readme_is_a_door():
    lines = README.read_text().splitlines()
    assert len(lines) <= 220, f"README.md has {len(lines)} lines; the journal belongs in benchmarks/README.md, definitions in docs/"
    for link in re.findall(r"\]\(((?:docs|benchmarks)/[^)#]+)", README.read_text()):
        assert (ROOT / link).exists(), f"README links to {link}, which does not exist"


def test_ci_runs_exactly_the_readme_setup_commands():
    install, test = setup_block()
    ci = [line.strip() for line in (ROOT / ".ci" / "run").read_text().splitlines() if line.strip() and not line.startswith("#")]
    assert install in ci and test in ci, f".ci/run must run the README's {install!r} and {test!r}"
    slow = re.findall(r"`(python -m pytest [^`]*-m slow[^`]*)`", README.read_text())
    assert slow and all(c in ci for c in slow), "the README names the slow-test command, and .ci/run runs it too"


def test_python_blocks_run_as_pasted(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    namespace: dict = {"__name__": "__readme__"}
    for index, code in enumerate(blocks("python")):
        exec(compile(code, f"README.md python block {index + 1}", "exec"), namespace)


@pytest.mark.slow
def test_command_line_tour_runs_as_pasted(tmp_path):
    tour = tour_blocks()
    assert tour, "the README has a command-line tour"
    for block in tour:
        run_commands(block, tmp_path, timeout=600)


@pytest.mark.slow
def test_the_demo_runs_as_pasted(tmp_path):
    (block,) = demo_blocks()
    run_commands(block, tmp_path, timeout=1800)
    assert (tmp_path / "demo" / "report.html").is_file()
