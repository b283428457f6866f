"""Global sensitivity: Sobol (first and total order) or Morris indices via SALib.

The experiment's factors (levers and uncertainties) are sampled on the unit cube with
SALib's Saltelli/Sobol or Morris sampler, mapped to values by ``Factor.from_unit`` (linear
on ranges, equal-width bins on lists of choices), run as an ordinary sweep — resumable,
on any executor — and the outcome's mean over replicates at each point is analysed.
Averaging replicates that share seeds (common random numbers) keeps simulation noise from
masquerading as sensitivity; what noise remains shows in the bootstrap intervals.

Morris elementary effects are in outcome units per *whole range* of a factor, so
``mu_star`` compares factors directly.
"""

from __future__ import annotations

import warnings
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from .experiment import MORRIS_LEVELS, Experiment, ExperimentResult
from .files import output_dir, save_figure, write_atomic, write_parquet_atomic
from .outcomes import outcome as named_outcome
from .scenario import ScenarioError, ScenarioWarning

METHODS = ("sobol", "morris")
#: Fewest Sobol base samples / Morris trajectories before the ranking is worth reading
#: (assumption: Saltelli et al. 2010 use N in the hundreds; Campolongo et al. 2007 use
#: r = 10-20 trajectories); fewer, or intervals wider than MAX_HALF_WIDTH, get a warning.
MIN_SAMPLES = {"sobol": 64, "morris": 10}
#: Widest 95% half-width of a Sobol index (indices live in [0, 1]), or of a Morris mu*
#: relative to the largest mu*, above which factors' places in the ranking can swap by
#: chance (assumption: half the indices' range).
MAX_HALF_WIDTH = 0.5


@dataclass
class SensitivityResult:
    """Indices (one row per factor), the figure's path and the underlying sweep."""

    indices: pd.DataFrame
    figure: Path | None
    sweep: ExperimentResult
    method: str
    outcome: str


def sensitivity(
    experiment: Experiment | str | Path,
    outcome: str = "final_adoption",
    method: str = "sobol",
    samples: int | None = None,
    replicates: int | None = None,
    out: str | Path | None = None,
    executor: str = "processes",
    workers: int | None = None,
    scheduler: str | None = None,
    progress: bool | None = None,
    num_resamples: int = 100,
    plot: bool = True,
    dask_timeout: float | None = None,
) -> SensitivityResult:
    """Sobol or Morris indices of `outcome` over the experiment's levers and uncertainties.

    samples: Sobol base sample N (a power of 2; N x (d + 2) points) or Morris trajectories
    (N x (d + 1) points); default: the experiment's `samples`. Writes the sweep's tables
    and ``sensitivity_<method>_<outcome>.csv`` (and ``.png``) to `out` (default
    results/<experiment>_<method>).
    """
    if method not in METHODS:
        raise ScenarioError(f"method: {method!r} is not allowed; allowed: {', '.join(METHODS)}")
    exp = Experiment.from_toml(experiment) if isinstance(experiment, (str, Path)) else experiment
    if exp.measure is None:  # a summary outcome: refuse a typo before any run is spent
        named_outcome(outcome)
    for f in exp.factors:
        if not f.is_range and len(f.values) < 2:  # type: ignore[arg-type]
            raise ScenarioError(f'{f.role}s."{f.path}": a single value cannot vary; drop it')
    exp = exp.replace(
        design=method, samples=samples or exp.samples, replicates=replicates or exp.replicates
    )
    if exp.outcomes is not None and outcome not in exp.outcomes:
        exp = exp.replace(outcomes=[*exp.outcomes, outcome])
    out = output_dir(f"{exp.name}_{method}", out)
    res = exp.run(
        out=out, executor=executor, workers=workers, scheduler=scheduler, progress=progress,
        dask_timeout=dask_timeout,
    )
    if f"{outcome}_mean" not in res.summary:
        allowed = [c[:-5] for c in res.summary.columns if c.endswith("_mean")]
        raise ScenarioError(f"outcome: {outcome!r} is not a numeric outcome; allowed: {allowed}")
    y = res.summary.sort_values("point")[f"{outcome}_mean"].to_numpy(dtype=np.float64)
    bad = np.flatnonzero(~np.isfinite(y))
    if len(bad):
        raise ScenarioError(
            f"outcome {outcome!r} is undefined at {len(bad)} of {len(y)} design points "
            f"(e.g. point {bad[0]}: every replicate failed or gave no value); choose another "
            "outcome or narrow the ranges"
        )
    problem = exp.problem()
    x = res.unit_design
    if method == "sobol":
        from SALib.analyze import sobol

        si = sobol.analyze(
            problem, y, calc_second_order=False, num_resamples=num_resamples, seed=exp.seed
        )
        indices = pd.DataFrame(
            {
                "factor": problem["names"],
                "role": [f.role for f in exp.factors],
                "S1": si["S1"],
                "S1_conf": si["S1_conf"],
                "ST": si["ST"],
                "ST_conf": si["ST_conf"],
            }
        )
    else:
        from SALib.analyze import morris

        si = morris.analyze(
            problem, x, y, num_resamples=num_resamples, num_levels=MORRIS_LEVELS, seed=exp.seed
        )
        indices = pd.DataFrame(
            {
                "factor": problem["names"],
                "role": [f.role for f in exp.factors],
                "mu": si["mu"],
                "mu_star": si["mu_star"],
                "sigma": si["sigma"],
                "mu_star_conf": si["mu_star_conf"],
            }
        )
    indices.insert(2, "outcome", outcome)
    _warn_if_too_few(indices, method, int(exp.samples))  # type: ignore[arg-type]
    stem = f"sensitivity_{method}_{outcome}"
    write_atomic(res.out / f"{stem}.csv", indices.to_csv(index=False))
    write_parquet_atomic(indices, res.out / f"{stem}.parquet")
    fig = (
        plot_indices(
            indices,
            method,
            outcome,
            res.out / f"{stem}.png",
            title=f"{exp.name}: {len(y)} points x {exp.replicates} replicates",
        )
        if plot
        else None
    )
    return SensitivityResult(indices=indices, figure=fig, sweep=res, method=method, outcome=outcome)


