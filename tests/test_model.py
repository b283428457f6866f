"""The Mesa view: agents read the engine, the DataCollector agrees with the Result, and the
per-agent reference path is bit-identical to whatever ``Engine.step`` does (hypothesis over
small random graphs, every rule and every nudge kind)."""

from __future__ import annotations

import subprocess
import sys

import mesa
import networkx as nx
import numpy as np
import pandas as pd
import pytest
from hypothesis import HealthCheck, assume, given, settings
from hypothesis import strategies as st

import nudgesim as ns
from nudgesim import rules
from nudgesim.engine import Engine
from nudgesim.errors import ScenarioError, UsageError
from nudgesim.model import STATES, NudgeModel, Resident, fresh_seed
from nudgesim.nudges import Effects, Stamps
from nudgesim.runs import set_path
from nudgesim.scenario import MAX_SEED

SMALL = {
    "name": "small",
    "seed": 3,
    "steps": 12,
    "population": {"size": 300, "wards": 4},
    "network": {"kind": "ward_clustered", "mean_degree_in": 6.0, "mean_degree_out": 1.0},
    "initial_adopters": 0.2,
    "rule": {"kind": "logistic", "adopt_intercept": -3.0},
    "nudges": [
        {"kind": "information", "start": 1, "reach": 0.8, "cost_per_contact": 0.3},
        {"kind": "norm_feedback", "start": 2, "every": 3, "injunctive": True,
         "cost_per_contact": 0.5},
        {"kind": "ambassadors", "start": 3, "duration": 5, "cost_per_contact": 100.0,
         "targeting": {"strategy": "degree", "count": 10}},
        {"kind": "incentive", "start": 4, "end": 8, "cost_per_adopter": 1.0,
         "targeting": {"share": 0.3}},
    ],
}


def small(**changes) -> ns.Scenario:
    return ns.Scenario.from_dict(SMALL | changes)


def run(model: NudgeModel) -> NudgeModel:
    while model.running:
        model.step()
    return model


# --------------------------------------------------------------------------- the Mesa shape


def test_import_nudgesim_and_simulate_never_load_mesa_or_solara():
    code = (
        "import sys, nudgesim as ns\n"
        "sc = ns.Scenario.from_dict({'steps': 3, 'population': {'size': 50}})\n"
        "ns.simulate(sc)\n"
        "bad = [m for m in ('mesa', 'solara') if m in sys.modules]\n"
        "assert not bad, bad\n"
        "assert 'NudgeModel' in ns.__all__ and 'Resident' in ns.__all__\n"
        "ns.NudgeModel  # the lazy attribute loads Mesa only now\n"
        "assert 'mesa' in sys.modules\n"
    )
    subprocess.run([sys.executable, "-c", code], check=True)


def test_lazy_attributes_are_the_model_classes():
    assert ns.NudgeModel is NudgeModel and ns.Resident is Resident
    with pytest.raises(AttributeError):
        ns.NoSuchThing  # noqa: B018


def test_model_is_a_mesa_model_with_residents_on_a_topological_network():
    m = NudgeModel(small())
    assert isinstance(m, mesa.Model)
    assert isinstance(m.grid, mesa.discrete_space.Network)
    assert len(m.agents) == m.engine.n == 300
    assert all(isinstance(a, mesa.discrete_space.FixedAgent) for a in m.agents)
    a = m.engine.adjacency
    for r in m.residents[:20]:
        assert r.cell.coordinate == r.index and r in r.cell.agents
        assert r.cell._position is None  # layout=None: no spring layout was computed
        neighbours = sorted(c.coordinate for c in r.cell.neighborhood)
        assert neighbours == a.indices[a.indptr[r.index] : a.indptr[r.index + 1]].tolist()


def test_residents_are_views_of_the_engine_arrays():
    m = NudgeModel(small())
    r = m.residents[7]
    pop = m.engine.population
    assert r.attitude == pop.attitude[7] and r.cost == pop.cost[7]
    assert r.ward == pop.ward_names[pop.ward[7]]
    m.engine.adopted[7] = not m.engine.adopted[7]  # write to the engine, read from the agent
    assert r.adopted == bool(m.engine.adopted[7])
    m.engine.adopted[7] = not m.engine.adopted[7]
    for _ in range(4):
        m.step()
        assert [x.adopted for x in m.residents] == m.engine.adopted.tolist()
        assert [x.habit for x in m.residents] == m.engine.habit.tolist()


