"""Figures of a decision under uncertainty, read from a saved comparison or plan folder
(decision.csv, voi.csv, plan.json or the meta passed in): which option is best how often,
what choosing each costs when it is not, what knowing a parameter is worth, and the range
of each option's result. The report draws them with :func:`decision_figures`."""

from __future__ import annotations

import json
import textwrap
from pathlib import Path
from typing import Any

import matplotlib

matplotlib.use("Agg")  # headless: reports are written on servers and in CI
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
import pandas as pd  # noqa: E402

from ..files import save_figure  # noqa: E402
from ..plots import plot_text  # noqa: E402

BLUE, GREY, RED, GREEN = "#1f77b4", "#9aa7b5", "#d62728", "#2ca02c"
RULES = (("best_expected", "average"), ("minimax_regret", "regret"),
         ("best_p10", "bad case"))
FILES = ("report_pbest.png", "report_regret.png", "report_ensemble.png", "report_voi.png")
"""The figures :func:`decision_figures` writes (names for nudgesim.files.REPORT_FILES)."""


def _short(name: str, limit: int = 48) -> str:
    return plot_text(name if len(name) <= limit else name[: limit - 1] + "…")


def _wrapped(name: str) -> str:
    """A portfolio's name over up to three lines (names differ at their ends)."""
    lines = textwrap.wrap(name, 44)
    if len(lines) > 3:
        lines = [*lines[:2], textwrap.shorten(" ".join(lines[2:]), 44, placeholder="…")]
    return plot_text("\n".join(lines))


def _labels(decision: pd.DataFrame) -> list[str]:
    """Option names, each with the choice rules that pick it."""
    out = []
    for _, r in decision.iterrows():
        picked = [words for rule, words in RULES if bool(r[rule])]
        out.append(_wrapped(str(r["option"]))
                   + (f"\n(best by {', '.join(picked)})" if picked else ""))
    return out


def _lines(decision: pd.DataFrame) -> int:
    """Lines the longest option label takes."""
    return max(label.count("\n") + 1 for label in _labels(decision))


def _unit(meta: dict[str, Any]) -> str:
    ens = meta.get("ensemble", meta)
    if ens.get("value_per_unit") is not None:
        return "net benefit (£)"
    return plot_text(meta.get("target_label") or {
        "adoption": "extra households taking part", "impact": "extra impact",
        "equity": "share taking part in the lowest ward"}.get(ens.get("target", ""), "result"))


def _legend(ax: Any) -> None:
    ax.legend(fontsize=8, framealpha=0.9, loc="best")


def _bars(n: int, lines: int = 1) -> tuple[Any, Any, np.ndarray]:
    fig, ax = plt.subplots(figsize=(9.5, max(3.0, (0.25 + 0.2 * lines) * n + 1.4)))
    return fig, ax, np.arange(n)[::-1]


def plot_p_best(decision: pd.DataFrame, meta: dict[str, Any], path: Path) -> Path:
    """How often each option is the best one, over the parameter draws."""
    fig, ax, y = _bars(len(decision), _lines(decision))
    best = decision["best_expected"].to_numpy(dtype=bool)
    ax.barh(y, 100 * decision["p_best"], color=np.where(best, BLUE, GREY))
    for yi, p in zip(y, decision["p_best"]):
        ax.text(100 * p + 1, yi, f"{100 * p:.0f}%", va="center", fontsize=8)
    ax.set_yticks(y, _labels(decision), fontsize=8)
    ax.set_xlim(0, 110)
    ax.set_xlabel("chance of being the best option (% of draws)")
    ax.set_title(plot_text(f"How often each option is best ({meta['ensemble']['draws']} "
                           "plausible parameter sets)"), fontsize=10)
    ax.grid(axis="x", alpha=0.3)
    fig.tight_layout()
    return save_figure(fig, path, dpi=100)


