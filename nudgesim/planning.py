"""Campaign planning: compare variants, emulate trials, calibrate, and plan a budget.

Everything here turns many seeded runs into decisions, so two habits hold throughout:
* **Common random numbers.** Replicate r of every variant runs with seed ``base.seed + r``.
  The engine's draws depend only on (seed, stream, step, resident) and each nudge has its
  own stream, so baseline and variant in replicate r differ only by what the variant
  changes; differences are paired and their intervals are far narrower than unpaired ones.
* **Runs go through** :func:`nudgesim.parallel.map_runs`, so the executor ("processes" by
  default, "serial" or "dask") changes where runs happen, never what they return.

No Mesa or solara here: planning runs headless.
"""

from __future__ import annotations

import argparse
import itertools
import json
import math
import os
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

import numpy as np
import pandas as pd
from pydantic import BaseModel, Field, ValidationError
from scipy import optimize, stats

from .engine import Engine
from .files import check_replaceable, foreign_files, output_dir, replace_folder, write_atomic
from .parallel import DASK_TIMEOUT_ENV, Executor, map_runs, resolve_dask_timeout
from .rng import Streams
from .scenario import Scenario, ScenarioError, _Spec, explain, load_toml_text, plain

LEVEL = 0.95  # confidence level of every interval reported here (convention)
BOOTSTRAP = 2000  # resamples for ratio intervals (assumption: enough for 2.5/97.5 percentiles)

# ---------------------------------------------------------------------------------------
# One run, reduced to what planning needs (top-level so every executor can pickle it)
# ---------------------------------------------------------------------------------------


def _scenario_job(scenario: Scenario, seed: int, **extra: Any) -> dict[str, Any]:
    """A picklable description of one run: the scenario as plain data plus its seed."""
    return {"scenario": scenario.to_dict() | {"seed": int(seed)},
            "base_dir": str(scenario.base_dir), **extra}


def _build(job: Mapping[str, Any]) -> Scenario:
    return Scenario.from_dict(job["scenario"], Path(job["base_dir"]))


def _outcomes(engine: Engine) -> dict[str, Any]:
    """Totals of one finished run plus its adoption curve and final ward rates."""
    res = engine.result()
    ts = res.timeseries
    last = res.by_ward[res.by_ward["step"] == ts["step"].iloc[-1]]
    return {
        "initial_adopters": int(ts["adopters"].iloc[0]),
        "final_adopters": int(ts["adopters"].iloc[-1]),
        "cost": float(ts["cost"].iloc[-1]),
        "impact": float(ts["impact"].iloc[-1]),
        "contacts": int(ts["contacts"].sum()),
        "lowest_ward_rate": float(last["adoption_rate"].min()),
        "rate": ts["adoption_rate"].to_numpy(),
        "ward_rate": last["adoption_rate"].to_numpy(),
        "wards": [str(w) for w in last["ward"]],
        "residents": engine.n,
    }


def run_outcomes(job: Mapping[str, Any]) -> dict[str, Any]:
    """Run one job from :func:`_scenario_job` and reduce it (the unit of work of compare)."""
    engine = Engine(_build(job))
    engine.run()
    return _outcomes(engine)


def _seeds(scenario: Scenario, replicates: int) -> list[int]:
    if replicates < 2:
        raise ScenarioError(f"replicates: {replicates} is too few; allowed: 2 or more "
                            "(an interval needs at least two)")
    return [scenario.seed + r for r in range(replicates)]


def _t_interval(x: np.ndarray) -> tuple[float, float, float]:
    """Mean and 95% t-interval of paired differences over replicates."""
    x = np.asarray(x, dtype=np.float64)
    m = float(x.mean())
    if len(x) < 2:
        return m, math.nan, math.nan
    half = stats.t.ppf(0.5 + LEVEL / 2, len(x) - 1) * x.std(ddof=1) / math.sqrt(len(x))
    return m, m - half, m + half


def _ratio_interval(num: np.ndarray, den: np.ndarray, rng: np.random.Generator
                    ) -> tuple[float | None, float | None, float | None]:
    """Ratio of means with a paired percentile bootstrap; None where the denominator can
    be zero or negative (the ratio then means nothing: no extra adopters to pay for)."""
    if den.mean() <= 0:
        return None, None, None
    est = float(num.mean() / den.mean())
    idx = rng.integers(0, len(num), size=(BOOTSTRAP, len(num)))
    n_b, d_b = num[idx].mean(axis=1), den[idx].mean(axis=1)
    if (d_b <= 0).any():
        return est, None, None
    lo, hi = np.percentile(n_b / d_b, [50 * (1 - LEVEL), 50 * (1 + LEVEL)])
    return est, float(lo), float(hi)


# ---------------------------------------------------------------------------------------
# Compare
# ---------------------------------------------------------------------------------------


@dataclass
class Comparison:
    """Paired comparison of variants with a baseline.

    table: one row per variant: extra adopters, impact and cost over the baseline with
    95% intervals, £ per extra adopter and per unit of impact, and the lowest ward's
    adoption. runs: one row per (scenario, replicate). curves: adoption per step, mean and
    the 2.5–97.5% range of replicates. wards: final adoption per ward (mean of replicates).
    """

    table: pd.DataFrame
    runs: pd.DataFrame
    curves: pd.DataFrame
    wards: pd.DataFrame
    baseline: Scenario
    replicates: int
    meta: dict[str, Any] = field(default_factory=dict)

    def save(self, out_dir: str | Path) -> Path:
        """comparison.csv, runs.csv, curves.csv, wards.csv and scenario.toml, the folder
        swapped in whole (files.replace_folder) like a run's."""
        out = Path(out_dir)
        with replace_folder(out, _refuse("comparison.csv", COMPARISON_FILES, "comparison")) as tmp:
            self._write(tmp)
        return out

    def _write(self, folder: Path) -> None:
        write_atomic(folder / "comparison.csv", self.table.to_csv(index=False))
        write_atomic(folder / "runs.csv", self.runs.to_csv(index=False))
        write_atomic(folder / "curves.csv", self.curves.to_csv(index=False))
        write_atomic(folder / "wards.csv", self.wards.to_csv(index=False))
        write_atomic(folder / "scenario.toml", self.baseline.to_toml())


COMPARISON_FILES = frozenset({"comparison.csv", "runs.csv", "curves.csv", "wards.csv", "scenario.toml"})
PLAN_FILES = COMPARISON_FILES | {"plan.csv", "plan.json"}


def _refuse(marker: str, own: frozenset[str], kind: str):
    return lambda folder: foreign_files(folder, marker, own, kind)


