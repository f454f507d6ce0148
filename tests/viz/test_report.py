import math
import shutil
import subprocess
from html.parser import HTMLParser

import matplotlib.pyplot as plt
import numpy as np
import pytest
import torch

from sparsex.errors import InputError
from sparsex.viz import (
    ReportSection,
    explanations_figure,
    figure_to_png_bytes,
    metrics_table_html,
    radar_figure,
    write_report,
)

PNG = b"\x89PNG\r\n\x1a\n"
VOID = {"meta", "img", "br", "hr", "link", "input"}


class TagChecker(HTMLParser):
    """Records every tag and every src/href; fails on a closing tag that does not match the open one."""

    def __init__(self) -> None:
        super().__init__()
        self.stack: list[str] = []
        self.seen: list[str] = []
        self.links: list[str] = []

    def handle_starttag(self, tag, attrs):
        self.seen.append(tag)
        self.links += [value for name, value in attrs if name in ("src", "href")]
        if tag not in VOID:
            self.stack.append(tag)

    def handle_endtag(self, tag):
        assert self.stack and self.stack[-1] == tag, f"</{tag}> closes <{self.stack[-1] if self.stack else None}>"
        self.stack.pop()


def parse(page: str) -> TagChecker:
    checker = TagChecker()
    checker.feed(page)
    checker.close()
    assert checker.stack == [], f"unclosed tags: {checker.stack}"
    return checker


ROWS = {
    "lite0 / integrated-gradients": {"accuracy": 0.9, "bi": 0.7, "completeness": 0.5, "correctness": 0.6,
                                     "contrastivity": 0.3},
    "lite0 / minimal-mask": {"accuracy": 0.9, "bi": None, "completeness": 0.8, "correctness": 0.4},
}


@pytest.fixture
def batch():
    """Two 3x16x16 images, a signed map, a non-negative map, a binary mask and two part masks."""
    images = torch.rand(2, 3, 16, 16, generator=torch.Generator().manual_seed(0))
    signed = torch.linspace(-1, 2, 16 * 16).reshape(1, 1, 16, 16).expand(2, 1, 16, 16)
    parts = torch.zeros(2, 2, 16, 16, dtype=torch.bool)
    parts[:, 0, 2:6, 2:6] = True
    parts[:, 1, 9:14, 8:15] = True
    maps = {"signed": signed, "positive": signed.abs()[:, 0], "mask": parts[:, :1].float()}
    return images, maps, parts


def test_radar_draws_one_polygon_per_row_and_marks_missing_scores():
    fig = radar_figure(ROWS, title="part-world")
    ax = fig.axes[0]
    labels = [t.get_text() for t in ax.get_legend().get_texts()]
    assert labels == ["lite0 / integrated-gradients", "lite0 / minimal-mask (n/a: bi, contrastivity)"]
    assert [t.get_text() for t in ax.get_xticklabels()] == ["accuracy", "bi", "completeness", "correctness",
                                                            "contrastivity"]
    hollow = [line for line in ax.get_lines() if line.get_markerfacecolor() == "white"]
    assert len(hollow) == 1 and np.allclose(hollow[0].get_ydata(), 0.0) and len(hollow[0].get_xdata()) == 2
    assert figure_to_png_bytes(fig).startswith(PNG)
    assert not plt.fignum_exists(fig.number)  # closed after rendering


def test_radar_treats_nan_as_missing_and_rejects_bad_scores():
    fig = radar_figure({"a": {"x": 0.5, "y": math.nan, "z": 1.0}}, axes=("x", "y", "z"))
    assert "n/a: y" in fig.axes[0].get_legend().get_texts()[0].get_text()
    plt.close(fig)
    with pytest.raises(InputError, match="at least one row"):
        radar_figure({})
    with pytest.raises(InputError, match=r"'bi' of 'a' must be a number in \[0, 1\]"):
        radar_figure({"a": {"bi": 1.5}})
    with pytest.raises(InputError, match="at least 3 axes"):
        radar_figure(ROWS, axes=("accuracy", "bi"))


