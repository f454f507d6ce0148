"""Config dataclasses as tables of settings: every field (nested dataclasses included) with its
path, type, default and help, so that a command line, a JSON ``--config`` file and ``--set
KEY=VALUE`` pairs all name the same settings.

A field's help is its trailing comment in the class body::

    epochs: int = 20  # training epochs (this text is the option's --help)

A field that holds a dataclass is a group: its fields are settings too, named ``group.field``
(``weights.area``), or by their bare name when the group is declared with
``field(..., metadata={"flatten": True})`` (the trainer of an explainer flattens the explainer's
settings). Everything here reads classes; nothing builds a config (that is
:func:`sparsex.checks.from_settings`).
"""

from __future__ import annotations

import functools
import inspect
import io
import tokenize
import types
import typing
from dataclasses import MISSING, dataclass, fields, is_dataclass
from typing import Any

from .errors import SparsexError


@dataclass(frozen=True)
class Setting:
    """One leaf setting of a config dataclass.

    ``path``: field names from the outer config down (``("explainer", "weights", "area")``);
    ``name``: what a command line calls it (``weights.area``, or ``epochs`` inside a flattened
    group); ``kind``: ``int``, ``float``, ``str``, ``bool``, ``list`` (of ``item``s) or ``dict``
    (only through ``--set``/``--config``); ``optional``: None is a valid value; ``default``: the
    field's default; ``help``: its comment.
    """

    path: tuple[str, ...]
    name: str
    kind: type
    item: type | None
    optional: bool
    default: Any
    help: str


@functools.cache
def field_comments(cls: type) -> dict[str, str]:
    """``{field: trailing comment}`` of the class body of ``cls`` (its own fields, not its bases')."""
    try:
        source = inspect.getsource(cls)
    except (OSError, TypeError):  # no source (e.g. a class built at run time)
        return {}
    comments: dict[str, str] = {}
    line_name: dict[int, str] = {}
    for token in tokenize.generate_tokens(io.StringIO(source).readline):
        if token.type == tokenize.NAME and token.start[1] > 0 and token.start[0] not in line_name:
            line = token.line.lstrip()
            if line.startswith(token.string) and ":" in line and not line.startswith(("def ", "class ", "return ")):
                line_name[token.start[0]] = token.string
        elif token.type == tokenize.COMMENT and token.start[0] in line_name:
            comments[line_name[token.start[0]]] = token.string.lstrip("#: ").strip()
    return comments


def _comment(cls: type, name: str) -> str:
    for klass in cls.__mro__:
        if is_dataclass(klass) and name in field_comments(klass):
            return field_comments(klass)[name]
    return ""


def _unwrap(annotation: Any) -> tuple[Any, bool]:
    """``X | None`` -> ``(X, True)``; anything else -> ``(annotation, False)``."""
    args = typing.get_args(annotation)
    if typing.get_origin(annotation) in (typing.Union, types.UnionType) and type(None) in args:
        rest = [a for a in args if a is not type(None)]
        return (rest[0] if len(rest) == 1 else Any), True
    return annotation, False


def _kind(annotation: Any) -> tuple[type, type | None]:
    origin = typing.get_origin(annotation)
    if annotation in (int, float, str, bool):
        return annotation, None
    if origin in (list, tuple):
        args = [a for a in typing.get_args(annotation) if a is not Ellipsis]
        return list, (args[0] if args and args[0] in (int, float, str) else str)
    return dict, None


def _default(f: Any) -> Any:
    if f.default is not MISSING:
        return f.default
    if f.default_factory is not MISSING:
        return f.default_factory()
    return None


def settings_of(cls: type, _path: tuple[str, ...] = (), _prefix: tuple[str, ...] = ()) -> list[Setting]:
    """Every leaf setting of the config dataclass ``cls``, in field order (nested groups expanded
    where they stand). Two settings with the same command-line name raise :class:`SparsexError`."""
    hints = typing.get_type_hints(cls)
    out: list[Setting] = []
    for f in fields(cls):
        if not f.init:
            continue
        annotation, optional = _unwrap(hints[f.name])
        if is_dataclass(annotation):
            group = _prefix if f.metadata.get("flatten") else (*_prefix, f.name)
            out += settings_of(annotation, (*_path, f.name), group)
            continue
        kind, item = _kind(annotation)
        out.append(Setting((*_path, f.name), ".".join((*_prefix, f.name)), kind, item, optional, _default(f),
                           _comment(cls, f.name)))
    if not _path:
        seen: dict[str, Setting] = {}
        for setting in out:
            if setting.name in seen:
                raise SparsexError(f"{cls.__name__}: settings {'.'.join(seen[setting.name].path)} and "
                                   f"{'.'.join(setting.path)} would both be called {setting.name!r}")
            seen[setting.name] = setting
    return out


def nest(cls: type, values: dict[str, Any]) -> dict[str, Any]:
    """Settings named as on a command line (``{"epochs": 3, "weights.area": 2}``; full dotted
    paths such as ``explainer.epochs`` work too, and a group given as a dict, ``explainer={...}``
    or ``weights={"area": 2}``) as the nested dict that ``cls`` is built from
    (``{"explainer": {"epochs": 3, "weights": {"area": 2}}}``). A dict value names a group where a
    group has that name (a setting and a group may share one: ``weights="W.safetensors"`` is the
    setting). An unknown name raises one line listing the valid ones."""
    table = settings_of(cls)
    by_name = {s.name: s.path for s in table} | {".".join(s.path): s.path for s in table}
    groups = {s.path[:i] for s in table for i in range(1, len(s.path))}
    group_names = {s.name.rsplit(".", 1)[0]: s.path[:-1] for s in table if "." in s.name}
    out: dict[str, Any] = {}
    for name, value in values.items():
        dotted = tuple(name.split("."))
        if isinstance(value, dict) and (name in group_names or dotted in groups):
            path = group_names.get(name, dotted)
        else:
            path = by_name.get(name) or (dotted if dotted in groups else None)
        if path is None:
            raise SparsexError(f"unknown {getattr(cls, 'what', cls.__name__)} setting {name!r}; valid: "
                               f"{', '.join(s.name for s in table)}")
        merge(out, _wrap(path, value))
    return out


def _wrap(path: tuple[str, ...], value: Any) -> dict[str, Any]:
    for key in reversed(path):
        value = {key: value}
    return value


def merge(into: dict[str, Any], update: dict[str, Any]) -> dict[str, Any]:
    """Deep-merge ``update`` into ``into`` (dicts merged key by key, anything else replaced); returns ``into``."""
    for key, value in update.items():
        if isinstance(value, dict) and isinstance(into.get(key), dict):
            merge(into[key], value)
        else:
            into[key] = value
    return into
