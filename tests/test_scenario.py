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
        ('network = {kind = "watts_strogatz", k = 3}', "network.k: 3 is odd; allowed: an even number"),
        ("initial_adopters = 1.5", "initial_adopters: a fraction must be in [0, 1], got 1.5"),
        ('rule = {kind = "bass", p = 0.5, q = 0.7}', "rule.q: p + q must be <= 1"),
        ('nudges = [{kind = "reminder", start = 5, end = 3}]', "nudges[0].end: 3 is not after start (5); allowed: > start"),
        ('nudges = [{kind = "community_partnership", wards = ["Nowhere"]}]', "nudges[0].wards: unknown ward(s) ['Nowhere']"),
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


# --------------------------------------------------------------------------- hardening

SCENARIOS = sorted((BOROUGH.parent).glob("*.toml"))


@pytest.mark.parametrize("path", SCENARIOS, ids=lambda p: p.name)
def test_shipped_scenarios_round_trip_exactly(path):
    sc = ns.Scenario.from_toml(path)
    assert ns.Scenario.from_toml_str(sc.to_toml()).to_toml() == sc.to_toml()


def test_normal_without_bounds_is_unbounded_and_round_trips():
    sc = ns.Scenario.from_dict({"population": {"size": 5, "attitude": {"dist": "normal",
                                                                        "low": -1.0}}})
    att = sc.population.attitude
    assert att.low == -1.0 and att.high is None and att.support() == (-1.0, float("inf"))
    assert sc.to_dict()["population"]["attitude"] == {"dist": "normal", "mean": 0.0, "sd": 1.0,
                                                     "low": -1.0}
    assert ns.Scenario.from_toml_str(sc.to_toml()).to_dict() == sc.to_dict()
    # clipping at a missing bound is no clipping: same draws as the old +-inf defaults
    import numpy as np
    a = ns.scenario.Normal(mean=0.0, sd=1.0).sample(np.random.default_rng(1), 1000)
    assert (a == np.random.default_rng(1).normal(0.0, 1.0, 1000)).all()


@pytest.mark.parametrize("value", ["nan", "inf", "-inf"])
@pytest.mark.parametrize("field", [
    "[rule]\nkind = \"logistic\"\nadopt_intercept = {}",
    '[[nudges]]\nkind = "pledge"\nboost = {}',
    '[[nudges]]\nkind = "reminder"\ncost_per_contact = {}',
    '[[nudges]]\nkind = "reminder"\ntargeting = {{attitude_below = {}}}',
    "[population]\nsize = 5\nattitude = {}",
    '[population]\nsize = 5\nattitude = {{dist = "uniform", low = {}, high = 1.0}}',
    '[population]\nsize = 5\nattitude = {{dist = "normal", high = {}}}',
    "[impact]\nper_adopter_step = {}",
])
def test_every_float_must_be_finite(field, value):
    with pytest.raises(ns.ScenarioError) as err:
        ns.Scenario.from_toml_str(field.format(value))
    first = str(err.value).splitlines()[0]
    assert f"{value} is not allowed; allowed: a finite number" in first


@pytest.mark.parametrize("where", ["population", "rule"])
@pytest.mark.parametrize("dist, ok", [
    ({"dist": "uniform", "low": -1.0, "high": 2.0}, False),
    ({"dist": "uniform", "low": 0.0, "high": 1.0}, True),
    ({"dist": "normal", "mean": 0.3, "sd": 0.1}, False),
    ({"dist": "normal", "mean": 0.3, "sd": 0.1, "low": 0.0, "high": 1.0}, True),
    ({"dist": "normal", "mean": 2.0, "sd": 0.0, "high": 1.0}, True),  # clipped to 1
    ({"dist": "beta", "low": 0.5, "high": 1.5}, False),
    ({"dist": "fixed", "value": -0.1}, False),
    ({"dist": "fixed", "value": 1.0}, True),
])
def test_threshold_has_one_range_wherever_it_is_written(where, dist, ok):
    data = ({"population": {"size": 5, "threshold": dist}} if where == "population" else
            {"population": {"size": 5}, "rule": {"kind": "threshold", "threshold": dist}})
    if ok:
        ns.Scenario.from_dict(data)
    else:
        with pytest.raises(ns.ScenarioError, match=rf"^{where}\.threshold: .*allowed: values in \[0, 1\]"):
            ns.Scenario.from_dict(data)


