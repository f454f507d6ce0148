"""The ``sparsex`` command. Thin: it parses options and calls the library.

Errors that are the user's to fix (:class:`~sparsex.errors.SparsexError`) are printed as one
``error: ...`` line with exit status 2; anything else is a bug and keeps its traceback.
"""

from __future__ import annotations

import inspect
import json
import os
import re
import sys
import warnings
from contextlib import contextmanager
from pathlib import Path
from typing import Any, Iterator, Optional

import typer
from rich.console import Console
from rich.markup import escape
from rich.table import Table

from .checks import check_number
from .distributed import check_device
from .errors import SparsexError
from .inference import DEFAULT_BATCH
from .io import check_output_dir, read_json
from .settings import Setting, merge, nest, settings_of

try:  # typer >= 0.20 vendors click
    from typer._click import exceptions as click_exceptions
except ImportError:  # pragma: no cover - older typer uses click itself
    from click import exceptions as click_exceptions

app = typer.Typer(help="Sparse, faithful explanations of image classifiers.", no_args_is_help=True,
                  add_completion=False, pretty_exceptions_enable=False)
data_app = typer.Typer(help="Make and look at datasets.", no_args_is_help=True)
features_app = typer.Typer(help="Cache frozen-backbone features.", no_args_is_help=True)
train_app = typer.Typer(help="Train a model; runs checkpoint every stage and resume.", no_args_is_help=True)
explain_app = typer.Typer(help="Explain a trained model's prediction for one image.", no_args_is_help=True)
analyze_app = typer.Typer(help="Analyse a trained model: figures, tables and metrics of what it learnt.", no_args_is_help=True)
app.add_typer(data_app, name="data")
app.add_typer(features_app, name="features")
app.add_typer(train_app, name="train")
app.add_typer(explain_app, name="explain")
app.add_typer(analyze_app, name="analyze")

console = Console(soft_wrap=True)


@contextmanager
def printed_warnings() -> Iterator[None]:
    """Warnings raised inside, printed afterwards as one yellow ``warning:`` line each."""
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        yield
    for warning in caught:
        console.print(f"[yellow]warning:[/] {escape(str(warning.message))}")


def _print_version(value: bool) -> None:
    if value:
        from . import __version__

        console.print(f"sparsex {__version__}")
        raise typer.Exit()


@app.callback()
def _options(version: bool = typer.Option(False, "--version", callback=_print_version, is_eager=True,
                                          help="Print the version and exit.")) -> None:
    """Sparse, faithful explanations of image classifiers."""
QUIET = typer.Option(False, "--quiet", "-q", help="No progress bars.")
DEVICE = typer.Option("cpu", "--device", help="Torch device: cpu, cuda or cuda:N.")
OVERWRITE = typer.Option(False, "--overwrite", help="Replace an existing output folder.")
IMAGE = typer.Option(..., "--image", help="Image file to explain.")
DATA_OPTIONS = typer.Option(None, "--data-options", help="Dataset setting KEY=VALUE (repeatable).", metavar="KEY=VALUE")


def parse_options(pairs: list[str] | None, what: str = "--data-options") -> dict[str, Any]:
    """``["image_size=64", "limit=10"]`` -> ``{"image_size": 64, "limit": 10}`` (values parsed as JSON if they can be)."""
    options: dict[str, Any] = {}
    for pair in pairs or []:
        key, sep, value = pair.partition("=")
        if not sep or not key:
            raise SparsexError(f"{what} takes KEY=VALUE, got {pair!r}")
        try:
            options[key] = json.loads(value)
        except json.JSONDecodeError:
            options[key] = value
    return options


def comma_list(values: list[str], option: str) -> list[str]:
    """``["a,b", "c"]`` -> ``["a", "b", "c"]`` (names of a repeatable, comma-separated option);
    an option given with no name at all (``--layers ,``) is an error."""
    names = [name.strip() for item in values for name in item.split(",") if name.strip()]
    if not names:
        raise SparsexError(f"{option} takes names separated by commas, got {','.join(values)!r}")
    return names


@app.command("datasets")
def datasets_command() -> None:
    """List the datasets sparsex can load."""
    from .data import DATASETS

    _print_registry(DATASETS, "datasets (sparsex.create_dataset)")


@app.command("models")
def models_command() -> None:
    """List the registered model heads (what sparsex train builds) and the training methods."""
    from .models import MODELS
    from .train import TRAINERS

    _print_registry(MODELS, "models (sparsex.create_model)")
    _print_registry(TRAINERS, "training methods (sparsex train METHOD, sparsex.train_model)")


@app.command("explainers")
def explainers_command() -> None:
    """List the registered explainers (sparsex evaluate --explainer, sparsex.create_explainer)."""
    from .explainers import EXPLAINERS

    _print_registry(EXPLAINERS, "explainers (sparsex.create_explainer)")


def _print_registry(registry: Any, title: str) -> None:
    table = Table("name", "description", title=title)
    for entry in registry.entries():
        table.add_row(escape(entry.name), escape(entry.description))
    console.print(table)


