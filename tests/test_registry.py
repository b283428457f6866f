"""A new decision rule, nudge kind and graph kind, each defined in this file alone and
registered in one table, run end to end: TOML-shaped data → Scenario → simulate."""

from __future__ import annotations

from typing import Literal

import numpy as np
import pytest
from pydantic import Field

import nudgesim as ns
from nudgesim import kernels, limits, rules
from nudgesim.engine import Engine, choose_backend
from nudgesim.model import NudgeModel
from nudgesim.network import GraphKind, NetworkBase
from nudgesim.nudges import Nudge, NudgeBase, NudgeKind
from nudgesim.registry import GRAPHS, NUDGES, RULES, Registry, RegistryError
from nudgesim.rng import Streams
from nudgesim.scenario import NUDGE_KINDS, Scenario, ScenarioError
from nudgesim.spec import HalfLife, Probability, Spec
from nudgesim.world import build_world

# -- a toy rule: adopt with a fixed probability, moved by the nudges' pushes -------------


class ConstantRule(Spec):
    """Adopt with probability p each step; lapse with probability `lapse`."""

    kind: Literal["constant"] = "constant"
    p: Probability = Field(0.05, description="weekly adoption probability (assumption)")
    lapse: Probability = Field(0.02, description="weekly lapse probability (assumption)")


def constant(rule: ConstantRule, x: rules.Inputs):
    push = x.utility + x.attitude_shift + x.cost * x.cost_relief
    lapse_push = x.lapse - x.attitude_shift - x.cost * x.cost_relief
    p = np.full_like(np.asarray(x.norm, dtype=np.float64), rule.p)
    return rules.shift(p, push), rules.shift(rule.lapse, lapse_push)


# -- a toy nudge kind: a thank-you card that makes adopters lapse less for a while --------


class ThankYou(NudgeBase):
    """A thank-you card to participating households: a fading push against lapsing."""

    kind: Literal["thank_you"] = "thank_you"
    lapse_reduction: float = Field(0.8, description="log-odds cut of lapsing (assumption)")
    half_life: HalfLife = Field(6.0, description="weeks for the effect to halve (assumption)")


class ThankYouNudge(Nudge):
    spec: ThankYou

    def act(self, t, engine, fx) -> None:
        left = self.lasting(t, self.spec.half_life)
        if left is not None:
            fx.add("lapse", self.contacts, -self.spec.lapse_reduction * left)


# -- a toy graph kind: each ward's residents in a ring ------------------------------------


class WardRings(NetworkBase):
    """Each ward's residents in a ring, in a random order."""

    kind: Literal["ward_rings"] = "ward_rings"


def ward_rings(spec, ward: np.ndarray, rng: np.random.Generator):
    us, vs = [], []
    for w in np.unique(ward):
        members = rng.permutation(np.flatnonzero(ward == w))
        if members.size > 2:
            us.append(members)
            vs.append(np.roll(members, -1))
    empty = np.zeros(0, dtype=np.int64)
    u = np.concatenate(us) if us else empty
    v = np.concatenate(vs) if vs else empty
    return u.astype(np.int64), v.astype(np.int64), True


@pytest.fixture
def toys():
    """Register the three kinds for one test and take them out again afterwards."""
    RULES.register(rules.Rule(ConstantRule, constant))
    NUDGES.register(NudgeKind(ThankYou, ThankYouNudge))
    GRAPHS.register(GraphKind(WardRings, ward_rings, lambda spec, n, sizes: 2 * n))
    yield
    RULES.unregister("constant")
    NUDGES.unregister("thank_you")
    GRAPHS.unregister("ward_rings")


DATA = {
    "name": "toys", "seed": 3, "steps": 12,
    "population": {"size": 400, "wards": 4},
    "network": {"kind": "ward_rings"},
    "rule": {"kind": "constant", "p": 0.04, "lapse": 0.1},
    "nudges": [{"kind": "thank_you", "start": 3, "every": 4,
                "targeting": {"adopted": True}, "cost_per_contact": 0.5}],
}


def test_toy_kinds_run_end_to_end_from_scenario_data(toys):
    sc = Scenario.from_dict(DATA)
    assert isinstance(sc.rule, ConstantRule) and isinstance(sc.network, WardRings)
    assert isinstance(sc.nudges[0], ThankYou) and "thank_you" in NUDGE_KINDS
    res = ns.simulate(sc)
    without = ns.simulate(sc.replace(nudges=[]))
    eng = Engine(sc)
    assert (eng.network.degree == 2).all()  # rings: every resident has two ties
    assert res.summary["total_cost"] > 0
    assert res.summary["total_lapses"] < without.summary["total_lapses"]
    # the TOML round trip keeps the registered kinds
    again = Scenario.from_toml_str(sc.to_toml())
    assert again == sc


