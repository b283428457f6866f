"""Report of a sweep folder (`nudgesim sweep`, `ns.Experiment.run`): what was varied, one
row per design point with each outcome's mean and interval, and one figure per outcome
against the first factor.

Reads ``manifest.json`` and ``summary.parquet`` (both written by every sweep) and, when a
sensitivity analysis wrote them, ``sensitivity_<method>_<outcome>.csv``. Builds a
:class:`nudgesim.document.Doc`, so the HTML and Markdown writers (and their escaping of
user text: factor paths, labels and names all come from an experiment file) are the
report's own. Figures are PNG files beside the report (``report_sweep_<outcome>.png``).
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import matplotlib

matplotlib.use("Agg")  # headless, as the report
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
import pandas as pd  # noqa: E402

from .document import Doc, em, money, num, pct  # noqa: E402
from .errors import ScenarioError  # noqa: E402
from .files import safe_name, save_figure  # noqa: E402
from .outcomes import IMPACT_UNIT, OUTCOMES  # noqa: E402
from .plots import plot_text  # noqa: E402

SHOWN_POINTS = 60  # design points in the report's table; all of them are in summary.parquet
COLOURED = 8  # at most this many values of the second factor get their own colour

SWEEP_INTERVAL_WORDS = (
    "Numbers in brackets are 95% Student-t intervals of the mean over the replicates of "
    "each design point. They cover ", em("chance in the simulation only"), " (which "
    "households happen to act each week, with the settings of that point held fixed): "
    "the mean of endlessly many replicates of the point would lie inside them about 95 "
    "times in 100. They do ", em("not"), " include doubt about the settings the sweep did not vary, "
    "nor about the model's structure. Replicate r has the same seed at every point "
    "(common random numbers), so differences between points are sharper than the "
    "intervals suggest.",
)


def is_sweep_folder(folder: Path) -> bool:
    """A folder a sweep wrote: its manifest and per-point summary."""
    return (folder / "manifest.json").is_file() and (folder / "summary.parquet").is_file()


def sweep_doc(folder: str | Path) -> Doc:
    """The report of one sweep folder, as a Doc (``write_report`` writes it)."""
    folder = Path(folder)
    if not is_sweep_folder(folder):
        raise ScenarioError(f"RESULTS_DIR: {folder} has no manifest.json and summary.parquet; "
                            "allowed: a folder written by 'nudgesim sweep'")
    try:
        manifest = json.loads((folder / "manifest.json").read_text(encoding="utf-8"))
        summary = pd.read_parquet(folder / "summary.parquet")
        design = manifest["design"]
        runs = manifest["runs"]
    except (OSError, ValueError, KeyError, TypeError) as err:
        raise ScenarioError(f"RESULTS_DIR: {folder}: cannot read the sweep's manifest.json "
                            f"or summary.parquet ({type(err).__name__}: {err})") from None
    roles = {**{p: "lever" for p in design.get("levers") or {}},
             **{p: "uncertainty" for p in design.get("uncertainties") or {}}}
    factors = [c for c in summary.columns if c in roles]
    outcomes = [c[: -len("_mean")] for c in summary.columns
                if c.endswith("_mean") and f"{c[:-5]}_ci_low" in summary.columns]
    if "step" in summary.columns:  # per-step sweep: the table and figures show the last step
        summary = summary[summary["step"] == summary["step"].max()]
    left_out: list[str] = []
    if not design.get("outcomes"):  # every numeric summary field: keep those worth a column
        keep = [o for o in outcomes if _worth_showing(summary, o)]
        left_out, outcomes = [o for o in outcomes if o not in keep], keep
    scenario = manifest.get("scenario") or {}
    unit = str((scenario.get("impact") or {}).get("unit", "impact"))
    replicates = int(design.get("replicates") or 1)

    doc = Doc(f"Sweep: {manifest.get('experiment', folder.name)}")
    doc.h("What was varied")
    doc.p(f"Scenario {scenario.get('name', '?')!s}, {len(summary)} design point"
          f"{'s' if len(summary) != 1 else ''} ({design.get('kind', '?')} design) × "
          f"{replicates} replicate{'s' if replicates != 1 else ''} = {runs.get('total', '?')} "
          f"runs, {runs.get('errors', 0)} of which failed.")
    if factors:
        doc.table(["Factor (path into the scenario)", "Role", "Values or range"],
                  [[f, roles[f], _spec_words((design.get("levers") or {}).get(f, (
                      design.get("uncertainties") or {}).get(f)))] for f in factors])
    else:
        doc.p("No factor was varied: every point is the base scenario.")
    if runs.get("errors"):
        doc.note(f"{runs['errors']} run(s) raised an error; their rows in runs.parquet say "
                 "why, and the means below leave them out ('nudgesim sweep --retry-errors' "
                 "runs them again).")

    doc.h("Outcomes per design point")
    doc.p(*SWEEP_INTERVAL_WORDS)
    if replicates < 2:
        doc.note("One replicate per point: there is no spread to measure, so no interval "
                 "is shown. Run the sweep with replicates = 2 or more for intervals.")
    shown = summary.head(SHOWN_POINTS)
    header = ["Point", *factors, "Runs", *[_label(o, unit) for o in outcomes]]
    rows = [[str(r["point"]), *[_value(r[f]) for f in factors], str(r["n_runs"]),
             *[_with_interval(o, r, unit) for o in outcomes]]
            for r in shown.to_dict("records")]  # records keep each column's type
    doc.table(header, rows)
    if left_out:
        doc.note("Not shown (the sweep named no outcomes, and these are information only or "
                 f"the same at every point): {', '.join(left_out)}; they are in "
                 "summary.parquet.")
    if len(summary) > SHOWN_POINTS:
        doc.note(f"The first {SHOWN_POINTS} of {len(summary)} design points; all of them "
                 "are in summary.parquet (and every run in runs.parquet).")

    if factors and outcomes:
        doc.h("Pictures")
        for o in outcomes:
            path = plot_outcome(summary, o, factors, unit,
                                folder / f"report_sweep_{safe_name(o)}.png")
            doc.img(path, f"{_label(o, unit)} at each design point against {factors[0]}"
                          " (dot: mean over replicates; bar: 95% interval of the mean, "
                          "simulation noise only).")
    _sensitivity_section(doc, folder)
    return doc


# ---------------------------------------------------------------------------------------
# Words and numbers
# ---------------------------------------------------------------------------------------


def _spec_words(spec: Any) -> str:
    """A factor's values or range, as the experiment file gave it."""
    if isinstance(spec, dict):
        if "labels" in spec:
            return ", ".join(map(str, spec["labels"]))
        if "low" in spec and "high" in spec:
            extra = ", whole numbers" if spec.get("integer") else ""
            levels = f", {spec['levels']} levels" if spec.get("levels") else ""
            return f"from {spec['low']} to {spec['high']}{extra}{levels}"
    if isinstance(spec, list):
        return ", ".join(map(str, spec))
    return str(spec)


