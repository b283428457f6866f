"""Mesa view of the engine: `NudgeModel` (a ``mesa.Model``) and `Resident` agents.

The `Engine` (engine.py) owns the state as numpy arrays; a Resident is a *view*
that reads those arrays at its index (``resident.adopted`` is ``engine.adopted[i]``), so
there is one source of truth and nothing is copied per step. Residents live on a
``mesa.discrete_space.Network`` built with ``layout=None`` (Mesa's default spring layout
takes minutes on 10,000 nodes; the browser app computes and caches its own layout).

``NudgeModel(scenario, vectorised=False)`` replaces the engine's whole-population decision
by a per-agent one in plain Python: each Resident sums its own CSR row, calls the shared
rule function and draws its own counter-based uniform. It is the readable specification of
the model and the baseline of the benchmark; tests/test_model.py checks with hypothesis
that both paths give bit-identical time series for every rule and every nudge kind.

This module imports Mesa; ``import nudgesim`` and ``ns.simulate`` never do.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

import mesa
import networkx as nx
import numpy as np
from mesa.discrete_space import FixedAgent
from mesa.discrete_space import Network as MesaNetwork

from . import rules
from .engine import Engine
from .errors import UsageError
from .nudges import Effects
from .registry import RULES
from .result import Result
from .runs import set_path
from .scenario import Scenario

STATES = ("never", "adopter", "lapsed", "ambassador")
"""A resident's state as shown in the app: never adopted, adopting now, adopted once but
lapsed since, or serving as an ambassador this step (ambassadors are also adopters)."""


# ---------------------------------------------------------------------------------------
# Model reporters: plain functions of the model, as in Mesa's examples
# ---------------------------------------------------------------------------------------


def adoption_rate(model: NudgeModel) -> float:
    return model.engine.adoption_rate()


def adopters(model: NudgeModel) -> int:
    return int(model.engine.log["adopters"][-1])


def new_adopters(model: NudgeModel) -> int:
    return int(model.engine.log["new_adopters"][-1])


def lapsed(model: NudgeModel) -> int:
    return int(model.engine.log["lapsed"][-1])


def ambassadors(model: NudgeModel) -> int:
    return int(model.engine.log["ambassadors"][-1])


def cumulative_cost(model: NudgeModel) -> float:
    """£ spent so far (same running sum as ``Result.timeseries['cost']``)."""
    return float(np.cumsum(model.engine.log["cost_step"])[-1])


def cumulative_impact(model: NudgeModel) -> float:
    """Impact so far in the scenario's unit (same as ``Result.timeseries['impact']``)."""
    return float(np.cumsum(model.engine.log["impact_step"])[-1])


def seed(model: NudgeModel) -> int:
    """The run's seed: with it (and the fields) the run is repeated bit for bit."""
    return model.seed


MODEL_REPORTERS: dict[str, Callable[[NudgeModel], Any]] = {
    "seed": seed,
    "adoption_rate": adoption_rate,
    "adopters": adopters,
    "new_adopters": new_adopters,
    "lapsed": lapsed,
    "ambassadors": ambassadors,
    "cost": cumulative_cost,
    "impact": cumulative_impact,
}


def _ward_reporter(w: int) -> Callable[[NudgeModel], float]:
    def ward_rate(model: NudgeModel) -> float:
        return float(model.engine.ward_rates()[w])

    return ward_rate


# ---------------------------------------------------------------------------------------
# Seeds and scenario fields for mesa.batch_run
# ---------------------------------------------------------------------------------------


class _ScenarioSeed:
    """Type of `SCENARIO_SEED`: `rng` left out (not None, which Mesa reads as "fresh")."""

    def __repr__(self) -> str:
        return "SCENARIO_SEED"


SCENARIO_SEED = _ScenarioSeed()
"""Default of ``NudgeModel(rng=...)``: run the scenario's own seed."""


def fresh_seed() -> int:
    """A seed from fresh OS entropy (``numpy.random.SeedSequence()``), at most `MAX_SEED`
    (one bit dropped, as in `runs.replicate_seed`) so it fits the seed field and TOML."""
    state = np.random.SeedSequence().generate_state(1, np.uint64)[0]
    return int(state >> np.uint64(1))


def _seed_from(rng: Any, explicit: int | None) -> int:
    """The seed a model runs with, given Mesa's `rng` and a ``seed`` field if one was set."""
    if rng is None:
        return fresh_seed() if explicit is None else explicit
    if isinstance(rng, bool) or not isinstance(rng, (int, np.integer)):
        raise TypeError(f"rng must be an int seed or None, got {rng!r}")
    if explicit is not None and explicit != int(rng):
        raise UsageError(f"seed: the field says {explicit} and rng says {int(rng)}; give one")
    return int(rng)


