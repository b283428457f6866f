"""Targeting scores on the social graph: degree, betweenness, k-core and communities.

Why a module of its own: `network.py` builds and holds the graph; these read it to rank
residents for a nudge's targeting (``nudges.py``), and their cost at national scale
(10^7 households and more) is its own concern, measured by ``nudgesim bench --scale``.
None goes through networkx except greedy modularity, which is capped at
`NX_COMMUNITY_MAX_N`. Betweenness has a numpy form and a compiled (numba) twin that give
identical scores; Leiden communities come from igraph, handed the edges as one array.
"""

from __future__ import annotations

import math
import random
import threading
from typing import TYPE_CHECKING, Any

import numpy as np

from .network import Network, NetworkError

if TYPE_CHECKING:
    import scipy.sparse as sp

__all__ = [
    "degree_scores",
    "betweenness_scores",
    "compiled_betweenness",
    "kcore_scores",
    "community_labels",
    "modularity",
    "COMMUNITY_METHODS",
]

#: The numpy path advances a batch of searches with one sparse-times-dense product per
#: BFS level; a batch holds this many residents x sources (~100 MB of work arrays).
BETWEENNESS_BATCH_CELLS = 4_000_000
#: With NUDGESIM_NUMBA unset, betweenness takes the compiled searches once n x sources
#: reaches this (numpy needs ~0.5 us per cell, so ~10 s here, against ~1 s to load the
#: kernel from numba's cache and ~5 s to compile it on an empty one; assumption, measured
#: on the 2-core reference machine under load). Both paths give identical scores.
BETWEENNESS_COMPILED_MIN_CELLS = 20_000_000
#: A breadth-first level holding more than 1/BIG_LEVEL of the residents is walked by one
#: scan of all residents in index order, a smaller one from its own list (`_one_source`).
BIG_LEVEL = 8
#: Largest n for networkx's greedy modularity (Clauset-Newman-Moore, pure Python).
NX_COMMUNITY_MAX_N = 20_000
#: Leiden runs one iteration at a time from the previous partition and stops when an
#: iteration raises modularity by less than LEIDEN_TOL (the second iteration usually
#: reaches the final value; a fixed count of 2 left 0.745 instead of 0.756 at 10^6).
LEIDEN_TOL = 1e-4
LEIDEN_MAX_ITERATIONS = 10
_IGRAPH_RNG_LOCK = threading.Lock()
_KERNEL_LOCK = threading.Lock()
_KERNEL: list[Any] = []  # the compiled _many_sources, once built
prange = range  # numba.prange once the kernel is built


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


def _neighbours_of(net: Network, rows: np.ndarray) -> np.ndarray:
    """The neighbours over all ties of ``rows`` (row after row, stored order), without a
    Python loop: each entry's position is its row's start plus its offset in the row,
    built in place (three arrays of 8 bytes per tie end, not five)."""
    lens = net.degree[rows]
    pos = np.arange(int(lens.sum()), dtype=np.int64)
    pos += np.repeat(net.indptr[rows] - (np.cumsum(lens) - lens), lens)
    return net.indices[pos]


def betweenness_scores(
    net: Network, rng: np.random.Generator, samples: int = 256, compiled: bool | None = None
) -> np.ndarray:
    """Shortest-path (hop count, weights ignored) betweenness, normalised like networkx.

    Exact Brandes path counting from every node when n <= samples, otherwise from
    `samples` sources drawn from rng (networkx's ``k=`` estimator). Each source's
    dependencies are computed by one of two paths that give bit-identical results: a
    compiled breadth-first search per source (O(n) work arrays per thread, sources
    shared among threads; national scale) or batched sparse products (numpy; the
    reference, and the path for small graphs). Either way the sources' dependencies are
    added in source order, so the scores depend on neither the path, the batch size
    nor the thread count. ``compiled``: None picks the path by size
    (`compiled_betweenness`); True or False forces it (True needs numba), e.g. for a
    benchmark that times a few sources the way a scenario's 256 would run.
    """
    n = net.n
    if n <= 2:
        return np.zeros(n)
    exact = n <= samples
    sources = np.arange(n) if exact else np.sort(rng.choice(n, size=samples, replace=False))
    if compiled is None:
        compiled = compiled_betweenness(n, len(sources))
    if compiled:
        score = _dependencies_compiled(net, sources)
    else:
        score = _dependencies_numpy(net, sources)
    # networkx (endpoints=False): exact -> 1/((n-1)(n-2)); sampled k -> sources
    # 1/((k-1)(n-2)), others 1/(k(n-2))
    if exact:
        return score / ((n - 1) * (n - 2))
    k = samples
    is_src = np.zeros(n, dtype=bool)
    is_src[sources] = True
    return score * np.where(is_src, 1.0 / ((k - 1) * (n - 2)), 1.0 / (k * (n - 2)))


