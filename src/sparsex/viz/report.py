"""Evaluation figures and the self-contained HTML report.

``sparsex evaluate`` puts its results on one page whose first screen shows the explanations: a
title line, a grid of explanations of a few test images (one column per image; the image, its
ground-truth parts, then one row per model / explainer), then the scores table, the radar plot
of the part-world scores and the cost. The page needs nothing but itself: figures are embedded as
base64 PNG data URIs and the CSS is inline, so it can be mailed, archived or opened offline.

Every figure is a :class:`matplotlib.figure.Figure` drawn with the object-oriented API: no
backend is chosen (importing this module leaves ``matplotlib.rcParams["backend"]`` alone, so
notebooks keep their inline plots) and no figure is registered with pyplot.

Typical use::

    write_report(out / "report.html", "lite0 on part-world", [
        ReportSection("explanations", figures=[explanations_figure(images, [MapRow("lite0.ig", maps)])]),
        ReportSection("scores", html=metrics_table_html(rows)),
        ReportSection("summary", figures=[radar_figure(rows)]),
        ReportSection("command", pre="sparsex evaluate ..."),
    ])
"""

from __future__ import annotations

import base64
import html
import io
import math
import numbers
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Mapping, Sequence, Union

import numpy as np
import torch
import torch.nn.functional as F
from matplotlib import colormaps
from matplotlib.figure import Figure
from matplotlib.lines import Line2D
from matplotlib.patches import Patch

from .. import __version__
from ..errors import InputError
from ..io import atomic_file
from ..metrics.registry import UNREGISTERED, list_metrics, metric_info

#: The part-world summary scores, each in ``[0, 1]`` (higher is better), in radar order.
RADAR_AXES = ("accuracy", "bi", "completeness", "correctness", "contrastivity")
#: Shown in a table cell whose value is missing (None or NaN).
MISSING = "–"
PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"

#: What a report figure may be: a matplotlib figure (rendered), PNG bytes, or a PNG file.
FigureLike = Union[Figure, bytes, str, os.PathLike]


def _missing(value: Any) -> bool:
    return value is None or (isinstance(value, numbers.Real) and math.isnan(value))


def radar_figure(rows: Mapping[str, Mapping[str, float | None]], axes: Sequence[str] = RADAR_AXES,
                 title: str | None = None) -> Figure:
    """A radar (spider) plot with one closed polygon per row, on radial axes from 0 to 1.

    ``rows`` maps a row name (e.g. ``"lite0 / integrated-gradients"``) to its scores; keys not in
    ``axes`` are ignored. A score that is absent, None or NaN is drawn at 0 with a hollow marker
    and the legend entry says ``n/a: <axes>``; present scores get filled markers. Needs at least
    3 axes; present scores must lie in ``[0, 1]``.
    """
    if not rows:
        raise InputError("radar plot needs at least one row of scores, got none")
    if len(axes) < 3:
        raise InputError(f"radar plot needs at least 3 axes, got {len(axes)}: {list(axes)}")
    for name, scores in rows.items():
        for axis in axes:
            value = scores.get(axis)
            if _missing(value):
                continue
            if not isinstance(value, numbers.Real) or not 0.0 <= value <= 1.0:
                raise InputError(f"radar score {axis!r} of {name!r} must be a number in [0, 1] or None, got {value!r}")
    angles = np.linspace(0.0, 2 * np.pi, len(axes), endpoint=False)
    closed = np.append(angles, angles[0])
    colours = colormaps["tab10" if len(rows) <= 10 else "tab20"]
    legend_height = 0.3 + 0.2 * len(rows)  # inches below the plot for the legend, one line per row
    fig = Figure(figsize=(5.5, 5.0 + legend_height))
    ax = fig.add_subplot(projection="polar")
    ax.set_theta_offset(np.pi / 2)  # first axis at the top, then clockwise
    ax.set_theta_direction(-1)
    ax.set_xticks(angles, list(axes), fontsize=9)
    ax.set_ylim(0.0, 1.0)
    ax.set_yticks([0.25, 0.5, 0.75, 1.0], ["0.25", "0.5", "0.75", "1"], fontsize=7, color="grey")
    handles = []
    for i, (name, scores) in enumerate(rows.items()):
        colour = colours(i % colours.N)
        absent = np.array([_missing(scores.get(axis)) for axis in axes])
        values = np.array([0.0 if gap else float(scores[axis]) for axis, gap in zip(axes, absent)])
        ax.plot(closed, np.append(values, values[0]), color=colour, linewidth=1.5)
        ax.fill(closed, np.append(values, values[0]), color=colour, alpha=0.08)
        if not absent.all():
            ax.plot(angles[~absent], values[~absent], "o", color=colour, markersize=5)
        if absent.any():
            ax.plot(angles[absent], values[absent], "o", markerfacecolor="white", markeredgecolor=colour, markersize=7,
                    markeredgewidth=1.5)
        label = name if not absent.any() else f"{name} (n/a: {', '.join(a for a, gap in zip(axes, absent) if gap)})"
        handles.append(Line2D([], [], color=colour, marker="o", markerfacecolor="white" if absent.any() else colour,
                              label=label))
    ax.legend(handles=handles, loc="upper center", bbox_to_anchor=(0.5, -0.08), fontsize=8, frameon=False)
    if title is not None:
        fig.suptitle(title, fontsize=11)
    height = fig.get_figheight()
    fig.subplots_adjust(left=0.15, right=0.85, top=1 - (0.8 if title is not None else 0.5) / height,
                        bottom=(legend_height + 0.4) / height)
    return fig