def with_fields(scenario: Scenario, changes: Mapping[str, Any]) -> Scenario:
    """A validated copy of `scenario` with fields set by path (``rule.adopt_norm``,
    ``nudges[leaflet].reach``), the grammar sweeps use. Missing tables are made, as in a
    sweep (a field may sit at its default); a misspelt name or a bad value fails the
    scenario's validation, a ScenarioError naming it."""
    data = scenario.to_dict()
    for path, value in changes.items():
        if not isinstance(path, str):
            raise UsageError(f"scenario field {path!r}: a path must be a string such as "
                             "'rule.adopt_norm'")
        set_path(data, path, value, what="scenario field")
    return Scenario.from_dict(data, scenario.base_dir)


# ---------------------------------------------------------------------------------------
# The agent
# ---------------------------------------------------------------------------------------


class Resident(FixedAgent):
    """One household, placed on its node of the social network.

    Every attribute is read from the engine's arrays at ``index``; setting state goes
    through the engine too (``step``/``advance`` in the per-agent path), never a copy.
    """

    model: NudgeModel

    def __init__(self, model: NudgeModel, index: int, cell: Any) -> None:
        super().__init__(model)
        self.index = index
        self.cell = cell
        self._adopt = False  # decision staged by step(), applied by advance()
        self._lapse = False
        # what I saw and weighed in the last per-agent step (NaN before the first one)
        self.norm = float("nan")
        self.p_adopt = float("nan")
        self.p_lapse = float("nan")

    # -- views of the engine's state -----------------------------------------------------
    @property
    def engine(self) -> Engine:
        return self.model.engine

    @property
    def adopted(self) -> bool:
        return bool(self.engine.adopted[self.index])

    @property
    def ever_adopted(self) -> bool:
        return bool(self.engine.ever_adopted[self.index])

    @property
    def lapsed(self) -> bool:
        """Adopted at some point, not any more."""
        return self.ever_adopted and not self.adopted

    @property
    def ambassador(self) -> bool:
        return bool(self.model.ambassador_mask()[self.index])

    @property
    def state(self) -> str:
        """One of `STATES`."""
        if self.ambassador:
            return "ambassador"
        if self.adopted:
            return "adopter"
        return "lapsed" if self.ever_adopted else "never"

    @property
    def habit(self) -> float:
        return float(self.engine.habit[self.index])

    @property
    def attitude(self) -> float:
        return float(self.engine.population.attitude[self.index])

    @property
    def cost(self) -> float:
        return float(self.engine.population.cost[self.index])

    @property
    def susceptibility(self) -> float:
        return float(self.engine.population.susceptibility[self.index])

    @property
    def threshold(self) -> float:
        return float(self.engine.population.threshold[self.index])

    @property
    def ward(self) -> str:
        pop = self.engine.population
        return pop.ward_names[pop.ward[self.index]]

    @property
    def node_id(self) -> Any:
        """The resident's id in the user's graph or CSV (its index when there is none)."""
        ids = self.engine.population.ids
        return self.index if ids is None else ids[self.index]

    def __repr__(self) -> str:
        return f"Resident({self.index}, ward={self.ward!r}, state={self.state!r})"

    # -- the per-agent reference path ----------------------------------------------------
    def _neighbour_sum(self, x: Callable[[int], float], tie_boost: np.ndarray | None) -> float:
        """Weighted sum of x over my ties, in-ward ties boosted: Engine.neighbour_sum for
        one row. scipy's CSR product adds ``w * x[j]`` left to right from 0.0 in column
        order; the boosted in-ward sum is added afterwards — the same float operations."""
        cols, weights, same_ward = self.model._row(self.index)
        total = 0.0
        for j, w in zip(cols, weights, strict=True):
            total += w * x(j)
        if tie_boost is not None:
            inner = 0.0
            for j, w, same in zip(cols, weights, same_ward, strict=True):
                if same:
                    inner += w * x(j)
            total += float(tie_boost[self.index]) * inner
        return total

    def perceived_norm(self, fx: Effects) -> float:
        """Engine.perceived_norm for me: weighted adopted share of my neighbours, pulled
        toward the norm messages shown to me."""
        adopted = self.engine.adopted
        infl, boost = fx.influence, fx.tie_boost

        def is_adopter(j: int) -> float:
            return 1.0 if adopted[j] else 0.0

        if infl is None:
            num = self._neighbour_sum(is_adopter, boost)
            den = self._neighbour_sum(lambda j: 1.0, boost)
        else:
            num = self._neighbour_sum(lambda j: float(infl[j]) * is_adopter(j), boost)
            den = self._neighbour_sum(lambda j: float(infl[j]), boost)
        norm = num / den if den > 0 else 0.0
        mine = bool(adopted[self.index])
        for weight, shown, injunctive in fx.norm_messages:
            norm = rules.pull_norm_1(norm, float(weight[self.index]),
                                     float(shown[self.index]), injunctive, mine)
        return norm

    def exposure(self, fx: Effects) -> float:
        """Weighted count of my neighbours who adopted last step (cascade rule)."""
        new, infl = self.engine.newly_adopted, fx.influence
        if infl is None:
            return self._neighbour_sum(lambda j: 1.0 if new[j] else 0.0, fx.tie_boost)
        return self._neighbour_sum(
            lambda j: (1.0 if new[j] else 0.0) * float(infl[j]), fx.tie_boost
        )

    def inputs(self, fx: Effects) -> rules.Inputs:
        """Everything the rule looks at, for me alone.

        Values are length-1 array views (``arr[i:i+1]``), not Python floats: numpy's scalar
        math can differ from its array loops in the last bit (``0.9 ** x`` does on numpy 2.5),
        so the shared rule must run through the same ufunc loops as the engine.
        """
        eng, i = self.engine, self.index
        exposure: np.ndarray | float = 0.0
        if RULES[eng.rule.kind].reads_exposure:
            exposure = np.array([self.exposure(fx)])
        return rules.build_inputs(eng.population, eng.habit, fx,
                                  np.array([self.perceived_norm(fx)]), exposure,
                                  at=slice(i, i + 1))

    def step(self) -> None:
        """Decide (do not act yet): Engine.decide for me, with my own counter-based draw."""
        if self.model._pending is None:
            raise RuntimeError("a Resident decides inside NudgeModel's per-agent step only")
        t, fx = self.model._pending
        eng, i = self.engine, self.index
        x = self.inputs(fx)
        p_adopt, p_lapse = rules.hazards(eng.rule, x)
        self.norm = float(np.asarray(x.norm).flat[0])
        self.p_adopt = float(np.asarray(p_adopt).flat[0])
        self.p_lapse = float(np.asarray(p_lapse).flat[0])
        u = eng.streams.uniform_scalar("decide", t, i)
        was = self.adopted
        self._adopt = not was and u < self.p_adopt
        if fx.direct is not None and fx.direct[i] and not was:
            self._adopt = True
        self._lapse = was and u < self.p_lapse
        if fx.locked is not None and fx.locked[i]:
            self._lapse = False

    def advance(self) -> None:
        """Apply the staged decision to this step's masks (synchronous update)."""
        self.model._adopt_mask[self.index] = self._adopt
        self.model._lapse_mask[self.index] = self._lapse


