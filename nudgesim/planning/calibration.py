"""Calibration: fit scenario parameters so simulated adoption matches observations, and a
posterior sample for them.

Two answers from one call. The *point fit* minimises the squared error between the target
and the mean of paired-seed runs (as before). The *posterior* treats the simulator as what
it is, stochastic and a run per evaluation: a Gaussian-process emulator of the simulated
outputs' mean and spread is fitted over a Latin-hypercube design of parameter points
(independent replicates at each), the likelihood of the observed series is a Gaussian
synthetic likelihood (Wood 2010, Nature 466:1102) whose covariance carries the simulation
noise, the emulator's own error and the observations' binomial sampling noise, and emcee's
affine-invariant ensemble sampler (Foreman-Mackey et al. 2013, PASP 125:306) draws from it.
"""

from __future__ import annotations

import json
import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import emcee
import numpy as np
import numpy.typing as npt
import pandas as pd
from scipy import linalg, optimize
from scipy.stats import qmc

from ..files import write_atomic
from ..parallel import Executor, RunOptions
from ..rng import Streams
from ..runs import Job, rates_at, replicate_seed, set_path, values
from ..scenario import Scenario, ScenarioError
from .stats import BOOTSTRAP, LEVEL, jsonable, paired_seeds


def set_parameter(data: dict[str, Any], path: str, value: float) -> None:
    """Write a parameter: every part of the path but the last must exist (a missing part
    is a typo, not a table to make)."""
    set_path(data, path, value, create_missing=False, what="parameters:")

def _cell(value: Any) -> str:
    """A CSV cell as a message shows it: text quoted, numbers plain, nothing said so."""
    if isinstance(value, str):
        return repr(value)
    return "(empty)" if pd.isna(value) else f"{float(value):g}"


@dataclass
class ObservedSeries:
    """Observed adoption rate at some steps (e.g. monthly participation from a survey),
    borough-wide or per ward.

    n: households behind each observed rate (optional); when given, the calibration's
    interval and posterior also carry the binomial sampling noise of the observations.
    wards: the ward of each row (optional); then each row is compared with that ward's
    simulated rate, not the borough's.
    """

    steps: np.ndarray
    rates: np.ndarray
    n: np.ndarray | None = None
    label: str = "observed series"
    wards: np.ndarray | None = None

    @classmethod
    def from_csv(cls, path: str | Path, scenario: Scenario | None = None) -> ObservedSeries:
        """CSV with columns step, adoption_rate and optionally n and ward (lines starting #
        skipped). With `scenario`, ward names are checked against its wards now."""
        try:
            df = pd.read_csv(path, comment="#")
        except FileNotFoundError:
            raise ScenarioError(f"target: file not found: {path}") from None
        missing = {"step", "adoption_rate"} - set(df.columns)
        if missing:
            raise ScenarioError(f"target: {path} lacks column(s) {sorted(missing)}; allowed "
                                "columns: step, adoption_rate, n, ward")
        rate = pd.to_numeric(df["adoption_rate"], errors="coerce")
        bad = df[~rate.between(0, 1)]  # an empty or non-numeric cell fails too (NaN)
        if len(bad):
            raise ScenarioError(f"target: adoption_rate {_cell(bad['adoption_rate'].iloc[0])} in "
                                f"{path} (row {bad.index[0] + 1}) is not allowed; allowed: a share "
                                "in [0, 1]")
        step = pd.to_numeric(df["step"], errors="coerce")
        bad = df[~(step.notna() & (step == step.round()) & (step >= 0))]
        if len(bad):
            raise ScenarioError(f"target: step {_cell(bad['step'].iloc[0])} in {path} (row "
                                f"{bad.index[0] + 1}) is not allowed; allowed: a whole step >= 0")
        df = df.assign(adoption_rate=rate, step=step)
        n = df["n"].to_numpy(dtype=np.float64) if "n" in df.columns else None
        if n is not None and not (n >= 1).all():
            raise ScenarioError(f"target: n {n[~(n >= 1)][0]} in {path} is not allowed; "
                                "allowed: a count of households >= 1")
        wards = df["ward"].astype(str).to_numpy(dtype=object) if "ward" in df.columns else None
        out = cls(df["step"].to_numpy(dtype=np.int64), df["adoption_rate"].to_numpy(
            dtype=np.float64), n, label=Path(path).name, wards=wards)
        if wards is not None:
            keys = list(zip(wards, out.steps))
            if len(set(keys)) != len(keys):
                dup = next(k for k in keys if keys.count(k) > 1)
                raise ScenarioError(f"target: ward {dup[0]!r} step {dup[1]} appears twice in "
                                    f"{path}; allowed: one row per ward and step")
        if scenario is not None:
            out.check_wards(scenario.population.ward_names())
        return out

    def check_wards(self, names: Sequence[str]) -> None:
        """One-line error naming the first ward the scenario does not have."""
        if self.wards is None:
            return
        known = set(names)
        for w in self.wards:
            if w not in known:
                raise ScenarioError(f"target: ward {w!r} in {self.label} is not in the "
                                    f"scenario; allowed: {list(names)[:10]}"
                                    f"{'…' if len(names) > 10 else ''}")

    def blocks(self) -> list[np.ndarray]:
        """Row indices that share a ward (one block for a borough-wide series): the
        simulation noise is correlated over time within a block, not between blocks."""
        if self.wards is None:
            return [np.arange(len(self.rates))]
        order = list(dict.fromkeys(self.wards))
        return [np.flatnonzero(self.wards == w) for w in order]


