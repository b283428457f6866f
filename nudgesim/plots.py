"""Figures of a run: the adoption curve with nudge windows shaded, cost and impact below."""

from __future__ import annotations

import io
from pathlib import Path
from typing import TYPE_CHECKING, Any, Protocol

# Matplotlib's object API, not pyplot: a figure drawn straight onto an Agg canvas needs no
# backend selection, no global figure registry to close, and skips importing pyplot
# (~0.2 s of every `nudgesim run`). Headless by construction: sweeps and CI have no screen.
import matplotlib
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure
from matplotlib.ticker import FuncFormatter

from .files import write_atomic

if TYPE_CHECKING:
    import numpy as np
    import pandas as pd

    from .scenario import Scenario


class RunRecord(Protocol):
    """What `plot_run` reads from a run (a `Result` has it): plots need no Result class."""

    scenario: Scenario
    timeseries: pd.DataFrame
    by_ward: pd.DataFrame
    adopted: np.ndarray
    nudge_windows: list[dict[str, Any]]


def plot_text(text: object) -> str:
    """Text for a matplotlib label, shown as written: a `$` would start mathtext, which
    renders `$x^2$` as maths and fails the whole figure on `$\\foo$`."""
    return str(text).replace("$", r"\$")


def plot_run(result: RunRecord, path: str | Path) -> Path:
    """Draw `run_figure` and write it as a PNG (atomically: readers never see half a PNG)."""
    png = io.BytesIO()
    run_figure(result).savefig(png, format="png", dpi=110)
    path = Path(path)
    write_atomic(path, png.getvalue())
    return path


def run_figure(result: RunRecord) -> Figure:
    """Three panels sharing the time axis: adoption (borough line, ward range, nudge starts),
    one shaded bar per nudge window with its contact days, and cumulative cost and impact.
    Windows get their own rows because overlapping shading over the curve is unreadable.
    A run with its no-campaign twin (`counterfactual_*` columns) also draws the twin's
    adoption and impact, dotted: the gap between the lines is what the campaign added."""
    ts, wards, sc = result.timeseries, result.by_ward, result.scenario
    windows = result.nudge_windows
    fig = Figure(figsize=(9, 7.5))
    FigureCanvasAgg(fig)
    top, mid, bottom = fig.subplots(
        3, 1, sharex=True,
        gridspec_kw={"height_ratios": [3, 0.25 + 0.3 * max(len(windows), 1), 2]},
    )
    colours = matplotlib.colormaps["tab10"]
    for i, w in enumerate(windows):
        top.axvline(w["start"] - 0.5, color=colours(i % 10), lw=1, ls="--", alpha=0.8)
        mid.barh(i, w["stop"] - w["start"], left=w["start"] - 0.5, height=0.6,
                 color=colours(i % 10), alpha=0.35)
        mid.plot(w["contacts"], [i] * len(w["contacts"]), "|", color=colours(i % 10), ms=9, mew=2)
    mid.set_yticks(range(len(windows)), [plot_text(w["name"]) for w in windows], fontsize=8)
    mid.set_ylim(max(len(windows), 1) - 0.5, -0.5)
    mid.set_ylabel("nudges\n(| = contact)", fontsize=8)
    mid.grid(axis="x", alpha=0.3)

    spread = wards.groupby("step")["adoption_rate"].agg(["min", "max"])
    if wards["ward"].nunique() > 1:
        top.fill_between(spread.index, 100 * spread["min"], 100 * spread["max"], color="grey",
                         alpha=0.2, lw=0, label="range across wards")
    twin = "counterfactual_rate" in ts  # the no-campaign twin (simulate(counterfactual=True))
    top.plot(ts["step"], 100 * ts["adoption_rate"], color="black", lw=2,
             label="whole borough, with the campaign" if twin else "whole borough")
    if twin:
        top.plot(ts["step"], 100 * ts["counterfactual_rate"], color="black", lw=1.5, ls=":",
                 label="whole borough, no campaign (same seed)")
    top.set_ylabel("households adopting (%)")
    peak = float(spread["max"].max())
    if twin:
        peak = max(peak, float(ts["counterfactual_rate"].max()))
    top.set_ylim(0, min(100.0, max(5.0, 100 * peak * 1.15)))
    top.set_title(plot_text(f"{sc.name}: {len(result.adopted):,} residents over {len(ts) - 1} "
                            f"{sc.step_unit}s (seed {sc.seed}); dashed = a nudge starts"),
                  fontsize=10)
    top.legend(loc="upper left", fontsize=8, frameon=False)
    top.grid(alpha=0.3)

    bottom.plot(ts["step"], ts["cost"], color="tab:red", lw=2)
    bottom.set_ylabel("cumulative cost (£)", color="tab:red")
    bottom.yaxis.set_major_formatter(FuncFormatter(lambda v, _: f"£{v:,.0f}"))
    bottom.set_xlabel(plot_text(f"step ({sc.step_unit})"))
    bottom.grid(alpha=0.3)
    right = bottom.twinx()
    right.plot(ts["step"], ts["impact"], color="tab:green", lw=2, label="impact, with the campaign")
    if twin:
        right.plot(ts["step"], ts["counterfactual_impact"], color="tab:green", lw=1.5, ls=":",
                   label="impact, no campaign")
        right.legend(loc="upper left", fontsize=8, frameon=False)
    right.set_ylabel(plot_text(f"cumulative impact\n({sc.impact.unit})"), color="tab:green",
                     fontsize=9)
    fig.tight_layout()
    return fig
