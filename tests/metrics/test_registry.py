"""The metric registry: one declared direction per score key, and every Metric class takes its own
from there."""

import importlib
import pkgutil

import pytest

import sparsex
from sparsex.errors import InputError
from sparsex.metrics import CATEGORIES, list_metrics, metric_info
from sparsex.metrics.base import Metric


def _all_subclasses(cls):
    for sub in cls.__subclasses__():
        yield sub
        yield from _all_subclasses(sub)


@pytest.mark.parametrize("name, direction, category", [
    ("deletion_auc", "lower", "faithfulness"),
    ("insertion_auc", "higher", "faithfulness"),
    ("global_size", "lower", "sparsity"),
    ("local_size", "lower", "sparsity"),
    ("completeness_tau", None, "setting"),
    ("accuracy", "higher", "accuracy"),
    ("bi", "higher", "part protocols"),
    ("correctness_skipped", None, "count"),
    ("explain_seconds", None, "cost"),
    ("consistency", "higher", "prototype quality"),
])
def test_directions_by_hand(name, direction, category):
    info = metric_info(name)
    assert (info.name, info.direction, info.category) == (name, direction, category)
    assert info.higher_is_better == (None if direction is None else direction == "higher")
    assert info.description and "\n" not in info.description and info.label


def test_every_metric_class_is_registered_with_its_direction():
    # import every module of the package (not the CLI entry point), so that every Metric subclass exists
    for module in pkgutil.walk_packages(sparsex.__path__, "sparsex."):
        if module.name != "sparsex.__main__":
            importlib.import_module(module.name)
    classes = list(_all_subclasses(Metric))
    names = {cls.name for cls in classes}
    assert {"deletion_auc", "insertion_auc", "global_size", "consistency", "active_dims", "parts"} <= names
    registered = {info.name for info in list_metrics()}
    for cls in classes:
        assert cls.name in registered, cls
        assert cls.higher_is_better == (metric_info(cls.name).direction == "higher"), cls


def test_a_metric_class_cannot_state_another_direction_or_an_unregistered_name():
    with pytest.raises(TypeError, match="registry says lower is better for 'deletion_auc'"):
        type("Wrong", (Metric,), {"name": "deletion_auc", "higher_is_better": True})
    with pytest.raises(TypeError, match="got 'no_such_metric'"):
        type("Unknown", (Metric,), {"name": "no_such_metric"})
    with pytest.raises(TypeError, match="got 'images'"):  # a count has no direction
        type("Count", (Metric,), {"name": "images"})
    agreeing = type("Agreeing", (Metric,), {"name": "deletion_auc", "higher_is_better": False})
    assert agreeing.higher_is_better is False


def test_unknown_keys_have_no_direction():
    info = metric_info("my_own_score")
    assert info.direction is None and info.higher_is_better is None and info.category == "unregistered"
    assert info.label == "my_own_score"
    with pytest.raises(InputError, match="a metric name must be a string, got int"):
        metric_info(3)


def test_list_metrics_is_in_category_order_without_duplicates():
    infos = list_metrics()
    names = [info.name for info in infos]
    assert len(names) == len(set(names))
    assert [CATEGORIES.index(info.category) for info in infos] == sorted(CATEGORIES.index(info.category) for info in infos)
    assert names[:2] == ["accuracy", "test_accuracy"]
    assert [info.name for info in list_metrics("faithfulness")][:2] == ["deletion_auc", "insertion_auc"]
    assert all(info.category == "count" for info in list_metrics("count"))
    with pytest.raises(InputError, match="unknown metric category 'speed'; valid: accuracy, "):
        list_metrics("speed")
