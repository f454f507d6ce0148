"""Importing sparsex and its figures chooses no matplotlib backend (a notebook keeps its inline plots)."""

import os
import subprocess
import sys

CHECK = """
import importlib, pkgutil
import matplotlib
before = matplotlib.rcParams._get("backend")  # reading rcParams["backend"] would resolve (choose) it
import sparsex, sparsex.viz
modules = [m.name for m in pkgutil.iter_modules(sparsex.viz.__path__, "sparsex.viz.")]
for name in modules:
    importlib.import_module(name)
after = matplotlib.rcParams._get("backend")
assert after is before, f"importing sparsex set the backend: {before!r} -> {after!r}"
print(len(modules))
"""


def test_importing_sparsex_and_every_viz_module_leaves_the_backend_alone():
    env = {k: v for k, v in os.environ.items() if k != "MPLBACKEND"}
    done = subprocess.run([sys.executable, "-c", CHECK], env=env, capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr[-2000:]
    assert int(done.stdout) >= 5  # circuit, latents, preview, prototypes, report
