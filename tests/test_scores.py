"""Targeting scores at scale: compiled betweenness and the Leiden hand-over (issue 16).

The networkx oracles for small graphs live in test_network.py; here the compiled
betweenness searches are checked against their numpy twin (bit for bit), against the
batched implementation they replaced (up to summation order) and against hand-worked
values, and the numpy edge hand-over to igraph against the list hand-over it replaced.
"""

from __future__ import annotations

import networkx as nx
import numpy as np
import pytest

from nudgesim import kernels, scores
from nudgesim.network import (
    Network,
    WardClustered,
    build_network,
    from_edges,
    from_networkx,
)
from nudgesim.scores import betweenness_scores, community_labels, kcore_scores

numba_only = pytest.mark.skipif(not kernels.AVAILABLE, reason="numba not installed")


def _ward_graph(n_wards: int, size: int, seed: int) -> Network:
    spec = WardClustered(mean_degree_in=8.0, mean_degree_out=2.0)  # the borough's shape
    return build_network(spec, np.repeat(np.arange(n_wards), size), np.random.default_rng(seed))


def _old_betweenness(net: Network, rng: np.random.Generator, samples: int) -> np.ndarray:
    """The implementation before issue 16 (batches summed with numpy's pairwise sum)."""
    n = net.n
    exact = n <= samples
    sources = np.arange(n) if exact else np.sort(rng.choice(n, size=samples, replace=False))
    A = net.matrix().copy()
    A.data[:] = 1.0
    batch = int(max(1, min(64, 4_000_000 // n)))
    score = np.zeros(n)
    for lo in range(0, len(sources), batch):
        score += scores._brandes_dependencies(A, sources[lo : lo + batch]).sum(axis=1)
    if exact:
        return score / ((n - 1) * (n - 2))
    k = samples
    is_src = np.zeros(n, dtype=bool)
    is_src[sources] = True
    return score * np.where(is_src, 1.0 / ((k - 1) * (n - 2)), 1.0 / (k * (n - 2)))


def _both(net: Network, seed: int, samples: int, monkeypatch) -> tuple[np.ndarray, np.ndarray]:
    with monkeypatch.context() as m:
        m.setattr(kernels, "ENABLED", False)
        a = betweenness_scores(net, np.random.default_rng(seed), samples=samples)
        m.setattr(kernels, "ENABLED", True)
        b = betweenness_scores(net, np.random.default_rng(seed), samples=samples)
    return a, b


def _graphs() -> list[Network]:
    G = nx.powerlaw_cluster_graph(300, 3, 0.3, seed=3)
    two = nx.disjoint_union(nx.path_graph(7), nx.cycle_graph(9))  # two components
    two.add_node(16)  # and an isolated resident
    return [from_networkx(G), _ward_graph(6, 120, seed=1), from_networkx(two)]


# --------------------------------------------------------------------------- betweenness


def test_betweenness_hand_worked_path():
    """Path 0-1-2-3-4: resident 2 lies on 4 of the 6 pairs not ending at it, resident 1
    on 3; normalised by (n-1)(n-2)/2 = 6 (networkx's undirected normalisation)."""
    net = from_edges(5, np.arange(4), np.arange(1, 5))
    got = betweenness_scores(net, np.random.default_rng(0), samples=5)
    assert got.tolist() == pytest.approx([0.0, 3 / 6, 4 / 6, 3 / 6, 0.0], abs=1e-15)


@numba_only
@pytest.mark.parametrize("samples", [1000, 64, 5])
def test_compiled_equals_numpy_bit_for_bit(samples, monkeypatch):
    for net in _graphs():
        a, b = _both(net, 11, samples, monkeypatch)
        assert np.array_equal(a, b)


@numba_only
def test_compiled_matches_networkx_exactly_on_disconnected_graph(monkeypatch):
    two = nx.disjoint_union(nx.path_graph(7), nx.cycle_graph(9))
    ref = nx.betweenness_centrality(two)
    monkeypatch.setattr(kernels, "ENABLED", True)
    got = betweenness_scores(from_networkx(two), np.random.default_rng(0), samples=100)
    assert np.allclose(got, [ref[i] for i in range(two.number_of_nodes())], rtol=1e-12, atol=0)


@pytest.mark.parametrize("samples", [1000, 40])
def test_equals_the_replaced_batched_implementation(samples, monkeypatch):
    """Same sources, same per-source dependencies; only the order of the final sum over
    sources changed (numpy's pairwise sum over a batch, now source by source): relative
    difference within 1e-12 (measured: 2e-15 at 20,000 households, 256 sources)."""
    monkeypatch.setattr(kernels, "ENABLED", False)
    for net in _graphs():
        new = betweenness_scores(net, np.random.default_rng(4), samples=samples)
        old = _old_betweenness(net, np.random.default_rng(4), samples)
        assert np.allclose(new, old, rtol=1e-12, atol=1e-15)


def test_numpy_path_does_not_depend_on_its_batch_size(monkeypatch):
    net = _graphs()[1]
    monkeypatch.setattr(kernels, "ENABLED", False)
    a = betweenness_scores(net, np.random.default_rng(2), samples=50)
    monkeypatch.setattr(scores, "BETWEENNESS_BATCH_CELLS", net.n * 3)  # batches of 3
    b = betweenness_scores(net, np.random.default_rng(2), samples=50)
    assert np.array_equal(a, b)


@numba_only
def test_compiled_does_not_depend_on_thread_count(monkeypatch):
    """Above PARALLEL_MIN_N the searches run on several threads; the sum is in source
    order whatever their number."""
    net = _ward_graph(7, 8_000, seed=5)  # 56,000 households
    assert net.n >= kernels.PARALLEL_MIN_N
    monkeypatch.setattr(kernels, "ENABLED", True)
    with kernels.threads(1):
        one = betweenness_scores(net, np.random.default_rng(9), samples=5)
    many = betweenness_scores(net, np.random.default_rng(9), samples=5)
    assert np.array_equal(one, many)
    monkeypatch.setattr(kernels, "ENABLED", False)
    assert np.array_equal(one, betweenness_scores(net, np.random.default_rng(9), samples=5))


def test_path_choice(monkeypatch):
    monkeypatch.setattr(kernels, "AVAILABLE", True)
    monkeypatch.setattr(kernels, "ENABLED", None)
    cells = scores.BETWEENNESS_COMPILED_MIN_CELLS
    assert not scores.compiled_betweenness(cells // 256 - 1, 256)
    assert scores.compiled_betweenness(cells // 256 + 1, 256)
    monkeypatch.setattr(kernels, "ENABLED", True)
    assert scores.compiled_betweenness(10, 5)
    monkeypatch.setattr(kernels, "ENABLED", False)
    assert not scores.compiled_betweenness(10**8, 256)
    monkeypatch.setattr(kernels, "AVAILABLE", False)
    monkeypatch.setattr(kernels, "ENABLED", None)
    assert not scores.compiled_betweenness(10**8, 256)


@numba_only
def test_a_long_chain_is_walked_level_by_level_not_resident_by_level():
    """A ring of 3,000 with one chord has ~1,500 levels from each source: the compiled
    search walks each level's own list (n log n), never all residents per level, and
    still equals the numpy twin bit for bit and networkx to rounding."""
    n = 3_000
    u = np.append(np.arange(n), 0)
    v = np.append((np.arange(n) + 1) % n, n // 3)
    net = from_edges(n, u, v)
    a = betweenness_scores(net, np.random.default_rng(8), samples=7, compiled=True)
    b = betweenness_scores(net, np.random.default_rng(8), samples=7, compiled=False)
    assert np.array_equal(a, b)
    exact = betweenness_scores(from_edges(60, np.arange(59), np.arange(1, 60)),
                               np.random.default_rng(0), samples=60, compiled=True)
    ref = nx.betweenness_centrality(nx.path_graph(60))
    assert exact == pytest.approx([ref[i] for i in range(60)], abs=1e-12)


def test_a_forced_path_gives_the_same_scores():
    """compiled=True/False (a benchmark timing a few sources as 256 would run) changes
    the path, never the scores."""
    pytest.importorskip("numba")
    net = build_network(WardClustered(mean_degree_in=6.0, mean_degree_out=1.0), np.repeat(np.arange(4), 50), np.random.default_rng(3))
    a = betweenness_scores(net, np.random.default_rng(4), samples=6, compiled=False)
    b = betweenness_scores(net, np.random.default_rng(4), samples=6, compiled=True)
    assert np.array_equal(a, b)


# --------------------------------------------------------------------------- Leiden


def _igraph_graph_with_lists(net: Network):
    """The hand-over before issue 16: nested Python lists."""
    import igraph

    rows = np.repeat(np.arange(net.n, dtype=np.int64), net.degree)
    upper = rows < net.indices
    edges = np.column_stack([rows[upper], net.indices[upper].astype(np.int64)])
    graph = igraph.Graph(n=net.n, edges=edges.tolist())
    return graph, None if net.weights is None else net.weights[upper].tolist()


def test_igraph_edges_in_csr_order():
    net = from_edges(5, np.array([3, 0, 1, 0]), np.array([4, 1, 2, 2]), np.array([1, 2, 3, 4.0]))
    graph, weights = scores._igraph_graph(net)
    assert graph.vcount() == 5 and not graph.is_directed()
    assert graph.get_edgelist() == [(0, 1), (0, 2), (1, 2), (3, 4)]
    assert weights.tolist() == [2.0, 4.0, 3.0, 1.0]


@pytest.mark.parametrize("weighted", [False, True])
def test_leiden_partition_unchanged_by_the_numpy_hand_over(weighted, monkeypatch):
    net = _ward_graph(10, 150, seed=6)
    if weighted:
        w = np.random.default_rng(1).uniform(0.5, 2.0, net.indices.size)
        rows = np.repeat(np.arange(net.n), net.degree)
        upper = rows < net.indices
        net = from_edges(net.n, rows[upper], net.indices[upper], w[upper])
    for seed in (0, 3):
        new = community_labels(net, "leiden", np.random.default_rng(seed))
        with monkeypatch.context() as m:
            m.setattr(scores, "_igraph_graph", _igraph_graph_with_lists)
            old = community_labels(net, "leiden", np.random.default_rng(seed))
        assert np.array_equal(new, old)


# --------------------------------------------------------------------------- k-core


def test_kcore_matches_networkx_on_ward_graph():
    net = _ward_graph(5, 200, seed=8)
    ref = nx.core_number(net.to_networkx())
    assert kcore_scores(net).tolist() == [ref[i] for i in range(net.n)]