def observed_rates(scenario: Scenario, options: Mapping[str, Any]) -> np.ndarray:
    """Measure: the simulated rate behind each observed row, the borough's at
    ``options["steps"]`` or, with ``options["wards"]`` (a name per row), that ward's."""
    wards = options.get("wards")
    if wards is None:
        return rates_at(scenario, options)
    from ..engine import Engine

    engine = Engine(scenario)
    names = engine.population.ward_names
    ObservedSeries(np.zeros(0), np.zeros(0), wards=np.asarray(wards, dtype=object),
                   label="the observed series").check_wards(names)
    table = [engine.ward_rates().copy()]
    while engine.t < engine.steps:
        engine.step()
        table.append(engine.ward_rates().copy())
    index = {w: i for i, w in enumerate(names)}
    cols = np.array([index[w] for w in wards], dtype=np.int64)
    return np.vstack(table)[np.asarray(options["steps"], dtype=np.int64), cols]


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

    posterior: one row per posterior draw, one column per parameter (named as given), to
    pass as ``posterior=`` to the ensembles. credible: its 5–95% intervals, which cover
    what the data leave unknown about the parameters given the model and the prior — the
    observations' sampling noise, the simulation noise of the observed realisation and the
    emulator's error — with the other parameters integrated out; not structural doubt.
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
    posterior: pd.DataFrame | None = None
    credible: dict[str, tuple[float, float]] | None = None
    emulator: Emulator | None = None

    def save(self, path: str | Path) -> Path:
        """Write the calibrated scenario as TOML, the fit as CSV beside it (name.fit.csv)
        and the posterior sample (name.posterior.csv)."""
        path = Path(path)
        write_atomic(path, f"# calibrated by nudgesim.calibrate: {json.dumps(jsonable(self.meta))}\n"
                     + self.scenario.to_toml())
        write_atomic(path.with_suffix(".fit.csv"), self.fit.to_csv(index=False))
        if self.posterior is not None:
            write_atomic(path.with_suffix(".posterior.csv"),
                         self.posterior.to_csv(index=False, float_format="%.17g"))
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

    def jobs(self, theta: Theta, seeds: Sequence[int]) -> list[Job]:
        """The runs behind one parameter point: with and without the trial's nudge (paired)
        for a trial effect, else one run per seed measuring the observed rows."""
        sc, nudge = self.build(theta)
        t = self.target
        if isinstance(t, TrialEffect):
            with_ = sc.replace(nudges=[*sc.to_dict().get("nudges", []), nudge])
            return [Job.of(x, s, rates_at, steps=[t.at_step]) for x in (with_, sc)
                    for s in seeds]
        wards = None if t.wards is None else [str(w) for w in t.wards]
        return [Job.of(sc, s, observed_rates, steps=t.steps.tolist(), wards=wards)
                for s in seeds]

    def reduce(self, out: list[Any], replicates: int) -> np.ndarray:
        """replicates x outputs from the values of :meth:`jobs`."""
        arr = np.asarray(out, dtype=np.float64)
        if isinstance(self.target, TrialEffect):
            return arr[:replicates] - arr[replicates:]
        return arr

    def per_replicate(self, theta: Theta) -> np.ndarray:
        """replicates x outputs: rates at observed rows, or the paired effect."""
        key = tuple(float(v) for v in theta)
        if key not in self.cache:
            out = values(self.jobs(key, self.seeds), self.options)
            self.cache[key] = self.reduce(out, len(self.seeds))
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
    *,
    posterior: bool = True,
    design: int | None = None,
    design_replicates: int = 4,
    draws: int = 1000,
    priors: Mapping[str, Any] | None = None,
) -> Calibration:
    """Fit `parameters` (dotted path -> (low, high)) so simulated adoption matches `target`,
    and draw a posterior sample for them.

    Objective: squared error between the observed values and the mean of `replicates`
    paired-seed runs (common random numbers keep it smooth enough for scipy's bounded
    Brent search in one dimension and bounded Nelder–Mead in more). Interval: a profile of
    `grid` points around the fit per parameter, refitted on bootstrap resamples of the
    replicates (and of the observations when their sample sizes are known).

    Posterior (unless posterior=False): `design` Latin-hypercube points (default 10 per
    parameter + 10) x `design_replicates` runs fit an emulator; emcee draws `draws` rows
    from prior x emulated likelihood. `priors`: parameter -> scipy frozen distribution
    (default uniform over the bounds). A `ward` column in the series compares each row
    with its ward's simulated rate.
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
    if isinstance(target, ObservedSeries) and target.wards is not None and (
            scenario.population.csv is None and scenario.network.kind != "file"):
        target.check_wards(scenario.population.ward_names())  # else checked when runs read them
    check_priors(priors, names)
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
        if target.wards is not None:
            fit.insert(1, "ward", target.wards)
        written = sc
    params = {n: float(v) for n, v in zip(names, theta)}
    obs_sd = observation_sd(target, obj.observed())
    # an observed series is one realisation: judge it against a run's spread, not the mean's
    spread = sd if isinstance(target, ObservedSeries) else fit["simulated_se"].to_numpy()
    scale = np.sqrt(spread ** 2 + (0.0 if obs_sd is None else obs_sd ** 2))
    z = np.abs(fit["simulated"].to_numpy() - fit["observed"].to_numpy()) / np.maximum(scale, 1e-12)
    fit["z"] = z
    if (z > 3).any():  # 3 standard errors: a conventional "clearly off" line
        warnings.append(f"the fitted model misses {int((z > 3).sum())} of {len(z)} observed "
                        "value(s) by more than 3 standard errors: the target is not reproduced")
    meta = {"target": target.label, "parameters": params,
            "interval": {k: list(v) for k, v in interval.items()}, "replicates": replicates,
            "rmse": float(np.sqrt(((mean - obj.observed()) ** 2).mean())),
            "evaluations": obj.evaluations, "at_bound": at_bound, "warnings": warnings}
    post = emu = credible = None
    if posterior:
        points = 10 * len(names) + 10 if design is None else int(design)
        emu = emulate(obj, np.array(bounds), points, design_replicates, scenario.seed)
        drawn = sample_posterior(emu, target, priors, draws, scenario.seed)
        post, credible = drawn.sample, credible_intervals(drawn.sample)
        warnings += drawn.warnings
        meta["credible"] = {k: list(v) for k, v in credible.items()}
        meta["posterior"] = {"level": CREDIBLE, "draws": draws, "design_points": points,
                             "design_replicates": design_replicates, "walkers": WALKERS,
                             "burn_in": BURN, "steps": STEPS,
                             "acceptance": drawn.acceptance,
                             "autocorrelation_steps": drawn.autocorr.tolist(),
                             "priors": {n: prior_label((priors or {}).get(n))
                                        for n in names}}
    return Calibration(parameters=params, interval=interval, at_bound=at_bound,
                       warnings=warnings, fit=fit,
                       loss=obj.loss(theta), scenario=written, nudge=nudge,
                       profiles=profiles, meta=meta, posterior=post, credible=credible,
                       emulator=emu)


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



# ---------------------------------------------------------------------------------------
# Posterior: emulator over a design, synthetic likelihood, emcee
# ---------------------------------------------------------------------------------------

CREDIBLE = 0.90  # level of the posterior's credible intervals (the issue asks for 90%)
SD_FLOOR = 1e-4  # assumption: no simulated rate is known better than 0.01 pp, which keeps
#                  the covariance invertible where a quantity barely varies between runs
WALKERS = 32  # assumption: emcee wants at least twice the parameters; 32 mixes 1-6 well
BURN, STEPS = 200, 600  # assumption, checked: a warning when STEPS < 50 autocorrelation times
# differential-evolution moves (ter Braak 2006; ter Braak & Vrugt 2008), mixed as emcee's
# documentation shows: measured autocorrelation ~5 steps here against ~25 for the stretch move
MOVES = ((emcee.moves.DEMove, 0.8), (emcee.moves.DESnookerMove, 0.2))
AUTOCORR_RUNS = 50  # emcee's guidance: chains of at least 50 integrated autocorrelation times


def matern52(a: np.ndarray, b: np.ndarray, ell: np.ndarray) -> np.ndarray:
    """Matérn 5/2 correlation between rows of a and b (Rasmussen & Williams 2006, eq. 4.17):
    twice differentiable, so it follows smooth adoption curves without the squared
    exponential's overconfidence between design points."""
    r = math.sqrt(5.0) * np.sqrt((((a[:, None, :] - b[None, :, :]) / ell) ** 2).sum(-1))
    out: np.ndarray = (1.0 + r + r * r / 3.0) * np.exp(-r)
    return out


