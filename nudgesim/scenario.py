"""Scenario: everything a run needs, validated once at the boundary.

A scenario is a pydantic model read from (and written back to) TOML. Every default below
carries its source or the word "assumption" in its description; the README's model
description repeats them. Bad input raises :class:`ScenarioError` whose message names the
field, the bad value and what is allowed, so the CLI can print it without a traceback.
"""

from __future__ import annotations

import math
import re
import tomllib
import types
import typing
import warnings
from pathlib import Path
from typing import Annotated, Any, Literal, Union

import numpy as np
import tomli_w
from pydantic import (
    BaseModel,
    BeforeValidator,
    ConfigDict,
    Field,
    PlainSerializer,
    PrivateAttr,
    ValidationError,
    ValidationInfo,
    field_validator,
    model_validator,
)

from .errors import ScenarioError  # re-exported: `from .scenario import ScenarioError`

#: Longest run a scenario may ask for. Every step adds a row per ward to the records and
#: a column to the contact-stamp book, and 100,000 weekly steps are already ~1,900 years:
#: larger values are typos (or 2**63 - 1), not campaigns.
MAX_STEPS = 100_000
#: Largest seed: seeds are stored as signed 64-bit integers in result tables.
MAX_SEED = 2**63 - 1
#: Control characters (NUL, escape, ...) have no place in names, labels, units or paths:
#: they break file names and terminals. Free text (description) may hold tabs and newlines.
CONTROL = re.compile(r"[\x00-\x1f\x7f-\x9f]")
_CONTROL_IN_TEXT = re.compile(r"[\x00-\x08\x0b-\x1f\x7f-\x9f]")
_FREE_TEXT = {"description", "source"}


def control_character(value: Any, pattern: re.Pattern, where: str = "") -> tuple | None:
    """(path inside the value, character) of the first control character in a text, or in the
    texts (keys too) of lists and dicts; None when there is none."""
    if isinstance(value, str):
        found = pattern.search(value)
        return (where, found.group()) if found else None
    items: list = []
    if isinstance(value, dict):
        items = [(f"{where}.{k}", k) for k in value] + [(f"{where}.{k}", v) for k, v in value.items()]
    elif isinstance(value, list):
        items = [(f"{where}[{i}]", v) for i, v in enumerate(value)]
    for inner, item in items:
        if (bad := control_character(item, pattern, inner)) is not None:
            return bad
    return None


class ScenarioWarning(UserWarning):
    """Input that runs but probably does not say what the user meant (e.g. two sources of
    one trait, where the documented precedence picks one)."""


class _Spec(BaseModel):
    """Base of every scenario part (and of menus): unknown fields are errors (they are usually
    typos), every float must be finite (NaN or infinity would run and report nonsense) and
    no text may hold control characters. Set here once so that no field can forget it."""

    model_config = ConfigDict(extra="forbid", validate_assignment=True, allow_inf_nan=False)

    @field_validator("*", mode="after", check_fields=False)
    @classmethod
    def _printable(cls, value: Any, info: ValidationInfo) -> Any:
        pattern = _CONTROL_IN_TEXT if info.field_name in _FREE_TEXT else CONTROL
        if (bad := control_character(value, pattern)) is not None:
            where, char = bad  # where: the path inside the field ('.reach[0]'), may be ''
            raise ValueError(
                f"{where}: control character {char!r} is not allowed; allowed: printable text"
            )
        return value


Probability = Annotated[float, Field(ge=0.0, le=1.0)]
NonNegative = Annotated[float, Field(ge=0.0)]
# Steps for an effect to halve; "none" (TOML has no null) = no decay while the nudge is active
HalfLife = Annotated[
    Annotated[float, Field(gt=0)] | None,
    BeforeValidator(lambda v: None if v == "none" else v),
    PlainSerializer(lambda v: "none" if v is None else v),
]

# ---------------------------------------------------------------------------------------
# Distributions of resident traits and tie weights
# ---------------------------------------------------------------------------------------


class Fixed(_Spec):
    """Every resident gets the same value."""

    dist: Literal["fixed"] = "fixed"
    value: float

    def support(self) -> tuple[float, float]:
        return self.value, self.value

    def sample(self, rng: np.random.Generator, size: int) -> np.ndarray:
        return np.full(size, self.value, dtype=np.float64)


class Uniform(_Spec):
    """Uniform on [low, high)."""

    dist: Literal["uniform"] = "uniform"
    low: float = 0.0
    high: float = 1.0

    @model_validator(mode="after")
    def _ordered(self) -> Uniform:
        if self.high < self.low:
            raise ValueError(f".high: {self.high} is below low ({self.low}); allowed: >= low")
        return self

    def support(self) -> tuple[float, float]:
        return self.low, self.high

    def sample(self, rng: np.random.Generator, size: int) -> np.ndarray:
        return rng.uniform(self.low, self.high, size)


