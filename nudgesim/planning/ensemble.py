"""Ensembles: every option run on the same K parameter draws × R replicates.

Parameter draw d comes from the priors (:func:`nudgesim.evidence.priors.priors`, at the
evidence level asked for) or from the rows of a posterior sample (e.g.
``ns.calibrate(...).posterior``); it is applied to every option with ``apply_draw`` (names
follow one grammar: ``rule.<field>``, ``<nudge kind>.<field>``, or a ``set_path`` path).
Replicate r of draw d runs with seed ``replicate_seed(scenario.seed, d·R + r)`` for every
option. So options differ, draw by draw and seed by seed, only by what they change (common
random numbers), and the decision maths of :mod:`.decision` compares them on equal terms.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from typing import Any, Literal

import numpy as np
import pandas as pd
from scipy import stats

from ..errors import UsageError
from ..parallel import RunOptions
from ..registry import NUDGES
from ..runs import Job, parse_path, replicate_seeds, values
from ..scenario import Scenario
from . import decision
from .stats import LEVEL, run_row

PILOT_POWER = 0.80  # power a pilot should have (convention, Cohen 1988)
PILOT_ALPHA = 1 - LEVEL  # two-sided significance level of the pilot's test (convention)
PILOT_REPLICATES = 4  # emulated trials per parameter value for the pilot's SE (assumption)
COVERS = "parameters and simulation noise"
# what a run contributes to the ensemble tables: the summary fields compared across options
FIELDS = ("final_adopters", "total_impact", "total_cost", "lowest_ward_adoption")


def apply_draw(scenario: Scenario, draw: Mapping[str, float]) -> Scenario:
    """The scenario with each named parameter set, pins respected: the one reading of the
    parameter grammar, :func:`nudgesim.evidence.priors.apply_draw` (imported here, when a
    draw is applied, so that planning and the evidence package never import each other
    at load time)."""
    from ..evidence.priors import apply_draw as apply

    return apply(scenario, draw)


def union(scenarios: Sequence[Scenario]) -> Scenario:
    """One scenario holding one nudge of every kind any option uses: what the priors are
    asked about, so a kind only some options have still gets its parameters drawn."""
    first = scenarios[0]
    data = first.to_dict()
    seen: dict[str, dict[str, Any]] = {}
    for sc in scenarios:
        for spec in sc.to_dict().get("nudges", []):
            seen.setdefault(spec["kind"], spec)
    data["nudges"] = [s | {"label": f"{kind} (any option)"} for kind, s in seen.items()]
    return Scenario.from_dict(data, first.base_dir)


def check_columns(scenarios: Sequence[Scenario], columns: Sequence[Any]) -> None:
    """Refuse a posterior column that is malformed or a parameter of none of the options
    (a typo would otherwise change nothing and pass unnoticed)."""
    for name in map(str, columns):
        parse_path(name, "posterior column")  # one grammar: a malformed name fails here
        problems = [sc.parameter_problem(name) for sc in scenarios]
        if all(p is not None for p in problems):
            raise UsageError(f"posterior column {name!r} {problems[0]}")


def parameter_draws(
    scenarios: Sequence[Scenario],
    draws: int | None,
    evidence: str | None,
    posterior: pd.DataFrame | None,
) -> tuple[pd.DataFrame, dict[str, Any]]:
    """(draws table, where it came from): K rows, one column per parameter.

    From a posterior: its rows, thinned evenly to `draws` when fewer are asked (an MCMC
    or SMC sample's neighbours are alike, so evenly spaced rows spread the sample best).
    From the priors: ``priors(union of options, evidence).sample(draws, seed)``."""
    seed = scenarios[0].seed
    if posterior is not None:
        if not isinstance(posterior, pd.DataFrame) or posterior.shape[1] == 0:
            raise UsageError("posterior: not a table with one column per parameter; allowed: "
                             "a DataFrame (e.g. ns.calibrate(...).posterior)")
        bad = [c for c in posterior.columns
               if not pd.api.types.is_numeric_dtype(posterior[c])
               or not np.isfinite(posterior[c].to_numpy(dtype=np.float64)).all()]
        if bad:
            raise UsageError(f"posterior: column {bad[0]!r} has values that are not finite "
                             "numbers; allowed: finite numbers only")
        n = len(posterior)
        k = n if draws is None else draws
        if not 2 <= k <= n:
            raise UsageError(f"draws: {k} is not allowed with a posterior of {n} rows; "
                             f"allowed: 2..{n}")
        rows = np.unique(np.round(np.linspace(0, n - 1, k)).astype(np.int64))
        table = posterior.iloc[rows].reset_index(drop=True).astype(np.float64)
        check_columns(scenarios, table.columns)
        return table, {"source": "posterior", "posterior_rows": n, "rows_used": rows.tolist()}
    if draws is None or draws < 2:
        raise UsageError(f"draws: {draws} is not allowed; allowed: 2 or more parameter draws")
    from ..evidence.priors import priors

    level: Literal["at_scale", "published"] | None = (
        "published" if evidence == "published" else "at_scale" if evidence else None)
    pr = priors(union(scenarios), level)
    table = pr.sample(draws, seed).reset_index(drop=True)
    return table, {"source": "priors", "evidence": pr.level, "sample_seed": seed,
                   "priors": pr.table().to_dict("records")}


def run(
    scenarios: Mapping[str, Scenario],
    table: pd.DataFrame,
    replicates: int,
    options: RunOptions,
    seed: int,
) -> tuple[pd.DataFrame, list[dict[str, Any]], list[int]]:
    """Run every scenario on every draw × replicate: (runs table, raw outputs in the same
    order: scenario-major, then draw, then replicate; the seeds, index d·R + r)."""
    k, r = len(table), replicates
    seeds = replicate_seeds(seed, k * r)
    draws = table.to_dict("records")
    jobs: list[Job] = []
    for sc in scenarios.values():
        for d in range(k):
            drawn = apply_draw(sc, draws[d])
            jobs.extend(Job.of(drawn, seeds[d * r + j], wards=True) for j in range(r))
    outs = values(jobs, options)
    rows = []
    i = 0
    for name in scenarios:
        for d in range(k):
            for j in range(r):
                rows.append({"scenario": name, "draw": d, "replicate": j,
                             "seed": seeds[d * r + j], **run_row(outs[i]["summary"])})
                i += 1
    return pd.DataFrame(rows), outs, seeds


def cube(runs: pd.DataFrame, names: Sequence[str], column: str, k: int, r: int) -> np.ndarray:
    """runs[column] as an array [scenario, draw, replicate] in the order of `names`."""
    block = runs.set_index("scenario")[column]
    return np.stack([block.loc[n].to_numpy(dtype=np.float64).reshape(k, r) for n in names])


def interval(x: np.ndarray) -> tuple[float, float, float, float]:
    """(mean over all runs, 2.5% and 97.5% of the draw means, share of a run's variance
    from the parameters) of x[draw, replicate]."""
    means = x.mean(axis=1)
    lo, hi = np.percentile(means, [50 * (1 - LEVEL), 50 * (1 + LEVEL)])
    share = decision.variance_shares(x[None])["share_params"].iloc[0]
    return float(x.mean()), float(lo), float(hi), float(share)


def ratio(num: np.ndarray, den: np.ndarray) -> tuple[float | None, float | None, float | None]:
    """Ratio of means, and the 2.5–97.5% range of the draws' ratios; None where a draw's
    denominator is not positive (no extra adopters to pay for: the ratio means nothing)."""
    if den.mean() <= 0:
        return None, None, None
    est = float(num.mean() / den.mean())
    dm = den.mean(axis=1)
    if (dm <= 0).any():
        return est, None, None
    lo, hi = np.percentile(num.mean(axis=1) / dm, [50 * (1 - LEVEL), 50 * (1 + LEVEL)])
    return est, float(lo), float(hi)


def comparison_table(runs: pd.DataFrame, names: Sequence[str], k: int, r: int
                     ) -> pd.DataFrame:
    """The comparison table's columns, over the ensemble: means over every run, _lo/_hi the
    95% range of the draw means (so they cover the parameters and what simulation noise is
    left in a mean of R runs), _share_params the parameters' share of a run's variance."""
    c = {f: cube(runs, names, f, k, r) for f in (*FIELDS, "final_adoption")}
    rows = []
    for i, name in enumerate(names[1:], start=1):
        d = {f: c[f][i] - c[f][0] for f in FIELDS}
        row: dict[str, Any] = {"variant": name}
        for key, col in (("extra_adopters", "final_adopters"), ("extra_impact", "total_impact"),
                         ("extra_cost", "total_cost")):
            (row[key], row[f"{key}_lo"], row[f"{key}_hi"],
             row[f"{key}_share_params"]) = interval(d[col])
        for key, den in (("cost_per_extra_adopter", "final_adopters"),
                         ("cost_per_impact", "total_impact")):
            row[key], row[f"{key}_lo"], row[f"{key}_hi"] = ratio(d["total_cost"], d[den])
        (row["lowest_ward_adoption"], row["lowest_ward_adoption_lo"],
         row["lowest_ward_adoption_hi"], _) = interval(c["lowest_ward_adoption"][i])
        (row["extra_lowest_ward"], row["extra_lowest_ward_lo"], row["extra_lowest_ward_hi"],
         _) = interval(d["lowest_ward_adoption"])
        row["final_adoption"] = float(c["final_adoption"][i].mean())
        row["covers"] = COVERS
        rows.append(row)
    return pd.DataFrame(rows)


def target_runs(runs: pd.DataFrame, names: Sequence[str], k: int, r: int, outcome: str,
                relative: bool, value: float | None) -> np.ndarray:
    """The decision's quantity per run [option, draw, replicate]: the target outcome (minus
    the baseline's in the same draw and seed when `relative`), or, with `value` (£ per
    unit of target), the net benefit value × (target − baseline's) − extra cost."""
    y = cube(runs, names, outcome, k, r)
    if relative or value is not None:
        y = y - y[:1]
    if value is not None:
        cost = cube(runs, names, "total_cost", k, r)
        y = value * y - (cost - cost[:1])
    return y


def ensemble_table(runs: pd.DataFrame, names: Sequence[str], k: int, r: int,
                   target: np.ndarray) -> pd.DataFrame:
    """ensemble.csv: one row per option × draw × replicate with the differences from the
    baseline in that draw and seed and the decision's quantity (`target`)."""
    out = runs[["scenario", "draw", "replicate", "seed"]].copy()
    base = runs[runs["scenario"] == names[0]].set_index(["draw", "replicate"])
    idx = pd.MultiIndex.from_frame(runs[["draw", "replicate"]])
    for key, col in (("extra_adopters", "final_adopters"), ("extra_impact", "total_impact"),
                     ("extra_cost", "total_cost"),
                     ("extra_lowest_ward", "lowest_ward_adoption")):
        out[key] = runs[col].to_numpy() - base[col].reindex(idx).to_numpy()
    out["lowest_ward_adoption"] = runs["lowest_ward_adoption"].to_numpy()
    by = {n: target[i].ravel() for i, n in enumerate(names)}
    out["target"] = np.concatenate([by[n] for n in runs["scenario"].drop_duplicates()])
    return out


def decide(y: np.ndarray, options: Sequence[str], sign: float, table: pd.DataFrame
           ) -> tuple[pd.DataFrame, pd.DataFrame, dict[str, Any]]:
    """(decision table, VOI table, summary) for the decision quantity y[option, draw, rep]
    (sign −1 when less is better)."""
    v = sign * y.mean(axis=2)
    dec = decision.summarise(v, options)
    for col in ("expected", "p10"):
        dec[col] = sign * dec[col]
    for col in ("expected_regret", "max_regret"):
        dec[col] = dec[col].astype(np.float64)
    means = y.mean(axis=2)
    lo, hi = np.percentile(means, [50 * (1 - LEVEL), 50 * (1 + LEVEL)], axis=1)
    dec.insert(2, "lo_params_noise", lo)
    dec.insert(3, "hi_params_noise", hi)
    dec.insert(4, "mc_se", means.std(axis=1, ddof=1) / math.sqrt(y.shape[1]))
    shares = decision.variance_shares(y)
    for col in shares.columns:
        dec[col] = shares[col].to_numpy()
    voi = decision.voi(v, table)
    pick = {rule: str(dec.loc[dec[rule], "option"].iloc[0])
            for rule in ("best_expected", "minimax_regret", "best_p10")}
    summary = {"evpi": decision.evpi(v), **pick, "options": list(options)}
    return dec, voi, summary


def nudge_of(name: str, scenarios: Sequence[Scenario]) -> dict[str, Any] | None:
    """The nudge spec a parameter belongs to, from the first scenario that has it: a
    ``<kind>.<field>`` or ``nudges[<label>].<field>`` name; None for other parameters
    (rule, population), which no nudge pilot can measure."""
    parts = parse_path(name, "parameter")
    kinds = set(NUDGES.names())
    for sc in scenarios:
        for spec in sc.to_dict().get("nudges", []):
            if parts[0] == ("key", spec["kind"]) and parts[0][1] in kinds:
                return spec
            if (len(parts) >= 3 and parts[0] == ("key", "nudges") and parts[1][0] == "item"
                    and parts[1][1] in (spec.get("label"), spec["kind"])):
                return spec
    return None


def pilot(
    baseline: Scenario,
    scenarios: Sequence[Scenario],
    name: str,
    values_: np.ndarray,
    table: pd.DataFrame,
    options: RunOptions,
) -> dict[str, Any]:
    """The pilot trial that would resolve parameter `name` (the top of the VOI table).

    1. The switch point θ*: the value nearest the parameter's median at which the best
       option (by the EVPPI fits) changes. None: no value in the drawn range changes the
       choice, so no pilot is needed for this decision.
    2. ns.trial of the parameter's nudge added to the baseline, randomised by resident
       (half treated), with the parameter at its median and at θ* (paired seeds, other
       parameters at the scenario's values): the emulated effects e₅₀ and e* and the
       trial's standard error at full enrolment N.
    3. Households to enrol so that a two-sided 5% test tells e₅₀ from e* with 80% power,
       SE ∝ 1/√n: n = N·((z₀.₉₇₅ + z₀.₈)·SE/|e₅₀ − e*|)²."""
    from .trials import trial

    out: dict[str, Any] = {"parameter": name}
    theta = table[name].to_numpy(dtype=np.float64)
    spec = nudge_of(name, scenarios)
    if spec is None:
        out["pilot"] = ("not a nudge parameter: a nudge pilot cannot measure it; fit it to "
                        "the council's own data (ns.calibrate)")
        return out
    star = decision.switch_point(values_, theta)
    if star is None:
        out["pilot"] = "no value in the drawn range changes the best option: no pilot needed"
        return out
    median = float(np.median(theta))
    spec = spec | {"label": f"pilot: {spec.get('label', spec['kind'])}"}
    base_data = baseline.to_dict()
    if spec.get("start", 1) > baseline.steps:
        spec["start"] = 1
    runs = {}
    for key, at in (("median", median), ("switch", star)):
        sc = apply_draw(Scenario.from_dict(base_data | {"nudges": [
            *base_data.get("nudges", []), spec]}, baseline.base_dir), {name: at})
        runs[key] = trial(sc, spec["label"], unit="resident", replicates=PILOT_REPLICATES,
                          executor=options.executor, workers=options.workers,
                          scheduler=options.scheduler, dask_timeout=options.dask_timeout)
    s50, sstar = runs["median"].summary, runs["switch"].summary
    delta = abs(s50["estimate"] - sstar["estimate"])
    se = (s50["mean_se"] + sstar["mean_se"]) / 2
    enrolled = s50["n_treated"] + s50["n_control"]
    z = stats.norm.ppf(1 - PILOT_ALPHA / 2) + stats.norm.ppf(PILOT_POWER)
    need = math.ceil(enrolled * (z * se / delta) ** 2) if delta > 0 else None
    out.update({
        "pilot_nudge": spec["kind"], "value_median": median, "value_switch": star,
        "effect_at_median": s50["estimate"], "effect_at_switch": sstar["estimate"],
        "se_full": se, "enrolled_full": enrolled, "pilot_households": need,
        "pilot_feasible": need is not None and need <= enrolled,
        "pilot": (
            "a resident-randomised pilot cannot see this parameter: the emulated effect is "
            "the same at both values" if need is None else
            f"enrol {need:,} households, half offered the {spec['kind']} nudge, for "
            f"{baseline.steps} {baseline.step_unit}s" if need <= enrolled
            else f"a pilot would need {need:,} households, more than the "
                 f"{enrolled:,} here: no pilot in this area can settle it"),
    })
    return out


def check(draws: int | None, evidence: str | None, posterior: pd.DataFrame | None) -> bool:
    """Whether an ensemble is asked for; refuses evidence without draws and bad levels."""
    if evidence is not None and evidence not in ("at_scale", "published"):
        raise UsageError(f"evidence: {evidence!r} is not allowed; allowed: 'at_scale', "
                         "'published'")
    if evidence is not None and posterior is not None:
        raise UsageError("evidence: not allowed with a posterior (the posterior replaces the "
                         "priors); allowed: one of them")
    if draws is None and posterior is None:
        if evidence is not None:
            raise UsageError("evidence: needs draws (the number of parameter draws)")
        return False
    return True

