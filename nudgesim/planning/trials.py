"""Trial emulation: how would an evaluator's randomised trial see a nudge, beside the truth?"""

from __future__ import annotations

import json
import math
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

import numpy as np
import pandas as pd
from pydantic import BaseModel
from scipy import stats

from ..engine import Engine
from ..files import write_atomic
from ..parallel import Executor, RunOptions
from ..rng import Streams
from ..runs import Job, values
from ..scenario import Scenario, ScenarioError
from .stats import LEVEL, jsonable, paired_seeds, t_interval


def with_nudge(scenario: Scenario, nudge: Any) -> tuple[Scenario, Scenario, int, str]:
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


def assign(n_units: int, share: float, sample: int | None, rng: np.random.Generator
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


def trial_run(sc: Scenario, options: Mapping[str, Any]) -> dict[str, Any]:
    """One emulated trial (a run measure): randomise, give the nudge to the treated arm
    only, run, and return the evaluator's estimate, its standard error and 95% interval.
    options: unit, share, sample, index (of the trial nudge in the scenario)."""
    unit, share, sample, k = (options["unit"], options["share"], options["sample"],
                              options["index"])
    rng = Streams(sc.seed).generator("trial:assignment")
    if unit == "ward":
        names = sc.population.ward_names()
        treated_w, enrolled_w = assign(len(names), share, sample, rng)
        spec = sc.nudges[k]
        wanted = [w for w, t in zip(names, treated_w) if t]
        if spec.targeting.wards is not None:
            wanted = [w for w in spec.targeting.wards if w in wanted]
        data = sc.to_dict()
        data["nudges"][k].setdefault("targeting", {})["wards"] = wanted
        engine = Engine(Scenario.from_dict(data, sc.base_dir))
    else:
        engine = Engine(sc)
        treated_r, enrolled_r = assign(engine.n, share, sample, rng)
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
        write_atomic(out / "trial.json", json.dumps(jsonable(self.summary), indent=2) + "\n")
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
    dask_timeout: float | None = None,
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
    without, with_, k, name = with_nudge(scenario, nudge)
    n_units = len(scenario.population.ward_names()) if unit == "ward" else None
    if sample is not None:
        if n_units is not None and not 4 <= sample <= n_units:
            raise ScenarioError(f"sample: {sample} wards is not allowed; allowed: 4..{n_units}")
        if sample < 4:
            raise ScenarioError(f"sample: {sample} is too small; allowed: 4 or more units")
    if n_units is not None and n_units < 4:
        raise ScenarioError(f"unit: 'ward' needs at least 4 wards, the scenario has {n_units}")
    seeds = paired_seeds(scenario, replicates)
    jobs = []
    for s in seeds:
        jobs.append(Job.of(with_, s, trial_run, unit=unit, share=share, sample=sample, index=k))
        jobs.append(Job.of(with_, s))  # everyone offered the nudge
        jobs.append(Job.of(without, s))  # nobody offered it
    outs = values(jobs, RunOptions(executor, workers, scheduler, dask_timeout))
    rows = []
    for r, s in enumerate(seeds):
        t = outs[3 * r]
        every, none = (o["summary"]["final_adoption"] for o in outs[3 * r + 1: 3 * r + 3])
        rows.append({"replicate": r, "seed": s, **t, "true_effect": every - none,
                     "everyone": every, "nobody": none,
                     "covers_truth": t["lo"] <= every - none <= t["hi"],
                     "significant": t["lo"] > 0 or t["hi"] < 0})
    runs = pd.DataFrame(rows)
    est, true = runs["estimate"].to_numpy(), runs["true_effect"].to_numpy()
    bias, bias_lo, bias_hi = t_interval(est - true)
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