class Normal(_Spec):
    """Normal(mean, sd) clipped to [low, high] (clipping, not truncation: simple and stated).

    A bound left out means unbounded on that side: infinity is not a number users may write
    (every float is finite), so "no bound" is the absence of one.
    """

    dist: Literal["normal"] = "normal"
    mean: float = 0.0
    sd: NonNegative = 1.0
    low: float | None = Field(None, description="lower clip; none = unbounded")
    high: float | None = Field(None, description="upper clip; none = unbounded")

    @model_validator(mode="after")
    def _ordered(self) -> Normal:
        if self.low is not None and self.high is not None and self.high < self.low:
            raise ValueError(f".high: {self.high} is below low ({self.low}); allowed: >= low")
        return self

    def support(self) -> tuple[float, float]:
        lo = -math.inf if self.low is None else self.low
        hi = math.inf if self.high is None else self.high
        if self.sd == 0.0:  # every draw is the mean, clipped
            return min(max(self.mean, lo), hi), min(max(self.mean, lo), hi)
        return lo, hi

    def sample(self, rng: np.random.Generator, size: int) -> np.ndarray:
        lo = -np.inf if self.low is None else self.low
        hi = np.inf if self.high is None else self.high
        return np.clip(rng.normal(self.mean, self.sd, size), lo, hi)


class Beta(_Spec):
    """Beta(a, b) rescaled to [low, high]: bounded traits such as thresholds or costs."""

    dist: Literal["beta"] = "beta"
    a: Annotated[float, Field(gt=0.0)] = 2.0
    b: Annotated[float, Field(gt=0.0)] = 2.0
    low: float = 0.0
    high: float = 1.0

    @model_validator(mode="after")
    def _ordered(self) -> Beta:
        if self.high < self.low:
            raise ValueError(f".high: {self.high} is below low ({self.low}); allowed: >= low")
        return self

    def support(self) -> tuple[float, float]:
        return self.low, self.high

    def sample(self, rng: np.random.Generator, size: int) -> np.ndarray:
        return self.low + (self.high - self.low) * rng.beta(self.a, self.b, size)


def _number_is_fixed(value: Any) -> Any:
    """Let users write `threshold = 0.3` for a fixed value."""
    if isinstance(value, (int, float)) and not isinstance(value, bool):
        return {"dist": "fixed", "value": float(value)}
    return value


Distribution = Annotated[
    Fixed | Uniform | Normal | Beta,
    Field(discriminator="dist"),
    BeforeValidator(_number_is_fixed),
]

#: Allowed values of each resident trait wherever it is written (a distribution under
#: [population], rule.threshold, a residents CSV column, a graph node attribute): one rule
#: per quantity. None = unbounded on that side. Habit, cost and threshold are shares;
#: susceptibility multiplies social influence (a negative one would invert it).
TRAIT_RANGES: dict[str, tuple[float | None, float | None]] = {
    "attitude": (None, None),
    "habit": (0.0, 1.0),
    "cost": (0.0, 1.0),
    "susceptibility": (0.0, None),
    "threshold": (0.0, 1.0),
}
#: Tie weights: finite and non-negative, as the network checks for graph files.
WEIGHT_RANGE: tuple[float | None, float | None] = (0.0, None)


def describe_range(lo: float | None, hi: float | None) -> str:
    """'[0, 1]', '>= 0' or 'any finite number', for messages."""
    if lo is not None and hi is not None:
        return f"[{lo:g}, {hi:g}]"
    if lo is not None:
        return f">= {lo:g}"
    if hi is not None:
        return f"<= {hi:g}"
    return "any finite number"


def check_support(dist: Any, allowed: tuple[float | None, float | None]) -> Any:
    """Refuse a distribution whose values can leave the allowed range: the same rule as for
    sampled values, applied before sampling so it holds wherever the quantity is written."""
    if dist is None:
        return dist
    lo, hi = dist.support()
    a, b = allowed
    if (a is not None and lo < a) or (b is not None and hi > b):
        shown = ", ".join(f"{k}={v}" for k, v in dist.model_dump(exclude_none=True).items()
                          if k != "dist")
        gives = (f"gives values in [{lo:g}, {hi:g}]" if math.isfinite(lo) and math.isfinite(hi)
                 else "is unbounded (give low and high to clip it)")
        raise ValueError(
            f"{dist.dist}({shown}) {gives}; allowed: values in {describe_range(a, b)}"
        )
    return dist

# ---------------------------------------------------------------------------------------
# Population
# ---------------------------------------------------------------------------------------


class WardSpec(_Spec):
    """A neighbourhood: its name, number of residents and baseline adoption."""

    name: str
    size: Annotated[int, Field(ge=1)] | None = Field(
        None, description="residents in the ward; None splits population.size evenly"
    )
    baseline: Probability | None = Field(
        None, description="share of the ward adopting at step 0 (overrides initial_adopters)"
    )


