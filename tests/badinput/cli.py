"""Area "cli": nonsense option values for every ``sparsex`` command."""

from __future__ import annotations

import contextlib
import io
import os
import shutil
import subprocess
import sys
from typing import Callable

from hypothesis import strategies as st

from sparsex.cli import main as cli_main
from sparsex.errors import SparsexError

from .fixtures import Fixtures
from .harness import Area, Campaign, first_line

#: Placeholders in :data:`CLI_OPTIONS`: OUT a fresh output path; RUN the tiny classifier run; SIDE a SIDE
#: checkpoint; IMG a valid image; BAD a non-image file; MISSING a path that does not exist;
#: JSON_BAD / JSON_LIST config files that are not JSON / not an object; PNG an output .png path.
TINY_PARTS = ["--image-size", "32", "--train-size", "2", "--val-size", "1", "--test-size", "1", "--quiet"]
_MAKE = ["data", "make", "parts", "--out", "OUT", *TINY_PARTS]
_PREVIEW = ["data", "preview", "digits", "--out", "PNG"]
_EXTRACT = ["features", "extract", "--data", "digits", "--backbone", "small-cnn", "--no-pretrained", "--out", "OUT", "--quiet"]
_CLASSIFIER = ["train", "classifier", "--data", "digits", "--backbone", "small-cnn", "--out", "OUT", "--quiet"]
_VSC = ["train", "vsc", "--data", "digits", "--out", "OUT", "--quiet"]
_SIDE = ["train", "side", "--data", "digits", "--backbone", "small-cnn", "--no-pretrained", "--out", "OUT", "--quiet"]
_PROTOSVIT = ["train", "protosvit", "--data", "digits", "--backbone", "small-cnn", "--no-pretrained", "--out", "OUT", "--quiet"]
_EXPLAINER = ["train", "minimal-mask", "--model", "RUN", "--out", "OUT", "--quiet"]
_CIRCUIT = ["circuit", "--model", "RUN", "--image", "IMG", "--out", "OUT"]
_EVALUATE = ["evaluate", "--model", "RUN", "--out", "OUT", "--quiet"]
_ANALYZE = ["analyze", "vsc", "VSC", "--out", "OUT", "--quiet"]