def _worth_showing(summary: pd.DataFrame, name: str) -> bool:
    """An outcome a campaign wants more or less of (not "info") that differs between runs."""
    known = OUTCOMES.get(name)
    if known is not None and known.direction == "info":
        return False
    means = summary[f"{name}_mean"].to_numpy(dtype=float)
    spread = summary[f"{name}_std"].to_numpy(dtype=float) if f"{name}_std" in summary else []
    finite = means[np.isfinite(means)]
    return bool(len(finite) and (np.ptp(finite) > 0 or np.nanmax(np.r_[spread, 0.0]) > 0))


def _label(name: str, unit: str) -> str:
    known = OUTCOMES.get(name)
    if known is None or not known.unit or known.unit in ("share",):
        return name + (" (%)" if known is not None and known.unit == "share" else "")
    return f"{name} ({known.unit_for(unit)})"


def _fmt(name: str, x: Any) -> str:
    """A number in its outcome's unit: shares as %, money as £, counts whole."""
    if x is None or (isinstance(x, float) and not np.isfinite(x)):
        return "–"
    known = OUTCOMES.get(name)
    u = known.unit if known else ""
    if u == "share":
        return pct(float(x))
    if u == "£":
        return money(float(x))
    if u.startswith("£ per"):
        return f"£{float(x):,.2f}" if abs(float(x)) < 10 else money(float(x))
    if u in ("households", "contacts", "lapses", "ties", "steps", "step"):
        return num(float(x))
    if u == IMPACT_UNIT:
        return num(float(x), 1)
    return f"{float(x):.4g}"


