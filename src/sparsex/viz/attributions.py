"""Figures of one image's explanations: each map over the image, and all of them side by side
(what ``sparsex explain attributions`` writes per image). Maps are coloured as the report
colours them (:func:`sparsex.viz.report.map_panel`: binary masks show the kept pixels, signed
maps a diverging colormap, others a sequential one); a map that is flagged (e.g. an empty mask)
is marked in red as not an explanation instead of passing for one. Drawn with Pillow, not
matplotlib: a few milliseconds a figure, so writing them stays out of the explainers' time
(``benchmarks/explain_throughput.py``)."""

from __future__ import annotations

import os
from typing import Mapping, Sequence

import numpy as np
import torch
from PIL import Image, ImageDraw, ImageFont

from ..io import atomic_file
from .report import map_panel, rgb_pictures

TITLE_PX, NOTE_PX, GAP_PX = 22, 12, 6
#: panels smaller than this are enlarged (nearest neighbour) so that the text fits
MIN_PANEL_PX = 160


def _font(size: int) -> ImageFont.ImageFont:
    return ImageFont.load_default(size=size)


def _panel(image: torch.Tensor, values: torch.Tensor | None, title: str, flags: Sequence[str]) -> Image.Image:
    """One titled panel: the image, or ``values (H, W)`` over it, with the map's scale in a corner."""
    picture = rgb_pictures(image[None])[0]
    if values is None:
        rgb, note = picture, ""
    else:
        rgb, note = map_panel(values.detach().float().cpu().numpy()[None], 0, picture)
        note = note.replace("–", " to ")  # the default font has no en dash
    tile = Image.fromarray((np.clip(rgb, 0, 1) * 255).round().astype(np.uint8))
    if min(tile.size) < MIN_PANEL_PX:
        scale = -(-MIN_PANEL_PX // min(tile.size))
        tile = tile.resize((tile.width * scale, tile.height * scale), Image.NEAREST)
    draw = ImageDraw.Draw(tile)
    if note:
        box = draw.textbbox((3, tile.height - NOTE_PX - 4), note, font=_font(NOTE_PX))
        draw.rectangle(box, fill=(0, 0, 0))
        draw.text((3, tile.height - NOTE_PX - 4), note, fill=(255, 255, 255), font=_font(NOTE_PX))
    if flags:
        text = "NOT AN EXPLANATION\n" + "\n".join(flags)
        box = draw.multiline_textbbox((tile.width // 2, tile.height // 2), text, font=_font(NOTE_PX), anchor="mm")
        draw.rectangle((box[0] - 4, box[1] - 4, box[2] + 4, box[3] + 4), fill=(176, 0, 32))
        draw.multiline_text((tile.width // 2, tile.height // 2), text, fill=(255, 255, 255), font=_font(NOTE_PX),
                            anchor="mm", align="center")
    panel = Image.new("RGB", (tile.width, tile.height + TITLE_PX), (255, 255, 255))
    panel.paste(tile, (0, TITLE_PX))
    ImageDraw.Draw(panel).text((tile.width // 2, TITLE_PX // 2), title, fill=(0, 0, 0), font=_font(13), anchor="mm")
    return panel


def _save(figure: Image.Image, path: str | os.PathLike) -> None:
    with atomic_file(path, "wb") as f:
        figure.save(f, format="png")


def map_overlay(image: torch.Tensor, values: torch.Tensor, title: str, flags: Sequence[str],
                path: str | os.PathLike) -> None:
    """One map ``(H, W)`` over ``image (C, H, W)`` in ``[0, 1]``, titled, as a PNG at ``path``."""
    _save(_panel(image, values, title, flags), path)


def explanation_grid(image: torch.Tensor, maps: Mapping[str, torch.Tensor], title: str,
                     flags: Mapping[str, Sequence[str]], path: str | os.PathLike) -> None:
    """The image and each explainer's map ``(H, W)`` over it, in one row under ``title``, as a PNG at ``path``."""
    panels = [_panel(image, None, "image", ())] + [_panel(image, m, name, flags.get(name, ())) for name, m in maps.items()]
    width = sum(p.width for p in panels) + GAP_PX * (len(panels) - 1)
    figure = Image.new("RGB", (width, panels[0].height + TITLE_PX + GAP_PX), (255, 255, 255))
    ImageDraw.Draw(figure).text((width // 2, TITLE_PX // 2 + 2), title, fill=(0, 0, 0), font=_font(15), anchor="mm")
    x = 0
    for panel in panels:
        figure.paste(panel, (x, TITLE_PX + GAP_PX))
        x += panel.width + GAP_PX
    _save(figure, path)
