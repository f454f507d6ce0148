"""Kill and resume (issue 8): a run SIGKILLed at any point - mid-epoch, mid-checkpoint write,
mid-feature-cache build - restarts with the same command and ends with the same metrics.json,
checkpoint tensors and files as an uninterrupted run with the same seed.

Every run is the real CLI entry point (``sparsex.cli.main(argv)``, what ``python -m sparsex``
runs) in its own process, forked from a forkserver that has the trainers imported already (a
fresh ``python -m sparsex`` spends ~8 s importing torch/timm before it does anything; the
classifier's first mid-write kill is launched that way). Per trainer, two chains of launches on
their own output folders, each ending with a launch of the same command that must finish:

- random: three SIGKILLs after seeded random delays (fractions of the uninterrupted run's wall time);
- mid-write: ``SPARSEX_TEST_KILL_AT=<name>`` (see :mod:`sparsex.io`) SIGKILLs the process after
  the temporary copy of that file or folder is written and before it is renamed into place, at
  each of the trainer's ``HOOKS`` in turn (stage checkpoints, metrics.json after a stage's
  checkpoint, the run's config.json, the final checkpoint, feature shards, the cache manifest).

After every kill, everything visible in the output (not a dot-temporary) must be complete: JSON
parses, safetensors load, checkpoints match their hash, feature caches with a manifest load. So a
resumed run can never read a half-written file. After the final launch no temporary is left and
the output equals the uninterrupted run's.
"""

from __future__ import annotations

import json
import multiprocessing
import os
import random
import re
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file

from sparsex.checkpoint import load_checkpoint
from sparsex.features import FeatureCache

PARTS = ["--data", "parts", "--backbone", "small-cnn", "--data-options", "image_size=48", "--data-options", "train_size=96",
         "--data-options", "test_size=24"]
COMMANDS = {
    "classifier": ["train", "classifier", "--data", "digits", "--backbone", "small-cnn", "--set", "image_size=8",
                   "--epochs", "2"],
    "side": ["train", "side", *PARTS, "--set", "expanded_channels=6", "--set", "pretrain_epochs=8",
             "--set", "finetune_epochs=4", "--set", "calibrate_epochs=4", "--set", "gallery_k=2", "--prune-k", "2"],
    "protosvit": ["train", "protosvit", *PARTS, "--num-prototypes", "6", "--set", "embed_dim=8", "--set", "epochs=8",
                  "--set", "hoyer_warmup_epochs=2", "--set", "gallery_k=2"],
    "vsc": ["train", "vsc", "--data", "digits", "--latent-dim", "8", "--lambda-jsd", "10", "--epochs", "3",
            "--set", "hidden_dim=32", "--set", "batch_size=40", "--set", "probe_max_iter=50"],
    # digits train: 1437 items, two shards of 1024
    "features": ["features", "extract", "--data", "digits", "--backbone", "small-cnn", "--image-size", "16"],
}
# Deterministic kill points per trainer, in launch order: a stage folder, the run's metrics.json after
# a stage's checkpoint (the classifier's: its last stage, whose record is the final metrics), the run's
# config.json (the folder then holds only a temporary), the final checkpoint, a feature shard (inside a
# run folder for ProtoS-ViT), the cache manifest.
HOOKS = {
    "classifier": ["2-epoch-2", "metrics.json"],
    "side": ["config.json", "2-prune", "metrics.json"],
    "protosvit": ["shard-00000.safetensors", "checkpoint"],
    "vsc": ["2-epoch2", "checkpoint"],
    "features": ["shard-00001.safetensors", "manifest.json"],
}
TEMP = re.compile(r"^\..+\.(tmp|old)-")
_CTX = multiprocessing.get_context("forkserver")
_CTX.set_forkserver_preload(["sparsex.cli", "sparsex.train.classifier", "sparsex.train.side", "sparsex.train.protosvit",
                             "sparsex.train.vsc", "sparsex.features", "sparsex.data.digits", "sklearn.datasets",
                             "sklearn.model_selection", "sklearn.linear_model", "typer.main", "rich.table"])


def _cli_child(argv: list[str], env: dict[str, str], log: str) -> None:
    """In the forked child: the environment, one thread, output to ``log``, then the CLI."""
    os.environ.pop("SPARSEX_TEST_KILL_AT", None)
    os.environ.update(env)
    fd = os.open(log, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o644)
    os.dup2(fd, 1)
    os.dup2(fd, 2)
    torch.set_num_threads(1)
    from sparsex.cli import main

    main(argv)


def launch(argv: list[str], log: Path, env: dict[str, str] | None = None, kill_after: float | None = None) -> int:
    """Run the CLI in a forked process; SIGKILL it after ``kill_after`` seconds if still running.
    Returns the exit code (``-SIGKILL`` when killed)."""
    process = _CTX.Process(target=_cli_child, args=(argv, env or {}, str(log)))
    process.start()
    process.join(kill_after if kill_after is not None else 300)
    if process.is_alive():
        if kill_after is None:
            process.kill()
            process.join()
            pytest.fail(f"{' '.join(argv)} did not finish in 300 s")
        os.kill(process.pid, signal.SIGKILL)
        process.join()
    return process.exitcode


def command(trainer: str, out: Path) -> list[str]:
    return [*COMMANDS[trainer], "--out", str(out), "--quiet"]


def temporaries(out: Path) -> list[Path]:
    return sorted(p for p in out.rglob("*") if TEMP.match(p.name))


def top_temporaries(out: Path) -> list[Path]:
    """Temporaries that are not inside another one (the write a kill cut short, not its contents)."""
    return [p for p in temporaries(out) if not any(part.startswith(".") for part in p.parent.relative_to(out).parts)]