@app.command("backbones")
def backbones_command() -> None:
    """List the registered backbones (any timm architecture name works too)."""
    from .backbones import BACKBONES

    table = Table("name", "description", title="backbones (sparsex.create_backbone)")
    for entry in BACKBONES.entries():
        table.add_row(escape(entry.name), escape(entry.description))
    table.add_row(escape("<any timm name>"), "e.g. resnet18, vit_small_patch14_dinov2: random weights, or --weights PATH")
    console.print(table)


@data_app.command("make")
def data_make(
    name: str = typer.Argument(..., help="Dataset to generate (only 'parts' is procedural)."),
    out: Path = typer.Option(..., "--out", "-o", help="Output folder (must not exist unless --overwrite)."),
    seed: int = typer.Option(0, help="Generator seed: same seed, same bytes."),
    image_size: int = typer.Option(224, help="Image side in pixels."),
    train_size: Optional[int] = typer.Option(None, help="Images in the train split (default 2400, or the preset's)."),
    val_size: Optional[int] = typer.Option(None, help="Images in the val split (default 480, or the preset's)."),
    test_size: Optional[int] = typer.Option(None, help="Images in the test split (default 480, or the preset's)."),
    max_clutter: Optional[int] = typer.Option(None, help="At most this many background objects per image (default 3, or the preset's)."),
    part_dropout: float = typer.Option(0.0, help="Train split: probability of removing a random subset of parts."),
    preset: Optional[str] = typer.Option(None, help="Named part-world settings, e.g. parts-fine (docs/partworld.md)."),
    data_options: Optional[list[str]] = DATA_OPTIONS,
    overwrite: bool = typer.Option(False, "--overwrite", help="Replace an existing output folder."),
    quiet: bool = QUIET,
) -> None:
    """Write a procedural dataset as an image-folder tree with masks and meta.json."""
    from .partworld import PartWorldConfig, write_parts_tree

    if name != "parts":
        raise SparsexError(f"only the procedural dataset 'parts' can be made, not {name!r}")
    given = dict(seed=seed, image_size=image_size, train_size=train_size, val_size=val_size, test_size=test_size,
                 max_clutter=max_clutter, part_dropout=part_dropout, preset=preset)
    config = PartWorldConfig.from_dict({**{k: v for k, v in given.items() if v is not None}, **parse_options(data_options)})
    path = write_parts_tree(out, config, overwrite=overwrite, progress=not quiet)
    console.print(f"wrote {config.train_size + config.val_size + config.test_size} images with masks to {path}")


@data_app.command("preview")
def data_preview(
    name: str = typer.Argument(..., help="Dataset name (see `sparsex datasets`)."),
    out: Path = typer.Option(..., "--out", "-o", help="PNG file to write."),
    split: str = typer.Option("train", help="Split to sample from."),
    root: Optional[Path] = typer.Option(None, help="Local folder with the dataset's files."),
    n: int = typer.Option(16, help="Number of samples."),
    seed: int = typer.Option(0, min=0, help="Which samples (random, from this seed)."),
    data_options: Optional[list[str]] = DATA_OPTIONS,
) -> None:
    """Draw a grid of samples, with part masks where the dataset has them."""
    from .data import create_dataset
    from .viz import preview_grid

    dataset = create_dataset(name, split=split, root=root, **parse_options(data_options))
    console.print(f"wrote {preview_grid(dataset, out, n=n, seed=seed)}")


@features_app.command("extract")
def features_extract(
    data: str = typer.Option(..., "--data", help="Dataset name."),
    backbone: str = typer.Option(..., "--backbone", help="Backbone name (see `sparsex backbones`)."),
    out: Path = typer.Option(..., "--out", "-o", help="Cache folder (entries are reused across runs)."),
    split: Optional[list[str]] = typer.Option(None, "--split", help="Split(s) to extract (default: train and test)."),
    root: Optional[Path] = typer.Option(None, help="Local folder with the dataset's files."),
    data_options: Optional[list[str]] = DATA_OPTIONS,
    weights: Optional[Path] = typer.Option(None, help="Local weight file for the backbone."),
    pretrained: bool = typer.Option(True, "--pretrained/--no-pretrained", help="Load the backbone's bundled or given weights (--no-pretrained: random)."),
    layer: Optional[int] = typer.Option(None, help="Feature layer index (default: final features)."),
    image_size: Optional[int] = typer.Option(None, min=1, help="Backbone input side (default: the model's own)."),
    batch_size: int = typer.Option(DEFAULT_BATCH, help="Images per forward pass."),
    dtype: str = typer.Option("float32", help="Stored dtype: float32, float16 or bfloat16."),
    device: str = typer.Option("cpu", help="Torch device, e.g. cpu or cuda."),
    num_workers: int = typer.Option(0, min=0, help="DataLoader worker processes."),
    quiet: bool = QUIET,
) -> None:
    """Run a frozen backbone over dataset splits once and cache the features on disk."""
    from .backbones import create_backbone
    from .data import create_dataset
    from .features import extract_features

    check_device(device)
    model = create_backbone(backbone, pretrained=pretrained, weights=weights, layer=layer, image_size=image_size)
    options = parse_options(data_options)
    for name in split or ["train", "test"]:
        dataset = create_dataset(data, split=name, root=root, **options)
        cache, hit = extract_features(dataset, model, out, batch_size=batch_size, dtype=dtype, device=device,
                                      num_workers=num_workers, progress=not quiet)
        state = "cache hit" if hit else "extracted"
        console.print(f"{state}: {data}/{name} {tuple(cache.features.shape)} -> {cache.path}")