class PopulationSpec(_Spec):
    """Residents: how many, in which wards, and the distributions of their traits."""

    size: Annotated[int, Field(ge=1)] | None = Field(
        None, description="number of residents (households); taken from csv/graph when None"
    )
    wards: Annotated[int, Field(ge=1)] | list[WardSpec] = Field(
        1, description="a ward count (equal sizes) or a list of wards with names and sizes"
    )
    csv: str | None = Field(
        None,
        description="CSV with one row per resident; columns among attitude, habit, cost, "
        "susceptibility, threshold, ward override the distributions",
    )
    attitude: Distribution = Field(
        default_factory=lambda: Normal(mean=0.0, sd=1.0, low=-3.0, high=3.0),
        description="standardised attitude toward the behaviour (z-score; assumption)",
    )
    habit: Distribution = Field(
        default_factory=lambda: Fixed(value=0.0),
        description="initial habit strength in [0, 1] (assumption: nobody starts habitual)",
    )
    cost: Distribution = Field(
        default_factory=lambda: Beta(a=2.0, b=2.0, low=0.0, high=1.0),
        description="perceived cost/effort in [0, 1] (assumption)",
    )
    susceptibility: Distribution = Field(
        default_factory=lambda: Uniform(low=0.5, high=1.5),
        description="multiplier of social influence, mean 1 (assumption)",
    )
    threshold: Distribution = Field(
        default_factory=lambda: Uniform(low=0.1, high=0.5),
        description="adoption threshold for the threshold rule (assumption)",
    )

    @field_validator(*TRAIT_RANGES, mode="after")
    @classmethod
    def _in_range(cls, dist: Any, info: ValidationInfo) -> Any:
        return check_support(dist, TRAIT_RANGES[info.field_name])

    @model_validator(mode="after")
    def _sizes_agree(self) -> PopulationSpec:
        if isinstance(self.wards, list):
            names = [w.name for w in self.wards]
            if len(set(names)) != len(names):
                raise ValueError(f".wards: ward names must be unique, got {names}")
            sizes = [w.size for w in self.wards]
            if all(s is not None for s in sizes):
                total = sum(sizes)
                if self.size is not None and self.size != total:
                    raise ValueError(
                        f"size ({self.size}) differs from the sum of ward sizes ({total}); "
                        "give one or make them agree"
                    )
            elif any(s is not None for s in sizes):
                raise ValueError(".wards: give a size for every ward or for none")
        return self

    def ward_names(self) -> list[str]:
        if isinstance(self.wards, list):
            return [w.name for w in self.wards]
        return [f"W{i + 1:02d}" for i in range(self.wards)]


# ---------------------------------------------------------------------------------------
# Social network
# ---------------------------------------------------------------------------------------


class _NetworkBase(_Spec):
    weights: Distribution | None = Field(
        None, description="tie weight distribution; None means every tie weighs 1"
    )

    @field_validator("weights", mode="after")
    @classmethod
    def _non_negative(cls, dist: Any) -> Any:
        return check_support(dist, WEIGHT_RANGE)


class WattsStrogatz(_NetworkBase):
    """Small world: ring lattice of k neighbours, each tie rewired with probability p."""

    kind: Literal["watts_strogatz"] = "watts_strogatz"
    k: Annotated[int, Field(ge=2)] = 10
    p: Probability = 0.1

    @model_validator(mode="after")
    def _even(self) -> WattsStrogatz:
        if self.k % 2:
            raise ValueError(
                f".k: {self.k} is odd; allowed: an even number (k/2 neighbours each side)"
            )
        return self


class BarabasiAlbert(_NetworkBase):
    """Scale-free: each newcomer attaches to m residents, preferentially to popular ones."""

    kind: Literal["barabasi_albert"] = "barabasi_albert"
    m: Annotated[int, Field(ge=1)] = 5


class ErdosRenyi(_NetworkBase):
    """Random graph G(n, p) with p = mean_degree / (n - 1)."""

    kind: Literal["erdos_renyi"] = "erdos_renyi"
    mean_degree: Annotated[float, Field(gt=0.0)] = 10.0


class WardClustered(_NetworkBase):
    """Stochastic block model by ward: dense ties inside a ward, sparse across wards."""

    kind: Literal["ward_clustered"] = "ward_clustered"
    p_in: Probability | None = None
    p_out: Probability | None = None
    mean_degree_in: NonNegative | None = None
    mean_degree_out: NonNegative | None = None

    @model_validator(mode="after")
    def _one_of_each(self) -> WardClustered:
        for a, b in (("p_in", "mean_degree_in"), ("p_out", "mean_degree_out")):
            if (getattr(self, a) is None) == (getattr(self, b) is None):
                raise ValueError(f".{a}: give exactly one of {a} or {b}")
        return self


class Complete(_NetworkBase):
    """Everyone knows everyone: the mean-field case (small populations only)."""

    kind: Literal["complete"] = "complete"


class GraphFile(_NetworkBase):
    """A graph read from an edge list (u v [weight]) or GraphML; its nodes are the residents."""

    kind: Literal["file"] = "file"
    path: str
    format: Literal["edgelist", "graphml"] | None = None
    weight: str = Field("weight", description="edge attribute holding tie weights (GraphML)")


NetworkSpec = Annotated[
    WattsStrogatz | BarabasiAlbert | ErdosRenyi | WardClustered | Complete | GraphFile,
    Field(discriminator="kind"),
]

# ---------------------------------------------------------------------------------------
# Decision rules
# ---------------------------------------------------------------------------------------


class ThresholdRule(_Spec):
    """Granovetter/Watts: adopt when the adopted share of neighbours reaches a threshold."""

    kind: Literal["threshold"] = "threshold"
    threshold: Distribution | None = Field(
        None,
        description="overrides population.threshold when given (per-resident thresholds "
        "from a residents CSV or graph node attributes override both)",
    )
    lapse: Probability = Field(0.0, description="weekly lapse probability; 0 = progressive")

    @field_validator("threshold", mode="after")
    @classmethod
    def _in_range(cls, dist: Any) -> Any:
        return check_support(dist, TRAIT_RANGES["threshold"])


