"""World building: the residents and their ties, from a scenario (and a graph or files).

Everything a run starts from that does not change while it runs: the population's traits
and wards, and the social network. Kept apart from the engine so that set-up (reading
graph files and CSVs, sampling traits, generating the graph) can be followed, tested and
reused on its own, and an `Engine` can be given a world already built.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import numpy as np

from . import limits
from . import network as netmod
from .population import TRAITS, Population, build_population
from .registry import RULES

if TYPE_CHECKING:  # networkx is imported where a user's graph needs it
    import networkx as nx

    from .rng import Streams
    from .scenario import Scenario


@dataclass
class World:
    """The residents (`population`) and their ties (`network`), resident i in both."""

    population: Population
    network: netmod.Network

    @property
    def n(self) -> int:
        return self.population.n

    @property
    def ids(self) -> list[Any] | None:
        """Residents' ids in the user's graph or CSV (None: they are 0..n-1)."""
        return self.population.ids


def node_attributes(graph: nx.Graph) -> dict[str, list[Any]]:
    """Traits (and ward) given on every node of a user's graph override the distributions."""
    out = {}
    for name in (*TRAITS, "ward"):
        values = [data.get(name) for _, data in graph.nodes(data=True)]
        if values and all(v is not None for v in values):
            out[name] = values
    return out


def build_world(scenario: Scenario, streams: Streams, graph: nx.Graph | None = None) -> World:
    """Population and network for `scenario`, drawn from `streams` ("population",
    "network", ...): from `graph` when given, else from the scenario's graph file, else
    generated. A run that cannot fit in memory is refused first (limits.py), before
    anything is read or built."""
    limits.check_memory(
        scenario,
        n=None if graph is None else graph.number_of_nodes(),
        tie_ends=None if graph is None else 2 * graph.number_of_edges(),
    )
    spec = scenario.network
    rule = scenario.rule
    reads_threshold = RULES[rule.kind].reads_threshold
    csv = scenario.resolve(scenario.population.csv) if scenario.population.csv else None
    # the rule's threshold distribution replaces population.threshold; per-resident
    # thresholds (CSV column, node attribute) override both (build_population warns)
    threshold = getattr(rule, "threshold", None) if reads_threshold else None
    read: netmod.Network | nx.Graph | None = graph
    if graph is None and isinstance(spec, netmod.GraphFile):
        try:  # an edge list comes back as arrays (no networkx), GraphML as a graph
            read = netmod.read_network_file(scenario.resolve(spec.path), spec.format, spec.weight)
        except netmod.NetworkError as err:  # the first line names the scenario's field
            raise netmod.NetworkError(f"network.path: {err}") from None
    if read is not None:
        if isinstance(read, netmod.Network):
            network, ids, attributes = read, read.node_ids, {}
        else:
            network = netmod.from_networkx(read, weight=getattr(spec, "weight", "weight"))
            ids, attributes = list(read.nodes), node_attributes(read)
        population = build_population(
            scenario.population,
            streams,
            n=network.n,
            ids=ids,
            node_attributes=attributes,
            csv_path=csv,
            threshold=threshold,
        )
    else:
        population = build_population(
            scenario.population, streams, csv_path=csv, threshold=threshold
        )
        network = netmod.build_network(spec, population.ward, streams.generator("network"))
    if graph is None and (read is not None or csv is not None):
        # the first check knew only the files' sizes: what grows with the residents and
        # ties (the engine's state, a community targeting's working memory) is checked
        # now that they are known, before the engine allocates any of it
        limits.check_memory(scenario, n=population.n, tie_ends=int(network.indices.size))
    if not reads_threshold:  # only rules that read thresholds keep an n-sized array of them
        population.threshold = np.broadcast_to(np.float64(np.nan), (population.n,))
    return World(population, network)
