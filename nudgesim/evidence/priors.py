"""Priors, not point values: a distribution for every behavioural coefficient and every
nudge effect parameter, fitted to the evidence library where it has a record.

Names follow one grammar (shared with posteriors and ensembles): ``rule.<field>`` (a field
of the scenario's rule), ``<kind>.<field>`` (that field of every nudge of that kind; a
kind the scenario lacks is ignored) or a path into the scenario (``nudges[leaflet].reach``,
as :func:`nudgesim.runs.set_path` reads it).

The data live in ``priors.toml`` beside this module: hand-written *assumption* priors
(each with its reason), one *kinds* table per nudge kind (the parameters that carry the
evidence, one or two fitted jointly, their no-effect values, the records fitted and which
parameters each informs), the *emulator* (each record's emulated effect on a small design
of those parameters, from :func:`nudgesim.evidence.replicate.emulate`) and the *fitted*
priors at both levels. ``nudgesim priors --refit`` re-emulates and rewrites the file; the
fit itself (:func:`fit`: a random-effects model on a grid, the between-setting spread
estimated from the records, scipy) reruns in about a second per kind from the shipped
emulator, which is how :func:`priors` leaves records out (``exclude``).

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
from scipy import interpolate, optimize, special, stats

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
    the scenario has no nudge of, or a path to a nudge it does not have, changes nothing;
    an unknown field or a malformed path is a ScenarioError."""
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
            try:
                set_path(data, name, v, create_missing=False, what="draw")
            except ScenarioError:
                if (problem := scenario.parameter_problem(name, present=False)) is not None:
                    raise ScenarioError(f"draw {name!r} {problem}") from None
                # a well-formed path this scenario does not have (a posterior's
                # nudges[leaflet].reach on an option without the leaflet): nothing to set,
                # as for a kind it has no nudge of
    for pin in pins:  # a pinned path keeps its value whatever kind-level draw reached it
        if not pin.startswith("rule.") and not _is_kind_name(pin):
            try:
                kept = lookup(original, pin)
            except ScenarioError:
                continue  # a pin on a nudge this scenario does not have
            set_path(data, pin, kept, create_missing=False, what="pin")
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
    """How one nudge kind meets the evidence: the parameters that carry its effect (one, or
    two fitted jointly), the value of each at which the kind has no effect (`nulls`), the
    design each is emulated on, whether its at-scale level is shrunk (messages) or not
    (choice structure), the records fitted, which of them were measured at scale already,
    and which parameters each record informs (`informs`; a record not listed informs all):
    a record is emulated on those only, and a parameter's between-setting spread is
    estimated from the records only where two or more inform it."""

    kind: str
    parameters: tuple[str, ...]
    nulls: tuple[float, ...]
    designs: tuple[tuple[float, ...], ...]
    shrink: bool
    records: tuple[str, ...] = ()
    at_scale_records: tuple[str, ...] = ()
    informs: Mapping[str, tuple[str, ...]] = field(default_factory=dict)
    reason: str = ""

    @property
    def names(self) -> tuple[str, ...]:
        return tuple(f"{self.kind}.{p}" for p in self.parameters)

    @property
    def name(self) -> str:
        """The first (main) parameter's name."""
        return self.names[0]

    def informed(self, record: str) -> tuple[str, ...]:
        """Names of the parameters `record` informs, in the kind's order."""
        mine = set(self.informs.get(record, self.parameters))
        return tuple(n for p, n in zip(self.parameters, self.names) if p in mine)

    def axis(self, name: str) -> int:
        return self.names.index(name)


#: Points per axis of the table a 2-D emulator is read from (assumption: a step of 1/400
#: of the design's range; linear reading between them is far below emulator noise).
FINE = 401


