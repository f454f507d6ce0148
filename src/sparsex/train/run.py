"""A run folder with named stages: checkpoint after each stage, resume from the last finished one.

Layout::

    <out>/config.json          the resolved run config (a resumed run must match it)
    <out>/stages/<i>-<name>/   checkpoint after stage i (model.safetensors + config.json) and the
                               stage's metrics (metrics.json), one atomic folder
    <out>/metrics.json         {"stages": [{"stage": name, ...metrics}], "final": {...}}
    <out>/stages.md            the same numbers as a markdown table
    <out>/checkpoint/          the final model (after the last stage)

A stage is finished exactly when its checkpoint folder exists (they are written atomically), so a
run killed mid-stage loses only that stage's progress and restarts it. A run killed after a
stage's folder but before ``metrics.json`` was updated gets the record back from the folder when
it restarts, and the temporary files of writes a kill cut short are removed then
(:func:`sparsex.io.remove_stale_temps`). Killed at any point and restarted with the same command,
a run ends with the same ``metrics.json`` and checkpoint as an uninterrupted one, provided each
stage is a deterministic function of the previous stage's checkpoint and the seed
(``tests/test_kill_resume.py``).
"""

from __future__ import annotations

import functools
import json
import os
import shutil
from pathlib import Path
from typing import Any, Callable, Union

import torch
from torch import nn

from .. import distributed
from ..checkpoint import Checkpoint, load_checkpoint, save_checkpoint
from ..errors import OutputExistsError, SparsexError
from ..io import atomic_file, read_json, remove_stale_temps, write_json

STAGE_METRICS = "metrics.json"  # a stage's record, inside its checkpoint folder


def _upgraded(stored: dict[str, Any], upgrade: Callable[[dict[str, Any]], dict[str, Any]] | None) -> dict[str, Any]:
    """``upgrade(stored)`` as JSON, or ``stored`` when there is no ``upgrade`` or it cannot read it."""
    if upgrade is None:
        return stored
    try:
        return json.loads(json.dumps(upgrade(stored)))
    except SparsexError:
        return stored


class RunFolder:
    """Manage ``<out>`` for a staged run with resolved ``config`` (a JSON dict)."""

    def __init__(self, path: str | Path, config: dict[str, Any], stages: list[str], overwrite: bool = False,
                 upgrade: Callable[[dict[str, Any]], dict[str, Any]] | None = None) -> None:
        """``upgrade`` rewrites a stored config in the current version's terms (a setting added
        since it was written takes its default), so that a run started by an earlier sparsex
        resumes; a stored config it cannot read (a :class:`~sparsex.errors.SparsexError`) is
        compared as it is."""
        self.path = Path(path)
        self.config = json.loads(json.dumps(config))
        self.stages = stages
        config_file = self.path / "config.json"
        if self.path.is_dir():
            remove_stale_temps(self.path, recursive=True)  # only temporaries of killed sparsex writers
        if self.path.exists() and any(self.path.iterdir()):
            stored = read_json(config_file, "run config") if config_file.is_file() else None
            if overwrite:
                shutil.rmtree(self.path)
            elif stored is None:
                raise OutputExistsError(f"output folder {self.path} exists and is not a sparsex run; pass --overwrite or another --out")
            elif (stored := _upgraded(stored, upgrade)) != self.config:  # the keys named are the upgraded config's
                changed = sorted(k for k in set(stored) | set(self.config) if stored.get(k) != self.config.get(k))
                raise OutputExistsError(
                    f"run folder {self.path} holds a run with other settings ({', '.join(changed)}); "
                    f"pass --overwrite or another --out to start afresh"
                )
        self.path.mkdir(parents=True, exist_ok=True)
        write_json(config_file, self.config)
        for folder in (self.path / "stages").glob("*"):
            # stage folders appear atomically (a dot-temporary until whole): an incomplete one is a deletion cut short
            if (not folder.name.startswith(".") and folder.is_dir()
                    and not all((folder / name).is_file() for name in ("config.json", "model.safetensors"))):
                shutil.rmtree(folder, ignore_errors=True)
        self._recover_metrics()

    def _recover_metrics(self) -> None:
        """Bring ``metrics.json`` in line with the finished stages' own records (a run killed between
        a stage's checkpoint and the metrics update lacks that stage's record)."""
        record = self.metrics()
        stored = {m.get("stage"): m for m in record["stages"]}
        missing = []
        for index, stage in enumerate(self.stages):
            folder = self.stage_dir(index)
            if (folder / "config.json").is_file() and (folder / STAGE_METRICS).is_file():
                metrics = read_json(folder / STAGE_METRICS, "stage metrics")
                if json.dumps(stored.get(stage), sort_keys=True) != json.dumps(metrics, sort_keys=True):  # NaN-safe
                    missing.append(metrics)
        if missing:
            self._write_metrics(record, missing)

    def stage_dir(self, index: int) -> Path:
        return self.path / "stages" / f"{index + 1}-{self.stages[index]}"

    def last_finished(self) -> int:
        """Index of the last stage whose checkpoint exists, or -1."""
        done = [i for i in range(len(self.stages)) if (self.stage_dir(i) / "config.json").is_file()]
        return max(done, default=-1)

    def load_stage(self, index: int, family: str) -> Checkpoint:
        return load_checkpoint(self.stage_dir(index), family=family)

    def metrics(self) -> dict[str, Any]:
        file = self.path / "metrics.json"
        return read_json(file, "run metrics") if file.is_file() else {"stages": []}

    def finish_stage(self, index: int, model: nn.Module, family: str, checkpoint_config: dict[str, Any],
                     metrics: dict[str, Any]) -> None:
        """Checkpoint stage ``index`` atomically, then record its metrics (metrics.json, stages.md)."""
        stage_record = json.loads(json.dumps({"stage": self.stages[index], **metrics}))  # as it reads back
        save_checkpoint(self.stage_dir(index), model, family, {**checkpoint_config, "stage": self.stages[index]},
                        overwrite=True, extra_json={STAGE_METRICS: stage_record})
        self._write_metrics(self.metrics(), [stage_record])

    def remeasure_stage(self, index: int, metrics: dict[str, Any]) -> dict[str, Any]:
        """Merge ``metrics`` (a new measurement of finished stage ``index``'s model, e.g. by a newer metric) into
        its record, in its stage folder and in metrics.json; the record's other figures (the training's) stay.
        Return the new record."""
        folder = self.stage_dir(index)
        record = {**read_json(folder / STAGE_METRICS, "stage metrics"), **json.loads(json.dumps(metrics))}
        write_json(folder / STAGE_METRICS, record)
        self._write_metrics(self.metrics(), [record])
        return record

    def _write_metrics(self, record: dict[str, Any], stage_records: list[dict[str, Any]]) -> None:
        """Replace the records of ``stage_records``' stages in ``record``; write metrics.json and stages.md."""
        names = {m["stage"] for m in stage_records}
        record["stages"] = [m for m in record["stages"] if m.get("stage") not in names] + list(stage_records)
        record["stages"].sort(key=lambda m: self.stages.index(m["stage"]) if m["stage"] in self.stages else len(self.stages))
        record["final"] = record["stages"][-1]
        write_json(self.path / "metrics.json", record)
        write_stage_table(self.path / "stages.md", record["stages"])

    def finish(self, model: nn.Module, family: str, checkpoint_config: dict[str, Any]) -> Path:
        """Write the final checkpoint to ``<out>/checkpoint``."""
        return save_checkpoint(self.path / "checkpoint", model, family, checkpoint_config, overwrite=True)