def read_config_file(path: Path | None) -> dict[str, Any]:
    """Settings from a JSON ``--config`` file (an object of setting names to values)."""
    if path is None:
        return {}
    settings = read_json(path, "config file", SparsexError)
    if not isinstance(settings, dict):
        raise SparsexError(f"config file {path} must hold a JSON object of settings")
    return settings


def _cell(value: Any) -> str:
    """A metric as a table cell: floats to 4 significant digits, a list of records (e.g. the
    explainer's calibration table) one line per record."""
    if isinstance(value, float):
        return f"{value:.4g}"
    if isinstance(value, list) and value and all(isinstance(row, dict) for row in value):
        return "\n".join(", ".join(f"{escape(str(k))} {_cell(v)}" for k, v in row.items()) for row in value)
    return escape(str(value))


def _report(title: str, metrics: dict[str, Any], out: Path) -> None:
    table = Table("metric", "value", title=f"{title}: test split, final stage")
    for key, value in metrics.items():
        table.add_row(key, _cell(value))
    console.print(table)
    console.print(f"run folder: {out} (checkpoint/, metrics.json, stages.md)")


def _setting_value(setting: Setting, value: Any) -> Any:
    """A command-line value of ``setting`` as the config takes it: comma lists split (numbers
    parsed), ``KEY=VALUE`` pairs as a dict."""
    if setting.kind is list:
        items = comma_list(value, f"--{setting.name}")
        if setting.item in (int, float):
            try:
                return [setting.item(item) for item in items]
            except ValueError:
                raise SparsexError(f"--{setting.name} takes {setting.item.__name__}s separated by commas, "
                                   f"got {','.join(value)!r}") from None
        return items
    if setting.kind is dict:
        return parse_options(value, f"--{setting.name.replace('_', '-')}")
    return value


def _setting_option(setting: Setting) -> inspect.Parameter:
    """The typer option of one config setting (default None: a value not given leaves the config's)."""
    flag = "--" + setting.name.replace("_", "-")
    default = "none" if setting.default is None else json.dumps(setting.default) if setting.kind in (list, dict) \
        else str(setting.default).lower() if setting.kind is bool else setting.default
    text = setting.help or setting.name
    text = text if "default" in text else f"{text} (default {default})"
    if setting.kind is bool:
        option, annotation = typer.Option(None, f"{flag}/--no-{flag[2:]}", help=text), Optional[bool]
    elif setting.kind in (list, dict):
        metavar = "KEY=VALUE" if setting.kind is dict else "A,B,..."
        option = typer.Option(None, flag, help=text + (" (repeatable)" if setting.kind is dict else ""), metavar=metavar)
        annotation = Optional[list[str]]
    else:
        option, annotation = typer.Option(None, flag, help=text), Optional[setting.kind]
    return inspect.Parameter(setting.name.replace(".", "__"), inspect.Parameter.KEYWORD_ONLY, default=option,
                             annotation=annotation)


def _add_train_command(trainer: Any, name: str | None = None, hidden: bool = False) -> None:
    """``sparsex train NAME``: one option per setting of the trainer's config dataclass, plus
    ``--config FILE`` (a JSON object of settings, e.g. a run's ``config.json``) and ``--set
    KEY=VALUE``; later ones win: config file, options, ``--set``."""
    settings = settings_of(trainer.config)

    def command(**options: Any) -> None:
        out, overwrite, quiet = options.pop("out"), options.pop("overwrite"), options.pop("quiet")
        given = {s.name: _setting_value(s, options[s.name.replace(".", "__")]) for s in settings
                 if options[s.name.replace(".", "__")] is not None}
        resolved = merge(merge(read_config_file(options.pop("config")), nest(trainer.config, given)),
                         nest(trainer.config, parse_options(options.pop("set_"), "--set")))
        metrics = trainer(out, overwrite=overwrite, progress=not quiet, **resolved)
        _report(trainer.name, {k: v for k, v in metrics.items() if not isinstance(v, dict)}, out)

    fixed = [
        inspect.Parameter("out", inspect.Parameter.KEYWORD_ONLY, annotation=Path, default=typer.Option(
            ..., "--out", "-o", help="Run folder; rerunning with the same settings resumes.")),
        inspect.Parameter("config", inspect.Parameter.KEYWORD_ONLY, annotation=Optional[Path], default=typer.Option(
            None, "--config", help="JSON file of settings (names as below, nested groups as objects; a run's "
                                   "config.json works).")),
        inspect.Parameter("set_", inspect.Parameter.KEYWORD_ONLY, annotation=Optional[list[str]], default=typer.Option(
            None, "--set", help="Any setting KEY=VALUE, e.g. epochs=3 or weights.area=2 (repeatable).",
            metavar="KEY=VALUE")),
        inspect.Parameter("overwrite", inspect.Parameter.KEYWORD_ONLY, annotation=bool, default=typer.Option(
            False, "--overwrite", help="Discard an existing run folder and start afresh (without it, a run with "
                                       "the same settings resumes and one with other settings is refused).")),
        inspect.Parameter("quiet", inspect.Parameter.KEYWORD_ONLY, annotation=bool, default=QUIET),
    ]
    command.__signature__ = inspect.Signature(fixed + [_setting_option(s) for s in settings])
    doc = re.sub(r":\w+:`~?([\w.]+)`", lambda m: m.group(1).rsplit(".", 1)[-1], (trainer.config.__doc__ or "").strip())
    doc = " ".join(doc.split("\n\n")[0].replace("``", "").split())
    train_app.command(name or trainer.name, help=f"Train {trainer.description}.\n\n{doc}", hidden=hidden)(command)