def test_states_cover_adopter_lapsed_never_and_ambassador():
    m = run(NudgeModel(small(steps=6)))
    codes = m.state_codes()
    assert [STATES[c] for c in codes] == [r.state for r in m.residents]
    assert sum(r.ambassador for r in m.residents) == m.engine.log["ambassadors"][-1] == 10
    lapsed = [r for r in m.residents if r.state == "lapsed"]
    assert all(r.ever_adopted and not r.adopted for r in lapsed)


def test_vectorised_model_equals_simulate_and_datacollector_agrees():
    sc = small()
    m = run(NudgeModel(sc))
    res = ns.simulate(sc)
    pd.testing.assert_frame_equal(m.result().timeseries, res.timeseries, check_exact=True)
    df = m.datacollector.get_model_vars_dataframe()
    ts = res.timeseries
    assert len(df) == len(ts) == sc.steps + 1
    for col in ("adoption_rate", "adopters", "new_adopters", "lapsed", "ambassadors",
                "cost", "impact"):
        assert df[col].tolist() == ts[col].tolist(), col
    wide = res.by_ward.pivot(index="step", columns="ward", values="adoption_rate")
    for ward in wide.columns:
        assert df[f"ward:{ward}"].tolist() == wide[ward].tolist()
    assert not m.running
    with pytest.raises(RuntimeError):
        m.step()


def test_agent_reporters_are_optional():
    m = NudgeModel(small(steps=4), agent_reporters={"state": "state", "adopted": "adopted"})
    run(m)
    agents = m.datacollector.get_agent_vars_dataframe()
    assert len(agents) == 5 * 300
    last = agents.xs(4, level="Step")
    assert last["adopted"].sum() == m.engine.adopted.sum()
    assert NudgeModel(small(steps=4)).datacollector.agent_reporters == {}


def test_rng_is_the_seed_and_overrides_the_scenario():
    sc = small(steps=5)
    m = run(NudgeModel(sc, rng=11))
    assert m.nudge_scenario.seed == 11 and m._seed == 11
    expected = ns.simulate(sc.replace(seed=11)).timeseries
    pd.testing.assert_frame_equal(m.result().timeseries, expected, check_exact=True)
    assert m.random.random() == NudgeModel(sc, rng=11).random.random()
    with pytest.raises(TypeError, match="rng must be an int"):
        NudgeModel(sc, rng=np.random.default_rng(1))


def test_leaving_rng_out_runs_the_scenario_seed_and_records_it():
    sc = small(steps=5)
    m = run(NudgeModel(sc))
    assert m.seed == sc.seed == 3 and m.nudge_scenario is sc and m.fields == {}
    assert m.datacollector.get_model_vars_dataframe()["seed"].tolist() == [3] * 6


def test_rng_none_draws_a_fresh_recorded_seed_that_repeats_the_run():
    sc = small(steps=5)
    a, b = run(NudgeModel(sc, rng=None)), run(NudgeModel(sc, rng=None))
    assert a.seed != b.seed  # two draws of 63 bits of OS entropy: equal with p = 2**-63
    for m in (a, b):
        assert 0 <= m.seed <= MAX_SEED and m.nudge_scenario.seed == m.seed
        assert set(m.datacollector.get_model_vars_dataframe()["seed"]) == {m.seed}
        again = run(NudgeModel(sc, rng=m.seed))
        pd.testing.assert_frame_equal(again.result().timeseries, m.result().timeseries,
                                      check_exact=True)


def test_fresh_seed_comes_from_a_numpy_seed_sequence(monkeypatch):
    real, fixed = np.random.SeedSequence, np.random.SeedSequence(12345)
    # no argument = "entropy from the OS": that call is the one replaced
    monkeypatch.setattr(np.random, "SeedSequence", lambda *a, **k: real(*a, **k) if a or k
                        else fixed)
    expected = int(fixed.generate_state(1, np.uint64)[0] >> np.uint64(1))
    assert fresh_seed() == expected and NudgeModel(small(steps=4), rng=None).seed == expected


def test_scenario_fields_are_keyword_parameters_in_the_sweep_path_grammar():
    sc = small(steps=6)
    data = sc.to_dict()
    set_path(data, "rule.adopt_norm", 3.5)
    set_path(data, "nudges[information].reach", 0.5)
    expected = ns.simulate(ns.Scenario.from_dict(data)).timeseries
    by_kw = run(NudgeModel(sc, **{"rule.adopt_norm": 3.5, "nudges[information].reach": 0.5}))
    by_params = run(NudgeModel(sc, params={"rule.adopt_norm": 3.5},
                               **{"nudges.0.reach": 0.5}))
    for m in (by_kw, by_params):
        assert m.nudge_scenario.rule.adopt_norm == 3.5 and m.seed == 3
        assert m.nudge_scenario.nudges[0].reach == 0.5
        pd.testing.assert_frame_equal(m.result().timeseries, expected, check_exact=True)
    assert by_kw.fields == {"rule.adopt_norm": 3.5, "nudges[information].reach": 0.5}