@dataclass(frozen=True)
class Emulation:
    """A record's emulated effect on the product of its parameters' designs (one axis per
    name, in `theta`): mean over replicates (`effect`, flat in C order) and the replicates'
    sd; `y`/`se` are the published effect and the standard error used for it (`se_basis`
    says how it was obtained)."""

    record: str
    names: tuple[str, ...]
    theta: tuple[tuple[float, ...], ...]
    effect: tuple[float, ...]
    sd: tuple[float, ...]
    replicates: int
    y: float
    se: float
    se_basis: str
    at_scale: bool = False

    @property
    def shape(self) -> tuple[int, ...]:
        return tuple(len(t) for t in self.theta)

    def grid(self, values: Sequence[float]) -> np.ndarray:
        return np.asarray(values, dtype=np.float64).reshape(self.shape)

    def _clip(self, thetas: Sequence[Any]) -> list[np.ndarray]:
        return [np.clip(np.asarray(t, dtype=np.float64), x[0], x[-1])
                for t, x in zip(thetas, self.theta)]

    def _on_grid(self, g: Callable[[np.ndarray], np.ndarray], thetas: Sequence[Any]
                 ) -> np.ndarray:
        """`g` (a RegularGridInterpolator) at the broadcast points, in their shape."""
        arr = np.broadcast_arrays(*self._clip(thetas))
        return g(np.stack(arr, axis=-1).reshape(-1, len(arr))).reshape(arr[0].shape)

    def curve(self) -> Callable[..., np.ndarray]:
        """Effect as a function of the parameters (one array per name, broadcast):
        monotone-preserving cubic through the design means (scipy PCHIP), constant beyond
        the design. On a 2-D design the tensor-product PCHIP (along the first axis, then
        the second, as scipy's RegularGridInterpolator "pchip" does) is tabulated on a
        fine grid holding every design point (FINE per axis) and read linearly from it."""
        if len(self.theta) == 1:
            f = interpolate.PchipInterpolator(np.asarray(self.theta[0]),
                                              self.grid(self.effect), extrapolate=False)
            return lambda *t: f(self._clip(t)[0])
        x = [np.asarray(a) for a in self.theta]
        fine = [np.union1d(np.linspace(a[0], a[-1], FINE), a) for a in x]
        table = interpolate.PchipInterpolator(x[0], self.grid(self.effect), axis=0)(fine[0])
        table = interpolate.PchipInterpolator(x[1], table, axis=1)(fine[1])
        g = interpolate.RegularGridInterpolator(fine, table)
        return lambda *t: self._on_grid(g, t)

    def noise(self) -> Callable[..., np.ndarray]:
        """Variance of the emulated mean (replicate sd² / replicates), interpolated
        linearly."""
        v = self.grid(self.sd) ** 2 / max(self.replicates, 1)
        g = interpolate.RegularGridInterpolator([np.asarray(x) for x in self.theta], v)
        return lambda *t: self._on_grid(g, t)


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

    @property
    def floor(self) -> float:
        """Smallest between-setting sd, as a share of a parameter's distance from no
        effect (an assumption; see [settings] heterogeneity_floor_reason)."""
        return float(self.settings["heterogeneity_floor"])


def _prior(d: Mapping[str, Any]) -> Prior:
    return Prior(d["name"], float(d["loc"]), float(d["scale"]), float(d["low"]),
                 float(d["high"]), d.get("basis", "assumption"), d.get("reason", ""))


def _flat(x: Any) -> tuple[float, ...]:
    return tuple(float(v) for v in np.asarray(x, dtype=np.float64).ravel())


def read(path: Path = DATA) -> Library:
    with open(path, "rb") as fh:
        data = tomllib.load(fh)
    kinds = {k: KindFit(k, tuple(v["parameters"]), tuple(map(float, v["null"])),
                        tuple(tuple(map(float, d)) for d in v["design"]), bool(v["shrink"]),
                        tuple(v.get("records", ())), tuple(v.get("at_scale_records", ())),
                        {r: tuple(p) for r, p in v.get("informs", {}).items()},
                        v.get("reason", ""))
             for k, v in data.get("kinds", {}).items()}
    emus = tuple(Emulation(e["record"], tuple(e["names"]),
                           tuple(tuple(map(float, t)) for t in e["theta"]),
                           _flat(e["effect"]), _flat(e["sd"]), int(e["replicates"]),
                           float(e["y"]), float(e["se"]), e["se_basis"],
                           bool(e.get("at_scale", False)))
                 for e in data.get("emulator", []))
    fitted = {(f["level"], f["name"]): _prior(f) for f in data.get("fitted", [])}
    return Library(data["settings"], {p["name"]: _prior(p) for p in data["assumption"]},
                   kinds, emus, fitted)


@cache
def library() -> Library:
    return read(DATA)


