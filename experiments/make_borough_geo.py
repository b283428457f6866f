"""Make the synthetic borough with geography that nudgesim ships (scenarios/borough_geo/).

Everything here is invented: the ward polygons are Voronoi cells of a jittered 6 x 4 grid
of points inside a made-up outline, placed at 0 deg N 0 deg E ("Null Island", in the sea:
no real place), the ward names are those of the synthetic borough.toml, and the census
shares are random draws. The ward table's trait columns come from those shares through the
mapping in docs/borough.md (assumptions), and the ward-level observed series is the shipped
scenario itself, run once with its seed and surveyed with binomial noise. Seeded: running
it again writes the same files.

    .venv/bin/python experiments/make_borough_geo.py
"""

from __future__ import annotations

import sys
from pathlib import Path

import geopandas as gpd
import numpy as np
import pandas as pd
import shapely
from shapely.geometry import MultiPoint, Polygon

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

import nudgesim as ns  # noqa: E402
from nudgesim import files  # noqa: E402

OUT = ROOT / "nudgesim" / "scenarios" / "borough_geo"
SEED = 20240515
NAMES = [
    "Abbey Fields", "Brook Green", "Castle Hill", "Dockside", "Elm Park", "Fairfield",
    "Gasworks", "Highgate Rise", "Ironbridge", "Juniper Vale", "Kingsmead", "Lockside",
    "Marsh End", "Northgate", "Orchard", "Priory", "Queens Walk", "Riverside", "St Anne's",
    "Tannery", "Upper Common", "Victoria", "Westbrook", "Yew Tree",
]
#: Local metres centred on 0 N 0 E: the synthetic borough lies in the Gulf of Guinea.
LOCAL = "+proj=aeqd +lat_0=0 +lon_0=0 +datum=WGS84 +units=m"
SURVEY_STEPS = list(range(0, 27, 4))  # a survey every four weeks over the first half-year
SURVEY_N = 150  # households asked per ward and survey (assumption)


def census_to_traits(census: pd.DataFrame) -> pd.DataFrame:
    """The mapping of docs/borough.md (every coefficient an assumption): flats raise the
    perceived cost of separating food waste; owner-occupation raises and deprivation
    lowers the mean attitude, each by a quarter of a standard deviation per standard
    deviation of the share across wards."""
    def z(col: str) -> pd.Series:
        x = census[col]
        return (x - x.mean()) / x.std(ddof=0)

    cost = (0.5 + 0.4 * (census["share_flats"] - census["share_flats"].mean())).clip(0.05, 0.95)
    attitude = 0.25 * z("share_owner_occupied") - 0.25 * z("share_deprived")
    return pd.DataFrame({"attitude_mean": attitude.round(3), "cost_mean": cost.round(3)})


def polygons(rng: np.random.Generator) -> gpd.GeoDataFrame:
    """24 Voronoi cells of a jittered 6 x 4 grid (1.4 km apart) clipped to an outline."""
    xs, ys = np.meshgrid(np.arange(6) * 1400.0, np.arange(4) * 1400.0)
    pts = np.column_stack([xs.ravel(), ys.ravel()]) + rng.uniform(-350, 350, (24, 2))
    pts -= pts.mean(axis=0)
    angles = np.linspace(0, 2 * np.pi, 40, endpoint=False)
    radius = 1.0 + 0.08 * np.sin(3 * angles + rng.uniform(0, 2 * np.pi))
    outline = Polygon(np.column_stack([4900 * radius * np.cos(angles),
                                       3300 * radius * np.sin(angles)]))
    cells = shapely.voronoi_polygons(MultiPoint(pts), extend_to=outline)
    by_point = []
    for p in pts:  # Voronoi cells come in no set order: match each to its point
        cell = next(c for c in cells.geoms if c.contains(shapely.Point(p)))
        by_point.append(cell.intersection(outline))
    order = np.lexsort((pts[:, 0], -pts[:, 1]))  # names run north-west to south-east
    return gpd.GeoDataFrame({"name": NAMES}, geometry=[by_point[i] for i in order],
                            crs=LOCAL).to_crs("EPSG:4326")


def main() -> None:
    rng = np.random.default_rng(SEED)
    gdf = polygons(rng)
    census = pd.DataFrame({
        "share_flats": rng.beta(2, 4, 24).round(3),
        "share_owner_occupied": rng.beta(5, 4, 24).round(3),
        "share_deprived": rng.beta(2, 5, 24).round(3),
    })
    table = pd.concat([pd.DataFrame({
        "name": NAMES,
        "households": rng.integers(600, 1200, 24),
        "baseline": (0.42 - 0.35 * census["share_flats"] + rng.normal(0, 0.03, 24))
        .clip(0.08, 0.6).round(3),
    }), census_to_traits(census)], axis=1)
    OUT.mkdir(parents=True, exist_ok=True)
    tmp = OUT / "wards.geojson.tmp"
    gdf.to_file(tmp, driver="GeoJSON", engine="pyogrio", layer_options={
        "COORDINATE_PRECISION": 6, "RFC7946": "YES"})
    tmp.replace(OUT / "wards.geojson")
    files.write_atomic(OUT / "wards.csv", table.to_csv(index=False))
    files.write_atomic(OUT / "census.csv", pd.concat(
        [table[["name"]], census], axis=1).to_csv(index=False))
    sc = ns.Scenario.from_toml(OUT / "borough_geo.toml")
    res = ns.simulate(sc, counterfactual=False)
    bw = res.by_ward[res.by_ward["step"].isin(SURVEY_STEPS)]
    survey = np.random.default_rng(SEED + 1)
    observed = bw.assign(
        n=SURVEY_N,
        adoption_rate=(survey.binomial(SURVEY_N, bw["adoption_rate"].to_numpy()) / SURVEY_N).round(4),
    )[["ward", "step", "adoption_rate", "n"]]
    files.write_atomic(OUT / "observed_by_ward.csv",
                       "# SYNTHETIC: the shipped borough_geo scenario, seed "
                       f"{sc.seed}, surveyed every 4 weeks ({SURVEY_N} households per ward)\n"
                       + observed.to_csv(index=False))
    print(f"wrote {OUT}/ (wards.geojson, wards.csv, census.csv, observed_by_ward.csv)")


if __name__ == "__main__":
    main()