def test_bad_scenario_fields_are_one_line_user_errors():
    sc = small(steps=4)
    with pytest.raises(ScenarioError, match="adopt_nrom"):
        NudgeModel(sc, **{"rule.adopt_nrom": 1.0})
    with pytest.raises(ScenarioError, match="reach"):
        NudgeModel(sc, **{"nudges[information].reach": 2.0})
    with pytest.raises(ScenarioError, match="no item has"):
        NudgeModel(sc, **{"nudges[leaflet].reach": 0.5})
    with pytest.raises(UsageError, match="given as 1.0 in params and as 2.0"):
        NudgeModel(sc, params={"rule.adopt_norm": 1.0}, **{"rule.adopt_norm": 2.0})


def test_a_seed_field_is_an_explicit_seed():
    sc = small(steps=4)
    assert NudgeModel(sc, rng=None, seed=21).seed == 21  # wins over a fresh draw
    assert NudgeModel(sc, rng=21, seed=21).seed == 21
    with pytest.raises(UsageError, match="seed: the field says 21 and rng says 22"):
        NudgeModel(sc, rng=22, seed=21)


def test_batch_run_replicates_differ_repeat_from_their_seed_and_write_parquet(tmp_path):
    from mesa.batchrunner import batch_run

    path = tmp_path / "s.toml"
    path.write_text(small(steps=6).to_toml())
    rows = batch_run(NudgeModel, {"scenario": str(path), "rule.adopt_norm": [1.0, 4.0]},
                     rng=[None] * 3, data_collection_period=-1, display_progress=False)
    df = pd.DataFrame(rows)
    assert len(df) == 6 and df["seed"].nunique() == 6  # every replicate its own seed
    assert sorted(df["rule.adopt_norm"].unique()) == [1.0, 4.0]
    for _, row in df.iterrows():  # the recorded seed and field repeat each run exactly
        m = run(NudgeModel(path, rng=int(row["seed"]),
                           **{"rule.adopt_norm": row["rule.adopt_norm"]}))
        last = m.datacollector.get_model_vars_dataframe().iloc[-1]
        assert last["adoption_rate"] == row["adoption_rate"] and last["cost"] == row["cost"]
    df.to_parquet(tmp_path / "batch.parquet")
    back = pd.read_parquet(tmp_path / "batch.parquet")
    assert back["seed"].dtype == np.int64
    pd.testing.assert_frame_equal(back.drop(columns="rng"), df.drop(columns="rng"),
                                  check_dtype=False)
    seeded = pd.DataFrame(batch_run(NudgeModel, {"scenario": str(path)}, rng=[5, 5],
                                    display_progress=False))
    assert seeded["seed"].tolist() == [5, 5]
    assert seeded["adoption_rate"].nunique() == 1  # an int rng is the seed: identical


def test_a_resident_decides_only_inside_the_per_agent_step():
    m = NudgeModel(small(steps=4), vectorised=False)
    with pytest.raises(RuntimeError, match="per-agent step"):
        m.residents[0].step()
    m.step()  # the model's own step gives residents the step's effects
    assert m.engine.t == 1


def test_model_accepts_a_toml_path(tmp_path):
    path = tmp_path / "s.toml"
    path.write_text(small(steps=4).to_toml())
    assert NudgeModel(path).engine.n == 300
    with pytest.raises(TypeError):
        NudgeModel(mesa.experimental.scenarios.Scenario())


# --------------------------------------------------------------------------- per-agent path


def test_perceived_norm_by_hand_on_a_weighted_star():
    # hub 0 with leaves 1 (w=1, adopted), 2 (w=3, not), 3 (w=4, adopted): share (1+4)/8
    g = nx.Graph()
    g.add_weighted_edges_from([(0, 1, 1.0), (0, 2, 3.0), (0, 3, 4.0)])
    sc = ns.Scenario.from_dict({"steps": 1, "population": {"wards": 1},
                                "initial_adopters": [1, 3]})
    m = NudgeModel(sc, graph=g, vectorised=False)
    fx = Effects(4, ward=m.engine.population.ward)
    assert m.residents[0].perceived_norm(fx) == 5.0 / 8.0
    assert m.residents[2].perceived_norm(fx) == 0.0  # its one neighbour has not adopted
    fx.scale_influence(np.array([3]), 2.0)  # leaf 3 counts twice: (1 + 8) / (1 + 3 + 8)
    assert m.residents[0].perceived_norm(fx) == 9.0 / 12.0
    everyone = Stamps(m.engine.stamp_book)
    everyone.mark(np.arange(4), 0)
    fx.message(everyone, 0.5, np.full((2, 1), 0.25), injunctive=False)  # pulled halfway
    assert m.residents[0].perceived_norm(fx) == 0.75 + 0.5 * (0.25 - 0.75)
    assert m.residents[0].perceived_norm(fx) == m.engine.perceived_norm(fx)[0]


