"""File-system helpers: atomic output folders, JSON, hashing.

An output folder is built under a hidden temporary sibling and renamed into place only when
everything in it is written, so an interrupted or failing run never leaves a half-written folder.

Temporary siblings are named ``.<name>.tmp-<host>-<pid>-<random>`` (``.old-`` for the folder being
replaced), ``<host>`` a short hash of the host name. A process killed outright (SIGKILL, power
loss) cannot remove its own; the next atomic write of the same target, and
:func:`remove_stale_temps`, remove those whose process on this host is gone, never those of a
live writer (another rank, another host on a shared file system).

Test hook: with the environment variable ``SPARSEX_TEST_KILL_AT`` set to a file or folder name
(a glob, matched against the target's name), the process SIGKILLs itself after the atomic writer
has finished the temporary copy of that target and before it renames it into place: a
deterministic "killed in the middle of a write" for ``tests/test_kill_resume.py``. Unset, it
costs one dictionary look-up.
"""

from __future__ import annotations

import contextlib
import fnmatch
import hashlib
import json
import os
import re
import shutil
import signal
import socket
import tempfile
from pathlib import Path
from typing import Any, Iterator

from .errors import DataError, OutputExistsError


def check_output_dir(path: str | os.PathLike, overwrite: bool = False) -> Path:
    """Refuse an existing, non-empty output folder unless ``overwrite``; return the path."""
    path = Path(path)
    if path.exists() and not path.is_dir():
        raise OutputExistsError(f"output path {path} exists and is not a folder")
    if path.is_dir() and any(path.iterdir()) and not overwrite:
        raise OutputExistsError(f"output folder {path} already exists and is not empty; pass --overwrite to replace it")
    return path


KILL_AT_ENV = "SPARSEX_TEST_KILL_AT"
_HOST = hashlib.sha256(socket.gethostname().encode()).hexdigest()[:8]
_TEMP_NAME = re.compile(r"^\.(?P<target>.+)\.(?:tmp|old)-(?P<host>[0-9a-f]{8})-(?P<pid>\d+)-[^/]*$")


def _temp_prefix(name: str, kind: str = "tmp") -> str:
    """Prefix of a temporary sibling of ``name`` made by this process (see the module docstring)."""
    return f".{name}.{kind}-{_HOST}-{os.getpid()}-"


def _process_gone(pid: int) -> bool:
    """True when no process ``pid`` runs on this host (a zombie, killed but not yet reaped, counts as gone)."""
    if pid == os.getpid():
        return False
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return True
    except OSError:  # PermissionError: it exists, under another user
        return False
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return False
    return stat[stat.rfind(")") + 2:].startswith("Z")


def remove_stale_temps(folder: str | os.PathLike, name: str | None = None, recursive: bool = False) -> list[Path]:
    """Remove the temporary files and folders that atomic writers on this host left in ``folder``
    when they were killed (their process is gone); only those of target ``name`` if given; in
    sub-folders too if ``recursive``. Returns what was removed."""
    folder = Path(folder)
    removed: list[Path] = []
    try:
        entries = list(os.scandir(folder))
    except OSError:
        return removed
    for entry in entries:
        if name is not None and not recursive and not entry.name.startswith(f".{name}."):
            continue
        match = _TEMP_NAME.match(entry.name)
        if match and match["host"] == _HOST and (name is None or match["target"] == name) and _process_gone(int(match["pid"])):
            path = Path(entry.path)
            if entry.is_dir(follow_symlinks=False):
                shutil.rmtree(path, ignore_errors=True)
            else:
                with contextlib.suppress(FileNotFoundError):
                    path.unlink()
            removed.append(path)
        elif recursive and entry.is_dir(follow_symlinks=False) and not match:
            removed += remove_stale_temps(entry.path, name, recursive=True)
    return removed


def _kill_point(path: Path) -> None:
    """The ``SPARSEX_TEST_KILL_AT`` test hook (module docstring): SIGKILL this process when ``path``'s
    name matches it."""
    pattern = os.environ.get(KILL_AT_ENV)
    if pattern and fnmatch.fnmatchcase(path.name, pattern):
        os.kill(os.getpid(), getattr(signal, "SIGKILL", signal.SIGTERM))


def _umask_mode(base: int) -> int:
    """``base`` permissions less the process umask: what ``open``/``mkdir`` would give (the
    temporary files and folders of ``tempfile`` are private, 0600/0700)."""
    umask = os.umask(0)
    os.umask(umask)
    return base & ~umask


@contextlib.contextmanager
def atomic_dir(path: str | os.PathLike, overwrite: bool = False) -> Iterator[Path]:
    """Yield a temporary folder that replaces ``path`` only if the block finishes without error.

    The temporary folder lives beside ``path`` (same file system, so the final rename is atomic).
    On error it is removed and ``path`` is left as it was.
    """
    path = check_output_dir(path, overwrite)
    path.parent.mkdir(parents=True, exist_ok=True)
    remove_stale_temps(path.parent, path.name)
    tmp = Path(tempfile.mkdtemp(prefix=_temp_prefix(path.name), dir=path.parent))
    try:
        yield tmp
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    os.chmod(tmp, _umask_mode(0o777))
    _kill_point(path)
    if path.exists():
        trash = Path(tempfile.mkdtemp(prefix=_temp_prefix(path.name, "old"), dir=path.parent))
        os.replace(path, trash / path.name)
        os.replace(tmp, path)
        shutil.rmtree(trash, ignore_errors=True)
    else:
        os.replace(tmp, path)


@contextlib.contextmanager
def atomic_file(path: str | os.PathLike, mode: str = "w") -> Iterator[Any]:
    """Open a temporary file beside ``path`` and move it into place when the block succeeds."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    remove_stale_temps(path.parent, path.name)
    fd, tmp = tempfile.mkstemp(prefix=_temp_prefix(path.name), dir=path.parent)
    try:
        with os.fdopen(fd, mode) as f:
            yield f
            f.flush()
            os.fsync(f.fileno())
        os.chmod(tmp, _umask_mode(0o666))
        _kill_point(path)
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(tmp)
        raise


def read_json(path: str | os.PathLike, what: str, error: type[Exception] = DataError) -> Any:
    """Parse a JSON file; a missing, unreadable or invalid one raises ``error`` with one line naming
    ``what`` (e.g. "checkpoint config.json") and the path."""
    path = Path(path)
    try:
        return json.loads(path.read_text())
    except FileNotFoundError:
        raise error(f"{what} {path} is missing") from None
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as e:
        raise error(f"cannot read {what} {path}: not valid JSON ({e})") from None


def write_json(path: str | os.PathLike, obj: Any) -> None:
    """Write ``obj`` as indented JSON, atomically."""
    with atomic_file(path) as f:
        json.dump(obj, f, indent=2, sort_keys=False)
        f.write("\n")


def sha256_file(path: str | os.PathLike, chunk: int = 1 << 20) -> str:
    """Hex SHA-256 of a file's bytes."""
    h = hashlib.sha256()
    with open(path, "rb") as f:
        while block := f.read(chunk):
            h.update(block)
    return h.hexdigest()


def sha256_json(obj: Any) -> str:
    """Hex SHA-256 of a JSON-serialisable object (keys sorted), for cache keys."""
    return hashlib.sha256(json.dumps(obj, sort_keys=True, default=str).encode()).hexdigest()
