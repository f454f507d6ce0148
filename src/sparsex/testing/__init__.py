"""Tools for testing sparsex itself (they need the ``dev`` extra: ``pip install -e ".[dev]"``).

- :mod:`sparsex.testing.badinput`: the bad-input campaign, hypothesis strategies of malformed
  inputs for every public entry point and the harness that classifies each outcome.
"""