def _add_train_commands() -> None:
    from .train import TRAINERS

    for entry in TRAINERS.entries():
        _add_train_command(entry.factory)
    _add_train_command(TRAINERS.get("minimal-mask").factory, name="explainer", hidden=True)  # its name before 0.2


_add_train_commands()


@analyze_app.command("vsc")
def analyze_vsc_command(
    run: Path = typer.Argument(..., help="Run folder of `sparsex train vsc` (or its checkpoint/ folder)."),
    out: Optional[Path] = typer.Option(None, "--out", "-o", help="Output folder (default RUN/analysis)."),
    dims: Optional[list[str]] = typer.Option(
        None, "--dims", help="Latent dimensions to traverse, e.g. 3,17 (default: global and class-specific ones)."),
    classes: Optional[list[str]] = typer.Option(
        None, "--classes", help="Class names shown in every traversal, comma-separated (default: the classes where each "
                                "dimension is most active)."),
    steps: int = typer.Option(7, "--steps", help="Values per traversal, from -span to +span."),
    span: float = typer.Option(3.0, "--span", help="Largest absolute value a traversed dimension takes."),
    device: str = typer.Option("cpu", help="Torch device."),
    overwrite: bool = typer.Option(False, "--overwrite", help="Replace an existing output folder."),
    quiet: bool = QUIET,
) -> None:
    """Traversals, class x dimension gamma heat map, class correlation, dimension table, probe, reconstructions."""
    from .analysis.vsc import analyze_vsc

    check_device(device)
    check_number(span, "--span", 0, low_open=True)
    dim_list = None
    if dims:
        items = [d for item in dims for d in item.split(",") if d.strip()]
        try:
            dim_list = [int(d) for d in items]
        except ValueError:
            raise SparsexError(f"--dims takes latent dimension numbers like 3,17, got {','.join(dims)!r}") from None
    class_list = [c.strip() for item in classes for c in item.split(",") if c.strip()] if classes else None
    path = analyze_vsc(run, out, dims=dim_list, classes=class_list, steps=steps, span=span, overwrite=overwrite,
                       progress=not quiet, device=device)
    analysis = read_json(path / "analysis.json", "analysis")
    metrics = {k: v for k, v in analysis["metrics"].items() if isinstance(v, (int, float))}
    table = Table("metric", "value", title="VSC analysis: test split")
    for key, value in metrics.items():
        table.add_row(key, f"{value:.4g}" if isinstance(value, float) else str(value))
    console.print(table)
    console.print(f"wrote {path} (traversals.png, gamma_heatmap.png, class_correlation.png, reconstructions.png, "
                  f"dimensions.md, analysis.json)")


@explain_app.command("prototypes")
def explain_prototypes_command(
    model: Path = typer.Option(..., "--model", help="Run folder (or its checkpoint/) of sparsex train side, infodisent or "
                                                     "protosvit: the family is read from the checkpoint."),
    image: Path = IMAGE,
    out: Path = typer.Option(..., "--out", "-o", help="Output folder (explanation.png, explanation.json)."),
    k: int = typer.Option(5, "--k", min=1, help="Training patches shown per prototype."),
    root: Optional[Path] = typer.Option(None, "--root", help="Where the run's training data is now, if it has moved."),
    device: str = DEVICE, overwrite: bool = OVERWRITE, quiet: bool = QUIET,
) -> None:
    """Explain a prototype model's prediction: its contributing prototypes, their maps, their training patches."""
    from .explainers.prototypes import explain_checkpoint

    check_device(device)
    with printed_warnings():
        path = explain_checkpoint(model, image, out, k=k, overwrite=overwrite, progress=not quiet, device=device,
                                  root=root)
    console.print(f"wrote {path / 'explanation.png'} and explanation.json")


