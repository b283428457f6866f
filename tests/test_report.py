"""The report: written from plan and run folders, self-contained, and rendered by a real
headless Chromium (skipped only when Chromium is absent and we are not on CI)."""

from __future__ import annotations

import json
import os
import re
import shutil
import tomllib
from fnmatch import fnmatch
from html.parser import HTMLParser
from pathlib import Path

import pytest
import tomli_w

import nudgesim as ns
from nudgesim import planning as pl
from nudgesim.cli import main
from nudgesim.document import Doc, em, md_escape, strong
from nudgesim.report import plot_text, write_report

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


# ---------------------------------------------------------------------------------------
# Escaping: text from scenarios, menus and results folders stays text
# ---------------------------------------------------------------------------------------

STEP_UNIT = "wk<script>alert(1)</script>"
IMG = "<img src=x onerror=alert(2)>"
WARD = "North | *East*"
WARD_MATH = "$\\foo$ & <b>South</b>"  # `$` would also start matplotlib mathtext
DESCRIPTION = "<script>alert(0)</script> # _not_ *emphasis* ~~struck~~"
IMPACT_UNIT = "<i>t</i> [x](javascript:alert(4))"
HTML_TAGS = {"html", "head", "meta", "title", "style", "body", "h1", "h2", "p", "em",
             "strong", "ul", "li", "figure", "img", "figcaption", "table", "thead", "tbody",
             "tr", "th", "td"}
RUN_HEADINGS = ["The question", "The answer in brief", "The scenario in words", "Pictures",
                "Assumptions and their sources"]
TWIN_HEADINGS = ["The question", "What the campaign added",
                 "Totals, including what would have happened anyway", "The scenario in words",
                 "Pictures", "Assumptions and their sources"]
PLAN_HEADINGS = ["The question", "The answer in brief", "The scenario in words",
                 "Ranked options", "Pictures", "Assumptions and their sources",
                 "How this was worked out"]


def poisoned_scenario(folder: Path, **changes) -> ns.Scenario:
    data = {
        "name": "poisoned", "seed": 1, "steps": 6, "description": DESCRIPTION,
        "step_unit": STEP_UNIT,
        "population": {"size": 120, "wards": [{"name": WARD}, {"name": WARD_MATH}]},
        "network": {"kind": "ward_clustered", "mean_degree_in": 4.0, "mean_degree_out": 1.0},
        "initial_adopters": 0.3, "impact": {"unit": IMPACT_UNIT},
        "nudges": [{"kind": "reminder", "label": IMG, "every": 2}],
    } | changes
    return ns.Scenario.from_dict(data, base_dir=folder)


class Page(HTMLParser):
    """Elements, attributes, text and heading texts of an HTML page, as a browser sees them."""

    def __init__(self, text: str):
        super().__init__(convert_charrefs=True)
        self.tags: list[tuple[str, dict[str, str | None]]] = []
        self.data: list[str] = []
        self.headings: dict[str, list[str]] = {"h1": [], "h2": []}
        self._heading: str | None = None
        self.feed(text)
        self.close()
        self.text = " ".join(" ".join(self.data).split())

    def handle_starttag(self, tag, attrs):
        self.tags.append((tag, dict(attrs)))
        if tag in self.headings:
            self._heading = tag
            self.headings[tag].append("")

    def handle_endtag(self, tag):
        if tag == self._heading:
            self._heading = None

    def handle_data(self, data):
        self.data.append(data)
        if self._heading:
            self.headings[self._heading][-1] += data

    def has(self, text: str) -> bool:
        return " ".join(text.split()) in self.text