class BassRule(_Spec):
    """Bass diffusion on a network: adopt with probability p + q x adopted share of neighbours."""

    kind: Literal["bass"] = "bass"
    p: Probability = Field(
        0.03, description="innovation coefficient (Sultan, Farley & Lehmann 1990 mean: 0.03)"
    )
    q: Probability = Field(
        0.38, description="imitation coefficient (Sultan, Farley & Lehmann 1990 mean: 0.38)"
    )
    lapse: Probability = Field(0.0, description="per-step lapse probability; 0 = progressive")

    @model_validator(mode="after")
    def _is_probability(self) -> BassRule:
        if self.p + self.q > 1.0:
            raise ValueError(
                f".q: p + q must be <= 1 to stay a probability, got {self.p + self.q:g}"
            )
        return self


class IndependentCascadeRule(_Spec):
    """Each newly adopted neighbour gets one chance to convince, with probability p."""

    kind: Literal["independent_cascade"] = "independent_cascade"
    p: Probability = Field(0.1, description="per-tie transmission probability (assumption)")
    lapse: Probability = Field(0.0, description="per-step lapse probability; 0 = progressive")


class LogisticRule(_Spec):
    """Random-utility (TPB-style) hazards of adopting and lapsing; habit builds while adopted.

    Coefficients are on the log-odds scale of a weekly hazard. Intercepts and weights are
    assumptions chosen so the synthetic borough sits near a one-third participation
    baseline; calibrate them (``nudgesim`` planning tools) before trusting magnitudes.
    """

    kind: Literal["logistic"] = "logistic"
    adopt_intercept: float = Field(-7.0, description="log-odds of adopting (assumption)")
    adopt_attitude: float = Field(0.8, description="weight of attitude (assumption)")
    adopt_norm: float = Field(3.0, description="weight of perceived descriptive norm (assumption)")
    adopt_habit: float = Field(1.0, description="weight of residual habit (assumption)")
    adopt_cost: float = Field(1.5, description="weight of perceived cost (assumption)")
    lapse_intercept: float = Field(-2.5, description="log-odds of lapsing (assumption)")
    lapse_attitude: float = Field(0.5, description="attitude protects against lapse (assumption)")
    lapse_norm: float = Field(2.0, description="norm protects against lapse (assumption)")
    lapse_habit: float = Field(3.0, description="habit protects against lapse (assumption)")
    lapse_cost: float = Field(1.0, description="cost pushes toward lapse (assumption)")
    habit_gain: Probability = Field(
        0.27,
        description="weekly habit growth toward 1 while adopted: 95% of asymptote in ~10 "
        "weeks (Lally et al. 2010, median 66 days)",
    )
    habit_decay: Probability = Field(0.1, description="weekly habit decay otherwise (assumption)")
    initial_habit: Probability = Field(
        1.0, description="habit of residents adopting at step 0 (assumption: established)"
    )


RuleSpec = Annotated[
    ThresholdRule | BassRule | IndependentCascadeRule | LogisticRule,
    Field(discriminator="kind"),
]

# ---------------------------------------------------------------------------------------
# Nudges
# ---------------------------------------------------------------------------------------


class Targeting(_Spec):
    """Whom a nudge is aimed at: filters first, then the top `count`/`share` by strategy."""

    strategy: Literal["random", "degree", "betweenness", "kcore", "community", "ward"] = Field(
        "random",
        description="ranking of eligible residents; 'ward' ranks by lowest ward adoption first",
    )
    count: Annotated[int, Field(ge=0)] | None = Field(None, description="how many to target")
    share: Probability | None = Field(None, description="share of eligible residents to target")
    wards: list[str] | None = Field(None, description="only residents of these wards")
    adopted: bool | None = Field(None, description="true: adopters only; false: non-adopters only")
    attitude_below: float | None = None
    attitude_above: float | None = None
    community_method: Literal["label_propagation", "greedy_modularity"] = "label_propagation"
    betweenness_samples: Annotated[int, Field(ge=1)] = Field(
        256, description="source nodes sampled for betweenness on large graphs"
    )

    @model_validator(mode="after")
    def _count_or_share(self) -> Targeting:
        if self.count is not None and self.share is not None:
            raise ValueError(".share: give count or share, not both")
        return self


