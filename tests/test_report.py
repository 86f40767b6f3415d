"""The HTML report builder and its figures: escaped tables, embedded PNGs, and a real browser rendering it."""

from __future__ import annotations

import base64
import io
import re
import shutil
import subprocess
from pathlib import Path

import matplotlib.pyplot as plt
import numpy as np
import pandas as pd
import pytest
from PIL import Image

from medadv.report import Section, eps_curves, matrix_heatmap, render_report, short_model, table_html

CHROMIUM = shutil.which("chromium") or "/usr/bin/chromium"
EMBEDDED = re.compile(r'<img alt="[^"]*" src="data:image/png;base64,([A-Za-z0-9+/=]+)">')


@pytest.fixture
def attacks() -> pd.DataFrame:
    """Two models under FGSM at three eps, one row without eps (an attack that has none)."""
    return pd.DataFrame(
        {
            "model": ["a", "a", "a", "b", "b", "b", "a"],
            "attack": ["fgsm"] * 6 + ["deepfool"],
            "target": [""] * 7,
            "eps": [0.1, 0.01, 0.05, 0.01, 0.05, 0.1, np.nan],
            "fooling_rate": [0.9, 0.1, 0.5, 0.2, 0.6, 1.0, 0.7],
            "robust_accuracy": [0.1, 0.9, 0.5, 0.8, 0.4, 0.0, 0.3],
            "robust_accuracy_low": [0.0, 0.7, 0.3, 0.6, 0.2, 0.0, 0.1],
            "robust_accuracy_high": [0.3, 1.0, 0.7, 0.9, 0.6, 0.2, 0.5],
        }
    )


def _report(attacks: pd.DataFrame) -> str:
    matrix = pd.DataFrame([[0.25, np.nan], [1.0, 0.5]], index=["A", "N"], columns=["A", "N"])
    return render_report(
        "medadv evaluation: <tests>",
        [
            Section(
                title="Attacks",
                text="fooling rate & robust accuracy",
                tables={"runs": attacks},
                figures={
                    "vs eps": eps_curves(attacks, ["fooling_rate", "robust_accuracy"], line=["model", "attack"]),
                    "success": matrix_heatmap(matrix, "success by source and target"),
                },
            ),
            Section(title="Skipped runs", tables={"skipped": pd.DataFrame(columns=["run_id", "reason"])}),
            Section(title="Wide", tables={"wide": pd.DataFrame({f"a long column name {i}": [0.5] for i in range(30)})}),
        ],
        facts={"experiment": "tests"},
    )


def test_tables_escape_text_format_numbers_and_mark_missing_values() -> None:
    table = pd.DataFrame({"model": ["<b>x</b>"], "rate": [0.123456], "auc": [np.nan]})
    html = table_html(table)
    assert "&lt;b&gt;x&lt;/b&gt;" in html and "<b>x" not in html
    assert "<td>0.1235</td>" in html and "<td>-</td>" in html
    assert table_html(pd.DataFrame(columns=["run_id"])) == ""


def test_report_is_self_contained_with_every_figure_embedded_as_a_png(attacks: pd.DataFrame) -> None:
    html = _report(attacks)
    images = [Image.open(io.BytesIO(base64.b64decode(data))) for data in EMBEDDED.findall(html)]
    assert [image.format for image in images] == ["PNG", "PNG"]
    assert all(image.width > 300 and image.height > 150 for image in images)
    assert "<title>medadv evaluation: &lt;tests&gt;</title>" in html
    assert "fooling rate &amp; robust accuracy" in html
    assert not re.search(r"<script|<link|src=\"http|url\(", html)  # nothing fetched from elsewhere
    assert "Skipped runs" not in html and "none" not in html  # a section with nothing to show is left out


def test_eps_curves_draw_one_line_per_model_and_attack_sorted_by_eps(attacks: pd.DataFrame) -> None:
    figure = eps_curves(attacks, ["fooling_rate", "robust_accuracy"], line=["model", "attack"])
    fooling, robust = figure.axes
    lines = {line.get_label(): (list(line.get_xdata()), list(line.get_ydata())) for line in fooling.get_lines()}
    assert lines == {"a / fgsm": ([0.01, 0.05, 0.1], [0.1, 0.5, 0.9]), "b / fgsm": ([0.01, 0.05, 0.1], [0.2, 0.6, 1.0])}
    assert [list(line.get_ydata()) for line in robust.get_lines()] == [[0.9, 0.5, 0.1], [0.8, 0.4, 0.0]]
    assert fooling.get_ylabel() == "fooling rate"
    assert [tick.get_text() for tick in fooling.get_xticklabels()] == ["0.01", "0.05", "0.1"]  # the eps run
    assert not fooling.collections  # no interval columns for the fooling rate: no band
    band = robust.collections[0].get_paths()[0].vertices  # model a's robust accuracy between its bounds
    assert band[:, 1].min() == pytest.approx(0.0) and band[:, 1].max() == pytest.approx(1.0)
    plt.close(figure)