def _as_numpy(x: Any, what: str) -> np.ndarray:
    array = (x.detach().float().cpu().numpy() if isinstance(x, torch.Tensor) else np.asarray(x, dtype=np.float32))
    if not np.isfinite(array).all():
        raise InputError(f"{what} contains NaN or Inf values")
    return array


def _shape(x: Any) -> Any:
    return tuple(x.shape) if isinstance(x, torch.Tensor) else type(x).__name__


#: Inches in the explanations grid: one panel, the caption line above it, the row labels on the
#: left, the part legend on the right.
PANEL_INCHES, CAPTION_INCHES, LABEL_INCHES, LEGEND_INCHES = 1.0, 0.2, 1.5, 0.9


@dataclass(frozen=True)
class MapRow:
    """One row of :func:`explanations_figure`: ``label`` on its left (e.g. the model and the
    explainer), the ``maps (N, 1, h, w)`` or ``(N, h, w)`` of the figure's ``N`` images (any
    ``h x w``: the image underneath is resized to it) and ``captions`` (``N`` strings above the
    panels, e.g. the predicted class) or None."""

    label: str
    maps: torch.Tensor
    captions: Sequence[str] | None = None


def rgb_pictures(images: torch.Tensor) -> np.ndarray:
    """``(N, C, H, W)`` in ``[0, 1]`` (``C`` = 1 or 3) -> ``(N, H, W, 3)`` for imshow."""
    pictures = _as_numpy(images, "explanation images").clip(0.0, 1.0).transpose(0, 2, 3, 1)
    return np.repeat(pictures, 3, axis=3) if pictures.shape[3] == 1 else pictures


def map_panel(maps: np.ndarray, i: int, picture: np.ndarray) -> tuple[np.ndarray, str]:
    """The RGB panel of map ``i`` of ``maps (N, h, w)`` over ``picture (h, w, 3)``, and its note."""
    a = maps[i]
    grey = np.repeat(0.2 + 0.6 * picture.mean(axis=2, keepdims=True), 3, axis=2)
    if np.isin(maps, (0.0, 1.0)).all():  # binary masks (judged on the whole row)
        return a[:, :, None] * picture + (1 - a[:, :, None]) * 0.5 * grey, f"area {a.mean():.0%}"
    # a few extreme pixels (integrated gradients) would wash the rest out: scale to the 99th
    # percentile (the max where that is the floor) and saturate above it
    if (maps < 0).any():  # signed: centred on 0
        scale = float(np.percentile(np.abs(a), 99)) or float(np.abs(a).max())
        relative = np.clip(a / (scale if scale > 0 else 1.0), -1.0, 1.0)
        colour, note = colormaps["RdBu_r"](0.5 + 0.5 * relative), f"±{scale:.2g}"
    else:  # non-negative: from the map's minimum (a constant offset is no evidence)
        low, high = float(a.min()), float(np.percentile(a, 99))
        if high <= low:
            high = float(a.max())
        relative = np.clip((a - low) / (high - low if high > low else 1.0), 0.0, 1.0)
        colour, note = colormaps["inferno"](relative), f"{low:.2g}–{high:.2g}"
    alpha = 0.85 * np.abs(relative)[:, :, None]
    return (1 - alpha) * grey + alpha * colour[:, :, :3], note


