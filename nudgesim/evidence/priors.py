"""Priors, not point values: a distribution for every behavioural coefficient and every
nudge effect parameter, fitted to the evidence library where it has a record.

Names follow one grammar (shared with posteriors and ensembles): ``rule.<field>`` (a field
of the scenario's rule), ``<kind>.<field>`` (that field of every nudge of that kind; a
kind the scenario lacks is ignored) or a path into the scenario (``nudges[leaflet].reach``,
as :func:`nudgesim.runs.set_path` reads it).

The data live in ``priors.toml`` beside this module: hand-written *assumption* priors
(each with its reason), one *fit* table per nudge kind (which parameter carries the
evidence, its no-effect value, the records it is fitted to), the *emulator* (each
record's emulated effect on a small design of that parameter, from
:func:`nudgesim.evidence.replicate.emulate`) and the *fitted* priors at both levels.
``nudgesim priors --refit`` re-emulates and rewrites the file; the
fit itself (:func:`fit`) is a grid integration with scipy and reruns in milliseconds from
the shipped emulator, which is how :func:`priors` leaves records out (``exclude``).

Every prior is a normal truncated to [low, high] (scipy.stats.truncnorm): the mode is
``loc``, the support never leaves the field's allowed range.
"""

from __future__ import annotations

import math
import numbers
import tomllib
import zlib
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field, replace
from functools import cache
from pathlib import Path
from typing import Any, Literal

import numpy as np
import pandas as pd
import tomli_w
from scipy import integrate, interpolate, optimize, stats

from ..errors import ScenarioError
from ..registry import NUDGES
from ..runs import set_path
from ..scenario import Scenario, lookup

DATA = Path(__file__).with_name("priors.toml")
LEVELS = ("at_scale", "published")
Level = Literal["at_scale", "published"]
#: quantiles a fitted prior is matched at, and the interval every table reports
QUANTILES = (0.05, 0.5, 0.95)
Z90 = float(stats.norm.ppf(0.95))  # half-width of a central 90% normal interval, in sd


# ---------------------------------------------------------------------------------------
# Applying a draw
# ---------------------------------------------------------------------------------------


def _is_kind_name(name: str) -> bool:
    head, dot, rest = name.partition(".")
    return bool(dot) and head in NUDGES.names() and "." not in rest and "[" not in rest


def apply_draw(scenario: Scenario, draw: Mapping[str, float]) -> Scenario:
    """A new scenario with every named parameter set to the draw's value; the names in
    ``scenario.uncertainty.pin`` keep the scenario's values (a pinned path such as
    ``nudges[leaflet].attitude_boost`` keeps that one nudge's value while a draw of
    ``information.attitude_boost`` sets every other information nudge). A draw of a kind
    the scenario has no nudge of changes nothing; an unknown field is a ScenarioError."""
    pins = set(scenario.uncertainty.pin)
    data = scenario.to_dict()
    original = scenario.to_dict()
    for name, value in draw.items():
        if name in pins:
            continue
        v = float(value)
        if name.startswith("rule.") and "." not in name[5:] and "[" not in name:
            if (problem := scenario.parameter_problem(name)) is not None:
                raise ScenarioError(f"draw {name!r} {problem}")
            data["rule"][name[5:]] = v
        elif _is_kind_name(name):
            kind, _, fld = name.partition(".")
            if fld == "kind" or fld not in NUDGES[kind].spec.model_fields:
                raise ScenarioError(
                    f"draw {name!r}: {fld!r} is not a field of {kind!r} nudges; allowed: "
                    f"{[f for f in NUDGES[kind].spec.model_fields if f != 'kind']}")
            for nudge in data.get("nudges", []):
                if nudge["kind"] == kind:
                    nudge[fld] = v
        else:
            set_path(data, name, v, create_missing=False, what="draw")
    for pin in pins:  # a pinned path keeps its value whatever kind-level draw reached it
        if not pin.startswith("rule.") and not _is_kind_name(pin):
            set_path(data, pin, lookup(original, pin), create_missing=False, what="pin")
    return Scenario.from_dict(data, scenario.base_dir)