def assert_inert_html(html: str, texts: list[str], headings: list[str], images: int) -> None:
    assert "<script" not in html.lower() and "<img src=x" not in html and "<i>" not in html
    page = Page(html)
    assert {t for t, _ in page.tags} <= HTML_TAGS
    for tag, attrs in page.tags:
        assert not any(a.startswith("on") or a in ("href", "style") for a in attrs), (tag, attrs)
    srcs = [a["src"] for t, a in page.tags if t == "img"]
    assert len(srcs) == images and all(s.startswith("data:image/png;base64,") for s in srcs)
    assert page.headings["h2"] == headings and len(page.headings["h1"]) == 1
    for text in texts:
        assert page.has(text), text


def assert_inert_markdown(md: str, texts: list[str], headings: list[str], images: int) -> None:
    """Render report.md as CommonMark with raw HTML allowed (as renderers do) plus GFM tables
    and strikethrough: only the report's own structure may come out."""
    from markdown_it import MarkdownIt

    assert not re.search(r"(?<!\\)<", md)  # no raw HTML at all: every `<` escaped
    assert "&lt;" not in md and "&#" not in md  # and no HTML entities either
    page = Page(MarkdownIt("commonmark", {"html": True}).enable(["table", "strikethrough"])
                .render(md))
    assert {t for t, _ in page.tags} <= HTML_TAGS | {"blockquote"}  # no a, ol, script, s…
    srcs = [a["src"] for t, a in page.tags if t == "img"]
    assert len(srcs) == images and all(re.fullmatch(r"report_\w+\.png", s) for s in srcs)
    assert page.headings["h2"] == headings and len(page.headings["h1"]) == 1
    for text in texts:
        assert page.has(text), text
    # every table row keeps its columns: `|` and newlines in cells are not cell breaks
    for block in md.split("\n\n"):
        if block.startswith("|"):
            assert len({len(re.findall(r"(?<!\\)\|", row)) for row in block.splitlines()}) == 1


def test_run_report_escapes_every_user_string(tmp_path):
    # a network file whose name is HTML, and a results folder edited by hand
    net = tmp_path / f"{IMG}.edgelist"
    net.write_text("".join(f"{i} {(i + 1) % 60}\n{i} {(i + 7) % 60}\n" for i in range(60)))
    sc = poisoned_scenario(tmp_path, network={"kind": "file", "path": str(net)},
                           population={"wards": [{"name": WARD}, {"name": WARD_MATH}]})
    out = tmp_path / "run"
    ns.simulate(sc).save(out, plot=False)
    summary = json.loads((out / "summary.json").read_text())
    summary["scenario"] = "<svg onload=alert(7)>\n## injected"
    summary["adopters_gained"] = -1  # a campaign can lose households: say so in words
    (out / "summary.json").write_text(json.dumps(summary))

    html_path, md_path = write_report(out)
    texts = [STEP_UNIT, IMG, WARD, DESCRIPTION, IMPACT_UNIT, str(net),  # WARD_MATH: plot only
             "What the campaign achieves: <svg onload=alert(7)> ## injected",
             "(1 fewer household)"]
    assert_inert_html(html_path.read_text(), texts, RUN_HEADINGS, images=2)
    md = md_path.read_text()
    assert_inert_markdown(md, texts, RUN_HEADINGS, images=2)
    assert r"wk\<script\>alert(1)\</script\>" in md and r"North \| \*East\*" in md
    assert r"- *\<img src=x onerror=alert(2)\>* from" in md  # our emphasis, their text


def test_run_report_with_its_twin_escapes_every_user_string(tmp_path):
    """What the campaign added names the impact unit in plain and strong text."""
    sc = poisoned_scenario(tmp_path, nudges=[{"kind": "default", "label": IMG, "opt_out": 0.0,
                                              "cost_per_contact": 1.0}])
    out = tmp_path / "run"
    ns.simulate(sc, counterfactual=True).save(out, plot=False)
    summary = json.loads((out / "summary.json").read_text())
    assert summary["campaign_extra_adopters"] > 0
    html_path, md_path = write_report(out)
    texts = [STEP_UNIT, IMG, DESCRIPTION, f"per extra {IMPACT_UNIT}", "with no campaign"]
    assert_inert_html(html_path.read_text(), texts, TWIN_HEADINGS, images=2)
    md = md_path.read_text()
    assert_inert_markdown(md, texts, TWIN_HEADINGS, images=2)
    assert r"per extra \<i\>t\</i\> \[x\](javascript:alert(4))**" in md


