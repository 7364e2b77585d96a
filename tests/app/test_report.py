"""The report of a real (tiny) comparison run, opened in headless Chromium."""

import os
import shutil
from pathlib import Path

import pytest
from tests.conftest import TINY

from distillkit.app import RunFolder, run_comparison
from distillkit.app.browser import find_chromium, render_report
from distillkit.app.report import write_report
from distillkit.config import load_config

ARTEFACTS = Path(__file__).resolve().parents[2] / "test-artifacts"


@pytest.fixture(scope="module")
def run_folder(tmp_path_factory):
    folder = tmp_path_factory.mktemp("report") / "tiny"
    run_comparison(load_config(raw=TINY), RunFolder(folder))
    return folder


def test_report_files_and_markdown(run_folder):
    html = (run_folder / "report.html").read_text()
    assert html.count('<img class="figure"') == 6 and "data:image/png;base64," in html
    assert "distilled student" in html and "name: tiny" in html  # the table and the config
    md = (run_folder / "report.md").read_text()
    assert "| distilled student |" in md
    for name in ("loss-curves", "accuracy-curves", "roc", "confusion", "reliability", "trade-offs"):
        assert (run_folder / "figures" / f"{name}.png").stat().st_size > 1000
        assert f"figures/{name}.png" in md


def test_writing_a_report_leaves_the_callers_matplotlib_backend_and_figures_alone(run_folder):
    import matplotlib
    import matplotlib.pyplot as plt

    previous = matplotlib.get_backend()
    matplotlib.use("svg")  # a notebook's backend is another; the report must not switch it to Agg
    try:
        mine = plt.figure()
        write_report(run_folder)
        assert matplotlib.get_backend() == "svg" and plt.get_fignums() == [mine.number]
        assert (run_folder / "figures" / "roc.png").read_bytes()[:4] == b"\x89PNG"
    finally:
        plt.close("all")
        matplotlib.use(previous)


def test_report_renders_in_headless_chromium(run_folder):
    if find_chromium() is None:
        if os.environ.get("DISTILLKIT_REQUIRE_BROWSER"):
            pytest.fail("DISTILLKIT_REQUIRE_BROWSER is set but no Chromium is installed")
        pytest.skip("no Chromium installed (apt-get install chromium chromium-driver)")
    ARTEFACTS.mkdir(exist_ok=True)
    screenshot = ARTEFACTS / "report.png"
    status = render_report(run_folder / "report.html", screenshot=screenshot)
    assert status == {"figures": 6, "broken": 0, "errors": 0}
    assert screenshot.stat().st_size > 20_000


def test_report_self_check_catches_a_broken_figure(run_folder, tmp_path):
    if find_chromium() is None:
        pytest.skip("no Chromium installed")
    broken = tmp_path / "broken.html"
    html = (run_folder / "report.html").read_text()
    broken.write_text(html.replace("data:image/png;base64,", "data:image/png;base64,AAAA", 1))
    shutil.copy(run_folder / "config.yaml", tmp_path / "config.yaml")
    status = render_report(broken)
    assert status["broken"] == 1


def test_without_matplotlib_the_report_keeps_its_tables_and_says_how_to_get_figures(run_folder, tmp_path,
                                                                                     monkeypatch, caplog):
    import importlib.util

    copy = tmp_path / "copy"
    shutil.copytree(run_folder, copy)
    shutil.rmtree(copy / "figures")
    find_spec = importlib.util.find_spec
    monkeypatch.setattr(importlib.util, "find_spec",
                        lambda name, *a: None if name == "matplotlib" else find_spec(name, *a))
    write_report(copy)
    html = (copy / "report.html").read_text()
    assert '<img class="figure"' not in html and "distilled student" in html
    assert "figures/" not in (copy / "report.md").read_text() and not (copy / "figures").exists()
    assert "pip install 'distillkit[report]'" in caplog.text
