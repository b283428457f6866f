"""EMA workbench adapter: a scenario as an ema_workbench 3 model that EMA's own
perform_experiments and PRIM run, with every experiment equal to nudgesim's own run."""

from __future__ import annotations

import pickle
import sys
import warnings

import numpy as np
import pandas as pd
import pytest

import nudgesim as ns
from nudgesim.errors import ScenarioError, UsageError
from nudgesim.runs import set_path

with warnings.catch_warnings():  # "ipyparallel not installed" is EMA's, not ours
    warnings.simplefilter("ignore")
    ema_workbench = pytest.importorskip("ema_workbench", minversion="3")

from nudgesim import ema  # noqa: E402

SMALL = {
    "name": "small", "seed": 3, "steps": 10,
    "population": {"size": 300, "wards": 3},
    "network": {"kind": "watts_strogatz", "k": 6, "p": 0.1},
    "initial_adopters": 0.2,
    "rule": {"kind": "logistic", "adopt_intercept": -4.0},
    "nudges": [{"kind": "information", "label": "leaflet", "reach": 0.5,
                "cost_per_contact": 0.35}],
}


@pytest.fixture
def scenario_path(tmp_path):
    path = tmp_path / "small.toml"
    path.write_text(ns.Scenario.from_dict(SMALL).to_toml())
    return path


def test_perform_experiments_runs_nudgesim_and_each_experiment_is_its_own_run(scenario_path):
    m = ema.model(scenario_path,
                  levers={"nudges[leaflet].reach": {"low": 0.1, "high": 0.9}},
                  uncertainties={"rule.adopt_norm": {"low": 2.0, "high": 4.0},
                                 "nudges[leaflet].start": {"low": 1, "high": 5,
                                                           "integer": True},
                                 "seed": [1, 2]},
                  outcomes=["final_adoption", "total_cost", "campaign_extra_adopters"])
    assert [p.name for p in m.levers] == ["nudges_leaflet_reach"]
    assert m.levers["nudges_leaflet_reach"].variable_name == ["nudges[leaflet].reach"]
    assert isinstance(m.uncertainties["nudges_leaflet_start"], ema_workbench.IntegerParameter)
    assert [o.kind for o in m.outcomes] == [1, -1, 1]  # MAXIMIZE, MINIMIZE, MAXIMIZE
    with ema_workbench.SequentialEvaluator(m) as evaluator:
        experiments, outcomes = ema_workbench.perform_experiments(
            m, scenarios=3, policies=2, evaluator=evaluator)
    assert len(experiments) == 6 and all(len(v) == 6 for v in outcomes.values())
    for i in (0, 5):  # nudgesim's own run of the same settings gives the same numbers
        row = experiments.iloc[i]
        data = ns.Scenario.from_dict(SMALL).to_dict()
        set_path(data, "nudges[leaflet].reach", float(row["nudges_leaflet_reach"]))
        set_path(data, "rule.adopt_norm", float(row["rule_adopt_norm"]))
        set_path(data, "nudges[leaflet].start", int(row["nudges_leaflet_start"]))
        set_path(data, "seed", int(row["seed"]))
        s = ns.simulate(ns.Scenario.from_dict(data), counterfactual=True).summary
        assert outcomes["final_adoption"][i] == s["final_adoption"]
        assert outcomes["total_cost"][i] == s["total_cost"]
        assert outcomes["campaign_extra_adopters"][i] == s["campaign_extra_adopters"]


def test_prim_finds_a_box_on_nudgesim_outcomes(scenario_path):
    from ema_workbench.analysis import prim

    m = ema.model(scenario_path, uncertainties={"nudges[leaflet].reach": {"low": 0.0,
                                                                          "high": 1.0}},
                  outcomes=["total_cost"])
    with ema_workbench.SequentialEvaluator(m) as evaluator:
        x, y = ema_workbench.perform_experiments(m, scenarios=20, evaluator=evaluator)
    cheap = y["total_cost"] < np.median(y["total_cost"])  # cost = reach x households x price
    box = prim.Prim(x.drop(columns=["scenario", "policy", "model"]), cheap).find_box()
    # cheap runs are the low-reach ones: the box bounds reach from above, and is pure
    upper = box.box_lims[-1]["nudges_leaflet_reach"].iloc[1]
    assert upper <= np.median(x["nudges_leaflet_reach"]) + 0.1 and box.density == 1.0


def test_choices_map_labels_to_values_and_the_function_pickles(scenario_path):
    m = ema.model(scenario_path, levers={"nudges": {
        "values": [[], [{"kind": "pledge", "label": "pledge"}]], "labels": ["none", "pledge"]}},
        outcomes=["final_adoption"])
    fn = pickle.loads(pickle.dumps(m.function))
    assert [n.kind for n in fn.build({"nudges": "pledge"}).nudges] == ["pledge"]
    assert fn.build({"nudges": "none"}).nudges == []
    assert fn.build({"seed": np.int64(9)}).seed == 9  # numpy scalars from EMA's samplers
    expected = ns.simulate(fn.build({"nudges": "none"})).summary["final_adoption"]
    assert fn(nudges="none") == {"final_adoption": expected}


def test_bad_input_is_a_one_line_user_error(scenario_path):
    with pytest.raises(ScenarioError, match="adopt_nrom"):
        ema.model(scenario_path, uncertainties={"rule.adopt_nrom": {"low": 1, "high": 2}})
    with pytest.raises(ScenarioError, match="reach"):
        ema.model(scenario_path, levers={"nudges[leaflet].reach": {"low": 0.5, "high": 1.5}})
    with pytest.raises(ScenarioError, match="not a numeric outcome"):
        ema.model(scenario_path, outcomes=["happiness"])
    with pytest.raises(UsageError, match="need labels"):
        ema.model(scenario_path, levers={"nudges": [[], [{"kind": "pledge"}]]})
    with pytest.raises(UsageError, match="both a lever and an uncertainty"):
        ema.model(scenario_path, levers={"seed": [1]}, uncertainties={"seed": [2]})


def test_parameter_names_are_python_identifiers():
    assert ema.parameter_name("nudges[peer ambassadors].targeting.count") == (
        "nudges_peer_ambassadors_targeting_count")
    assert ema.parameter_name("nudges.2.reach") == "nudges_2_reach"
    assert all(ema.parameter_name(p).isidentifier() for p in ("seed", "[2]", "2.x", "class"))


def test_without_ema_workbench_the_message_says_how_to_install(scenario_path, monkeypatch):
    monkeypatch.setitem(sys.modules, "ema_workbench", None)  # import raises ImportError
    with pytest.raises(UsageError, match=r"pip install 'nudgesim\[ema\]'"):
        ema.model(scenario_path)


def test_the_experiments_frame_writes_to_parquet(scenario_path, tmp_path):
    m = ema.model(scenario_path, uncertainties={"rule.adopt_norm": {"low": 2.0, "high": 4.0}},
                  outcomes=["final_adoption"])
    with ema_workbench.SequentialEvaluator(m) as evaluator:
        x, y = ema_workbench.perform_experiments(m, scenarios=2, evaluator=evaluator)
    table = x.assign(**y)
    table.to_parquet(tmp_path / "ema.parquet")
    back = pd.read_parquet(tmp_path / "ema.parquet")
    assert back["final_adoption"].tolist() == list(y["final_adoption"])