def test_plan_report_escapes_every_user_string(tmp_path):
    menu = {
        "name": "[menu](javascript:alert(3)) <script>alert(5)</script>",
        "items": [
            {"label": IMG, "source": "<script>alert(6)</script> | *cell*",
             "nudge": {"kind": "information", "cost_per_contact": 0.1}},
            {"label": "a|b *c*", "nudge": {"kind": "reminder", "cost_per_contact": 0.01},
             "levels": {"every": [1, 3]}, "level_labels": {"every": ["<b>often</b>", "rarely"]}},
        ],
    }
    out = tmp_path / "plan"
    pl.plan(poisoned_scenario(tmp_path), pl.Menu.from_dict(menu), budget=1000.0, replicates=2,
            executor="serial").save(out)
    meta = json.loads((out / "plan.json").read_text())  # edited by hand: newlines too
    meta["menu"] += "\n# injected\n1. list"
    (out / "plan.json").write_text(json.dumps(meta))
    html_path, md_path = write_report(out)
    texts = [STEP_UNIT, IMG, DESCRIPTION, IMPACT_UNIT, menu["items"][0]["source"],
             "Campaign options: " + meta["menu"], "a|b *c* (<b>often</b>)"]
    assert_inert_html(html_path.read_text(), texts, PLAN_HEADINGS, images=3)
    assert_inert_markdown(md_path.read_text(), texts, PLAN_HEADINGS, images=3)


def test_ensemble_plan_report_explains_the_decision_and_stays_inert(tmp_path):
    # an ensemble plan (draws from the priors) adds the section on what we do not know:
    # three choices with p_best and regret, the EVPI, the value-of-information table and
    # the four decision figures; user strings stay inert in it too
    menu = {
        "name": "ensemble <script>alert(7)</script>",
        "items": [
            {"label": IMG, "nudge": {"kind": "information", "cost_per_contact": 0.1}},
            {"label": "a|b *c*", "nudge": {"kind": "reminder", "cost_per_contact": 0.01},
             "levels": {"every": [1, 3]}, "level_labels": {"every": ["<b>often</b>", "rarely"]}},
        ],
    }
    out = tmp_path / "plan"
    pl.plan(poisoned_scenario(tmp_path), pl.Menu.from_dict(menu), budget=1000.0, replicates=2,
            draws=6, executor="serial").save(out)
    html_path, md_path = write_report(out)
    headings = PLAN_HEADINGS[:5] + ["What we do not know, and what it means for the choice"] + \
        PLAN_HEADINGS[5:]
    html = html_path.read_text()
    assert_inert_html(html, [IMG, "a|b *c* (<b>often</b>)"], headings, images=7)
    assert_inert_markdown(md_path.read_text(), [IMG], headings, images=7)
    for words in ("Best on average", "minimax regret", "10th percentile", "Chance it is the best",
                  "expected value of perfect information", "Strong, Oakley", "do</em> include"):
        assert words in html, words
    ens = json.loads((out / "ensemble.json").read_text())
    assert f"on the same {ens['draws']} plausible sets" in html


def test_a_run_folder_with_geography_reports_with_its_map(tmp_path):
    # the folder's scenario.toml names its files by absolute path, so the report (and a
    # re-run) loads it from the results folder; the report shows the ward map
    from nudgesim import scenarios

    sc = ns.Scenario.from_toml(scenarios.path("borough_geo/borough_geo")).replace(steps=4)
    out = tmp_path / "geo"
    ns.simulate(sc, counterfactual=True).save(out)
    saved = ns.Scenario.from_toml(out / "scenario.toml")
    assert Path(saved.geography.boundaries).is_absolute()
    assert saved.to_dict() | {"geography": None} == sc.to_dict() | {"geography": None}
    html_path, _ = write_report(out)
    assert (out / "map.png").exists() and "map" in html_path.read_text().lower()


