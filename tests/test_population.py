"""Residents: a given graph gives the number of residents, and wards keep their shares."""

import warnings

import networkx as nx
import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st

import nudgesim as ns
from nudgesim.population import scaled_sizes
from nudgesim.scenario import ScenarioError, ScenarioWarning

BOROUGH = "experiments/scenarios/borough.toml"


@pytest.fixture
def graph():
    return nx.connected_watts_strogatz_graph(2000, 8, 0.1, seed=1)


def test_the_borough_runs_on_any_graph_which_gives_the_size(graph, monkeypatch):
    monkeypatch.chdir(ns.__path__[0] + "/..")
    sc = ns.Scenario.from_toml(BOROUGH)
    with pytest.warns(ScenarioWarning, match="population.size: 20,000 residents in the scenario"):
        res = ns.simulate(sc, graph=graph)
    assert res.summary["residents"] == 2000
    first = res.by_ward[res.by_ward["step"] == 0]
    assert first["residents"].sum() == 2000 and len(first) == 24  # every ward kept
    # ward baselines still set who adopts at step 0: 24 wards of 83-84 residents
    assert 0.2 < res.summary["initial_adoption"] < 0.4


def test_a_scenario_without_population_takes_the_graph_silently(graph):
    sc = ns.Scenario.from_dict({"steps": 3})
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        assert ns.simulate(sc, graph=graph).summary["residents"] == 2000


def test_ward_sizes_written_are_scaled_to_the_graph_with_a_warning(graph):
    sc = ns.Scenario.from_dict(
        {"steps": 2, "population": {"wards": [{"name": "A", "size": 300}, {"name": "B", "size": 700}]}}
    )
    with pytest.warns(ScenarioWarning, match="population.wards: 1,000 residents"):
        res = ns.simulate(sc, graph=graph)
    first = res.by_ward[res.by_ward["step"] == 0]
    assert first["residents"].tolist() == [600, 1400]


def test_a_residents_csv_and_a_size_that_disagree_are_refused(tmp_path):
    (tmp_path / "r.csv").write_text("attitude\n0.1\n0.2\n0.3\n")
    sc = ns.Scenario.from_dict(
        {"population": {"size": 5, "csv": "r.csv"}}, base_dir=tmp_path
    )
    with pytest.raises(ScenarioError, match="population.size: 5 but the residents csv has 3 rows"):
        ns.simulate(sc)


def test_scaling_is_exact_by_hand():
    assert scaled_sizes(np.array([300, 700]), 2000).tolist() == [600, 1400]
    assert scaled_sizes(np.array([1, 1, 1]), 4).tolist() == [2, 1, 1]  # ties: first wins
    assert scaled_sizes(np.array([5, 5]), 10).tolist() == [5, 5]
    with pytest.raises(ScenarioError, match="3 wards for only 2 residents"):
        scaled_sizes(np.array([1, 1, 1]), 2)


@given(st.lists(st.integers(1, 10_000), min_size=1, max_size=40), st.integers(1, 100_000))
def test_scaled_sizes_add_up_keep_every_ward_and_follow_the_shares(sizes, n):
    sizes = np.array(sizes)
    if n < sizes.size:
        return
    out = scaled_sizes(sizes, n)
    assert out.sum() == n and (out >= 1).all()
    if sizes.sum() == n:  # sizes that already fit are kept as written
        assert (out == sizes).all()
        return
    # each ward is within one resident (plus the one-each floor) of its exact share
    exact = (n - sizes.size) * sizes / sizes.sum() + 1
    assert np.all(np.abs(out - exact) < 1 + 1e-9)


def test_an_empty_ward_list_without_a_size_is_refused_in_one_line():
    sc = ns.Scenario.from_dict({"steps": 2, "population": {"wards": []}})
    with pytest.raises(ScenarioError, match="population.size: required"):
        ns.simulate(sc)


def test_a_residents_csv_warns_only_about_traits_the_scenario_wrote(tmp_path):
    """A scenario rebuilt from to_dict() (sweeps, results folders) has every field 'set';
    only a trait written with a value other than the default is worth a warning."""
    (tmp_path / "r.csv").write_text("attitude\n" + "\n".join(["0.1", "-0.2"] * 50) + "\n")
    sc = ns.Scenario.from_dict({"steps": 2, "population": {"csv": str(tmp_path / "r.csv")}})
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        ns.simulate(sc)
        ns.simulate(ns.Scenario.from_dict(sc.to_dict()))
    written = sc.to_dict()
    written["population"]["attitude"] = {"dist": "normal", "mean": 0.5, "sd": 1.0}
    with pytest.warns(ScenarioWarning, match="population.attitude: the population.csv"):
        ns.simulate(ns.Scenario.from_dict(written))
