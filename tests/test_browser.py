"""The browser visualisation in a real browser: Debian's chromium driven by Playwright.

Starts `nudgesim viz` on a free loopback port with the small town run over ten years (so
Play does not reach the end while it is measured), loads the page, checks the layout (three
pictures with canvases, both columns filled, a value beside every slider), presses Step and
Play, checks that the graph recolours and the curves grow, measures steps per second over
10 s of Play and records it in results/benchmark/browser.json (measured, not asserted: speed
belongs to benchmarks), moves a slider, resets, switches to the one-year small town and
saves a screenshot to results/viz_screenshot.png. A second page serves the small town with
ward boundaries (a GeoJSON of squares): the map view shows, Step recolours it, and a
screenshot goes to results/viz_map_screenshot.png. Skipped only when chromium is missing
outside CI; in CI (CI set) a missing browser fails.
"""

from __future__ import annotations

import json
import os
import re
import signal
import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
CHROMIUM = Path("/usr/bin/chromium")
SCENARIO = ROOT / "experiments" / "scenarios" / "small_town.toml"
SCREENSHOT = ROOT / "results" / "viz_screenshot.png"
MAP_SCREENSHOT = ROOT / "results" / "viz_map_screenshot.png"
RECORD = ROOT / "results" / "benchmark" / "browser.json"
ARGS = ["--headless=new", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
        "--disable-background-networking", "--disable-component-update", "--disable-sync"]
TIMEOUT_MS = 120_000  # first load compiles solara's page on 2 busy cores (assumption: generous)
PLAY_SECONDS = 10.0
YEARS = 10

if not CHROMIUM.exists() and not os.environ.get("CI"):
    pytest.skip("Debian's chromium is not installed (apt-get install chromium)",
                allow_module_level=True)


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def long_small_town(folder: Path) -> Path:
    """small_town.toml with a horizon of YEARS years: the same town and nudges per step."""
    text, n = re.subn(r"(?m)^steps = 52$", f"steps = {52 * YEARS}", SCENARIO.read_text())
    assert n == 1, "small_town.toml no longer says `steps = 52`"
    path = folder / f"small_town_{YEARS}y.toml"
    path.write_text(text)
    return path


@pytest.fixture(scope="module")
def server(tmp_path_factory):
    folder = tmp_path_factory.mktemp("viz")
    yield from serve(long_small_town(folder), folder)