def test_nudgesim_report_on_a_sweep_folder(tmp_path, capsys):
    # the command reports a sweep folder too (sweep_report), not only plans and runs
    from nudgesim.experiment import Experiment

    sc = scenario().replace(nudges=[{"kind": "information", "label": "leaflet"}])
    Experiment(sc, {"nudges[leaflet].reach": [0.2, 0.8]}, replicates=2, seed=3,
               outcomes=["final_adoption"], name="tiny").run(
        out=tmp_path / "sweep", executor="serial", progress=False)
    assert main(["report", str(tmp_path / "sweep")]) == 0
    html = (tmp_path / "sweep" / "report.html").read_text()
    assert "nudges[leaflet].reach" in html and "final" in html
    assert main(["report", str(tmp_path)]) == 2  # a folder of nothing nudgesim wrote
    assert "'nudgesim sweep'" in capsys.readouterr().err


def test_document_writers_escape_text_and_keep_their_own_markup():
    doc = Doc('"><script>alert(1)</script>')
    doc.h("1. <h3>#")
    doc.p("- a ", strong("<b>bold</b>"), " and ", em(" *x* "), ".")
    doc.bullets([("+ ", em("<i>")), "### not a heading"])
    doc.table(["#", "a|b"], [["1", "x\n|y|"], ["2", "<td>z</td>"]])
    page = Page(doc.html())
    assert [t for t, _ in page.tags if t in ("strong", "em", "script", "b", "i", "h3")] == [
        "strong", "em", "em"]
    assert page.has('"><script>alert(1)</script>') and page.has("<b>bold</b>")
    md = doc.markdown()
    assert md.splitlines()[:3] == [r'# "\>\<script\>alert(1)\</script\>', "", r"## 1\. \<h3\>\#"]
    assert r"\- a **\<b\>bold\</b\>** and  *\*x\** ." in md  # emphasis hugs its text
    assert r"- \+ *\<i\>*" in md and r"- \### not a heading" in md
    assert r"| 1 | x \|y\| |" in md
    assert_inert_markdown(md, ["x |y|", "<td>z</td>", "### not a heading"],
                          ["1. <h3>#"], images=0)


@pytest.mark.parametrize(("text", "escaped"), [
    ("a\nb\r\n\tc", "a b c"),
    ("see http://evil.example or www.evil.example, me@evil.example",
     r"see http\://evil.example or www\.evil.example, me\@evil.example"),
    ("![x](y) [z]: /u <https://a> &amp; `code` ~~s~~ $x$ {a} _u_",
     r"!\[x\](y) \[z\]: /u \<https\://a\> \&amp; \`code\` \~\~s\~\~ \$x\$ \{a\} \_u\_"),
    ("C# 100% £5", "C# 100% £5"),  # `#` mid-line and ordinary text stay readable
])
def test_markdown_escape(text, escaped):
    assert md_escape(text) == escaped


def test_matplotlib_labels_show_dollars_as_written():
    assert plot_text("$\\foo$") == "\\$\\foo\\$"


def test_report_template_ships_with_the_package():
    """The HTML template is package data: pyproject must list every file under templates/."""
    root = Path(__file__).resolve().parents[1]
    globs = tomllib.loads((root / "pyproject.toml").read_text())["tool"]["setuptools"][
        "package-data"]["nudgesim"]
    files = [p.relative_to(root / "nudgesim").as_posix()
             for p in (root / "nudgesim" / "templates").iterdir()]
    assert files and all(any(fnmatch(f, g) for g in globs) for f in files)


