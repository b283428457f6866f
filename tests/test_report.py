"""The report: written from plan and run folders, self-contained, and rendered by a real
headless Chromium (skipped only when Chromium is absent and we are not on CI)."""

from __future__ import annotations

import os
import re
import shutil
from pathlib import Path

import pytest
import tomli_w

import nudgesim as ns
from nudgesim import planning as pl
from nudgesim.cli import main
from nudgesim.report import write_report

CHROMIUM = "/usr/bin/chromium"
NEVER = {"kind": "logistic", "adopt_intercept": -60.0, "lapse_intercept": -60.0}
MENU = {
    "name": "test menu",
    "items": [
        {"label": "caddy", "source": "£1 per caddy (assumption)",
         "nudge": {"kind": "default", "start": 2, "opt_out": 0.2, "cost_per_contact": 1.0,
                   "targeting": {"adopted": False}},
         "levels": {"targeting.wards": [["W01"], ["W01", "W02"]]},
         "level_labels": {"targeting.wards": ["one ward", "two wards"]}},
        {"label": "leaflet", "nudge": {"kind": "information", "cost_per_contact": 0.1}},
    ],
}


def scenario() -> ns.Scenario:
    return ns.Scenario.from_dict({
        "name": "tiny", "seed": 3, "steps": 10,
        "population": {"size": 400, "wards": 4},
        "network": {"kind": "ward_clustered", "mean_degree_in": 6.0, "mean_degree_out": 1.0},
        "initial_adopters": 0.3,
    })


@pytest.fixture(scope="module")
def plan_dir(tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("plan")
    pl.plan(scenario(), pl.Menu.from_dict(MENU), budget=250.0, replicates=3,
            executor="serial").save(out)
    return out


def test_plan_report_says_what_a_council_officer_needs(plan_dir):
    html_path, md_path = write_report(plan_dir)
    html = html_path.read_text()
    for words in ("The question", "The answer in brief", "The scenario in words",
                  "Ranked options", "Assumptions and their sources", "95% intervals",
                  "£1 per caddy (assumption)", "caddy (two wards)", "400 households in 4 wards"):
        assert words in html
    assert re.search(r"£\d", html)
    # self-contained: three inline images, nothing fetched from anywhere
    assert html.count("data:image/png;base64,") == 3
    assert not re.search(r"(src|href)=\"(https?:|//|[^d\"#][^\"]*\.(png|css|js))", html)
    md = md_path.read_text()
    assert md.startswith("# Campaign options: test menu") and "| # |" in md
    for png in re.findall(r"\]\(([^)]+\.png)\)", md):
        assert (plan_dir / png).exists()


def test_run_folder_gets_a_report_too(tmp_path):
    sc = scenario().replace(nudges=[{"kind": "reminder", "label": "text", "every": 2}])
    ns.simulate(sc).save(tmp_path, plot=False)
    assert main(["report", str(tmp_path)]) == 0
    html = (tmp_path / "report.html").read_text()
    assert "What the campaign achieves: tiny" in html and "one simulation" in html


def test_report_of_a_folder_without_results_exits_2(tmp_path, capsys):
    assert main(["report", str(tmp_path)]) == 2
    assert "RESULTS_DIR" in capsys.readouterr().err
    assert main(["report", str(tmp_path / "missing")]) == 2


def test_plan_folder_written_by_the_command_reports(tmp_path):
    sc_path, menu_path = tmp_path / "s.toml", tmp_path / "m.toml"
    sc_path.write_text(scenario().to_toml())
    menu_path.write_text(tomli_w.dumps(MENU))
    out = tmp_path / "out"
    assert main(["plan", str(sc_path), "--budget", "250", "--menu", str(menu_path),
                 "--replicates", "2", "--executor", "serial", "--out", str(out),
                 "--report"]) == 0
    assert (out / "report.html").exists() and (out / "report.md").exists()


@pytest.mark.skipif(not Path(CHROMIUM).exists() and not os.environ.get("CI"),
                    reason="chromium not installed (required on CI)")
def test_report_renders_in_headless_chromium(plan_dir, tmp_path):
    from playwright.sync_api import sync_playwright

    html_path, _ = write_report(plan_dir)
    shot = tmp_path / "report.png"
    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=CHROMIUM, args=[
            "--headless=new", "--no-sandbox", "--disable-gpu", "--disable-quic",
            "--no-first-run", "--disable-background-networking",
            "--disable-component-update", "--disable-sync"])
        try:
            page = browser.new_page(viewport={"width": 1100, "height": 900})
            page.goto(f"file://{html_path.resolve()}")
            assert page.title().startswith("Campaign options")
            widths = page.eval_on_selector_all("img", "els => els.map(e => e.naturalWidth)")
            assert len(widths) == 3 and min(widths) > 100  # every inline image decoded
            assert page.locator("table tr.hl").count() == 1  # the best option stands out
            page.screenshot(path=str(shot), full_page=True)
        finally:
            browser.close()
    assert shot.stat().st_size > 20_000
    keep = os.environ.get("NUDGESIM_REPORT_SHOT")
    if keep:
        shutil.copy(shot, keep)