def explanations_figure(images: torch.Tensor, rows: Sequence[MapRow], captions: Sequence[str] | None = None,
                        part_masks: torch.Tensor | None = None, part_names: Sequence[str] | None = None) -> Figure:
    """A grid of explanations of the same images: one column per image. The first row shows the
    images (``captions`` above them, e.g. the true class); with ``part_masks`` the second row
    shows the ground-truth parts tinted over the faded image (part ``k`` in colour ``k``, named
    in a legend on the right when ``part_names`` is given); then one row per :class:`MapRow`.

    ``images (N, C, H, W)`` in ``[0, 1]`` (``C`` = 1 or 3); ``part_masks (N, K, H, W)``. Each map
    is drawn over the greyed image, its scale written in the panel's corner: a row of only 0s and
    1s is binary masks (the image shows through, dimmed outside; the corner gives the area); a
    row with negative values uses a diverging colormap centred on 0 (red +, blue -) up to the
    99th percentile of ``|value|``; otherwise a sequential one from the map's minimum to its
    99th percentile. Colours saturate above the 99th percentile; overlay opacity grows with the
    scaled value. One panel is ``PANEL_INCHES`` wide.
    """
    if not isinstance(images, torch.Tensor) or images.dim() != 4 or images.shape[1] not in (1, 3) or len(images) == 0:
        raise InputError(f"explanation images must be a tensor (N >= 1, 1 or 3, H, W), got {_shape(images)}")
    if not rows:
        raise InputError("explanations figure needs at least one row of maps, got none")
    n = len(images)
    pictures = rgb_pictures(images)
    maps = []
    for row in rows:
        if not isinstance(row, MapRow):
            raise InputError(f"explanations figure rows must be MapRow, got {type(row).__name__}")
        shape = _shape(row.maps)
        if not isinstance(row.maps, torch.Tensor) or not (row.maps.dim() == 3 or (row.maps.dim() == 4 and shape[1] == 1)) \
                or shape[0] != n or min(shape) == 0:
            raise InputError(f"maps of row {row.label!r} must be ({n}, 1, h, w) or ({n}, h, w), one per image, got {shape}")
        if row.captions is not None and len(row.captions) != n:
            raise InputError(f"row {row.label!r} needs one caption per image ({n}), got {len(row.captions)}")
        maps.append(_as_numpy(row.maps, f"maps of row {row.label!r}").reshape(n, *shape[-2:]))
    if captions is not None and len(captions) != n:
        raise InputError(f"explanations figure needs one caption per image ({n}), got {len(captions)}")
    parts = None
    if part_masks is not None:
        if not isinstance(part_masks, torch.Tensor) or part_masks.dim() != 4 or part_masks.shape[0] != n \
                or part_masks.shape[2:] != images.shape[2:]:
            raise InputError(f"part masks must be ({n}, K, {images.shape[2]}, {images.shape[3]}) like the images, "
                             f"got {_shape(part_masks)}")
        parts = _as_numpy(part_masks, "part masks") > 0.5
        if part_names is not None and len(part_names) != parts.shape[1]:
            raise InputError(f"part_names must name the {parts.shape[1]} parts, got {len(part_names)}")

    legend = parts is not None and part_names is not None
    right = LEGEND_INCHES if legend else 0.1
    count = 1 + (parts is not None) + len(rows)
    width = LABEL_INCHES + n * PANEL_INCHES * 1.06 + right
    height = count * (PANEL_INCHES + CAPTION_INCHES) + 0.1
    fig = Figure(figsize=(width, height))
    grid = fig.add_gridspec(count, n, left=LABEL_INCHES / width, right=1 - right / width, bottom=0.1 / height,
                            top=1 - CAPTION_INCHES / height, wspace=0.06, hspace=CAPTION_INCHES / PANEL_INCHES)
    axes = np.array([[fig.add_subplot(grid[r, c]) for c in range(n)] for r in range(count)])
    for ax in axes.flat:
        ax.set_xticks([])
        ax.set_yticks([])

    def label(ax: Any, text: str) -> None:
        ax.set_ylabel(text, fontsize=8, rotation=0, ha="right", va="center", labelpad=6)

    for i in range(n):
        axes[0, i].imshow(pictures[i], interpolation="nearest")
        axes[0, i].set_title(captions[i] if captions is not None else f"image {i}", fontsize=8, pad=3)
    label(axes[0, 0], "image")
    if parts is not None:
        colours = colormaps["tab10"](np.arange(parts.shape[1]) % 10)[:, :3]
        for i in range(n):
            tinted = np.repeat(0.45 + 0.5 * pictures[i].mean(axis=2, keepdims=True), 3, axis=2)  # the scene, faded
            for mask, colour in zip(parts[i], colours):
                tinted[mask] = 0.3 * tinted[mask] + 0.7 * colour
            axes[1, i].imshow(tinted, interpolation="nearest")
        label(axes[1, 0], "parts")
        if legend:
            handles = [Patch(color=colours[k], label=name) for k, name in enumerate(part_names)]
            box = axes[1, -1].get_position()
            fig.legend(handles=handles, loc="center left", bbox_to_anchor=(box.x1 + 0.08 / width, (box.y0 + box.y1) / 2),
                       fontsize=7, frameon=False, handlelength=1.0, borderaxespad=0.0)
    for r, (row, array) in enumerate(zip(rows, maps), start=1 + (parts is not None)):
        resized = pictures
        if array.shape[1:] != pictures.shape[1:3]:  # the model saw the image at another resolution
            resized = rgb_pictures(F.interpolate(images.float().clamp(0, 1), size=array.shape[1:], mode="bilinear",
                                         align_corners=False, antialias=True))
        for i in range(n):
            shown, note = map_panel(array, i, resized[i])
            ax = axes[r, i]
            ax.imshow(shown, interpolation="nearest")
            ax.text(0.03, 0.03, note, transform=ax.transAxes, fontsize=6, color="white", ha="left", va="bottom",
                    bbox={"boxstyle": "square,pad=0.15", "facecolor": "black", "alpha": 0.5, "linewidth": 0})
            if row.captions is not None:
                ax.set_title(row.captions[i], fontsize=8, pad=3)
        label(axes[r, 0], row.label)
    return fig