def compare(
    baseline: Scenario,
    variants: Mapping[str, Scenario] | Sequence[Scenario],
    replicates: int = 20,
    executor: Executor = "processes",
    workers: int | None = None,
    scheduler: str | None = None,
) -> Comparison:
    """Run baseline and variants `replicates` times with paired seeds and summarise the
    differences a planner asks about, each with a 95% interval.

    Variants' own seeds are ignored: replicate r of every scenario uses baseline.seed + r.
    Intervals of differences are t-intervals over replicates; of £-ratios, a paired
    bootstrap. They measure simulation noise for *this* scenario, not doubt about its
    assumptions.
    """
    if not isinstance(variants, Mapping):
        variants = {v.name: v for v in variants}
        if len(variants) == 0:
            raise ScenarioError("variants: none given; allowed: one or more scenarios")
    names = ["baseline", *variants]
    if "baseline" in variants:
        raise ScenarioError("variants: the name 'baseline' is reserved; allowed: any other")
    scenarios = [baseline, *variants.values()]
    seeds = _seeds(baseline, replicates)
    jobs = [_scenario_job(sc, s) for sc in scenarios for s in seeds]
    outs = map_runs(run_outcomes, jobs, executor=executor, workers=workers, scheduler=scheduler)
    return _summarise(names, seeds, outs, baseline)


def _summarise(names: list[str], seeds: list[int], outs: list[dict], baseline: Scenario
               ) -> Comparison:
    r = len(seeds)
    rows = []
    for i, name in enumerate(names):
        for j, seed in enumerate(seeds):
            o = outs[i * r + j]
            rows.append({
                "scenario": name, "replicate": j, "seed": seed,
                "residents": o["residents"],
                "initial_adopters": o["initial_adopters"], "final_adopters": o["final_adopters"],
                "final_adoption": o["final_adopters"] / max(o["residents"], 1),
                "cost": o["cost"], "impact": o["impact"], "contacts": o["contacts"],
                "lowest_ward_adoption": o["lowest_ward_rate"],
            })
    runs = pd.DataFrame(rows)
    rng = Streams(baseline.seed).generator("compare:bootstrap")
    base = runs[runs["scenario"] == "baseline"].set_index("replicate")
    table = []
    for name in names[1:]:
        v = runs[runs["scenario"] == name].set_index("replicate")
        d = {k: (v[k] - base[k]).to_numpy(dtype=np.float64)
             for k in ("final_adopters", "impact", "cost", "lowest_ward_adoption")}
        row: dict[str, Any] = {"variant": name}
        for key, col in (("extra_adopters", "final_adopters"), ("extra_impact", "impact"),
                         ("extra_cost", "cost")):
            row[key], row[f"{key}_lo"], row[f"{key}_hi"] = _t_interval(d[col])
        for key, den in (("cost_per_extra_adopter", "final_adopters"),
                         ("cost_per_impact", "impact")):
            row[key], row[f"{key}_lo"], row[f"{key}_hi"] = _ratio_interval(d["cost"], d[den], rng)
        row["lowest_ward_adoption"], row["lowest_ward_adoption_lo"], row[
            "lowest_ward_adoption_hi"] = _t_interval(v["lowest_ward_adoption"].to_numpy())
        row["extra_lowest_ward"], row["extra_lowest_ward_lo"], row["extra_lowest_ward_hi"] = (
            _t_interval(d["lowest_ward_adoption"]))
        row["final_adoption"] = float(v["final_adoption"].mean())
        table.append(row)
    curves, wards = [], []
    for i, name in enumerate(names):
        block = np.vstack([outs[i * r + j]["rate"] for j in range(r)])
        lo, hi = np.percentile(block, [2.5, 97.5], axis=0)
        curves.append(pd.DataFrame({"scenario": name, "step": np.arange(block.shape[1]),
                                    "mean": block.mean(axis=0), "lo": lo, "hi": hi}))
        wr = np.vstack([outs[i * r + j]["ward_rate"] for j in range(r)])
        wards.append(pd.DataFrame({"scenario": name, "ward": outs[i * r]["wards"],
                                   "final_adoption": wr.mean(axis=0)}))
    return Comparison(
        table=pd.DataFrame(table), runs=runs, curves=pd.concat(curves, ignore_index=True),
        wards=pd.concat(wards, ignore_index=True), baseline=baseline, replicates=r,
    )


# ---------------------------------------------------------------------------------------
# Trial emulation
# ---------------------------------------------------------------------------------------


def _with_nudge(scenario: Scenario, nudge: Any) -> tuple[Scenario, Scenario, int, str]:
    """(scenario without the trial nudge, scenario with it last, its index, its name).

    `nudge` is a nudge spec (dict or model) added to the scenario, or the label/kind of one
    of the scenario's nudges, which is then taken out of the background.
    """
    data = scenario.to_dict()
    others = list(data.get("nudges", []))
    if isinstance(nudge, str):
        hits = [i for i, n in enumerate(scenario.nudges) if n.name == nudge]
        if len(hits) != 1:
            raise ScenarioError(
                f"nudge: {nudge!r} names {len(hits)} of the scenario's nudges; allowed: "
                f"{[n.name for n in scenario.nudges]}")
        spec = others.pop(hits[0])
    else:
        spec = nudge.model_dump(mode="json", exclude_none=True) if isinstance(
            nudge, BaseModel) else dict(nudge)
    without = Scenario.from_dict(data | {"nudges": others}, scenario.base_dir)
    with_ = Scenario.from_dict(data | {"nudges": [*others, spec]}, scenario.base_dir)
    return without, with_, len(others), with_.nudges[-1].name


def _assign(n_units: int, share: float, sample: int | None, rng: np.random.Generator
            ) -> tuple[np.ndarray, np.ndarray]:
    """Complete randomisation: masks of (treated, enrolled) units; exactly
    round(share x enrolled) treated."""
    k = n_units if sample is None else sample
    enrolled = np.zeros(n_units, dtype=bool)
    enrolled[rng.choice(n_units, k, replace=False)] = True
    treated = np.zeros(n_units, dtype=bool)
    members = np.flatnonzero(enrolled)
    treated[rng.choice(members, round(share * k), replace=False)] = True
    return treated, enrolled


