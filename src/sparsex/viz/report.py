"""Evaluation figures and the self-contained HTML report.

``sparsex evaluate`` puts its results on one page: a radar plot of the part-world scores per
(model, explainer), an explanation grid, per-protocol metric tables and the command that made
them. The page needs nothing but itself: figures are embedded as base64 PNG data URIs and the
CSS is inline, so it can be mailed, archived or opened offline.

Typical use::

    table = metrics_table_html(rows, higher_is_better={"bi": True, "deletion_auc": False})
    write_report(out / "report.html", "lite0 on part-world", [
        ReportSection("summary", figures=[radar_figure(rows)]),
        ReportSection("scores", html=table),
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

import matplotlib

matplotlib.use("Agg")  # files only; never needs a display
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
import torch  # noqa: E402
from matplotlib.figure import Figure  # noqa: E402
from matplotlib.lines import Line2D  # noqa: E402

from .. import __version__  # noqa: E402
from ..errors import InputError  # noqa: E402
from ..io import atomic_file  # noqa: E402

#: The part-world summary scores, each in ``[0, 1]`` (higher is better), in radar order.
RADAR_AXES = ("accuracy", "bi", "completeness", "correctness", "contrastivity")
#: Shown in a table cell whose value is missing (None or NaN).
MISSING = "–"
PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"

#: What a report figure may be: a matplotlib figure (rendered, then closed), PNG bytes, or a PNG file.
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
    colours = plt.get_cmap("tab10" if len(rows) <= 10 else "tab20")
    legend_height = 0.3 + 0.2 * len(rows)  # inches below the plot for the legend, one line per row
    fig, ax = plt.subplots(figsize=(6.5, 6.0 + legend_height), subplot_kw={"projection": "polar"})
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


def _outline_parts(ax: Any, masks: np.ndarray, colours: np.ndarray) -> None:
    """Draw the outline of each part mask ``(K, H, W)`` on ``ax``; empty and full masks are skipped."""
    for mask, colour in zip(masks, colours):
        if 0.0 < mask.mean() < 1.0:
            ax.contour(mask, levels=[0.5], colors=[colour], linewidths=1.0)


def explanations_figure(images: torch.Tensor, maps: Mapping[str, torch.Tensor], titles: Sequence[str] | None = None,
                        part_masks: torch.Tensor | None = None, part_names: Sequence[str] | None = None) -> Figure:
    """A grid of explanations: one row per image, the image first, then one column per explainer.

    ``images (N, C, H, W)`` in ``[0, 1]`` (``C`` = 1 or 3); ``maps`` maps an explainer name to its
    attributions ``(N, 1, H, W)`` or ``(N, H, W)``; ``titles`` (``N`` strings, e.g.
    ``"true: X / pred: Y"``) go above the images. Each map is drawn over the greyed image,
    normalised by the 99th percentile of its ``|value|`` (stated under the panel; colours saturate above it):

    - a map of only 0s and 1s is a binary mask: the image shows through it and is dimmed outside;
    - a map with negative values uses a diverging colormap centred on 0 (red +, blue -);
    - otherwise a sequential colormap; overlay opacity grows with ``|value|``.

    ``part_masks (N, K, H, W)`` outlines the ground-truth parts on every panel, part ``k`` in
    colour ``k``, named in a legend when ``part_names`` (``K`` strings) is given.
    """
    if not isinstance(images, torch.Tensor) or images.dim() != 4 or images.shape[1] not in (1, 3) or len(images) == 0:
        raise InputError(f"explanation images must be a tensor (N >= 1, 1 or 3, H, W), "
                         f"got {tuple(images.shape) if isinstance(images, torch.Tensor) else type(images).__name__}")
    if not maps:
        raise InputError("explanations figure needs at least one map, got none")
    n, _, h, w = images.shape
    pictures = _as_numpy(images, "explanation images").clip(0.0, 1.0).transpose(0, 2, 3, 1)
    grey = np.repeat(0.2 + 0.6 * pictures.mean(axis=3, keepdims=True), 3, axis=3)
    arrays = {}
    for name, attribution in maps.items():
        shape = tuple(attribution.shape)
        if shape not in ((n, 1, h, w), (n, h, w)):
            raise InputError(f"map {name!r} must be ({n}, 1, {h}, {w}) or ({n}, {h}, {w}) like the images, got {shape}")
        arrays[name] = _as_numpy(attribution, f"map {name!r}").reshape(n, h, w)
    if titles is not None and len(titles) != n:
        raise InputError(f"explanations figure needs one title per image ({n}), got {len(titles)}")
    parts, part_colours = None, None
    if part_masks is not None:
        if part_masks.dim() != 4 or part_masks.shape[0] != n or tuple(part_masks.shape[2:]) != (h, w):
            raise InputError(f"part masks must be ({n}, K, {h}, {w}) like the images, got {tuple(part_masks.shape)}")
        parts = _as_numpy(part_masks, "part masks")
        part_colours = plt.get_cmap("tab10")(np.arange(parts.shape[1]) % 10)
        if part_names is not None and len(part_names) != parts.shape[1]:
            raise InputError(f"part_names must name the {parts.shape[1]} parts, got {len(part_names)}")

    cols = 1 + len(arrays)
    legend = parts is not None and part_names is not None
    fig, axes = plt.subplots(n, cols, figsize=(2.1 * cols, 2.3 * n + (0.5 if legend else 0.0)), squeeze=False)
    for ax in axes.flat:
        ax.set_xticks([])
        ax.set_yticks([])
    for i in range(n):
        axes[i, 0].imshow(pictures[i], interpolation="nearest")
        axes[i, 0].set_title(titles[i] if titles is not None else f"image {i}", fontsize=8)
        for j, (name, array) in enumerate(arrays.items(), start=1):
            a, ax = array[i], axes[i, j]
            # a few extreme pixels (integrated gradients) would wash the rest out: scale to the
            # 99th percentile of |value| (the max where that is 0) and saturate above it
            scale = float(np.percentile(np.abs(a), 99)) or float(np.abs(a).max())
            if np.isin(array, (0.0, 1.0)).all():  # binary masks (judged on the whole batch)
                shown = a[:, :, None] * pictures[i] + (1 - a[:, :, None]) * 0.5 * grey[i]
                note = f"mask, area {a.mean():.0%}"
            else:
                relative = np.clip(a / (scale if scale > 0 else 1.0), -1.0, 1.0)
                signed = bool((array < 0).any())
                colour = plt.get_cmap("RdBu_r")(0.5 + 0.5 * relative) if signed else plt.get_cmap("inferno")(relative)
                alpha = 0.85 * np.abs(relative)[:, :, None]
                shown = (1 - alpha) * grey[i] + alpha * colour[:, :, :3]
                note = f"{'±' if signed else ''}{scale:.3g} (99th pct.)"
            ax.imshow(shown, interpolation="nearest")
            ax.set_xlabel(note, fontsize=7)
            if i == 0:
                ax.set_title(name, fontsize=9)
        if parts is not None:
            for ax in axes[i]:
                _outline_parts(ax, parts[i], part_colours)
    if legend:
        handles = [Line2D([], [], color=part_colours[k], label=part) for k, part in enumerate(part_names)]
        fig.legend(handles=handles, loc="lower center", ncol=min(len(handles), 6), fontsize=8, frameon=False)
    fig.tight_layout(rect=(0, 0.5 / fig.get_figheight() if legend else 0, 1, 1))
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


def metrics_table_html(rows: Mapping[str, Mapping[str, Any]], columns: Sequence[str] | None = None,
                       higher_is_better: Mapping[str, bool] | None = None) -> str:
    """An HTML ``<table class="metrics">`` with one row per entry of ``rows``, one column per metric.

    ``columns`` defaults to every metric in the rows, in first-seen order. Numbers are formatted
    to 3 decimals (integers as integers), None/NaN as ``–``, other values as text; names are
    escaped. Where ``higher_is_better[column]`` is given the header carries an arrow and the best
    number in the column (all ties) is in bold.
    """
    if not rows:
        raise InputError("metrics table needs at least one row, got none")
    if columns is None:
        columns = list(dict.fromkeys(key for scores in rows.values() for key in scores))
    directions = higher_is_better or {}
    best = {}
    for column in columns:
        if column in directions:
            values = [v for v in (scores.get(column) for scores in rows.values())
                      if isinstance(v, numbers.Real) and not isinstance(v, bool) and not _missing(v)]
            if values:
                best[column] = max(values) if directions[column] else min(values)
    header = ["<th></th>"]
    for column in columns:
        if column in directions:
            hint = "higher is better" if directions[column] else "lower is better"
            arrow = "↑" if directions[column] else "↓"
            header.append(f'<th title="{hint}">{html.escape(column)} {arrow}</th>')
        else:
            header.append(f"<th>{html.escape(column)}</th>")
    lines = ['<table class="metrics">', f"<thead><tr>{''.join(header)}</tr></thead>", "<tbody>"]
    for name, scores in rows.items():
        cells = [f"<th>{html.escape(name)}</th>"]
        for column in columns:
            value, text = scores.get(column), _format(scores.get(column))
            bold = column in best and not isinstance(value, bool) and not _missing(value) and value == best[column]
            cells.append(f"<td><strong>{text}</strong></td>" if bold else f"<td>{text}</td>")
        lines.append(f"<tr>{''.join(cells)}</tr>")
    lines += ["</tbody>", "</table>"]
    return "\n".join(lines)


def figure_to_png_bytes(fig: Figure, dpi: int = 100) -> bytes:
    """Render ``fig`` as PNG bytes (tight bounding box) and close it."""
    buffer = io.BytesIO()
    try:
        fig.savefig(buffer, format="png", dpi=dpi, bbox_inches="tight")
    finally:
        plt.close(fig)
    return buffer.getvalue()


@dataclass(frozen=True)
class ReportSection:
    """One section of the report, rendered in this order under its ``title`` heading:

    - ``text``: plain text, escaped; blank lines separate paragraphs;
    - ``html``: a trusted HTML fragment inserted as is (e.g. :func:`metrics_table_html`);
    - ``figures``: matplotlib figures (rendered, then closed), PNG bytes or PNG file paths;
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


