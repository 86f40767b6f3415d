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

from medadv.report import Section, eps_curves, matrix_heatmap, render_report, table_html

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
        ],
        facts={"experiment": "tests"},
    )


def test_tables_escape_text_format_numbers_and_mark_missing_values() -> None:
    table = pd.DataFrame({"model": ["<b>x</b>"], "rate": [0.123456], "auc": [np.nan]})
    html = table_html(table)
    assert "&lt;b&gt;x&lt;/b&gt;" in html and "<b>x" not in html
    assert "<td>0.1235</td>" in html and "<td>-</td>" in html
    assert table_html(pd.DataFrame(columns=["run_id"])) == '<p class="none">none</p>'


def test_report_is_self_contained_with_every_figure_embedded_as_a_png(attacks: pd.DataFrame) -> None:
    html = _report(attacks)
    images = [Image.open(io.BytesIO(base64.b64decode(data))) for data in EMBEDDED.findall(html)]
    assert [image.format for image in images] == ["PNG", "PNG"]
    assert all(image.width > 300 and image.height > 150 for image in images)
    assert "<title>medadv evaluation: &lt;tests&gt;</title>" in html
    assert "fooling rate &amp; robust accuracy" in html
    assert not re.search(r"<script|<link|src=\"http|url\(", html)  # nothing fetched from elsewhere
    assert '<p class="none">none</p>' in html  # an empty table says so


def test_eps_curves_draw_one_line_per_model_and_attack_sorted_by_eps(attacks: pd.DataFrame) -> None:
    figure = eps_curves(attacks, ["fooling_rate", "robust_accuracy"], line=["model", "attack"])
    fooling, robust = figure.axes
    lines = {line.get_label(): (list(line.get_xdata()), list(line.get_ydata())) for line in fooling.get_lines()}
    assert lines == {"a / fgsm": ([0.01, 0.05, 0.1], [0.1, 0.5, 0.9]), "b / fgsm": ([0.01, 0.05, 0.1], [0.2, 0.6, 1.0])}
    assert [list(line.get_ydata()) for line in robust.get_lines()] == [[0.9, 0.5, 0.1], [0.8, 0.4, 0.0]]
    assert fooling.get_ylabel() == "fooling_rate"
    plt.close(figure)


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
            "document.body.append(`DECODED ${ok} OF ${all.length}`); };</script></body>",
        )
    )
    dumped = _chromium(tmp_path, "--virtual-time-budget=5000", "--dump-dom", probe.as_uri())
    assert dumped.returncode == 0, dumped.stderr[-2000:]
    written = dumped.stdout.rsplit("</script>", 1)[1]  # what the probe wrote, after its own source
    assert "DECODED 2 OF 2" in written and "PAGE ERROR" not in written

    shot = tmp_path / "report.png"
    done = _chromium(tmp_path, f"--screenshot={shot}", "--window-size=1280,2000", page.as_uri())
    assert done.returncode == 0 and shot.exists(), done.stderr[-2000:]
    pixels = np.asarray(Image.open(shot).convert("RGB")).astype(np.int16)
    assert pixels.shape == (2000, 1280, 3)
    colourful = (pixels.max(axis=2) - pixels.min(axis=2)) > 80  # text and rules are grey; the figures are not
    assert colourful.mean() > 0.005, "no figure visible in the screenshot"
    assert len(np.unique(pixels.reshape(-1, 3), axis=0)) > 500