# ---------------------------------------------------------------------------------------
# One prior
# ---------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Prior:
    """A normal(loc, scale) truncated to [low, high]; `basis` is "assumption" or the record
    ids it was fitted to; `reason` says where its centre and width come from."""

    name: str
    loc: float
    scale: float
    low: float
    high: float
    basis: str = "assumption"
    reason: str = ""

    def __post_init__(self) -> None:
        if not (self.scale > 0 and self.low < self.high):
            raise ValueError(f"prior {self.name}: needs scale > 0 and low < high")

    @property
    def dist(self) -> Any:
        a, b = (self.low - self.loc) / self.scale, (self.high - self.loc) / self.scale
        return stats.truncnorm(a, b, loc=self.loc, scale=self.scale)

    def ppf(self, u: Any) -> np.ndarray:
        """Inverse CDF, clipped to [low, high]: scipy's can miss a bound by 1e-16."""
        return np.clip(self.dist.ppf(u), self.low, self.high)

    def quantiles(self) -> tuple[float, float, float]:
        q = self.ppf(QUANTILES)
        return float(q[0]), float(q[1]), float(q[2])

    def describe(self) -> str:
        return f"normal({self.loc:.4g}, {self.scale:.4g}) truncated to [{self.low:g}, {self.high:g}]"

    def as_dict(self) -> dict[str, Any]:
        return {"name": self.name, "loc": self.loc, "scale": self.scale, "low": self.low,
                "high": self.high, "basis": self.basis, "reason": self.reason}


def _stream(seed: int, name: str) -> np.random.Generator:
    """One generator per parameter name, child of SeedSequence(seed): a parameter's draws
    do not depend on which other parameters a scenario has (common random numbers)."""
    return np.random.default_rng(
        np.random.SeedSequence(int(seed), spawn_key=(zlib.crc32(name.encode("utf-8")),)))


@dataclass(frozen=True)
class Priors:
    """The priors of one scenario's parameters at one evidence level."""

    level: str
    entries: Mapping[str, Prior]

    @property
    def names(self) -> list[str]:
        return list(self.entries)

    def __getitem__(self, name: str) -> Prior:
        return self.entries[name]

    def sample(self, k: int, seed: int) -> pd.DataFrame:
        """k draws (rows), one column per name, by inverse CDF of each parameter's own
        stream of SeedSequence(seed): deterministic, and a column is the same whatever
        other columns there are."""
        if k < 1:
            raise ScenarioError(f"draws: {k} is not allowed; allowed: 1 or more")
        cols = {n: p.ppf(_stream(seed, n).random(int(k))) for n, p in self.entries.items()}
        return pd.DataFrame(cols, columns=self.names)

    def table(self) -> pd.DataFrame:
        rows = []
        for p in self.entries.values():
            q05, q50, q95 = p.quantiles()
            rows.append({"name": p.name, "distribution": p.describe(), "p05": q05,
                         "p50": q50, "p95": q95, "basis": p.basis, "reason": p.reason})
        return pd.DataFrame(rows, columns=["name", "distribution", "p05", "p50", "p95",
                                           "basis", "reason"])


# ---------------------------------------------------------------------------------------
# The data file
# ---------------------------------------------------------------------------------------


@dataclass(frozen=True)
class KindFit:
    """How one nudge kind meets the evidence: the parameter that carries its effect,
    the value at which it has none, the design it is emulated on, whether its at-scale
    level is shrunk (messages) or not (choice structure), the records fitted and which of
    them were measured at scale already."""

    kind: str
    parameter: str
    null: float
    design: tuple[float, ...]
    shrink: bool
    records: tuple[str, ...] = ()
    at_scale_records: tuple[str, ...] = ()
    reason: str = ""

    @property
    def name(self) -> str:
        return f"{self.kind}.{self.parameter}"


@dataclass(frozen=True)
class Emulation:
    """A record's emulated effect at each design value of its kind's parameter: mean over
    replicates and the replicates' sd; `y`/`se` are the published effect and the standard
    error used for it (`se_basis` says how it was obtained)."""

    record: str
    name: str
    theta: tuple[float, ...]
    effect: tuple[float, ...]
    sd: tuple[float, ...]
    replicates: int
    y: float
    se: float
    se_basis: str
    at_scale: bool = False

    def curve(self) -> Callable[[np.ndarray], np.ndarray]:
        """Effect as a function of the parameter: monotone-preserving cubic through the
        design means (scipy PCHIP), constant beyond the design."""
        x = np.asarray(self.theta)
        f = interpolate.PchipInterpolator(x, np.asarray(self.effect), extrapolate=False)
        return lambda t: f(np.clip(t, x[0], x[-1]))

    def noise(self) -> Callable[[np.ndarray], np.ndarray]:
        """Variance of the emulated mean (replicate sd² / replicates), interpolated."""
        x, v = np.asarray(self.theta), np.asarray(self.sd) ** 2 / max(self.replicates, 1)
        return lambda t: np.interp(t, x, v)