def geo_town(folder: Path) -> Path:
    """small_town.toml with a `[geography]` table: its eight wards as 1 km squares, four to
    a row, in a GeoJSON file written with geopandas."""
    import geopandas as gpd
    import shapely

    from nudgesim.scenario import Scenario

    names = Scenario.from_toml(SCENARIO).population.ward_names()
    squares = [shapely.box(1000 * (i % 4), 1000 * (i // 4), 1000 * (i % 4) + 1000,
                           1000 * (i // 4) + 1000) for i in range(len(names))]
    gpd.GeoDataFrame({"name": names}, geometry=squares, crs=27700).to_crs(4326).to_file(
        folder / "wards.geojson")
    path = folder / "small_town_geo.toml"
    path.write_text(SCENARIO.read_text() + '\n[geography]\nboundaries = "wards.geojson"\n')
    return path


@pytest.fixture(scope="module")
def geo_server(tmp_path_factory):
    folder = tmp_path_factory.mktemp("viz_geo")
    yield from serve(geo_town(folder), folder)


def serve(scenario: Path, folder: Path):
    """`nudgesim viz scenario` on a free port until the test module ends: yields its URL."""
    # a no-op once solara's CDN cache is filled (.ci/run does it first)
    subprocess.run([sys.executable, str(ROOT / ".ci" / "prefetch_assets.py")], check=True)
    port = free_port()
    log = folder / "server.log"
    with open(log, "w") as out:
        proc = subprocess.Popen(
            [sys.executable, "-m", "nudgesim.cli", "viz", str(scenario),
             "--port", str(port)],
            stdout=out, stderr=subprocess.STDOUT, cwd=ROOT, start_new_session=True,
        )
    url = f"http://127.0.0.1:{port}/"
    try:
        deadline = time.monotonic() + 120
        while True:
            if proc.poll() is not None:
                pytest.fail(f"nudgesim viz exited with {proc.returncode}:\n{log.read_text()}")
            try:
                with urllib.request.urlopen(url, timeout=5) as response:
                    if response.status == 200:
                        break
            except OSError:
                pass
            if time.monotonic() > deadline:
                pytest.fail(f"nudgesim viz did not answer on {url}:\n{log.read_text()}")
            time.sleep(0.5)
        yield url
    finally:
        os.killpg(proc.pid, signal.SIGTERM)  # viz and the solara server it started
        try:
            proc.wait(timeout=15)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)


def current_time(page) -> float:
    match = re.search(r"Time: (\d+(?:\.\d+)?)", page.inner_text("body"))
    return float(match.group(1)) if match else -1.0


def wait_until(predicate, timeout_s: float = 90.0, what: str = "") -> None:
    deadline = time.monotonic() + timeout_s
    while not predicate():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what}")
        time.sleep(0.2)


def pixels(canvas) -> str:
    return canvas.evaluate("c => c.toDataURL()")


BOXES = """() => {
  const box = e => { const r = e.getBoundingClientRect();
                     return {left: r.left, right: r.right, top: r.top, bottom: r.bottom}; };
  return {
    plots: [...document.querySelectorAll('.nudgesim-plot')].map(box),
    loaded: [...document.querySelectorAll('.nudgesim-plot img')]
            .map(i => i.complete && i.naturalWidth > 0),
    summary: box(document.querySelector('.nudgesim-summary')),
  };
}"""


def check_layout(page) -> None:
    """Three pictures drawn, side by side in two columns whose bottoms nearly meet."""
    boxes = page.evaluate(BOXES)
    graph, curve, cost = boxes["plots"]
    assert boxes["loaded"] == [True, True, True]
    for b in boxes["plots"]:
        assert b["bottom"] - b["top"] > 200 and b["right"] - b["left"] > 300, b
    assert graph["right"] <= curve["left"] and curve["bottom"] <= cost["top"]
    left_end, right_end = boxes["summary"]["bottom"], cost["bottom"]
    height = max(left_end, right_end) - graph["top"]
    assert abs(left_end - right_end) < 0.15 * height, boxes  # no empty corner


def check_slider_values(page) -> None:
    """Every slider shows its current value beside its track, inside its card."""
    sliders = page.locator(".v-slider")
    assert sliders.count() >= 7
    for i in range(sliders.count()):
        slider = sliders.nth(i)
        shown = slider.locator(".v-slider__container > input")
        assert shown.is_visible()
        value = float(slider.get_by_role("slider").get_attribute("aria-valuenow"))
        assert float(shown.input_value()) == pytest.approx(value)
        track = slider.locator(".v-slider-track").bounding_box()
        text = shown.bounding_box()
        assert text["x"] >= track["x"] + track["width"]
        whole = slider.bounding_box()
        assert text["x"] + text["width"] <= whole["x"] + whole["width"] + 1


def test_page_lays_out_steps_plays_recolours_changes_a_slider_and_resets(server):
    from playwright.sync_api import sync_playwright

    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=str(CHROMIUM), args=ARGS)
        try:
            page = browser.new_page(viewport={"width": 1600, "height": 1150})
            page.set_default_timeout(TIMEOUT_MS)
            page.goto(server, timeout=TIMEOUT_MS)
            page.get_by_text("Time: 0.0", exact=True).wait_for()
            canvases = page.locator(".nudgesim-plot canvas")
            wait_until(lambda: canvases.count() == 3, what="the three pictures")
            wait_until(lambda: "1,000 households" in page.inner_text("body"), what="the summary")
            assert "5 nudges" in page.inner_text("body"), page.inner_text("body")
            wait_until(lambda: page.evaluate(BOXES)["loaded"] == [True] * 3, what="pictures")
            check_layout(page)
            check_slider_values(page)
            graph, curve = canvases.nth(0), canvases.nth(1)
            graph_before, curve_before = pixels(graph), pixels(curve)

            page.get_by_role("button", name="Step").click()
            page.get_by_text("Time: 1.0", exact=True).wait_for()
            wait_until(lambda: pixels(curve) != curve_before, what="the curve to grow")
            wait_until(lambda: f"Week 1 of {52 * YEARS}" in page.inner_text("body"),
                       what="the summary")

            # steps per second over PLAY_SECONDS of Play, recorded, not asserted
            start, t0 = current_time(page), time.monotonic()
            page.get_by_role("button", name="▶").click()
            time.sleep(PLAY_SECONDS)
            end, elapsed = current_time(page), time.monotonic() - t0
            page.get_by_role("button", name="❚❚").click()
            assert end > start + 1, "Play did not advance"
            rate = (end - start) / elapsed
            record = {
                "what": "browser Play, steps per second (Mesa's ▶, headless chromium, "
                        f"viewport 1600x1150), over {PLAY_SECONDS:.0f} s",
                "scenario": f"small_town.toml (1,000 households) with steps = {52 * YEARS}",
                "play_interval_ms": int(page.locator(".v-slider").filter(
                    has_text="Play Interval").get_by_role("slider").get_attribute(
                    "aria-valuenow")),
                "steps": end - start, "seconds": round(elapsed, 2),
                "steps_per_second": round(rate, 2),
                "load_average_1min": round(os.getloadavg()[0], 2),
                "cpus": os.cpu_count(),
                "when": time.strftime("%Y-%m-%dT%H:%M:%S"),
            }
            RECORD.parent.mkdir(parents=True, exist_ok=True)
            RECORD.write_text(json.dumps(record, indent=2) + "\n")
            print(f"\nbrowser Play: {end - start:.0f} steps in {elapsed:.1f} s = {rate:.2f} "
                  f"steps/s (load {record['load_average_1min']}) -> {RECORD}")
            wait_until(lambda: pixels(graph) != graph_before, what="the graph to recolour")
            paused_at = current_time(page)
            assert paused_at >= end
            check_slider_values(page)

            # the pledge lever to 0 removes that nudge on Reset (5 nudges -> 4)
            slider = page.locator(".v-slider").filter(has_text="Pledge uptake")
            thumb = slider.get_by_role("slider")
            thumb.focus()
            thumb.press("Home")
            wait_until(lambda: thumb.get_attribute("aria-valuenow") == "0", what="the slider")
            assert float(slider.locator("input").input_value()) == 0
            page.get_by_role("button", name="Reset").click()
            page.get_by_text("Time: 0.0", exact=True).wait_for()
            wait_until(lambda: "4 nudges" in page.inner_text("body"), what="the rebuilt model")

            # the one-year small town (the file as shipped) for the screenshot
            page.locator(".v-select").filter(has_text="Scenario file").click()
            page.get_by_role("option", name="small_town.toml", exact=True).click()
            page.get_by_role("listbox").wait_for(state="hidden")
            thumb.focus()
            for _ in range(3):  # back to the file's pledge uptake, 0.15, in steps of 0.05
                thumb.press("ArrowRight")
            wait_until(lambda: thumb.get_attribute("aria-valuenow") == "0.15", what="slider")
            page.get_by_role("button", name="Reset").click()
            wait_until(lambda: re.search(r"Week 0 of 52\b", page.inner_text("body")),
                       what="the one-year small town")
            assert "5 nudges" in page.inner_text("body")
            page.get_by_role("button", name="▶").click()
            wait_until(lambda: current_time(page) >= 10, timeout_s=150, what="Play to week 10")
            page.get_by_role("button", name="❚❚").click()
            wait_until(lambda: page.get_by_role("button", name="Step").is_enabled(), what="pause")
            while current_time(page) < 17:  # Step to the week docs/mesa.md's picture shows
                week = current_time(page)
                page.get_by_role("button", name="Step").click()
                wait_until(lambda w=week: current_time(page) > w, what="a step")
            page.wait_for_timeout(1500)  # let the last frame arrive
            check_layout(page)
            SCREENSHOT.parent.mkdir(parents=True, exist_ok=True)
            page.screenshot(path=str(SCREENSHOT), full_page=True)
            assert SCREENSHOT.stat().st_size > 50_000
        finally:
            browser.close()


def test_the_map_view_recolours_on_step(geo_server):
    """A scenario with boundaries shows its wards on a map (three pictures still, both
    columns filled) and Step recolours the wards."""
    from playwright.sync_api import sync_playwright

    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=str(CHROMIUM), args=ARGS)
        try:
            page = browser.new_page(viewport={"width": 1600, "height": 1150})
            page.set_default_timeout(TIMEOUT_MS)
            page.goto(geo_server, timeout=TIMEOUT_MS)
            page.get_by_text("Time: 0.0", exact=True).wait_for()
            canvases = page.locator(".nudgesim-plot canvas")
            wait_until(lambda: canvases.count() == 3, what="the three pictures")
            wait_until(lambda: "adoption by ward on the map" in page.inner_text("body"),
                       what="the map view")
            wait_until(lambda: page.evaluate(BOXES)["loaded"] == [True] * 3, what="pictures")
            check_layout(page)
            mapped = canvases.nth(0)
            before = pixels(mapped)
            for week in (1, 2, 3, 4):
                page.get_by_role("button", name="Step").click()
                page.get_by_text(f"Time: {week}.0", exact=True).wait_for()
            wait_until(lambda: pixels(mapped) != before, what="the map to recolour")
            page.wait_for_timeout(1000)  # let the last frame arrive
            MAP_SCREENSHOT.parent.mkdir(parents=True, exist_ok=True)
            page.screenshot(path=str(MAP_SCREENSHOT), full_page=True)
            assert MAP_SCREENSHOT.stat().st_size > 50_000
        finally:
            browser.close()