def _assert_same_hazards(sc: ns.Scenario, graph: nx.Graph) -> None:
    """Step an engine through its public parts next to the per-agent model and compare what
    each resident saw (norm) and weighed (hazards) bit for bit. A last-bit drift rarely flips
    a decision on small graphs, so this catches what the time series alone would miss."""
    engine = Engine(sc, graph)
    model = NudgeModel(sc, graph=graph, vectorised=False)
    n = engine.n
    while model.running:
        t, fx, logs = engine.begin_step()
        norm = engine.perceived_norm(fx)
        p_adopt, p_lapse = (np.broadcast_to(p, n) for p in rules.hazards(engine.rule,
                                                                          engine.inputs(fx)))
        engine.finish_step(t, fx, logs, *engine.decide(t, fx))
        model.step()
        assert [r.norm for r in model.residents] == norm.tolist()
        assert [r.p_adopt for r in model.residents] == p_adopt.tolist()
        assert [r.p_lapse for r in model.residents] == p_lapse.tolist()
    assert model.engine.log == engine.log


def _assert_same_run(engine: Engine, model: NudgeModel) -> None:
    e = model.engine
    assert e.log == engine.log  # every column, every step, exact floats
    assert np.array_equal(np.vstack(e.ward_log), np.vstack(engine.ward_log))
    assert np.array_equal(e.adopted, engine.adopted)
    assert np.array_equal(e.ever_adopted, engine.ever_adopted)
    assert np.array_equal(e.habit, engine.habit)  # bit-identical floats


RULES = [
    {"kind": "logistic", "adopt_intercept": -2.0},
    {"kind": "threshold", "threshold": {"dist": "uniform", "low": 0.1, "high": 0.6},
     "lapse": 0.05},
    {"kind": "bass", "p": 0.05, "q": 0.5, "lapse": 0.05},
    {"kind": "independent_cascade", "p": 0.4, "lapse": 0.05},
]

ALL_NUDGES = [
    {"kind": "information", "start": 1, "reach": 0.7},
    {"kind": "reminder", "start": 1, "every": 2},
    {"kind": "norm_feedback", "start": 2, "every": 2, "scope": "ward", "injunctive": True},
    {"kind": "norm_feedback", "start": 3, "scope": "borough", "half_life": None},
    {"kind": "pledge", "start": 2, "uptake": 0.5, "targeting": {"adopted": False}},
    {"kind": "incentive", "start": 2, "end": 5, "crowding_out": 0.5, "cost_per_adopter": 2.0},
    {"kind": "canvassing", "start": 3, "adopt_prob": 0.3, "targeting": {"share": 0.5}},
    {"kind": "ambassadors", "start": 2, "duration": 4, "influence": 4.0,
     "targeting": {"strategy": "degree", "count": 3}},
    {"kind": "community_partnership", "start": 1, "duration": 5, "wards": ["W01"],
     "tie_strength": 2.0},
    {"kind": "default", "start": 4, "opt_out": 0.5, "targeting": {"wards": ["W02"]}},
]


@pytest.mark.parametrize("rule", RULES, ids=[r["kind"] for r in RULES])
def test_per_agent_path_equals_the_engine_with_every_nudge_kind(rule):
    g = nx.gnp_random_graph(60, 0.08, seed=5)
    weights = np.random.default_rng(5).uniform(0.2, 3.0, g.number_of_edges())
    for (u, v), w in zip(g.edges, weights, strict=True):
        g[u][v]["weight"] = float(w)
    sc = ns.Scenario.from_dict({"seed": 9, "steps": 8, "population": {"wards": 3},
                                "rule": rule, "initial_adopters": 0.15, "nudges": ALL_NUDGES})
    engine = Engine(sc, g)
    engine.run()
    model = run(NudgeModel(sc, graph=g, vectorised=False))
    assert sum(engine.log["new_adopters"]) > 0 and sum(engine.log["contacts"]) > 0
    _assert_same_run(engine, model)
    _assert_same_hazards(sc, g)