def visible(out: Path) -> list[Path]:
    """Everything under ``out`` outside dot-temporaries."""
    return sorted(p for p in out.rglob("*") if not any(part.startswith(".") for part in p.relative_to(out).parts))


def assert_visible_state_complete(out: Path) -> None:
    """What a restarted run may read is whole: no half-written file is ever in place."""
    for path in visible(out):
        if path.is_file() and path.suffix == ".json":
            json.loads(path.read_text())
        elif path.is_file() and path.suffix == ".safetensors":
            load_file(str(path))
        elif path.is_dir() and (path.parent.name == "stages" or path.name == "checkpoint"):
            load_checkpoint(path)  # both files there and the tensors match the recorded hash
        elif path.is_dir() and (path / "manifest.json").is_file():
            FeatureCache.load(path)


def assert_same_output(out: Path, reference: Path, trainer: str) -> None:
    assert temporaries(out) == [], "temporary files or folders left behind"
    rel = [p.relative_to(out) for p in visible(out)]
    assert rel == [p.relative_to(reference) for p in visible(reference)]
    assert_visible_state_complete(out)
    if trainer == "features":
        for cache in sorted(p for p in out.iterdir() if (p / "manifest.json").is_file()):
            got, want = FeatureCache.load(cache), FeatureCache.load(reference / cache.name)
            assert got.key == want.key
            for name in ("features", "labels", "indices"):
                assert torch.equal(getattr(got, name), getattr(want, name)), (cache.name, name)
        return
    assert json.loads((out / "metrics.json").read_text()) == json.loads((reference / "metrics.json").read_text())
    assert (out / "stages.md").read_text() == (reference / "stages.md").read_text()
    for folder in ["checkpoint", *(str(p.relative_to(out)) for p in (out / "stages").iterdir())]:
        got, want = load_checkpoint(out / folder), load_checkpoint(reference / folder)
        assert json.dumps(got.config).replace(str(out), "OUT") == json.dumps(want.config).replace(str(reference), "OUT")
        assert got.state.keys() == want.state.keys(), folder
        for key in got.state:
            assert torch.equal(got.state[key], want.state[key]), (folder, key)
    if (reference / "checkpoint" / "gallery.safetensors").is_file():
        got, want = (load_file(str(p / "checkpoint" / "gallery.safetensors")) for p in (out, reference))
        assert got.keys() == want.keys() and all(torch.equal(got[k], want[k]) for k in got)


@pytest.fixture(scope="module")
def references(tmp_path_factory):
    """Uninterrupted runs, one per trainer, made on first use: ``trainer -> (out, wall seconds)``."""
    made: dict[str, tuple[Path, float]] = {}

    def get(trainer: str) -> tuple[Path, float]:
        if trainer not in made:
            folder = tmp_path_factory.mktemp(f"reference-{trainer}")
            if not made:  # start the forkserver (imports) before timing anything
                assert launch(["--help"], folder / "log.txt") == 0
            start = time.monotonic()
            code = launch(command(trainer, folder / "out"), folder / "log.txt")
            assert code == 0, (folder / "log.txt").read_text()
            made[trainer] = folder / "out", time.monotonic() - start
        return made[trainer]

    return get


@pytest.mark.parametrize("trainer, seed", [("classifier", 0), ("side", 1), ("protosvit", 2), ("vsc", 3), ("features", 4)])
def test_killed_at_random_points_resumes_to_the_uninterrupted_result(trainer, seed, references, tmp_path):
    """Three SIGKILLs after seeded random delays (each launch restarts from what the last one left),
    then the same command to the end."""
    reference, wall = references(trainer)
    out, log = tmp_path / "out", tmp_path / "log.txt"
    rng = random.Random(seed)
    kills = 0
    for _ in range(3):
        code = launch(command(trainer, out), log, kill_after=rng.uniform(0.1, 0.45) * wall)
        assert code in (0, -signal.SIGKILL), log.read_text()
        kills += code == -signal.SIGKILL
        assert_visible_state_complete(out)
    print(f"{trainer}: {kills} of 3 random launches killed")
    assert kills >= 1, "every launch finished before its kill"
    assert launch(command(trainer, out), log) == 0, log.read_text()
    assert_same_output(out, reference, trainer)


@pytest.mark.parametrize("trainer", HOOKS)
def test_killed_in_the_middle_of_writes_resumes_to_the_uninterrupted_result(trainer, references, tmp_path):
    """SIGKILLs between an atomic write's temporary copy and its rename (``SPARSEX_TEST_KILL_AT``), at each
    of ``HOOKS[trainer]`` in turn, then the same command to the end. The classifier's first launch is a
    fresh ``python -m sparsex`` process."""
    reference, _ = references(trainer)
    out, log = tmp_path / "out", tmp_path / "log.txt"
    for i, label in enumerate(HOOKS[trainer]):
        if trainer == "classifier" and i == 0:
            env = {**os.environ, "OMP_NUM_THREADS": "1", "SPARSEX_TEST_KILL_AT": label}
            result = subprocess.run([sys.executable, "-m", "sparsex", *command(trainer, out)], env=env,
                                    capture_output=True, text=True, timeout=300)
            code = result.returncode
            log.write_text(result.stdout + result.stderr)
        else:
            code = launch(command(trainer, out), log, env={"SPARSEX_TEST_KILL_AT": label})
        assert code == -signal.SIGKILL, f"no kill at {label}: exit {code}\n{log.read_text()}"
        assert any(p.name.startswith(f".{label}.tmp-") for p in top_temporaries(out)), f"not killed mid-write of {label}"
        assert_visible_state_complete(out)
    assert launch(command(trainer, out), log) == 0, log.read_text()
    assert_same_output(out, reference, trainer)
