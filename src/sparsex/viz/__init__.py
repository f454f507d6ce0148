"""Figures: dataset previews, explanation figures, evaluation plots and the HTML report."""

from .preview import preview_grid
from .prototypes import crop_patch, explanation_figure, gallery_patches
from .report import (
    MapRow,
    ReportSection,
    explanations_figure,
    figure_to_png_bytes,
    metrics_table_html,
    radar_figure,
    report_order,
    write_report,
)

__all__ = ["MapRow", "ReportSection", "crop_patch", "explanation_figure", "explanations_figure", "figure_to_png_bytes",
           "gallery_patches", "metrics_table_html", "preview_grid", "radar_figure", "report_order", "write_report"]
