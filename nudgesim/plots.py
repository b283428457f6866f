"""Figures of a run: the adoption curve with nudge windows shaded, cost and impact below."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING

import matplotlib

matplotlib.use("Agg")  # headless: sweeps and CI have no screen
import matplotlib.pyplot as plt  # noqa: E402

if TYPE_CHECKING:
    from .result import Result


def plot_run(result: Result, path: str | Path) -> Path:
    """Two panels: adoption (borough and ward range) over time; cumulative cost and impact."""
    ts, wards, sc = result.timeseries, result.by_ward, result.scenario
    fig, (top, bottom) = plt.subplots(
        2, 1, figsize=(9, 6.5), sharex=True, gridspec_kw={"height_ratios": [3, 2]}
    )
    colours = plt.get_cmap("tab10")
    for i, w in enumerate(result.nudge_windows):
        top.axvspan(w["start"] - 0.5, w["stop"] - 0.5, color=colours(i % 10), alpha=0.12,
                    label=f"{w['name']} ({w['start']}–{w['stop'] - 1})")
    spread = wards.groupby("step")["adoption_rate"].agg(["min", "max"])
    if wards["ward"].nunique() > 1:
        top.fill_between(spread.index, 100 * spread["min"], 100 * spread["max"], color="grey",
                         alpha=0.25, label="ward range")
    top.plot(ts["step"], 100 * ts["adoption_rate"], color="black", lw=2, label="borough")
    top.set_ylabel("residents adopting (%)")
    top.set_ylim(0, max(5.0, 100 * float(spread["max"].max()) * 1.1))
    top.set_title(f"{sc.name}: adoption over {len(ts) - 1} {sc.step_unit}s "
                  f"({len(result.adopted):,} residents, seed {sc.seed})")
    top.legend(loc="upper left", fontsize=8, ncol=2, frameon=False)
    top.grid(alpha=0.3)

    bottom.plot(ts["step"], ts["cost"], color="tab:red", lw=2, label="cumulative cost")
    bottom.set_ylabel("cost (£)", color="tab:red")
    bottom.set_xlabel(f"step ({sc.step_unit})")
    bottom.grid(alpha=0.3)
    twin = bottom.twinx()
    twin.plot(ts["step"], ts["impact"], color="tab:green", lw=2, label="cumulative impact")
    twin.set_ylabel(f"impact ({sc.impact.unit})", color="tab:green")
    fig.tight_layout()
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.stem}.tmp{path.suffix}")
    fig.savefig(tmp, dpi=120)
    plt.close(fig)
    tmp.replace(path)
    return path
