"""Scenario validation: round-trips, and bad input explained by field, value and what is allowed."""

from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

import nudgesim as ns
from nudgesim.scenario import NUDGE_KINDS

BOROUGH = Path(__file__).parents[1] / "experiments" / "scenarios" / "borough.toml"


def test_borough_loads_and_round_trips():
    sc = ns.Scenario.from_toml(BOROUGH)
    assert sc.population.size == 20000 and len(sc.population.ward_names()) == 24
    again = ns.Scenario.from_toml_str(sc.to_toml())
    assert again.to_dict() == sc.to_dict()
    assert again.to_toml() == sc.to_toml()


def test_every_nudge_kind_round_trips():
    nudges = []
    for kind in NUDGE_KINDS:
        extra = {"wards": ["W01"]} if kind == "community_partnership" else {}
        nudges.append({"kind": kind, "start": 2, "every": 3, **extra})
    sc = ns.Scenario.from_dict({"population": {"size": 50, "wards": 2}, "nudges": nudges})
    assert [n.kind for n in sc.nudges] == NUDGE_KINDS
    assert ns.Scenario.from_toml_str(sc.to_toml()).to_dict() == sc.to_dict()


@pytest.mark.parametrize(
    "text, expected",
    [
        ("steps = [", "malformed TOML"),
        ('nudges = [{kind = "hug"}]', "nudges[0].kind: unknown kind 'hug'; allowed: 'norm_feedback'"),
        ('nudges = [{kind = "pledge", uptake = 1.5}]', "nudges[0].uptake: Input should be less than or equal to 1 (got 1.5)"),
        ("population = {size = -3}", "population.size: Input should be greater than or equal to 1 (got -3)"),
        ('nudges = [{kind = "reminder", start = 60}]', "nudges[0].start: 60 is after the last step (52); allowed: 1..52"),
        ("colour = 1", "colour: unknown field; allowed: name, description, seed, steps"),
        ('nudges = [{kind = "pledge", upteke = 0.5}]', "nudges[0].upteke: unknown field; allowed: label, start"),
        ('network = {kind = "watts_strogatz", k = 3}', "k must be even"),
        ("initial_adopters = 1.5", "initial_adopters: a fraction must be in [0, 1], got 1.5"),
        ('rule = {kind = "bass", p = 0.5, q = 0.7}', "p + q must be <= 1"),
        ('nudges = [{kind = "reminder", start = 5, end = 3}]', "end (3) must be after start (5)"),
        ('nudges = [{kind = "community_partnership", wards = ["Nowhere"]}]', "unknown ward(s) ['Nowhere']"),
        ('population = {size = 10, attitude = {dist = "normal", sd = -1}}', "population.attitude.sd"),
    ],
)
def test_bad_input_is_explained(text, expected):
    with pytest.raises(ns.ScenarioError) as err:
        ns.Scenario.from_toml_str(text)
    assert expected in str(err.value)


def test_missing_file_is_a_scenario_error(tmp_path):
    with pytest.raises(ns.ScenarioError, match="not found"):
        ns.Scenario.from_toml(tmp_path / "nope.toml")


def test_schedule_helpers():
    sc = ns.Scenario.from_dict({"steps": 20, "nudges": [
        {"kind": "reminder", "start": 3, "every": 5},
        {"kind": "reminder", "start": 3, "duration": 4, "every": 2},
        {"kind": "information", "start": 7},
    ]})
    a, b, c = sc.nudges
    assert a.contact_steps(20) == [3, 8, 13, 18] and a.stop(20) == 21
    assert b.contact_steps(20) == [3, 5] and b.stop(20) == 7
    assert c.contact_steps(20) == [7]


def test_no_decay_survives_toml_and_replace():
    sc = ns.Scenario.from_toml_str('[[nudges]]\nkind = "reminder"\nhalf_life = "none"')
    assert sc.nudges[0].half_life is None
    assert 'half_life = "none"' in sc.to_toml()
    assert ns.Scenario.from_toml_str(sc.to_toml()).nudges[0].half_life is None
    assert sc.replace(seed=3).nudges[0].half_life is None
    assert ns.Scenario.from_dict({"nudges": [{"kind": "pledge"}]}).nudges[0].half_life == 8.0


def test_number_means_fixed_distribution():
    sc = ns.Scenario.from_dict({"population": {"size": 5, "threshold": 0.3}})
    assert sc.population.threshold.dist == "fixed" and sc.population.threshold.value == 0.3


@settings(max_examples=40, deadline=None)
@given(
    seed=st.integers(0, 2**32),
    steps=st.integers(1, 200),
    reach=st.floats(0, 1),
    weight=st.floats(0, 1),
)
def test_round_trip_property(seed, steps, reach, weight):
    sc = ns.Scenario.from_dict({
        "seed": seed, "steps": steps,
        "nudges": [{"kind": "norm_feedback", "reach": reach, "weight": weight}],
    })
    assert ns.Scenario.from_toml_str(sc.to_toml()).to_dict() == sc.to_dict()