@dataclass(frozen=True)
class Library:
    """priors.toml as objects."""

    settings: Mapping[str, Any]
    assumptions: Mapping[str, Prior]  # by name, both levels
    kinds: Mapping[str, KindFit]
    emulations: tuple[Emulation, ...] = ()
    fitted: Mapping[tuple[str, str], Prior] = field(default_factory=dict)  # (level, name)

    @property
    def ratio(self) -> float:
        """At-scale / academic effect: +1.4 pp vs +8.7 pp (DellaVigna & Linos 2022)."""
        s = self.settings
        return float(s["at_scale_pp"]) / float(s["academic_pp"])


def _prior(d: Mapping[str, Any]) -> Prior:
    return Prior(d["name"], float(d["loc"]), float(d["scale"]), float(d["low"]),
                 float(d["high"]), d.get("basis", "assumption"), d.get("reason", ""))


def read(path: Path = DATA) -> Library:
    with open(path, "rb") as fh:
        data = tomllib.load(fh)
    kinds = {k: KindFit(k, v["parameter"], float(v["null"]), tuple(map(float, v["design"])),
                        bool(v["shrink"]), tuple(v.get("records", ())),
                        tuple(v.get("at_scale_records", ())), v.get("reason", ""))
             for k, v in data.get("kinds", {}).items()}
    emus = tuple(Emulation(e["record"], e["name"], tuple(e["theta"]), tuple(e["effect"]),
                           tuple(e["sd"]), int(e["replicates"]), float(e["y"]),
                           float(e["se"]), e["se_basis"], bool(e.get("at_scale", False)))
                 for e in data.get("emulator", []))
    fitted = {(f["level"], f["name"]): _prior(f) for f in data.get("fitted", [])}
    return Library(data["settings"], {p["name"]: _prior(p) for p in data["assumption"]},
                   kinds, emus, fitted)


@cache
def library() -> Library:
    return read(DATA)


def write(lib: Library, path: Path = DATA) -> None:
    """Rewrite priors.toml from `lib` (settings, assumptions and kinds as read; emulator
    and fitted priors as computed)."""
    from ..files import write_atomic

    doc = {
        "settings": dict(lib.settings),
        "assumption": [p.as_dict() for p in lib.assumptions.values()],
        "kinds": {k: {"parameter": f.parameter, "null": f.null, "design": list(f.design),
                      "shrink": f.shrink, "records": list(f.records),
                      "at_scale_records": list(f.at_scale_records), "reason": f.reason}
                  for k, f in lib.kinds.items()},
        "emulator": [{"record": e.record, "name": e.name, "theta": list(e.theta),
                      "effect": list(e.effect), "sd": list(e.sd), "replicates": e.replicates,
                      "y": e.y, "se": e.se, "se_basis": e.se_basis, "at_scale": e.at_scale}
                     for e in lib.emulations],
        "fitted": [{"level": lvl} | p.as_dict() for (lvl, _), p in sorted(lib.fitted.items())],
    }
    header = "".join(f"# {line}\n" if line else "#\n" for line in HEADER.splitlines())
    write_atomic(path, header + "\n" + tomli_w.dumps(doc))


HEADER = """\
Priors of nudgesim's parameters (nudgesim.evidence.priors). Written by
`nudgesim priors --refit`; edit [settings], [[assumption]] and [kinds]
by hand, then refit. Every prior is normal(loc, scale) truncated to [low, high].
[[assumption]]: behavioural coefficients and effect parameters no record measures, each
with the reason for its centre and width. [kinds]: per nudge kind, the parameter that
carries its evidence, its no-effect value ("null"), the design it is emulated on, the
evidence records it is fitted to. [[emulator]]: each record's emulated effect on that
design (nudgesim.evidence.replicate.emulate). [[fitted]]: the fitted priors, both levels."""


# ---------------------------------------------------------------------------------------
# The fit: hierarchical model on a grid (scipy quadrature, no sampler)
# ---------------------------------------------------------------------------------------

MU_GRID = 161  # grid points for the kind's mean parameter (assumption: ample for 1-D)
OMEGA_GRID = 41  # grid points for between-setting heterogeneity
THETA_GRID = 241  # grid points for one setting's parameter