def compiled_betweenness(n: int, n_sources: int) -> bool:
    """Whether betweenness takes the compiled searches: NUDGESIM_NUMBA=1/0 decide outright
    (as for the engine); unset, only work large enough to pay for loading numba does."""
    from . import kernels

    if not kernels.AVAILABLE or kernels.ENABLED is False:
        return False
    return kernels.ENABLED is True or n * n_sources >= BETWEENNESS_COMPILED_MIN_CELLS


def _dependencies_numpy(net: Network, sources: np.ndarray) -> np.ndarray:
    """Sum over `sources` (in order) of Brandes' dependencies, batch by batch."""
    n = net.n
    A = net.matrix().copy()
    A.data[:] = 1.0  # hop counts: weights play no part in shortest paths here
    batch = int(max(1, min(64, BETWEENNESS_BATCH_CELLS // n)))
    score = np.zeros(n)
    for lo in range(0, len(sources), batch):
        delta = _brandes_dependencies(A, sources[lo : lo + batch])
        for j in range(delta.shape[1]):  # source order, as the compiled path adds them
            score += delta[:, j]
    return score


def _kernel() -> Any:
    """`_sources` compiled with numba (from numba's on-disk cache after the first build).
    As in kernels.py, the module's names are rebound to dispatchers before anything is
    compiled, so `_sources` calls the compiled `_one_source`."""
    with _KERNEL_LOCK:
        if not _KERNEL:
            import numba

            global prange
            prange = numba.prange
            names = globals()
            names["_one_source"] = numba.njit(cache=True, error_model="numpy")(_one_source)
            _KERNEL.append(numba.njit(parallel=True, cache=True, error_model="numpy")(_sources))
    return _KERNEL[0]


def _dependencies_compiled(net: Network, sources: np.ndarray) -> np.ndarray:
    """Sum over `sources` (in order) of Brandes' dependencies: one search per thread at a
    time (kernels.Threads, re-read for every round, so a busy machine gets fewer), each
    with 24 bytes of work arrays per resident."""
    from . import kernels

    many = _kernel()
    n = net.n
    with kernels.Threads(n):
        slots = int(max(1, min(kernels.numba.get_num_threads(), len(sources))))
    depth = np.full((slots, n), -1, dtype=np.int32)
    sigma = np.zeros((slots, n))
    delta = np.zeros((slots, n))
    order = np.empty((slots, n), dtype=np.int32)
    score = np.zeros(n)
    lo = 0
    while lo < len(sources):
        with kernels.Threads(n):
            k = min(slots, kernels.numba.get_num_threads())
            many(net.indptr, net.indices, sources[lo : lo + k], depth, sigma, delta, order,
                 score)
        lo += k
    return score


def _brandes_dependencies(A: sp.csr_array, sources: np.ndarray) -> np.ndarray:
    """Brandes' dependencies delta_s(v) of each of `sources` (column s), searches in lock step.

    Sums over a row run in stored order from 0.0 (scipy's csr product), and adding the
    0.0 of a resident outside the level changes nothing: so path counts and dependencies
    are exactly those of `_one_source`, which visits the same terms in the same order."""
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
    return delta


def _one_source(indptr, indices, s, depth, sigma, delta, order):  # pragma: no cover - numba
    """Brandes' dependencies of source `s` into `delta` (compiled; `_brandes_dependencies`
    is its numpy twin). On entry depth is -1 and sigma, delta are 0 everywhere; on exit
    depth is -1 and sigma 0 again, and `delta` holds the dependencies (the caller adds
    and clears them). `order` is work space: the residents found, level after level.

    A resident at level d sums its parents' path counts over its row, in stored order as
    the numpy twin's product does, and marks unseen neighbours as level d + 1; backwards,
    deepest level first, each resident sums (1 + delta_w) / sigma_w over the children in
    its row. A sum reads only the level before (or after) its own, so the order in which
    a level's residents are taken changes no result, and each level is taken the cheaper
    way: a level holding more than 1/BIG_LEVEL of the residents by one scan of all
    residents in index order (rows in storage order, ward-mates together: it streams
    through memory, 0.9 s against 1.2 s per source in found order at 10^6); a smaller one
    from its own list. At most BIG_LEVEL levels are big, so a search is O(n + ties) even
    on a long chain, where scanning every resident at every level would be quadratic.
    """
    n = depth.size
    depth[s] = 0
    sigma[s] = 1.0
    order[0] = s
    starts = [0, 1]  # level d's residents are order[starts[d]:starts[d + 1]]
    lo, hi, d = 0, 1, 0
    while lo < hi:
        end = hi
        big = (end - lo) * BIG_LEVEL > n
        count = n if big else end - lo
        for i in range(count):
            u = i if big else order[lo + i]
            if big and depth[u] != d:
                continue
            acc = 0.0
            for p in range(indptr[u], indptr[u + 1]):
                w = indices[p]
                dw = depth[w]
                if dw < 0:
                    depth[w] = d + 1
                    order[hi] = w
                    hi += 1
                elif dw == d - 1:
                    acc += sigma[w]
            if d > 0:
                sigma[u] = acc
        lo = end
        starts.append(hi)
        d += 1
    # d - 1 is now the deepest level, which has no children; the source's is not needed
    for lvl in range(d - 2, 0, -1):
        a, b = starts[lvl], starts[lvl + 1]
        big = (b - a) * BIG_LEVEL > n
        count = n if big else b - a
        for i in range(count):
            v = i if big else order[a + i]
            if big and depth[v] != lvl:
                continue
            acc = 0.0
            for p in range(indptr[v], indptr[v + 1]):
                w = indices[p]
                if depth[w] == lvl + 1:
                    acc += (1.0 + delta[w]) / sigma[w]
            delta[v] = sigma[v] * acc
    for i in range(hi):
        v = order[i]
        depth[v] = -1
        sigma[v] = 0.0


def _sources(indptr, indices, sources, depth, sigma, delta, order, score):  # pragma: no cover
    """Source j's search on thread-private work row j (prange); then every resident adds
    the dependencies in source order, so the sum does not depend on the thread count."""
    k = len(sources)
    for j in prange(k):
        _one_source(indptr, indices, sources[j], depth[j], sigma[j], delta[j], order[j])
    for v in prange(score.size):
        total = score[v]
        for j in range(k):
            total += delta[j, v]
            delta[j, v] = 0.0
        score[v] = total


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
        nbr = _neighbours_of(net, cand)
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


def _igraph_graph(net: Network) -> tuple[Any, np.ndarray | None]:
    """The network as an igraph Graph, and its tie weights (None: every tie weighs 1).

    Each tie once (row < neighbour, in CSR order: the order igraph numbers edges in, which
    the partition depends on), handed over as one (m, 2) int64 array: python-igraph reads
    a numpy array through the buffer protocol, so no Python object is made per tie (a
    nested list cost ~140 bytes per tie: ~7 GB at 10^7 households)."""
    import igraph

    rows = np.repeat(np.arange(net.n, dtype=net.indices.dtype), net.degree)
    upper = rows < net.indices
    edges = np.empty((int(np.count_nonzero(upper)), 2), dtype=np.int64)
    edges[:, 0] = rows[upper]
    del rows
    edges[:, 1] = net.indices[upper]
    graph = igraph.Graph(n=net.n, edges=edges)
    weights = None if net.weights is None else net.weights[upper]
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