def trial_run(job: Mapping[str, Any]) -> dict[str, Any]:
    """One emulated trial: randomise, give the nudge to the treated arm only, run, and
    return the evaluator's estimate, its standard error and 95% interval."""
    sc = _build(job)
    unit, share, sample, k = job["unit"], job["share"], job["sample"], job["index"]
    rng = Streams(sc.seed).generator("trial:assignment")
    if unit == "ward":
        names = sc.population.ward_names()
        treated_w, enrolled_w = _assign(len(names), share, sample, rng)
        spec = sc.nudges[k]
        wanted = [w for w, t in zip(names, treated_w) if t]
        if spec.targeting.wards is not None:
            wanted = [w for w in spec.targeting.wards if w in wanted]
        data = sc.to_dict()
        data["nudges"][k].setdefault("targeting", {})["wards"] = wanted
        engine = Engine(Scenario.from_dict(data, sc.base_dir))
    else:
        engine = Engine(sc)
        treated_r, enrolled_r = _assign(engine.n, share, sample, rng)
        engine.nudges[k].reachable &= treated_r
    start = engine.adopted.astype(np.float64)
    engine.run()
    change = engine.adopted.astype(np.float64) - start
    if unit == "ward":
        pop = engine.population
        sizes = np.maximum(pop.ward_sizes(), 1)
        ward_change = np.bincount(pop.ward, weights=change, minlength=pop.n_wards) / sizes
        a, b = ward_change[treated_w], ward_change[enrolled_w & ~treated_w]
        # cluster-level analysis: compare ward means, t with (clusters - 2) df
        est = float(a.mean() - b.mean())
        pooled = ((len(a) - 1) * a.var(ddof=1) + (len(b) - 1) * b.var(ddof=1)) / (
            len(a) + len(b) - 2)
        se = float(math.sqrt(pooled * (1 / len(a) + 1 / len(b))))
        crit = float(stats.t.ppf(0.5 + LEVEL / 2, len(a) + len(b) - 2))
        n_t, n_c = len(a), len(b)
    else:
        a, b = change[treated_r], change[enrolled_r & ~treated_r]
        est = float(a.mean() - b.mean())
        se = float(math.sqrt(a.var(ddof=1) / len(a) + b.var(ddof=1) / len(b)))
        crit = float(stats.norm.ppf(0.5 + LEVEL / 2))
        n_t, n_c = len(a), len(b)
    return {"estimate": est, "se": se, "lo": est - crit * se, "hi": est + crit * se,
            "n_treated": n_t, "n_control": n_c}


def final_rate(job: Mapping[str, Any]) -> float:
    """Final adoption rate of one run (the arms of the true effect)."""
    engine = Engine(_build(job))
    engine.run()
    return engine.adoption_rate()


@dataclass
class Trial:
    """Emulated trials beside the truth. `runs` has one row per replicate: the evaluator's
    estimate (difference in the change of adoption, treated minus control) with its SE and
    95% interval, and the true effect in the same simulated borough (everyone offered the
    nudge vs nobody, same seed). `summary` gives means, bias and power."""

    runs: pd.DataFrame
    summary: dict[str, Any]

    def save(self, out_dir: str | Path) -> Path:
        out = Path(out_dir)
        write_atomic(out / "trial_runs.csv", self.runs.to_csv(index=False))
        write_atomic(out / "trial.json", json.dumps(_clean(self.summary), indent=2) + "\n")
        return out


def trial(
    scenario: Scenario,
    nudge: Any,
    unit: Literal["resident", "ward"] = "resident",
    share: float = 0.5,
    sample: int | None = None,
    replicates: int = 20,
    executor: Executor = "processes",
    workers: int | None = None,
    scheduler: str | None = None,
) -> Trial:
    """Emulate a randomised trial of `nudge` inside the simulated borough, `replicates`
    times with paired seeds, and report estimate, true effect, contamination bias and power.

    unit: "resident" (each resident randomised; the nudge's reach is restricted to the
    treated arm) or "ward" (a cluster trial: whole wards treated via targeting.wards).
    share: share of enrolled units treated. sample: units enrolled (residents or wards;
    default all) — the trial's sample size, which sets its power.
    Outcome: change in adoption from step 0 to the last step (baseline-adjusted; step 0 is
    before any nudge, so the estimate targets the same effect as final adoption).
    Power = share of replicate trials whose 95% interval excludes zero.
    """
    if unit not in ("resident", "ward"):
        raise ScenarioError(f"unit: {unit!r} is not allowed; allowed: 'resident', 'ward'")
    if not 0.0 < share < 1.0:
        raise ScenarioError(f"share: {share} is not allowed; allowed: strictly between 0 and 1")
    without, with_, k, name = _with_nudge(scenario, nudge)
    n_units = len(scenario.population.ward_names()) if unit == "ward" else None
    if sample is not None:
        if n_units is not None and not 4 <= sample <= n_units:
            raise ScenarioError(f"sample: {sample} wards is not allowed; allowed: 4..{n_units}")
        if sample < 4:
            raise ScenarioError(f"sample: {sample} is too small; allowed: 4 or more units")
    if n_units is not None and n_units < 4:
        raise ScenarioError(f"unit: 'ward' needs at least 4 wards, the scenario has {n_units}")
    seeds = _seeds(scenario, replicates)
    jobs: list[tuple[str, dict]] = []
    for s in seeds:
        jobs.append(("trial", _scenario_job(with_, s, unit=unit, share=share, sample=sample,
                                            index=k)))
        jobs.append(("everyone", _scenario_job(with_, s)))
        jobs.append(("nobody", _scenario_job(without, s)))
    outs = map_runs(_trial_dispatch, jobs, executor=executor, workers=workers,
                    scheduler=scheduler)
    rows = []
    for r, s in enumerate(seeds):
        t, every, none = outs[3 * r: 3 * r + 3]
        rows.append({"replicate": r, "seed": s, **t, "true_effect": every - none,
                     "everyone": every, "nobody": none,
                     "covers_truth": t["lo"] <= every - none <= t["hi"],
                     "significant": t["lo"] > 0 or t["hi"] < 0})
    runs = pd.DataFrame(rows)
    est, true = runs["estimate"].to_numpy(), runs["true_effect"].to_numpy()
    bias, bias_lo, bias_hi = _t_interval(est - true)
    summary = {
        "nudge": name, "unit": unit, "share": share, "replicates": replicates,
        "n_treated": int(runs["n_treated"].iloc[0]), "n_control": int(runs["n_control"].iloc[0]),
        "estimate": float(est.mean()), "mean_se": float(runs["se"].mean()),
        "sd_of_estimates": float(est.std(ddof=1)),
        "true_effect": float(true.mean()),
        "bias": bias, "bias_lo": bias_lo, "bias_hi": bias_hi,
        "relative_bias": float(bias / true.mean()) if true.mean() != 0 else None,
        "power": float(runs["significant"].mean()),
        "coverage": float(runs["covers_truth"].mean()),
    }
    return Trial(runs=runs, summary=summary)


def _trial_dispatch(item: tuple[str, dict]) -> Any:
    kind, job = item
    return trial_run(job) if kind == "trial" else final_rate(job)


# ---------------------------------------------------------------------------------------
# Calibration
# ---------------------------------------------------------------------------------------

_TOKEN = re.compile(r"[^.\[\]]+|\[\d+\]")


def _path_tokens(path: str) -> list[str | int]:
    out: list[str | int] = []
    for tok in _TOKEN.findall(path):
        out.append(int(tok[1:-1]) if tok.startswith("[") else int(tok) if tok.isdigit() else tok)
    return out


