"""Decision rules: per-step probabilities of adopting and of lapsing.

Each rule is one `Rule` entry in `RULES` (registry.py): its spec (the fields a scenario
writes under `[rule]`) and its hazard function. A hazard function is a pure,
element-wise function of a resident's `Inputs`, so the same code runs on whole arrays
(the engine) and on one resident's length-1 views (the per-agent Mesa path): the two
paths cannot drift apart. Synchronous update: inputs describe the state before the step.

The shipped rules also have a compiled twin in kernels.py (the fused decide kernel),
which must agree bit for bit; `Rule.twin` is the kernel's code for the rule and
`Rule.pack` its coefficients in the kernel's order. A rule without a twin runs on the
numpy engine (world.choose_backend), with the same results, only slower.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Literal, NamedTuple

import numpy as np
from pydantic import Field, field_validator, model_validator

from .registry import RULES, kind_of
from .spec import TRAIT_RANGES, Distribution, Probability, Spec, check_support

Array = np.ndarray | float

#: Nudge effect channels (nudges.Effects writes them) → the `Inputs` field each feeds.
#: The order is the kernels' channel rows (kernels.CHANNEL_CODES).
CHANNELS: dict[str, str] = {
    "utility": "utility",
    "lapse": "lapse",
    "attitude": "attitude_shift",
    "cost_relief": "cost_relief",
    "norm_salience": "norm_salience",
}


@dataclass
class Inputs:
    """What a rule may look at: traits, the perceived norm, and this step's nudge effects.
    Built by `build_inputs` only."""

    attitude: Array
    habit: Array
    cost: Array
    susceptibility: Array
    threshold: Array
    norm: Array  # perceived descriptive norm: weighted adopted share of neighbours (+ feedback)
    exposure: Array = 0.0  # weighted count of neighbours who adopted last step (cascade rule)
    utility: Array = 0.0  # nudge push on adopting (log-odds)
    lapse: Array = 0.0  # nudge push on lapsing (log-odds)
    attitude_shift: Array = 0.0
    cost_relief: Array = 0.0
    norm_salience: Array = 0.0


def build_inputs(pop: Any, habit: np.ndarray, fx: Any, norm: Array, exposure: Array = 0.0,
                 at: slice | np.ndarray | None = None) -> Inputs:
    """The one place `Inputs` are assembled, for everyone (`at=None`: the engine), a
    slice (`slice(i, i + 1)`: one resident of the per-agent path, as length-1 views) or
    an id array (the residents the kernels leave to numpy, kernels._recheck).

    A slice reads the dense channel arrays, as the engine does, so the per-agent path runs
    the rule through the same ufunc loops (numpy's scalar math can differ in the last
    bit); ids read `fx.at`, which sums the channel's terms at those residents only."""
    if at is None:
        def channel(name: str) -> Array:
            dense = getattr(fx, name)
            return 0.0 if dense is None else dense
        sel: Any = slice(None)
    elif isinstance(at, slice):
        def channel(name: str) -> Array:
            dense = getattr(fx, name)
            return 0.0 if dense is None else dense[at]
        sel = at
    else:
        def channel(name: str) -> Array:
            return fx.at(name, at)
        sel = at
    return Inputs(
        attitude=pop.attitude[sel],
        habit=habit[sel],
        cost=pop.cost[sel],
        susceptibility=pop.susceptibility[sel],
        threshold=pop.threshold[sel],
        norm=norm,
        exposure=exposure,
        **{name: channel(ch) for ch, name in CHANNELS.items()},
    )


# ---------------------------------------------------------------------------------------
# Shared pieces
# ---------------------------------------------------------------------------------------


def sigmoid(x: Array) -> Array:
    """Logistic function. Compiled twin: kernels._sigmoid."""
    with np.errstate(over="ignore"):
        return 1.0 / (1.0 + np.exp(-x))


def shift(p: Array, push: Array) -> Array:
    """Move probability p by `push` on the log-odds scale; exactly p where push is 0.
    Compiled twin: kernels._shift."""
    with np.errstate(divide="ignore", over="ignore"):
        moved = sigmoid(np.log(p) - np.log1p(-p) + push)
    return np.where(push == 0, p, moved)