class _NudgeBase(_Spec):
    """Schedule, targeting, reach and cost: what every nudge has."""

    label: str | None = Field(None, description="name shown in plots and tables")
    start: Annotated[int, Field(ge=1)] = Field(1, description="first step (week) it acts")
    end: Annotated[int, Field(ge=1)] | None = Field(
        None, description="first step it no longer acts (exclusive); default: end of the run"
    )
    duration: Annotated[int, Field(ge=1)] | None = Field(None, description="alternative to end")
    every: Annotated[int, Field(ge=1)] | None = Field(
        None, description="repeat the contact every this many steps; None = contact once"
    )
    targeting: Targeting = Field(default_factory=Targeting)
    reach: Probability = Field(1.0, description="share of targets actually contacted")
    cost_fixed: NonNegative = Field(0.0, description="£ paid once at the start")
    cost_per_contact: NonNegative = Field(0.0, description="£ per resident contacted")

    @model_validator(mode="after")
    def _end_or_duration(self) -> _NudgeBase:
        if self.end is not None and self.duration is not None:
            raise ValueError(".duration: give end or duration, not both")
        if self.end is not None and self.end <= self.start:
            raise ValueError(f".end: {self.end} is not after start ({self.start}); allowed: > start")
        return self

    def stop(self, steps: int) -> int:
        """First step after the active window (exclusive end)."""
        if self.end is not None:
            return self.end
        if self.duration is not None:
            return self.start + self.duration
        return steps + 1

    def contact_steps(self, steps: int) -> list[int]:
        """Steps at which targets are contacted."""
        stop = min(self.stop(steps), steps + 1)
        if self.every is None:
            return [self.start] if self.start < stop else []
        return list(range(self.start, stop, self.every))

    @property
    def name(self) -> str:
        return self.label or self.kind  # type: ignore[attr-defined]


class NormFeedback(_NudgeBase):
    """Show residents their ward's (or the borough's) adoption rate.

    Descriptive feedback pulls the perceived norm toward the shown rate in both directions
    (the boomerang, Schultz et al. 2007); an injunctive message removes the downward pull
    for adopters.
    """

    kind: Literal["norm_feedback"] = "norm_feedback"
    scope: Literal["ward", "borough"] = Field(
        "ward", description="reference group; closer groups work better (Goldstein et al. 2008)"
    )
    weight: Probability = Field(
        0.3, description="share of the perceived norm replaced by the shown rate (assumption)"
    )
    injunctive: bool = Field(False, description="add an approving message (Schultz et al. 2007)")
    shown: Probability | None = Field(
        None,
        description="a fixed rate to show instead of the measured one (e.g. 0.75 for "
        "'75% of guests reuse their towels', Goldstein et al. 2008); None = the real rate",
    )
    half_life: HalfLife = Field(
        4.0, description="weeks for the message's effect to halve (assumption); None = no decay"
    )


class Default(_NudgeBase):
    """Opt-out enrolment: contacted non-adopters become adopters unless they opt out."""

    kind: Literal["default"] = "default"
    opt_out: Probability = Field(
        0.3, description="share of enrolled residents who opt out at once (assumption)"
    )


class Pledge(_NudgeBase):
    """Public commitment: pledgers get a decaying push to adopt and a lower lapse hazard."""

    kind: Literal["pledge"] = "pledge"
    uptake: Probability = Field(0.1, description="share of contacted who pledge (assumption)")
    boost: float = Field(1.0, description="log-odds push to adopt at pledge time (assumption)")
    lapse_reduction: NonNegative = Field(
        1.0, description="log-odds reduction of lapsing at pledge time (assumption)"
    )
    half_life: HalfLife = Field(
        8.0, description="weeks for the pledge's effect to halve (assumption)"
    )


class Reminder(_NudgeBase):
    """Periodic prompt (e.g. a bin-day text): a short-lived salience boost."""

    kind: Literal["reminder"] = "reminder"
    boost: float = Field(0.5, description="log-odds salience boost at contact (assumption)")
    half_life: HalfLife = Field(
        1.0, description="weeks for salience to halve (assumption)"
    )


class Incentive(_NudgeBase):
    """Reward that lowers perceived cost while active; may crowd out motivation after."""

    kind: Literal["incentive"] = "incentive"
    cost_reduction: Probability = Field(
        0.5, description="share of perceived cost removed while active (assumption)"
    )
    cost_per_adopter: NonNegative = Field(
        0.0, description="£ paid per contacted adopter per step while active"
    )
    crowding_out: NonNegative = Field(
        0.0, description="log-odds loss of motivation once the incentive ends (assumption)"
    )
    crowding_half_life: HalfLife = Field(
        26.0, description="weeks for crowding-out to halve (assumption)"
    )


class Canvassing(_NudgeBase):
    """Door-to-door conversation: an attitude boost and a direct chance of adopting."""

    kind: Literal["canvassing"] = "canvassing"
    attitude_boost: float = Field(0.5, description="attitude change at contact (assumption)")
    adopt_prob: Probability = Field(
        0.05, description="chance a contacted non-adopter adopts at once (assumption)"
    )
    half_life: HalfLife = Field(
        12.0, description="weeks for the attitude boost to halve (assumption)"
    )


class Ambassadors(_NudgeBase):
    """Residents recruited as peer ambassadors: they adopt, do not lapse during their term,
    and their influence on neighbours is multiplied."""

    kind: Literal["ambassadors"] = "ambassadors"
    uptake: Probability = Field(1.0, description="share of approached residents who agree")
    influence: Annotated[float, Field(ge=0)] = Field(
        3.0, description="weight of an ambassador in neighbours' norm (assumption)"
    )


class CommunityPartnership(_NudgeBase):
    """A time-limited community group in chosen wards: stronger in-ward ties and norms."""

    kind: Literal["community_partnership"] = "community_partnership"
    wards: list[str] = Field(..., min_length=1, description="wards where the group exists")
    tie_strength: NonNegative = Field(
        1.0, description="extra weight of in-ward ties while active (assumption)"
    )
    norm_salience: NonNegative = Field(
        0.5, description="relative increase of the norm's weight while active (assumption)"
    )


