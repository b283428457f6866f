"""Targeting scores on the social graph: degree, betweenness, k-core and communities.

Why a module of its own: `network.py` builds and holds the graph; these read it to rank
residents for a nudge's targeting (``nudges.py``), and their cost at national scale
(10^7 households and more) is its own concern, measured by ``nudgesim bench --scale``.
None goes through networkx except greedy modularity, which is capped at
`NX_COMMUNITY_MAX_N`.
"""

from __future__ import annotations

import math
import random
import threading
from typing import TYPE_CHECKING

import numpy as np

from .network import Network, NetworkError

if TYPE_CHECKING:
    import scipy.sparse as sp

__all__ = [
    "degree_scores",
    "betweenness_scores",
    "kcore_scores",
    "community_labels",
    "modularity",
    "COMMUNITY_METHODS",
]

#: Above this size betweenness leaves networkx (pure Python Brandes, ~minutes) for the
#: C-speed BFS-tree approximation in `betweenness_scores`.
BETWEENNESS_BATCH_CELLS = 4_000_000  # residents x sources per batch: ~100 MB of work arrays
#: Largest n for networkx's greedy modularity (Clauset-Newman-Moore, pure Python).
NX_COMMUNITY_MAX_N = 20_000
#: Leiden runs one iteration at a time from the previous partition and stops when an
#: iteration raises modularity by less than LEIDEN_TOL (the second iteration usually
#: reaches the final value; a fixed count of 2 left 0.745 instead of 0.756 at 10^6).
LEIDEN_TOL = 1e-4
LEIDEN_MAX_ITERATIONS = 10
_IGRAPH_RNG_LOCK = threading.Lock()




def _seed_from(rng: np.random.Generator | None) -> int:
    """A networkx/py-random seed drawn from ``rng`` (fixed 0 when rng is None, for determinism)."""
    if rng is None:
        return 0
    return int(rng.integers(0, 2**31 - 1))


def degree_scores(net: Network) -> np.ndarray:
    """Weighted degree (row sums of the tie weights); ties are broken by the caller."""
    if net.unit:
        return net.degree.astype(np.float64)
    return net.matrix() @ np.ones(net.n)