def pull_norm(norm: np.ndarray, weight: np.ndarray, shown: np.ndarray, injunctive: bool,
              adopted: np.ndarray) -> np.ndarray:
    """One norm message: the perceived norm moves `weight` of the way to the `shown` rate;
    an injunctive (approving) message never pulls an adopter's norm down. Scalar twin:
    `pull_norm_1`; compiled twins: kernels._messages and the message loops of
    kernels._decide_block."""
    pulled = norm + weight * (shown - norm)
    if injunctive:
        pulled = np.where(adopted, np.maximum(pulled, norm), pulled)
    return pulled


def pull_norm_1(norm: float, weight: float, shown: float, injunctive: bool,
                adopted: bool) -> float:
    """`pull_norm` for one resident in plain floats (the per-agent path): + - * and max
    are exact, so it gives the array version's values bit for bit."""
    pulled = norm + weight * (shown - norm)
    if injunctive and adopted:
        pulled = max(pulled, norm)
    return pulled


def _mechanistic_pushes(x: Inputs) -> tuple[Array, Array]:
    """Rules without a utility read attitude and cost nudges with unit weight (assumption).
    Compiled twin: the pushes in kernels._mechanistic."""
    relief = x.cost * x.cost_relief
    return x.utility + x.attitude_shift + relief, x.lapse - x.attitude_shift - relief


# ---------------------------------------------------------------------------------------
# The entry every rule registers
# ---------------------------------------------------------------------------------------


class Habit(NamedTuple):
    """A rule's habit dynamics: each step an adopter's habit grows `gain` of the way to 1
    and anyone else's is multiplied by `keep`; adopters at step 0 start at least at
    `initial`."""

    gain: float
    keep: float
    initial: float


@dataclass(frozen=True)
class Rule:
    """One decision rule: its spec and its behaviour (registered in `RULES`).

    `hazards(spec, x)` returns (p_adopt, p_lapse) from `Inputs` x, element-wise.
    `reads_threshold`: residents' thresholds are sampled (else they are NaN, and no
    n-sized array is kept). `reads_exposure`: `Inputs.exposure` is computed.
    `habit(spec)`: the rule keeps habits (`Habit`), else None. `twin`: the rule's code in
    the compiled decide kernel (None: numpy only), with `pack(spec)` its coefficients
    in the kernel's order."""

    spec: type[Spec]
    hazards: Callable[[Any, Inputs], tuple[Array, Array]]
    reads_threshold: bool = False
    reads_exposure: bool = False
    habit: Callable[[Any], Habit] | None = None
    twin: int | None = None
    pack: Callable[[Any], list[float]] | None = None

    @property
    def kind(self) -> str:
        return kind_of(self.spec)


def hazards(rule: Any, x: Inputs) -> tuple[Array, Array]:
    """Probabilities of adopting (for non-adopters) and lapsing (for adopters) this step."""
    return RULES[rule.kind].hazards(rule, x)


def habit_coefficients(rule: Any) -> tuple[bool, float, float]:
    """(keeps habit, gain, keep): `update_habit`'s coefficients, as the compiled update
    (kernels._apply_block) reads them."""
    make = RULES[rule.kind].habit
    if make is None:
        return False, 0.0, 1.0
    h = make(rule)
    return True, h.gain, h.keep


def update_habit(rule: Any, adopted: np.ndarray, habit: np.ndarray) -> np.ndarray:
    """Habit grows toward 1 while adopted and decays otherwise (rules that keep habit).
    Compiled twin: kernels._next_habit."""
    keeps, gain, keep = habit_coefficients(rule)
    if not keeps:
        return habit
    return np.where(adopted, habit + gain * (1.0 - habit), habit * keep)


def initial_habit(rule: Any, habit: np.ndarray, adopted: np.ndarray) -> np.ndarray:
    """Step 0: residents already adopting start with at least the rule's initial habit
    (in place; rules without habit leave it as sampled)."""
    make = RULES[rule.kind].habit
    if make is not None:
        habit[adopted] = np.maximum(habit[adopted], make(rule).initial)
    return habit


def kernel_params(rule: Any) -> tuple[int, np.ndarray] | None:
    """(code, coefficients) of the rule's compiled twin; None when it has none."""
    entry = RULES[rule.kind]
    if entry.twin is None or entry.pack is None:
        return None
    return entry.twin, np.array(entry.pack(rule), dtype=np.float64)


# ---------------------------------------------------------------------------------------
# The four shipped rules
# ---------------------------------------------------------------------------------------


