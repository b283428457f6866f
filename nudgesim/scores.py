"""Targeting scores on the social graph: degree, betweenness, k-core and communities.

Why a module of its own: `network.py` builds and holds the graph; these read it to rank
residents for a nudge's targeting (``nudges.py``), and their cost at national scale
(10^7 households and more) is its own concern, measured by ``nudgesim bench --scale``.
None goes through networkx except greedy modularity, which is capped at
`NX_COMMUNITY_MAX_N`. Betweenness has a numpy form and a compiled (numba) twin that give
identical scores. Communities come from igraph's Leiden (handed the edges as one array)
on graphs up to AUTO_LEIDEN_MAX_N residents and from fast Louvain above: the same scheme
compiled on our CSR, with no copy of the graph, deterministic on any thread count.
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
    """Weighted degree (row sums of the tie weights); ties are broken by the caller.
    Unit ties: the row lengths go straight into float64, the one n-sized array the
    score cache keeps. Through `net.degree` an int64 copy stayed cached on the network
    for the rest of the run (200 MB at 2.5 x 10^7 households)."""
    if net.unit:
        out = np.empty(net.n)
        np.subtract(net.indptr[1:], net.indptr[:-1], out=out)
        return out
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


# --------------------------------------------------------------------------- fast Louvain
#
# Modularity optimisation on the CSR itself (no copy of the graph), compiled with numba.
# Every loop is sequential and visits residents in an order drawn from the run's stream,
# so the partition is the same on any machine and thread count. The functions are plain
# Python (the reference: they run as they are where numba is missing, giving the same
# labels, since the arithmetic and its order are the same) and are compiled together by
# `_community_kernels`.

#: Fast Louvain runs a second round from the first round's partition (as igraph's Leiden
#: iterates) when the first gained at least FAST_LOUVAIN_TOL over its start, and stops
#: there: on the national graph at 10^6 the second round took modularity from 0.57 to
#: 0.789 and a third added 1e-6 (measured). The first round's low value is Louvain's own,
#: not a slip in the gain: networkx's Louvain lands as low on these ward-clustered ties
#: (0.588 against our first round's 0.586; tests/test_community.py).
FAST_LOUVAIN_TOL = 1e-4
FAST_LOUVAIN_ROUNDS = 2
#: Visiting order: blocks of this many consecutive nodes (about a ward of the national
#: graph: its rows, labels and totals, ~0.5 MB, stay in the cache), see _visiting_order.
FAST_LOUVAIN_BLOCK = 4096
#: Local moving prefetches the queue's coming residents: a row's place this many visits
#: ahead, the row itself at PREFETCH_MID, its neighbours' labels at PREFETCH_NEAR
#: (assumption: a few visits cover a miss to memory, ~100 ns, at ~50 ns a visit in cache).
PREFETCH_FAR = 12
PREFETCH_MID = 8
PREFETCH_NEAR = 4
#: Rows up to this many ties sum their communities' weights in a short list (see _cm_move).
SMALL_ROW = 32
_COMMUNITY_LOCK = threading.Lock()
_COMMUNITY: dict[str, Any] = {}


def _prefetch(arr: np.ndarray, i: int) -> None:
    """Plain-Python stand-in for kernels' prefetch intrinsic (a hint, no effect on values);
    `_community_kernels` compiles the kernels with the intrinsic itself."""


def _cm_tally(cand, cand_w, nt, c, wt):
    """Add tie weight wt to community c in the candidate list cand[:nt] (a short row's
    linear search: cheaper than the scratch array for a few ties); the new length."""
    for t in range(nt):
        if cand[t] == c:
            cand_w[t] += wt
            return nt
    cand[nt] = c
    cand_w[nt] = wt
    return nt + 1


def _cm_move(indptr, indices, w, unit, k, comm, tot, order, two_m, queue, inq, acc, cand,
             cand_w):  # pragma: no cover - numba
    """Local moving with a queue (Traag et al. 2019's fast local move): every node is
    visited once in `order`; a node moves to the neighbouring community with the largest
    modularity gain (strictly larger than staying, so ties keep it and the loop ends);
    when it moves, its neighbours outside its new community are queued again. Returns
    the number of moves.

    A node with at most SMALL_ROW ties sums its ties' weights per community in a short
    list (`cand`, `cand_w`), a bigger one in `acc` (zero on entry and on exit): the same
    sums in the same order either way, and a community across the graph (a cross-ward
    tie) costs one scattered read (its label), not three. A candidate whose tie weight
    cannot beat the best gain so far (gain = weight - k tot / 2m <= weight) is passed
    over without reading its total."""
    n = comm.size
    for t in range(n):
        queue[t] = order[t]
        inq[order[t]] = 1
    head = 0
    size = n
    moves = 0
    while size > 0:
        i = queue[head]
        head += 1
        if head == n:
            head = 0
        size -= 1
        inq[i] = 0
        # ask for what the coming visits read, a few visits ahead, so that their cache
        # misses overlap: the row's place, then the row, then its neighbours' labels
        if size > PREFETCH_FAR:
            t = head + PREFETCH_FAR
            _prefetch(indptr, queue[t - n if t >= n else t])
        if size > PREFETCH_MID:
            t = head + PREFETCH_MID
            j = queue[t - n if t >= n else t]
            _prefetch(indices, indptr[j])
            _prefetch(k, j)
        if size > PREFETCH_NEAR:
            t = head + PREFETCH_NEAR
            j = queue[t - n if t >= n else t]
            for p in range(indptr[j], indptr[j + 1]):
                _prefetch(comm, indices[p])
        ci = comm[i]
        ki = k[i]
        lo = indptr[i]
        hi = indptr[i + 1]
        nt = 0
        if hi - lo <= SMALL_ROW:
            for p in range(lo, hi):
                nt = _cm_tally(cand, cand_w, nt, comm[indices[p]], 1.0 if unit else w[p])
        else:
            for p in range(lo, hi):
                c = comm[indices[p]]
                if acc[c] == 0.0:
                    cand[nt] = c  # a zero weight may list c twice: harmless
                    nt += 1
                acc[c] += 1.0 if unit else w[p]
            for t in range(nt):
                cand_w[t] = acc[cand[t]]
            for t in range(nt):
                acc[cand[t]] = 0.0
        own = 0.0
        for t in range(nt):
            if cand[t] == ci:
                own = cand_w[t]
                break
        tot[ci] -= ki
        best = ci
        best_gain = own - ki * tot[ci] / two_m
        for t in range(nt):
            wc = cand_w[t]
            if wc <= best_gain:
                continue
            c = cand[t]
            gain = wc - ki * tot[c] / two_m
            if gain > best_gain:
                best_gain = gain
                best = c
        tot[best] += ki
        if best != ci:
            comm[i] = best
            moves += 1
            for p in range(lo, hi):
                j = indices[p]
                if inq[j] == 0 and comm[j] != best:
                    tail = head + size
                    if tail >= n:
                        tail -= n
                    queue[tail] = j
                    inq[j] = 1
                    size += 1
    return moves


def _cm_refine(indptr, indices, w, unit, k, comm, ctot, order, two_m, acc, cand,
               cand_w):  # pragma: no cover - numba
    """Leiden's refinement (Traag et al. 2019), greedy: inside each community, residents
    still alone are visited in `order` and each joins the sub-community of its community
    that gains most modularity (if any gains), provided both are well connected to the
    rest of their community (weight to it >= k (K - k) / 2m). The graph of communities is
    then built from these sub-communities, so a badly merged community can still be taken
    apart at the next level. Returns the sub-community of every node (a node's id names
    the sub-community it founded)."""
    n = comm.size
    sub = np.arange(n).astype(np.int32)
    subtot = k.copy()
    ext = np.zeros(n)  # weight from the sub-community to the rest of its community
    alone = np.ones(n, dtype=np.uint8)
    for i in range(n):
        ci = comm[i]
        e = 0.0
        for p in range(indptr[i], indptr[i + 1]):
            if comm[indices[p]] == ci:
                e += 1.0 if unit else w[p]
        ext[i] = e
    for t0 in range(n):
        i = order[t0]
        if t0 + PREFETCH_FAR < n:  # as in _cm_move
            _prefetch(indptr, order[t0 + PREFETCH_FAR])
        if t0 + PREFETCH_MID < n:
            j = order[t0 + PREFETCH_MID]
            _prefetch(indices, indptr[j])
            _prefetch(alone, j)
        if t0 + PREFETCH_NEAR < n:
            j = order[t0 + PREFETCH_NEAR]
            for p in range(indptr[j], indptr[j + 1]):
                _prefetch(comm, indices[p])
                _prefetch(sub, indices[p])
        if alone[i] == 0:
            continue
        ci = comm[i]
        ki = k[i]
        big = ctot[ci]
        if ext[i] < ki * (big - ki) / two_m:
            continue
        lo = indptr[i]
        hi = indptr[i + 1]
        nt = 0
        if hi - lo <= SMALL_ROW:
            for p in range(lo, hi):
                j = indices[p]
                if comm[j] != ci:
                    continue
                nt = _cm_tally(cand, cand_w, nt, sub[j], 1.0 if unit else w[p])
        else:
            for p in range(lo, hi):
                j = indices[p]
                if comm[j] != ci:
                    continue
                c = sub[j]
                if acc[c] == 0.0:
                    cand[nt] = c
                    nt += 1
                acc[c] += 1.0 if unit else w[p]
            for t in range(nt):
                cand_w[t] = acc[cand[t]]
            for t in range(nt):
                acc[cand[t]] = 0.0
        best = -1
        best_gain = 0.0
        best_w = 0.0
        for t in range(nt):
            c = cand[t]
            wc = cand_w[t]
            if wc <= best_gain:
                continue
            st = subtot[c]
            if ext[c] < st * (big - st) / two_m:
                continue
            gain = wc - ki * st / two_m
            if gain > best_gain:
                best_gain = gain
                best = c
                best_w = wc
        if best >= 0:
            sub[i] = best
            subtot[best] += ki
            ext[best] += ext[i] - 2.0 * best_w
            alone[i] = 0
            alone[best] = 0
    return sub


def _cm_renumber(comm, newid):  # pragma: no cover - numba
    """Communities renumbered 0..c-1 in order of their first member; returns c.
    `newid` (as long as comm) is -1 on entry and is left dirty."""
    c = 0
    for i in range(comm.size):
        x = comm[i]
        if newid[x] < 0:
            newid[x] = c
            c += 1
        comm[i] = newid[x]
    return c


def _cm_aggregate(indptr, indices, w, unit, selfw, comm, c):  # pragma: no cover - numba
    """The graph of communities: community C's row lists the communities its members'
    ties reach (in order of first reach), with summed weights; weight inside C goes to
    its self weight. Two passes (count, then fill), so nothing is sized by the ties of
    the graph being aggregated. Weights keep `w`'s type: tie counts in int32 (exact, 8 B
    per tie end with the neighbour) when the graph's ties all weigh 1."""
    n = comm.size
    start = np.zeros(c + 1, dtype=np.int64)
    for i in range(n):
        start[comm[i] + 1] += 1
    for C in range(c):
        start[C + 1] += start[C]
    members = np.empty(n, dtype=np.int32)
    fill = start[:-1].copy()
    for i in range(n):
        C = comm[i]
        members[fill[C]] = i
        fill[C] += 1
    mark = np.full(c, -1, dtype=np.int32)
    ptr = np.zeros(c + 1, dtype=np.int64)
    for C in range(c):
        cnt = 0
        for q in range(start[C], start[C + 1]):
            u = members[q]
            for p in range(indptr[u], indptr[u + 1]):
                D = comm[indices[p]]
                if D != C and mark[D] != C:
                    mark[D] = C
                    cnt += 1
        ptr[C + 1] = ptr[C] + cnt
    out_i = np.empty(ptr[c], dtype=np.int32)
    out_w = np.zeros(ptr[c], dtype=w.dtype)
    new_self = np.zeros(c)
    slot = np.empty(c, dtype=np.int64)
    mark[:] = -1
    for C in range(c):
        q0 = ptr[C]
        s = 0.0
        for q in range(start[C], start[C + 1]):
            u = members[q]
            s += selfw[u]
            for p in range(indptr[u], indptr[u + 1]):
                D = comm[indices[p]]
                wt = 1 if unit else w[p]
                if D == C:
                    s += wt
                elif mark[D] != C:
                    mark[D] = C
                    slot[D] = q0
                    out_i[q0] = D
                    out_w[q0] = wt
                    q0 += 1
                else:
                    out_w[slot[D]] += wt
        new_self[C] = s
    return ptr, out_i, out_w, new_self


