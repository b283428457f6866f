"""Decision rules: per-step probabilities of adopting and of lapsing.

Each rule is a pure, element-wise function of a resident's inputs, so the same code runs on
whole arrays (the engine) and on one resident's floats (the per-agent Mesa path): the two
paths cannot drift apart. Synchronous update: inputs describe the state before the step.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from .scenario import BassRule, IndependentCascadeRule, LogisticRule, ThresholdRule

Array = np.ndarray | float


@dataclass
class Inputs:
    """What a rule may look at: traits, the perceived norm, and this step's nudge effects."""

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


def sigmoid(x: Array) -> Array:
    with np.errstate(over="ignore"):
        return 1.0 / (1.0 + np.exp(-x))


def shift(p: Array, push: Array) -> Array:
    """Move probability p by `push` on the log-odds scale; exactly p where push is 0."""
    with np.errstate(divide="ignore", over="ignore"):
        moved = sigmoid(np.log(p) - np.log1p(-p) + push)
    return np.where(push == 0, p, moved)


def _mechanistic_pushes(x: Inputs) -> tuple[Array, Array]:
    """Rules without a utility read attitude and cost nudges with unit weight (assumption)."""
    relief = x.cost * x.cost_relief
    return x.utility + x.attitude_shift + relief, x.lapse - x.attitude_shift - relief


def threshold(rule: ThresholdRule, x: Inputs) -> tuple[Array, Array]:
    """Adopt for certain once the perceived norm reaches the threshold (Watts 2002)."""
    p_adopt = np.where(x.norm >= x.threshold, 1.0, 0.0)
    _, lapse_push = _mechanistic_pushes(x)
    return p_adopt, shift(rule.lapse, lapse_push)


def bass(rule: BassRule, x: Inputs) -> tuple[Array, Array]:
    """p + q x (adopted share of neighbours): the discrete Bass model on a complete graph."""
    push, lapse_push = _mechanistic_pushes(x)
    return shift(rule.p + rule.q * x.norm, push), shift(rule.lapse, lapse_push)


def independent_cascade(rule: IndependentCascadeRule, x: Inputs) -> tuple[Array, Array]:
    """One chance per newly adopted neighbour: 1 - (1 - p)^exposure (Kempe et al. 2003)."""
    push, lapse_push = _mechanistic_pushes(x)
    p_adopt = 1.0 - (1.0 - rule.p) ** x.exposure
    return shift(p_adopt, push), shift(rule.lapse, lapse_push)


def logistic(rule: LogisticRule, x: Inputs) -> tuple[Array, Array]:
    """Random-utility hazards (TPB-style): attitude, norm, habit and cost, plus nudges."""
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


RULES = {
    "threshold": threshold,
    "bass": bass,
    "independent_cascade": independent_cascade,
    "logistic": logistic,
}


def hazards(rule, x: Inputs) -> tuple[Array, Array]:
    """Probabilities of adopting (for non-adopters) and lapsing (for adopters) this step."""
    return RULES[rule.kind](rule, x)


def update_habit(rule, adopted: Array, habit: Array) -> Array:
    """Habit grows toward 1 while adopted and decays otherwise (logistic rule only)."""
    if rule.kind != "logistic":
        return habit
    return np.where(adopted, habit + rule.habit_gain * (1.0 - habit), habit * (1.0 - rule.habit_decay))
