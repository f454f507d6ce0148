"""The package's wiring: the world imports without ``sparsex.metrics``, the protocol, intervention
and oracle names load on first use, and every exported name resolves."""

import os
import subprocess
import sys
from pathlib import Path

import pytest

import sparsex
import sparsex.partworld as partworld


def test_importing_the_world_does_not_import_the_metrics():
    code = (
        "import sys\n"
        "import sparsex.partworld as pw\n"
        "assert 'sparsex.metrics' not in sys.modules, 'importing the world imported sparsex.metrics'\n"
        "from sparsex.partworld import evaluate_parts\n"
        "assert 'sparsex.metrics' in sys.modules and evaluate_parts.__module__ == 'sparsex.partworld.protocols'\n"
    )
    env = {**os.environ, "PYTHONPATH": str(Path(sparsex.__file__).parents[1])}
    run = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True)
    assert run.returncode == 0, run.stderr


def test_every_exported_name_resolves():
    from sparsex.partworld import interventions, oracle, protocols

    for name in partworld.__all__:
        assert getattr(partworld, name) is not None, name
    assert partworld.evaluate_parts is protocols.evaluate_parts
    assert partworld.InterventionCache is interventions.InterventionCache
    assert partworld.PartOracle is oracle.PartOracle
    with pytest.raises(AttributeError, match="no attribute 'nothing'"):
        partworld.nothing