#: what a stage checkpoints: the module, or a state dict (e.g. the module's tensors and its optimiser's)
Saved = Union[nn.Module, dict[str, torch.Tensor]]


def run_stages(run: RunFolder, family: str, *, run_stage: Callable[[int], dict[str, Any]],
               evaluate: Callable[[int], dict[str, Any]], resume: Callable[[Checkpoint], None],
               stage_state: Callable[[], Saved], checkpoint_config: Callable[[], dict[str, Any]],
               final_state: Callable[[], Saved] | None = None, keep_last_stage_only: bool = False,
               finish: Callable[[Path], None] | None = None) -> dict[str, Any]:
    """Run (or resume) the stages of ``run``; return the final stage's record.

    The one skeleton of every trainer. Stages before the first unfinished one are skipped: the
    last finished stage's checkpoint is handed to ``resume`` (load it into the model). Then, for
    each remaining stage ``i``, ``run_stage(i)`` trains or edits the model in place and returns
    numbers for the stage's record (e.g. the final training loss), and rank 0 checkpoints
    ``stage_state()`` under ``checkpoint_config()`` with the record ``{**evaluate(i), **info}``
    (``keep_last_stage_only``: earlier stage folders are removed, for runs with one stage per
    epoch and large states). Finally rank 0 writes ``final_state()`` (default: the stage state) to
    ``<run>/checkpoint`` and calls ``finish(path)`` with it (e.g. to add a prototype gallery).
    Every rank runs ``run_stage``; under torchrun the decisions read from files are rank 0's.
    """

    def record(index: int, info: dict[str, Any]) -> None:
        run.finish_stage(index, stage_state(), family, checkpoint_config(), {**evaluate(index), **info})
        for older in range(index) if keep_last_stage_only else ():
            shutil.rmtree(run.stage_dir(older), ignore_errors=True)

    def write_final() -> None:
        path = run.finish((final_state or stage_state)(), family, checkpoint_config())
        if finish is not None:
            finish(path)

    start = distributed.from_main(run.last_finished) + 1
    if start > 0:
        resume(run.load_stage(start - 1, family))
    for index in range(start, len(run.stages)):
        distributed.main_only(record, index, run_stage(index))
    distributed.main_only(write_final)
    return run.metrics()["final"]


def write_stage_table(path: Path, stages: list[dict[str, Any]]) -> None:
    """Markdown table: one row per stage, one column per scalar metric."""
    columns: list[str] = []
    for stage in stages:
        columns += [k for k, v in stage.items() if k not in columns and k != "stage" and isinstance(v, (int, float))]

    def cell(value: Any) -> str:
        if isinstance(value, float):
            return f"{value:.4g}"
        return "" if value is None else str(value)

    lines = ["| stage | " + " | ".join(columns) + " |", "| --- |" + " --- |" * len(columns)]
    lines += ["| " + s["stage"] + " | " + " | ".join(cell(s.get(c)) for c in columns) + " |" for s in stages]
    with atomic_file(path) as f:
        f.write("\n".join(lines) + "\n")


def removes_unstarted_run(train: Callable[..., Any]) -> Callable[..., Any]:
    """Decorate a trainer ``train(config, out, ...)``: when it raises an error before any stage
    finished, in a folder ``out`` that it created, the folder is removed again (a run that fails
    on its input leaves nothing behind). A killed run (SIGKILL, Ctrl-C) keeps its folder to resume."""

    @functools.wraps(train)
    def wrapper(config: Any, out: str | os.PathLike, *args: Any, **kwargs: Any) -> Any:
        existed = Path(out).exists()
        try:
            return train(config, out, *args, **kwargs)
        except Exception:
            if not existed and not any(Path(out).glob("stages/*/config.json")) and distributed.is_main():
                shutil.rmtree(out, ignore_errors=True)
            raise

    return wrapper