def _format(value: Any) -> str:
    """A table cell: floats to 3 decimals (``%.2e`` below 1e-3 in size), ints as they are."""
    if _missing(value):
        return MISSING
    if isinstance(value, numbers.Integral):
        return str(value)
    if isinstance(value, numbers.Real):
        return f"{value:.2e}" if 0 < abs(value) < 1e-3 else f"{value:.3f}"
    return html.escape(str(value))


def _is_number(value: Any) -> bool:
    return isinstance(value, numbers.Real) and not isinstance(value, bool) and not _missing(value)


def report_order(names: Sequence[str]) -> list[str]:
    """``names`` (unique) in the registry's order (:func:`sparsex.metrics.list_metrics`: by
    category, then as registered); unregistered names last, in their given order."""
    rank = {info.name: k for k, info in enumerate(list_metrics())}
    return sorted(dict.fromkeys(names), key=lambda name: rank.get(name, len(rank)))


def metrics_table_html(rows: Mapping[str, Mapping[str, Any]], columns: Sequence[str] | None = None) -> str:
    """An HTML ``<table class="metrics">`` with one row per entry of ``rows``, one column per metric.

    ``columns`` defaults to every metric in the rows, in :func:`report_order`. What the table says
    about a metric comes from :mod:`sparsex.metrics.registry`: the header shows its short label,
    with its name, description and direction in a ``title`` tooltip; where the registry gives a
    direction the header carries ↑ (higher is better) or ↓ and the best number of the column
    (all ties; only where two rows or more have a number) is bold, elsewhere (counts, settings,
    times, unregistered keys) neither. Columns of more than one category get a first header row
    naming the categories. Numbers are formatted to 3 decimals (integers as integers), None/NaN
    as ``–``, other values as text; names are escaped (a long one wraps at a hyphen, inside a word only
    where a word is wider than the name column). The table sits in a ``div.table-scroll``
    that scrolls sideways on its own when the table is wider than the page (the row names stay in view), so
    the page does not.
    """
    if not rows:
        raise InputError("metrics table needs at least one row, got none")
    columns = report_order([key for scores in rows.values() for key in scores]) if columns is None else list(columns)
    infos = [metric_info(column) for column in columns]
    best = {}
    for info in infos:
        values = [v for v in (scores.get(info.name) for scores in rows.values()) if _is_number(v)]
        if info.direction is not None and len(values) >= 2:
            best[info.name] = max(values) if info.higher_is_better else min(values)
    header = []
    for info in infos:
        hint = f"{info.name}: {info.description}" if info.category != UNREGISTERED else info.name
        if info.direction is not None:
            hint += f" ({info.direction} is better)"
        arrow = {"higher": "&nbsp;↑", "lower": "&nbsp;↓", None: ""}[info.direction]
        header.append(f'<th title="{html.escape(hint, quote=True)}">{html.escape(info.label)}{arrow}</th>')
    groups: list[list[Any]] = []  # [category, number of columns] in column order
    for info in infos:
        if groups and groups[-1][0] == info.category:
            groups[-1][1] += 1
        else:
            groups.append([info.category, 1])
    if len({category for category, _ in groups}) > 1:
        named = {category: "" if category == UNREGISTERED else html.escape(category) for category, _ in groups}
        categories = "".join(f'<th class="category" colspan="{span}">{named[category]}</th>' for category, span in groups)
        head = [f'<tr><th class="corner" rowspan="2"></th>{categories}</tr>', f"<tr>{''.join(header)}</tr>"]
    else:
        head = [f'<tr><th class="corner"></th>{"".join(header)}</tr>']
    lines = ['<div class="table-scroll">', '<table class="metrics">', "<thead>", *head, "</thead>", "<tbody>"]
    for name, scores in rows.items():
        cells = [f"<th>{html.escape(name)}</th>"]
        for column in columns:
            value, text = scores.get(column), _format(scores.get(column))
            bold = column in best and _is_number(value) and value == best[column]
            cells.append(f"<td><strong>{text}</strong></td>" if bold else f"<td>{text}</td>")
        lines.append(f"<tr>{''.join(cells)}</tr>")
    lines += ["</tbody>", "</table>", "</div>"]
    return "\n".join(lines)