class Information(_NudgeBase):
    """Leaflet campaign: a small attitude boost that decays."""

    kind: Literal["information"] = "information"
    attitude_boost: float = Field(0.2, description="attitude change at contact (assumption)")
    half_life: HalfLife = Field(
        4.0, description="weeks for the boost to halve (assumption)"
    )


NudgeSpec = Annotated[
    NormFeedback | Default | Pledge | Reminder | Incentive | Canvassing | Ambassadors | CommunityPartnership | Information,
    Field(discriminator="kind"),
]

NUDGE_KINDS = [t.model_fields["kind"].default for t in typing.get_args(NudgeSpec.__origin__)]

# ---------------------------------------------------------------------------------------
# Impact and the scenario itself
# ---------------------------------------------------------------------------------------


class ImpactSpec(_Spec):
    """Environmental impact of one adopting household per step."""

    per_adopter_step: NonNegative = Field(
        0.0015,
        description="impact per adopter per step (assumption: ~1.5 kg food waste "
        "separated per household per week)",
    )
    unit: str = Field("t food waste diverted", description="unit of per_adopter_step")


def check_nudge_wards(spec: Any, index: int, names: list[str]) -> None:
    """Ward names in a nudge must exist: one check for wards the scenario defines and for
    wards read from a residents CSV or graph."""
    fields = [("targeting.wards", spec.targeting.wards or [])]
    if isinstance(spec, CommunityPartnership):
        fields.append(("wards", spec.wards))
    known = set(names)
    for field_name, wards in fields:
        unknown = [w for w in wards if w not in known]
        if unknown:
            raise ScenarioError(
                f"nudges[{index}].{field_name}: unknown ward(s) {unknown}; allowed: "
                f"{sorted(names)[:10]}{'…' if len(names) > 10 else ''}"
            )


def _check_initial_adopters(value: Any) -> Any:
    """One clear message for the three accepted shapes instead of one per union member."""
    if value is None or isinstance(value, list):
        return value
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise ValueError(
            f"{value!r} is not allowed: give a fraction in [0, 1] (float), a count (int) "
            "or a list of resident ids"
        )
    if isinstance(value, int) and value < 0:
        raise ValueError(f"a count must be >= 0, got {value}")
    if isinstance(value, float) and not 0.0 <= value <= 1.0:
        raise ValueError(f"a fraction must be in [0, 1], got {value} (write an int for a count)")
    return value


class Scenario(_Spec):
    """One simulated campaign: who lives in the borough, how they are tied, how they decide,
    which nudges they receive, and for how long."""

    name: str = "scenario"
    description: str = ""
    seed: Annotated[int, Field(ge=0, le=MAX_SEED)] = 0
    steps: Annotated[int, Field(ge=1, le=MAX_STEPS)] = Field(
        52, description=f"number of steps to simulate (at most {MAX_STEPS:,})"
    )
    step_unit: str = "week"
    population: PopulationSpec = Field(default_factory=lambda: PopulationSpec(size=1000))
    network: NetworkSpec = Field(default_factory=WattsStrogatz)
    rule: RuleSpec = Field(default_factory=LogisticRule)
    initial_adopters: Annotated[
        int | float | list[int | str] | None, BeforeValidator(_check_initial_adopters)
    ] = Field(
        None,
        description="a fraction (float), a count (int) or a list of resident ids; "
        "None uses ward baselines or nobody",
    )
    nudges: list[NudgeSpec] = Field(default_factory=list)
    impact: ImpactSpec = Field(default_factory=ImpactSpec)

    _base_dir: Path = PrivateAttr(default_factory=Path.cwd)

    @model_validator(mode="after")
    def _consistent(self) -> Scenario:
        for i, n in enumerate(self.nudges):
            if n.start > self.steps:
                raise ValueError(
                    f"nudges[{i}].start: {n.start} is after the last step ({self.steps}); "
                    f"allowed: 1..{self.steps}"
                )
        if self.network.kind != "file" and self.population.csv is None:
            # wards from a csv or graph are checked when they are read (make_nudge)
            for i, n in enumerate(self.nudges):
                check_nudge_wards(n, i, self.population.ward_names())
        if (
            isinstance(self.population.wards, list)
            and any(w.baseline is not None for w in self.population.wards)
            and self.initial_adopters is not None
        ):
            raise ValueError(
                "initial_adopters: not allowed together with ward baselines; allowed: one of them"
            )
        return self

    # -- paths -------------------------------------------------------------------------
    @property
    def base_dir(self) -> Path:
        """Folder that relative paths (graph file, residents CSV) are resolved against."""
        return self._base_dir

    def resolve(self, path: str) -> Path:
        p = Path(path).expanduser()
        return p if p.is_absolute() else self._base_dir / p

    # -- TOML in and out ---------------------------------------------------------------
    @classmethod
    def from_dict(cls, data: dict[str, Any], base_dir: Path | None = None) -> Scenario:
        try:
            sc = cls.model_validate(data)
        except ValidationError as err:
            raise ScenarioError(explain(err)) from None
        except RecursionError:
            raise ScenarioError(f"scenario: {TOO_DEEP}") from None
        sc._base_dir = Path(base_dir) if base_dir is not None else Path.cwd()
        return sc

    @classmethod
    def from_toml_str(cls, text: str, base_dir: Path | None = None) -> Scenario:
        return cls.from_dict(load_toml_text(text), base_dir)

    @classmethod
    def from_toml(cls, path: str | Path) -> Scenario:
        path = Path(path)
        try:
            text = path.read_text(encoding="utf-8")
        except FileNotFoundError:
            raise ScenarioError(f"scenario file not found: {path}") from None
        except (OSError, UnicodeDecodeError) as err:
            raise ScenarioError(f"cannot read scenario file {path}: {err}") from None
        try:
            return cls.from_toml_str(text, base_dir=path.resolve().parent)
        except ScenarioError as err:
            raise ScenarioError(f"{path}: {err}") from None

    def to_dict(self) -> dict[str, Any]:
        """Plain data that round-trips through TOML: unset (None) fields are left out, and a
        half-life of None is written as "none" (its serializer) so it survives the trip."""
        return _drop_none(self.model_dump(mode="json"))

    def to_toml(self) -> str:
        return tomli_w.dumps(self.to_dict())

    def replace(self, **changes: Any) -> Scenario:
        """A validated copy with top-level fields changed (keeps the base folder).

        A shorter horizon (`steps`) drops the nudges that would start after it, with one
        warning naming them: `nudgesim run --steps 10` on a campaign whose last nudge starts
        in week 13 runs the first ten weeks of it. Nudges passed in `changes` are kept as
        given (a nudge written after the horizon is still an error)."""
        data = self.to_dict() | changes
        steps = changes.get("steps")
        if isinstance(steps, int) and "nudges" not in changes:
            late = [n for n in self.nudges if n.start > steps]
            if late:
                data["nudges"] = [d for d, n in zip(data["nudges"], self.nudges) if n.start <= steps]
                names = ", ".join(f"{n.name!r} (starts at {n.start})" for n in late)
                warnings.warn(
                    f"steps: {steps} ends before {names}; "
                    f"{'it is' if len(late) == 1 else 'they are'} left out of this run",
                    ScenarioWarning,
                    stacklevel=2,
                )
        return Scenario.from_dict(data, self._base_dir)


