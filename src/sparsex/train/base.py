"""The training methods behind one registry: a method is a config dataclass and a train function.

Adding a method is a module with a :class:`TrainConfig` subclass and one decorated function::

    @dataclass
    class MyConfig(TrainConfig):
        what = "my method"          # its name in error messages
        epochs: int = 10            # training epochs (a trailing comment is the option's --help)

    @register_trainer("my-method", MyConfig, description="what it trains")
    def train_my_method(config: MyConfig, out, overwrite=False, progress=True) -> dict: ...

``sparsex train my-method --epochs 3 --out RUN`` then exists, with one option per config field
(:mod:`sparsex.cli` builds them from the dataclass), and so does
``sparsex.train_model("my-method", "RUN", epochs=3)``.
"""

from __future__ import annotations

import os
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any, Callable, ClassVar, TypeVar

from ..checks import from_settings
from ..models.specs import is_spec
from ..registry import Registry
from ..settings import nest

C = TypeVar("C", bound="TrainConfig")
TrainFn = Callable[..., dict[str, Any]]


@dataclass
class TrainConfig:
    """Base of every trainer's settings: built from a flat or nested dict of setting names (unknown
    names raise one line listing the valid ones), stored as JSON in the run folder.

    Settings named in ``path_settings`` that hold a path are stored absolute, so that a run folder
    (its config.json, its checkpoints' configs) means the same from any working directory.
    """

    what: ClassVar[str] = "training"  # the method's name in error messages
    path_settings: ClassVar[tuple[str, ...]] = ("root", "weights", "cache_dir", "model")

    def __post_init__(self) -> None:
        for name in self.path_settings:
            value = getattr(self, name, None)
            if isinstance(value, (str, os.PathLike)) and value and not is_spec(value):
                setattr(self, name, str(Path(value).expanduser().resolve()))

    @classmethod
    def from_dict(cls: type[C], settings: dict[str, Any]) -> C:
        """Build a config from keyword settings; unknown names raise :class:`~sparsex.errors.SparsexError`."""
        return from_settings(cls, settings, cls.what)

    def to_dict(self) -> dict[str, Any]:
        """The settings as plain JSON types (tuples as lists)."""
        return {k: list(v) if isinstance(v, tuple) else v for k, v in asdict(self).items()}


@dataclass(frozen=True)
class Trainer:
    """A registered training method: ``train(config, out, overwrite=False, progress=True)``
    runs (or resumes) it in the run folder ``out`` and returns the final metrics."""

    name: str
    config: type[TrainConfig]
    train: TrainFn
    description: str

    def __call__(self, out: str | os.PathLike, overwrite: bool = False, progress: bool = True,
                 **settings: Any) -> dict[str, Any]:
        """Train with ``settings`` named as on the command line (:func:`sparsex.settings.nest`:
        ``epochs=3``, ``weights={"area": 2}``) or nested (``explainer={"epochs": 3}``)."""
        return self.train(self.config.from_dict(nest(self.config, settings)), out, overwrite=overwrite, progress=progress)


TRAINERS: Registry[Trainer] = Registry("training method")


def register_trainer(name: str, config: type[TrainConfig], description: str) -> Callable[[TrainFn], TrainFn]:
    """Register ``train(config, out, overwrite=False, progress=True) -> metrics`` as method ``name``."""

    def decorator(train: TrainFn) -> TrainFn:
        TRAINERS.register(name, description)(Trainer(name, config, train, description))
        return train

    return decorator


def train_model(method: str, out: str | os.PathLike, *, overwrite: bool = False, progress: bool = True,
                **settings: Any) -> dict[str, Any]:
    """Train (or resume) ``method`` with ``settings`` in the run folder ``out``; return its final
    metrics, e.g. ``train_model("side", "runs/side", prune_k=5)``. See ``list_trainers()``."""
    return TRAINERS.create(method, out, overwrite=overwrite, progress=progress, **settings)


def list_trainers() -> list[str]:
    """Names of all registered training methods."""
    return TRAINERS.names()
