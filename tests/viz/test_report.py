import base64
import html
import io
import json
import math
import os
import re
import shutil
import subprocess
from html.parser import HTMLParser

import matplotlib.pyplot as plt
import numpy as np
import pytest
import torch
from PIL import Image

from sparsex.errors import InputError
from sparsex.viz import (
    MapRow,
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


def embedded_pngs(page: str) -> list[Image.Image]:
    """Every data-URI image of the page, decoded (fails on one that is not a whole PNG)."""
    images = []
    for data in re.findall(r'src="data:image/png;base64,([^"]+)"', page):
        image = Image.open(io.BytesIO(base64.b64decode(data, validate=True)))
        image.load()
        assert image.format == "PNG" and min(image.size) > 0
        images.append(image)
    return images


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
    rows = [MapRow("signed", signed, ["pred a", "pred a"]), MapRow("positive", signed.abs()[:, 0]),
            MapRow("mask", parts[:, :1].float())]
    return images, rows, parts


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
    assert plt.get_fignums() == []  # drawn without pyplot: nothing left open


def test_radar_treats_nan_as_missing_and_rejects_bad_scores():
    fig = radar_figure({"a": {"x": 0.5, "y": math.nan, "z": 1.0}}, axes=("x", "y", "z"))
    assert "n/a: y" in fig.axes[0].get_legend().get_texts()[0].get_text()
    with pytest.raises(InputError, match="at least one row"):
        radar_figure({})
    with pytest.raises(InputError, match=r"'bi' of 'a' must be a number in \[0, 1\]"):
        radar_figure({"a": {"bi": 1.5}})
    with pytest.raises(InputError, match="at least 3 axes"):
        radar_figure(ROWS, axes=("accuracy", "bi"))


def test_explanations_grid_has_a_column_per_image_and_a_row_per_map(batch):
    images, rows, parts = batch
    fig = explanations_figure(images, rows, captions=["#0: a", "#1: b"], part_masks=parts, part_names=["head", "tail"])
    axes = np.array(fig.axes).reshape(5, 2)  # image, parts, then the three rows of maps; one column per image
    assert [ax.get_title() for ax in axes[0]] == ["#0: a", "#1: b"]
    assert [ax.get_ylabel() for ax in axes[:, 0]] == ["image", "parts", "signed", "positive", "mask"]
    assert [ax.get_title() for ax in axes[2]] == ["pred a", "pred a"] and axes[3, 0].get_title() == ""
    values = rows[0].maps.abs().numpy()  # the signed map, and the non-negative one
    p99 = float(np.percentile(values, 99))  # colours saturate above it
    notes = [ax.texts[0].get_text() for ax in axes[2:, 0]]
    assert notes == [f"±{p99:.2g}", f"{values.min():.2g}–{p99:.2g}", "area 6%"]  # signed, non-negative, mask
    assert [t.get_text() for t in fig.legends[0].get_texts()] == ["head", "tail"]
    tinted = axes[1, 0].get_images()[0].get_array()  # the parts in their colours over the faded image
    assert tinted.shape == (16, 16, 3) and not np.allclose(tinted[3, 3], tinted[0, 0])
    signed = axes[2, 0].get_images()[0].get_array()
    assert signed.shape == (16, 16, 3) and 0.0 <= signed.min() and signed.max() <= 1.0
    # maps at another resolution than the images (a model that saw them larger) are drawn over the resized image
    large = explanations_figure(images[:, :1], [MapRow("x2", torch.rand(2, 1, 32, 32))])
    assert large.axes[2].get_images()[0].get_array().shape == (32, 32, 3)
    assert figure_to_png_bytes(large).startswith(PNG)
    assert plt.get_fignums() == []


def test_explanations_figure_rejects_bad_input(batch):
    images, rows, parts = batch
    with pytest.raises(InputError, match=r"maps of row 'bad' must be \(2, 1, h, w\) or \(2, h, w\), one per image"):
        explanations_figure(images, [MapRow("bad", torch.zeros(3, 1, 8, 8))])
    with pytest.raises(InputError, match="one caption per image"):
        explanations_figure(images, rows, captions=["only one"])
    with pytest.raises(InputError, match="row 'signed' needs one caption per image"):
        explanations_figure(images, [MapRow("signed", rows[0].maps, ["one"])])
    with pytest.raises(InputError, match="part masks must be"):
        explanations_figure(images, rows, part_masks=parts[:1])
    with pytest.raises(InputError, match="NaN or Inf"):
        explanations_figure(images, [MapRow("nan", torch.full((2, 16, 16), math.nan))])
    with pytest.raises(InputError, match="at least one row of maps"):
        explanations_figure(images, [])
    with pytest.raises(InputError, match="rows must be MapRow, got dict"):
        explanations_figure(images, [{"signed": rows[0].maps}])
    with pytest.raises(InputError, match=r"\(N >= 1, 1 or 3, H, W\)"):
        explanations_figure(images[0], rows)
    assert plt.get_fignums() == []  # nothing half-built left open


def test_metrics_table_takes_directions_from_the_registry():
    rows = {
        "<script>alert(1)</script>": {"bi": 0.5, "deletion_auc": 0.2, "global_size": 4, "completeness_tau": 0.1,
                                      "note": "a&b"},
        "ig": {"bi": 0.75, "deletion_auc": None, "global_size": 5, "completeness_tau": 0.3, "my_score": 1.0},
        "rise": {"bi": 0.75, "deletion_auc": 0.3, "global_size": math.nan, "completeness_tau": 0.2, "my_score": 2.0},
    }
    table = metrics_table_html(rows)
    assert "<script>" not in table and "&lt;script&gt;alert(1)&lt;/script&gt;" in table
    assert "a&amp;b" in table
    assert table.count("<strong>0.750</strong>") == 2  # ties are both best
    assert "<strong>0.200</strong>" in table and "<strong>0.300</strong>" not in table  # deletion AUC: lower is better
    assert "<strong>4</strong>" in table and "<td>5</td>" in table  # global size: lower is better
    assert "<td>0.100</td>" in table and "<td>0.200</td>" in table  # a setting: no best, nothing bold
    assert "<td>1.000</td>" in table and "<td>2.000</td>" in table  # an unregistered key: the same
    assert table.count("<td>–</td>") == 5  # None, NaN and the three absent entries
    headers = re.findall(r"<th( [^>]*)?>(.*?)</th>", table.split("</thead>")[0])
    texts = [text for _, text in headers]
    assert "BI&nbsp;↑" in texts and "del AUC&nbsp;↓" in texts and "global size (weights)&nbsp;↓" in texts
    assert "compl τ" in texts and "my_score" in texts  # no arrow without a direction
    assert 'title="deletion_auc: area under' in table and "(lower is better)" in table
    # in the registry's order, grouped under their categories
    assert texts.index("BI&nbsp;↑") < texts.index("del AUC&nbsp;↓") < texts.index("global size (weights)&nbsp;↓") < texts.index("compl τ")
    assert '<th class="category" colspan="1">part protocols</th>' in table
    assert '<th class="category" colspan="2"></th>' in table  # the unregistered keys: no category named
    assert parse(table).seen.count("tr") == 5
    assert table.startswith('<div class="table-scroll">') and table.endswith("</div>")  # scrolls on its own, not the page
    only = metrics_table_html(rows, columns=["bi"])
    assert "del AUC" not in only and "class=\"category\"" not in only  # one category: no group row
    single = metrics_table_html({"ig": {"bi": 0.5}})
    assert "<strong>" not in single  # one value is no "best"
    with pytest.raises(InputError, match="at least one row"):
        metrics_table_html({})


def test_report_is_self_contained_html(tmp_path, batch):
    images, rows, parts = batch
    png_file = tmp_path / "radar.png"
    png_file.write_bytes(figure_to_png_bytes(radar_figure(ROWS)))
    table = metrics_table_html({"<b>name</b>": {"bi": 0.5}})
    sections = [
        ReportSection("summary <1>", text="first paragraph\n\nsecond <para>", figures=[png_file]),
        ReportSection("scores", html=table),
        ReportSection("explanations", figures=[explanations_figure(images, rows, part_masks=parts),
                                               png_file.read_bytes()]),
        ReportSection("command", pre="sparsex evaluate --out 'a b' <x>"),
    ]
    out = write_report(tmp_path / "out" / "report.html", "lite0 & friends", sections)
    page = out.read_text(encoding="utf-8")
    assert out == tmp_path / "out" / "report.html"
    assert table in page
    assert len(embedded_pngs(page)) == 3
    assert "<p>second &lt;para&gt;</p>" in page and "<h2>summary &lt;1&gt;</h2>" in page
    assert "<pre>sparsex evaluate --out &#x27;a b&#x27; &lt;x&gt;</pre>" in page
    assert "<title>lite0 &amp; friends</title>" in page
    assert "<header><h1>lite0 &amp; friends</h1><nav>" in page  # a one-line header links the sections
    checker = parse(page)
    assert checker.seen.count("section") == 4 and checker.seen.count("img") == 3
    assert all(link.startswith(("data:image/png;base64,", "#section-")) for link in checker.links)
    assert "http://" not in page and "https://" not in page
    assert plt.get_fignums() == []


def test_report_replaces_an_existing_file_atomically(tmp_path):
    out = tmp_path / "report.html"
    out.write_text("old")
    write_report(out, "first", [ReportSection("a", text="one")])
    write_report(out, "second", [ReportSection("b", text="two")])
    assert "<h1>second</h1>" in out.read_text() and "<h1>first</h1>" not in out.read_text()
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


# ----------------------------------------------------------------------------------------------
# A demo-like report in a real browser.
# ----------------------------------------------------------------------------------------------

#: the row keys of a part-world evaluation (sparsex demo --quick), by explainer kind
PART_ROW = {"accuracy": 0.125, "bi": 0.933, "images": 8, "bi_objects": 15, "csdc": 1.0, "pc": 1.0, "dc": 0.0,
            "distractibility": 0.6, "completeness": 0.633, "completeness_tau": 0.0968, "correctness": 0.711,
            "contrastivity": 0.5, "csdc_images": 1, "distractibility_images": 8, "distractibility_skipped": 0,
            "correctness_images": 8, "correctness_skipped": 0, "contrastivity_images": 1,
            "contrastivity_skipped_model": 7, "contrastivity_skipped_no_pair": 0, "deletion_auc": 0.0458,
            "insertion_auc": 0.046, "explain_seconds": 0.117}
PROTOTYPE_ROW = {**PART_ROW, "local_size": 4.0, "global_size": 12, "consistency": 0.75, "stability": 0.25}
PROTOCOL = {"wall_s": 0.775, "explain_s": 0.14, "forward_passes": 185, "forward_s": 0.0885, "render_s": 0.156,
            "parts_protocol_s": 0.277}


def demo_like_evaluations(root, figure_images=6, image_size=128):
    """Evaluation folders as ``sparsex demo`` writes them (metrics.json, explanations.safetensors,
    report.html): a classifier with integrated gradients, Grad-CAM and a minimal mask, SIDE and
    ProtoS-ViT with their prototypes, on real part-world test images with their part masks."""
    from sparsex.data import create_dataset
    from sparsex.evaluate import EXPLANATIONS_FILE, FigureExplanations

    data = create_dataset("parts", split="test", image_size=image_size, train_size=8, val_size=0, test_size=8)
    items = [data[i] for i in range(figure_images)]
    images = torch.stack([item["image"] for item in items])
    labels = torch.tensor([item["label"] for item in items])
    grid = torch.linspace(-1, 1, image_size)
    blob = torch.exp(-((grid[:, None] - 0.3) ** 2 + (grid[None, :] + 0.2) ** 2) * 8)
    generator = torch.Generator().manual_seed(0)
    models = {"lite0": ["integrated-gradients", "gradcam", "minimal-mask"], "side": ["prototypes"],
              "protosvit": ["prototypes"]}
    folders = []
    for k, (model, explainers) in enumerate(models.items()):
        rows, maps = {}, {}
        for explainer in explainers:
            row = dict(PART_ROW if model == "lite0" else PROTOTYPE_ROW, bi=0.9 + 0.02 * k,
                       deletion_auc=0.04 + 0.01 * len(rows) + 0.001 * k)
            noise = torch.randn(figure_images, 1, image_size, image_size, generator=generator) * 0.2
            if explainer == "minimal-mask":
                row["mask_area"] = 0.08
                maps[explainer] = (blob > 0.5).float().expand(figure_images, 1, -1, -1).clone()
            elif explainer == "integrated-gradients":
                maps[explainer] = blob * 2 - 0.5 + noise
            else:
                maps[explainer] = (blob + noise).clamp(min=0)
            rows[f"{model}.{explainer}"] = row
        folder = root / f"eval-{model}"
        folder.mkdir(parents=True)
        result = {"model": str(folder), "model_name": model, "data": "parts", "split": "test", "images": 8,
                  "explainers": explainers, "skipped": {}, "rows": rows, "model_scores": {"accuracy": 0.125},
                  "protocol": PROTOCOL}
        (folder / "metrics.json").write_text(json.dumps(result))
        predicted = (labels + torch.arange(figure_images) % 2 * k) % len(data.classes)  # some right, some wrong
        FigureExplanations(torch.arange(figure_images), (images * 255).round().to(torch.uint8), labels, predicted,
                           maps, torch.stack([item["part_masks"] for item in items]), list(data.classes),
                           list(data.part_names)).save(folder / EXPLANATIONS_FILE)
        write_report(folder / "report.html", model, [ReportSection("scores", html=metrics_table_html(rows))])
        folders.append(folder)
    return folders


def test_combined_report_of_demo_like_evaluations_shows_the_explanations_first(tmp_path):
    from sparsex.evaluate import write_combined_report

    folders = demo_like_evaluations(tmp_path)
    page = write_combined_report(tmp_path / "report.html", folders, "sparsex demo").read_text()
    titles = re.findall(r"<h2>(.*?)</h2>", page)
    assert titles[:4] == ["Explanations of the predicted class", "Scores", "Summary scores (radar)",
                          "Cost (seconds, forward passes)"]
    first_section = page.split('<section id="section-2">')[0]
    assert first_section.count("<img") == 1  # ONE grid of every model's explanations
    grid = embedded_pngs(first_section)[0]
    assert grid.height > 7 * 100 and grid.width > 6 * 100  # image, parts and five rows of maps; six images
    scores = page.split('<section id="section-2">')[1].split("</section>")[0]
    assert "images" not in re.findall(r"<th[^>]*>([^<]*)", scores)  # counts go to their own table
    assert "Counts and settings" in titles and 'href="eval-side/report.html"' in page
    assert len(embedded_pngs(page)) == 2  # the grid and the radar


BROWSER = next((b for b in ("chromium", "chromium-browser", "google-chrome") if shutil.which(b)), None)
#: flags that run Chromium headless as root, offline, without a profile of its own
CHROMIUM_FLAGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
                  "--disable-background-networking", "--disable-component-update", "--disable-sync",
                  "--hide-scrollbars", "--window-size=1280,800"]