_CSS = """
body { font: 15px/1.5 system-ui, -apple-system, "Segoe UI", sans-serif; color: #222; max-width: 1100px;
       margin: 2em auto; padding: 0 1em; }
h1 { font-size: 1.6em; margin-bottom: 0.2em; }
h2 { font-size: 1.25em; border-bottom: 1px solid #ddd; padding-bottom: 0.2em; margin-top: 2em; }
nav ol { padding-left: 1.4em; }
table.metrics { border-collapse: collapse; margin: 1em 0; font-variant-numeric: tabular-nums; }
table.metrics th, table.metrics td { border: 1px solid #ddd; padding: 0.25em 0.6em; text-align: right; }
table.metrics thead th { background: #f4f4f4; text-align: center; }
table.metrics tbody th { text-align: left; font-weight: normal; }
figure { margin: 1em 0; }
figure img { max-width: 100%; height: auto; }
pre { background: #f6f6f6; border: 1px solid #e4e4e4; padding: 0.6em; overflow-x: auto; font-size: 0.85em; }
footer { margin-top: 3em; color: #888; font-size: 0.8em; }
""".strip()


def write_report(path: str | os.PathLike, title: str, sections: Sequence[ReportSection]) -> Path:
    """Write a self-contained HTML page (no external resources) and return its path.

    The page has ``title``, a contents list linking to each section, then the sections (see
    :class:`ReportSection`); every figure is embedded as a ``data:image/png;base64`` URI. The file
    is written beside ``path`` and moved into place (``os.replace``), so readers never see half a
    page. ``path`` must end in ``.html`` or ``.htm``.
    """
    path = Path(path)
    if path.suffix.lower() not in (".html", ".htm"):
        raise InputError(f"report must be an .html file, got {path}")
    body = [f"<h1>{html.escape(title)}</h1>"]
    if sections:
        links = "".join(f'<li><a href="#section-{k}">{html.escape(s.title)}</a></li>' for k, s in enumerate(sections, 1))
        body.append(f"<nav><ol>{links}</ol></nav>")
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
