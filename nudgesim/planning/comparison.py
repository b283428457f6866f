"""Paired comparison of variants with a baseline: what planners ask first."""

from __future__ import annotations

import json
import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from ..files import foreign_files, replace_folder, write_atomic
from ..outcomes import OUTCOMES
from ..parallel import Executor, RunOptions
from ..rng import Streams
from ..runs import Job, values
from ..scenario import Scenario, ScenarioError
from . import ensemble
from .stats import jsonable, paired_seeds, ratio_interval, run_row, t_interval

ENSEMBLE_TARGETS = {"adoption": ("final_adopters", True), "impact": ("total_impact", True),
                    "equity": ("lowest_ward_adoption", False)}
"""The decision's outcome per target, and whether it is read relative to the baseline."""


@dataclass
class Comparison:
    """Paired comparison of variants with a baseline.

    table: one row per variant: extra adopters, impact and cost over the baseline with
    95% intervals, £ per extra adopter and per unit of impact, and the lowest ward's
    adoption. runs: one row per (scenario, replicate). curves: adoption per step, mean and
    the 2.5–97.5% range of replicates. wards: final adoption per ward (mean of replicates).

    With an ensemble (``draws``/``posterior``) the intervals cover parameters *and* noise
    (the table's ``covers`` column says so), runs gains a ``draw`` column, and four more
    tables are kept: ensemble (option × draw × replicate results), draws (the parameter
    values), decision (p_best, regret, robust choices, variance shares) and voi (EVPPI).
    """

    table: pd.DataFrame
    runs: pd.DataFrame
    curves: pd.DataFrame
    wards: pd.DataFrame
    baseline: Scenario
    replicates: int
    meta: dict[str, Any] = field(default_factory=dict)
    ensemble: pd.DataFrame | None = None
    draws: pd.DataFrame | None = None
    decision: pd.DataFrame | None = None
    voi: pd.DataFrame | None = None

    def save(self, out_dir: str | Path) -> Path:
        """comparison.csv, runs.csv, curves.csv, wards.csv and scenario.toml, the folder
        swapped in whole (files.replace_folder) like a run's."""
        out = Path(out_dir)
        with replace_folder(out, refuse("comparison.csv", COMPARISON_FILES, "comparison")) as tmp:
            self.write_into(tmp)
        return out

    def write_into(self, folder: Path) -> None:
        """The comparison's files into `folder` (a plan's folder holds them too)."""
        write_atomic(folder / "comparison.csv", self.table.to_csv(index=False))
        write_atomic(folder / "runs.csv", self.runs.to_csv(index=False))
        write_atomic(folder / "curves.csv", self.curves.to_csv(index=False))
        write_atomic(folder / "wards.csv", self.wards.to_csv(index=False))
        write_atomic(folder / "scenario.toml", self.baseline.to_toml_as_run())
        for name in ENSEMBLE_FILES[:4]:
            table = getattr(self, name.removesuffix(".csv"))
            if table is not None:
                write_atomic(folder / name, table.to_csv(index=False))
        if "ensemble" in self.meta:
            write_atomic(folder / "ensemble.json",
                         json.dumps(jsonable(self.meta["ensemble"]), indent=2) + "\n")


ENSEMBLE_FILES = ("ensemble.csv", "draws.csv", "decision.csv", "voi.csv", "ensemble.json")
COMPARISON_FILES = frozenset({"comparison.csv", "runs.csv", "curves.csv", "wards.csv",
                              "scenario.toml", *ENSEMBLE_FILES})
PLAN_FILES = COMPARISON_FILES | {"plan.csv", "plan.json"}


def refuse(marker: str, own: frozenset[str], kind: str):
    """A replace_folder check: refuse a folder holding files that are not ours."""
    return lambda folder: foreign_files(folder, marker, own, kind)