@explain_app.command("mask")
def explain_mask_command(
    explainer: Path = typer.Option(..., "--explainer", help="Run folder of `sparsex train minimal-mask`."),
    image: Path = IMAGE,
    out: Path = typer.Option(..., "--out", "-o", help="Output folder (image, mask, explanation, explanation.json)."),
    device: str = DEVICE, overwrite: bool = OVERWRITE,
) -> None:
    """Explain one image with a trained mask explainer: the mask, e = m * x + (1 - m) * blur(x), predictions on x and e."""
    from .explainers.minimal_mask import explain_file

    check_device(device)
    path = explain_file(explainer, image, out, overwrite=overwrite, device=device)
    result = read_json(path / "explanation.json", "explanation")
    on_x, on_e = result["prediction_on_image"][0], result["prediction_on_explanation"][0]
    console.print(f"mask area {result['mask_area']:.1%}; image -> {escape(on_x['name'])} ({on_x['probability']:.2f}), "
                  f"explanation -> {escape(on_e['name'])} ({on_e['probability']:.2f})")
    for warning in mask_warnings(result):
        console.print(f"[yellow]warning: {escape(warning)}[/]", highlight=False)
    console.print(f"wrote {path} (image.png, mask.png, explanation.png, explanation.json)")


LARGE_MASK = 0.5  # a mask keeping more of the image than this is not a minimal explanation


def mask_warnings(result: dict[str, Any]) -> list[str]:
    """What ``sparsex explain mask`` warns about in an ``explanation.json`` record: an empty mask, an
    explanation that loses the label, a mask that keeps most of the image."""
    on_x, on_e = result["prediction_on_image"][0], result["prediction_on_explanation"][0]
    if result["mask_empty"]:
        return [f"the mask is empty: the blurred image alone is classified {on_e['name']}; this is no explanation "
                f"of {on_x['name']}"]
    found = []
    if not result["label_kept"]:
        found.append(f"the explanation loses the label ({on_x['name']} -> {on_e['name']}): no mask the explainer "
                     f"tried keeps it, so this mask does not explain the decision")
    if result["mask_area"] > LARGE_MASK:
        found.append(f"the mask keeps {result['mask_area']:.0%} of the image, so it is not a minimal explanation: "
                     f"train the explainer longer (its epochs) or on images like this one")
    return found


MODEL_SPEC = typer.Option(..., "--model", help="A sparsex run folder, timm:NAME, torchvision:NAME or lite0-imagenet.")
WEIGHTS = typer.Option(None, "--weights", help="Weight file for timm:/torchvision: models (safetensors or a state dict).")
NUM_CLASSES = typer.Option(None, "--num-classes", min=1, help="Classes of a timm:/torchvision: model (default: 1000).")
IMAGE_SIZE = typer.Option(None, "--image-size", min=1, help="Input side of a timm:/torchvision: model (default: its own).")