#: (command prefix, option, nonsense values, a word the error must contain).
CLI_OPTIONS: list[tuple[list[str], str | None, list[str], str]] = [
    (_MAKE, "--seed", ["-1", "abc", "1.5", ""], "seed"),
    (_MAKE, "--image-size", ["0", "-64", "16", "abc", "1e3"], "image"),
    (_MAKE, "--train-size", ["-1", "x"], "train"),
    (_MAKE, "--max-clutter", ["-1", "1000"], "clutter"),
    (_MAKE, "--part-dropout", ["nan", "inf", "-0.1", "1", "2", "x"], "dropout"),
    (["data", "make", "bogus", "--out", "OUT"], None, [""], "parts"),
    (_PREVIEW, "--n", ["0", "-3", "x"], "n"),
    (_PREVIEW, "--seed", ["-1", "x"], "seed"),
    (_PREVIEW, "--split", ["bogus", ""], "split"),
    (_PREVIEW, "--data-options", ["noequals", "=1", "limit=-1", "bogus=1", "limit=abc"], "data"),
    (["data", "preview", "bogus", "--out", "PNG"], None, [""], "dataset"),
    (["data", "preview", "digits", "--out", "OUT"], None, [""], "png"),
    (["data", "preview", "imagefolder", "--out", "PNG", "--root"], None, ["MISSING", "BAD"], "folder"),
    (_EXTRACT, "--dtype", ["int8", "float128", "bogus", ""], "dtype"),
    (_EXTRACT, "--batch-size", ["0", "-1", "x"], "batch"),
    (_EXTRACT, "--device", ["bogus", "cuda:99", "gpu", "cuda"], "device"),
    (_EXTRACT, "--layer", ["3", "-1"], "layer"),
    (_EXTRACT, "--image-size", ["0", "-1"], "image"),
    (_EXTRACT, "--num-workers", ["-1", "x"], "workers"),
    (_EXTRACT, "--split", ["bogus"], "split"),
    (_EXTRACT, "--weights", ["MISSING", "BAD"], "weights"),
    (["features", "extract", "--data", "digits", "--backbone", "bogus", "--out", "OUT"], None, [""], "backbone"),
    (_CLASSIFIER, "--epochs", ["0", "-1", "x"], "epochs"),
    (_CLASSIFIER, "--mode", ["bogus"], "mode"),
    (_CLASSIFIER, "--set", ["lr=nan", "lr=-1", "lr=abc", "batch_size=0", "seed=x", "bogus=1", "noequals", "epochs=1.5"],
     "set"),
    (_CLASSIFIER, "--config", ["MISSING", "JSON_BAD", "JSON_LIST", "BAD"], "config"),
    (_CLASSIFIER, "--data-options", ["bogus=1", "limit=0"], "data"),
    (_CLASSIFIER, "--device", ["bogus", "cuda:7"], "device"),
    (["train", "classifier", "--data", "bogus", "--out", "OUT", "--quiet"], None, [""], "dataset"),
    (_VSC, "--latent-dim", ["0", "-4"], "latent"),
    (_VSC, "--lambda-jsd", ["-1", "nan", "inf"], "lambda"),
    (_VSC, "--alpha", ["0", "1", "1.5", "nan"], "alpha"),
    (_VSC, "--epochs", ["0"], "epochs"),
    (_VSC, "--arch", ["bogus"], "arch"),
    (_SIDE, "--prune-k", ["0", "-1"], "prune"),
    (_SIDE, "--ocla-lambda", ["nan", "-1"], "ocla"),
    (_SIDE, "--hoyer-weight", ["-1", "inf"], "hoyer"),
    (_SIDE, "--stages", ["bogus", "finetune,bogus"], "stage"),
    (_PROTOSVIT, "--num-prototypes", ["0", "-1"], "prototypes"),
    (_PROTOSVIT, "--hoyer-weight", ["nan"], "hoyer"),
    (_PROTOSVIT, "--stages", ["bogus"], "stage"),
    (["train", "infodisent", "--data", "digits", "--out", "OUT", "--quiet", "--set"], None, ["bogus=1"], "bogus"),
    (_EXPLAINER, "--epochs", ["0", "-2"], "epochs"),
    (_EXPLAINER, "--layers", ["bogus", ","], "layer"),
    (_EXPLAINER, "--set", ["width=0", "weights.area=-1", "bogus=1", "lr=nan"], "set"),
    (["train", "minimal-mask", "--out", "OUT", "--quiet", "--model"], None, ["MISSING"], "no such folder"),
    (["explain", "prototypes", "--image", "IMG", "--out", "OUT", "--model"], None, ["MISSING", "RUN"], "checkpoint"),
    (["explain", "prototypes", "--model", "SIDE", "--image", "IMG", "--out", "OUT", "--k"], None, ["0", "-1"], "k"),
    (["explain", "prototypes", "--model", "SIDE", "--out", "OUT", "--image"], None, ["BAD", "MISSING"], "image"),
    (["explain", "mask", "--image", "IMG", "--out", "OUT", "--explainer"], None, ["MISSING", "RUN"], "checkpoint"),
    (_CIRCUIT, "--top-k", ["0", "-1"], "top_k"),
    (_CIRCUIT, "--threshold", ["nan", "-0.1", "1", "inf"], "threshold"),
    (_CIRCUIT, "--edge-top-k", ["0", "-2"], "edge_top_k"),
    (_CIRCUIT, "--other-classes", ["-1"], "other_classes"),
    (_CIRCUIT, "--target", ["-1", "99"], "target"),
    (_CIRCUIT, "--layers", ["bogus", ",", "head"], "layer"),
    (["circuit", "--model", "RUN", "--out", "OUT", "--image"], None, ["BAD", "MISSING"], "image"),
    (["circuit", "--image", "IMG", "--out", "OUT", "--model"], None, ["MISSING", "SIDE"], "no such folder|circuit"),
    (_EVALUATE, "--limit", ["-1"], "limit"),
    (_EVALUATE, "--internal-batch-size", ["0", "-1"], "batch"),
    (_EVALUATE, "--explainer", ["bogus", ","], "explainer"),
    (_EVALUATE, "--set", ["noequals", "bogus.x=1", "integrated-gradients.n_steps=0", "n_steps=3"], "set"),
    (_EVALUATE, "--split", ["bogus"], "split"),
    (_EVALUATE, "--data", ["bogus", "parts"], "data"),
    (["evaluate", "--out", "OUT", "--model"], None, ["MISSING", "BAD"], "checkpoint|no such folder"),
    (_ANALYZE, "--steps", ["0", "-1"], "steps"),
    (_ANALYZE, "--span", ["nan", "-1", "0", "inf"], "span"),
    (_ANALYZE, "--dims", ["a,b", "-1", "999"], "dims"),
    (["analyze", "vsc", "--out", "OUT"], None, ["MISSING", "RUN"], "checkpoint"),
    (_ANALYZE, "--device", ["bogus", "cuda:3"], "device"),
    (_ANALYZE, "--classes", ["bogus"], "class"),
    (["demo", "--out"], None, ["BAD"], "output"),
    ([], None, ["bogus", "--bogus"], "bogus"),
    (["data", "make", "parts", "--out"], None, [""], "out"),
    (["train", "classifier", "--out", "OUT", "--bogus-option"], None, [""], "bogus"),
]


def cli_argv(prefix: list[str], option: str | None, value: str) -> list[str]:
    """The command line of one case: ``prefix``, then ``option value`` (or ``value`` alone, when
    there is no option and it is not empty)."""
    argv = list(prefix)
    if option is not None:
        argv += [option, value]
    elif value != "":
        argv.append(value)
    return argv