class RuleBase(Spec):
    """The base of rule specs, as NudgeBase and NetworkBase are of theirs: it adds no
    field, and tells the type checker that a rule has a `kind` (a rule spec deriving from
    `Spec` alone is accepted at run time all the same)."""

    if TYPE_CHECKING:  # each registered kind declares `kind: Literal[...]` (registry.kind_of)
        kind: str


class ThresholdRule(RuleBase):
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


def threshold(rule: ThresholdRule, x: Inputs) -> tuple[Array, Array]:
    """Adopt for certain once the perceived norm reaches the threshold (Watts 2002).
    Compiled twin: kernels._mechanistic, code 1."""
    p_adopt = np.where(x.norm >= x.threshold, 1.0, 0.0)
    _, lapse_push = _mechanistic_pushes(x)
    return p_adopt, shift(rule.lapse, lapse_push)


class BassRule(RuleBase):
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


def bass(rule: BassRule, x: Inputs) -> tuple[Array, Array]:
    """p + q x (adopted share of neighbours): the discrete Bass model on a complete graph.
    Compiled twin: kernels._mechanistic, code 2."""
    push, lapse_push = _mechanistic_pushes(x)
    return shift(rule.p + rule.q * x.norm, push), shift(rule.lapse, lapse_push)


class IndependentCascadeRule(RuleBase):
    """Each newly adopted neighbour gets one chance to convince, with probability p."""

    kind: Literal["independent_cascade"] = "independent_cascade"
    p: Probability = Field(0.1, description="per-tie transmission probability (assumption)")
    lapse: Probability = Field(0.0, description="per-step lapse probability; 0 = progressive")


def independent_cascade(rule: IndependentCascadeRule, x: Inputs) -> tuple[Array, Array]:
    """One chance per newly adopted neighbour: 1 - (1 - p)^exposure (Kempe et al. 2003).
    Compiled twin: kernels._mechanistic, code 3 (it receives 1 - p packed)."""
    push, lapse_push = _mechanistic_pushes(x)
    p_adopt = 1.0 - (1.0 - rule.p) ** x.exposure
    return shift(p_adopt, push), shift(rule.lapse, lapse_push)


class LogisticRule(RuleBase):
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


def logistic(rule: LogisticRule, x: Inputs) -> tuple[Array, Array]:
    """Random-utility hazards (TPB-style): attitude, norm, habit and cost, plus nudges.
    Compiled twin: the `rule == 0` branch of kernels._decide_block (coefficients
    p0..p9 in `_logistic_pack`'s order), then kernels._sigmoid."""
    attitude = x.attitude + x.attitude_shift
    cost = x.cost * (1.0 - x.cost_relief)
    norm = x.susceptibility * (1.0 + x.norm_salience) * x.norm
    u_adopt = (
        rule.adopt_intercept
        + rule.adopt_attitude * attitude
        + rule.adopt_norm * norm
        + rule.adopt_habit * x.habit
        - rule.adopt_cost * cost
        + x.utility
    )
    u_lapse = (
        rule.lapse_intercept
        - rule.lapse_attitude * attitude
        - rule.lapse_norm * norm
        - rule.lapse_habit * x.habit
        + rule.lapse_cost * cost
        + x.lapse
    )
    return sigmoid(u_adopt), sigmoid(u_lapse)


def _logistic_pack(rule: LogisticRule) -> list[float]:
    return [rule.adopt_intercept, rule.adopt_attitude, rule.adopt_norm, rule.adopt_habit,
            rule.adopt_cost, rule.lapse_intercept, rule.lapse_attitude, rule.lapse_norm,
            rule.lapse_habit, rule.lapse_cost]


def _logistic_habit(rule: LogisticRule) -> Habit:
    return Habit(rule.habit_gain, 1.0 - rule.habit_decay, rule.initial_habit)


RULES.register(Rule(ThresholdRule, threshold, reads_threshold=True, twin=1,
                    pack=lambda r: [r.lapse]))
RULES.register(Rule(BassRule, bass, twin=2, pack=lambda r: [r.p, r.q, r.lapse]))
# the kernel reads the base of the power, 1 - p, as independent_cascade computes it
RULES.register(Rule(IndependentCascadeRule, independent_cascade, reads_exposure=True,
                    twin=3, pack=lambda r: [1.0 - r.p, r.lapse]))
RULES.register(Rule(LogisticRule, logistic, habit=_logistic_habit, twin=0,
                    pack=_logistic_pack))