def test_a_single_eps_is_a_bar_per_series_with_its_interval(attacks: pd.DataFrame) -> None:
    figure = eps_curves(attacks[attacks["eps"] == 0.05], ["robust_accuracy"], line=["model"])
    axis = figure.axes[0]
    assert [bar.get_height() for bar in axis.patches] == [0.5, 0.4]
    assert axis.get_xlabel() == "eps = 0.05"
    # each bar's interval: 0.3 to 0.7 for a, 0.2 to 0.6 for b
    segments = [segment for whiskers in axis.collections for segment in whiskers.get_segments()]
    spans = sorted(tuple(np.round(segment[:, 1], 6)) for segment in segments)
    assert spans == [(0.2, 0.6), (0.3, 0.7)]
    assert [text.get_text() for text in axis.get_legend().get_texts()] == ["a", "b"]
    plt.close(figure)


def test_model_uris_are_shortened_for_legends_and_cells() -> None:
    assert short_model("models:/pneumonia-cnn/3") == "pneumonia-cnn v3"
    assert short_model("models:/pneumonia-cnn@candidate") == "pneumonia-cnn@candidate"
    assert short_model("runs:/0123456789abcdef0123456789abcdef/model") == "run 01234567"
    assert short_model("/tmp/model.keras") == "/tmp/model.keras"


def test_matrix_heatmap_writes_each_cell_and_greys_out_missing_ones() -> None:
    matrix = pd.DataFrame(
        [[np.nan, 0.25], [1.0, np.nan]],
        index=pd.Index(["A", "N"], name="source"),
        columns=pd.Index(["A", "N"], name="target"),
    )
    figure = matrix_heatmap(matrix, "success")
    axis = figure.axes[0]
    assert [text.get_text() for text in axis.texts] == ["-", "0.25", "1.00", "-"]
    assert (axis.get_xlabel(), axis.get_ylabel()) == ("target", "source")
    assert [label.get_text() for label in axis.get_yticklabels()] == ["A", "N"]
    assert axis.images[0].get_array().mask.tolist() == [[True, False], [False, True]]
    plt.close(figure)
    counts = pd.DataFrame([[4, 8], [4, np.nan]], index=matrix.index, columns=matrix.columns)
    counted = matrix_heatmap(matrix, "success", counts=counts)
    assert [text.get_text() for text in counted.axes[0].texts] == ["-\nn=4", "0.25\nn=8", "1.00\nn=4", "-"]
    plt.close(counted)


def _chromium(tmp_path: Path, *args: str) -> subprocess.CompletedProcess[str]:
    flags = [
        "--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
        "--disable-background-networking", "--disable-component-update", "--disable-sync",
        f"--user-data-dir={tmp_path / 'profile'}", "--hide-scrollbars",
    ]  # fmt: skip
    return subprocess.run([CHROMIUM, *flags, *args], capture_output=True, text=True, timeout=90)


@pytest.mark.skipif(not Path(CHROMIUM).exists(), reason="chromium not installed (apt-get install -y chromium)")
def test_report_renders_in_headless_chromium_with_its_figures_visible(attacks: pd.DataFrame, tmp_path: Path) -> None:
    html = _report(attacks)
    page = tmp_path / "report.html"
    page.write_text(html)
    # A copy that reports, from inside the browser, how many images decoded and any script error.
    probe = tmp_path / "probe.html"
    probe.write_text(
        html.replace(
            "</body>",
            "<script>window.onerror = (m) => document.body.append('PAGE ERROR ' + m);"
            "window.onload = () => { const all = [...document.images];"
            "const ok = all.filter((i) => i.complete && i.naturalWidth > 0).length;"
            "const wide = document.documentElement.scrollWidth > window.innerWidth;"
            "document.body.append(`DECODED ${ok} OF ${all.length} WIDE ${wide}`); };</script></body>",
        )
    )
    dumped = _chromium(tmp_path, "--virtual-time-budget=5000", "--window-size=1400,900", "--dump-dom", probe.as_uri())
    assert dumped.returncode == 0, dumped.stderr[-2000:]
    written = dumped.stdout.rsplit("</script>", 1)[1]  # what the probe wrote, after its own source
    assert "DECODED 2 OF 2 WIDE false" in written and "PAGE ERROR" not in written  # a wide table scrolls in its box

    shot = tmp_path / "report.png"
    done = _chromium(tmp_path, f"--screenshot={shot}", "--window-size=1280,2000", page.as_uri())
    assert done.returncode == 0 and shot.exists(), done.stderr[-2000:]
    pixels = np.asarray(Image.open(shot).convert("RGB")).astype(np.int16)
    assert pixels.shape == (2000, 1280, 3)
    colourful = (pixels.max(axis=2) - pixels.min(axis=2)) > 80  # text and rules are grey; the figures are not
    assert colourful.mean() > 0.005, "no figure visible in the screenshot"
    assert len(np.unique(pixels.reshape(-1, 3), axis=0)) > 500