def plot_regret(decision: pd.DataFrame, meta: dict[str, Any], path: Path) -> Path:
    """What choosing each option gives up against the best one: on average (bar) and in the
    worst draw (marker)."""
    fig, ax, y = _bars(len(decision), _lines(decision))
    ax.barh(y, decision["expected_regret"], color=GREY, label="on average (expected regret)")
    ax.plot(decision["max_regret"], y, "D", color=RED, ms=5, label="in the worst draw")
    ax.set_yticks(y, _labels(decision), fontsize=8)
    ax.set_xlabel(plot_text(f"shortfall against the best option ({_unit(meta)})"))
    ax.set_title("What each choice could give up (regret)", fontsize=10)
    ax.grid(axis="x", alpha=0.3)
    _legend(ax)
    fig.tight_layout()
    return save_figure(fig, path, dpi=100)


def plot_intervals(decision: pd.DataFrame, meta: dict[str, Any], path: Path) -> Path:
    """Each option's expected result with the 95% range over parameter draws (covers
    parameters and simulation noise) and its 10th percentile."""
    fig, ax, y = _bars(len(decision), _lines(decision))
    mean, lo, hi = (decision[c].to_numpy(dtype=float)
                    for c in ("expected", "lo_params_noise", "hi_params_noise"))
    ax.errorbar(mean, y, xerr=[mean - lo, hi - mean], fmt="o", color=BLUE, ms=5, lw=1.5,
                capsize=3, label="average; bar: 95% range (parameters and noise)")
    ax.plot(decision["p10"], y, "|", color=RED, ms=12, mew=2, label="10th percentile")
    ax.set_yticks(y, _labels(decision), fontsize=8)
    ax.set_xlabel(_unit(meta))
    ax.set_title("Each option's result, with what we do not know", fontsize=10)
    ax.grid(axis="x", alpha=0.3)
    _legend(ax)
    fig.tight_layout()
    return save_figure(fig, path, dpi=100)


def plot_voi(voi: pd.DataFrame, meta: dict[str, Any], path: Path, rows: int = 12) -> Path:
    """Single-parameter EVPPI, largest first, against the value of knowing everything."""
    top = voi.head(rows)
    fig, ax, y = _bars(len(top))
    ax.barh(y, top["evppi"], color=GREEN)
    evpi = meta["ensemble"]["evpi"]
    ax.axvline(evpi, color="black", ls=":", lw=1.5,
               label=f"knowing every parameter (EVPI): {evpi:,.1f}")
    ax.set_yticks(y, [_short(str(p)) for p in top["parameter"]], fontsize=8)
    ax.set_xlabel(plot_text(f"expected gain from knowing this parameter ({_unit(meta)})"))
    ax.set_title("Which unknown is worth a pilot (value of information)", fontsize=10)
    ax.grid(axis="x", alpha=0.3)
    _legend(ax)
    fig.tight_layout()
    return save_figure(fig, path, dpi=100)


def decision_figures(folder: str | Path) -> list[tuple[Path, str]]:
    """Draw the four figures into `folder` (a saved ensemble comparison or plan) and return
    (path, alt text) pairs in reading order; [] for a folder without an ensemble."""
    folder = Path(folder)
    if not (folder / "decision.csv").exists():
        return []
    decision = pd.read_csv(folder / "decision.csv").sort_values(
        "expected", ascending=False, kind="stable").reset_index(drop=True)
    voi = pd.read_csv(folder / "voi.csv")
    meta: dict[str, Any] = {}
    if (folder / "plan.json").exists():
        meta = json.loads((folder / "plan.json").read_text(encoding="utf-8"))
    meta["ensemble"] = json.loads((folder / "ensemble.json").read_text(encoding="utf-8"))
    p, r, e, v = (folder / name for name in FILES)
    return [
        (plot_p_best(decision, meta, p), "bar chart: chance that each option is the best"),
        (plot_regret(decision, meta, r), "bar chart: expected and worst regret of each option"),
        (plot_intervals(decision, meta, e), "each option's result with its range"),
        (plot_voi(voi, meta, v), "bar chart: value of knowing each parameter"),
    ]