def test_a_rule_without_a_compiled_twin_runs_on_numpy(toys, monkeypatch):
    monkeypatch.setattr(kernels, "ENABLED", True)  # NUDGESIM_NUMBA=1 would force kernels
    sc = Scenario.from_dict(DATA)
    chosen = choose_backend(sc, 400)
    assert not chosen.compiled and "no compiled twin" in chosen.reason
    eng = Engine(sc)
    assert not eng.backend.compiled and eng.backend.graph is None
    assert eng.run().summary == ns.simulate(sc).summary


def test_the_per_agent_path_runs_a_toy_rule_as_the_engine_does(toys):
    sc = Scenario.from_dict(DATA | {"steps": 5})
    agents = NudgeModel(sc, vectorised=False)
    for _ in range(5):
        agents.step()
    assert agents.result().timeseries.equals(ns.simulate(sc).timeseries)


def test_registered_kinds_validate_with_precise_errors(toys):
    with pytest.raises(ScenarioError, match=r"rule\.p: .*1\.5"):
        Scenario.from_dict(DATA | {"rule": {"kind": "constant", "p": 1.5}})
    with pytest.raises(ScenarioError, match=r"rule\.kind: unknown kind 'nope'.*constant"):
        Scenario.from_dict(DATA | {"rule": {"kind": "nope"}})
    with pytest.raises(ScenarioError, match=r"nudges\[0\]\.wiggle: unknown field"):
        Scenario.from_dict(DATA | {"nudges": [{"kind": "thank_you", "wiggle": 1}]})


def test_unregistering_removes_the_kind_again(toys):
    RULES.unregister("constant")
    try:
        with pytest.raises(ScenarioError, match="unknown kind 'constant'"):
            Scenario.from_dict(DATA)
    finally:
        RULES.register(rules.Rule(ConstantRule, constant))


def test_a_graph_kind_says_how_many_tie_ends_it_makes(toys):
    sc = Scenario.from_dict(DATA)
    assert limits.expected_tie_ends(sc, 400) == 800
    assert limits.estimate_memory(sc).tie_ends == 800


def test_a_kind_is_registered_once():
    with pytest.raises(RegistryError, match="'logistic' is already registered"):
        RULES.register(rules.Rule(rules.LogisticRule, rules.logistic))


def test_a_spec_needs_a_kind_literal():
    class NoKind(Spec):
        p: float = 0.1

    with pytest.raises(RegistryError, match="NoKind needs a field `kind"):
        Registry("rule").register(rules.Rule(NoKind, constant))


def test_the_shipped_kinds_are_registered_in_the_unions_order():
    assert RULES.names() == ["threshold", "bass", "independent_cascade", "logistic"]
    assert GRAPHS.names() == ["watts_strogatz", "barabasi_albert", "erdos_renyi",
                              "ward_clustered", "complete", "file"]
    assert NUDGES.names() == NUDGE_KINDS[: len(NUDGES)]
    assert all(RULES[k].twin is not None for k in RULES)


# -- world building -----------------------------------------------------------------


def test_an_engine_runs_on_a_world_built_beforehand():
    sc = Scenario.from_toml("experiments/scenarios/small_town.toml")
    world = build_world(sc, Streams(sc.seed))
    assert world.n == world.network.n == sc.population.size and world.ids is None
    assert Engine(sc, world=world).run().summary == ns.simulate(sc).summary


def test_an_engine_takes_a_graph_or_a_world_not_both():
    import networkx as nx

    sc = Scenario.from_dict({"steps": 2})
    g = nx.path_graph(4)
    world = build_world(sc, Streams(sc.seed), g)
    assert world.ids == [0, 1, 2, 3]
    with pytest.raises(ValueError, match="not both"):
        Engine(sc, g, world=world)


def test_a_spec_pydantic_could_not_resolve_where_it_was_defined_registers():
    """Code run by exec (as the docs' examples are) defines a spec whose string annotations
    pydantic cannot resolve from its module: the registry resolves them in the caller's
    names, where `register` is called."""
    code = (
        "from __future__ import annotations\n"
        "from typing import Literal\n"
        "from nudgesim.spec import Probability, Spec\n"
        "class Local(Spec):\n"
        "    kind: Literal['local'] = 'local'\n"
        "    p: Probability = 0.5\n"
        "assert not Local.__pydantic_complete__\n"
        "RULES.register(rules.Rule(Local, constant))\n"
    )
    exec(compile(code, "example", "exec"), {"__name__": "example", "RULES": RULES,
                                            "rules": rules, "constant": constant})
    try:
        assert Scenario.from_dict({"rule": {"kind": "local", "p": 0.25}}).rule.p == 0.25
    finally:
        RULES.unregister("local")