def test_explanations_figure_is_a_grid_of_images_by_explainers(batch):
    images, maps, parts = batch
    fig = explanations_figure(images, maps, titles=["true: a / pred: a", "true: b / pred: a"], part_masks=parts,
                              part_names=["head", "tail"])
    axes = fig.axes
    assert len(axes) == 2 * 4
    assert [ax.get_title() for ax in axes[:4]] == ["true: a / pred: a", "signed", "positive", "mask"]
    assert axes[4].get_title() == "true: b / pred: a"
    p99 = float(np.percentile(np.abs(np.linspace(-1, 2, 256)), 99))  # colours saturate above it
    assert [ax.get_xlabel() for ax in axes[1:4]] == [f"±{p99:.3g} (99th pct.)", f"{p99:.3g} (99th pct.)", "mask, area 6%"]
    assert len(axes[1].collections) == 2  # one outline per part
    assert [t.get_text() for t in fig.legends[0].get_texts()] == ["head", "tail"]
    signed = axes[1].get_images()[0].get_array()
    assert signed.shape == (16, 16, 3) and 0.0 <= signed.min() and signed.max() <= 1.0
    plt.close(fig)


def test_explanations_figure_rejects_bad_input(batch):
    images, maps, parts = batch
    open_before = set(plt.get_fignums())
    with pytest.raises(InputError, match=r"map 'bad' must be \(2, 1, 16, 16\) or \(2, 16, 16\)"):
        explanations_figure(images, {"bad": torch.zeros(2, 1, 8, 8)})
    with pytest.raises(InputError, match="one title per image"):
        explanations_figure(images, maps, titles=["only one"])
    with pytest.raises(InputError, match="part masks must be"):
        explanations_figure(images, maps, part_masks=parts[:1])
    with pytest.raises(InputError, match="NaN or Inf"):
        explanations_figure(images, {"nan": torch.full((2, 16, 16), math.nan)})
    with pytest.raises(InputError, match="at least one map"):
        explanations_figure(images, {})
    with pytest.raises(InputError, match=r"\(N >= 1, 1 or 3, H, W\)"):
        explanations_figure(images[0], maps)
    assert set(plt.get_fignums()) == open_before  # nothing half-built left open


def test_metrics_table_escapes_names_bolds_the_best_and_shows_missing():
    rows = {
        "<script>alert(1)</script>": {"bi": 0.5, "deletion_auc": 0.2, "local_size": 4, "note": "a&b"},
        "ig": {"bi": 0.75, "deletion_auc": None, "local_size": 5},
        "rise": {"bi": 0.75, "deletion_auc": 0.3, "local_size": math.nan},
    }
    table = metrics_table_html(rows, higher_is_better={"bi": True, "deletion_auc": False})
    assert "<script>" not in table and "&lt;script&gt;alert(1)&lt;/script&gt;" in table
    assert "a&amp;b" in table
    assert table.count("<strong>0.750</strong>") == 2  # ties are both best
    assert "<strong>0.200</strong>" in table and "<strong>0.300</strong>" not in table
    assert "<td>4</td>" in table and "<strong>4" not in table  # no direction given: nothing bold
    assert table.count("<td>–</td>") == 4  # None, NaN and the two absent notes
    assert 'title="higher is better">bi ↑' in table and "deletion_auc ↓" in table
    assert parse(table).seen.count("tr") == 4
    only = metrics_table_html(rows, columns=["bi"])
    assert "deletion_auc" not in only and "<strong>" not in only
    with pytest.raises(InputError, match="at least one row"):
        metrics_table_html({})