@pytest.mark.parametrize("trait, dist", [
    ("habit", {"dist": "uniform", "low": 0.5, "high": 1.1}),
    ("cost", {"dist": "beta", "low": -0.1}),
    ("susceptibility", {"dist": "normal", "mean": 1.0, "sd": 0.2}),
])
def test_trait_ranges_apply_to_every_distribution(trait, dist):
    with pytest.raises(ns.ScenarioError, match=rf"^population\.{trait}: "):
        ns.Scenario.from_dict({"population": {"size": 5, trait: dist}})


@pytest.mark.parametrize("text, first", [
    ("steps = 9223372036854775807", "steps: Input should be less than or equal to 100000"),
    ('name = "x\\u0000y"', "name: control character '\\x00' is not allowed"),
    ('step_unit = "wk\\u001b[31m"', "step_unit: control character '\\x1b'"),
    ("seed = 9223372036854775808", "seed: Input should be less than or equal to"),
    ("description = " + "[" * 5000 + "]" * 5000, "malformed TOML: nesting too deep"),
    ('[population]\nwards = [{name = "A", size = -1}]', "population.wards[0].size: Input should"),
    ('[population]\nwards = "abc"', "population.wards: abc: file not found"),
    ("initial_adopters = [1.5]", "initial_adopters[0]: Input should be a valid integer or a valid string"),
    ('[[nudges]]\nkind = "reminder"\nstart = 5\nend = 3', "nudges[0].end: 3 is not after start (5)"),
])
def test_messages_are_one_line_naming_the_field(text, first):
    with pytest.raises(ns.ScenarioError) as err:
        ns.Scenario.from_toml_str(text)
    assert str(err.value) == str(err.value).splitlines()[0]
    assert str(err.value).startswith(first)
    assert "constrained-" not in str(err.value)


def test_description_may_hold_newlines_and_tabs():
    assert ns.Scenario.from_dict({"description": "a\n\tb"}).description == "a\n\tb"


def test_numpy_values_are_printed_as_python_numbers():
    import numpy as np
    with pytest.raises(ns.ScenarioError) as err:
        ns.Scenario.from_dict({"nudges": [{"kind": "pledge", "uptake": np.float64(1.5)}]})
    assert "(got 1.5)" in str(err.value) and "np.float64" not in str(err.value)


def test_a_shorter_horizon_leaves_out_the_nudges_that_start_after_it():
    from nudgesim.scenario import ScenarioWarning

    sc = ns.Scenario.from_toml(BOROUGH)
    with pytest.warns(ScenarioWarning, match=r"steps: 10 ends before 'community group' \(starts at 13\)"):
        short = sc.replace(steps=10)
    assert [n.name for n in short.nudges] == [n.name for n in sc.nudges if n.start <= 10]
    assert short.steps == 10 and len(short.nudges) < len(sc.nudges)
    # nudges given with the change are the user's: one after the horizon is still an error
    with pytest.raises(ns.ScenarioError, match=r"nudges\[0\].start"):
        sc.replace(steps=10, nudges=[{"kind": "reminder", "start": 12}])


def test_ward_sizes_are_a_list_only_when_every_ward_has_one():
    def sizes(wards):
        return ns.Scenario.from_dict({"population": {"wards": wards}}).population.ward_sizes()

    assert sizes(3) is None  # a count: sizes are split from population.size
    assert sizes([{"name": "A"}, {"name": "B"}]) is None
    assert sizes([{"name": "A", "size": 4}, {"name": "B", "size": 6}]) == [4, 6]
    assert sizes([]) == []  # an empty list sums to 0, which the size check reads
    with pytest.raises(ns.ScenarioError, match="give a size for every ward or for none"):
        sizes([{"name": "A", "size": 4}, {"name": "B"}])