# -- hypothesis: random small graphs, rules and nudge portfolios ---------------------------

probability = st.floats(0.0, 1.0)
half_life = st.one_of(st.none(), st.floats(0.5, 10.0))


def targeting():
    return st.fixed_dictionaries(
        {},
        optional={
            "strategy": st.sampled_from(
                ["random", "degree", "betweenness", "kcore", "community", "ward"]),
            "count": st.integers(0, 8),
            "adopted": st.booleans(),
            "wards": st.just(["W01"]),
        },
    )


def nudge(kind: str, steps: int):
    common = {
        "kind": st.just(kind),
        "start": st.integers(1, steps),
        "reach": probability,
        "targeting": targeting(),
        "cost_per_contact": st.floats(0.0, 10.0),
    }
    optional = {"every": st.integers(1, 3), "duration": st.integers(1, steps)}
    payload = {
        "norm_feedback": {"scope": st.sampled_from(["ward", "borough"]), "weight": probability,
                          "injunctive": st.booleans(), "half_life": half_life},
        "default": {"opt_out": probability, "lapse_reduction": st.floats(0, 4)},
        "pledge": {"uptake": probability, "boost": st.floats(-2, 3),
                   "lapse_reduction": st.floats(0, 3), "half_life": half_life},
        "reminder": {"boost": st.floats(-1, 3), "half_life": half_life},
        "incentive": {"cost_reduction": probability, "cost_per_adopter": st.floats(0, 5),
                      "crowding_out": st.floats(0, 2), "crowding_half_life": half_life},
        "canvassing": {"attitude_boost": st.floats(-1, 2), "adopt_prob": probability,
                       "half_life": half_life},
        "ambassadors": {"uptake": probability, "influence": st.floats(0, 5)},
        "community_partnership": {"wards": st.just(["W01"]), "tie_strength": st.floats(0, 3),
                                  "norm_salience": st.floats(0, 2)},
        "information": {"attitude_boost": st.floats(-1, 2), "half_life": half_life},
    }[kind]
    return st.fixed_dictionaries(common | payload, optional=optional)


rule_strategy = st.one_of(
    st.fixed_dictionaries({"kind": st.just("logistic"), "adopt_intercept": st.floats(-6, 1),
                           "adopt_norm": st.floats(0, 6), "lapse_intercept": st.floats(-5, 0)}),
    st.fixed_dictionaries({"kind": st.just("threshold"), "lapse": st.floats(0, 0.3)},
                          optional={"threshold": st.floats(0, 1)}),
    st.fixed_dictionaries({"kind": st.just("bass"), "p": st.floats(0, 0.3),
                           "q": st.floats(0, 0.7), "lapse": st.floats(0, 0.3)}),
    st.fixed_dictionaries({"kind": st.just("independent_cascade"), "p": probability,
                           "lapse": st.floats(0, 0.3)}),
)


@st.composite
def cases(draw):
    n = draw(st.integers(2, 25))
    graph = nx.gnp_random_graph(n, draw(st.floats(0.0, 0.6)), seed=draw(st.integers(0, 999)))
    if draw(st.booleans()):
        for u, v in graph.edges:
            graph[u][v]["weight"] = draw(st.floats(0.05, 5.0))
    steps = draw(st.integers(1, 6))
    kinds = draw(st.lists(st.sampled_from(
        ["norm_feedback", "default", "pledge", "reminder", "incentive", "canvassing",
         "ambassadors", "community_partnership", "information"]), max_size=4))
    data = {
        "seed": draw(st.integers(0, 2**32)),
        "steps": steps,
        "population": {"wards": draw(st.integers(1, min(3, n)))},
        "rule": draw(rule_strategy),
        "initial_adopters": draw(st.floats(0.0, 0.6)),
        "nudges": [draw(nudge(k, steps)) for k in kinds],
    }
    return data, graph


@settings(max_examples=200, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(cases())
def test_per_agent_path_is_bit_identical_to_engine_step(case):
    data, graph = case
    try:
        sc = ns.Scenario.from_dict(data)
    except ns.ScenarioError:  # e.g. bass p + q > 1
        assume(False)
        return
    engine = Engine(sc, graph)
    engine.run()  # whatever Engine.step does (numpy today, maybe numba tomorrow)
    _assert_same_run(engine, run(NudgeModel(sc, graph=graph, vectorised=False)))
    _assert_same_hazards(sc, graph)