def _gather_rows(net: Network, rows: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(row of each entry, neighbour) for all ties of ``rows``, without a Python loop."""
    starts = net.indptr[rows]
    lens = net.degree[rows]
    total = int(lens.sum())
    owner = np.repeat(rows, lens)
    offs = np.arange(total, dtype=np.int64) - np.repeat(np.cumsum(lens) - lens, lens)
    return owner, net.indices[np.repeat(starts, lens) + offs]


def betweenness_scores(
    net: Network, rng: np.random.Generator, samples: int = 256
) -> np.ndarray:
    """Shortest-path (hop count, weights ignored) betweenness, normalised like networkx.

    Exact Brandes path counting from every node when n <= samples, otherwise from
    `samples` sources drawn from rng (networkx's ``k=`` estimator). Sources are processed
    in batches: one sparse-times-dense product per BFS level advances all of a batch's
    searches at once, so the cost is a few sparse products per level instead of Python
    work per node (measured: borough, 20,000 residents, 256 sources, well under a second).
    """
    n = net.n
    if n <= 2:
        return np.zeros(n)
    exact = n <= samples
    sources = np.arange(n) if exact else np.sort(rng.choice(n, size=samples, replace=False))
    A = net.matrix().copy()
    A.data[:] = 1.0  # hop counts: weights play no part in shortest paths here
    batch = int(max(1, min(64, BETWEENNESS_BATCH_CELLS // n)))
    score = np.zeros(n)
    for lo in range(0, len(sources), batch):
        score += _brandes_dependencies(A, sources[lo : lo + batch])
    # networkx (endpoints=False): exact -> 1/((n-1)(n-2)); sampled k -> sources
    # 1/((k-1)(n-2)), others 1/(k(n-2))
    if exact:
        return score / ((n - 1) * (n - 2))
    k = samples
    is_src = np.zeros(n, dtype=bool)
    is_src[sources] = True
    return score * np.where(is_src, 1.0 / ((k - 1) * (n - 2)), 1.0 / (k * (n - 2)))


def _brandes_dependencies(A: sp.csr_array, sources: np.ndarray) -> np.ndarray:
    """Sum over `sources` of Brandes' dependencies delta_s(v), all searches in lock step."""
    n, b = A.shape[0], len(sources)
    cols = np.arange(b)
    depth = np.full((n, b), -1, dtype=np.int32)
    sigma = np.zeros((n, b))
    depth[sources, cols] = 0
    sigma[sources, cols] = 1.0
    frontier = sigma.copy()
    level = 0
    while True:  # forward: count shortest paths level by level
        reach = A @ frontier
        new = (reach > 0) & (depth < 0)
        if not new.any():
            break
        level += 1
        depth[new] = level
        sigma[new] = reach[new]
        frontier = np.where(new, reach, 0.0)
    delta = np.zeros((n, b))
    for lvl in range(level, 1, -1):  # backward: accumulate dependencies onto parents
        at = depth == lvl
        coeff = np.where(at, (1.0 + delta) / np.where(at, sigma, 1.0), 0.0)
        parents = depth == lvl - 1
        delta += np.where(parents, sigma * (A @ coeff), 0.0)
    delta[sources, cols] = 0.0
    return delta.sum(axis=1)


def kcore_scores(net: Network) -> np.ndarray:
    """Core number of every resident (as ``nx.core_number``), by batched bucket peeling.

    At level k all residents with remaining degree <= k are removed together, round by
    round, and get core number k; rounds touch only removed residents' ties.
    """
    n = net.n
    deg = net.degree.copy()
    core = np.zeros(n, dtype=np.int64)
    removed = np.zeros(n, dtype=bool)
    remaining = n
    k = 0
    cand = np.flatnonzero(deg <= k)
    while remaining:
        if cand.size == 0:
            k = int(deg[~removed].min())
            cand = np.flatnonzero(~removed & (deg <= k))
        removed[cand] = True
        core[cand] = k
        remaining -= cand.size
        _, nbr = _gather_rows(net, cand)
        nbr = nbr[~removed[nbr]]
        hit, cnt = np.unique(nbr, return_counts=True)
        deg[hit] -= cnt
        cand = hit[deg[hit] <= k]
    return core


def _labels_from_groups(groups: list, n: int) -> np.ndarray:
    """Labels 0..c-1 by community size descending (ties: smallest member first)."""
    groups = sorted((sorted(g) for g in groups), key=lambda g: (-len(g), g[0]))
    labels = np.empty(n, dtype=np.int64)
    for c, g in enumerate(groups):
        labels[g] = c
    return labels


def _relabel_by_size(labels: np.ndarray) -> np.ndarray:
    uniq, inv, counts = np.unique(labels, return_inverse=True, return_counts=True)
    first = np.full(uniq.size, labels.size, dtype=np.int64)
    np.minimum.at(first, inv, np.arange(labels.size))
    rank = np.lexsort((first, -counts))
    new = np.empty(uniq.size, dtype=np.int64)
    new[rank] = np.arange(uniq.size)
    return new[inv]


def modularity(net: Network, labels: np.ndarray) -> float:
    """Newman's modularity of the partition ``labels`` (tie weights count; resolution 1).

    Q = sum over communities of (weight inside / total weight) - (degree share)^2, the
    quantity community detection maximises; nan for a graph without ties.
    """
    labels = np.asarray(labels)
    if labels.shape != (net.n,):
        raise NetworkError(f"modularity: got {labels.shape} labels for {net.n} residents")
    w = net.tie_weights()
    two_m = float(w.sum())
    if two_m == 0:
        return float("nan")
    _, lab = np.unique(labels, return_inverse=True)
    own = np.repeat(lab, net.degree)  # community of each tie end's owner
    inside = float(w[own == lab[net.indices]].sum())
    share = np.bincount(own, weights=w) / two_m  # each community's share of tie weight
    return inside / two_m - float(share @ share)


def _igraph_graph(net: Network):
    """The network as an igraph Graph: one (m, 2) edge array handed over in one call."""
    import igraph

    rows = np.repeat(np.arange(net.n, dtype=np.int64), net.degree)
    upper = rows < net.indices
    edges = np.empty((int(upper.sum()), 2), dtype=np.int64)
    edges[:, 0] = rows[upper]
    edges[:, 1] = net.indices[upper]
    # igraph converts a nested list in C; a numpy array would be read row by row
    graph = igraph.Graph(n=net.n, edges=edges.tolist())
    weights = None if net.weights is None else net.weights[upper].tolist()  # None: net.unit
    return graph, weights


def _leiden(net: Network, seed: int) -> np.ndarray:
    """Leiden modularity optimisation (igraph), iterated until an iteration gains < LEIDEN_TOL.

    igraph draws from one process-wide generator; it is seeded for this call and put back
    to igraph's default (Python's ``random`` module) afterwards, under a lock so that
    concurrent threads cannot interleave their draws.
    """
    import igraph

    graph, weights = _igraph_graph(net)
    membership = None
    with _IGRAPH_RNG_LOCK:
        igraph.set_random_number_generator(random.Random(seed))
        try:
            quality = -math.inf
            for _ in range(LEIDEN_MAX_ITERATIONS):
                part = graph.community_leiden(
                    objective_function="modularity",
                    weights=weights,
                    n_iterations=1,
                    initial_membership=membership,
                )
                membership = part.membership
                if part.quality - quality < LEIDEN_TOL:
                    break
                quality = part.quality
        finally:
            igraph.set_random_number_generator(random)
    return np.asarray(membership, dtype=np.int64)


#: Community methods: "leiden" is the default; "label_propagation" is its older name
#: (label propagation itself gave 1 to 5,840 communities on the borough depending on the
#: seed, modularity 0-0.15, so scenarios that name it now get Leiden).
COMMUNITY_METHODS = ("leiden", "label_propagation", "greedy_modularity")


def community_labels(
    net: Network, method: str = "leiden", rng: np.random.Generator | None = None
) -> np.ndarray:
    """Community of every resident, labelled 0..c-1 by community size descending.

    "leiden" (and its older name "label_propagation"): Leiden modularity optimisation
    (Traag, Waltman & van Eck 2019, igraph's implementation), seeded from ``rng``; its
    communities are connected and its modularity is close to the best known (0.76 on
    the borough). "greedy_modularity": networkx Clauset-Newman-Moore, deterministic,
    n <= NX_COMMUNITY_MAX_N. ``rng=None`` uses a fixed seed so results stay deterministic.
    """
    n = net.n
    if method == "greedy_modularity":
        if n > NX_COMMUNITY_MAX_N:
            raise NetworkError(
                f"community method 'greedy_modularity' is limited to n <= {NX_COMMUNITY_MAX_N} "
                f"(it is O(n^2) in networkx); got n={n}, use 'leiden'"
            )
        import networkx as nx

        groups = nx.community.greedy_modularity_communities(net.to_networkx(), weight="weight")
        return _labels_from_groups(list(groups), n)
    if method in ("leiden", "label_propagation"):
        if n == 0:
            return np.zeros(0, dtype=np.int64)
        return _relabel_by_size(_leiden(net, _seed_from(rng)))
    raise NetworkError(
        f"unknown community method {method!r}; use one of {', '.join(COMMUNITY_METHODS)}"
    )
