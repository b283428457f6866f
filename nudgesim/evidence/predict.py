"""Before a council runs a trial: what effect will it measure?

:func:`predict_trial` answers with a 90% predictive interval: K draws from the priors
(nudgesim.evidence.priors) × R emulated trials each (``ns.trial``'s estimator: randomise
residents or wards, give the nudge to the treated arm, difference in the change of
participation). The interval therefore covers *both* what we do not know about the
parameters (the priors, fitted to the evidence library) *and* the trial's own noise
(who is randomised where, a finite sample, the simulated borough's chance). It does not
cover structural error of the model (a mechanism nudgesim lacks).

:func:`leave_one_out` tests the priors on trials they were not fitted to: each record is
predicted by a prior fitted without it, and the published effect is checked against the
90% predictive interval.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from typing import Any, Literal

import numpy as np
import pandas as pd

from ..errors import ScenarioError
from ..parallel import Executor, RunOptions
from ..planning.trials import trial_run, with_nudge
from ..runs import Job, replicate_seeds, values
from ..scenario import Scenario
from .priors import LEVELS, Level, apply_draw, fitted_priors, library, priors

LEVEL = 0.90  # the predictive interval's coverage (convention of this module)
_TAILS = (50 * (1 - LEVEL), 50 * (1 + LEVEL))


@dataclass
class Prediction:
    """A predictive interval for the effect (pp of participation, treated minus control)
    a new trial would measure. `runs`: one row per prior draw and replicate trial, with
    the draw's parameters; `covers` says which uncertainty the interval includes."""

    nudge: str
    unit: str
    weeks: int
    level: str
    median: float
    lo: float
    hi: float
    runs: pd.DataFrame
    covers: str = ("parameter uncertainty (prior draws) and trial noise (randomisation, "
                   "finite sample, simulation); not structural model error")

    @property
    def interval(self) -> tuple[float, float]:
        return self.lo, self.hi

    def __str__(self) -> str:
        return (f"{self.nudge} ({self.unit} trial, {self.weeks} weeks, priors at "
                f"'{self.level}'): {self.median:+.2f} pp, 90% predictive interval "
                f"{self.lo:+.2f} to {self.hi:+.2f} pp")


def _check(unit: str, share: float, draws: int, replicates: int) -> None:
    if unit not in ("resident", "ward"):
        raise ScenarioError(f"unit: {unit!r} is not allowed; allowed: 'resident', 'ward'")
    if not 0.0 < share < 1.0:
        raise ScenarioError(f"share: {share} is not allowed; allowed: strictly between 0 and 1")
    if draws < 2:
        raise ScenarioError(f"draws: {draws} is too few; allowed: 2 or more")
    if replicates < 1:
        raise ScenarioError(f"replicates: {replicates} is not allowed; allowed: 1 or more")


def _trial_scenario(scenario: Scenario, nudge: Any, weeks: int | None
                    ) -> tuple[Scenario, int, str, int]:
    """(the scenario with the trial nudge last, its index, its name, the weeks run)."""
    if weeks is not None:
        if isinstance(weeks, bool) or not isinstance(weeks, int) or weeks < 1:
            raise ScenarioError(f"weeks: {weeks!r} is not allowed; allowed: a whole number >= 1")
        scenario = scenario.replace(steps=weeks)
    _, with_, k, name = with_nudge(scenario, nudge)
    return with_, k, name, with_.steps


def trial_effects(scenario: Scenario, index: int, draws: pd.DataFrame, seeds: list[int],
                  unit: str = "resident", share: float = 0.5, sample: int | None = None,
                  options: RunOptions | None = None) -> np.ndarray:
    """Emulated trial estimates (pp), shape (draws, seeds): draw d applied with
    `apply_draw`, the same replicate seeds for every draw (common random numbers)."""
    jobs = [Job.of(apply_draw(scenario, row), s, trial_run, unit=unit, share=share,
                   sample=sample, index=index)
            for row in draws.to_dict("records") for s in seeds]
    out = values(jobs, options or RunOptions("serial"))
    est = np.array([100.0 * o["estimate"] for o in out], dtype=np.float64)
    return est.reshape(len(draws), len(seeds))


