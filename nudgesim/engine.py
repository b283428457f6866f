"""The vectorised engine: one step = norms → nudge effects → hazards → draws → update → record.

All state lives here as numpy arrays indexed by resident; the Mesa model only reads it.
Synchronous update: every decision in step t looks at the state after step t-1.
"""

from __future__ import annotations

import sys
from dataclasses import dataclass, field
from functools import cached_property
from typing import TYPE_CHECKING, Any

import numpy as np

from . import kernels, rules
from .network import MAX_ROW_TIES, SMALL_TIE_ENDS, Network, RowProduct
from .nudges import AmbassadorsNudge, Effects, Nudge, StampBook, StepLog, make_nudge
from .population import Population
from .registry import NUDGES, RULES
from .result import Result
from .rng import Streams
from .scenario import Scenario, ScenarioError
from .world import World, build_world

if TYPE_CHECKING:  # networkx and scipy.sparse are imported where a path needs them
    import networkx as nx
    import scipy.sparse as sp


def initial_adopters(scenario: Scenario, pop: Population, streams: Streams) -> np.ndarray:
    """Who has adopted at step 0: an exact count or share chosen at random, explicit ids,
    or each ward's baseline share."""
    n = pop.n
    adopted = np.zeros(n, dtype=bool)
    spec = scenario.initial_adopters
    rng = streams.generator("initial_adopters")
    if isinstance(spec, list):
        index = {rid: i for i, rid in enumerate(pop.ids)} if pop.ids is not None else None
        for rid in spec:
            if index is not None:
                i = index.get(rid, index.get(str(rid)))
            else:
                i = rid if isinstance(rid, int) and 0 <= rid < n else None
            if i is None:
                raise ScenarioError(
                    f"initial_adopters: unknown resident id {rid!r}; allowed: "
                    + ("the graph's node ids" if index is not None else f"0..{n - 1}")
                )
            adopted[i] = True
    elif isinstance(spec, bool):
        raise ScenarioError("initial_adopters: true/false is not allowed")
    elif isinstance(spec, int):
        if spec > n:
            raise ScenarioError(f"initial_adopters: {spec} is more than the {n} residents")
        adopted[rng.choice(n, spec, replace=False)] = True
    elif isinstance(spec, float):
        adopted[rng.choice(n, round(spec * n), replace=False)] = True
    elif pop.ward_baseline is not None and not np.isnan(pop.ward_baseline).all():
        # each ward's members in ascending order (a stable sort by ward), found once: a
        # scan per ward would cost residents x wards (75 s at 2.5e7 households)
        order = np.argsort(pop.ward, kind="stable")
        ends = np.cumsum(np.bincount(pop.ward, minlength=len(pop.ward_baseline)))
        for w, share in enumerate(pop.ward_baseline):
            if np.isnan(share):
                continue
            members = order[(ends[w - 1] if w else 0):ends[w]]
            adopted[rng.choice(members, round(share * len(members)), replace=False)] = True
    return adopted


@dataclass
class EngineBackend:
    """Which engine a run uses, and the compiled path's state: the one object the kernels
    read (`Engine.backend`). `compiled` and `reason` are kernels.Backend's; on the numpy
    path the rest stays empty."""

    compiled: bool
    reason: str
    #: the network's CSR arrays as the kernels want them (kernels.Graph)
    graph: kernels.Graph | None = None
    #: integer tie counts kept up to date step by step, where they are exact (kernels.Counts)
    counts: kernels.Counts | None = None
    #: (code, coefficients) of the rule's compiled twin (rules.kernel_params)
    params: tuple[int, np.ndarray] | None = None
    #: what steps reuse: Effects' n-sized arrays (nudges.Effects.buffer), the decide
    #: step's pooled masks (a list, kernels._spare), the ties path's cached sums
    effects: dict[str, Any] = field(default_factory=dict)