def plot_indices(
    indices: pd.DataFrame, method: str, outcome: str, path: Path, title: str = ""
) -> Path:
    """Bar chart of S1 and ST with their intervals (Sobol), or mu* against sigma (Morris)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    names = indices["factor"].tolist()
    fig, ax = plt.subplots(figsize=(8, 0.45 * len(names) + 1.8), dpi=110)
    if method == "sobol":
        order = np.argsort(indices["ST"].to_numpy())
        yy = np.arange(len(names))
        h = 0.38
        ax.barh(
            yy + h / 2,
            indices["ST"].to_numpy()[order],
            h,
            xerr=indices["ST_conf"].to_numpy()[order],
            label="total order (ST)",
            color="#1f77b4",
            capsize=2,
        )
        ax.barh(
            yy - h / 2,
            indices["S1"].to_numpy()[order],
            h,
            xerr=indices["S1_conf"].to_numpy()[order],
            label="first order (S1)",
            color="#ff7f0e",
            capsize=2,
        )
        ax.set_yticks(yy, [names[i] for i in order], fontsize=8)
        ax.axvline(0, color="grey", lw=0.8)
        ax.set_xlabel(f"Sobol index of {outcome} (share of variance; bars = 95% bootstrap CI)")
        ax.legend(loc="lower right", fontsize=8)
    else:
        ax.errorbar(
            indices["mu_star"], indices["sigma"], xerr=indices["mu_star_conf"], fmt="o", capsize=2
        )
        for _, row in indices.iterrows():
            ax.annotate(
                row["factor"],
                (row["mu_star"], row["sigma"]),
                fontsize=7,
                xytext=(3, 3),
                textcoords="offset points",
            )
        ax.set_xlabel(f"mu* (mean |elementary effect| on {outcome} over a factor's whole range)")
        ax.set_ylabel("sigma (interactions / non-linearity)")
    ax.set_title(title or f"{method} sensitivity of {outcome}", fontsize=10)
    fig.tight_layout()
    return save_figure(fig, path)


def _warn_if_too_few(indices: pd.DataFrame, method: str, samples: int) -> None:
    """Say so when the sample is too small for the indices to mean anything (at N = 4 a
    Sobol S1 of -0.83 +- 2.08 is noise, not a finding)."""
    if method == "sobol":
        widest = float(np.nanmax(indices[["S1_conf", "ST_conf"]].to_numpy(), initial=0.0))
        shown = f"+-{widest:.2f}"
    else:
        top = float(np.nanmax(indices["mu_star"].to_numpy(), initial=0.0))
        conf = float(np.nanmax(indices["mu_star_conf"].to_numpy(), initial=0.0))
        widest = conf / top if top > 0 else 0.0
        shown = f"+-{100 * widest:.0f}% of the largest mu*"
    if samples < MIN_SAMPLES[method] or widest > MAX_HALF_WIDTH:
        warnings.warn(
            f"samples: {samples} {'base samples' if method == 'sobol' else 'trajectories'} "
            f"give {method} indices with 95% intervals up to {shown}: too few to rank the "
            f"factors; use --samples {max(MIN_SAMPLES[method], 4 * samples)} or more",
            ScenarioWarning,
            stacklevel=3,
        )


__all__: list[Any] = ["sensitivity", "SensitivityResult", "plot_indices"]