def set_path(data: dict[str, Any], path: str, value: Any) -> None:
    """Set `rule.adopt_intercept`, `nudges[2].boost` (or `nudges.2.boost`) in a scenario dict."""
    tokens = _path_tokens(path)
    node: Any = data
    for i, tok in enumerate(tokens[:-1]):
        try:
            node = node[tok]
        except (KeyError, IndexError, TypeError):
            raise ScenarioError(
                f"parameters: {path!r} has no part {'.'.join(map(str, tokens[: i + 1]))!r}; "
                "allowed: a dotted path into the scenario such as 'rule.adopt_intercept' or "
                "'nudges[0].weight' (or 'nudge.boost' for a trial-effect target's nudge)"
            ) from None
    if not isinstance(node, dict):
        raise ScenarioError(f"parameters: {path!r} does not end at a field")
    node[tokens[-1]] = value


@dataclass
class ObservedSeries:
    """Observed adoption rate at some steps (e.g. monthly participation from a survey).

    n: households behind each observed rate (optional); when given, the calibration's
    interval also carries the binomial sampling noise of the observations.
    """

    steps: np.ndarray
    rates: np.ndarray
    n: np.ndarray | None = None
    label: str = "observed series"

    @classmethod
    def from_csv(cls, path: str | Path) -> ObservedSeries:
        """CSV with columns step, adoption_rate and optionally n (lines starting # skipped)."""
        try:
            df = pd.read_csv(path, comment="#")
        except FileNotFoundError:
            raise ScenarioError(f"target: file not found: {path}") from None
        missing = {"step", "adoption_rate"} - set(df.columns)
        if missing:
            raise ScenarioError(f"target: {path} lacks column(s) {sorted(missing)}; allowed "
                                "columns: step, adoption_rate, n")
        bad = df[(df["adoption_rate"] < 0) | (df["adoption_rate"] > 1)]
        if len(bad):
            raise ScenarioError(f"target: adoption_rate {bad['adoption_rate'].iloc[0]} in {path} "
                                "is not allowed; allowed: a share in [0, 1]")
        n = df["n"].to_numpy(dtype=np.float64) if "n" in df.columns else None
        return cls(df["step"].to_numpy(dtype=np.int64), df["adoption_rate"].to_numpy(
            dtype=np.float64), n, label=Path(path).name)


@dataclass
class TrialEffect:
    """A published effect of a one-off message: treated minus control adoption `at_step`
    steps after the nudge, simulated as everyone-offered vs nobody with paired seeds.

    Give `effect` (a share: 0.09 = 9 percentage points) or `control` and `treated`.
    n_control/n_treated (optional) add the study's own sampling noise to the interval.
    """

    nudge: dict[str, Any]
    at_step: int
    effect: float | None = None
    control: float | None = None
    treated: float | None = None
    n_control: int | None = None
    n_treated: int | None = None
    label: str = "trial effect"

    def __post_init__(self) -> None:
        if self.effect is None:
            if self.control is None or self.treated is None:
                raise ScenarioError("target: give effect, or control and treated")
            self.effect = self.treated - self.control


@dataclass
class Calibration:
    """Fitted parameters, their fit, and an interval for each.

    interval: 2.5–97.5% of refits over a bootstrap of replicates (simulation noise) and,
    when sample sizes are known, of the observed data (sampling noise). Each parameter's
    interval holds the others at their fitted values. It does *not* cover doubt about the
    model's structure; a narrow interval on a misspecified model is still wrong.
    """

    parameters: dict[str, float]
    interval: dict[str, tuple[float, float]]
    at_bound: list[str]
    warnings: list[str]
    fit: pd.DataFrame
    loss: float
    scenario: Scenario
    nudge: dict[str, Any] | None
    profiles: dict[str, pd.DataFrame]
    meta: dict[str, Any]

    def save(self, path: str | Path) -> Path:
        """Write the calibrated scenario as TOML (and the fit as CSV beside it)."""
        path = Path(path)
        write_atomic(path, f"# calibrated by nudgesim.calibrate: {json.dumps(_clean(self.meta))}\n"
                     + self.scenario.to_toml())
        write_atomic(path.with_suffix(".fit.csv"), self.fit.to_csv(index=False))
        return path


def calib_run(job: Mapping[str, Any]) -> np.ndarray:
    """Adoption rate at the requested steps of one run."""
    engine = Engine(_build(job))
    rates = [engine.adoption_rate()]
    while engine.t < engine.steps:
        engine.step()
        rates.append(engine.adoption_rate())
    return np.asarray(rates)[np.asarray(job["steps"], dtype=np.int64)]


class _Objective:
    """Simulated outcome at a parameter vector, averaged over paired replicates; cached."""

    def __init__(self, scenario: Scenario, target: ObservedSeries | TrialEffect,
                 names: list[str], seeds: list[int], run_kw: dict[str, Any]) -> None:
        self.scenario, self.target, self.names, self.seeds = scenario, target, names, seeds
        self.run_kw = run_kw
        self.cache: dict[tuple[float, ...], np.ndarray] = {}
        self.evaluations = 0

    def build(self, theta: Sequence[float]) -> tuple[Scenario, dict[str, Any] | None]:
        data = self.scenario.to_dict()
        nudge = dict(self.target.nudge) if isinstance(self.target, TrialEffect) else None
        for name, value in zip(self.names, theta):
            if name.startswith("nudge."):
                if nudge is None:
                    raise ScenarioError(f"parameters: {name!r} needs a trial-effect target")
                set_path(nudge, name.removeprefix("nudge."), float(value))
            else:
                set_path(data, name, float(value))
        try:
            sc = Scenario.from_dict(data, self.scenario.base_dir)
            if nudge is not None:
                Scenario.from_dict(data | {"nudges": [*data.get("nudges", []), nudge]})
        except ScenarioError as err:
            raise ScenarioError(f"parameters {dict(zip(self.names, theta))}: {err}") from None
        return sc, nudge

    def per_replicate(self, theta: Sequence[float]) -> np.ndarray:
        """replicates x outputs: rates at observed steps, or the paired effect."""
        key = tuple(float(v) for v in theta)
        if key not in self.cache:
            sc, nudge = self.build(key)
            t = self.target
            if isinstance(t, TrialEffect):
                with_ = sc.replace(nudges=[*sc.to_dict().get("nudges", []), nudge])
                jobs = [_scenario_job(x, s, steps=[t.at_step]) for x in (with_, sc)
                        for s in self.seeds]
                out = np.asarray(map_runs(calib_run, jobs, **self.run_kw))
                r = len(self.seeds)
                self.cache[key] = out[:r] - out[r:]
            else:
                jobs = [_scenario_job(sc, s, steps=t.steps.tolist()) for s in self.seeds]
                self.cache[key] = np.asarray(map_runs(calib_run, jobs, **self.run_kw))
            self.evaluations += 1
        return self.cache[key]

    def observed(self) -> np.ndarray:
        t = self.target
        return np.array([t.effect]) if isinstance(t, TrialEffect) else t.rates

    def loss(self, theta: Sequence[float]) -> float:
        return float(((self.per_replicate(theta).mean(axis=0) - self.observed()) ** 2).sum())


