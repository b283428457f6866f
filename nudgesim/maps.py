"""Choropleth maps of ward adoption: at the start, at the end, and the campaign's effect.

Geometry comes from the scenario's boundary file through geopandas
(:func:`nudgesim.geography.load_boundaries`: a GeoDataFrame indexed by ward name); this
module only colours it. geopandas is imported here and nowhere on the path of a scenario
without `[geography]`: `Result.save` and the report import this module only when there is
a map to draw, so `nudgesim run` on a plain scenario pays nothing for it.

Colour scales: the start and end panels share one sequential scale (0 to the next 10% above
the highest ward), so a ward's change reads as a change of colour; the effect panel uses a
diverging scale centred on zero, symmetric, in percentage points, so a ward the campaign
pushed down is never drawn like one it lifted.
"""

from __future__ import annotations

import io
import math
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np
import pandas as pd
from matplotlib import colormaps
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.cm import ScalarMappable
from matplotlib.colors import Normalize
from matplotlib.figure import Figure
from matplotlib.patches import Patch
from matplotlib.patheffects import withStroke

from .errors import ScenarioError
from .files import write_atomic
from .plots import plot_text

if TYPE_CHECKING:
    import geopandas as gpd

    from .scenario import Scenario

ADOPTION_CMAP = "YlGn"
"""Sequential scale for the share of households taking part (the browser's ward view uses
the same, so a colour means the same thing on every picture)."""
EFFECT_CMAP = "RdBu"
"""Diverging scale for the campaign's effect: blue = lifted, red = pushed down."""
ADOPTION_STEP = 10.0
"""The adoption scale ends at the next multiple of this many % above the highest ward
(assumption: round legend ends; 0 is always the start so a pale ward is a low ward)."""
EFFECT_FLOOR = 1.0
"""Smallest half-range of the effect scale, in percentage points (assumption: a campaign
that changed no ward by more than a point is drawn pale, not at full saturation)."""
NO_DATA = {"facecolor": "#d9d9d9", "hatch": "///", "edgecolor": "#7f7f7f"}
"""How a polygon with no value is drawn (and named in the legend)."""
HALO = [withStroke(linewidth=2, foreground="white")]
"""A white outline keeps ward names legible on the darkest fills."""
LABEL_LIMIT = 30
"""Ward names are printed on the map up to this many wards (assumption: above that they
overlap at the figure's size; the by-ward table still names every ward)."""


@dataclass(frozen=True)
class Panel:
    """One map: a title, a value per ward (a share 0-1 for "adoption", a difference of
    shares for "effect"), and which scale it uses."""

    title: str
    values: pd.Series
    kind: str = "adoption"  # or "effect"


def check_wards(gdf: gpd.GeoDataFrame, wards: Sequence[str]) -> list[str]:
    """Wards with a polygon but no value (drawn as "no data"); raise ScenarioError naming the
    wards that have values but no polygon, since a map would silently drop them."""
    have = set(map(str, gdf.index))
    lost = [w for w in dict.fromkeys(map(str, wards)) if w not in have]
    if lost:
        shown = ", ".join(repr(w) for w in lost[:5]) + (
            f" and {len(lost) - 5} more" if len(lost) > 5 else "")
        raise ScenarioError(f"geography: no boundary for ward(s) {shown}; allowed: the ward "
                            f"names in the boundary file ({len(have)} wards)")
    given = set(map(str, wards))
    return [str(w) for w in gdf.index if str(w) not in given]


def run_panels(by_ward: pd.DataFrame, step_unit: str = "step") -> list[Panel]:
    """Start, end and (when the run has its no-campaign twin, i.e. `counterfactual_rate`)
    the campaign's effect at the end: end with the campaign minus end without."""
    first, last = by_ward["step"].min(), by_ward["step"].max()
    start = by_ward[by_ward["step"] == first].set_index("ward")["adoption_rate"]
    end_rows = by_ward[by_ward["step"] == last].set_index("ward")
    twin = "counterfactual_rate" in end_rows
    panels = [Panel(f"At the start ({step_unit} {first})", start),
              Panel(f"At the end ({step_unit} {last})" + (", with the campaign" if twin else ""),
                    end_rows["adoption_rate"])]
    if twin:
        effect = end_rows["adoption_rate"] - end_rows["counterfactual_rate"]
        panels.append(Panel(f"Campaign's effect at the end ({step_unit} {last}):\nwith it "
                            "minus without (same seed)", effect, "effect"))
    return panels


def plan_panels(wards: pd.DataFrame, best: str, label: str) -> list[Panel]:
    """From a plan's wards.csv: mean final adoption per ward with no campaign, with the
    best option, and the difference (the option's effect, averaged over replicates)."""
    base = wards[wards["scenario"] == "baseline"].set_index("ward")["final_adoption"]
    chosen = wards[wards["scenario"] == best].set_index("ward")["final_adoption"]
    return [Panel("At the end with no campaign", base),
            Panel(f"At the end with {label}", chosen),
            Panel(f"Effect of {label}:\nwith it minus without (average of simulations)",
                  chosen - base.reindex(chosen.index), "effect")]


def adoption_norm(panels: Sequence[Panel]) -> Normalize:
    """0 to the next ADOPTION_STEP % above the highest value of the adoption panels."""
    top = max((float(np.nanmax(100 * p.values.to_numpy(float))) for p in panels
               if p.kind == "adoption" and p.values.notna().any()), default=0.0)
    return Normalize(0.0, max(ADOPTION_STEP, ADOPTION_STEP * math.ceil(top / ADOPTION_STEP)))