def _cli_files(fx: Fixtures) -> dict[str, str]:
    """The paths the placeholders of :data:`CLI_OPTIONS` stand for (all but OUT and PNG, which
    are fresh per case), made once per campaign."""
    def build() -> dict[str, str]:
        inputs = fx.root / "cli-inputs"
        inputs.mkdir(exist_ok=True)
        (inputs / "bad.png").write_bytes(b"this is not an image")
        (inputs / "bad.json").write_text("{not json")
        (inputs / "list.json").write_text("[1, 2]")
        return {"RUN": str(fx.classifier_run()), "SIDE": str(fx.side_checkpoint()), "VSC": str(fx.vsc_run()), "IMG": str(fx.image_file(1, 8)),
                "BAD": str(inputs / "bad.png"), "MISSING": str(inputs / "missing"), "JSON_BAD": str(inputs / "bad.json"),
                "JSON_LIST": str(inputs / "list.json")}

    return fx.once("cli-files", build)


def run_cli(argv: list[str], subprocess_: bool = False, timeout: float = 120) -> tuple[int, str, str]:
    """Run ``sparsex argv`` in-process (through :func:`sparsex.cli.main`) or as ``python -m sparsex``;
    returns ``(exit status, stdout, stderr)``."""
    if subprocess_:
        env = {**os.environ, "OMP_NUM_THREADS": os.environ.get("OMP_NUM_THREADS", "1"), "COLUMNS": "200"}
        done = subprocess.run([sys.executable, "-m", "sparsex", *argv], capture_output=True, text=True, timeout=timeout,
                              env=env)
        return done.returncode, done.stdout, done.stderr
    out, err = io.StringIO(), io.StringIO()
    code = 0
    with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
        try:
            cli_main(argv)
        except SystemExit as e:
            code = e.code if isinstance(e.code, int) else (0 if e.code is None else 1)
    return code, out.getvalue(), err.getvalue()


class CLIFailure(SparsexError):
    """Stands for a CLI run that failed as it should (one error line, non-zero exit, no output)."""


def check_cli(campaign: Campaign, fx: Fixtures, case: tuple[int, str, bool]) -> None:
    """Run one nonsense command line: it must exit non-zero with one ``error:`` line naming the
    option, no traceback, and leave no output behind."""
    index, value, use_subprocess = case
    prefix, option, _, word = CLI_OPTIONS[index]
    files = _cli_files(fx)
    parent = fx.fresh("cli-out")
    parent.mkdir()
    places = {**files, "OUT": str(parent / "out"), "PNG": str(parent / "preview.png")}
    argv = [places.get(a, a) for a in cli_argv(prefix, option, places.get(value, value))]
    shown = " ".join(a.replace(str(fx.root), "<tmp>") for a in argv)

    def command() -> None:
        code, out, err = run_cli(argv, use_subprocess)
        lines = [line for line in err.splitlines() if line.strip()]
        left = sorted(p.name for p in parent.iterdir())
        if "Traceback" in out + err:
            raise AssertionError(f"traceback: {first_line(err.split('Traceback')[-1], 300)}")
        if code == 0:
            raise AssertionError(f"exit status 0 (accepted the nonsense value); stdout {first_line(out)!r}")
        if len(lines) != 1 or not lines[0].startswith("error: "):
            raise AssertionError(f"exit status {code} but stderr is not one error line: {err[:300]!r}")
        if left:
            raise AssertionError(f"left output behind: {left}")
        raise CLIFailure(lines[0][len("error: "):])

    key = value.partition("=")[0] if "=" in value and option in ("--set", "--data-options") else None
    words = [key.rpartition(".")[2]] if key else [w for alt in word.split("|")  # "a|b": either names the problem
                                                   for w in (alt, alt.replace("_", "-"), alt.replace("-", "_"))]
    if value and value not in places and key is None:
        words.append(value)  # naming the bad value names the problem too
    campaign.run("cli", f"sparsex {shown}{' (subprocess)' if use_subprocess else ''}", command, expect=words)
    shutil.rmtree(parent, ignore_errors=True)


@st.composite
def cli_cases(draw: Callable) -> tuple[int, str, bool]:
    """``(index into CLI_OPTIONS, nonsense value, run as a subprocess)``."""
    index = draw(st.integers(0, len(CLI_OPTIONS) - 1))
    return index, draw(st.sampled_from(CLI_OPTIONS[index][2])), False


def fixed_cli_cases() -> list[tuple[int, str, bool]]:
    """The first nonsense value of every option, and two runs of ``python -m sparsex``."""
    cases = [(index, values[0], False) for index, (_, _, values, _) in enumerate(CLI_OPTIONS)]
    cases += [(0, "-1", True), (len(CLI_OPTIONS) - 3, "bogus", True)]
    return cases


AREA = Area("cli", cli_cases, fixed_cli_cases, check_cli, test_examples=40)