def calibrate(
    scenario: Scenario,
    target: ObservedSeries | TrialEffect,
    parameters: Mapping[str, tuple[float, float]],
    replicates: int = 8,
    grid: int = 9,
    executor: Executor = "processes",
    workers: int | None = None,
    scheduler: str | None = None,
) -> Calibration:
    """Fit `parameters` (dotted path -> (low, high)) so simulated adoption matches `target`.

    Objective: squared error between the observed values and the mean of `replicates`
    paired-seed runs (common random numbers keep it smooth enough for scipy's bounded
    Brent search in one dimension and bounded Nelder–Mead in more). Interval: a profile of
    `grid` points around the fit per parameter, refitted on bootstrap resamples of the
    replicates (and of the observations when their sample sizes are known).
    """
    if not parameters:
        raise ScenarioError("parameters: none given; allowed: {'rule.adopt_intercept': (lo, hi)}")
    names = list(parameters)
    bounds = [tuple(map(float, parameters[n])) for n in names]
    for n, (lo, hi) in zip(names, bounds):
        if not lo < hi:
            raise ScenarioError(f"parameters[{n!r}]: bounds ({lo}, {hi}) need low < high")
    if isinstance(target, TrialEffect) and not 1 <= target.at_step <= scenario.steps:
        raise ScenarioError(f"target.at_step: {target.at_step} is not allowed; "
                            f"allowed: 1..{scenario.steps}")
    if isinstance(target, ObservedSeries) and (
            target.steps.min() < 0 or target.steps.max() > scenario.steps):
        raise ScenarioError(f"target: steps {target.steps.min()}..{target.steps.max()} are not "
                            f"allowed; allowed: 0..{scenario.steps}")
    obj = _Objective(scenario, target, names, _seeds(scenario, replicates),
                     {"executor": executor, "workers": workers, "scheduler": scheduler})
    obj.build([lo for lo, _ in bounds])  # fail early on a bad path
    if len(names) == 1:
        (lo, hi), = bounds
        res = optimize.minimize_scalar(lambda x: obj.loss([x]), bounds=(lo, hi), method="bounded",
                                       options={"xatol": (hi - lo) * 1e-3})
        theta = np.array([res.x])
    else:
        x0 = np.array([(lo + hi) / 2 for lo, hi in bounds])
        res = optimize.minimize(obj.loss, x0, method="Nelder-Mead", bounds=bounds,
                                options={"xatol": 1e-3, "fatol": 1e-8, "maxfev": 200})
        theta = np.asarray(res.x)
    rng = Streams(scenario.seed).generator("calibrate:bootstrap")
    interval, profiles, at_bound = {}, {}, []
    warnings: list[str] = []
    for j, (name, (lo, hi)) in enumerate(zip(names, bounds)):
        width = (hi - lo) / 8  # assumption: a profile an eighth of the range either side
        pts = np.unique(np.clip(np.linspace(theta[j] - width, theta[j] + width, grid), lo, hi))
        outs = []
        for p in pts:
            th = theta.copy()
            th[j] = p
            outs.append(obj.per_replicate(th))
        outs_a = np.stack(outs)  # points x replicates x outputs
        interval[name], profiles[name] = _profile_interval(pts, outs_a, obj.observed(), target,
                                                           rng)
        if min(abs(theta[j] - lo), abs(theta[j] - hi)) < (hi - lo) * 1e-2:
            at_bound.append(name)
            warnings.append(f"{name} = {theta[j]:.4g} sits on its bound ({lo}, {hi}): widen the "
                            "bounds or the target may be out of the model's reach")
        if pts[-1] > pts[0] and (interval[name][0] <= pts[0] or interval[name][1] >= pts[-1]):
            warnings.append(f"{name}: the interval reaches the end of the profile "
                            f"({pts[0]:.4g}..{pts[-1]:.4g}); the true interval is at least as wide")
        spread = profiles[name]["loss"]
        if spread.max() - spread.min() <= 1e-3 * max(spread.max(), 1e-12):
            warnings.append(f"{name}: the fit hardly changes along the profile, so the data do "
                            "not identify this parameter")
    sc, nudge = obj.build(theta)
    sim = obj.per_replicate(theta)
    mean, sd = sim.mean(axis=0), sim.std(axis=0, ddof=1)
    if isinstance(target, TrialEffect):
        fit = pd.DataFrame({"quantity": ["effect"], "step": [target.at_step],
                            "observed": [target.effect], "simulated": mean,
                            "simulated_se": sd / math.sqrt(len(sim))})
        written = sc.replace(nudges=[*sc.to_dict().get("nudges", []), nudge])
    else:
        fit = pd.DataFrame({"quantity": "adoption_rate", "step": target.steps,
                            "observed": target.rates, "simulated": mean,
                            "simulated_se": sd / math.sqrt(len(sim))})
        written = sc
    params = {n: float(v) for n, v in zip(names, theta)}
    obs_sd = _observation_sd(target, obj.observed())
    scale = np.sqrt(fit["simulated_se"].to_numpy() ** 2 + (0.0 if obs_sd is None else obs_sd ** 2))
    z = np.abs(fit["simulated"].to_numpy() - fit["observed"].to_numpy()) / np.maximum(scale, 1e-12)
    fit["z"] = z
    if (z > 3).any():  # 3 standard errors: a conventional "clearly off" line
        warnings.append(f"the fitted model misses {int((z > 3).sum())} of {len(z)} observed "
                        "value(s) by more than 3 standard errors: the target is not reproduced")
    meta = {"target": target.label, "parameters": params,
            "interval": {k: list(v) for k, v in interval.items()}, "replicates": replicates,
            "rmse": float(np.sqrt(((mean - obj.observed()) ** 2).mean())),
            "evaluations": obj.evaluations, "at_bound": at_bound, "warnings": warnings}
    return Calibration(parameters=params, interval=interval, at_bound=at_bound,
                       warnings=warnings, fit=fit,
                       loss=obj.loss(theta), scenario=written, nudge=nudge,
                       profiles=profiles, meta=meta)