def write(lib: Library, path: Path = DATA) -> None:
    """Rewrite priors.toml from `lib` (settings, assumptions and kinds as read; emulator
    and fitted priors as computed). A 2-D emulation's effects are written as one row per
    value of its first parameter."""
    from ..files import write_atomic

    def kind(f: KindFit) -> dict[str, Any]:
        out: dict[str, Any] = {
            "parameters": list(f.parameters), "null": list(f.nulls),
            "design": [list(d) for d in f.designs], "shrink": f.shrink,
            "records": list(f.records), "at_scale_records": list(f.at_scale_records)}
        if f.informs:
            out["informs"] = {r: list(p) for r, p in f.informs.items()}
        return out | {"reason": f.reason}

    doc = {
        "settings": dict(lib.settings),
        "assumption": [p.as_dict() for p in lib.assumptions.values()],
        "kinds": {k: kind(f) for k, f in lib.kinds.items()},
        "emulator": [{"record": e.record, "names": list(e.names),
                      "theta": [list(t) for t in e.theta],
                      "effect": e.grid(e.effect).tolist(), "sd": e.grid(e.sd).tolist(),
                      "replicates": e.replicates, "y": e.y, "se": e.se,
                      "se_basis": e.se_basis, "at_scale": e.at_scale}
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
with the reason for its centre and width (for a fitted parameter: its hyperprior).
[kinds]: per nudge kind, the parameters that carry its evidence, the value of each at
which it has no effect ("null"), the design each is emulated on, the evidence records it
is fitted to and which parameters a record informs ("informs"; else all).
[[emulator]]: each record's emulated effect on the product of its parameters' designs
(nudgesim.evidence.replicate.emulate). [[fitted]]: the fitted priors, both levels."""


# ---------------------------------------------------------------------------------------
# The fit: a random-effects model on a grid (scipy; no sampler)
# ---------------------------------------------------------------------------------------

#: Grid points per parameter (the kind's mean μ and a setting's θ share the grid): a
#: kind fitted on one parameter (a step of 0.017 on reminder.boost's 0-8, a sixth of the
#: at-scale shift 0.094), and a kind fitted on two (the most precise record, Ebeling &
#: Lotz's ±0.36 pp on a slope of 93 pp per unit opt_out, spans about one step of
#: opt_out's 241). Assumptions: fine enough, checked by the refit reproducing its
#: records.
GRID_1D = 481
GRID_2D = (241, 81)
#: A heterogeneity estimate's range: its log marginal likelihood within this of the
#: maximum (a 95% likelihood interval, chi-square with 1 degree of freedom).
PROFILE_DROP = float(stats.chi2.ppf(0.95, 1)) / 2
#: Candidate values of τ searched before the optimiser refines the best: 0 and this many
#: from 1/400 of the design's range to all of it, evenly on a log scale.
CANDIDATES = 30


@dataclass(frozen=True)
class Fit:
    """What :func:`fit` found for one kind: a prior per parameter (for a new setting),
    the between-setting sd τ estimated from the records (None where fewer than two records
    inform the parameter), its 95% likelihood range (the τ whose marginal likelihood is
    within chi-square(1) 95% / 2 of the best), and the floor used."""

    priors: Mapping[str, Prior]
    tau: Mapping[str, float | None]
    tau_range: Mapping[str, tuple[float, float] | None]
    floor: float

    def describe(self, name: str) -> str:
        """The heterogeneity behind `name`'s prior, in words (the priors' reason)."""
        field_ = name.partition(".")[2]
        t, r = self.tau[name], self.tau_range[name]
        floor = (f"at least {self.floor:g} of its distance from no effect (assumption, "
                 "heterogeneity_floor)")
        if t is None or r is None:
            return f"between-setting sd of {field_}: {floor}; one record informs it"
        return (f"between-setting sd of {field_}: {t:.3g} estimated from the records "
                f"(maximum marginal likelihood; 95% likelihood range {r[0]:.3g} to {r[1]:.3g}), "
                f"{floor}")


def _kernel(g: np.ndarray, tau: float, floor: float, null: float) -> np.ndarray:
    """P(θ = g[k] | μ = g[m]) on the grid, rows m: a normal of sd max(τ, floor·|μ − null|)
    truncated to the grid's range and normalised on it (a row of the identity where that
    sd is below a quarter of a grid step: θ = μ)."""
    sd = np.maximum(tau, floor * np.abs(g - null))[:, None]
    step = g[1] - g[0]
    d = g[None, :] - g[:, None]
    z = d / np.maximum(sd, 1e-12)
    k = np.where(sd > step / 4, np.exp(-0.5 * z * z), (np.abs(d) < step / 2) * 1.0)
    return k / k.sum(axis=1, keepdims=True)


def _scaled(e: Emulation, ratio: float | None) -> tuple[float, float]:
    if ratio is not None and not e.at_scale:
        return ratio * e.y, ratio * e.se
    return e.y, e.se


def fit(kind: KindFit, hypers: Mapping[str, Prior], emulations: Sequence[Emulation],
        floor: float, ratio: float | None = None) -> Fit:
    """The priors of `kind`'s parameters for a new setting, given its records.

    Model (a random-effects meta-analysis through the emulator): record i's setting has
    its own parameters θ_i, each θ_ij ~ normal(μ_j, s_j²) truncated to the design range,
    with s_j = max(τ_j, floor·|μ_j − null_j|); its published effect is
    y_i ~ normal(e_i(θ_i), se_i² + emulator variance), e_i the emulated effect (a function
    of the parameters the record informs). μ_j has the kind's assumption prior (`hypers`).
    τ_j, the between-setting sd on the parameter's own scale, is estimated where two or
    more records inform parameter j: the value that maximises the records' marginal
    likelihood without the floor (θ_i and μ integrated out on a grid; scipy.optimize), an
    empirical-Bayes estimate; elsewhere τ_j = 0 and the floor alone sets the spread. With τ fixed, the
    posterior of μ is computed on the grid and the prior for a new setting is the
    predictive of θ_new (θ_new | μ as θ_i), each parameter's marginal summarised by the
    truncated normal that matches its 5/50/95% quantiles (scipy.optimize.least_squares).
    The predictive takes τ as known (it does not carry τ's own uncertainty).

    With `ratio` (the at-scale level of a shrunk kind) every record not measured at scale
    counts as `ratio` times its effect and standard error, and each result is widened
    until no effect lies within 1.645 sd of its centre (bias-corrected syntheses find
    about none)."""
    names = kind.names
    grids = [np.linspace(d[0], d[-1], n) for d, n in
             zip(kind.designs, (GRID_1D,) if len(names) == 1 else GRID_2D)]
    mesh = np.meshgrid(*grids, indexing="ij")
    log_prior = sum(np.log(np.maximum(hypers[n].dist.pdf(m), 1e-300))
                    for n, m in zip(names, mesh))
    liks = []
    for e in emulations:
        y, se = _scaled(e, ratio)
        # the record's likelihood on its own axes, broadcast over the others
        sub = np.meshgrid(*[grids[kind.axis(n)] for n in e.names], indexing="ij")
        mean, var = e.curve()(*sub), e.noise()(*sub)
        ll = stats.norm.logpdf(y, mean, np.sqrt(se**2 + var))
        lik = np.exp(ll - ll.max())
        shape = [len(g) if n in e.names else 1 for n, g in zip(names, grids)]
        liks.append(lik.reshape(shape))
    informed = {n: sum(n in e.names for e in emulations) for n in names}
    free = [n for n in names if informed[n] >= 2]

    def log_post(tau: Mapping[str, float], floors: Mapping[str, float]) -> np.ndarray:
        """log p(μ) + Σ log p(y_i | μ) on the μ grid (θ_i integrated out)."""
        ks = [_kernel(g, tau[n], floors[n], kind.nulls[j]) for j, (n, g) in
              enumerate(zip(names, grids))]
        out = np.array(log_prior, dtype=np.float64)
        for lik in liks:
            m = np.broadcast_to(lik, out.shape)
            m = ks[0] @ m if m.ndim == 1 else ks[0] @ m @ ks[1].T
            out = out + np.log(np.maximum(m, 1e-300))
        return out

    # τ is estimated without the floor (the records' own estimate); a parameter not
    # estimated keeps the floor meanwhile
    est_floors = {n: 0.0 if n in free else floor for n in names}

    def log_marginal(values: Sequence[float] | np.ndarray) -> float:
        tau = dict.fromkeys(names, 0.0) | dict(zip(free, (float(v) for v in values)))
        return float(special.logsumexp(log_post(tau, est_floors)))

    tau: dict[str, float] = {n: 0.0 for n in names}
    tau_range: dict[str, tuple[float, float] | None] = {n: None for n in names}
    if free:
        spans = [grids[kind.axis(n)][-1] - grids[kind.axis(n)][0] for n in free]
        cand = [np.concatenate([[0.0], np.geomspace(s / 400, s, CANDIDATES)]) for s in spans]
        pts = np.array(np.meshgrid(*cand, indexing="ij")).reshape(len(free), -1).T
        vals = np.array([log_marginal(p) for p in pts])
        best = pts[int(np.argmax(vals))]
        if len(free) == 1:  # refine between the best candidate's neighbours
            k = int(np.argmax(vals))
            c = cand[0]
            sol = optimize.minimize_scalar(lambda v: -log_marginal([v]), method="bounded",
                                           bounds=(c[max(k - 1, 0)], c[min(k + 1, len(c) - 1)]),
                                           options={"xatol": 1e-3 * spans[0]})
            sol_x, sol_f = np.array([sol.x]), float(sol.fun)
        else:
            sol = optimize.minimize(lambda v: -log_marginal(v), best, method="Powell",
                                    bounds=[(0.0, s) for s in spans])
            sol_x, sol_f = sol.x, float(sol.fun)
        est = sol_x if -sol_f >= vals.max() else best
        # below the smallest candidate step the likelihood cannot tell τ from 0
        tau |= {n: float(v) if v >= c[1] else 0.0 for n, v, c in zip(free, est, cand)}
        top = max(-sol_f, float(vals.max()))
        for i, n in enumerate(free):  # 95% likelihood range, on the candidates
            ok = pts[vals >= top - PROFILE_DROP, i]
            tau_range[n] = (float(min(ok.min(), tau[n])), float(max(ok.max(), tau[n])))
    lp = log_post(tau, dict.fromkeys(names, floor))
    w = np.exp(lp - lp.max())
    w /= w.sum()
    out: dict[str, Prior] = {}
    for j, (n, g) in enumerate(zip(names, grids)):
        wj = w.sum(axis=tuple(a for a in range(len(names)) if a != j))  # marginal of μ_j
        pmf = wj @ _kernel(g, tau[n], floor, kind.nulls[j])  # predictive of θ_new,j
        cdf = np.cumsum(pmf) - pmf / 2
        target = np.interp(QUANTILES, cdf, g)
        prior = _match(n, target, float(g[0]), float(g[-1]), hypers[n].scale)
        if ratio is not None and kind.shrink:
            null = kind.nulls[j]
            prior = replace(prior, scale=max(prior.scale, abs(prior.loc - null) / Z90))
        out[n] = prior
    return Fit(out, {n: (tau[n] if n in free else None) for n in names}, tau_range, floor)


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


def fitted_priors(lib: Library, kind: str, level: str, exclude: Iterable[str] = ()
                  ) -> dict[str, Prior]:
    """The priors of `kind`'s evidence-carrying parameters at `level`, leaving the records
    in `exclude` out (refit from the shipped emulator; the shipped fit when none is left
    out). A kind with no record keeps its assumption priors, shrunk toward no effect at
    the at-scale level if it is a message (see `assumed_at_scale`)."""
    kf = lib.kinds[kind]
    hypers = {n: lib.assumptions[n] for n in kf.names}
    emus = [e for e in lib.emulations if e.names[0].partition(".")[0] == kind
            and e.record in kf.records]
    left = [e for e in emus if e.record not in set(exclude)]
    if not left:
        return {n: h if level == "published" else assumed_at_scale(lib, kf, n, h)
                for n, h in hypers.items()}
    if len(left) == len(emus) and all((level, n) in lib.fitted for n in kf.names):
        return {n: lib.fitted[(level, n)] for n in kf.names}
    ratio = lib.ratio if (level == "at_scale" and kf.shrink) else None
    res = fit(kf, hypers, left, lib.floor, ratio)
    why = f"fitted to {len(left)} record(s) by emulation"
    out: dict[str, Prior] = {}
    for n, prior in res.priors.items():
        basis = " ".join(e.record for e in left if n in e.names) or "assumption"
        reason = f"{why}; {res.describe(n)}"
        if ratio is None:
            out[n] = replace(prior, basis=basis, reason=reason)
            continue
        published = fitted_priors(lib, kind, "published", exclude)[n]
        null = kf.nulls[kf.axis(n)]
        if abs(prior.quantiles()[1] - null) > abs(published.quantiles()[1] - null):
            # the shrunk effects are out of the emulator's reach, and the fit piles at the
            # design's edge: at scale is never further from no effect than published
            shrunk = assumed_at_scale(lib, kf, n, published)
            out[n] = replace(shrunk, basis=basis, reason=reason + "; at scale: the fit to "
                             "shrunk effects ends further from no effect than the published "
                             f"one, so the published prior x {lib.ratio:.3f} toward no "
                             "effect (DellaVigna & Linos 2022), wide enough to include none")
        else:
            out[n] = replace(prior, basis=basis, reason=reason + "; at scale: effects of "
                             f"records not measured at scale x {lib.ratio:.3f} (DellaVigna & "
                             "Linos 2022), widened to include no effect (Maier et al. 2022; "
                             "Hardaker et al. 2026)")
    return out


def fitted_prior(lib: Library, kind: str, level: str, exclude: Iterable[str] = (),
                 name: str | None = None) -> Prior:
    """One of :func:`fitted_priors` (default: the kind's main parameter)."""
    return fitted_priors(lib, kind, level, exclude)[name or lib.kinds[kind].name]


def assumed_at_scale(lib: Library, kf: KindFit, name: str, hyper: Prior) -> Prior:
    """At-scale prior of a kind's parameter with no record: a message's assumed effect
    shrunk toward no effect by the at-scale ratio, wide enough to include none;
    choice-structure kinds keep their assumption."""
    if not kf.shrink:
        return hyper
    null = kf.nulls[kf.axis(name)]
    loc = null + lib.ratio * (hyper.quantiles()[1] - null)
    scale = max(lib.ratio * hyper.scale, abs(loc - null) / Z90)
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
    fitted: dict[str, dict[str, Prior]] = {}
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
        if head in lib.kinds and name in lib.kinds[head].names:
            if head not in fitted:
                fitted[head] = fitted_priors(lib, head, level, exclude)
            p = fitted[head][name]
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
    """Run `emulate(record, draw={name: θ, ...}, replicates, seed)` on the product of the
    designs of the parameters the record informs (C order: the last varies fastest)."""
    names = kf.informed(str(row["id"]))
    axes = [kf.designs[kf.axis(n)] for n in names]
    means, sds = [], []
    for point in np.array(np.meshgrid(*axes, indexing="ij")).reshape(len(names), -1).T:
        out = emulate(row["id"], draw={n: float(t) for n, t in zip(names, point)},
                      replicates=replicates, seed=seed)
        per = np.asarray(_get(out, "per_replicate"), dtype=np.float64)
        means.append(float(_get(out, "simulated")))
        sds.append(float(np.nanstd(per, ddof=1)) if per.size > 1 else 0.0)
    se, basis = record_se(row)
    return Emulation(row["id"], names, tuple(tuple(a) for a in axes), tuple(means),
                     tuple(sds), replicates, float(row["effect"]), se, basis, at_scale)


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
        if not any(e.record in kf.records for e in emulations):
            continue
        for level in LEVELS:
            for n, p in fitted_priors(base, kind, level).items():
                fitted[(level, n)] = p
    return replace(base, fitted=fitted)


def library_table() -> pd.DataFrame:
    """Every parameter's prior at both levels (the docs' table)."""
    lib = library()
    rows = []
    for name, p in lib.assumptions.items():
        head = name.partition(".")[0]
        kf = lib.kinds.get(head)
        for level in LEVELS:
            q = (fitted_priors(lib, head, level)[name]
                 if kf is not None and name in kf.names else p)
            lo, mid, hi = q.quantiles()
            rows.append({"name": name.replace(":", "."), "level": level,
                         "distribution": q.describe(), "p05": lo, "p50": mid, "p95": hi,
                         "basis": q.basis})
    return pd.DataFrame(rows)
