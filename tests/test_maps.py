"""Ward maps (nudgesim.maps): values land on the right polygons (face colours read back
exactly), wards without a polygon are refused by name and polygons without a value are
drawn as "no data", the effect panel appears only with the no-campaign twin, map.png is
written by a run only when the scenario has geography (and geopandas is not even imported
otherwise), and reports show the maps.

Boundaries here are shapely boxes: in a GeoDataFrame indexed by ward name (the form
nudgesim.geography.load_boundaries returns), or written to a GeoJSON file that a
scenario's `[geography]` table names."""

from __future__ import annotations

import json
import os
import stat
import subprocess
import sys
from pathlib import Path

import geopandas as gpd
import numpy as np
import pandas as pd
import pytest
import shapely
from matplotlib import colormaps

import nudgesim as ns
from nudgesim import maps, report
from nudgesim.errors import ScenarioError
from nudgesim.result import RUN_FILES
from nudgesim.scenario import Scenario

ROOT = Path(__file__).resolve().parents[1]
SMALL_TOWN = ROOT / "nudgesim" / "scenarios" / "small_town.toml"


def boxes(names: list[str], columns: int = 4) -> gpd.GeoDataFrame:
    """One 1 km square per ward on a grid, in a metric CRS (British National Grid)."""
    geoms = [shapely.box(1000 * (i % columns), 1000 * (i // columns),
                         1000 * (i % columns) + 1000, 1000 * (i // columns) + 1000)
             for i in range(len(names))]
    return gpd.GeoDataFrame(geometry=geoms, index=pd.Index(names, name="ward"), crs=27700)


def table(rates: dict[int, dict[str, float]], twin: dict[str, float] | None = None
          ) -> pd.DataFrame:
    """A by_ward table: step -> ward -> adoption_rate (+ the twin's rate at the last step)."""
    rows = [{"step": t, "ward": w, "adoption_rate": r} for t, d in rates.items()
            for w, r in d.items()]
    df = pd.DataFrame(rows)
    if twin is not None:
        last = df["step"].max()
        df["counterfactual_rate"] = [twin[w] if t == last else r for t, w, r in
                                     zip(df["step"], df["ward"], df["adoption_rate"], strict=True)]
    return df


def faces(ax) -> np.ndarray:
    """RGBA of every polygon geopandas drew on `ax`, in drawing order."""
    return np.vstack([c.get_facecolors() for c in ax.collections if len(c.get_paths())])


def map_axes(fig) -> list:
    return [ax for ax in fig.axes if ax.get_title()]


START = {"A": 0.10, "B": 0.20, "C": 0.30, "D": 0.40}
END = {"A": 0.15, "B": 0.42, "C": 0.31, "D": 0.47}
TWIN = {"A": 0.12, "B": 0.30, "C": 0.33, "D": 0.47}


def test_each_ward_gets_the_colour_of_its_own_value():
    # the table lists wards in another order than the boundaries: matched by name
    gdf = boxes(["C", "A", "D", "B"])
    by_ward = table({0: START, 1: {"B": 0.3, "A": 0.1, "C": 0.3, "D": 0.4}, 2: END}, TWIN)
    fig = maps.ward_map(gdf, by_ward, "week", "town")
    start, end, effect = map_axes(fig)
    assert [ax.get_title() for ax in (start, end)] == [
        "At the start (week 0)", "At the end (week 2), with the campaign"]
    assert effect.get_title().startswith("Campaign's effect at the end (week 2)")
    # one shared adoption scale, 0 to the next 10% above the highest ward (47% -> 50%)
    green, diverging = colormaps[maps.ADOPTION_CMAP], colormaps[maps.EFFECT_CMAP]
    order = list(gdf.index)
    np.testing.assert_allclose(faces(start), green([START[w] / 0.5 for w in order]))
    np.testing.assert_allclose(faces(end), green([END[w] / 0.5 for w in order]))
    # effect in points, symmetric about 0: the largest |effect| is B's +12 pp
    pp = {w: 100 * (END[w] - TWIN[w]) for w in order}
    assert max(abs(v) for v in pp.values()) == pytest.approx(12)
    np.testing.assert_allclose(faces(effect), diverging([(pp[w] + 12) / 24 for w in order]))
    assert faces(effect)[order.index("D")] == pytest.approx(diverging(0.5))  # no change: centre
    labels = {t.get_text() for ax in (start, end, effect) for t in ax.texts}
    assert labels == set(order)
    bars = [ax for ax in fig.axes if not ax.get_title()]
    assert [ax.get_xlabel() for ax in bars] == ["households taking part (%)",
                                               "change (percentage points)"]
    assert bars[0].get_xlim() == (0.0, 50.0) and bars[1].get_xlim() == pytest.approx((-12, 12))


def test_the_effect_panel_appears_only_with_the_twin():
    gdf = boxes(["A", "B", "C", "D"])
    fig = maps.ward_map(gdf, table({0: START, 5: END}))
    assert len(map_axes(fig)) == 2
    assert [ax.get_xlabel() for ax in fig.axes if not ax.get_title()] == [
        "households taking part (%)"]
    assert map_axes(fig)[1].get_title() == "At the end (step 5)"


def test_scales_round_up_and_keep_a_floor():
    assert maps.adoption_norm([maps.Panel("", pd.Series({"a": 0.0}))]).vmax == 10
    assert maps.adoption_norm([maps.Panel("", pd.Series({"a": 0.301}))]).vmax == 40
    assert maps.adoption_norm([maps.Panel("", pd.Series({"a": 1.0}))]).vmax == 100
    tiny = maps.effect_norm([maps.Panel("", pd.Series({"a": 0.002, "b": -0.001}), "effect")])
    assert (tiny.vmin, tiny.vmax) == (-maps.EFFECT_FLOOR, maps.EFFECT_FLOOR)
    down = maps.effect_norm([maps.Panel("", pd.Series({"a": -0.05, "b": 0.01}), "effect")])
    assert (down.vmin, down.vmax) == pytest.approx((-5, 5))


def test_a_ward_without_a_polygon_is_refused_by_name():
    gdf = boxes(["A", "B", "C"])
    with pytest.raises(ScenarioError, match=r"^geography: no boundary for ward\(s\) 'D'"):
        maps.ward_map(gdf, table({0: START, 1: END}))


def test_a_polygon_without_a_value_is_hatched_and_named():
    gdf = boxes(["A", "B", "C", "D", "E"])
    assert maps.check_wards(gdf, ["A", "B", "C", "D"]) == ["E"]
    fig = maps.ward_map(gdf, table({0: START, 1: END}))
    start = map_axes(fig)[0]
    drawn, missing = [c for c in start.collections if len(c.get_paths())]
    assert len(drawn.get_paths()) == 4 and len(missing.get_paths()) == 1
    assert missing.get_hatch() == "///"
    np.testing.assert_allclose(missing.get_facecolors()[0][:3], [0xD9 / 255] * 3)
    assert [t.get_text() for t in start.get_legend().get_texts()] == ["no data: E"]


def test_user_text_is_not_mathtext():
    gdf = boxes(["$x^2$", "B"])
    fig = maps.ward_map(gdf, table({0: {"$x^2$": 0.1, "B": 0.2}, 1: {"$x^2$": 0.2, "B": 0.2}}),
                        title="cost $5")
    assert {t.get_text() for t in map_axes(fig)[0].texts} == {r"\$x^2\$", "B"}
    maps.save_map(fig, Path(os.devnull))  # renders: a `$` would have started mathtext
    assert stat.S_ISCHR(os.stat(os.devnull).st_mode)  # written into, never replaced


def test_plan_panels_compare_the_best_option_with_no_campaign():
    wards = pd.DataFrame({"scenario": ["baseline"] * 2 + ["opt"] * 2 + ["other"] * 2,
                          "ward": ["A", "B"] * 3,
                          "final_adoption": [0.2, 0.3, 0.25, 0.3, 0.9, 0.9]})
    base, best, effect = maps.plan_panels(wards, "opt", "#1: opt")
    assert base.values.to_dict() == {"A": 0.2, "B": 0.3}
    assert best.values.to_dict() == {"A": 0.25, "B": 0.3}
    assert effect.kind == "effect" and effect.values.to_dict() == pytest.approx(
        {"A": 0.05, "B": 0.0})


@pytest.fixture
def geo(tmp_path) -> Path:
    """small_town.toml with a `[geography]` table: its eight wards as 1 km boxes in a
    GeoJSON file (WGS84, as councils publish them; read back in metres by geography)."""
    names = Scenario.from_toml(SMALL_TOWN).population.ward_names()
    boundaries = tmp_path / "wards.geojson"
    boxes(names).reset_index(names="name").to_crs(4326).to_file(boundaries)
    path = tmp_path / "town_geo.toml"
    # an absolute path: the run folder's scenario.toml must still find the file
    path.write_text(SMALL_TOWN.read_text()
                    + f"\n[geography]\nboundaries = {json.dumps(str(boundaries))}\n")
    return path


def run(path: Path = SMALL_TOWN, steps: int = 6) -> ns.Result:
    sc = Scenario.from_toml(path).replace(steps=steps, nudges=[])
    return ns.simulate(sc, counterfactual=True)


def test_a_run_writes_map_png_only_with_geography(tmp_path, monkeypatch):
    monkeypatch.setenv("NUDGESIM_NUMBA", "0")
    plain = run().save(tmp_path / "plain")
    optional = {"by_region.parquet", "residents.parquet"}  # regions, --residents
    assert {p.name for p in plain.iterdir()} == RUN_FILES - {"map.png"} - optional
    assert getattr(Scenario.from_toml(SMALL_TOWN), "geography", None) is None


def test_a_run_with_geography_writes_its_map_and_the_report_shows_it(tmp_path, monkeypatch,
                                                                      geo):
    monkeypatch.setenv("NUDGESIM_NUMBA", "0")
    out = run(geo).save(tmp_path / "geo")
    assert {p.name for p in out.iterdir()} == RUN_FILES - {"by_region.parquet", "residents.parquet"}
    png = (out / "map.png").read_bytes()
    assert png.startswith(b"\x89PNG") and len(png) > 20_000
    html, md = report.write_report(out)
    assert "](map.png)" in md.read_text() and "what the campaign added" in md.read_text()
    assert html.read_text().count("data:image/png;base64,") == 3  # curves, wards, map
    # a run saved without plots gets its map drawn by the report, as a file of the run
    out = run(geo).save(tmp_path / "noplot", plot=False)
    assert not (out / "map.png").exists()
    report.write_report(out)
    assert (out / "map.png").exists()


def test_the_report_says_why_there_is_no_map(tmp_path, monkeypatch, geo):
    monkeypatch.setenv("NUDGESIM_NUMBA", "0")
    out = run(geo).save(tmp_path / "geo", plot=False)

    def lost(sc):
        raise ScenarioError("geography.boundaries: wards.geojson not found")

    monkeypatch.setattr(maps, "boundaries", lost)
    _, md = report.write_report(out)
    assert "> No ward map: geography.boundaries: wards.geojson not found" in md.read_text()


def test_the_plan_report_maps_the_best_option(tmp_path, geo):
    sc = Scenario.from_toml(geo)
    names = sc.population.ward_names()
    wards = pd.DataFrame({"scenario": ["baseline"] * len(names) + ["leaflets"] * len(names),
                          "ward": names * 2,
                          "final_adoption": [0.2] * len(names) + [0.3] * len(names)})
    path = report._plan_map(tmp_path, sc, wards, "leaflets", "#1: leaflets")
    assert path == tmp_path / "report_map.png" and path.stat().st_size > 20_000
    assert report._plan_map(tmp_path, sc, wards, None, "") == path  # no option: one panel


def test_a_plain_run_does_not_import_geopandas(tmp_path):
    (tmp_path / "town.toml").write_text('name = "town"\nsteps = 4\n[population]\nsize = 300\n')
    code = ("import sys\nfrom nudgesim.cli import main\n"
            "assert main(['run', 'town.toml', '--out', 'out']) == 0\n"
            "print(json.dumps(sorted(m for m in sys.modules if m.split('.')[0] in "
            "('geopandas', 'shapely', 'pyogrio', 'pyproj'))))")
    out = subprocess.run([sys.executable, "-c", "import json\n" + code], cwd=tmp_path,
                         capture_output=True, text=True, check=True)
    assert json.loads(out.stdout.strip().splitlines()[-1]) == []
    assert not (tmp_path / "out" / "map.png").exists()