def _cm_split(indptr, indices, comm, out, queue):  # pragma: no cover - numba
    """Each community's connected parts as communities of their own (a breadth-first
    search inside the community from every resident not yet reached), numbered 0..c-1 in
    order of their first member; returns c. Splitting a disconnected community never
    lowers modularity (same weight inside, smaller squared shares)."""
    n = comm.size
    for i in range(n):
        out[i] = -1
    c = 0
    for s in range(n):
        if out[s] >= 0:
            continue
        out[s] = c
        queue[0] = s
        head = 0
        tail = 1
        cs = comm[s]
        while head < tail:
            u = queue[head]
            head += 1
            for p in range(indptr[u], indptr[u + 1]):
                v = indices[p]
                if out[v] < 0 and comm[v] == cs:
                    out[v] = c
                    queue[tail] = v
                    tail += 1
        c += 1
    return c


def _cm_quality(indptr, indices, w, unit, labels, c, two_m):  # pragma: no cover - numba
    """Modularity of `labels` (0..c-1) in one pass over the ties, O(c) extra memory."""
    inside = 0.0
    tot = np.zeros(c)
    for u in range(labels.size):
        cu = labels[u]
        for p in range(indptr[u], indptr[u + 1]):
            wt = 1.0 if unit else w[p]
            tot[cu] += wt
            if labels[indices[p]] == cu:
                inside += wt
    q = inside / two_m
    for C in range(c):
        q -= (tot[C] / two_m) ** 2
    return q