def figure_to_png_bytes(fig: Figure, dpi: int = 100) -> bytes:
    """Render ``fig`` as PNG bytes (tight bounding box)."""
    buffer = io.BytesIO()
    fig.savefig(buffer, format="png", dpi=dpi, bbox_inches="tight")
    return buffer.getvalue()


@dataclass(frozen=True)
class ReportSection:
    """One section of the report, rendered in this order under its ``title`` heading:

    - ``text``: plain text, escaped; blank lines separate paragraphs;
    - ``html``: a trusted HTML fragment inserted as is (e.g. :func:`metrics_table_html`);
    - ``figures``: matplotlib figures (rendered), PNG bytes or PNG file paths;
    - ``pre``: preformatted text, escaped (the command line, the resolved config).
    """

    title: str
    html: str | None = None
    figures: Sequence[FigureLike] = ()
    text: str | None = None
    pre: str | None = None


def _png(figure: FigureLike, section: str) -> bytes:
    """The PNG bytes of one report figure; bytes and files must really be PNG."""
    if isinstance(figure, Figure):
        return figure_to_png_bytes(figure)
    if isinstance(figure, bytes):
        data, source = figure, "bytes"
    elif isinstance(figure, (str, os.PathLike)):
        source = str(figure)
        try:
            data = Path(figure).read_bytes()
        except OSError as e:
            raise InputError(f"figure {source} of section {section!r} cannot be read: {e.strerror}") from None
    else:
        raise InputError(f"figure of section {section!r} must be a matplotlib Figure, PNG bytes or a PNG file path, "
                         f"got {type(figure).__name__}")
    if not data.startswith(PNG_SIGNATURE):
        raise InputError(f"figure {source} of section {section!r} is not a PNG image")
    return data