def _drop_none(obj: Any) -> Any:
    if isinstance(obj, dict):
        return {k: _drop_none(v) for k, v in obj.items() if v is not None}
    if isinstance(obj, list):
        return [_drop_none(v) for v in obj]
    return obj


TOO_DEEP = "nesting too deep (arrays or tables inside each other); allowed: a few levels"


def load_toml_text(text: str) -> dict[str, Any]:
    """tomllib.loads with every failure as one ScenarioError line (tomllib recurses once per
    nesting level, so thousands of nested brackets end in RecursionError)."""
    try:
        return tomllib.loads(text)
    except tomllib.TOMLDecodeError as err:
        raise ScenarioError(f"malformed TOML: {err}") from None
    except RecursionError:
        raise ScenarioError(f"malformed TOML: {TOO_DEEP}") from None


# ---------------------------------------------------------------------------------------
# Explaining validation errors to people
# ---------------------------------------------------------------------------------------


def _allowed_fields(loc: tuple, root: type[BaseModel] | None = None) -> list[str]:
    """Fields allowed at the model found by following `loc` from `root` (the Scenario)."""
    model: Any = root or Scenario
    for part in loc[:-1]:
        if isinstance(part, int):
            continue
        if isinstance(model, type) and issubclass(model, BaseModel) and part in model.model_fields:
            model = model.model_fields[part].annotation
        else:
            # a discriminated-union tag such as 'pledge': pick that member
            model = _union_member(model, part)
        model = _unwrap(model)
    model = _unwrap(model)
    if isinstance(model, type) and issubclass(model, BaseModel):
        return list(model.model_fields)
    return []


def _unwrap(tp: Any) -> Any:
    """Strip Annotated / Optional / list wrappers down to a model or a union of models."""
    while True:
        origin = typing.get_origin(tp)
        if origin is Annotated:
            tp = typing.get_args(tp)[0]
        elif origin is list:
            tp = typing.get_args(tp)[0]
        elif origin in (Union, types.UnionType):
            members = [a for a in typing.get_args(tp) if a is not type(None)]
            models = [m for m in members if isinstance(_unwrap(m), type)]
            if len(members) == 1:
                tp = members[0]
            else:
                return tp if len(models) != 1 else models[0]
        else:
            return tp


def _union_member(tp: Any, tag: str) -> Any:
    for member in typing.get_args(_unwrap(tp)):
        m = _unwrap(member)
        if isinstance(m, type) and issubclass(m, BaseModel):
            for key in ("kind", "dist"):
                if key in m.model_fields and m.model_fields[key].default == tag:
                    return m
    return tp


#: Tags pydantic puts in an error's location for the members of a plain (undiscriminated)
#: union, e.g. 'constrained-int' or 'list[WardSpec]': they are not field names.
_MEMBER_TAG = re.compile(
    r"(int|float|str|bool|none|constrained-\w+|(strict|lax)-\w+|function-.*|"
    r"(list|dict|union|tuple|set)\[.*\])"
)