#: appended to a copy of the page: on load, writes what the test checks into the DOM as JSON
PROBE = """<script>
window.addEventListener("load", () => {
  const box = (e) => e.getBoundingClientRect();
  const report = {
    scrollWidth: document.documentElement.scrollWidth, innerWidth: window.innerWidth, innerHeight: window.innerHeight,
    images: [...document.images].map((img) => ({alt: img.alt, complete: img.complete, naturalWidth: img.naturalWidth,
                                                 naturalHeight: img.naturalHeight, top: box(img).top,
                                                 bottom: box(img).bottom})),
    tables: [...document.querySelectorAll("table")].map((t) => ({right: box(t).right, top: box(t).top})),
  };
  const out = document.createElement("pre");
  out.id = "probe";
  out.textContent = JSON.stringify(report);
  document.body.appendChild(out);
});
</script>"""


def require_browser():
    """Skip without Chromium, but fail under CI (where .ci/run installs it)."""
    if BROWSER is None:
        if os.environ.get("CI") == "true":
            pytest.fail("Chromium is missing under CI=true: .ci/run installs it (apt-get install chromium)")
        pytest.skip("no Chromium/Chrome installed for the headless-browser checks")


def chromium(tmp_path, *args):
    """Run headless Chromium with ``args`` and a fresh profile; return its stdout."""
    profile = tmp_path / f"profile-{len(list(tmp_path.glob('profile-*')))}"
    done = subprocess.run([shutil.which(BROWSER), *CHROMIUM_FLAGS, f"--user-data-dir={profile}", *args], timeout=120,
                          capture_output=True, text=True)
    assert done.returncode == 0, done.stderr[-2000:]
    return done.stdout