# Sized for a first screen of 1280 x 800: a one-line header, then the first section's figure
# (no figure is taller than the window), then a table that fits the width.
_CSS = """
body { font: 14px/1.45 system-ui, -apple-system, "Segoe UI", sans-serif; color: #222; max-width: 1240px;
       margin: 0.6em auto 2em; padding: 0 0.8em; }
header { display: flex; flex-wrap: wrap; align-items: baseline; column-gap: 1.5em; }
h1 { font-size: 1.35em; margin: 0 0 0.2em; }
nav { font-size: 0.85em; color: #888; }
nav a { color: #36c; margin-right: 0.8em; }
h2 { font-size: 1.1em; border-bottom: 1px solid #ddd; padding-bottom: 0.1em; margin: 1.2em 0 0.4em; }
section:first-of-type h2 { margin-top: 0.3em; }
table.metrics { border-collapse: collapse; margin: 0.5em 0; font-size: 13px; font-variant-numeric: tabular-nums; }
table.metrics th, table.metrics td { border: 1px solid #ddd; padding: 0.2em 0.35em; text-align: right; }
table.metrics td { white-space: nowrap; }
table.metrics thead th { background: #f4f4f4; text-align: center; font-weight: 600; line-height: 1.2;
                         min-width: 3.6em; max-width: 6.5em; }
table.metrics thead th[title] { cursor: help; }
table.metrics thead th.category { background: #e9eef5; font-weight: normal; font-style: italic; max-width: none; }
table.metrics tbody th { text-align: left; font-weight: normal; max-width: 14em; overflow-wrap: break-word; }
div.table-scroll { max-width: 100%; overflow-x: auto; }
table.metrics tbody th, table.metrics th.corner { position: sticky; left: 0; z-index: 1; background: #fff; }  /* in view while it scrolls */
figure { margin: 0.3em 0; }
figure img { max-width: 100%; max-height: calc(100vh - 5.5em); width: auto; height: auto; }
pre { background: #f6f6f6; border: 1px solid #e4e4e4; padding: 0.6em; overflow-x: auto; font-size: 0.85em; }
footer { margin-top: 3em; color: #888; font-size: 0.8em; }
""".strip()


def write_report(path: str | os.PathLike, title: str, sections: Sequence[ReportSection]) -> Path:
    """Write a self-contained HTML page (no external resources) and return its path.

    The page has a one-line header (``title`` and links to the sections), then the sections (see
    :class:`ReportSection`); every figure is embedded as a ``data:image/png;base64`` URI. The
    file is written beside ``path`` and moved into place (``os.replace``), so readers never see
    half a page. ``path`` must end in ``.html`` or ``.htm``.
    """
    path = Path(path)
    if path.suffix.lower() not in (".html", ".htm"):
        raise InputError(f"report must be an .html file, got {path}")
    links = "".join(f'<a href="#section-{k}">{html.escape(s.title)}</a>' for k, s in enumerate(sections, 1))
    body = [f"<header><h1>{html.escape(title)}</h1>" + (f"<nav>{links}</nav>" if sections else "") + "</header>"]
    for k, section in enumerate(sections, start=1):
        body.append(f'<section id="section-{k}">')
        body.append(f"<h2>{html.escape(section.title)}</h2>")
        if section.text is not None:
            body += [f"<p>{html.escape(p.strip())}</p>" for p in section.text.split("\n\n") if p.strip()]
        if section.html is not None:
            body.append(section.html)
        for m, figure in enumerate(section.figures, start=1):
            data = base64.b64encode(_png(figure, section.title)).decode("ascii")
            alt = html.escape(f"{section.title}, figure {m}", quote=True)
            body.append(f'<figure><img src="data:image/png;base64,{data}" alt="{alt}"></figure>')
        if section.pre is not None:
            body.append(f"<pre>{html.escape(section.pre)}</pre>")
        body.append("</section>")
    body.append(f"<footer>written by sparsex {html.escape(__version__)}</footer>")
    page = "\n".join(["<!DOCTYPE html>", '<html lang="en">', "<head>", '<meta charset="utf-8">',
                      '<meta name="viewport" content="width=device-width, initial-scale=1">',
                      f"<title>{html.escape(title)}</title>", f"<style>\n{_CSS}\n</style>", "</head>", "<body>",
                      *body, "</body>", "</html>", ""])
    with atomic_file(path, "wb") as f:
        f.write(page.encode("utf-8"))
    return path