def test_report_is_self_contained_html(tmp_path, batch):
    images, maps, parts = batch
    open_before = set(plt.get_fignums())
    png_file = tmp_path / "radar.png"
    png_file.write_bytes(figure_to_png_bytes(radar_figure(ROWS)))
    table = metrics_table_html({"<b>name</b>": {"bi": 0.5}}, higher_is_better={"bi": True})
    sections = [
        ReportSection("summary <1>", text="first paragraph\n\nsecond <para>", figures=[png_file]),
        ReportSection("scores", html=table),
        ReportSection("explanations", figures=[explanations_figure(images, maps, part_masks=parts),
                                               png_file.read_bytes()]),
        ReportSection("command", pre="sparsex evaluate --out 'a b' <x>"),
    ]
    out = write_report(tmp_path / "out" / "report.html", "lite0 & friends", sections)
    page = out.read_text(encoding="utf-8")
    assert out == tmp_path / "out" / "report.html"
    assert table in page
    assert page.count('src="data:image/png;base64,') == 3
    assert "<p>second &lt;para&gt;</p>" in page and "<h2>summary &lt;1&gt;</h2>" in page
    assert "<pre>sparsex evaluate --out &#x27;a b&#x27; &lt;x&gt;</pre>" in page
    assert "<title>lite0 &amp; friends</title>" in page
    checker = parse(page)
    assert checker.seen.count("section") == 4 and checker.seen.count("img") == 3
    assert all(link.startswith(("data:image/png;base64,", "#section-")) for link in checker.links)
    assert "http://" not in page and "https://" not in page
    assert set(plt.get_fignums()) == open_before  # the embedded figure was closed


def test_report_replaces_an_existing_file_atomically(tmp_path):
    out = tmp_path / "report.html"
    out.write_text("old")
    write_report(out, "first", [ReportSection("a", text="one")])
    write_report(out, "second", [ReportSection("b", text="two")])
    assert "second" in out.read_text() and "first" not in out.read_text()
    assert sorted(p.name for p in tmp_path.iterdir()) == ["report.html"]  # no temporary files left


def test_report_rejects_bad_input_and_leaves_the_old_file(tmp_path):
    out = tmp_path / "report.html"
    out.write_text("old")
    with pytest.raises(InputError, match="not a PNG image"):
        write_report(out, "t", [ReportSection("a", figures=[b"GIF89a..."])])
    with pytest.raises(InputError, match="cannot be read"):
        write_report(out, "t", [ReportSection("a", figures=[tmp_path / "missing.png"])])
    with pytest.raises(InputError, match="must be a matplotlib Figure"):
        write_report(out, "t", [ReportSection("a", figures=[np.zeros((4, 4))])])
    with pytest.raises(InputError, match=r"must be an \.html file"):
        write_report(tmp_path / "report.txt", "t", [])
    assert out.read_text() == "old"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["report.html"]


def test_errors_are_one_line():
    with pytest.raises(InputError) as info:
        radar_figure({"multi\nline": {"bi": 2.0}})
    assert "\n" not in str(info.value)


BROWSER = next((b for b in ("chromium", "chromium-browser", "google-chrome") if shutil.which(b)), None)


@pytest.mark.skipif(BROWSER is None, reason="no Chromium/Chrome installed for a headless screenshot")
def test_report_renders_in_a_headless_browser(tmp_path):
    page = write_report(tmp_path / "report.html", "render check", [
        ReportSection("scores", html=metrics_table_html(ROWS, higher_is_better={"bi": True})),
        ReportSection("radar", figures=[radar_figure(ROWS)]),
    ])
    shot = tmp_path / "shot.png"
    subprocess.run([shutil.which(BROWSER), "--headless", "--no-sandbox", "--disable-gpu", f"--screenshot={shot}",
                    "--window-size=1200,2000", page.resolve().as_uri()], check=True, timeout=60, capture_output=True)
    assert shot.read_bytes().startswith(PNG)
    pixels = plt.imread(shot)
    assert pixels.shape[:2] == (2000, 1200)
    assert pixels[..., :3].std() > 0.05  # not a blank page