def _national_folder(folder: Path, wards: int = 3_000, regions: int = 10) -> Path:
    """A run folder of `wards` wards in `regions` regions, written by Result.save from
    tables made by hand (no 25M simulation): ward i ends at i / wards taking part, so the
    lowest wards are W0000, W0001, ... and the highest the last ones."""
    import numpy as np
    import pandas as pd

    from nudgesim.result import Result

    size = 8_000
    names = [f"W{i:04d}" for i in range(wards)]
    sc = ns.Scenario.from_dict({"name": "nation", "steps": 2, "population": {"wards": [
        {"name": w, "size": size, "region": f"Region {i % regions}"}
        for i, w in enumerate(names)]}})
    share = np.arange(wards) / wards
    steps = np.arange(3)
    by_ward = pd.DataFrame({
        "step": np.repeat(steps, wards), "ward": np.tile(names, 3), "residents": size,
        "adopters": np.concatenate([np.round(share * size * s / 2) for s in steps]).astype(int)})
    by_ward["adoption_rate"] = by_ward["adopters"] / size
    by_ward["counterfactual_adopters"] = by_ward["adopters"] // 2
    by_ward["counterfactual_rate"] = by_ward["counterfactual_adopters"] / size
    totals = by_ward.groupby("step")[["adopters", "counterfactual_adopters"]].sum()
    n = wards * size
    ts = pd.DataFrame({c: 0 for c in Result.LOG_COLUMNS}, index=steps).assign(
        step=steps, adopters=totals["adopters"].to_numpy(), cost=0.0, impact=0.0,
        counterfactual_adopters=totals["counterfactual_adopters"].to_numpy(),
        counterfactual_impact=0.0)
    ts["adoption_rate"] = ts["adopters"] / n
    ts["counterfactual_rate"] = ts["counterfactual_adopters"] / n
    res = Result.from_frames(sc, ts, by_ward, adopted=np.zeros(n, bool))
    return res.save(folder, plot=False)


def test_report_of_a_national_run_stays_readable_and_fast(tmp_path):
    """3,000 wards: the ward picture shows the lowest and highest 20, the tables the 10
    lowest and 10 highest wards and every region; nothing lists all wards."""
    import time

    from PIL import Image

    folder = _national_folder(tmp_path / "run")
    t0 = time.perf_counter()
    html_path, md_path = write_report(folder)
    elapsed = time.perf_counter() - t0
    assert elapsed < 30, elapsed  # ~3 s here; generous for 2 shared cores
    md, html = md_path.read_text(), html_path.read_text()
    assert "24,000,000 households in 3,000 wards of 10 regions" in md
    assert "## By region" in md and "## Lowest and highest wards" in md
    for w in ("W0000", "W0009", "W2990", "W2999"):  # the 10 lowest and the 10 highest
        assert f"| {w} |" in md
    for w in ("W0010", "W1500", "W2989"):  # a middle ward is in by_ward.parquet only
        assert f"| {w} |" not in md
    assert "lowest (1)" in md and "highest (2,991)" in md
    for r in range(10):
        assert md.count(f"| Region {r} |") == 3  # its row, one lowest and one highest ward
    assert "the lowest region is Region 0" in md
    assert "the lowest and highest 20 of 3,000 wards" in md
    with Image.open(folder / "report_wards.png") as png:
        assert png.height < 1_200, png.size  # 40 bars, not 3,000
    assert len(html) < 1_000_000


def test_region_table_of_a_small_run_and_no_ward_extremes(tmp_path):
    """24 wards: every ward has its bar and no extremes table; the region table's numbers
    are the regions' own sums."""
    folder = _national_folder(tmp_path / "run", wards=24, regions=2)
    _, md_path = write_report(folder)
    md = md_path.read_text()
    assert "Lowest and highest wards" not in md and "By region" in md
    # Region 0 holds the even wards: at the end sum(i / 24 for even i) / 12 = 11/24 = 45.8%
    assert "| Region 0 | 12 | 96,000 | 0.0% | 45.8% | 22.9% | +22.9 pp |" in md