def _profile_interval(pts: np.ndarray, outs: np.ndarray, observed: np.ndarray,
                      target: Any, rng: np.random.Generator
                      ) -> tuple[tuple[float, float], pd.DataFrame]:
    """Bootstrap the best value along the profile: resample replicates (and observations),
    interpolate the mean outputs linearly between profile points, and take the argmin."""
    n_rep = outs.shape[1]
    noise_sd = _observation_sd(target, observed)
    dense = np.linspace(pts[0], pts[-1], 401)
    best = np.empty(BOOTSTRAP // 2)
    for b in range(len(best)):
        idx = rng.integers(0, n_rep, n_rep)
        obs = observed + (rng.normal(0.0, noise_sd) if noise_sd is not None else 0.0)
        best[b] = dense[np.argmin(_dense_loss(pts, outs[:, idx, :].mean(axis=1), obs, dense))]
    lo, hi = np.percentile(best, [50 * (1 - LEVEL), 50 * (1 + LEVEL)])
    loss_all = ((outs.mean(axis=1) - observed) ** 2).sum(axis=1)
    return (float(lo), float(hi)), pd.DataFrame({"value": pts, "loss": loss_all})


def _dense_loss(pts: np.ndarray, means: np.ndarray, obs: np.ndarray, dense: np.ndarray
                ) -> np.ndarray:
    """Squared error on a dense grid, outputs interpolated linearly between profile points."""
    interp = np.column_stack([np.interp(dense, pts, means[:, k]) for k in range(means.shape[1])])
    return ((interp - obs) ** 2).sum(axis=1)


def _observation_sd(target: Any, observed: np.ndarray) -> np.ndarray | None:
    """Binomial sampling sd of the observed values, when their sample sizes are known."""
    if isinstance(target, ObservedSeries) and target.n is not None:
        return np.sqrt(observed * (1 - observed) / target.n)
    if isinstance(target, TrialEffect) and target.n_control and target.n_treated:
        c = target.control if target.control is not None else 0.5  # assumption if unknown
        t = c + target.effect
        return np.array([math.sqrt(c * (1 - c) / target.n_control
                                   + t * (1 - t) / target.n_treated)])
    return None


# ---------------------------------------------------------------------------------------
# Budget planner
# ---------------------------------------------------------------------------------------


class _MenuSpec(_Spec):
    """Menus follow the scenario's rules: unknown fields, non-finite floats and control
    characters are refused."""


class MenuItem(_MenuSpec):
    """A candidate nudge: its full spec as in a scenario, and alternative levels."""

    label: str = Field(..., description="name shown in tables; unique within the menu")
    nudge: dict[str, Any] = Field(..., description="a nudge exactly as in a scenario's [[nudges]]")
    levels: dict[str, list[Any]] = Field(
        default_factory=dict,
        description="alternative values of nudge fields (dotted paths, e.g. 'targeting.count'); "
        "every combination is one option",
    )
    level_labels: dict[str, list[str]] = Field(
        default_factory=dict,
        description="plain names of the levels, same order (e.g. every = ['monthly', 'weekly'])",
    )
    required: bool = Field(False, description="every portfolio must include this item")
    source: str = Field("", description="where the costs and effects come from (shown in reports)")


class Menu(_MenuSpec):
    """What the council could buy."""

    name: str = "menu"
    description: str = ""
    keep_scenario_nudges: bool = Field(
        False, description="true: the scenario's own nudges run in every portfolio (committed); "
        "false: the menu is the whole campaign and the baseline has no nudges")
    items: list[MenuItem] = Field(..., min_length=1)

    @classmethod
    def from_toml(cls, path: str | Path) -> Menu:
        try:
            text = Path(path).read_text(encoding="utf-8")
        except FileNotFoundError:
            raise ScenarioError(f"menu file not found: {path}") from None
        except (OSError, UnicodeDecodeError) as err:
            raise ScenarioError(f"cannot read menu file {path}: {err}") from None
        try:
            data = load_toml_text(text)
        except ScenarioError as err:
            raise ScenarioError(f"{path}: {err}") from None
        return cls.from_dict(data, str(path))

    @classmethod
    def from_dict(cls, data: dict[str, Any], where: str = "menu") -> Menu:
        """A validated menu; errors name the field (`items[2].levels.reach`), the value and
        what is allowed, on the first line."""
        try:
            menu = cls.model_validate(data)
        except ValidationError as err:
            raise ScenarioError(f"{where}: {explain(err, Menu)}") from None
        for i, item in enumerate(menu.items):
            # nudges are free-form here (checked as scenario nudges later), so their numbers
            # are held to the scenario's rule now: a value a level overrides is still read
            for name, value in (("nudge", item.nudge), ("levels", item.levels)):
                if (bad := _non_finite(value, f"items[{i}].{name}")) is not None:
                    raise ScenarioError(f"{where}: {bad[0]}: {plain(bad[1])} is not allowed; "
                                        "allowed: a finite number")
            for key, values in item.levels.items():
                field_name = f"{where}: items[{i}].levels.{key}"
                if not values:
                    raise ScenarioError(f"{field_name}: no values; allowed: one or more")
                shown = [json.dumps(v, sort_keys=True) for v in values]
                if len(set(shown)) != len(shown):
                    raise ScenarioError(
                        f"{field_name}: {plain(values)} repeats a value; allowed: each value once")
                try:
                    set_path(json.loads(json.dumps(item.nudge)), key, values[0])
                except ScenarioError:
                    raise ScenarioError(
                        f"{field_name}: {key!r} is not a field of this nudge (its parts must "
                        "exist in items.nudge); allowed: e.g. 'reach' or 'targeting.count'"
                    ) from None
            for key, names in item.level_labels.items():
                if key not in item.levels or len(names) != len(item.levels[key]):
                    raise ScenarioError(
                        f"{where}: items[{i}].level_labels.{key}: needs one name per value of "
                        f"levels.{key} ({item.levels.get(key)}), got {names}")
                if len(set(names)) != len(names):
                    raise ScenarioError(f"{where}: items[{i}].level_labels.{key}: {names} "
                                        "repeats a name; allowed: each name once")
        labels = [i.label for i in menu.items]
        if len(set(labels)) != len(labels):
            raise ScenarioError(f"{where}: items.label must be unique, got {labels}")
        return menu

    def check(self, scenario: Scenario, where: str = "menu") -> int:
        """Validate every option as a nudge of `scenario` (before any run is spent on it);
        returns the number of options. Errors name the menu item's field."""
        data = scenario.to_dict()
        committed = list(data.get("nudges", [])) if self.keep_scenario_nudges else []
        count = 0
        for i, opts in enumerate(self.options()):
            for name, spec in opts:
                try:
                    Scenario.from_dict(data | {"nudges": [*committed, spec]}, scenario.base_dir)
                except ScenarioError as err:
                    text = str(err)
                    own = f"nudges[{len(committed)}]"
                    if text.startswith(own):
                        rest = text.removeprefix(own)
                        # a value set by a level is named where it is written: levels.<key>
                        key = next((k for k in self.items[i].levels
                                    if rest.startswith((f".{k}:", f".{k}[", f".{k}."))), None)
                        text = (f"items[{i}].levels.{key}{rest.removeprefix('.' + key)}"
                                if key else f"items[{i}].nudge{rest}")
                    else:
                        text = f"items[{i}]: {text}"
                    raise ScenarioError(f"{where}: {text} (menu option {name!r})") from None
                count += 1
        return count

    def options(self) -> list[list[tuple[str, dict[str, Any]]]]:
        """Per item: its options as (name, nudge spec); every level combination is one."""
        out = []
        for item in self.items:
            keys = list(item.levels)
            opts = []
            for values in itertools.product(*(item.levels[k] for k in keys)):
                spec = json.loads(json.dumps(item.nudge))
                spec.setdefault("label", item.label)
                for k, v in zip(keys, values):
                    set_path(spec, k, v)
                suffix = ", ".join(_level_name(item, k, v) for k, v in zip(keys, values))
                opts.append((f"{item.label} ({suffix})" if suffix else item.label, spec))
            out.append(opts)
        return out


def _non_finite(obj: Any, path: str) -> tuple[str, float] | None:
    """(where, value) of the first NaN or infinity in plain data, else None."""
    if isinstance(obj, float) and not math.isfinite(obj):
        return path, obj
    items = obj.items() if isinstance(obj, dict) else enumerate(obj) if isinstance(obj, list) else ()
    for k, v in items:
        found = _non_finite(v, f"{path}[{k}]" if isinstance(k, int) else f"{path}.{k}")
        if found is not None:
            return found
    return None


def _level_name(item: MenuItem, key: str, value: Any) -> str:
    """How a level appears in tables: its label when given, else 'field=value'."""
    labels = item.level_labels.get(key)
    if labels is not None:
        return str(labels[item.levels[key].index(value)])
    if isinstance(value, list):
        return f"{len(value)} {key.split('.')[-1]}"
    return f"{key.split('.')[-1]}={value}"


TARGETS = {
    "adoption": ("extra_adopters", "extra households taking part at the end"),
    "impact": ("extra_impact", "extra environmental impact"),
    "equity": ("lowest_ward_adoption", "share taking part in the lowest ward at the end"),
}


@dataclass
class Plan:
    """Ranked portfolios (`table`), the comparison behind them, and how the search went."""

    table: pd.DataFrame
    comparison: Comparison
    meta: dict[str, Any]

    def save(self, out_dir: str | Path) -> Path:
        """Folder read by `nudgesim report`: plan.csv, plan.json and the comparison tables."""
        out = Path(out_dir)
        with replace_folder(out, _refuse("plan.json", PLAN_FILES, "plan")) as tmp:
            self.comparison._write(tmp)
            write_atomic(tmp / "plan.csv", self.table.to_csv(index=False))
            write_atomic(tmp / "plan.json", json.dumps(_clean(self.meta), indent=2) + "\n")
        return out


def plan(
    scenario: Scenario,
    menu: Menu,
    budget: float,
    target: Literal["adoption", "impact", "equity"] = "adoption",
    replicates: int = 10,
    max_exhaustive: int = 64,
    top: int = 24,
    screen_replicates: int = 2,
    executor: Executor = "processes",
    workers: int | None = None,
    scheduler: str | None = None,
) -> Plan:
    """Search nudge portfolios whose expected cost fits `budget`, evaluate them with
    paired replicates, rank by `target` and mark the cost–impact frontier.

    1. Screen: each option alone (on top of the baseline) for `screen_replicates` runs gives
       its expected cost (cost depends on contacts and uptake, so it must be simulated) and
       its effect on the target.
    2. Candidates: every portfolio whose summed expected cost fits. If there are at most
       `max_exhaustive`, all are evaluated; otherwise the `top` best by the additive
       screen plus the additive screen's cost–effect frontier (a knapsack surrogate that
       ignores interactions; the evaluation then measures them).
    3. Evaluate candidates with `replicates` paired runs; rank those whose mean cost fits.
    """
    if target not in TARGETS:
        raise ScenarioError(f"target: {target!r} is not allowed; allowed: {', '.join(TARGETS)}")
    if not (budget > 0 and math.isfinite(budget)):
        raise ScenarioError(
            f"budget: {plain(budget)} is not allowed; allowed: a positive, finite amount of £")
    menu.check(scenario, f"menu {menu.name!r}")  # every option valid before any run
    data = scenario.to_dict()
    committed = list(data.get("nudges", [])) if menu.keep_scenario_nudges else []
    base = Scenario.from_dict(data | {"nudges": committed}, scenario.base_dir)
    options = menu.options()
    flat = [(i, name, spec) for i, opts in enumerate(options) for name, spec in opts]
    run_kw = {"executor": executor, "workers": workers, "scheduler": scheduler}

    # 1. screen each option alone
    screen = compare(base, {name: base.replace(nudges=[*committed, spec])
                            for _, name, spec in flat},
                     replicates=max(screen_replicates, 2), **run_kw)
    st = screen.table.set_index("variant")
    key = TARGETS[target][0]
    effect_col = "extra_lowest_ward" if target == "equity" else key
    opt_cost = {name: float(st.loc[name, "extra_cost"]) for _, name, _ in flat}
    opt_gain = {name: float(st.loc[name, effect_col]) for _, name, _ in flat}

    # 2. candidate portfolios
    choices = [[None, *opts] if not menu.items[i].required else list(opts)
               for i, opts in enumerate(options)]
    n_all = math.prod(len(c) for c in choices)
    if n_all > 200_000:
        raise ScenarioError(f"menu: {n_all:,} portfolios is too many; allowed: up to 200,000 "
                            "(fewer items or levels)")
    feasible = []
    for combo in itertools.product(*choices):
        picked = [c for c in combo if c is not None]
        if not picked:
            continue
        cost = sum(opt_cost[n] for n, _ in picked)
        if cost <= budget:
            feasible.append((picked, cost, sum(opt_gain[n] for n, _ in picked)))
    if not feasible:
        cheapest = min(opt_cost.values())
        raise ScenarioError(f"budget: £{budget:,.0f} buys no portfolio; the cheapest option "
                            f"costs about £{cheapest:,.0f}")
    if len(feasible) <= max_exhaustive:
        method, candidates = "exhaustive", feasible
    else:
        method = "additive screen, then evaluation"
        ranked = sorted(feasible, key=lambda f: (-f[2], f[1]))
        chosen = {id(f) for f in ranked[:top]}
        by_cost = sorted(feasible, key=lambda f: (f[1], -f[2]))
        best = -math.inf
        for f in by_cost:  # the screen's frontier: each step up in cost buys more effect
            if f[2] > best:
                best = f[2]
                chosen.add(id(f))
        candidates = [f for f in feasible if id(f) in chosen]

    # 3. evaluate
    names = {" + ".join(n for n, _ in picked): picked for picked, _, _ in candidates}
    variants = {name: base.replace(nudges=[*committed, *(s for _, s in picked)])
                for name, picked in names.items()}
    comp = compare(base, variants, replicates=replicates, **run_kw)
    table = comp.table.copy()
    table.insert(1, "items", [len(names[v]) for v in table["variant"]])
    over = comp.runs[comp.runs["scenario"] != "baseline"].assign(
        over=lambda d: d["cost"] > budget + comp.runs.loc[
            comp.runs["scenario"] == "baseline", "cost"].mean())
    table["p_over_budget"] = over.groupby("scenario")["over"].mean().reindex(
        table["variant"]).to_numpy()
    table["within_budget"] = table["extra_cost"] <= budget
    table["screen_cost"] = [sum(opt_cost[n] for n, _ in names[v]) for v in table["variant"]]
    table["on_frontier"] = _pareto(table["extra_cost"].to_numpy(), table[key].to_numpy())
    table = table.sort_values(["within_budget", key, "extra_cost"],
                              ascending=[False, False, True]).reset_index(drop=True)
    table.insert(0, "rank", np.where(table["within_budget"], np.arange(1, len(table) + 1), 0))
    meta = {
        "question": f"Which nudges, within £{budget:,.0f}, give the most "
                    f"{TARGETS[target][1]} of {scenario.steps} {scenario.step_unit}s?",
        "scenario": scenario.name, "scenario_description": scenario.description,
        "menu": menu.name, "menu_description": menu.description,
        "budget": budget, "target": target, "target_column": key,
        "target_label": TARGETS[target][1], "impact_unit": scenario.impact.unit,
        "replicates": replicates, "screen_replicates": max(screen_replicates, 2),
        "portfolios_total": n_all - (0 if any(i.required for i in menu.items) else 1), "portfolios_feasible": len(feasible),
        "portfolios_evaluated": len(candidates), "method": method,
        "keep_scenario_nudges": menu.keep_scenario_nudges,
        "items": [{"label": it.label, "kind": it.nudge.get("kind"), "source": it.source,
                   "levels": it.levels, "required": it.required} for it in menu.items],
        "options": [{"option": n, "screen_cost": opt_cost[n], "screen_gain": opt_gain[n]}
                    for _, n, _ in flat],
        "seeds": [scenario.seed, scenario.seed + replicates - 1],
        "baseline_final_adoption": float(comp.runs.loc[comp.runs["scenario"] == "baseline",
                                                       "final_adoption"].mean()),
        "baseline_lowest_ward": float(comp.runs.loc[comp.runs["scenario"] == "baseline",
                                                    "lowest_ward_adoption"].mean()),
    }
    comp.meta = meta
    return Plan(table=table, comparison=comp, meta=meta)


def _pareto(cost: np.ndarray, value: np.ndarray) -> np.ndarray:
    """True where no other portfolio costs no more and achieves at least as much (one strictly)."""
    out = np.ones(len(cost), dtype=bool)
    for i in range(len(cost)):
        dominated = (cost <= cost[i]) & (value >= value[i]) & ((cost < cost[i]) | (value > value[i]))
        out[i] = not dominated.any()
    return out


def _clean(obj: Any) -> Any:
    """JSON-safe: NaN/inf to None, numpy scalars to Python."""
    if isinstance(obj, dict):
        return {str(k): _clean(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [_clean(v) for v in obj]
    if isinstance(obj, (np.floating, float)):
        return float(obj) if math.isfinite(obj) else None
    if isinstance(obj, np.integer):
        return int(obj)
    if isinstance(obj, np.bool_):
        return bool(obj)
    return obj


# ---------------------------------------------------------------------------------------
# Command line: nudgesim plan SCENARIO.toml --budget 50000 --menu MENU.toml
# ---------------------------------------------------------------------------------------


def plan_main(argv: list[str]) -> int:
    """`nudgesim plan`: search portfolios, print the ranked table, write a results folder."""
    from .cli import load_scenario, parse_args
    from .experiment import add_dask_timeout_option

    p = argparse.ArgumentParser(prog="nudgesim plan", description=plan.__doc__.split("\n")[0])
    p.add_argument("scenario", help="scenario TOML")
    p.add_argument("--budget", type=float, required=True, help="£ available")
    p.add_argument("--menu", required=True, help="menu TOML of candidate nudges")
    p.add_argument("--target", default="adoption", choices=list(TARGETS))
    p.add_argument("--replicates", type=int, default=10)
    p.add_argument("--max-exhaustive", type=int, default=64)
    p.add_argument("--top", type=int, default=24)
    p.add_argument("--steps", type=int, help="override the scenario's steps")
    p.add_argument("--seed", type=int, help="override the scenario's seed")
    p.add_argument("--executor", default="processes", choices=["serial", "processes", "dask"])
    p.add_argument("--workers", type=int)
    p.add_argument("--scheduler", help="Dask scheduler address (executor dask)")
    add_dask_timeout_option(p)
    p.add_argument("--out", help="results folder (default results/plan-<scenario>)")
    p.add_argument("--report", action="store_true", help="also write report.html / report.md")
    args = parse_args(p, argv)
    if args.dask_timeout is not None:  # reaches every map_runs of the plan (cli.main restores it)
        os.environ[DASK_TIMEOUT_ENV] = str(resolve_dask_timeout(args.dask_timeout))
    sc = load_scenario(args.scenario, seed=args.seed, steps=args.steps)
    menu = Menu.from_toml(args.menu)
    out = Path(args.out) if args.out else output_dir(f"plan-{sc.name}")
    check_replaceable(out, _refuse("plan.json", PLAN_FILES, "plan"))  # before the runs
    result = plan(sc, menu, args.budget, target=args.target, replicates=args.replicates,
                  max_exhaustive=args.max_exhaustive, top=args.top, executor=args.executor,
                  workers=args.workers, scheduler=args.scheduler)
    result.save(out)
    m = result.meta
    print(m["question"])
    print(f"  {m['portfolios_total']:,} portfolios, {m['portfolios_feasible']:,} fit the budget "
          f"by the screen, {m['portfolios_evaluated']} evaluated ({m['method']}) with "
          f"{m['replicates']} paired replicates each")
    print(format_table(result.table, m, rows=10))
    if args.report:
        from .report import write_report

        write_report(out)
    print(f"  wrote {out}/ (plan.csv, plan.json, comparison.csv, runs.csv, curves.csv, "
          f"wards.csv, scenario.toml{', report.html, report.md' if args.report else ''})")
    return 0


def format_table(table: pd.DataFrame, meta: Mapping[str, Any], rows: int = 10) -> str:
    """The ranked table as plain text for the terminal."""
    key = meta["target_column"]
    lines = [f"  {'#':>2}  {'cost £':>18}  {'target (95% interval)':>28}  frontier  portfolio"]
    for _, r in table.head(rows).iterrows():
        if key == "lowest_ward_adoption":
            val = f"{100 * r[key]:.1f}% ({100 * r[key + '_lo']:.1f}–{100 * r[key + '_hi']:.1f})"
        else:
            val = f"{r[key]:,.1f} ({r[key + '_lo']:,.1f} to {r[key + '_hi']:,.1f})"
        lines.append(f"  {r['rank'] or '-':>2}  {r['extra_cost']:>18,.0f}  {val:>28}  "
                     f"{'yes' if r['on_frontier'] else '':>8}  {r['variant']}")
    return "\n".join(lines)


main = plan_main

__all__ = [
    "Calibration", "Comparison", "Menu", "MenuItem", "ObservedSeries", "Plan", "Trial",
    "TrialEffect", "calibrate", "compare", "plan", "plan_main", "set_path", "trial",
]