def _community_kernels() -> dict[str, Any]:
    """The `_cm_*` functions compiled (numba's on-disk cache after the first build), or as
    they are where numba is not installed."""
    from . import kernels

    with _COMMUNITY_LOCK:
        if not _COMMUNITY:
            names = ("move", "refine", "renumber", "aggregate", "split", "quality")
            fns = {name: globals()[f"_cm_{name}"] for name in names}
            if kernels.AVAILABLE:
                import types

                import numba

                # compiled with kernels' prefetch intrinsic in place of the plain no-op
                glob = dict(globals(), _prefetch=kernels.prefetch_intrinsic())

                def jit(f: Any, **options: Any) -> Any:
                    return numba.njit(cache=True, error_model="numpy", **options)(
                        types.FunctionType(f.__code__, glob, f.__name__, f.__defaults__,
                                           f.__closure__))

                glob["_cm_tally"] = jit(_cm_tally, inline="always")
                fns = {k: jit(f) for k, f in fns.items()}
            _COMMUNITY.update(fns)
    return _COMMUNITY


def _visiting_order(rng: np.random.Generator, n: int) -> np.ndarray:
    """Nodes 0..n-1 in blocks of FAST_LOUVAIN_BLOCK consecutive ids, the blocks in a drawn
    order and each block's nodes in a drawn order of their own (int32).

    Why blocks: residents are numbered ward by ward, so a block's rows, labels and
    community totals stay in cache while it is visited; a random permutation of all n
    nodes missed the cache on almost every read (~1 us a visit at 10^6). Why random
    inside: consecutive residents visited in id order lost 0.005-0.05 of modularity."""
    b = FAST_LOUVAIN_BLOCK
    nb = -(-n // b)
    grid = rng.permuted(np.arange(nb * b, dtype=np.int32).reshape(nb, b), axis=1)
    flat = grid[rng.permutation(nb)].ravel()
    return flat[flat < n] if nb * b != n else flat


def _fast_louvain_round(net: Network, rng: np.random.Generator, k: np.ndarray, two_m: float,
                        init: np.ndarray | None, cm: dict[str, Any]) -> np.ndarray:
    """One pass of Leiden's scheme: local moving, refinement, the graph of the refined
    communities, level after level, from `init` (None: every resident alone); returns
    each resident's community (int32 0..c-1, before splitting into connected parts)."""
    unit = net.weights is None
    indptr, indices = net.indptr, net.indices
    w = np.zeros(0, dtype=np.int32) if unit else net.weights  # int32: counts, see aggregate
    selfw = np.zeros(net.n)
    node = np.arange(net.n, dtype=np.int32)  # each resident's node in the current graph
    comm = node.copy() if init is None else init.astype(np.int32)
    level_k = k
    level = 0
    while True:
        nl = comm.size
        tot = np.bincount(comm, weights=level_k, minlength=nl)
        # the residents in shuffled blocks (cache-friendly, see _visiting_order); the
        # graphs of communities in a random permutation: shuffled blocks there too lost
        # 0.04 of modularity at 10^6 (0.7525 against 0.7908), at level 0 only 0.0014
        order = _visiting_order(rng, nl) if level == 0 else rng.permutation(nl).astype(np.int32)
        level += 1
        max_row = max(int(np.diff(indptr).max()) if nl else 0, 1)
        acc, cand, cand_w = np.zeros(nl), np.empty(max_row, dtype=np.int32), np.empty(max_row)
        cm["move"](indptr, indices, w, unit, level_k, comm, tot, order, two_m,
                   np.empty(nl, dtype=np.int32), np.zeros(nl, dtype=np.uint8), acc, cand,
                   cand_w)
        del tot
        c = cm["renumber"](comm, np.full(nl, -1, dtype=np.int32))
        if c == nl:
            return comm[node]
        ctot = np.bincount(comm, weights=level_k, minlength=c)
        sub = cm["refine"](indptr, indices, w, unit, level_k, comm, ctot, order, two_m, acc,
                           cand, cand_w)
        del order, acc, cand, cand_w, ctot
        r = cm["renumber"](sub, np.full(nl, -1, dtype=np.int32))
        if r == nl:  # refinement merged nothing: build the graph of the communities
            sub, r, comm = comm, c, np.arange(c, dtype=np.int32)
        else:
            parent = np.empty(r, dtype=np.int32)
            parent[sub] = comm
            comm = parent
        indptr, indices, w, selfw = cm["aggregate"](indptr, indices, w, unit, selfw, sub, r)
        unit = False
        level_k = np.bincount(sub, weights=level_k, minlength=r)  # strength is additive
        node = sub[node]


def _fast_louvain(net: Network, rng: np.random.Generator) -> np.ndarray:
    """Fast Louvain communities: a round of `_fast_louvain_round` from singletons, its
    communities split into connected parts, then rounds from the previous partition
    while one gains >= FAST_LOUVAIN_TOL (at most FAST_LOUVAIN_ROUNDS). Returns int32
    labels 0..c-1 numbered in order of first member, every community connected."""
    cm = _community_kernels()
    n = net.n
    unit = net.weights is None
    w = np.zeros(0) if unit else net.weights
    k = degree_scores(net)
    two_m = float(k.sum())
    if two_m == 0:
        return np.arange(n, dtype=np.int32)
    queue = np.empty(n, dtype=np.int32)
    labels = np.empty(n, dtype=np.int32)
    best_q = -math.inf
    best = np.arange(n, dtype=np.int32)
    init = None
    for _ in range(FAST_LOUVAIN_ROUNDS):
        comm = _fast_louvain_round(net, rng, k, two_m, init, cm)
        c = cm["split"](net.indptr, net.indices, comm, labels, queue)
        del comm
        q = cm["quality"](net.indptr, net.indices, w, unit, labels, c, two_m)
        if q <= best_q:
            break
        gain = q - best_q
        best_q = q
        best, labels = labels, best
        if gain < FAST_LOUVAIN_TOL:
            break
        init = best
    return best


def _relabel_dense(labels: np.ndarray) -> np.ndarray:
    """`_relabel_by_size` for labels 0..c-1 already numbered in order of first member
    (then the stable order of sizes breaks ties by first member): no sort of n labels."""
    counts = np.bincount(labels)
    new = np.empty(counts.size, dtype=np.int64)
    new[np.argsort(-counts, kind="stable")] = np.arange(counts.size)
    return new[labels]


#: "auto" (the default) runs igraph's Leiden up to AUTO_LEIDEN_MAX_N residents, so every
#: scenario of that size keeps the partitions it had, and fast Louvain above it, where
#: Leiden's time (~70 s at 10^6 households on a quiet 2-core machine; 156-213 s under
#: load) and igraph's own copy of the graph (9.7 GB at 10^7) rule it out. Both reach the
#: same modularity where both were measured: 0.7602 on a 2*10^5 national graph, 0.790
#: (fast) vs 0.792 (Leiden) at 10^6. "label_propagation" is an older name for "auto"
#: (label propagation itself gave 1 to 5,840 communities on the borough depending on the
#: seed, modularity 0-0.15).
COMMUNITY_METHODS = ("auto", "leiden", "fast_louvain", "label_propagation", "greedy_modularity")
AUTO_LEIDEN_MAX_N = 100_000
#: igraph's peak per tie end while it builds its graph and runs Leiden: 9.7 GB for the
#: 10^8 tie ends of the national graph at 10^7 households (graph build alone), 1.2 GB
#: for 10^7 at 10^6 (whole process, Leiden included): ~100 B (measured 2026-12-02).
IGRAPH_BYTES_PER_TIE_END = 100
#: fast Louvain's peak above the graph it reads: work arrays of ~100 B per resident and
#: two graphs of communities at once (the one read and the one built), each with ~0.9 of
#: the tie ends on the national graph at 8 B each (int32 neighbour and tie count):
#: 15 B per tie end (measured at 10^6: see docs/model.md).
FAST_LOUVAIN_BYTES_PER_RESIDENT = 100
FAST_LOUVAIN_BYTES_PER_TIE_END = 15


def community_method(method: str, n: int) -> str:
    """The method that runs for `method` on n residents ("auto" and its old name resolved)."""
    if method in ("auto", "label_propagation"):
        return "leiden" if n <= AUTO_LEIDEN_MAX_N else "fast_louvain"
    return method


def community_memory(method: str, n: int, tie_ends: int) -> int:
    """Bytes `method` needs above the graph it reads (limits.py adds it to a run's estimate)."""
    method = community_method(method, n)
    if method == "leiden":
        return IGRAPH_BYTES_PER_TIE_END * tie_ends
    if method == "fast_louvain":
        return FAST_LOUVAIN_BYTES_PER_RESIDENT * n + FAST_LOUVAIN_BYTES_PER_TIE_END * tie_ends
    return 0


def community_labels(
    net: Network, method: str = "auto", rng: np.random.Generator | None = None
) -> np.ndarray:
    """Community of every resident, labelled 0..c-1 by community size descending.

    "leiden": Leiden modularity optimisation (Traag, Waltman & van Eck 2019, igraph's
    implementation), seeded from ``rng``; igraph copies the graph (~100 B per tie end),
    which a run's memory check counts (limits: a scenario whose copy cannot fit is
    refused before anything is built; this function itself does not check). "fast_louvain": the same scheme compiled on our
    CSR (`_fast_louvain`): O(n + ties) time, ~100 B per resident, same partition on any
    machine. "auto" (and its older name "label_propagation"): Leiden up to
    AUTO_LEIDEN_MAX_N residents, fast Louvain above. Both give connected communities
    with modularity close to the best known (0.76 on the borough). "greedy_modularity":
    networkx Clauset-Newman-Moore, deterministic, n <= NX_COMMUNITY_MAX_N. ``rng=None``
    uses a fixed seed so results stay deterministic.
    """
    n = net.n
    if method == "greedy_modularity":
        if n > NX_COMMUNITY_MAX_N:
            raise NetworkError(
                f"community method 'greedy_modularity' is limited to n <= {NX_COMMUNITY_MAX_N} "
                f"(it is O(n^2) in networkx); got n={n}, use 'auto'"
            )
        import networkx as nx

        groups = nx.community.greedy_modularity_communities(net.to_networkx(), weight="weight")
        return _labels_from_groups(list(groups), n)
    if method not in COMMUNITY_METHODS:
        raise NetworkError(
            f"unknown community method {method!r}; use one of {', '.join(COMMUNITY_METHODS)}"
        )
    if n == 0:
        return np.zeros(0, dtype=np.int64)
    seed = _seed_from(rng)
    if community_method(method, n) == "leiden":
        return _relabel_by_size(_leiden(net, seed))
    return _relabel_dense(_fast_louvain(net, np.random.default_rng(seed)))
