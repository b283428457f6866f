"""Ward geography: boundaries read from a council's file, and what the model takes from them.

A scenario's ``[geography]`` table names a boundaries file (GeoJSON, GeoPackage, shapefile,
anything GDAL reads through pyogrio). Its wards are matched by name to the scenario's
wards; the map (maps.py) draws them, and two facts steer cross-ward ties
(network.WardClustered.cross): which wards share a border and how far apart their
centroids are. geopandas is imported here only, when a scenario has a geography.
"""

from __future__ import annotations

import warnings
from pathlib import Path
from typing import TYPE_CHECKING, Any, Protocol

import numpy as np

from .errors import ScenarioError
from .files import file_version
from .spec import ScenarioWarning

if TYPE_CHECKING:
    import geopandas as gpd

__all__ = [
    "MIN_BORDER",
    "adjacency",
    "centroid_distances",
    "cross_kernel",
    "load_boundaries",
    "read_boundaries",
]

#: Shortest shared border (metres) that makes two wards neighbours; wards meeting at a
#: corner only, or a few metres of digitising noise, are not (assumption).
MIN_BORDER = 10.0
#: Gap (metres) closed before borders are measured: real boundary files have slivers
#: between wards that share a street (assumption: well below a street's width).
SNAP = 0.5

_CACHE: dict[tuple[Any, ...], gpd.GeoDataFrame] = {}


class Scenario(Protocol):
    """What load_boundaries reads of a nudgesim.scenario.Scenario (named here so that
    scenario.py, which reads the boundaries when it loads, is not imported back)."""

    @property
    def geography(self) -> Any: ...
    @property
    def population(self) -> Any: ...
    def resolve(self, path: str) -> Path: ...


def load_boundaries(scenario: Scenario) -> gpd.GeoDataFrame:
    """The scenario's ward boundaries: one row per ward in the scenario's ward order, index
    the ward name, in a projected CRS in metres. ScenarioError when the scenario has no
    [geography] or the file's wards do not match its wards (naming them)."""
    geo = scenario.geography
    if geo is None:
        raise ScenarioError("geography: this scenario has no [geography] table; allowed: "
                            "[geography] boundaries = \"wards.geojson\"")
    return read_boundaries(scenario.resolve(geo.boundaries), scenario.population.ward_names(),
                           geo.name_field, label=geo.boundaries)


def read_boundaries(
    path: str | Path, names: list[str], name_field: str = "name", *, label: str | None = None
) -> gpd.GeoDataFrame:
    """Ward polygons from `path`, ordered as `names` and in metres. Cached per file (path,
    size, mtime), names and field: a sweep reads the file once per process."""
    p = Path(path)
    where = f"geography.boundaries: {label or p}"
    key = (*file_version(p, where, "a boundaries file (GeoJSON, GeoPackage, shapefile) "
                         "relative to the scenario"), tuple(names), name_field)
    if key not in _CACHE:
        _CACHE[key] = _read(p, names, name_field, where)
    return _CACHE[key].copy()


def _read(p: Path, names: list[str], name_field: str, where: str) -> gpd.GeoDataFrame:
    import geopandas as gpd

    try:
        gdf = gpd.read_file(p, engine="pyogrio")
    except Exception as err:  # pyogrio/GDAL raise many kinds; all mean "not readable"
        raise ScenarioError(f"{where}: cannot read it: {' '.join(str(err).split())}") from None
    if name_field not in gdf.columns:
        fields = [c for c in gdf.columns if c != "geometry"]
        raise ScenarioError(f"{where}: no field {name_field!r} holding ward names; allowed "
                            f"(geography.name_field): {fields}")
    labels = gdf[name_field].astype(str).str.strip()
    dup = sorted(set(labels[labels.duplicated()]))
    if dup:
        raise ScenarioError(f"{where}: ward(s) {dup[:5]} appear more than once; allowed: one "
                            "feature per ward (dissolve multi-part wards first)")
    missing = [n for n in names if n not in set(labels)]
    extra = [n for n in labels if n not in set(names)]
    if missing or extra:
        parts = []
        if missing:
            parts.append(f"scenario ward(s) with no boundary: {missing[:8]}")
        if extra:
            parts.append(f"boundaries for unknown ward(s): {extra[:8]}")
        raise ScenarioError(f"{where}: ward names do not match the ward table ("
                            f"{'; '.join(parts)}); allowed: the same names in both")
    empty = [str(n) for n, g in zip(labels, gdf.geometry) if g is None or g.is_empty]
    if empty:
        raise ScenarioError(f"{where}: ward(s) {empty[:5]} have no geometry; allowed: a "
                            "polygon per ward")
    if not set(gdf.geom_type) <= {"Polygon", "MultiPolygon"}:
        raise ScenarioError(f"{where}: geometry types {sorted(set(gdf.geom_type))}; "
                            "allowed: Polygon, MultiPolygon")
    gdf = gdf.assign(**{name_field: labels}).set_index(name_field)
    gdf.index.name = "ward"
    gdf = gdf.loc[names, ["geometry"]]
    if gdf.crs is None:
        x0, y0, x1, y1 = gdf.total_bounds
        if -180 <= x0 and x1 <= 180 and -90 <= y0 and y1 <= 90:
            raise ScenarioError(f"{where}: no coordinate reference system and coordinates "
                                "that look like degrees; allowed: a file with its CRS "
                                "(GeoJSON is WGS 84 by definition)")
        warnings.warn(f"{where}: no coordinate reference system; coordinates are taken as "
                      "metres", ScenarioWarning, stacklevel=4)
    elif gdf.crs.is_geographic:
        gdf = gdf.to_crs(gdf.estimate_utm_crs())
    if not gdf.is_valid.all():
        gdf["geometry"] = gdf.geometry.make_valid()
    return gdf


def adjacency(gdf: gpd.GeoDataFrame, min_border: float = MIN_BORDER) -> np.ndarray:
    """W x W booleans: wards sharing at least `min_border` metres of border (rook
    adjacency; a corner is not a border). Symmetric, False on the diagonal."""
    geoms = list(gdf.geometry)
    w = len(geoms)
    out = np.zeros((w, w), dtype=bool)
    grown = gdf.geometry.buffer(SNAP)
    left, right = gdf.geometry.sindex.query(grown, predicate="intersects")
    for i, j in zip(left.tolist(), right.tolist()):
        if i < j:
            shared = geoms[i].boundary.intersection(grown.iloc[j]).length
            if shared >= min_border:
                out[i, j] = out[j, i] = True
    return out


def centroid_distances(gdf: gpd.GeoDataFrame) -> np.ndarray:
    """W x W distances in metres between ward centroids (the CRS is projected)."""
    c = gdf.geometry.centroid
    xy = np.column_stack([c.x.to_numpy(), c.y.to_numpy()])
    return np.sqrt(((xy[:, None, :] - xy[None, :, :]) ** 2).sum(axis=-1))


def cross_kernel(gdf: gpd.GeoDataFrame, cross: str, distance_scale: float) -> np.ndarray:
    """Relative weight of a cross-ward tie per pair of wards for `network.cross`:
    "adjacent" 1 between neighbours and 0 otherwise, "distance" exp(-d / scale)."""
    if cross == "adjacent":
        k = adjacency(gdf).astype(np.float64)
    elif cross == "distance":
        k = np.exp(-centroid_distances(gdf) / distance_scale)
    else:
        raise ValueError(f"network.cross: {cross!r} has no ward kernel; allowed: 'adjacent', "
                         "'distance'")
    np.fill_diagonal(k, 0.0)
    return k