def predict_trial(
    scenario: Scenario,
    nudge: Any,
    unit: Literal["resident", "ward"] = "resident",
    weeks: int | None = None,
    share: float = 0.5,
    sample: int | None = None,
    draws: int = 32,
    replicates: int = 2,
    seed: int = 0,
    evidence: Level | None = None,
    exclude: Iterable[str] = (),
    executor: Executor = "serial",
    workers: int | None = None,
) -> Prediction:
    """A 90% predictive interval for the effect a new trial of `nudge` would measure.

    nudge: a nudge spec (dict or model) added to `scenario`, or the label/kind of one of
    its nudges (then taken out of the background), as for ``ns.trial``. unit, share,
    sample: the trial's design (``ns.trial``). weeks: how long it runs (the outcome is
    read after this many weeks; default the scenario's steps). draws × replicates
    emulated trials: draws from the priors at `evidence` (default the scenario's level),
    leaving the records in `exclude` out of their fits, each run with the same
    `replicates` seeds derived from `seed`. The result is in pp of participation.
    """
    _check(unit, share, draws, replicates)
    with_, k, name, steps = _trial_scenario(scenario, nudge, weeks)
    pri = priors(with_, evidence, exclude=exclude)
    table = pri.sample(draws, seed)
    seeds = replicate_seeds(seed, replicates)
    est = trial_effects(with_, k, table, seeds, unit, share, sample,
                        RunOptions(executor, workers))
    rows = table.loc[table.index.repeat(len(seeds))].reset_index(drop=True)
    runs = pd.DataFrame({"draw": np.repeat(np.arange(draws), len(seeds)),
                         "replicate": np.tile(np.arange(len(seeds)), draws),
                         "seed": np.tile(seeds, draws), "effect_pp": est.ravel()})
    runs = pd.concat([runs, rows], axis=1)
    lo, hi = np.percentile(est, _TAILS)
    return Prediction(name, unit, steps, pri.level, float(np.median(est)), float(lo),
                      float(hi), runs)


# ---------------------------------------------------------------------------------------
# Leave one out
# ---------------------------------------------------------------------------------------


@dataclass
class LeaveOneOut:
    """Each fitted record predicted by a prior fitted without it: `table` (one row per
    record: published effect, 90% predictive interval, inside) and `rate` (share inside)."""

    table: pd.DataFrame
    rate: float
    level: str


def leave_one_out(evidence: Level = "published", draws: int = 4000, seed: int = 0,
                  emulate: Callable[..., Any] | None = None, replicates: int = 2
                  ) -> LeaveOneOut:
    """How often a record's published effect falls inside the 90% predictive interval of a
    prior fitted without it.

    For record i of kind k: the priors of k's parameters are refitted without i; each
    parameter the record informs is drawn from its prior (`draws` draws, independently,
    as ``Priors.sample`` does); the effect the trial would report is the record's emulated
    effect there plus the published estimate's own sampling noise (its standard error)
    and the emulator's. Without `emulate` the record's shipped emulator gives the effect
    (fast); with `emulate` (``replicate.emulate``) each draw is emulated afresh with
    `replicates` replicates (the full check, slow). Parameters the kind does not fit
    (e.g. rule.adopt_norm) stay at the emulator's values, so the interval covers the
    fitted parameters' uncertainty and the trial's noise only."""
    if evidence not in LEVELS:
        raise ScenarioError(f"evidence: {evidence!r} is not allowed; allowed: {list(LEVELS)}")
    lib = library()
    rows: list[dict[str, Any]] = []
    for kind, kf in lib.kinds.items():
        emus = [e for e in lib.emulations if e.names[0] in kf.names and e.record in kf.records]
        for e in emus:
            pri = fitted_priors(lib, kind, evidence, exclude=[e.record])
            ss = np.random.SeedSequence(seed, spawn_key=(len(rows),))
            noise_rng, *param_rngs = (np.random.default_rng(c) for c in
                                      ss.spawn(1 + len(e.names)))
            thetas = [pri[n].ppf(r.random(draws)) for n, r in zip(e.names, param_rngs)]
            if emulate is None:
                mean, var = e.curve()(*thetas), e.noise()(*thetas)
            else:
                outs = [emulate(e.record, draw={n: float(t) for n, t in zip(e.names, point)},
                                replicates=replicates, seed=seed) for point in zip(*thetas)]
                mean = np.array([float(_get(o, "simulated")) for o in outs])
                var = np.zeros(draws)
            pred = mean + noise_rng.normal(0.0, 1.0, draws) * np.sqrt(e.se**2 + var)
            lo, hi = np.percentile(pred, _TAILS)
            rows.append({"id": e.record, "nudge": kind, "parameter": ", ".join(e.names),
                         "published": e.y, "se": e.se, "lo": float(lo),
                         "median": float(np.median(pred)), "hi": float(hi),
                         "inside": bool(lo <= e.y <= hi),
                         "fitted_to": len(emus) - 1,
                         "prior": "; ".join(pri[n].describe() for n in e.names)})
    table = pd.DataFrame(rows, columns=["id", "nudge", "parameter", "published", "se", "lo",
                                        "median", "hi", "inside", "fitted_to", "prior"])
    rate = float(table["inside"].mean()) if len(table) else float("nan")
    return LeaveOneOut(table, rate, evidence)


def _get(obj: Any, key: str) -> Any:
    return obj[key] if isinstance(obj, Mapping) else getattr(obj, key)