@app.command("circuit")
def circuit_command(
    model: str = typer.Option(..., "--model", "--classifier", help="A sparsex run folder, timm:NAME, torchvision:NAME or "
                                                                  "lite0-imagenet (a CNN)."),
    image: Path = typer.Option(..., "--image", help="Image file to read the circuit of."),
    out: Path = typer.Option(..., "--out", "-o", help="Output folder (circuit.json, circuit.png, image.png)."),
    explainer: Optional[Path] = typer.Option(
        None, "--explainer", help="Run folder of `sparsex train minimal-mask`: read the circuit of e = m * x + (1 - m) * blur(x)."),
    target: Optional[str] = typer.Option(
        None, "--target", help="Class to read the edges of, an index or a name (default: the predicted class)."),
    layers: Optional[list[str]] = typer.Option(
        None, "--layers", help="Consecutive convolution layers, comma-separated (default: the last 3 that connect directly)."),
    top_k: Optional[int] = typer.Option(
        None, "--top-k", help="Channels kept per layer (the most active ones, or see --select; default 8 with --select "
                              "activation, with --share a cap)."),
    share: Optional[float] = typer.Option(
        None, "--share", help="Keep per layer the fewest channels making up this fraction of the layer's positive score "
                              "(default 0.6 with --select attribution)."),
    threshold: float = typer.Option(0.1, "--threshold", help="A channel is active above this fraction of its layer's largest activation."),
    edge_top_k: Optional[int] = typer.Option(None, "--edge-top-k", help="Edges kept between consecutive layers and into each class (default: all)."),
    other_classes: int = typer.Option(0, "--other-classes", help="Also show the classes with the next highest logits."),
    faithfulness: bool = typer.Option(
        False, "--faithfulness", help="Also ablate the circuit: sufficiency, necessity vs random channels, each channel's "
                                      "own drop (faithfulness.json; necessary channels outlined in the figure)."),
    reference: Optional[Path] = typer.Option(
        None, "--reference", help="With --faithfulness or --select attribution: images (a folder or file) whose mean "
                                  "activations replace ablated channels and start the attribution (default: the blurred input)."),
    ablation: str = typer.Option("mean", "--ablation", help="With --faithfulness: mean or zero ablation."),
    select: str = typer.Option(
        "activation", "--select", help="How channels are picked: activation (the paper's: the most active) or attribution "
                                       "(integrated gradients of the class logit: circuits that carry more of the decision)."),
    sufficient: Optional[bool] = typer.Option(
        None, "--sufficient/--no-sufficient", help="Keep the fewest selected channels that alone keep the label "
                                                   "(the others mean-ablated; default: on with --select attribution)."),
    weights: Optional[Path] = WEIGHTS, num_classes: Optional[int] = NUM_CLASSES, image_size: Optional[int] = IMAGE_SIZE,
    device: str = DEVICE, overwrite: bool = OVERWRITE,
) -> None:
    """Circuit readout: the active channels per layer and the edges that carry the decision on one image."""
    from .explainers.circuit_file import circuit_file

    check_device(device)
    if not faithfulness and ablation != "mean":
        raise SparsexError("--ablation sets how --faithfulness ablates; add --faithfulness")
    if not faithfulness and select != "attribution" and not sufficient and reference is not None:
        raise SparsexError("--reference sets the mean that --faithfulness and --sufficient ablate to and --select "
                           "attribution starts from; add one of them")
    layer_list = comma_list(layers, "--layers") if layers else None
    settings = {"weights": str(weights) if weights else None, "num_classes": num_classes, "image_size": image_size}
    with printed_warnings():
        path = circuit_file(model, image, out, explainer=explainer, target=target, layers=layer_list, top_k=top_k,
                            share=share, threshold=threshold, edge_top_k=edge_top_k, other_classes=other_classes,
                            faithfulness=faithfulness, reference=reference, ablation=ablation, selection=select,
                            sufficient=sufficient, overwrite=overwrite, device=device,
                            **{k: v for k, v in settings.items() if v is not None})
    circuit = read_json(path / "circuit.json", "circuit")
    name = "" if str(circuit["target_name"]) == str(circuit["target"]) else f" ({escape(str(circuit['target_name']))})"
    console.print(f"circuit for class {circuit['target']}{name} on the {circuit['input']}: "
                  f"{len(circuit['nodes'])} nodes, {len(circuit['edges'])} edges over {len(circuit['layers'])} layers "
                  f"({escape(', '.join(circuit['layers']))}), channels picked by {circuit['settings'].get('selection', 'activation')}")
    kept = sum(n["kind"] == "channel" for n in circuit["nodes"])
    if circuit.get("sufficient") is True:
        console.print(f"sufficient: kept {kept} of the {circuit['selected']} selected channels, the fewest that alone keep the "
                      f"label (the others ablated to the mean over {escape(circuit.get('reference', 'blur(x)'))})",
                      highlight=False)
    elif circuit.get("sufficient") is False:
        console.print(f"[yellow]warning: no part of the {circuit['selected']} selected channels keeps the label alone (the "
                      f"others ablated); all are shown: a larger --share or --top-k, or a lower --threshold, selects more[/]",
                      highlight=False)
    if faithfulness:
        report = read_json(path / "faithfulness.json", "faithfulness")

        def share(value: Optional[float]) -> str:
            return "n/a (target logit <= 0)" if value is None else f"{value:.0%}"

        sufficiency, necessity = report["sufficiency"], report["necessity"]
        console.print(f"faithfulness ({report['ablation']} ablation over {escape(report['reference'])}): the circuit alone "
                      f"keeps {share(sufficiency['logit'])} of the target logit (probability {report['clean']['probability']:.3f}"
                      f" -> {sufficiency['probability']:.3f}) and {'keeps' if sufficiency['label'] else 'loses'} the label; "
                      f"ablating it drops the logit by {share(necessity['drop'])}, the same number of random channels by "
                      f"{share(report['random']['drop'])}, the most active ones by {share(report['activation']['drop'])}",
                      highlight=False)
        console.print(f"necessary channels (alone drop the logit by >= {report['necessary_drop']:.0%}): "
                      f"{escape(', '.join(report['necessary'])) or 'none'}", highlight=False)
        if report["clean"]["label"] and not sufficiency["label"] and circuit.get("sufficient") is None:  # else said above
            hint = "" if select == "attribution" else "--select attribution or "
            size = circuit["settings"]
            at = " and ".join(f"--{flag} {size[key]}" for key, flag in (("top_k", "top-k"), ("share", "share"))
                              if size.get(key) is not None)
            console.print(f"[yellow]warning: the circuit alone loses the label: at {at} it is not sufficient for "
                          f"this decision; {hint}a larger --top-k or --share keeps more of it (docs/methods.md, circuit "
                          f"faithfulness)[/]", highlight=False)
        explained = report.get("explanation")
        if explained and (explained["empty"] or not explained["keeps_label"]):
            problem = "the mask is empty" if explained["empty"] else f"the explanation is classified {explained['predicted']}"
            console.print(f"[yellow]warning: {problem}: the circuit of the explanation does not show the class {circuit['target']}"
                          f" decision[/]")
    files = "circuit.json, circuit.png, image.png" + (", faithfulness.json" if faithfulness else "")
    console.print(f"wrote {path} ({files}{', mask.png, explanation.png' if explainer else ''})")


