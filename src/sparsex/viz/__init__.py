"""Figures: dataset previews now; explanation figures and the HTML report later."""

from .preview import preview_grid
from .prototypes import crop_patch, explanation_figure, gallery_patches

__all__ = ["crop_patch", "explanation_figure", "gallery_patches", "preview_grid"]
