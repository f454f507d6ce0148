"""User-facing errors.

Every problem caused by the user's input (a bad name, a bad file, a bad tensor) is raised as a
:class:`SparsexError` subclass whose message is one line that names the problem. The CLI prints
that line and exits with status 2 instead of showing a traceback.
"""

from __future__ import annotations


class SparsexError(Exception):
    """Base class of every error that is the user's to fix; the message is a single line."""


class UnknownNameError(SparsexError, KeyError):
    """A registry name (dataset, backbone, model) that does not exist."""

    def __str__(self) -> str:  # KeyError would quote the message
        return str(self.args[0])


class DataError(SparsexError, ValueError):
    """A dataset file or folder that is missing, truncated or corrupt."""


class MissingSplitError(DataError):
    """A split (train, val, test) that the dataset does not have."""


class InputError(SparsexError, ValueError):
    """A tensor or value with the wrong shape, dtype or content (NaN/Inf)."""


class CheckpointError(SparsexError, ValueError):
    """A checkpoint or weight file that cannot be loaded as asked."""


class OutputExistsError(SparsexError, FileExistsError):
    """An output folder that already exists and was not allowed to be overwritten."""