def _with_interval(name: str, row: dict[str, Any], unit: str) -> str:
    mean = _fmt(name, row[f"{name}_mean"])
    lo, hi = row[f"{name}_ci_low"], row[f"{name}_ci_high"]
    if pd.isna(lo) or pd.isna(hi):
        return mean
    return f"{mean} [{_fmt(name, lo)}, {_fmt(name, hi)}]"


def _value(x: Any) -> str:
    if isinstance(x, float):
        return f"{x:.4g}"
    return str(x)


# ---------------------------------------------------------------------------------------
# The figure: an outcome against the first factor
# ---------------------------------------------------------------------------------------


def plot_outcome(summary: pd.DataFrame, outcome: str, factors: list[str], unit: str,
                 path: Path) -> Path:
    """Mean and 95% interval of `outcome` at every design point against the first factor;
    points that differ in the second factor are coloured by it (when it has few values),
    since each x may hold several design points."""
    first = factors[0]
    scale = 100.0 if (OUTCOMES.get(outcome) and OUTCOMES[outcome].unit == "share") else 1.0
    x_raw = summary[first]
    numeric_x = pd.api.types.is_numeric_dtype(x_raw) and not pd.api.types.is_bool_dtype(x_raw)
    cats = list(dict.fromkeys(map(str, x_raw))) if not numeric_x else []
    second = factors[1] if len(factors) > 1 else None
    groups = (list(dict.fromkeys(map(str, summary[second])))
              if second is not None and summary[second].nunique() <= COLOURED else [None])
    fig, ax = plt.subplots(figsize=(7.5, 4.2))
    colours = [plt.get_cmap("tab10")(i) for i in range(10)]
    width = 0.6
    for g_i, g in enumerate(groups):
        part = summary if g is None else summary[summary[second].map(str) == g]
        if numeric_x:
            x = part[first].to_numpy(dtype=float)
        else:  # categories side by side, each group's points shifted within the category
            shift = 0.0 if len(groups) == 1 else (g_i / (len(groups) - 1) - 0.5) * width
            x = np.array([cats.index(str(v)) for v in part[first]], dtype=float) + shift
        mean = part[f"{outcome}_mean"].to_numpy(dtype=float) * scale
        lo = part[f"{outcome}_ci_low"].to_numpy(dtype=float) * scale
        hi = part[f"{outcome}_ci_high"].to_numpy(dtype=float) * scale
        has = np.isfinite(lo) & np.isfinite(hi)
        err = np.vstack([np.where(has, mean - lo, 0.0), np.where(has, hi - mean, 0.0)])
        label = None if g is None else plot_text(f"{second} = {g}")
        ax.errorbar(x, mean, yerr=err, fmt="o", ms=5, capsize=3, lw=1.2,
                    color=colours[g_i % len(colours)], label=label, alpha=0.85)
    if not numeric_x:
        ax.set_xticks(range(len(cats)), [plot_text(c) for c in cats])
    ax.set_xlabel(plot_text(first))
    ax.set_ylabel(plot_text(_label(outcome, unit)))
    ax.set_title(plot_text(f"{outcome}: mean and 95% interval over replicates "
                           "(simulation noise only)"), fontsize=10)
    ax.grid(alpha=0.3)
    if groups != [None]:
        ax.legend(fontsize=8, frameon=True)
    fig.tight_layout()
    return save_figure(fig, path, dpi=100)


# ---------------------------------------------------------------------------------------
# Sensitivity indices, when `nudgesim sensitivity` wrote them into the folder
# ---------------------------------------------------------------------------------------


def _sensitivity_section(doc: Doc, folder: Path) -> None:
    files = sorted(folder.glob("sensitivity_*.csv"))
    if not files:
        return
    doc.h("Sensitivity indices")
    doc.p("From 'nudgesim sensitivity' (SALib): how much each factor moves the outcome over "
          "its whole range, with 95% bootstrap intervals in the _conf columns.")
    for f in files:
        table = pd.read_csv(f)
        doc.p(em(f.stem))
        doc.table(list(map(str, table.columns)),
                  [[_value(v) for v in row] for row in table.itertuples(index=False)])
        png = f.with_suffix(".png")
        if png.is_file():
            doc.img(png, f"Sensitivity indices ({f.stem}).")