def explainer_settings(pairs: Optional[list[str]]) -> dict[str, dict[str, Any]]:
    """``--set EXPLAINER.KEY=VALUE`` pairs as ``{explainer: {key: value}}``."""
    settings: dict[str, dict[str, Any]] = {}
    for key, value in parse_options(pairs, "--set").items():
        name, dot, setting = key.rpartition(".")
        if not dot or not name or not setting:
            raise SparsexError(f"--set takes EXPLAINER.KEY=VALUE, got {key!r}")
        settings.setdefault(name, {})[setting] = value
    return settings



@explain_app.command("attributions")
def explain_attributions_command(
    model: str = MODEL_SPEC,
    images: Path = typer.Option(..., "--images", help="An image file or a folder of them (searched recursively)."),
    out: Path = typer.Option(..., "--out", "-o", help="Output folder: one folder per image, scores.csv, metrics.json."),
    explainer: str = typer.Option(
        "integrated-gradients,gradcam", "--explainer", help="Explainers, comma-separated (see `sparsex explainers`; "
                                                             "ig is integrated-gradients)."),
    target: Optional[str] = typer.Option(None, "--target", help="Class to explain, an index or a name (default: each image's predicted class)."),
    score: bool = typer.Option(False, "--score", help="Also score every map: deletion / insertion AUC and sufficiency."),
    weights: Optional[Path] = WEIGHTS, num_classes: Optional[int] = NUM_CLASSES, image_size: Optional[int] = IMAGE_SIZE,
    set_: Optional[list[str]] = typer.Option(
        None, "--set", help="Explainer setting NAME.KEY=VALUE, e.g. ig.n_steps=16 or minimal-mask.checkpoint=RUN (repeatable).",
        metavar="NAME.KEY=VALUE"),
    batch_size: int = typer.Option(DEFAULT_BATCH, "--batch-size", min=1, help="Images per forward pass."),
    device: str = DEVICE, overwrite: bool = OVERWRITE, quiet: bool = QUIET,
) -> None:
    """Explain a classifier's decisions on image files with every named explainer: heat maps, overlays, a grid, scores."""
    from .explain_files import ExplainFilesConfig, explain_files

    config = ExplainFilesConfig(model=model, images=str(images), explainers=comma_list([explainer], "--explainer"),
                                explainer_settings=explainer_settings(set_), weights=str(weights) if weights else None,
                                num_classes=num_classes, image_size=image_size, target=target, score=score,
                                batch_size=batch_size, device=device)
    with printed_warnings():
        summary = explain_files(config, out, overwrite=overwrite, progress=not quiet)
    console.print(f"explained {summary['images']} image(s) with {', '.join(summary['explainers'])}"
                  + (f"; skipped {len(summary['skipped'])} unreadable file(s)" if summary["skipped"] else ""))
    for name, files in summary["flagged"].items():
        console.print(f"[yellow]{escape(name)}: {len(files)} map(s) flagged as not an explanation (see explanation.json)[/]")
    for name, means in (summary.get("scores") or {}).items():
        console.print(f"  {escape(name)}: " + "  ".join(f"{k} {v:.3f}" for k, v in means.items()), highlight=False)
    console.print(f"wrote {out} (per image: grid.png, <explainer>.png, maps.safetensors, explanation.json"
                  + ("; scores.csv, metrics.json)" if score else "; metrics.json)"))


@app.command("evaluate")
def evaluate_command(
    model: str = MODEL_SPEC,
    explainer: Optional[str] = typer.Option(
        None, "--explainer", help="Explainers, comma-separated (see `sparsex explainers`; default: integrated-gradients,gradcam "
                                  "for a plain classifier, prototypes for a prototype model)."),
    out: Path = typer.Option(..., "--out", "-o", help="Output folder (metrics.json, radar.png, explanations.png, report.html)."),
    weights: Optional[Path] = WEIGHTS, num_classes: Optional[int] = NUM_CLASSES, image_size: Optional[int] = IMAGE_SIZE,
    data: Optional[str] = typer.Option(None, "--data", help="Dataset (default: a run's own; another one is refused; "
                                                          "e.g. imagefolder with --root for other models)."),
    images: Optional[Path] = typer.Option(None, "--images", help="Unlabelled images (a file or folder) instead of a dataset: "
                                                                  "faithfulness for the predicted class."),
    root: Optional[Path] = typer.Option(None, "--root", help="Local folder with the dataset's files."),
    data_options: Optional[list[str]] = DATA_OPTIONS,
    split: str = typer.Option("test", "--split", help="Split to evaluate on."),
    limit: Optional[int] = typer.Option(500, "--limit", help="Evaluate the first N images (0: all)."),
    internal_batch_size: int = typer.Option(DEFAULT_BATCH, "--internal-batch-size", help="Images per forward pass."),
    set_: Optional[list[str]] = typer.Option(
        None, "--set", help="Explainer setting NAME.KEY=VALUE, e.g. integrated-gradients.n_steps=16 (repeatable)."),
    device: str = DEVICE, overwrite: bool = OVERWRITE, quiet: bool = QUIET,
) -> None:
    """Score a model's explanations: part-world protocols (FunnyBirds), faithfulness, an HTML report."""
    from .evaluate import EvaluateConfig, evaluate

    config = EvaluateConfig(
        model=model, weights=str(weights) if weights else None, num_classes=num_classes, image_size=image_size,
        images=str(images) if images else None, explainers=comma_list([explainer], "--explainer") if explainer is not None else [],
        explainer_settings=explainer_settings(set_), data=data,
        root=str(root) if root else None, data_options=parse_options(data_options) if data_options else None, split=split,
        limit=limit or None, internal_batch_size=internal_batch_size, device=device)
    with printed_warnings():
        result = evaluate(config, out, overwrite=overwrite, progress=not quiet)
    _print_rows(result["rows"], f"{result['data']}, {result['split']} split, {result['images']} images")
    console.print(f"wrote {out} (report.html, metrics.json, radar.png, explanations.png, tables.md)")


