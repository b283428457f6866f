"""One outcome vocabulary, with units and directions, read by every consumer."""

from __future__ import annotations

import dataclasses

import numpy as np
import pytest

import nudgesim as ns
from nudgesim import outcomes
from nudgesim import planning as pl
from nudgesim.experiment import Experiment
from nudgesim.outcomes import OUTCOMES, Outcome
from nudgesim.result import Result
from nudgesim.scenario import ScenarioError
from nudgesim.sensitivity import sensitivity

SMALL = {"name": "small", "seed": 7, "steps": 8, "population": {"size": 200, "wards": 4},
         "initial_adopters": 0.3}


def test_every_summary_key_is_an_outcome_in_the_summarys_order():
    assert tuple(OUTCOMES) == Result.SUMMARY_KEYS


@pytest.mark.parametrize("counterfactual", [False, True])
def test_numeric_outcomes_are_exactly_the_summarys_numbers(counterfactual):
    summary = ns.simulate(ns.Scenario.from_dict(SMALL), counterfactual=counterfactual).summary
    for name, value in summary.items():
        if value is not None:  # None says nothing (no twin, no regions, never reached)
            assert OUTCOMES[name].numeric == isinstance(value, (int, float)), name
    assert all(summary[o.name] is None for o in OUTCOMES.values() if o.regional)
    # the twin's outcomes are None exactly when no twin was run (the £ per extra unit may
    # also be None with one: when the campaign added nothing)
    for name in ("counterfactual_final_adoption", "campaign_extra_adopters",
                 "campaign_extra_impact"):
        assert (summary[name] is not None) == counterfactual, name
    assert counterfactual or all(
        summary[o.name] is None for o in OUTCOMES.values() if o.counterfactual)


def test_directions_say_what_a_campaign_wants():
    assert {o.name for o in OUTCOMES.values() if o.direction == "minimize"} == {
        "total_cost", "cost_per_adopter_gained", "cost_per_impact", "total_lapses",
        "time_to_50pct", "cost_per_extra_adopter", "cost_per_extra_impact"}
    assert OUTCOMES["final_adoption"].sign == 1 and OUTCOMES["total_cost"].sign == -1
    assert OUTCOMES["seed"].sign == 0
    assert OUTCOMES["cost_per_impact"].unit_for("t CO2") == "£ per t CO2"
    with pytest.raises(ValueError, match="direction"):
        Outcome("x", "", "bigger", "")  # type: ignore[arg-type]


def test_unknown_or_text_outcomes_are_refused_with_the_allowed_names():
    with pytest.raises(ScenarioError, match="'lowest_ward' is not a numeric outcome; allowed: "
                                            "seed, residents"):
        outcomes.outcome("lowest_ward")
    with pytest.raises(ScenarioError, match=r"^outcomes: unknown outcome\(s\) \['nope'\]"):
        Experiment(ns.Scenario.from_dict(SMALL), outcomes=["final_adoption", "nope"])


def test_sensitivity_refuses_an_unknown_outcome_before_any_run(tmp_path):
    exp = Experiment(ns.Scenario.from_dict(SMALL), uncertainties={"rule.adopt_norm": {
        "low": 0.5, "high": 2.0}}, design="sobol", samples=4)
    with pytest.raises(ScenarioError, match="outcome: 'final_adopton' is not a numeric"):
        sensitivity(exp, outcome="final_adopton", out=tmp_path / "s", executor="serial")
    assert not (tmp_path / "s").exists()


def test_plan_targets_name_outcomes_and_the_frontier_follows_directions():
    assert {t: pl.TARGETS[t].outcome for t in pl.TARGETS} == {
        "adoption": "final_adopters", "impact": "total_impact",
        "equity": "lowest_ward_adoption"}
    cost, value = np.array([1.0, 2.0, 3.0]), np.array([1.0, 3.0, 2.0])
    assert pl.pareto([cost, value], ["minimize", "maximize"]).tolist() == [True, True, False]
    assert pl.pareto([cost, value], ["maximize", "maximize"]).tolist() == [False, True, True]
    assert pl.pareto([cost, value], ["minimize", "minimize"]).tolist() == [True, False, False]


def test_plan_ranks_by_the_targets_direction(monkeypatch):
    """Were fewer adopters better, the plan would rank the smaller portfolio first: the
    sign comes from the outcome registry, not from planning."""
    never = {"kind": "logistic", "adopt_intercept": -60.0, "lapse_intercept": -60.0}
    sc = ns.Scenario.from_dict(SMALL | {"rule": never, "population": {"size": 400, "wards": 4},
                                        "initial_adopters": 120})
    caddy = {"kind": "default", "label": "caddy", "start": 1, "opt_out": 0.0,
             "cost_per_contact": 1.0, "targeting": {"adopted": False}}
    menu = pl.Menu.from_dict({"items": [{"label": "caddy", "nudge": caddy, "levels": {
        "targeting.wards": [["W01"], ["W01", "W02"]]}}]})
    best = ns.plan(sc, menu, budget=150.0, replicates=2, executor="serial").table.iloc[0]
    assert best["variant"] == "caddy (2 wards)"
    flipped = dataclasses.replace(OUTCOMES["final_adopters"], direction="minimize")
    monkeypatch.setitem(OUTCOMES, "final_adopters", flipped)
    worst = ns.plan(sc, menu, budget=150.0, replicates=2, executor="serial").table.iloc[0]
    assert worst["variant"] == "caddy (1 wards)"
    assert worst["extra_adopters"] < best["extra_adopters"]