# ---------------------------------------------------------------------------------------
# The model
# ---------------------------------------------------------------------------------------


class NudgeModel(mesa.Model):
    """A Mesa model built from a `Scenario`.

    ``model.engine`` holds the state; ``model.step()`` advances it one step (the vectorised
    engine by default, the per-agent path with ``vectorised=False``); ``model.datacollector``
    records adoption rate, counts, cumulative cost and impact and one ``ward:<name>``
    column per ward; ``model.result()`` gives the same `Result` as ``ns.simulate``.

    The nudgesim scenario is ``model.nudge_scenario``: Mesa 3.5 reserves ``model.scenario``
    for its own ``mesa.experimental.scenarios.Scenario``, which SolaraViz reads.
    """

    def __init__(
        self,
        scenario: Scenario | str | Path,
        *,
        vectorised: bool = True,
        graph: nx.Graph | None = None,
        rng: int | None | _ScenarioSeed = SCENARIO_SEED,
        agent_reporters: Mapping[str, str | Callable] | None = None,
        params: Mapping[str, Any] | None = None,
        **fields: Any,
    ) -> None:
        """Seeding follows Mesa: an int `rng` is the seed; ``rng=None`` (what
        ``mesa.batch_run`` passes for every replicate) draws a fresh seed from OS entropy;
        leaving `rng` out runs the scenario's own seed. The seed used is ``model.seed`` and
        the ``seed`` reporter column, so every run can be repeated. `rng` must be an int:
        the engine derives every random stream from one integer seed.

        `params` and keyword `fields` set scenario fields by path, in the grammar of
        sweeps (``runs.set_path``): ``NudgeModel(sc, **{"rule.adopt_norm": 3.5})`` or
        ``params={"nudges[leaflet].reach": 0.5}`` — so ``batch_run`` can vary them. A
        ``seed`` field counts as an explicit seed (it wins over ``rng=None``).
        """
        if isinstance(scenario, (str, Path)):
            scenario = Scenario.from_toml(scenario)
        if not isinstance(scenario, Scenario):
            raise TypeError(
                f"NudgeModel needs a nudgesim Scenario or a TOML path, got {type(scenario)!r}"
            )
        changes = dict(params or {})
        for path, value in fields.items():
            if path in changes and changes[path] != value:
                raise UsageError(
                    f"scenario field {path!r}: given as {changes[path]!r} in params and as "
                    f"{value!r} as a keyword; give it once"
                )
            changes[path] = value
        if changes:
            scenario = with_fields(scenario, changes)
        if rng is not SCENARIO_SEED:
            seed = _seed_from(rng, explicit=scenario.seed if "seed" in changes else None)
            if seed != scenario.seed:
                scenario = scenario.replace(seed=seed)
        super().__init__(rng=scenario.seed)
        self.seed = scenario.seed
        """The seed this run used (drawn from OS entropy when ``rng=None``)."""
        self.fields = changes
        """The scenario fields set by keyword or `params` (path -> value)."""
        self.nudge_scenario = scenario
        self.vectorised = vectorised
        self.engine = Engine(scenario, graph)
        n = self.engine.n

        graph_nx = self.engine.network.to_networkx()
        self.grid = MesaNetwork(graph_nx, capacity=1, random=self.random, layout=None)
        self.residents: list[Resident] = [Resident(self, i, self.grid[i]) for i in range(n)]

        self._rows: list[tuple[list[int], list[float], list[bool]]] | None = None
        self._pending: tuple[int, Effects] | None = None
        self._adopt_mask = np.zeros(n, dtype=bool)
        self._lapse_mask = np.zeros(n, dtype=bool)
        self._ambassador_cache: tuple[int, np.ndarray] | None = None

        reporters: dict[str, Callable] = dict(MODEL_REPORTERS)
        for w, name in enumerate(self.engine.population.ward_names):
            reporters[f"ward:{name}"] = _ward_reporter(w)
        self.datacollector = mesa.DataCollector(
            model_reporters=reporters, agent_reporters=dict(agent_reporters or {})
        )
        self.running = self.engine.t < self.engine.steps
        self.datacollector.collect(self)

    # -- Mesa's step ---------------------------------------------------------------------
    def step(self) -> None:
        """Advance the engine one step and collect data."""
        if self.vectorised:
            self.engine.step()
        else:
            self._step_per_agent()
        self.running = self.engine.t < self.engine.steps
        self.datacollector.collect(self)

    def _step_per_agent(self) -> None:
        """The council acts on the population; each Resident decides; the engine records."""
        eng = self.engine
        t, fx, logs = eng.begin_step()
        self._pending = (t, fx)
        self._adopt_mask = np.zeros(eng.n, dtype=bool)
        self._lapse_mask = np.zeros(eng.n, dtype=bool)
        residents = self.agents_by_type[Resident]
        residents.do("step")  # decisions depend only on the state before the step,
        residents.do("advance")  # so the order of residents does not matter
        self._pending = None
        eng.finish_step(t, fx, logs, self._adopt_mask, self._lapse_mask)

    def _row(self, i: int) -> tuple[list[int], list[float], list[bool]]:
        """Resident i's CSR row (neighbours in column order, weights, same-ward flags),
        converted to Python lists once per model: the graph never changes."""
        if self._rows is None:
            a = self.engine.adjacency
            ward = self.engine.population.ward
            ptr, cols, data = a.indptr.tolist(), a.indices, a.data
            same = (ward[np.repeat(np.arange(self.engine.n), np.diff(a.indptr))] == ward[cols])
            cols_l, data_l, same_l = cols.tolist(), data.tolist(), same.tolist()
            self._rows = [
                (cols_l[ptr[k] : ptr[k + 1]], data_l[ptr[k] : ptr[k + 1]],
                 same_l[ptr[k] : ptr[k + 1]])
                for k in range(self.engine.n)
            ]
        return self._rows[i]

    # -- views for reporters and the app ---------------------------------------------------
    @property
    def t(self) -> int:
        """Steps completed (the engine's clock)."""
        return self.engine.t

    def ambassador_mask(self) -> np.ndarray:
        """Residents serving as ambassadors after the last step (cached per step)."""
        if self._ambassador_cache is None or self._ambassador_cache[0] != self.engine.t:
            self._ambassador_cache = (self.engine.t, self.engine.ambassadors())
        return self._ambassador_cache[1]

    def state_codes(self) -> np.ndarray:
        """Index into `STATES` for every resident, vectorised (for drawing)."""
        eng = self.engine
        code = np.where(eng.adopted, 1, np.where(eng.ever_adopted, 2, 0))
        code[self.ambassador_mask()] = 3
        return code

    def nudge_windows(self) -> list[dict[str, Any]]:
        """Name, kind, active window and contact steps of each nudge (as in Result)."""
        steps = self.engine.steps
        return [
            {"name": nd.name, "kind": nd.spec.kind, "start": nd.start,
             "stop": min(nd.stop, steps + 1), "contacts": sorted(nd.contact_at)}
            for nd in self.engine.nudges
        ]

    def result(self) -> Result:
        """The run so far as a `Result` (tables, summary, save)."""
        return self.engine.result()