def _run_on_kernels(data: dict) -> None:
    """A small scenario's first kernels.WARM_STEPS steps on whatever backend it chooses
    (kernels.warm_up forces the kernels while it runs these)."""
    engine = Engine(Scenario.from_dict(data))
    for _ in range(min(engine.steps, kernels.WARM_STEPS)):
        engine.step()


def warm_up(steps: int = kernels.WARM_STEPS) -> float:
    """Compile and cache the kernels a run of `steps` steps uses (what `.ci/setup` runs
    after installing, for short runs); returns the seconds it took."""
    return kernels.warm_up(_run_on_kernels, steps)


def choose_backend(scenario: Scenario, n: int) -> kernels.Backend:
    """kernels.backend_for, except that a rule without a compiled twin (a rule registered
    without one, e.g. while it is being written) always runs on numpy."""
    if rules.kernel_params(scenario.rule) is None:
        return kernels.Backend(False, f"rule {scenario.rule.kind!r} has no compiled twin")
    return kernels.backend_for(n, scenario.steps)


class Engine:
    """Owns the state of one run and advances it step by step.

    `adopted` (and `newly_adopted`) are new arrays each step: keep a reference (or a
    copy) to look at an earlier step's. The compiled step reuses the buffers of masks
    nobody references any more, so a raw pointer or a weak reference is not enough."""

    def __init__(self, scenario: Scenario, graph: nx.Graph | None = None, *,
                 world: World | None = None) -> None:
        """`world`: residents and ties already built (world.build_world); else they are
        built here from the scenario and `graph`, from the scenario's own streams."""
        self.scenario = scenario
        self.steps = scenario.steps
        self.rule = scenario.rule
        self.streams = Streams(scenario.seed)
        if world is None:
            world = build_world(scenario, self.streams, graph)
        elif graph is not None:
            raise ValueError("give a graph or a built world, not both")
        self.world = world
        self.population = pop = world.population
        self.network = world.network
        chosen = choose_backend(scenario, pop.n)
        #: the compiled hot path (kernels.py) or numpy, chosen by the run's size, the rule
        #: and numba's cache (choose_backend); both give bit-identical results
        self.backend = EngineBackend(chosen.compiled, chosen.reason)
        if chosen.compiled:
            kernels.prepare(_run_on_kernels, self.steps)
            g = self.backend.graph = kernels.Graph(self.network, pop.ward)
            self.backend.params = rules.kernel_params(self.rule)
            # tie counts are integers: not the cascade's exposure, nor weighted ties
            if g.unit and not RULES[self.rule.kind].reads_exposure:
                self.backend.counts = kernels.Counts(g, inward=any(
                    NUDGES[s.kind].nudge.boosts_ward_ties for s in scenario.nudges))
        self.near_ties = 0  # decisions the kernel left to the exact numpy rule (diagnostic)

        # state after step t
        self.t = 0
        self.adopted = initial_adopters(scenario, pop, self.streams)
        self.ever_adopted = self.adopted.copy()
        self.newly_adopted = self.adopted.copy()  # "new" at step 0 for the cascade rule
        self.habit = rules.initial_habit(self.rule, pop.habit.copy(), self.adopted)
        self.score_cache: dict[Any, np.ndarray] = {}
        self.stamp_book = StampBook(pop.n, self.steps)  # every nudge's contact and pledge steps
        self._rates_cache: tuple[int, np.ndarray] | None = None
        self._ward_sizes = np.maximum(pop.ward_sizes(), 1)
        self.nudges: list[Nudge] = [make_nudge(s, i, self) for i, s in enumerate(scenario.nudges)]
        self.log: dict[str, list] = {k: [] for k in Result.LOG_COLUMNS}
        self.ward_log: list[np.ndarray] = []
        self._record(0.0, 0, self._count(self.adopted, 0, 0))

    # -- views of the state ------------------------------------------------------------
    @property
    def n(self) -> int:
        return self.population.n

    def adoption_rate(self) -> float:
        return float(self.adopted.mean()) if self.n else 0.0

    def ward_rates(self) -> np.ndarray:
        """Adoption rate per ward after the last completed step (cached per step); the
        adopters per ward come from the step's own tally."""
        if self._rates_cache is None or self._rates_cache[0] != self.t:
            self._rates_cache = (self.t, self.ward_log[-1] / self._ward_sizes)
        return self._rates_cache[1]

    def ambassadors(self) -> np.ndarray:
        """Mask of residents serving as ambassadors in the last completed step."""
        mask = np.zeros(self.n, dtype=bool)
        for nudge in self.nudges:
            if isinstance(nudge, AmbassadorsNudge) and self.t >= 1:
                mask |= nudge.current(self.t)
        return mask

    def ambassador_count(self) -> int:
        """How many serve as ambassadors in the last completed step (no n-sized pass when
        one ambassador nudge is running, the usual case)."""
        serving = [n for n in self.nudges
                   if isinstance(n, AmbassadorsNudge) and self.t >= 1 and n.active(self.t)]
        if len(serving) == 1:
            return len(serving[0].serving())
        return int(self.ambassadors().sum()) if serving else 0

    # -- social influence --------------------------------------------------------------
    @cached_property
    def adjacency(self) -> sp.csr_array:
        """The network as a scipy CSR matrix, for the per-agent view and the browser's
        figures (the numpy path multiplies by `product`). Built on first use: the compiled
        path reads the network's arrays directly, and a unit-weight graph would otherwise
        carry 8 bytes of ones per tie end."""
        return self.network.matrix()

    @cached_property
    def product(self) -> sp.csr_array | RowProduct:
        """What the numpy path multiplies by, with the same bits either way: the adjacency
        as a `RowProduct` while the graph is small (`SMALL_TIE_ENDS`, `MAX_ROW_TIES`) and
        scipy.sparse is not loaded, which spares a single short run the import
        (0.15-0.2 s); else scipy's matrix, whose products are faster: once the process
        has scipy.sparse (every run of a sweep: `runs.run_job` loads it)."""
        return self._product_of(self.network)

    @staticmethod
    def _product_of(net: Network) -> sp.csr_array | RowProduct:
        small = net.indices.size <= SMALL_TIE_ENDS and net.degree.max(initial=0) <= MAX_ROW_TIES
        if small and "scipy.sparse" not in sys.modules:
            return net.row_product
        return net.matrix()

    @cached_property
    def row_weight(self) -> np.ndarray:
        """Sum of each resident's tie weights (numpy path only; the kernel sums on the fly)."""
        return self.product @ np.ones(self.n)

    @cached_property
    def in_ward(self) -> sp.csr_array | RowProduct:
        """Product by the ties within a ward only (built on first use, by community
        partnerships; see `product`)."""
        return self._product_of(self.network.within(self.population.ward))

    def neighbour_sum(self, x: np.ndarray, tie_boost: np.ndarray | None) -> np.ndarray:
        """Weighted sum of x over each resident's ties, with in-ward ties boosted."""
        if self.backend.graph is not None:
            return kernels.neighbour_sum(self.backend.graph, x, tie_boost)
        total = self.product @ x
        if tie_boost is not None:
            total += tie_boost * (self.in_ward @ x)
        return total

    def perceived_norm(self, fx: Effects) -> np.ndarray:
        """Weighted adopted share of neighbours, then pulled toward any norm message shown."""
        if self.backend.graph is not None:
            return kernels.perceived_norm(self.backend.graph, self.adopted, fx,
                                          self.stamp_book.matrix)
        influence = fx.influence if fx.influence is not None else None
        a = self.adopted.astype(np.float64)
        if influence is None:
            num = self.neighbour_sum(a, fx.tie_boost)
            den = (
                self.row_weight
                if fx.tie_boost is None
                else self.neighbour_sum(np.ones(self.n), fx.tie_boost)
            )
        else:
            num = self.neighbour_sum(influence * a, fx.tie_boost)
            den = self.neighbour_sum(influence, fx.tie_boost)
        with np.errstate(invalid="ignore", divide="ignore"):
            norm = np.where(den > 0, num / den, 0.0)
        for weight, shown, injunctive in fx.norm_messages:
            norm = rules.pull_norm(norm, weight, shown, injunctive, self.adopted)
        return norm

    # -- the step ------------------------------------------------------------------------
    def step(self) -> None:
        """Advance one step: nudges act, every resident decides, the state is updated."""
        self.respond(*self.begin_step())

    def respond(self, t: int, fx: Effects, logs: list[StepLog]) -> None:
        """The residents' part of a step: decide, update and record (after begin_step)."""
        if self.backend.graph is not None:  # decide and update in one compiled pass
            adopt, _, near, tallies = kernels.decide(self, t, fx, update=True)
            self.near_ties += near
            self._commit(t, logs, adopt, tallies)
            return
        adopt, lapse = self.decide(t, fx)
        self.finish_step(t, fx, logs, adopt, lapse)

    def begin_step(self) -> tuple[int, Effects, list[StepLog]]:
        """The council's part of a step: nudges contact residents and set this step's effects."""
        if self.t >= self.steps:
            raise RuntimeError(f"the run has {self.steps} steps and all have been taken")
        t = self.t + 1
        fx = Effects(self.n, t, self.population.ward, self.backend.effects)
        logs = [nudge.step(t, self, fx) for nudge in self.nudges]
        return t, fx, logs

    def exposure(self, fx: Effects) -> np.ndarray | float:
        """Weighted count of each resident's neighbours who adopted last step (for rules
        that read it, the cascade's), 0.0 for the others."""
        if not RULES[self.rule.kind].reads_exposure:
            return 0.0
        weight = self.newly_adopted.astype(np.float64)
        if fx.influence is not None:
            weight = weight * fx.influence
        return self.neighbour_sum(weight, fx.tie_boost)

    def inputs(self, fx: Effects) -> rules.Inputs:
        """Everything the rule looks at, for all residents, on the state before this step."""
        return rules.build_inputs(self.population, self.habit, fx, self.perceived_norm(fx),
                                  self.exposure(fx))

    def decide(self, t: int, fx: Effects) -> tuple[np.ndarray, np.ndarray]:
        """Residents' part, vectorised: masks of who adopts and who lapses at step t."""
        if self.backend.graph is not None:  # one fused pass; same decisions, bit for bit
            adopt, lapse, near = kernels.decide(self, t, fx)
            self.near_ties += near
            return adopt, lapse
        p_adopt, p_lapse = rules.hazards(self.rule, self.inputs(fx))
        u = self.streams.uniform("decide", t, self.n)
        was = self.adopted
        adopt = ~was & (u < p_adopt)
        if fx.direct is not None:
            adopt |= fx.direct & ~was
        lapse = was & (u < p_lapse)
        if fx.locked is not None:
            lapse &= ~fx.locked
        return adopt, lapse

    def finish_step(
        self, t: int, fx: Effects, logs: list[StepLog], adopt: np.ndarray, lapse: np.ndarray
    ) -> None:
        """Apply the decisions synchronously, grow or decay habits, settle costs, record."""
        if self.backend.graph is not None:  # one compiled pass, tallies included
            self._commit(t, logs, adopt, kernels.apply(self, adopt, lapse))
            return
        now = (self.adopted | adopt) & ~lapse
        self.habit = rules.update_habit(self.rule, now, self.habit)
        self.ever_adopted |= now
        self._commit(t, logs, adopt, self._count(now, int(adopt.sum()), int(lapse.sum())))

    def _count(self, now: np.ndarray, new: int, lapsed: int) -> tuple:
        """kernels.apply's tallies, counted with numpy: (now, adopters, ever adopted, new,
        lapsed, adopters per ward)."""
        pop = self.population
        by_ward = np.bincount(pop.ward, weights=now, minlength=pop.n_wards)
        return now, int(now.sum()), int(self.ever_adopted.sum()), new, lapsed, by_ward

    def _commit(self, t: int, logs: list[StepLog], adopt: np.ndarray, tallies: tuple) -> None:
        """Make the new state current, settle costs and record the step's tallies."""
        self.adopted = tallies[0]
        self.newly_adopted = adopt
        self.t = t
        cost = sum(log.cost for log in logs) + sum(n.settle(t, self) for n in self.nudges)
        self._record(cost, sum(log.contacts for log in logs), tallies)

    def _record(self, cost: float, contacts: int, tallies: tuple) -> None:
        _, adopters, ever, new, lapsed, by_ward = tallies
        impact = adopters * self.scenario.impact.per_adopter_step if self.t else 0.0
        log = self.log
        log["step"].append(self.t)
        log["adopters"].append(adopters)
        log["new_adopters"].append(new)
        log["lapsed"].append(lapsed)
        log["ever_adopted"].append(ever)
        log["ambassadors"].append(self.ambassador_count())
        log["contacts"].append(contacts)
        log["cost_step"].append(float(cost))
        log["impact_step"].append(float(impact))
        self.ward_log.append(by_ward)

    def run(self) -> Result:
        while self.t < self.steps:
            self.step()
        return self.result()

    def result(self) -> Result:
        """The run so far as tables: the step log, adopters by ward and step, and each
        nudge's window and contact steps."""
        log = {name: np.asarray(values) for name, values in self.log.items()}
        steps = len(log["step"])
        ts = {"step": log["step"], "adopters": log["adopters"],
              "adoption_rate": log["adopters"] / max(self.n, 1)}
        ts |= {name: log[name] for name in Result.LOG_COLUMNS[2:]}
        ts["cost"] = np.cumsum(log["cost_step"])
        ts["impact"] = np.cumsum(log["impact_step"])
        pop = self.population
        counts = np.vstack(self.ward_log)  # steps+1 x wards
        sizes = pop.ward_sizes()
        by_ward = {
            "step": np.repeat(log["step"], pop.n_wards),
            "ward": np.tile(np.array(pop.ward_names, dtype=object), steps),
            "residents": np.tile(sizes, steps),
            "adopters": counts.ravel().astype(np.int64),
        }
        by_ward["adoption_rate"] = by_ward["adopters"] / np.maximum(by_ward["residents"], 1)
        windows = [nd.spec.window(self.steps) for nd in self.nudges]
        return Result(
            scenario=self.scenario,
            timeseries_columns=ts,
            by_ward_columns=by_ward,
            adopted=self.adopted.copy(),
            node_ids=pop.ids,
            nudge_windows=windows,
            n_ties=self.network.n_ties,
            ward=pop.ward,  # not a copy: residents.parquet reads it only when asked
        )


def no_campaign(scenario: Scenario) -> Scenario:
    """The same scenario with no nudges: the counterfactual a campaign is measured against.
    Same seed, so the same residents, ties, initial adopters and decision draws."""
    return scenario.replace(nudges=[])


def simulate(scenario: Scenario, graph: nx.Graph | None = None, *,
             counterfactual: bool = False) -> Result:
    """Run a scenario to the end with the vectorised engine (no Mesa on this path).

    counterfactual: also run the no-campaign twin (`no_campaign`) on the same world,
    built once, and attach it (`Result.counterfactual`, the `counterfactual_*` columns,
    the summary's `campaign_extra_*`). Every random stream is named by its purpose
    (rng.Streams) and the residents' decisions are counter-based uniforms of (seed, step,
    resident), so both runs share every draw the campaign does not touch (common random
    numbers): their difference is the campaign's effect plus the noise of the households
    it moves, not the noise of two unrelated runs. Without it the run is exactly as before.
    """
    if not counterfactual:
        return Engine(scenario, graph).run()
    world = build_world(scenario, Streams(scenario.seed), graph)
    result = Engine(scenario, world=world).run()
    return result.with_counterfactual(Engine(no_campaign(scenario), world=world).run())