def _is_member_tag(part: Any) -> bool:
    return isinstance(part, str) and _MEMBER_TAG.fullmatch(part) is not None


def _where(loc: tuple, root: type[BaseModel] | None = None) -> str:
    """The dotted field path of an error location, without union tags: they repeat what the
    kind/dist field (or the value) already says. Tags are told from fields by following the
    models from `root`, since a tag can share a field's name ('threshold')."""
    out = ""
    model: Any = root or Scenario
    for part in loc:
        if isinstance(part, int):
            out += f"[{part}]"
            continue
        m = _unwrap(model)
        if isinstance(m, type) and issubclass(m, BaseModel) and part in m.model_fields:
            out += ("." if out else "") + part
            model = m.model_fields[part].annotation
        elif _is_member_tag(part):
            continue
        elif (member := _union_member(model, part)) is not model:
            model = member
        else:  # past the models (an unknown field, a dict key): show as written
            out += ("." if out else "") + str(part)
            model = None
    return out or "scenario"


def _wrong_type(e: dict, depth: int) -> bool:
    """The error says the input is not of this union member's type at all."""
    kind = e["type"]
    return len(e["loc"]) == depth and (
        kind.endswith(("_type", "_parsing")) or kind in ("int_from_float", "finite_number")
    )


def _prune_unions(errors: list[dict], start: int = 0) -> list[dict]:
    """A value that fits no member of a plain union gets one error per member; keep only the
    members whose type the value has (a list given for `wards` is judged as a list, not also
    as an int), or, when it has none of their types, one error listing what is allowed."""
    out: list[dict] = []
    groups: dict[tuple, list[tuple[int, dict]]] = {}
    for e in errors:
        loc = e["loc"]
        k = next((j for j in range(start, len(loc)) if _is_member_tag(loc[j])), None)
        if k is None:
            out.append(e)
        else:
            groups.setdefault(loc[:k], []).append((k, e))
    for prefix, items in groups.items():
        members: dict[Any, list[dict]] = {}
        for k, e in items:
            members.setdefault(e["loc"][k], []).append(e)
        fitting = [es for es in members.values()
                   if not all(_wrong_type(e, len(prefix) + 1) for e in es)]
        if fitting:
            out.extend(_prune_unions([e for es in fitting for e in es], len(prefix) + 1))
        else:
            wanted = list(dict.fromkeys(
                e["msg"].removeprefix("Input should be ").split(",")[0]
                for es in members.values() for e in es))
            out.append({"loc": prefix, "type": "union_mismatch", "input": items[0][1].get("input"),
                        "msg": f"Input should be {' or '.join(wanted)}", "order": items[0][1]})
    return out


def plain(value: Any, limit: int = 60) -> str:
    """A value as the user wrote it: numpy scalars as Python numbers, long values cut."""
    if isinstance(value, np.generic):
        value = value.item()
    text = repr(value)
    return text if len(text) <= limit else text[: limit - 1] + "…"


def error_lines(err: ValidationError, root: type[BaseModel] | None = None) -> list[str]:
    """One line per distinct problem: the field, the bad value and what is allowed."""
    raw = err.errors(include_url=False)
    order = {id(e): i for i, e in enumerate(raw)}
    pruned = _prune_unions(raw)
    pruned.sort(key=lambda e: order.get(id(e.get("order", e)), 0))
    lines: list[str] = []
    for e in pruned:
        where = _where(e["loc"], root)
        value = e.get("input")
        if e["type"] == "extra_forbidden":
            allowed = _allowed_fields(e["loc"], root)
            msg = f"{where}: unknown field; allowed: {', '.join(allowed)}"
        elif e["type"] == "union_tag_invalid":
            ctx = e.get("ctx", {})
            msg = (
                f"{where}.{ctx.get('discriminator', 'kind').strip(chr(39))}: "
                f"unknown kind {ctx.get('tag')!r}; allowed: {ctx.get('expected_tags')}"
            )
        elif e["type"] == "union_tag_not_found":
            ctx = e.get("ctx", {})
            msg = f"{where}: missing {ctx.get('discriminator', 'kind')}"
        elif e["type"] == "finite_number":
            msg = f"{where}: {plain(value)} is not allowed; allowed: a finite number"
        else:
            text = e["msg"].removeprefix("Value error, ")
            complete = "got" in text or "allowed:" in text  # our own messages say it all
            shown = "" if isinstance(value, (dict, list)) or complete else f" (got {plain(value)})"
            top = where == "scenario" and ":" in text  # a model-level message names its field
            if text.startswith(":"):  # a field validator's message with no path inside it
                text = text[1:].lstrip()
            if text.startswith((".", "[")):  # ... or with one: '.reach[0]: ...'
                msg = f"{where}{text}"
            else:
                msg = text if top else f"{where}: {text}{shown}"
        if msg not in lines:
            lines.append(msg)
    return lines


def explain(err: ValidationError, root: type[BaseModel] | None = None) -> str:
    """Pydantic's errors for people: the first line is the first problem (field, bad value,
    what is allowed); any further problems follow, indented, a few at most."""
    lines = error_lines(err, root)
    more = f"\n  … and {len(lines) - 8} more" if len(lines) > 8 else ""
    return lines[0] + "".join(f"\n  {line}" for line in lines[1:8]) + more