def _truncnorm_pdf(x: np.ndarray, loc: np.ndarray, sd: np.ndarray, lo: float, hi: float
                   ) -> np.ndarray:
    mass = stats.norm.cdf((hi - loc) / sd) - stats.norm.cdf((lo - loc) / sd)
    return stats.norm.pdf((x - loc) / sd) / sd / np.maximum(mass, 1e-300)


def fit(kind: KindFit, hyper: Prior, emulations: Sequence[Emulation], omega_scale: float,
        ratio: float | None = None) -> Prior:
    """The prior of `kind`'s parameter for a new setting, given its records.

    Model: each record i has its own parameter θ_i ~ normal(μ, (ω·|μ − null|)²) truncated
    to the design range (settings differ; the spread scales with the effect), and its
    published effect y_i ~ normal(e_i(θ_i), se_i² + emulator variance), e_i the emulated
    effect. μ has the kind's assumption prior (`hyper`), ω ~ half-normal(`omega_scale`).
    The posterior of (μ, ω) is computed on a grid (θ_i integrated out numerically), the
    predictive of θ for a new setting is summarised by the truncated normal that matches
    its 5/50/95% quantiles (scipy.optimize.least_squares). With `ratio` (the at-scale
    level of a shrunk kind) every record not measured at scale counts as `ratio` times
    its effect and standard error, and the result is widened until no effect lies within
    1.645 sd of its centre (bias-corrected syntheses find about none)."""
    lo, hi = kind.design[0], kind.design[-1]
    theta = np.linspace(lo, hi, THETA_GRID)
    mu = np.linspace(lo, hi, MU_GRID)
    omega = np.linspace(0.0, 3 * omega_scale, OMEGA_GRID)
    floor = 1e-3 * (hi - lo)  # smallest spread: keeps a zero-effect μ a proper density
    sd = np.maximum(omega[None, :] * np.abs(mu[:, None] - kind.null), floor)  # (μ, ω)
    # density of θ given (μ, ω): (μ, ω, θ)
    dens = _truncnorm_pdf(theta[None, None, :], mu[:, None, None], sd[:, :, None], lo, hi)
    log_post = np.log(np.maximum(hyper.dist.pdf(mu), 1e-300))[:, None] + \
        stats.halfnorm.logpdf(omega, scale=omega_scale)[None, :]
    for e in emulations:
        y, se = e.y, e.se
        if ratio is not None and not e.at_scale:
            y, se = ratio * y, ratio * se
        lik = stats.norm.pdf(y, e.curve()(theta), np.sqrt(se**2 + e.noise()(theta)))
        marg = integrate.trapezoid(dens * lik[None, None, :], theta, axis=2)
        log_post = log_post + np.log(np.maximum(marg, 1e-300))
    w = np.exp(log_post - log_post.max())
    w /= w.sum()
    pred = np.tensordot(w, dens, axes=([0, 1], [0, 1]))  # density of θ_new on the grid
    cdf = integrate.cumulative_trapezoid(pred, theta, initial=0.0)
    cdf /= cdf[-1]
    target = np.interp(QUANTILES, cdf, theta)
    prior = _match(kind.name, target, lo, hi, hyper.scale)
    if ratio is not None and kind.shrink:
        prior = replace(prior, scale=max(prior.scale, abs(prior.loc - kind.null) / Z90))
    return prior


def _match(name: str, target: np.ndarray, lo: float, hi: float, scale0: float) -> Prior:
    """The truncated normal on [lo, hi] whose 5/50/95% quantiles are nearest `target`."""

    def resid(p: np.ndarray) -> np.ndarray:
        loc, s = p[0], math.exp(p[1])
        q = stats.truncnorm((lo - loc) / s, (hi - loc) / s, loc=loc, scale=s).ppf(QUANTILES)
        return (q - target) / (hi - lo)

    spread = max((target[2] - target[0]) / (2 * Z90), 1e-3 * (hi - lo))
    start = np.array([target[1], math.log(min(spread, scale0 * 10))])
    sol = optimize.least_squares(resid, start, method="lm")
    return Prior(name, float(sol.x[0]), float(math.exp(sol.x[1])), lo, hi)


