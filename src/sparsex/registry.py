"""A small name -> factory registry shared by datasets, backbones and (later) models.

Adding an entry is a decorator::

    @DATASETS.register("digits", description="scikit-learn's bundled 8x8 digits")
    def create_digits(split="train", root=None, **cfg): ...
"""

from __future__ import annotations

import difflib
from dataclasses import dataclass
from typing import Any, Callable, Generic, TypeVar

from .errors import UnknownNameError

F = TypeVar("F", bound=Callable[..., Any])


@dataclass(frozen=True)
class Entry:
    name: str
    factory: Callable[..., Any]
    description: str


class Registry(Generic[F]):
    """Maps names to factories; unknown names raise an error listing the valid ones."""

    def __init__(self, kind: str) -> None:
        self.kind = kind
        self._entries: dict[str, Entry] = {}
        self._aliases: dict[str, str] = {}

    def register(self, name: str, description: str = "", aliases: tuple[str, ...] = ()) -> Callable[[F], F]:
        """Register a factory under ``name`` (and short ``aliases`` that resolve to it, e.g. "ig")."""
        def decorator(factory: F) -> F:
            for key in (name, *aliases):
                if key in self._entries or key in self._aliases:
                    raise ValueError(f"{self.kind} {key!r} is registered twice")
            self._entries[name] = Entry(name, factory, description)
            self._aliases.update({alias: name for alias in aliases})
            return factory

        return decorator

    def names(self) -> list[str]:
        return sorted(self._entries)

    def entries(self) -> list[Entry]:
        return [self._entries[n] for n in self.names()]

    def get(self, name: str) -> Entry:
        """The entry of ``name`` (or of the name an alias stands for)."""
        try:
            return self._entries[self._aliases.get(name, name)]
        except KeyError:
            close = difflib.get_close_matches(name, self.names(), n=1)
            hint = f" (did you mean {close[0]!r}?)" if close else ""
            raise UnknownNameError(
                f"unknown {self.kind} {name!r}{hint}; valid names: {', '.join(self.names())}"
            ) from None

    def create(self, name: str, *args: Any, **kwargs: Any) -> Any:
        return self.get(name).factory(*args, **kwargs)

    def __contains__(self, name: object) -> bool:
        return name in self._entries or name in self._aliases