def effect_norm(panels: Sequence[Panel]) -> Normalize:
    """Symmetric about 0, at least ±EFFECT_FLOOR percentage points."""
    top = max((float(np.nanmax(np.abs(100 * p.values.to_numpy(float)))) for p in panels
               if p.kind == "effect" and p.values.notna().any()), default=0.0)
    half = max(EFFECT_FLOOR, top)
    return Normalize(-half, half)


def map_figure(gdf: gpd.GeoDataFrame, panels: Sequence[Panel], title: str = "") -> Figure:
    """One map per panel side by side, with a colour bar per scale (one shared by the
    adoption panels, one for the effect) and "no data" named in the legend.

    Values are percentages on the maps (shares x 100). Wards in a panel with no polygon
    raise ScenarioError (check_wards); polygons with no value are hatched grey."""
    for p in panels:
        check_wards(gdf, list(p.values.index))
    norms = {"adoption": adoption_norm(panels), "effect": effect_norm(panels)}
    cmaps = {"adoption": colormaps[ADOPTION_CMAP], "effect": colormaps[EFFECT_CMAP]}
    x0, y0, x1, y1 = gdf.total_bounds
    aspect = (y1 - y0) / max(x1 - x0, 1e-9)
    width = 4.6
    fig = Figure(figsize=(width * len(panels), min(8.0, max(2.4, width * aspect)) + 1.3),
                 layout="constrained")
    FigureCanvasAgg(fig)
    axes = fig.subplots(1, len(panels), squeeze=False)[0]
    names = [str(w) for w in gdf.index]
    for ax, p in zip(axes, panels, strict=True):
        values = 100 * p.values.rename(index=str).reindex(names).astype(float)
        missing = [w for w, v in zip(names, values, strict=True) if np.isnan(v)]
        frame = gdf.assign(_value=values.to_numpy())
        frame.plot(column="_value", ax=ax, cmap=cmaps[p.kind], norm=norms[p.kind],
                   edgecolor="#404040", linewidth=0.6,
                   missing_kwds=NO_DATA | {"label": "no data"})
        if missing:
            ax.legend(handles=[Patch(facecolor=NO_DATA["facecolor"], hatch=NO_DATA["hatch"],
                                     edgecolor=NO_DATA["edgecolor"], label=plot_text(
                "no data: " + ", ".join(missing[:4]) + (" …" if len(missing) > 4 else "")))],
                      loc="upper left", bbox_to_anchor=(0, -0.02), fontsize=7, frameon=False)
        if len(names) <= LABEL_LIMIT:
            for name, point in zip(names, gdf.geometry.representative_point(), strict=True):
                ax.annotate(plot_text(name), (point.x, point.y), ha="center", va="center",
                            fontsize=6.5, color="#202020", path_effects=HALO)
        ax.set_title(plot_text(p.title), fontsize=9)
        ax.set_axis_off()
        ax.set_aspect("equal")
    adoption = [ax for ax, p in zip(axes, panels, strict=True) if p.kind == "adoption"]
    effect = [ax for ax, p in zip(axes, panels, strict=True) if p.kind == "effect"]
    if adoption:
        fig.colorbar(ScalarMappable(norms["adoption"], cmaps["adoption"]), ax=adoption,
                     orientation="horizontal", shrink=0.6, aspect=30,
                     label="households taking part (%)")
    if effect:
        fig.colorbar(ScalarMappable(norms["effect"], cmaps["effect"]), ax=effect,
                     orientation="horizontal", shrink=0.9, aspect=20,
                     label="change (percentage points)")
    if title:
        fig.suptitle(plot_text(title), fontsize=10)
    return fig


def ward_map(gdf: gpd.GeoDataFrame, by_ward: pd.DataFrame, step_unit: str = "step",
             title: str = "") -> Figure:
    """The run's maps (run_panels) from its by_ward table: start, end, and the effect
    when the table carries the no-campaign twin's `counterfactual_rate`."""
    return map_figure(gdf, run_panels(by_ward, step_unit), title)


def save_map(fig: Figure, path: str | Path, dpi: int = 110) -> Path:
    """Write `fig` as a PNG atomically (readers never see half a file)."""
    png = io.BytesIO()
    fig.savefig(png, format="png", dpi=dpi)
    path = Path(path)
    write_atomic(path, png.getvalue())
    return path


def boundaries(sc: Scenario) -> gpd.GeoDataFrame | None:
    """The scenario's ward polygons, or None when it has no `[geography]` table."""
    if getattr(sc, "geography", None) is None:
        return None
    from .geography import load_boundaries

    return load_boundaries(sc)


def run_map(sc: Scenario, by_ward: pd.DataFrame, path: str | Path) -> Path | None:
    """map.png of a run (ward_map on the scenario's boundaries), or None without
    `[geography]`."""
    gdf = boundaries(sc)
    if gdf is None:
        return None
    last = int(by_ward["step"].max())
    fig = ward_map(gdf, by_ward, sc.step_unit,
                   f"{sc.name}: households taking part by ward over {last} {sc.step_unit}s "
                   f"(seed {sc.seed}; one simulation)")
    return save_map(fig, path)