def fitted_prior(lib: Library, kind: str, level: str, exclude: Iterable[str] = ()) -> Prior:
    """The prior of `kind`'s evidence-carrying parameter at `level`, leaving the records in
    `exclude` out (refit from the shipped emulator; the shipped fit when none is left out).
    A kind with no record keeps its assumption prior, shrunk toward no effect at the
    at-scale level if it is a message (see `assumed_at_scale`)."""
    kf = lib.kinds[kind]
    hyper = lib.assumptions[kf.name]
    emus = [e for e in lib.emulations if e.name == kf.name and e.record in kf.records]
    left = [e for e in emus if e.record not in set(exclude)]
    if not left:
        return hyper if level == "published" else assumed_at_scale(lib, kf, hyper)
    if len(left) == len(emus) and (level, kf.name) in lib.fitted:
        return lib.fitted[(level, kf.name)]
    ratio = lib.ratio if (level == "at_scale" and kf.shrink) else None
    prior = fit(kf, hyper, left, float(lib.settings["heterogeneity_scale"]), ratio)
    basis = " ".join(e.record for e in left)
    why = f"fitted to {len(left)} record(s) by emulation"
    if ratio is None:
        return replace(prior, basis=basis, reason=why)
    published = fitted_prior(lib, kind, "published", exclude)
    if abs(prior.quantiles()[1] - kf.null) > abs(published.quantiles()[1] - kf.null):
        # the shrunk effects are out of the emulator's reach too, and the fit piles at the
        # design's edge: at scale is never further from no effect than published
        shrunk = assumed_at_scale(lib, kf, published)
        return replace(shrunk, basis=basis, reason=why + "; at scale: the fit to shrunk "
                       "effects ends further from no effect than the published one (the "
                       f"emulated trial cannot reach them), so the published prior x "
                       f"{lib.ratio:.3f} toward no effect (DellaVigna & Linos 2022), wide "
                       "enough to include none")
    return replace(prior, basis=basis, reason=why + f"; at scale: effects of records not "
                   f"measured at scale x {lib.ratio:.3f} (DellaVigna & Linos 2022), widened "
                   "to include no effect (Maier et al. 2022; Hardaker et al. 2026)")


def assumed_at_scale(lib: Library, kf: KindFit, hyper: Prior) -> Prior:
    """At-scale prior of a kind with no record: a message's assumed effect shrunk toward no
    effect by the at-scale ratio, wide enough to include none; choice-structure kinds keep
    their assumption."""
    if not kf.shrink:
        return hyper
    loc = kf.null + lib.ratio * (hyper.quantiles()[1] - kf.null)
    scale = max(lib.ratio * hyper.scale, abs(loc - kf.null) / Z90)
    return replace(hyper, loc=loc, scale=scale, reason=hyper.reason + f"; at scale: "
                   f"shrunk toward no effect x {lib.ratio:.3f} (DellaVigna & Linos 2022) "
                   "and wide enough to include none (Maier et al. 2022; Hardaker et al. "
                   "2026), assumption")


# ---------------------------------------------------------------------------------------
# The priors of one scenario
# ---------------------------------------------------------------------------------------


def priors(scenario: Scenario, evidence: Level | None = None, exclude: Iterable[str] = (),
           kinds: Iterable[str] = ()) -> Priors:
    """The priors of the parameters `scenario` uses, at `evidence` (None: the scenario's
    ``[uncertainty] evidence``): its rule's coefficients and the effect parameters of the
    nudge kinds it has (plus `kinds`, e.g. the kinds a menu may add). Pinned names are left
    out (they keep the scenario's values). `exclude`: evidence records left out of the
    fits."""
    level = evidence if evidence is not None else scenario.uncertainty.evidence
    if level not in LEVELS:
        raise ScenarioError(f"evidence: {level!r} is not allowed; allowed: {list(LEVELS)}")
    lib = library()
    exclude = tuple(exclude)
    present = {n.kind for n in scenario.nudges} | set(kinds)
    unknown = sorted(set(kinds) - set(NUDGES.names()))
    if unknown:
        raise ScenarioError(f"kinds: {unknown} are not nudge kinds; allowed: {NUDGES.names()}")
    pins = set(scenario.uncertainty.pin)
    out: dict[str, Prior] = {}
    rule_fields = set(type(scenario.rule).model_fields)
    for name, p in lib.assumptions.items():
        head, _, fld = name.partition(".")
        if head == "rule":
            rk, _, fld = fld.partition(":")  # "rule.<kind>:<field>": one rule kind's field
            if rk != scenario.rule.kind or fld not in rule_fields:
                continue
            name = f"rule.{fld}"
        elif head not in present:
            continue
        if name in pins:
            continue
        if head in lib.kinds and lib.kinds[head].name == name:
            p = fitted_prior(lib, head, level, exclude)
        out[name] = replace(p, name=name)
    return Priors(level, out)