@app.command("demo")
def demo_command(
    out: Path = typer.Option(Path("sparsex-demo"), "--out", "-o", help="Folder of the demo; rerunning resumes."),
    quick: bool = typer.Option(False, "--quick", help="A smoke test: tiny sizes, about a minute, numbers that mean nothing."),
    open_report: bool = typer.Option(False, "--open", help="Open report.html in the web browser at the end."),
    device: str = DEVICE, quiet: bool = QUIET,
) -> None:
    """The main job on the embedded part world: train a classifier, SIDE and ProtoS-ViT, explain and score them, one report."""
    from .demo import DemoConfig, run_demo

    check_device(device)
    check_output_dir(out, overwrite=True)  # the demo resumes in an existing folder: refuse only a file
    if quick:
        console.print("[yellow]--quick: a smoke test on tiny models and data; its numbers mean nothing.[/]")
    result = run_demo(out, DemoConfig.smoke_test() if quick else None, progress=not quiet, device=device)
    _print_rows(result["rows"], "part world, test split" + (" (quick: a smoke test)" if quick else ""))
    console.print(f"demo finished in {result['seconds']:.0f} s; report: {result['report']}")
    if open_report:
        import webbrowser

        webbrowser.open(Path(result["report"]).resolve().as_uri())


def _print_rows(rows: dict[str, dict[str, Any]], title: str) -> None:
    """One line per (model, explainer) row: the radar's scores and the deletion / insertion AUC."""
    columns = {"accuracy": "acc", "bi": "BI", "completeness": "compl", "correctness": "correct", "contrastivity": "contrast",
               "deletion_auc": "del-AUC", "insertion_auc": "ins-AUC"}
    console.print(f"[bold]{escape(title)}[/]")
    for name, row in rows.items():
        scores = "  ".join(f"{short} {'–' if row.get(key) is None else format(row[key], '.3f')}" for key, short in columns.items())
        console.print(f"  {escape(name)}: {scores}", highlight=False)


def _print_error(message: str) -> None:
    message = " ".join(message.split())  # always one line
    Console(stderr=True).print(f"[bold red]error:[/] {escape(message)}", highlight=False, soft_wrap=True)


def main(argv: list[str] | None = None) -> None:
    """Entry point of the ``sparsex`` command.

    A :class:`SparsexError` and a command-line usage error (unknown command or option, a value
    that is not a number, a missing argument) print one ``error: ...`` line and exit with
    status 2; anything else is a bug and keeps its traceback. Under torchrun only rank 0 prints
    reports (every rank prints its errors).
    """
    console.quiet = os.environ.get("RANK", "0") != "0"
    command = typer.main.get_command(app)
    try:
        code = command.main(args=argv, prog_name="sparsex", standalone_mode=False)
    except SparsexError as e:
        _print_error(str(e))
        sys.exit(2)
    except click_exceptions.ClickException as e:
        if type(e).__name__ == "NoArgsIsHelpError":  # the help was printed already
            sys.exit(e.exit_code)
        ctx = getattr(e, "ctx", None)
        hint = f" (see '{ctx.command_path} --help')" if ctx is not None and isinstance(e, click_exceptions.UsageError) else ""
        _print_error(e.format_message() + hint)
        sys.exit(e.exit_code)
    except typer.Abort:
        _print_error("aborted")
        sys.exit(1)
    if isinstance(code, int) and code:
        sys.exit(code)


@analyze_app.command("dictionary")
def analyze_dictionary_command(
    run: Path = typer.Argument(..., help="Run folder of `sparsex train dictionary`."),
    out: Optional[Path] = typer.Option(None, "--out", "-o", help="Output folder (default RUN/analysis)."),
    atoms: int = typer.Option(8, "--atoms", help="Atoms shown in the galleries."),
    top: int = typer.Option(6, "--top", help="Most active patches shown per atom."),
    overwrite: bool = typer.Option(False, "--overwrite", help="Replace an existing output folder."),
    quiet: bool = QUIET,
) -> None:
    """Report page: concept-recovery table, atom galleries, atom-to-concept matrix, controls."""
    from .dictionaries.report import analyze_dictionary

    path = analyze_dictionary(run, out, gallery_atoms=atoms, gallery_size=top, overwrite=overwrite, progress=not quiet)
    console.print(f"wrote {path} (report.md, galleries.png, atom_concept.png where graded, analysis.json)")
