"""The bad-input campaign: malformed inputs for every public entry point of sparsex, and a harness
that classifies what each one does.

Every case must end in one of two ways:

- a :class:`~sparsex.errors.SparsexError` whose message is one line that names the problem (for
  the CLI: exit status != 0, one ``error: ...`` line on stderr, no traceback, and no output
  folder or file left behind), or
- a correct result (checked per case: e.g. the array an IDX file holds, finite attributions of
  the input's shape, the same metric value as on a contiguous copy of the input).

Anything else is a *failure*: another exception (a traceback from inside torch, numpy, PIL, ...),
a message of several lines or without the words that name the problem, bad input accepted
silently, a wrong result, or a hang (each case runs under a time limit).

The cases come from `hypothesis <https://hypothesis.readthedocs.io>`_ strategies, one property per
area (:data:`AREAS`, one module each), plus a few fixed cases per area that always run:

- :mod:`.data`: IDX files (truncated, empty, wrong magic, unknown dtype, huge header dims, extra
  bytes, gzip-compressed and corrupt gzip; valid ones must read back exactly), the Fashion-MNIST
  loader on bad file pairs, non-image files for ``read_image_tensor`` and the image-folder, CUB
  and part-world loaders, and nonsense dataset settings;
- :mod:`.checkpoints`: corrupted safetensors (with and without a matching recorded hash), broken,
  wrong-family and future-format ``config.json`` files, through ``load_checkpoint``,
  ``load_model``, ``load_classifier`` and ``load_image_classifier``;
- :mod:`.cli`: nonsense option values for every ``sparsex`` command (run in-process through
  :func:`sparsex.cli.main`; the fixed cases also run ``python -m sparsex``);
- :mod:`.explainers`, :mod:`.metrics`, :mod:`.losses`: tensors with NaN/Inf, wrong dtypes, wrong
  shapes, non-tensors, non-contiguous views, and nonsense targets and settings, for every
  registered explainer and every metric and loss (the machinery they share is in :mod:`.tensors`).

Every property runs derandomized (the same cases on every run) with no example database.
:func:`.harness.run_area` runs one :class:`~.harness.Area` into a :class:`~.harness.Campaign`,
which counts cases and failures; :class:`~.fixtures.Fixtures` holds the scratch folder and tiny
models the cases share. ``tests/test_bad_inputs.py`` runs every area with its ``test_examples``
and asserts that no case failed (listing those that did); ``benchmarks/bad_inputs.py`` runs more
examples and reports the counts. A strict campaign raises at the first failure instead, which
hypothesis then shrinks to a minimal case (for debugging one property).

This package lives in the repository's ``tests`` folder (it needs hypothesis, a ``dev`` extra):
pytest puts that folder on ``sys.path`` (``pythonpath`` in ``pyproject.toml``), the benchmark
does so itself.
"""

from __future__ import annotations

from . import checkpoints, cli, data, explainers, losses, metrics
from .fixtures import Fixtures
from .harness import Area, Campaign, run_area

#: The areas of the campaign, in the order they run.
AREAS: tuple[Area, ...] = (data.AREA, checkpoints.AREA, cli.AREA, explainers.AREA, metrics.AREA, losses.AREA)

__all__ = ["AREAS", "Area", "Campaign", "Fixtures", "run_area"]
