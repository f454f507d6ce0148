"""Figures: dataset previews now; explanation figures and the HTML report later."""

from .preview import preview_grid

__all__ = ["preview_grid"]
