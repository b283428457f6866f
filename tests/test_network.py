"""Tests for nudgesim.network: CSR invariants, statistical equivalence with networkx, I/O, scores."""

from __future__ import annotations

from types import SimpleNamespace

import networkx as nx
import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from nudgesim.network import (
    MAX_COMPLETE_N,
    Network,
    NetworkError,
    RowProduct,
    _edge_table_arrow,
    _edge_table_lines,
    build_network,
    from_edges,
    from_networkx,
    read_graph_file,
    read_network_file,
)
from nudgesim.scores import (
    betweenness_scores,
    community_labels,
    degree_scores,
    kcore_scores,
    modularity,
)

N = 2000  # small enough for networkx, large enough for stable graph statistics
SEEDS = range(5)
WARD = np.repeat(np.arange(8), N // 8)  # 8 contiguous wards of 250 residents


def spec(kind: str, **kw) -> SimpleNamespace:
    """Stand-in for the pydantic spec: only attribute access is used."""
    base = dict(kind=kind, weights=None, p_in=None, p_out=None, mean_degree_in=None,
                mean_degree_out=None)
    base.update(kw)
    return SimpleNamespace(**base)


def build(s: SimpleNamespace, seed: int, ward: np.ndarray = WARD) -> Network:
    return build_network(s, ward, np.random.default_rng(seed))


def stats(G: nx.Graph) -> tuple[float, float, float, int]:
    deg = np.array([d for _, d in G.degree()])
    return deg.mean(), deg.var(), nx.average_clustering(G), int(deg.max())


def mean_stats(graphs) -> np.ndarray:
    return np.mean([stats(G) for G in graphs], axis=0)


def assert_invariants(net: Network) -> None:
    net.validate()
    A = net.matrix()
    assert (A != A.T).nnz == 0
    assert A.has_sorted_indices
    assert net.indptr.dtype == np.int64 and net.indices.dtype == np.int32
    assert net.weights is None or net.weights.dtype == np.float64


# ----------------------------------------------------------------------- from_edges


def test_from_edges_exact_small_case():
    net = from_edges(4, np.array([0, 1, 2, 3, 3, 0]), np.array([1, 0, 2, 0, 1, 3]))
    # (0,1) twice, (2,2) self loop, (3,0) == (0,3) twice, (3,1)
    assert net.indptr.tolist() == [0, 2, 4, 4, 6]
    assert net.indices.tolist() == [1, 3, 0, 3, 0, 1]
    assert net.weights is None and net.unit  # unit weights are not stored
    assert net.tie_weights().tolist() == [1.0] * 6
    assert net.n == 4 and net.n_ties == 3
    assert net.degree.tolist() == [2, 2, 0, 2]
    assert_invariants(net)


def test_from_edges_weights_symmetric_first_listing_wins():
    net = from_edges(3, np.array([0, 2, 1]), np.array([2, 0, 2]), np.array([0.5, 9.0, 2.0]))
    A = net.matrix().toarray()
    assert A[0, 2] == A[2, 0] == 0.5
    assert A[1, 2] == A[2, 1] == 2.0
    assert_invariants(net)


def test_from_edges_rejects_bad_input():
    with pytest.raises(NetworkError, match="0..2"):
        from_edges(3, np.array([0]), np.array([3]))
    with pytest.raises(NetworkError, match=">= 0"):
        from_edges(3, np.array([0]), np.array([1]), np.array([-1.0]))


def test_matrix_shares_memory():
    net = build(spec("erdos_renyi", mean_degree=6), 0)
    A = net.matrix()
    assert np.shares_memory(A.indices, net.indices)
    assert net.unit and (A.data == 1.0).all()
    weighted = from_edges(3, np.array([0, 1]), np.array([1, 2]), np.array([0.5, 2.0]))
    assert np.shares_memory(weighted.matrix().data, weighted.weights)


def test_networkx_graph_with_unit_weights_stores_none():
    assert from_networkx(nx.path_graph(4)).unit
    assert not from_networkx(nx.Graph([(0, 1, {"weight": 2.0})])).unit


# ----------------------------------------------------------- builders vs networkx
# Tolerances: each figure is the mean over 5 seeds of a 2000-node graph.  Seed-to-seed
# standard deviations (measured with networkx) are ~0.5% for mean degree of G(n,p),
# ~3-5% for degree variance and ~5-10% for average clustering of sparse graphs, so
# the 5-seed means differ by < ~4% between two correct samplers; we allow 10% (15% for
# the tiny clustering of G(n,p) and BA, whose relative noise is largest).


def test_watts_strogatz_lattice_clustering_exact():
    for k in (4, 6, 10):
        net = build(spec("watts_strogatz", k=k, p=0.0), 0)
        assert np.all(net.degree == k)
        assert nx.average_clustering(net.to_networkx()) == pytest.approx(
            3 * (k - 2) / (4 * (k - 1)), abs=1e-12
        )


def test_watts_strogatz_matches_networkx():
    ours = mean_stats(build(spec("watts_strogatz", k=10, p=0.1), s).to_networkx() for s in SEEDS)
    ref = mean_stats(nx.watts_strogatz_graph(N, 10, 0.1, seed=s) for s in SEEDS)
    assert ours[0] == ref[0] == 10.0  # rewiring keeps the tie count
    assert ours[1] == pytest.approx(ref[1], rel=0.10)
    assert ours[2] == pytest.approx(ref[2], rel=0.10)


def test_barabasi_albert_matches_networkx():
    m = 5
    nets = [build(spec("barabasi_albert", m=m), s) for s in SEEDS]
    for net in nets:
        assert net.n_ties == m * (N - m)  # exactly as networkx
        assert net.degree[m + 1 :].min() >= m  # star leaves 1..m may stay below m, as in nx
    ours = mean_stats(net.to_networkx() for net in nets)
    ref = mean_stats(nx.barabasi_albert_graph(N, m, seed=s) for s in SEEDS)
    assert ours[1] == pytest.approx(ref[1], rel=0.15)
    assert ours[2] == pytest.approx(ref[2], rel=0.15)
    # heavy tail: share of residents with degree >= 4m (~6% in theory, P(k) ~ k^-3)
    tail_ours = np.mean([np.mean(net.degree >= 4 * m) for net in nets])
    tail_ref = np.mean(
        [np.mean(np.array([d for _, d in nx.barabasi_albert_graph(N, m, seed=s).degree()]) >= 4 * m)
         for s in SEEDS]
    )
    assert tail_ours == pytest.approx(tail_ref, rel=0.15)


def test_erdos_renyi_matches_networkx():
    ours = mean_stats(build(spec("erdos_renyi", mean_degree=10), s).to_networkx() for s in SEEDS)
    ref = mean_stats(nx.fast_gnp_random_graph(N, 10 / (N - 1), seed=s) for s in SEEDS)
    # mean degree of 5 x G(2000, p): sd ~ sqrt(2 * 10 / 2000 / 5) ~ 0.045; 0.3 is > 6 sd
    assert ours[0] == pytest.approx(10.0, abs=0.3)
    assert ours[1] == pytest.approx(ref[1], rel=0.10)
    assert ours[2] == pytest.approx(ref[2], rel=0.25)  # ~0.005, pure noise level


def test_ward_clustered_tie_counts():
    p_in, p_out = 0.04, 0.002
    sizes = [N // 8] * 8
    in_pairs = 8 * (N // 8) * (N // 8 - 1) / 2
    cross_pairs = N * (N - 1) / 2 - in_pairs
    ins, outs = [], []
    for s in SEEDS:
        net = build(spec("ward_clustered", p_in=p_in, p_out=p_out), s)
        rows = np.repeat(np.arange(N), net.degree)
        same = WARD[rows] == WARD[net.indices]
        ins.append(same.sum() / 2)
        outs.append((~same).sum() / 2)
    # 5-seed means; binomial sd of the mean is ~0.5% (in) / ~1% (out): allow 5%
    assert np.mean(ins) == pytest.approx(p_in * in_pairs, rel=0.05)
    assert np.mean(outs) == pytest.approx(p_out * cross_pairs, rel=0.05)
    ref = mean_stats(
        nx.stochastic_block_model(sizes, np.where(np.eye(8, dtype=bool), p_in, p_out).tolist(), seed=s)
        for s in SEEDS
    )
    ours = mean_stats(build(spec("ward_clustered", p_in=p_in, p_out=p_out), s).to_networkx() for s in SEEDS)
    assert ours[0] == pytest.approx(ref[0], rel=0.05)
    assert ours[2] == pytest.approx(ref[2], rel=0.15)


def test_ward_clustered_mean_degrees():
    ward = np.repeat(np.arange(4), [100, 300, 600, 1000])
    degs_in, degs_out = [], []
    for s in SEEDS:
        net = build(spec("ward_clustered", mean_degree_in=6.0, mean_degree_out=2.0), s, ward)
        rows = np.repeat(np.arange(ward.size), net.degree)
        same = ward[rows] == ward[net.indices]
        degs_in.append(same.sum() / ward.size)
        degs_out.append((~same).sum() / ward.size)
    assert np.mean(degs_in) == pytest.approx(6.0, rel=0.05)
    assert np.mean(degs_out) == pytest.approx(2.0, rel=0.05)
    with pytest.raises(NetworkError, match="exactly one"):
        build(spec("ward_clustered", p_in=0.1, mean_degree_in=3.0, p_out=0.01), 0)


def test_complete_and_limits():
    net = build(spec("complete"), 0, np.zeros(50, dtype=int))
    assert net.n_ties == 50 * 49 // 2
    assert_invariants(net)
    with pytest.raises(NetworkError, match="up to 5,000 residents"):
        build(spec("complete"), 0, np.zeros(MAX_COMPLETE_N + 1, dtype=int))
    with pytest.raises(NetworkError, match="unknown network kind"):
        build(spec("small_world"), 0)


def test_weights_applied_symmetrically():
    class Uniform:
        def sample(self, rng, size):
            return rng.uniform(0.5, 2.0, size)

    for kind, kw in [("erdos_renyi", {"mean_degree": 5}), ("watts_strogatz", {"k": 4, "p": 0.2}),
                     ("barabasi_albert", {"m": 3}), ("complete", {})]:
        net = build(spec(kind, weights=Uniform(), **kw), 1, WARD[:200])
        assert_invariants(net)
        assert net.weights.min() >= 0.5 and len(np.unique(net.weights)) == net.n_ties


@pytest.mark.parametrize(
    "s",
    [spec("watts_strogatz", k=6, p=0.3), spec("barabasi_albert", m=3), spec("erdos_renyi", mean_degree=4),
     spec("ward_clustered", p_in=0.05, p_out=0.005)],
    ids=lambda s: s.kind,
)
def test_deterministic_given_seed(s):
    a, b = build(s, 42), build(s, 42)
    for f in ("indptr", "indices", "weights"):
        assert np.array_equal(getattr(a, f), getattr(b, f))
    assert not np.array_equal(a.indices, build(s, 43).indices)


kinds = st.sampled_from(["watts_strogatz", "barabasi_albert", "erdos_renyi", "ward_clustered", "complete"])


@settings(max_examples=40, deadline=None)
@given(kind=kinds, n=st.integers(12, 120), seed=st.integers(0, 2**32 - 1),
       p=st.floats(0, 1), k2=st.integers(1, 5), n_wards=st.integers(1, 6))
def test_any_built_network_is_valid(kind, n, seed, p, k2, n_wards):
    ward = np.sort(np.random.default_rng(seed).integers(0, n_wards, n))
    s = spec(kind, k=2 * k2, p=p, m=min(k2, n - 1), mean_degree=p * (n - 1), p_in=p, p_out=p / 4)
    net = build(s, seed, ward)
    assert net.n == n
    assert_invariants(net)


# ----------------------------------------------------------------- networkx & files


def test_from_networkx_round_trip():
    G = nx.Graph()
    G.add_edge("a", "b", weight=2.0)
    G.add_edge("b", "c")
    G.add_edge("c", "c")  # self loop dropped
    G.add_node("lonely")
    net = from_networkx(G)
    assert net.node_ids == ["a", "b", "c", "lonely"]
    assert net.n_ties == 2
    H = net.to_networkx()
    assert sorted(H.edges(data="weight")) == [(0, 1, 2.0), (1, 2, 1.0)]
    back = nx.relabel_nodes(H, dict(enumerate(net.node_ids)))
    assert nx.utils.edges_equal(back.edges, [("a", "b"), ("b", "c")])


def test_from_networkx_directed_and_bad_weight():
    D = nx.DiGraph([(0, 1), (1, 0), (1, 2)])
    assert from_networkx(D).n_ties == 2
    G = nx.Graph()
    G.add_edge(1, 2, weight="heavy")
    with pytest.raises(NetworkError, match=r"\(1, 2\).*heavy"):
        from_networkx(G)
    G[1][2]["weight"] = -1
    with pytest.raises(NetworkError, match="-1"):
        from_networkx(G)


def test_read_edgelist_with_weights(tmp_path):
    f = tmp_path / "g.edges"
    f.write_text("# comment\n1 2 0.5\n2 3   # trailing comment\n\n3\t1 2\n")
    G = read_graph_file(f)
    assert sorted(G.nodes) == [1, 2, 3]
    assert G[1][2]["weight"] == 0.5 and "weight" not in G[2][3]
    net = from_networkx(G)
    assert net.node_ids == [1, 2, 3]
    assert sorted(net.weights.tolist()) == [0.5, 0.5, 1.0, 1.0, 2.0, 2.0]


def test_read_csv_with_header_and_string_ids(tmp_path):
    f = tmp_path / "g.csv"
    f.write_text("source,target,weight\nann,bob,1.5\nbob, 7,2\n")
    G = read_graph_file(f)
    assert list(G.nodes) == ["ann", "bob", "7"]  # not all integer: all stay strings
    assert G["bob"]["7"]["weight"] == 2.0


def test_read_graphml(tmp_path):
    f = tmp_path / "g.graphml"
    G0 = nx.Graph()
    G0.add_edge(1, 2, weight=3.0)
    G0.add_edge(2, 5)
    nx.write_graphml(G0, f)
    G = read_graph_file(f)
    assert sorted(G.nodes) == [1, 2, 5]
    assert G[1][2]["weight"] == 3.0


def test_read_errors_are_helpful(tmp_path):
    with pytest.raises(NetworkError, match=r"missing\.csv.*does not exist.*graphml"):
        read_graph_file(tmp_path / "missing.csv")
    bad = tmp_path / "bad.txt"
    bad.write_text("1 2\n1 2 3 4\n")
    with pytest.raises(NetworkError, match=r"line 2.*'1 2 3 4'") as exc:
        read_graph_file(bad)
    assert "\n" not in str(exc.value)
    bad.write_text("1 2\n3 4 heavy\n")
    with pytest.raises(NetworkError, match=r"line 2.*heavy.*not a number"):
        read_graph_file(bad)
    odd = tmp_path / "g.json"
    odd.write_text("{}")
    with pytest.raises(NetworkError, match=r"\.json.*edgelist.*graphml"):
        read_graph_file(odd)
    broken = tmp_path / "broken.graphml"
    broken.write_text("<graphml><graph")
    with pytest.raises(NetworkError, match="not valid GraphML"):
        read_graph_file(broken)


# --------------------------------------------------------------------------- scores


@pytest.fixture(scope="module")
def small_graph() -> tuple[Network, nx.Graph]:
    G = nx.powerlaw_cluster_graph(300, 3, 0.3, seed=3)
    for i, (u, v) in enumerate(G.edges):
        G[u][v]["weight"] = 1.0 + (i % 4)
    return from_networkx(G), G


def test_degree_scores(small_graph):
    net, G = small_graph
    ref = dict(G.degree(weight="weight"))
    assert np.allclose(degree_scores(net), [ref[i] for i in range(net.n)])


def test_degree_scores_of_unit_ties_are_the_row_lengths_and_keep_no_copy():
    net = build(spec("watts_strogatz", k=6, p=0.3), 2, np.zeros(500, np.int32))
    scores = degree_scores(net)
    assert scores.dtype == np.float64
    assert np.array_equal(scores, np.diff(net.indptr))
    assert "degree" not in vars(net)  # no int64 copy left cached for the rest of the run


def test_kcore_scores(small_graph):
    net, G = small_graph
    ref = nx.core_number(G)
    assert kcore_scores(net).tolist() == [ref[i] for i in range(net.n)]
    path = from_edges(50, np.arange(49), np.arange(1, 50))  # long peeling chain
    assert kcore_scores(path).tolist() == [1] * 50
    assert kcore_scores(from_edges(3, np.array([], int), np.array([], int))).tolist() == [0, 0, 0]


def test_betweenness_exact(small_graph):
    net, G = small_graph
    ref = nx.betweenness_centrality(G)  # normalized=True, unweighted
    got = betweenness_scores(net, np.random.default_rng(0), samples=net.n)
    assert np.allclose(got, [ref[i] for i in range(net.n)])


def test_betweenness_sampled_deterministic(small_graph):
    net, _ = small_graph
    a = betweenness_scores(net, np.random.default_rng(5), samples=64)
    b = betweenness_scores(net, np.random.default_rng(5), samples=64)
    assert np.array_equal(a, b)


def test_community_labels(small_graph):
    net, _ = small_graph
    for method in ("leiden", "label_propagation", "greedy_modularity"):
        lab = community_labels(net, method, np.random.default_rng(0))
        sizes = np.bincount(lab)
        assert lab.dtype == np.int64 and lab.min() == 0
        assert np.all(sizes[:-1] >= sizes[1:])  # ordered by size descending
        assert np.array_equal(lab, community_labels(net, method, np.random.default_rng(0)))
    with pytest.raises(NetworkError, match="unknown community method"):
        community_labels(net, "louvain")


def _ward_graph(n_wards: int, size: int, md_in: float, md_out: float, seed: int) -> Network:
    ward = np.repeat(np.arange(n_wards), size)
    s = spec("ward_clustered", mean_degree_in=md_in, mean_degree_out=md_out)
    return build_network(s, ward, np.random.default_rng(seed))


def test_leiden_recovers_planted_blocks():
    net = _ward_graph(6, 150, 12.0, 0.5, seed=1)  # strong blocks: 96% of ties inside
    lab = community_labels(net, "leiden", np.random.default_rng(0))
    planted = np.repeat(np.arange(6), 150)
    # exact recovery up to the names of the communities: one label per block, all distinct
    pairs = set(zip(planted.tolist(), lab.tolist()))
    assert len(pairs) == 6 and len({b for _, b in pairs}) == 6


def test_leiden_modularity_is_close_to_louvain_on_a_borough_like_graph():
    net = _ward_graph(12, 250, 8.0, 2.0, seed=2)  # the borough's shape, 3,000 residents
    G = net.to_networkx()
    best = max(
        nx.community.modularity(G, nx.community.louvain_communities(G, seed=s)) for s in range(3)
    )
    for seed in range(3):
        lab = community_labels(net, "leiden", np.random.default_rng(seed))
        q = modularity(net, lab)
        groups = [set(np.flatnonzero(lab == c).tolist()) for c in range(lab.max() + 1)]
        assert q == pytest.approx(nx.community.modularity(G, groups), abs=1e-9)
        assert q >= 0.9 * best
        for g in groups:  # Leiden's communities are connected
            assert nx.is_connected(G.subgraph(g))


def test_leiden_is_deterministic_and_leaves_python_random_alone():
    import random

    net = _ward_graph(8, 100, 6.0, 2.0, seed=3)
    random.seed(5)
    expected = random.random()
    random.seed(5)
    a = community_labels(net, "leiden", np.random.default_rng(7))
    assert random.random() == expected  # igraph drew from its own seeded generator
    assert np.array_equal(a, community_labels(net, "leiden", np.random.default_rng(7)))
    assert np.array_equal(a, community_labels(net, "label_propagation", np.random.default_rng(7)))
    assert np.array_equal(community_labels(net), community_labels(net))  # rng=None: fixed seed


def test_leiden_weighted_and_degenerate_graphs():
    # two triangles joined by a heavy tie: the heavy pair ends up together
    u, v = np.array([0, 1, 2, 3, 4, 5, 2]), np.array([1, 2, 0, 4, 5, 3, 3])
    w = np.array([1, 1, 1, 1, 1, 1, 50.0])
    lab = community_labels(from_edges(6, u, v, w), "leiden", np.random.default_rng(0))
    assert lab[2] == lab[3]
    empty = from_edges(4, np.array([], int), np.array([], int))
    assert community_labels(empty, "leiden").tolist() == [0, 1, 2, 3]
    assert np.isnan(modularity(empty, np.zeros(4, int)))
    assert community_labels(from_edges(0, np.array([], int), np.array([], int))).size == 0


def test_modularity_matches_networkx(small_graph):
    net, G = small_graph
    lab = np.arange(net.n) % 5
    groups = [set(np.flatnonzero(lab == c).tolist()) for c in range(5)]
    assert modularity(net, lab) == pytest.approx(nx.community.modularity(G, groups))
    with pytest.raises(NetworkError, match="labels"):
        modularity(net, lab[:-1])


# ------------------------------------------------------------------- edge list headers


@pytest.mark.parametrize("text", [
    "source,target\n0,1\n1,2\n",
    "u v\n0 1\n1 2\n",
    "from\tto\n0\t1\n1\t2\n",
    "Source, Target, Weight\n0, 1, 1\n1, 2, 1\n",
    "# ties\nx,y\n0,1\n1,2\n",  # unknown names, integer ids: a header too
])
def test_header_line_is_not_an_edge(tmp_path, text):
    f = tmp_path / "g.csv"
    f.write_text(text)
    net = read_network_file(f)
    assert net.n == 3 and net.node_ids == [0, 1, 2] and net.n_ties == 2
    assert sorted(read_graph_file(f).nodes) == [0, 1, 2]


def test_string_ids_and_headers(tmp_path):
    f = tmp_path / "g.csv"
    f.write_text("source,target\nann,bob\nbob,cy\n")
    assert read_network_file(f).node_ids == ["ann", "bob", "cy"]
    f.write_text("ann,bob\nbob,cy\n")  # first line names nodes used again: an edge
    assert read_network_file(f).node_ids == ["ann", "bob", "cy"]
    f.write_text("ann bob\ncy dee\n")  # unknown names, string ids: an edge
    assert read_network_file(f).n_ties == 2


EDGE_TEXTS = [
    "1 2\n2 3\n",
    "1,2\n2,3\n",
    "1\t2\t0.5\n2\t3\t2\n",
    "# c\n 1 ,  2 , 3  # tail\n\n2,3,1\r\n",
    "07 7\n7 8\n+9 8\n",  # 07 and 7 are one resident, +9 is 9
    "a b 1\nb c 2\na b 3\n",  # listed twice: the last weight counts
    "5 5\n5 6\n",  # self loop dropped, resident kept
    "1,2,\n2,3,\n",
    "1 2 1\n2 3\n",  # ragged: a missing weight counts as 1
    "x\u00a0y\ny z\n",  # a Unicode space separates too
]


@pytest.mark.parametrize("text", EDGE_TEXTS)
def test_fast_reader_agrees_with_line_reader(tmp_path, text):
    t = text.replace("\r\n", "\n")
    fast, slow = _edge_table_arrow(t), _edge_table_lines(t, tmp_path / "g.txt")
    if fast is not None:
        assert fast.node_ids == slow.node_ids
        assert fast.u.tolist() == slow.u.tolist() and fast.v.tolist() == slow.v.tolist()
        assert (fast.w is None) == (slow.w is None)
        if fast.w is not None:
            assert np.array_equal(fast.w, slow.w, equal_nan=True)
    f = tmp_path / "g.txt"
    f.write_text(text)
    net = read_network_file(f)
    ref = from_networkx(read_graph_file(f))  # the networkx route gives the same Network
    assert net.node_ids == ref.node_ids
    assert np.array_equal(net.indptr, ref.indptr) and np.array_equal(net.indices, ref.indices)
    assert np.array_equal(net.tie_weights(), ref.tie_weights())


def test_read_network_file_values(tmp_path):
    f = tmp_path / "g.txt"
    f.write_text("07 7\n7 8\n+9 8\n")
    assert read_network_file(f).node_ids == [7, 8, 9]
    f.write_text("a b 1\nb c 2\na b 3\n")
    net = read_network_file(f)
    assert net.node_ids == ["a", "b", "c"] and sorted(net.weights.tolist()) == [2, 2, 3, 3]
    f.write_text("5 5\n5 6\n")
    assert read_network_file(f).node_ids == [5, 6]
    f.write_text("1 2 1\n2 3\n")
    assert read_network_file(f).unit  # every tie weighs 1
    g = tmp_path / "g.graphml"
    nx.write_graphml(nx.path_graph(3), g)
    assert isinstance(read_network_file(g), nx.Graph)  # GraphML may carry traits


def test_read_network_file_errors_name_the_line(tmp_path):
    f = tmp_path / "g.csv"
    f.write_text("source,target,weight\n1,2,0.5\n2,3,-1\n")
    with pytest.raises(NetworkError, match=r"line 3.*'-1'.*finite and >= 0"):
        read_network_file(f)
    f.write_text("1,2,0.5\n2,3,heavy\n")
    with pytest.raises(NetworkError, match=r"line 2.*heavy.*not a number"):
        read_network_file(f)
    f.write_text("1 2\n1 2 3 4\n")
    with pytest.raises(NetworkError, match=r"line 2.*'1 2 3 4'"):
        read_network_file(f)
    f.write_bytes(b"\xff\xfe1 2\n")
    with pytest.raises(NetworkError, match="cannot read graph file"):
        read_network_file(f)


# -- the adjacency's product without scipy ------------------------------------------------

FLOATS = st.one_of(st.floats(allow_nan=True, allow_infinity=True, width=64),
                   st.sampled_from([0.0, -0.0, 1.0, 0.1, 1e300, -1e-300]))
WEIGHTS = st.one_of(st.floats(0.0, 1e300), st.sampled_from([0.0, 1.0, 0.1, 3.0]))  # what a network holds


@settings(max_examples=100, deadline=None)
@given(n=st.integers(0, 30), density=st.floats(0.0, 1.0), weighted=st.booleans(),
       seed=st.integers(0, 2**32 - 1), data=st.data())
def test_row_product_is_scipys_product_bit_for_bit(n, density, weighted, seed, data):
    """Each row summed in stored order from 0.0, as scipy's csr_matvec does: the same bits
    for any weights and any x, with NaN, infinities, -0.0 and sums that round, and rows
    with no ties (n = 0 included)."""
    rng = np.random.default_rng(seed)
    upper = np.triu(rng.random((n, n)) < density, 1)
    g = nx.Graph()
    g.add_nodes_from(range(n))
    for u, v in zip(*np.nonzero(upper)):
        g.add_edge(int(u), int(v), weight=data.draw(WEIGHTS) if weighted else 1.0)
    net = from_networkx(g)
    x = np.array(data.draw(st.lists(FLOATS, min_size=n, max_size=n)), dtype=np.float64)
    with np.errstate(all="ignore"):
        ours, scipys = RowProduct.of(net) @ x, net.matrix() @ x
    assert ours.tobytes() == scipys.tobytes()


def test_row_product_by_hand():
    """A star with a pendant edge (rows of 3, 1, 1, 2 and 1 ties) and weights: every row's
    terms in stored order, the rows with most ties first in the position-major layout."""
    net = from_edges(5, np.array([0, 0, 0, 3]), np.array([1, 2, 3, 4]), np.array([0.5, 2.0, 1.0, 4.0]))
    product = RowProduct.of(net)
    assert product.order.tolist() == [0, 3, 1, 2, 4]
    assert product.counts.tolist() == [5, 2, 1]  # rows with more than 0, 1, 2 ties
    assert product.cols.tolist() == [1, 0, 0, 0, 3, 2, 4, 3]  # first ties, second, third
    x = np.array([1.0, 10.0, 100.0, 1000.0, 10000.0])
    assert (product @ x).tolist() == [0.5 * 10 + 2.0 * 100 + 1000, 0.5, 2.0, 1 + 4.0 * 10000, 4000.0]
    assert product.weights.tolist() == [0.5, 1.0, 0.5, 2.0, 4.0, 2.0, 4.0, 1.0]