def compare(
    baseline: Scenario,
    variants: Mapping[str, Scenario] | Sequence[Scenario],
    replicates: int = 20,
    executor: Executor = "processes",
    workers: int | None = None,
    scheduler: str | None = None,
    dask_timeout: float | None = None,
    draws: int | None = None,
    evidence: str | None = None,
    posterior: pd.DataFrame | None = None,
    target: str = "adoption",
    value: float | None = None,
) -> Comparison:
    """Run baseline and variants `replicates` times with paired seeds and summarise the
    differences a planner asks about, each with a 95% interval.

    Variants' own seeds are ignored: replicate r of every scenario uses the same seed,
    derived from baseline.seed (:func:`~nudgesim.planning.stats.paired_seeds`).
    Intervals of differences are t-intervals over replicates; of £-ratios, a paired
    bootstrap. They measure simulation noise for *this* scenario, not doubt about its
    assumptions.

    Ensemble (``draws=K`` from the priors at level `evidence`, or the rows of
    `posterior`): every scenario runs on the same K parameter draws × `replicates` seeds,
    intervals then cover parameters and noise, and the decision tables answer which
    option is best (by `target`: "adoption", "impact" or "equity"; with `value`, £ per
    unit of target, by net benefit value × target − extra cost), how sure that is, and
    which parameter is most worth a pilot (see :mod:`.ensemble`). "baseline" (no change)
    is one of the options.
    """
    if not isinstance(variants, Mapping):
        variants = {v.name: v for v in variants}
        if len(variants) == 0:
            raise ScenarioError("variants: none given; allowed: one or more scenarios")
    names = ["baseline", *variants]
    if "baseline" in variants:
        raise ScenarioError("variants: the name 'baseline' is reserved; allowed: any other")
    scenarios = [baseline, *variants.values()]
    if ensemble.check(draws, evidence, posterior):
        return ensemble_comparison(baseline, dict(zip(names, scenarios)), replicates,
                                   RunOptions(executor, workers, scheduler, dask_timeout),
                                   draws, evidence, posterior, target, value,
                                   decide_among=names)
    seeds = paired_seeds(baseline, replicates)
    jobs = [Job.of(sc, s, wards=True) for sc in scenarios for s in seeds]
    options = RunOptions(executor, workers, scheduler, dask_timeout)
    return summarise(names, seeds, values(jobs, options), baseline)


def summarise(names: list[str], seeds: list[int], outs: list[dict], baseline: Scenario
              ) -> Comparison:
    """The comparison's tables from the runs' summaries (variant-major, replicate-minor)."""
    r = len(seeds)
    runs = pd.DataFrame([
        {"scenario": name, "replicate": j, "seed": seed, **run_row(outs[i * r + j]["summary"])}
        for i, name in enumerate(names) for j, seed in enumerate(seeds)])
    rng = Streams(baseline.seed).generator("compare:bootstrap")
    base = runs[runs["scenario"] == "baseline"].set_index("replicate")
    table = []
    for name in names[1:]:
        v = runs[runs["scenario"] == name].set_index("replicate")
        d = {k: (v[k] - base[k]).to_numpy(dtype=np.float64)
             for k in ("final_adopters", "total_impact", "total_cost", "lowest_ward_adoption")}
        row: dict[str, Any] = {"variant": name}
        for key, col in (("extra_adopters", "final_adopters"), ("extra_impact", "total_impact"),
                         ("extra_cost", "total_cost")):
            row[key], row[f"{key}_lo"], row[f"{key}_hi"] = t_interval(d[col])
        for key, den in (("cost_per_extra_adopter", "final_adopters"),
                         ("cost_per_impact", "total_impact")):
            row[key], row[f"{key}_lo"], row[f"{key}_hi"] = ratio_interval(d["total_cost"], d[den],
                                                                          rng)
        row["lowest_ward_adoption"], row["lowest_ward_adoption_lo"], row[
            "lowest_ward_adoption_hi"] = t_interval(v["lowest_ward_adoption"].to_numpy())
        row["extra_lowest_ward"], row["extra_lowest_ward_lo"], row["extra_lowest_ward_hi"] = (
            t_interval(d["lowest_ward_adoption"]))
        row["final_adoption"] = float(v["final_adoption"].mean())
        table.append(row)
    curves, wards = curves_and_wards(names, outs, r)
    return Comparison(table=pd.DataFrame(table), runs=runs, curves=curves, wards=wards,
                      baseline=baseline, replicates=r)


