"""Calibration: fit scenario parameters so simulated adoption matches observations."""

from __future__ import annotations

import json
import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import numpy.typing as npt
import pandas as pd
from scipy import optimize

from ..files import write_atomic
from ..parallel import Executor, RunOptions
from ..rng import Streams
from ..runs import Job, rates_at, set_path, values
from ..scenario import Scenario, ScenarioError
from .stats import BOOTSTRAP, LEVEL, jsonable, paired_seeds


def set_parameter(data: dict[str, Any], path: str, value: float) -> None:
    """Write a parameter: every part of the path but the last must exist (a missing part
    is a typo, not a table to make)."""
    set_path(data, path, value, create_missing=False, what="parameters:")

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
        write_atomic(path, f"# calibrated by nudgesim.calibrate: {json.dumps(jsonable(self.meta))}\n"
                     + self.scenario.to_toml())
        write_atomic(path.with_suffix(".fit.csv"), self.fit.to_csv(index=False))
        return path


# a parameter vector: the optimiser's array, or a plain list / tuple of floats
Theta = Sequence[float] | npt.NDArray[np.float64]


class Objective:
    """Simulated outcome at a parameter vector, averaged over paired replicates; cached."""

    def __init__(self, scenario: Scenario, target: ObservedSeries | TrialEffect,
                 names: list[str], seeds: list[int], options: RunOptions) -> None:
        self.scenario, self.target, self.names, self.seeds = scenario, target, names, seeds
        self.options = options
        self.cache: dict[tuple[float, ...], np.ndarray] = {}
        self.evaluations = 0

    def build(self, theta: Theta) -> tuple[Scenario, dict[str, Any] | None]:
        data = self.scenario.to_dict()
        nudge = dict(self.target.nudge) if isinstance(self.target, TrialEffect) else None
        for name, value in zip(self.names, theta):
            if name.startswith("nudge."):
                if nudge is None:
                    raise ScenarioError(f"parameters: {name!r} needs a trial-effect target")
                set_parameter(nudge, name.removeprefix("nudge."), float(value))
            else:
                set_parameter(data, name, float(value))
        try:
            sc = Scenario.from_dict(data, self.scenario.base_dir)
            if nudge is not None:
                Scenario.from_dict(data | {"nudges": [*data.get("nudges", []), nudge]})
        except ScenarioError as err:
            raise ScenarioError(f"parameters {dict(zip(self.names, theta))}: {err}") from None
        return sc, nudge

    def per_replicate(self, theta: Theta) -> np.ndarray:
        """replicates x outputs: rates at observed steps, or the paired effect."""
        key = tuple(float(v) for v in theta)
        if key not in self.cache:
            sc, nudge = self.build(key)
            t = self.target
            if isinstance(t, TrialEffect):
                with_ = sc.replace(nudges=[*sc.to_dict().get("nudges", []), nudge])
                jobs = [Job.of(x, s, rates_at, steps=[t.at_step]) for x in (with_, sc)
                        for s in self.seeds]
                out = np.asarray(values(jobs, self.options))
                r = len(self.seeds)
                self.cache[key] = out[:r] - out[r:]
            else:
                jobs = [Job.of(sc, s, rates_at, steps=t.steps.tolist()) for s in self.seeds]
                self.cache[key] = np.asarray(values(jobs, self.options))
            self.evaluations += 1
        return self.cache[key]

    def observed(self) -> np.ndarray:
        t = self.target
        return np.array([t.effect]) if isinstance(t, TrialEffect) else t.rates

    def loss(self, theta: Theta) -> float:
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
    dask_timeout: float | None = None,
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
    obj = Objective(scenario, target, names, paired_seeds(scenario, replicates),
                    RunOptions(executor, workers, scheduler, dask_timeout))
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
        interval[name], profiles[name] = profile_interval(pts, outs_a, obj.observed(), target,
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
    obs_sd = observation_sd(target, obj.observed())
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


def profile_interval(pts: np.ndarray, outs: np.ndarray, observed: np.ndarray,
                      target: Any, rng: np.random.Generator
                      ) -> tuple[tuple[float, float], pd.DataFrame]:
    """Bootstrap the best value along the profile: resample replicates (and observations),
    interpolate the mean outputs linearly between profile points, and take the argmin."""
    n_rep = outs.shape[1]
    noise_sd = observation_sd(target, observed)
    dense = np.linspace(pts[0], pts[-1], 401)
    best = np.empty(BOOTSTRAP // 2)
    for b in range(len(best)):
        idx = rng.integers(0, n_rep, n_rep)
        obs = observed + (rng.normal(0.0, noise_sd) if noise_sd is not None else 0.0)
        best[b] = dense[np.argmin(dense_loss(pts, outs[:, idx, :].mean(axis=1), obs, dense))]
    lo, hi = np.percentile(best, [50 * (1 - LEVEL), 50 * (1 + LEVEL)])
    loss_all = ((outs.mean(axis=1) - observed) ** 2).sum(axis=1)
    return (float(lo), float(hi)), pd.DataFrame({"value": pts, "loss": loss_all})


def dense_loss(pts: np.ndarray, means: np.ndarray, obs: np.ndarray, dense: np.ndarray
                ) -> np.ndarray:
    """Squared error on a dense grid, outputs interpolated linearly between profile points."""
    interp = np.column_stack([np.interp(dense, pts, means[:, k]) for k in range(means.shape[1])])
    return ((interp - obs) ** 2).sum(axis=1)


def observation_sd(target: Any, observed: np.ndarray) -> np.ndarray | None:
    """Binomial sampling sd of the observed values, when their sample sizes are known."""
    if isinstance(target, ObservedSeries) and target.n is not None:
        return np.sqrt(observed * (1 - observed) / target.n)
    if isinstance(target, TrialEffect) and target.n_control and target.n_treated:
        c = target.control if target.control is not None else 0.5  # assumption if unknown
        assert target.effect is not None  # __post_init__ always sets it
        t = c + target.effect
        return np.array([math.sqrt(c * (1 - c) / target.n_control
                                   + t * (1 - t) / target.n_treated)])
    return None