# ---------------------------------------------------------------------------------------
# Refit: emulate each record on its kind's design, fit, write
# ---------------------------------------------------------------------------------------


def record_se(row: Mapping[str, Any]) -> tuple[float, str]:
    """Standard error of a record's effect: from its 95% CI, else from a range (as a 90%
    interval), else binomial from n and baseline (pp, two equal arms), else a quarter of
    the effect (assumption: no uncertainty reported)."""
    lo, hi, eff = _num(row.get("effect_lo")), _num(row.get("effect_hi")), float(row["effect"])
    interval = str(row.get("interval") or "")
    if lo is not None and hi is not None:
        if "confidence" in interval:
            return (hi - lo) / (2 * float(stats.norm.ppf(0.975))), "95% confidence interval"
        return (hi - lo) / (2 * Z90), "range read as a 90% interval (assumption)"
    n, p0 = _num(row.get("n")), _num(row.get("baseline"))
    if row.get("unit") == "pp" and n is not None and p0 is not None:
        p1 = min(max(p0 + eff / 100, 0.0), 1.0)
        half = n / 2
        return 100 * math.sqrt(p0 * (1 - p0) / half + p1 * (1 - p1) / half), \
            "binomial, two equal arms of n/2"
    return 0.25 * abs(eff), "none reported: a quarter of the effect (assumption)"


def _num(x: Any) -> float | None:
    """x as a float, None when missing (None or NaN, as pandas writes a missing number)."""
    if isinstance(x, numbers.Real) and not isinstance(x, bool) and math.isfinite(float(x)):
        return float(x)
    return None


Emulate = Callable[..., Any]


def emulate_record(emulate: Emulate, row: Mapping[str, Any], kf: KindFit, replicates: int,
                   seed: int, at_scale: bool) -> Emulation:
    """Run `emulate(record, draw={parameter: θ}, replicates, seed)` on the kind's design."""
    means, sds = [], []
    for t in kf.design:
        out = emulate(row["id"], draw={kf.name: t}, replicates=replicates, seed=seed)
        per = np.asarray(_get(out, "per_replicate"), dtype=np.float64)
        means.append(float(_get(out, "simulated")))
        sds.append(float(np.nanstd(per, ddof=1)) if per.size > 1 else 0.0)
    se, basis = record_se(row)
    return Emulation(row["id"], kf.name, kf.design, tuple(means), tuple(sds), replicates,
                     float(row["effect"]), se, basis, at_scale)


def _get(obj: Any, key: str) -> Any:
    return obj[key] if isinstance(obj, Mapping) else getattr(obj, key)


def refit(lib: Library, records: pd.DataFrame, emulate: Emulate, replicates: int = 4,
          seed: int = 2014, emulations: Sequence[Emulation] | None = None) -> Library:
    """A library with every kind's records emulated (unless `emulations` are given) and
    every fitted prior recomputed at both levels."""
    if emulations is None:
        by_id = {str(r["id"]): r for r in records.to_dict("records")}
        emus = []
        for kf in lib.kinds.values():
            for rid in kf.records:
                if rid not in by_id:
                    raise ScenarioError(f"priors.toml kinds.{kf.kind}.records: {rid!r} is "
                                        "not in the evidence library")
                emus.append(emulate_record(emulate, by_id[rid], kf, replicates, seed,
                                           rid in kf.at_scale_records))
        emulations = emus
        lib = replace(lib, settings=dict(lib.settings) | {"emulator_seed": int(seed),
                                                          "emulator_replicates": replicates})
    base = replace(lib, emulations=tuple(emulations), fitted={})
    fitted = {}
    for kind, kf in lib.kinds.items():
        if not any(e.name == kf.name for e in emulations):
            continue
        for level in LEVELS:
            fitted[(level, kf.name)] = fitted_prior(base, kind, level)
    return replace(base, fitted=fitted)


def library_table() -> pd.DataFrame:
    """Every parameter's prior at both levels (the docs' table)."""
    lib = library()
    rows = []
    for name, p in lib.assumptions.items():
        head = name.partition(".")[0]
        kf = lib.kinds.get(head)
        for level in LEVELS:
            q = fitted_prior(lib, head, level) if kf is not None and kf.name == name else p
            lo, mid, hi = q.quantiles()
            rows.append({"name": name.replace(":", "."), "level": level,
                         "distribution": q.describe(), "p05": lo, "p50": mid, "p95": hi,
                         "basis": q.basis})
    return pd.DataFrame(rows)

