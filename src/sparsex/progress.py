"""Progress bars for long work that suit a terminal and a log file alike.

:func:`progress_bar` is :class:`tqdm.tqdm` where the bar goes to a terminal. Where it goes to a
file or a pipe (a log of a batch job, CI), a redrawn bar would write one carriage-return
"line" per update into it; there it prints a plain line instead, at most every
:data:`LOG_INTERVAL_S` seconds, and one at the end, so a 10-minute run adds a few dozen lines
to a log, not thousands.
"""

from __future__ import annotations

import sys
from typing import Any, Iterable

from tqdm.auto import tqdm

#: seconds between two progress lines when the output is not a terminal
LOG_INTERVAL_S = 30.0


class _LogLines(tqdm):
    """tqdm that writes whole lines (no carriage returns), for output that is not a terminal."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        kwargs.setdefault("mininterval", LOG_INTERVAL_S)
        kwargs["maxinterval"] = max(kwargs.get("maxinterval", 0), kwargs["mininterval"])
        kwargs["dynamic_ncols"] = False
        kwargs["ncols"] = 80
        kwargs["ascii"] = True
        super().__init__(*args, **kwargs)

    def display(self, msg: str | None = None, pos: int | None = None) -> bool:
        if self.disable:
            return True
        self.fp.write((msg or self.__str__()).strip() + "\n")
        self.fp.flush()
        return True

    def close(self) -> None:
        if self.disable:
            return
        if not self.leave and self.n and self.n != self.last_print_n:
            self.display()  # the final count, even for bars that a terminal would erase
        super().close()


def progress_bar(iterable: Iterable[Any] | None = None, **kwargs: Any) -> tqdm:
    """A progress bar (``tqdm``'s arguments): a live bar on a terminal, periodic plain lines
    otherwise (see the module docstring)."""
    stream = kwargs.get("file") or sys.stderr
    is_terminal = getattr(stream, "isatty", lambda: False)()
    return (tqdm if is_terminal else _LogLines)(iterable, **kwargs)