def test_demo_like_report_in_a_headless_browser(tmp_path):
    from sparsex.evaluate import write_combined_report

    require_browser()
    page = write_combined_report(tmp_path / "report.html", demo_like_evaluations(tmp_path / "evals"), "sparsex demo")
    probed = tmp_path / "probed.html"
    probed.write_text(page.read_text().replace("</body>", PROBE + "\n</body>"))
    dom = chromium(tmp_path, "--virtual-time-budget=5000", "--dump-dom", probed.as_uri())
    found = re.search(r'<pre id="probe">(.*?)</pre>', dom, re.S)
    assert found, "the page did not finish loading (no probe output)"
    report = json.loads(html.unescape(found.group(1)))
    assert report["innerWidth"] == 1280
    assert len(report["images"]) == 2
    for image in report["images"]:  # every embedded figure decodes
        assert image["complete"] and image["naturalWidth"] > 0, image
    assert report["scrollWidth"] <= 1280, "the page is wider than a 1280-px window"
    assert all(table["right"] <= 1280 for table in report["tables"]), report["tables"]
    grid, scores = report["images"][0], report["tables"][0]
    assert grid["alt"].startswith("Explanations") and grid["bottom"] <= report["innerHeight"]  # on the first screen
    assert scores["top"] >= grid["bottom"]  # the scores table follows them

    shot = tmp_path / "shot.png"
    chromium(tmp_path, f"--screenshot={shot}", page.as_uri())
    with Image.open(shot) as image:
        assert image.size == (1280, 800)
        pixels = np.asarray(image.convert("RGB"), dtype=np.float32) / 255
    assert pixels.std() > 0.05  # not a blank page
    assert pixels[100:700, 100:600].std() > 0.1  # the grid of images, above the fold