@dataclass
class GaussianProcess:
    """Gaussian-process regression of many outputs on the same design points, sharing the
    length scales and the relative nugget (its own noise estimate, fitted with the rest):
    a linear trend, then a Matérn 5/2 process on the standardised residuals whose
    variance is profiled out per output (concentrated likelihood, as in DiceKriging)."""

    x: np.ndarray  # design points x d, in the unit cube
    ell: np.ndarray  # length scales (unit-cube units)
    nugget: float  # noise variance relative to each output's process variance
    chol: np.ndarray  # lower Cholesky factor of correlation + nugget
    alpha: np.ndarray  # (correlation + nugget)^-1 @ standardised residuals, points x outputs
    beta: np.ndarray  # linear trend coefficients, (1 + d) x outputs
    scale: np.ndarray  # sd of each output's trend residuals (0 where the trend is exact)
    s2: np.ndarray  # each output's process variance in standardised units
    chol_inv: np.ndarray | None = None  # inverse of chol, made on first prediction

    @classmethod
    def fit(cls, x: np.ndarray, y: np.ndarray) -> GaussianProcess:
        m, d = x.shape
        basis = np.column_stack([np.ones(m), x])
        beta = np.linalg.lstsq(basis, y, rcond=None)[0]
        resid = y - basis @ beta
        scale = resid.std(axis=0)
        live = scale > 1e-12 * np.maximum(1.0, np.abs(y).max(axis=0))
        scale = np.where(live, scale, 0.0)
        z = np.where(live, resid / np.where(live, scale, 1.0), 0.0)
        zl = z[:, live]

        def factor(p: np.ndarray) -> np.ndarray:
            corr = matern52(x, x, np.exp(p[:d])) + (math.exp(p[d]) + 1e-10) * np.eye(m)
            return np.linalg.cholesky(corr)

        def nll(p: np.ndarray) -> float:
            try:
                chol = factor(p)
            except np.linalg.LinAlgError:
                return 1e300
            s2 = (zl * linalg.cho_solve((chol, True), zl)).sum(axis=0) / m
            return float(0.5 * m * np.log(np.maximum(s2, 1e-300)).sum()
                         + zl.shape[1] * np.log(np.diag(chol)).sum())

        box = [(math.log(0.02), math.log(20.0))] * d + [(math.log(1e-8), math.log(10.0))]
        if zl.shape[1]:
            starts = [np.array([math.log(ell)] * d + [math.log(g)])
                      for ell in (0.15, 0.6) for g in (1e-3, 1e-1)]
            p = min((optimize.minimize(nll, s, method="L-BFGS-B", bounds=box) for s in starts),
                    key=lambda r: float(r.fun)).x
        else:
            p = np.zeros(d + 1)
        chol = factor(p)
        alpha = linalg.cho_solve((chol, True), z)
        s2 = (z * alpha).sum(axis=0) / m
        return cls(x, np.exp(p[:d]), float(math.exp(p[d])), chol, alpha, beta, scale, s2)

    def predict(self, xs: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Mean and variance of the emulated (noise-free) output at rows of xs."""
        k = matern52(xs, self.x, self.ell)
        mean = np.column_stack([np.ones(len(xs)), xs]) @ self.beta + (k @ self.alpha) * self.scale
        if self.chol_inv is None:  # a matrix product per call is far cheaper than a solve
            self.chol_inv = linalg.solve_triangular(self.chol, np.eye(len(self.x)), lower=True)
        v = self.chol_inv @ k.T
        shape = np.clip(1.0 - (v * v).sum(axis=0), 0.0, None)
        return mean, shape[:, None] * (self.s2 * self.scale ** 2)[None, :]


@dataclass
class Quadratic:
    """Least-squares quadratic surface (all squares and cross terms) for many outputs: the
    simulation variance, which a few replicates per point estimate too noisily for a
    Gaussian process to find more than a smooth trend in."""

    beta: np.ndarray  # terms x outputs

    @staticmethod
    def basis(x: np.ndarray) -> np.ndarray:
        d = x.shape[1]
        cols = [np.ones(len(x)), *x.T, *(x[:, i] * x[:, j] for i in range(d)
                                           for j in range(i, d))]
        return np.column_stack(cols)

    @classmethod
    def fit(cls, x: np.ndarray, y: np.ndarray) -> Quadratic:
        return cls(np.linalg.lstsq(cls.basis(x), y, rcond=None)[0])

    def predict(self, x: np.ndarray) -> np.ndarray:
        out: np.ndarray = self.basis(x) @ self.beta
        return out


@dataclass
class Emulator:
    """What the simulator gives at any parameter point, learnt from a design of runs: the
    mean of each observed quantity (with the emulator's own error), its simulation sd, and
    the correlation of simulation noise between the quantities of one block (a ward's
    series is one block: a run that starts high stays high)."""

    names: list[str]
    bounds: np.ndarray  # parameters x 2
    design: np.ndarray  # design points x parameters, in parameter units
    runs: np.ndarray  # design points x replicates x outputs
    blocks: list[np.ndarray]
    mean_gp: GaussianProcess
    var_fit: GaussianProcess  # of the simulation variance
    corr: list[np.ndarray]  # per block: correlation of simulation noise

    @classmethod
    def fit(cls, names: list[str], bounds: np.ndarray, design: np.ndarray, runs: np.ndarray,
            blocks: list[np.ndarray]) -> Emulator:
        m, r, _ = runs.shape
        if r < 2:
            raise ScenarioError(f"design_replicates: {r} is too few; allowed: 2 or more "
                                "(the simulation noise is estimated from them)")
        unit = (design - bounds[:, 0]) / (bounds[:, 1] - bounds[:, 0])
        mean = runs.mean(axis=1)
        # the sample variances are unbiased, their logarithms are not (a third smaller sd
        # measured at 4 runs per point): smooth the variances themselves
        var_fit = GaussianProcess.fit(unit, runs.var(axis=1, ddof=1))
        sd = np.sqrt(np.maximum(var_fit.predict(unit)[0], SD_FLOOR ** 2))
        resid = (runs - mean[:, None, :]) / sd[:, None, :]
        dof = m * (r - 1)
        corr = []
        for b in blocks:
            res = resid[:, :, b].reshape(-1, len(b))
            c = res.T @ res / dof
            d = np.sqrt(np.diag(c))
            d = np.where(d > 1e-12, d, 1.0)  # a quantity that never varies: uncorrelated
            c = c / np.outer(d, d)
            c[np.diag_indices_from(c)] = 1.0
            # assumption: shrink toward independence by outputs per degree of freedom, so a
            # block with many quantities and few runs still has a usable correlation
            lam = min(1.0, len(b) / dof)
            corr.append((1.0 - lam) * c + lam * np.eye(len(b)))
        return cls(names, bounds, design, runs, blocks, GaussianProcess.fit(unit, mean),
                   var_fit, corr)

    def predict(self, theta: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """At rows of theta (parameter units): mean, emulator variance, simulation sd."""
        unit = (np.atleast_2d(theta) - self.bounds[:, 0]) / (self.bounds[:, 1] - self.bounds[:, 0])
        mu, em_var = self.mean_gp.predict(unit)
        return mu, em_var, np.sqrt(np.maximum(self.var_fit.predict(unit)[0], SD_FLOOR ** 2))


def log_likelihood(observed: np.ndarray, mu: np.ndarray, em_var: np.ndarray, sd: np.ndarray,
                   corr: Sequence[np.ndarray], blocks: Sequence[np.ndarray],
                   n: np.ndarray | None = None, obs_var: np.ndarray | None = None) -> np.ndarray:
    """Gaussian log-likelihood of `observed` (outputs) under each row of mu (rows x outputs).

    Per block the covariance is simulation noise (sd C sd: the observed series is one
    realisation of the process), plus the emulator's error (its sd e, correlated as the
    simulation noise is, e C e, because it is averaged simulation noise), plus the
    observations' own noise: binomial at the emulated rate for n surveyed households
    (normal approximation, rate kept 1/(2n) inside [0, 1]) or a given variance (`obs_var`).
    Blocks are independent.
    """
    mu, em_var, sd = np.atleast_2d(mu), np.atleast_2d(em_var), np.atleast_2d(sd)
    extra = np.zeros_like(mu)
    if n is not None:
        p = np.clip(mu, 0.5 / n, 1.0 - 0.5 / n)
        extra += p * (1.0 - p) / n
    if obs_var is not None:
        extra += obs_var
    total = np.zeros(len(mu))
    for b, c in zip(blocks, corr):
        s, e = sd[:, b], np.sqrt(em_var[:, b])
        cov = (s[:, :, None] * s[:, None, :] + e[:, :, None] * e[:, None, :]) * c[None, :, :]
        i = np.arange(len(b))
        cov[:, i, i] += extra[:, b]
        chol = np.linalg.cholesky(cov)
        z = np.linalg.solve(chol, (observed[b][None, :] - mu[:, b])[:, :, None])[:, :, 0]
        total += (-0.5 * (z * z).sum(axis=1) - np.log(np.diagonal(chol, axis1=1, axis2=2)).sum(
            axis=1) - 0.5 * len(b) * math.log(2 * math.pi))
    return total


def check_priors(priors: Mapping[str, Any] | None, names: list[str]) -> dict[str, Any]:
    """Priors are scipy frozen distributions (anything with logpdf and rvs) by parameter."""
    out = dict(priors or {})
    for name, dist in out.items():
        if name not in names:
            raise ScenarioError(f"priors: {name!r} is not a calibrated parameter; allowed: "
                                f"{names}")
        if not (callable(getattr(dist, "logpdf", None)) and callable(getattr(dist, "rvs", None))):
            raise ScenarioError(f"priors[{name!r}]: {dist!r} is not allowed; allowed: a scipy "
                                "frozen distribution, e.g. scipy.stats.norm(-6.8, 0.5)")
    return out


def prior_label(dist: Any) -> str:
    """A frozen distribution as text that is the same in every run (no object address)."""
    if dist is None:
        return "uniform over the bounds"
    name = getattr(getattr(dist, "dist", None), "name", type(dist).__name__)
    args = ", ".join([*map(repr, getattr(dist, "args", ())),
                      *(f"{k}={v!r}" for k, v in getattr(dist, "kwds", {}).items())])
    return f"{name}({args}), truncated to the bounds"


def target_noise(target: ObservedSeries | TrialEffect
                 ) -> tuple[np.ndarray, np.ndarray | None, np.ndarray | None]:
    """Observed values, their binomial sample sizes (series) or fixed variance (trial)."""
    if isinstance(target, TrialEffect):
        sd = observation_sd(target, np.array([target.effect]))
        return (np.array([target.effect], dtype=np.float64), None,
                None if sd is None else sd ** 2)
    return target.rates.astype(np.float64), target.n, None


def emulate(obj: Objective, bounds: np.ndarray, points: int, replicates: int,
            seed: int) -> Emulator:
    """Run a Latin-hypercube design (`points` x `replicates` independent runs, in one batch
    for the executor) and fit the emulator to it. Seeds: the common replicate rule on a
    base derived from the scenario's seed by name, so the design never reuses the point
    fit's runs."""
    d = len(bounds)
    if points < d + 3:
        raise ScenarioError(f"design: {points} points is too few; allowed: {d + 3} or more "
                            f"for {d} parameter(s)")
    streams = Streams(seed)
    lhs = qmc.LatinHypercube(d, rng=streams.generator("calibrate:design"),
                             optimization="random-cd" if d > 1 else None)
    design = bounds[:, 0] + lhs.random(points) * (bounds[:, 1] - bounds[:, 0])
    base = int(streams.seed_sequence("calibrate:design seeds").generate_state(1)[0])
    jobs: list[Job] = []
    for i, theta in enumerate(design):
        jobs += obj.jobs(theta, [replicate_seed(base, i * replicates + r)
                                 for r in range(replicates)])
    out = values(jobs, obj.options)
    per = len(jobs) // points
    runs = np.stack([obj.reduce(out[i * per:(i + 1) * per], replicates) for i in range(points)])
    blocks = ([np.arange(1)] if isinstance(obj.target, TrialEffect)
              else obj.target.blocks())
    return Emulator.fit(list(obj.names), bounds, design, runs, blocks)


@dataclass
class Posterior:
    """A posterior sample and how the sampler went."""

    sample: pd.DataFrame
    acceptance: float
    autocorr: np.ndarray  # integrated autocorrelation time per parameter (steps)
    warnings: list[str]


def sample_posterior(emulator: Emulator, target: ObservedSeries | TrialEffect,
                     priors: Mapping[str, Any] | None = None, draws: int = 1000,
                     seed: int = 0) -> Posterior:
    """Draw `draws` parameter vectors from prior x emulated likelihood with emcee.

    Priors: uniform over the bounds, or the given frozen distributions truncated to the
    bounds (the emulator knows nothing outside them). Walkers start at prior draws;
    emcee's RandomState is seeded from the named stream "calibrate:posterior".
    """
    names, lo, hi = emulator.names, emulator.bounds[:, 0], emulator.bounds[:, 1]
    dists = check_priors(priors, names)
    if draws < 1:
        raise ScenarioError(f"draws: {draws} is not allowed; allowed: 1 or more")
    observed, n, obs_var = target_noise(target)

    def log_prob(theta: np.ndarray) -> np.ndarray:
        out = np.full(len(theta), -np.inf)
        inside = ((theta >= lo) & (theta <= hi)).all(axis=1)
        if inside.any():
            t = theta[inside]
            lp = np.zeros(len(t))
            for j, name in enumerate(names):
                if name in dists:
                    lp += dists[name].logpdf(t[:, j])
            mu, em_var, sd = emulator.predict(t)
            lp += log_likelihood(observed, mu, em_var, sd, emulator.corr, emulator.blocks, n,
                                 obs_var)
            out[inside] = lp
        return out

    gen = Streams(seed).generator("calibrate:posterior")
    start = lo + gen.random((WALKERS, len(names))) * (hi - lo)
    for j, name in enumerate(names):
        if name in dists:
            d = np.asarray(dists[name].rvs(size=WALKERS, random_state=gen), dtype=np.float64)
            ok = (d >= lo[j]) & (d <= hi[j])
            start[ok, j] = d[ok]
    sampler = emcee.EnsembleSampler(WALKERS, len(names), log_prob, vectorize=True,
                                    moves=[(move(), w) for move, w in MOVES])
    sampler.random_state = np.random.RandomState(int(gen.integers(2**32))).get_state()
    sampler.run_mcmc(start, BURN + STEPS, progress=False)
    chain = sampler.get_chain(discard=BURN, flat=True)
    keep = np.linspace(0, len(chain) - 1, draws).round().astype(np.int64)
    sample = pd.DataFrame(chain[keep], columns=names)
    # tol=0: emcee's own check would log a warning; ours below goes into cal.warnings
    tau = np.asarray(sampler.get_autocorr_time(discard=BURN, tol=0), dtype=np.float64)
    warnings: list[str] = []
    if not (STEPS >= AUTOCORR_RUNS * tau).all():
        warnings.append(f"posterior: chains of {STEPS} steps are under {AUTOCORR_RUNS} "
                        f"autocorrelation times ({np.max(tau):.0f} steps): the sample may "
                        "not have mixed; narrow the bounds or give priors")
    for j, name in enumerate(names):
        q = np.quantile(sample[name], [(1 - CREDIBLE) / 2, (1 + CREDIBLE) / 2])
        edge = (hi[j] - lo[j]) * 1e-2
        if q[0] - lo[j] < edge or hi[j] - q[1] < edge:
            warnings.append(f"posterior: {name}'s {CREDIBLE:.0%} credible interval reaches "
                            f"its bound ({lo[j]}, {hi[j]}): the data allow values beyond it, "
                            "so widen the bounds")
    return Posterior(sample, float(np.mean(sampler.acceptance_fraction)), tau, warnings)


def credible_intervals(sample: pd.DataFrame, level: float = CREDIBLE
                       ) -> dict[str, tuple[float, float]]:
    """Equal-tailed credible interval of each column."""
    q = ((1 - level) / 2, (1 + level) / 2)
    return {str(c): (float(sample[c].quantile(q[0])), float(sample[c].quantile(q[1])))
            for c in sample.columns}