def curves_and_wards(names: Sequence[str], outs: Sequence[Mapping[str, Any]], per: int
                     ) -> tuple[pd.DataFrame, pd.DataFrame]:
    """curves.csv (mean and 2.5–97.5% of the runs per step) and wards.csv (mean final
    adoption per ward) from the `per` consecutive runs of each scenario in `outs`."""
    curves, wards = [], []
    for i, name in enumerate(names):
        block = np.vstack([outs[i * per + j]["curve"] for j in range(per)])
        lo, hi = np.percentile(block, [2.5, 97.5], axis=0)
        curves.append(pd.DataFrame({"scenario": name, "step": np.arange(block.shape[1]),
                                    "mean": block.mean(axis=0), "lo": lo, "hi": hi}))
        wr = np.vstack([outs[i * per + j]["ward_rates"] for j in range(per)])
        wards.append(pd.DataFrame({"scenario": name, "ward": outs[i * per]["wards"],
                                   "final_adoption": wr.mean(axis=0)}))
    return pd.concat(curves, ignore_index=True), pd.concat(wards, ignore_index=True)



def ensemble_comparison(
    baseline: Scenario,
    scenarios: Mapping[str, Scenario],
    replicates: int,
    options: RunOptions,
    draws: int | None,
    evidence: str | None,
    posterior: pd.DataFrame | None,
    target: str,
    value: float | None,
    decide_among: Sequence[str],
    pilot: bool = True,
) -> Comparison:
    """The comparison over an ensemble (see :func:`compare`); the decision is among
    `decide_among` (a plan leaves the no-campaign baseline out: its budget is to be spent)."""
    if target not in ENSEMBLE_TARGETS:
        raise ScenarioError(f"target: {target!r} is not allowed; allowed: "
                            f"{', '.join(ENSEMBLE_TARGETS)}")
    if value is not None and not (math.isfinite(value) and value > 0):
        raise ScenarioError(f"value: {value} is not allowed; allowed: a positive, finite £ "
                            "amount per unit of target")
    paired_seeds(baseline, replicates)  # at least two replicates per draw
    names = list(scenarios)
    table, source = ensemble.parameter_draws(list(scenarios.values()), draws, evidence,
                                             posterior)
    k, r = len(table), replicates
    runs, outs, seeds = ensemble.run(scenarios, table, r, options, baseline.seed)
    outcome, relative = ENSEMBLE_TARGETS[target]
    y = ensemble.target_runs(runs, names, k, r, outcome, relative, value)
    pick = [names.index(n) for n in decide_among]
    sign = 1.0 if OUTCOMES[outcome].direction == "maximize" or value is not None else -1.0
    dec, voi, summary = ensemble.decide(y[pick], decide_among, sign, table)
    if pilot and len(voi) and voi["evppi"].iloc[0] > 0:
        top = ensemble.pilot(baseline, [scenarios[n] for n in decide_among],
                             str(voi["parameter"].iloc[0]), sign * y[pick].mean(axis=2),
                             table, options)
        voi = voi.merge(pd.DataFrame([top]), on="parameter", how="left")
        summary["pilot"] = top
    curves, wards = curves_and_wards(names, outs, k * r)
    draws_table = table.copy()
    draws_table.insert(0, "draw", np.arange(k))
    meta = {"ensemble": {
        "draws": k, "replicates": r, "runs_per_option": k * r, **source,
        "parameters": list(table.columns), "target": target, "outcome": outcome,
        "value_per_unit": value, "covers": ensemble.COVERS,
        "seeds": f"replicate r of draw d: runs.replicate_seed({baseline.seed}, d*{r} + r)",
        **summary,
    }}
    return Comparison(
        table=ensemble.comparison_table(runs, names, k, r), runs=runs, curves=curves,
        wards=wards,
        baseline=baseline, replicates=r, meta=meta,
        ensemble=ensemble.ensemble_table(runs, names, k, r, y), draws=draws_table,
        decision=dec, voi=voi,
    )
