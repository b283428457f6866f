"""The graph build (network._from_edges, _csr_from_keys, the builders' edge arrays):
bit-identical to the scipy COO->CSR build it replaced, for every graph kind, seed and
size, while holding ~8 bytes per tie end instead of ~41."""

import hashlib
import json
import subprocess
import sys
import textwrap
import tracemalloc
from types import SimpleNamespace
from unittest.mock import patch

import numpy as np
import pytest
import scipy.sparse as sp
from hypothesis import given, settings
from hypothesis import strategies as st

from nudgesim import memory, network
from nudgesim.network import Network, WardKernel, build_network, from_edges
from nudgesim.registry import GRAPHS

# --- the builder before this change (commit 2e69905), kept as the reference -------------


def old_from_edges(n, u, v, w, assume_unique):
    """network._from_edges + _symmetric_csr as they were: scipy's COO->CSR conversion."""
    u, v = np.asarray(u), np.asarray(v)
    idx_dtype = np.int32 if n <= np.iinfo(np.int32).max else np.int64
    keep = u != v
    if not keep.all():
        u, v = u[keep], v[keep]
        w = None if w is None else w[keep]
    lo = np.minimum(u, v).astype(idx_dtype, copy=False)
    hi = np.maximum(u, v).astype(idx_dtype, copy=False)
    if not assume_unique and lo.size:
        keys = lo.astype(np.int64) * n + hi
        if w is None:
            keys = np.unique(keys)
        else:
            order = np.argsort(keys, kind="stable")
            keys = keys[order]
            first = np.empty(keys.size, dtype=bool)
            first[0] = True
            np.not_equal(keys[1:], keys[:-1], out=first[1:])
            keys, w = keys[first], w[order[first]]
        lo = (keys // n).astype(idx_dtype)
        hi = (keys - lo.astype(np.int64) * n).astype(idx_dtype)
    m = lo.size
    rows = np.concatenate([lo, hi])
    cols = np.concatenate([hi, lo])
    data = np.ones(2 * m) if w is None else np.concatenate([w, w])
    A = sp.coo_array((data, (rows, cols)), shape=(n, n)).tocsr()
    A.sort_indices()
    return Network(A.indptr.astype(np.int64), A.indices, None if w is None else A.data)


def old_build_network(s, ward, rng):
    """build_network as it was, on the builders' edge arrays (whose values are unchanged)."""
    n = ward.size
    u, v, unique, *_ = GRAPHS[s.kind].build(s, ward, rng)
    if s.weights is None:
        return old_from_edges(n, u, v, None, unique)
    if not unique:
        net = old_from_edges(n, u, v, None, False)
        rows = np.repeat(np.arange(n, dtype=np.int64), net.degree)
        upper = rows < net.indices
        u, v = rows[upper], net.indices[upper].astype(np.int64)
    return old_from_edges(n, u, v, s.weights.sample(rng, u.size), True)


def assert_same(a: Network, b: Network) -> None:
    assert a.indptr.dtype == b.indptr.dtype and a.indices.dtype == b.indices.dtype
    assert np.array_equal(a.indptr, b.indptr)
    assert np.array_equal(a.indices, b.indices)
    assert (a.weights is None) == (b.weights is None)
    if a.weights is not None:
        assert a.weights.tobytes() == b.weights.tobytes()


# --- graphs recorded before the change ---------------------------------------------------


class Uniform:
    def sample(self, rng, size):
        return rng.uniform(0.5, 2.0, size)


def spec(kind, **kw):
    base = dict(kind=kind, weights=None, p_in=None, p_out=None, mean_degree_in=None,
                mean_degree_out=None, cross="uniform", _ward_kernel=None)
    base.update(kw)
    return SimpleNamespace(**base)


def ring_kernel(w):
    k = np.zeros((w, w))
    for i in range(w):
        k[i, (i + 1) % w] = k[(i + 1) % w, i] = 1.0
    return WardKernel(k)


def line_kernel(w):
    x = np.arange(w, dtype=float)
    return WardKernel(np.exp(-np.abs(x[:, None] - x[None, :]) / 2.0))


W8 = np.repeat(np.arange(8), 250)
SHUF = np.random.default_rng(7).permutation(np.repeat(np.arange(12), 400))
CASES = {
    "ws_k4": (spec("watts_strogatz", k=4, p=0.1), np.zeros(500, int)),
    "ws_k10_p03": (spec("watts_strogatz", k=10, p=0.3), np.zeros(5000, int)),
    "ws_p0": (spec("watts_strogatz", k=6, p=0.0), np.zeros(300, int)),
    "ws_full": (spec("watts_strogatz", k=8, p=0.5), np.zeros(8, int)),
    "ws_tiny_dups": (spec("watts_strogatz", k=4, p=0.9), np.zeros(6, int)),
    "ws_w": (spec("watts_strogatz", k=4, p=0.2, weights=Uniform()), np.zeros(800, int)),
    "ws_tiny_w": (spec("watts_strogatz", k=4, p=0.9, weights=Uniform()), np.zeros(6, int)),
    "ba_m3": (spec("barabasi_albert", m=3), np.zeros(2000, int)),
    "ba_m1": (spec("barabasi_albert", m=1), np.zeros(50, int)),
    "ba_w": (spec("barabasi_albert", m=2, weights=Uniform()), np.zeros(600, int)),
    "er": (spec("erdos_renyi", mean_degree=6), np.zeros(3000, int)),
    "er_w": (spec("erdos_renyi", mean_degree=3, weights=Uniform()), np.zeros(700, int)),
    "wc_md": (spec("ward_clustered", mean_degree_in=8.0, mean_degree_out=2.0), W8),
    "wc_p": (spec("ward_clustered", p_in=0.05, p_out=0.002), W8),
    "wc_shuf": (spec("ward_clustered", mean_degree_in=6.0, mean_degree_out=1.5), SHUF),
    "wc_w": (spec("ward_clustered", mean_degree_in=5.0, mean_degree_out=1.0,
                  weights=Uniform()), SHUF),
    "wc_adj": (spec("ward_clustered", mean_degree_in=8.0, mean_degree_out=2.0,
                    cross="adjacent", _ward_kernel=ring_kernel(8)), W8),
    "wc_dist": (spec("ward_clustered", mean_degree_in=8.0, mean_degree_out=2.0,
                     cross="distance", _ward_kernel=line_kernel(12)), SHUF),
    "wc_dist_w": (spec("ward_clustered", mean_degree_in=4.0, mean_degree_out=2.0,
                       cross="distance", weights=Uniform(), _ward_kernel=line_kernel(12)),
                  SHUF),
    # the national benchmark's graph: wards of 8,000, 8 ties inside and 2 across
    "wc_big": (spec("ward_clustered", mean_degree_in=8.0, mean_degree_out=2.0),
               np.repeat(np.arange(25), 8000)),
    "complete": (spec("complete"), np.zeros(40, int)),
    "complete_w": (spec("complete", weights=Uniform()), np.zeros(30, int)),
    "empty": (spec("erdos_renyi", mean_degree=0), np.zeros(5, int)),
    "single": (spec("erdos_renyi", mean_degree=0), np.zeros(1, int)),
}


def digest(net: Network) -> str:
    h = hashlib.sha256()
    for a in (net.indptr, net.indices, net.weights):
        h.update(b"None" if a is None else str(a.dtype).encode() + a.tobytes())
    return h.hexdigest()[:20]


def edge_list_cases() -> dict[str, Network]:
    out = {}
    for seed in range(4):
        rng = np.random.default_rng(100 + seed)
        u, v = rng.integers(0, 60, 400), rng.integers(0, 60, 400)
        out[f"fe_{seed}"] = from_edges(60, u, v)
        out[f"fe_w_{seed}"] = from_edges(60, u, v, rng.uniform(0, 3, 400))
    out["fe_empty"] = from_edges(4, np.zeros(0, int), np.zeros(0, int))
    out["fe_loops"] = from_edges(3, np.array([0, 1, 2]), np.array([0, 1, 2]))
    return out


# sha256 of (indptr, indices, weights) with their dtypes, recorded with the builder of
# commit 2e69905 (scipy's COO->CSR) before the change
DIGESTS = {
    "ba_m1/0": "e5535ab49bbf785405ee",
    "ba_m1/1": "6a2a65559011b74d6470",
    "ba_m1/2": "4cff5cb78cdad52d679e",
    "ba_m3/0": "116d270ee893b7af3f9b",
    "ba_m3/1": "6f42318c31a33752454f",
    "ba_m3/2": "0f47bb5b55759dde4bd0",
    "ba_w/0": "ca95b397a768b82c53e3",
    "ba_w/1": "e556e8f3eecf1548f301",
    "ba_w/2": "db74de1c6915d9d93701",
    "complete/0": "34c6695d8db0ed09316c",
    "complete/1": "34c6695d8db0ed09316c",
    "complete/2": "34c6695d8db0ed09316c",
    "complete_w/0": "5d13ab4b50cd55d38f9d",
    "complete_w/1": "1b0ad59d29719c84a6a0",
    "complete_w/2": "86947f8f5c5201fe9c60",
    "empty/0": "de75cc4691981f3a7fb8",
    "empty/1": "de75cc4691981f3a7fb8",
    "empty/2": "de75cc4691981f3a7fb8",
    "er/0": "4cc90cb49421a4e63058",
    "er/1": "e9c068741badc9cbac56",
    "er/2": "13af923664eb2d251cae",
    "er_w/0": "82c7464bb670c30ade30",
    "er_w/1": "44452682cddba9aa5afb",
    "er_w/2": "28ba58076a1bb5fe8fcf",
    "fe_0": "f5e218b863ad346ced2c",
    "fe_1": "413863b5d12247765fb2",
    "fe_2": "2213d63c3f0f9014ddd9",
    "fe_3": "63ff2bfc2e1db1b4ebbf",
    "fe_empty": "9fd144b0c10048260e77",
    "fe_loops": "3902a09e444e051bc17d",
    "fe_w_0": "411376928b0211836924",
    "fe_w_1": "1aaf50d7cdda886de090",
    "fe_w_2": "ea9e64c6082f68084934",
    "fe_w_3": "1fd0d44c71046a76df29",
    "single/0": "bee58b4cc63f63bf2b75",
    "single/1": "bee58b4cc63f63bf2b75",
    "single/2": "bee58b4cc63f63bf2b75",
    "wc_adj/0": "2e901bf7fc425076a1db",
    "wc_adj/1": "4bf2d7ad0ed37dc35b4f",
    "wc_adj/2": "d5a6097be922611b0ccd",
    "wc_big/0": "d5a321ed793dfdcc73c0",
    "wc_big/1": "da1780b2326d17e12580",
    "wc_big/2": "1023e8d1bff5dd185929",
    "wc_dist/0": "bad61db6cd037d7f14c1",
    "wc_dist/1": "e3ad3d4d9243d887e50f",
    "wc_dist/2": "97518f991f794d397d44",
    "wc_dist_w/0": "163f3740cd928cf7ef62",
    "wc_dist_w/1": "431c882cf851f434b850",
    "wc_dist_w/2": "a4698340393ec7262734",
    "wc_md/0": "36390f399b3c0377db2e",
    "wc_md/1": "e1b76357bb1e1c863e13",
    "wc_md/2": "24a48e22d54159a5974a",
    "wc_p/0": "3b0276b169ede14ec273",
    "wc_p/1": "6f68bbc50688ed243625",
    "wc_p/2": "ae1ded0cf7169acfef72",
    "wc_shuf/0": "1800c8b9c4221457288e",
    "wc_shuf/1": "07b9ddc9b8b8aadf7187",
    "wc_shuf/2": "e1ed57239f3952bb5d05",
    "wc_w/0": "aaa268b824e037241e2c",
    "wc_w/1": "4b96bc1440dbcee9e16f",
    "wc_w/2": "6c173db8d3bb340c75ec",
    "ws_full/0": "59ae5139f295ccbc249a",
    "ws_full/1": "59ae5139f295ccbc249a",
    "ws_full/2": "59ae5139f295ccbc249a",
    "ws_k10_p03/0": "aef590fbf054c1ec3231",
    "ws_k10_p03/1": "d5c8c3a614ead6a9ea6e",
    "ws_k10_p03/2": "23b536e67b01104fed0b",
    "ws_k4/0": "493ef96394d91a43c9c2",
    "ws_k4/1": "79d6eb97f4c3de51044b",
    "ws_k4/2": "35cf2bce3380f7cf60be",
    "ws_p0/0": "b155d20901db6bfa2730",
    "ws_p0/1": "b155d20901db6bfa2730",
    "ws_p0/2": "b155d20901db6bfa2730",
    "ws_tiny_dups/0": "140d703b17810803176c",
    "ws_tiny_dups/1": "92d4173ac086e06a8c70",
    "ws_tiny_dups/2": "b42de671471844d03c44",
    "ws_tiny_w/0": "716cf5fc6a5f643724f5",
    "ws_tiny_w/1": "d32e5c6a50cae8ed421f",
    "ws_tiny_w/2": "45213e45d91c9d5bbde4",
    "ws_w/0": "e8722a0e9c31852c0b8a",
    "ws_w/1": "4ed08e1755546e92be45",
    "ws_w/2": "abacab629e09297e3f48",
}


@pytest.mark.parametrize("name", sorted(CASES))
def test_every_graph_kind_is_bit_identical_to_the_build_before(name):
    s, ward = CASES[name]
    for seed in (0, 1, 2):
        net = build_network(s, ward, np.random.default_rng(seed))
        net.validate()
        assert digest(net) == DIGESTS[f"{name}/{seed}"], (name, seed)


def test_edge_lists_are_bit_identical_to_the_build_before():
    for name, net in edge_list_cases().items():
        assert digest(net) == DIGESTS[name], name


@settings(max_examples=60, deadline=None)
@given(
    n=st.integers(1, 40),
    m=st.integers(0, 300),
    weighted=st.booleans(),
    chunk=st.sampled_from([1, 3, 64, 1 << 20]),
    seed=st.integers(0, 2**32 - 1),
)
def test_from_edges_equals_the_scipy_build(n, m, weighted, chunk, seed):
    """Repeats in either direction, self loops, weights (first listing wins) and chunk
    boundaries anywhere: the same CSR as scipy's conversion."""
    rng = np.random.default_rng(seed)
    u, v = rng.integers(0, n, m), rng.integers(0, n, m)
    w = rng.uniform(0, 3, m) if weighted else None
    with patch.object(network, "_CSR_CHUNK", chunk):
        net = from_edges(n, u.astype(np.int32), v, w)
    assert_same(net, old_from_edges(n, u, v, w, False))


KINDS = {
    "watts_strogatz": ("watts_strogatz", dict(k=4, p=0.3)),
    "barabasi_albert": ("barabasi_albert", dict(m=2)),
    "erdos_renyi": ("erdos_renyi", dict(mean_degree=4.0)),
    "ward_clustered": ("ward_clustered", dict(mean_degree_in=4.0, mean_degree_out=1.0)),
    "adjacent": ("ward_clustered", dict(mean_degree_in=3.0, mean_degree_out=1.5,
                                        cross="adjacent", _ward_kernel=ring_kernel(5))),
    "distance": ("ward_clustered", dict(p_in=0.05, p_out=0.01, cross="distance",
                                        _ward_kernel=line_kernel(5))),
    "complete": ("complete", {}),
}


@settings(max_examples=60, deadline=None)
@given(
    name=st.sampled_from(sorted(KINDS)),
    n=st.integers(30, 400),
    weighted=st.booleans(),
    shuffled=st.booleans(),
    chunk=st.sampled_from([5, 1 << 20]),
    seed=st.integers(0, 2**32 - 1),
)
def test_every_builder_equals_the_scipy_build_for_any_seed(name, n, weighted, shuffled,
                                                           chunk, seed):
    kind, kw = KINDS[name]
    s = spec(kind, weights=Uniform() if weighted else None, **kw)
    ward = np.arange(n) % 5
    if not shuffled:
        ward = np.sort(ward)
    with patch.object(network, "_CSR_CHUNK", chunk):
        net = build_network(s, ward, np.random.default_rng(seed))
    assert_same(net, old_build_network(s, ward, np.random.default_rng(seed)))


@pytest.mark.parametrize("name", sorted(KINDS))
@pytest.mark.parametrize("populate", [True, False])
def test_a_build_whose_arrays_are_all_backed_ahead_is_the_same(name, populate):
    # large arrays are backed on another thread while the build writes them
    # (memory.back_soon: the edge buffer, the CSR's arrays made with it or during the
    # sort, the keys): made so here for every array, with the system's populate call and
    # where it is missing; the graph is the one scipy's conversion builds
    kind, kw = KINDS[name]
    s = spec(kind, **kw)
    ward = np.sort(np.arange(300) % 5)
    with patch.object(memory, "TOUCH_MIN_BYTES", 0), \
            patch.object(memory, "_POPULATE_WRITE", 23 if populate else -1):
        net = build_network(s, ward, np.random.default_rng(3))
    assert_same(net, old_build_network(s, ward, np.random.default_rng(3)))


@pytest.mark.parametrize("populate", [True, False])
def test_backed_zeros_are_zeros_in_every_task(populate):
    with patch.object(memory, "TOUCH_MIN_BYTES", 0), \
            patch.object(memory, "_POPULATE_WRITE", 23 if populate else -1):
        a = memory.zeros(5 * (2 << 20) + 3, np.int64)  # tasks of 2 MB and a tail
        b = memory.zeros(0, np.int32)
        assert memory.back(b) and (populate or not memory.back(a))  # False: done nothing
    assert a.dtype == np.int64 and a.size == 5 * (2 << 20) + 3 and not a.any()
    assert b.dtype == np.int32 and b.size == 0


def test_backing_leaves_what_another_thread_writes_meanwhile():
    # MADV_POPULATE_WRITE backs pages without writing them: a buffer filled while it is
    # backed keeps every value (a zero fill there would lose some)
    a = np.zeros(8 << 20, dtype=np.int64)
    thread = memory.back_soon(a)
    for s in range(0, a.size, 1 << 16):
        a[s : s + (1 << 16)] = np.arange(s, s + (1 << 16))
    thread.join()
    assert np.array_equal(a, np.arange(a.size))


def test_a_buffer_that_outgrew_its_csr_arrays_gets_new_ones():
    # the CSR's arrays made ahead for the buffer's capacity are dropped when the ties
    # outnumber it; the graph is the same either way
    s = spec("ward_clustered", mean_degree_in=6.0, mean_degree_out=1.0)
    ward = np.sort(np.arange(400) % 4)
    real = network._EdgeBuffer.__init__

    def small(self, expected, dtype, n):
        real(self, expected / 50, dtype, n)

    with patch.object(memory, "TOUCH_MIN_BYTES", 0), \
            patch.object(network._EdgeBuffer, "__init__", small):
        net = build_network(s, ward, np.random.default_rng(5))
    assert_same(net, old_build_network(s, ward, np.random.default_rng(5)))


def test_a_weighted_build_makes_no_csr_arrays_with_its_edge_buffer():
    # its CSR (with weights) is made after the weights are drawn: arrays made ahead for
    # a unit-weight CSR would only take memory
    s = spec("ward_clustered", mean_degree_in=6.0, mean_degree_out=1.0, weights=Uniform())
    made = []
    real = network._csr_arrays

    def spy(n, m, weighted, before=()):
        made.append((weighted, len(before)))
        return real(n, m, weighted, before)

    with patch.object(memory, "TOUCH_MIN_BYTES", 0), patch.object(network, "_csr_arrays", spy):
        net = build_network(s, np.sort(np.arange(400) % 4), np.random.default_rng(5))
    assert made == [(True, 0)] and net.weights is not None


def test_the_edge_buffer_grows_past_its_estimate_keeping_order():
    buf = network._EdgeBuffer(0.0, np.int32, 2000)
    blocks = [np.arange(k, dtype=np.int64) for k in (700, 0, 900, 5)]
    for b in blocks:
        buf.add(b, b + 1)
    u, v, unique, csr = buf.ties()
    assert unique and csr is None  # a small buffer: no CSR arrays made ahead
    assert u.dtype == np.int32 and np.array_equal(u, np.concatenate(blocks))
    assert np.array_equal(v, np.concatenate(blocks) + 1)
    assert buf.pairs.size == 0  # handed on


def test_keys_are_written_over_the_edge_buffers_ties_and_nowhere_else():
    # _keys_over gives an int64 view exactly over an _EdgeBuffer's pairs: key i where
    # tie i's two ends were
    buf = network._EdgeBuffer(10.0, np.int32, 10)
    buf.add(np.array([3, 9, 4]), np.array([7, 2, 4]))
    u, v, _, _ = buf.ties()
    keys = network._keys_over(u, v)
    assert keys is not None and keys.size == 3 and np.shares_memory(keys, u)
    out = network._pair_keys(10, u, v, keys)
    assert out is keys and keys.tolist() == [3 * 10 + 7, 2 * 10 + 9, 4 * 10 + 4]
    # any other layout: none (separate arrays, int64 ends, a reversed pair of columns)
    pairs = np.array([[1, 2], [3, 4]], dtype=np.int32)
    assert network._keys_over(pairs[:, 1], pairs[:, 0]) is None
    assert network._keys_over(pairs[:, 0].copy(), pairs[:, 1].copy()) is None
    wide = pairs.astype(np.int64)
    assert network._keys_over(wide[:, 0], wide[:, 1]) is None
    assert network._keys_over(pairs[1:, 0], pairs[1:, 1]) is not None


def test_from_edges_leaves_the_callers_arrays_as_they_were():
    # only build_network's own buffers are written over (consume=True)
    pairs = np.array([[0, 1], [2, 1], [1, 0], [3, 2]], dtype=np.int32)
    before = pairs.copy()
    net = from_edges(4, pairs[:, 0], pairs[:, 1])
    assert np.array_equal(pairs, before)
    assert net.indptr.tolist() == [0, 1, 3, 5, 6]


def test_generated_ties_get_their_keys_in_place():
    seen = []
    real = network._pair_keys

    def spy(n, u, v, out=None):
        seen.append(out is not None and np.shares_memory(out, u))
        return real(n, u, v, out)

    s = spec("ward_clustered", mean_degree_in=4.0, mean_degree_out=1.0)
    with patch.object(network, "_pair_keys", spy):
        build_network(s, np.sort(np.arange(500) % 5), np.random.default_rng(1))
    assert seen == [True]


@pytest.mark.parametrize(
    "s, n",
    [(spec("ward_clustered", mean_degree_in=8.0, mean_degree_out=2.0), 200_000),
     (spec("erdos_renyi", mean_degree=10.0), 100_000)],
    ids=["ward_clustered", "erdos_renyi"],
)
def test_the_build_holds_under_nine_bytes_per_tie_end(s, n):
    """Allocations traced by numpy while the graph is built, with passes of 2^14 ties so
    that the fixed-size chunk buffers do not hide the per-tie cost at this size: the
    edge arrays or the output (4 bytes per tie end) plus one int64 key per tie (4), and
    three int64 per resident (ward order, row pointers, row shifts). The scipy build
    peaked at ~41 bytes per tie end."""
    ward = np.repeat(np.arange(n // 8000), 8000) if s.kind == "ward_clustered" else np.zeros(n, int)
    with patch.object(network, "_CSR_CHUNK", 1 << 14):
        tracemalloc.start()
        try:
            net = build_network(s, ward, np.random.default_rng(0))
            peak = tracemalloc.get_traced_memory()[1]
        finally:
            tracemalloc.stop()
    ends = net.indices.size
    assert ends > 9 * n
    assert peak <= 9 * ends + 24 * n, peak / ends


def test_a_build_leaves_only_its_graph_resident():
    """In a fresh process, the resident memory a 3*10^5-household ward-clustered build
    adds is its CSR (4 bytes per tie end + 8 per resident) and little else: the memory
    its temporaries took is handed back (without that, ~3 bytes per tie end stayed)."""
    code = textwrap.dedent(
        """
        import json, numpy as np
        from types import SimpleNamespace
        from nudgesim.network import build_network
        def rss():
            for line in open("/proc/self/status"):
                if line.startswith("VmRSS"):
                    return int(line.split()[1]) * 1024
        s = SimpleNamespace(kind="ward_clustered", weights=None, p_in=None, p_out=None,
                            mean_degree_in=8.0, mean_degree_out=2.0, cross="uniform")
        ward = np.repeat(np.arange(40), 7500)
        build_network(s, ward[:2000], np.random.default_rng(1))  # imports, warm-up
        before = rss()
        net = build_network(s, ward, np.random.default_rng(0))
        print(json.dumps([rss() - before, int(net.indices.size), net.n]))
        """
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                         check=True)
    kept, ends, n = json.loads(out.stdout.strip().splitlines()[-1])
    assert kept <= 4 * ends + 8 * n + 0.6 * ends, kept / ends


@given(st.lists(st.integers(0, 6), max_size=40), st.booleans())
def test_ward_groups_list_the_residents_of_each_ward_in_order(wards, contiguous):
    # residents listed ward by ward take a one-pass path with no order array: the same
    # runs (values and dtypes) and members as the stable sort and np.unique
    ward = np.array(sorted(wards) if contiguous else wards, dtype=np.int32)
    order = np.argsort(ward, kind="stable")
    _, starts, sizes = np.unique(ward[order], return_index=True, return_counts=True)
    groups = network._WardGroups(ward)
    assert (groups.order is None) == bool(ward.size and np.all(np.diff(ward) >= 0))
    for a, b in zip((groups.starts, groups.sizes), (starts, sizes)):
        assert a.dtype == b.dtype and np.array_equal(a, b)
    for k, size in enumerate(sizes):
        pos = np.arange(size, dtype=np.int32)[::-1]
        got = groups.members(k, pos)
        assert got.dtype == np.int64
        assert np.array_equal(got, order[starts[k] : starts[k] + size][pos])


def old_bernoulli_positions(n_trials, p, rng):
    """network._bernoulli_positions before it drew in chunks (commit e607d6a)."""
    if n_trials <= 0 or p <= 0:
        return np.empty(0, dtype=np.int64)
    if p >= 1:
        return np.arange(n_trials, dtype=np.int64)
    mean = n_trials * p
    batch = int(mean + 6 * np.sqrt(mean) + 16)
    chunks, last = [], -1
    while last < n_trials - 1:
        gaps = np.floor(np.log1p(-rng.random(batch)) / np.log1p(-p)) + 1.0
        pos = np.cumsum(np.minimum(gaps, float(n_trials + 1)).astype(np.int64)) + last
        chunks.append(pos)
        last = int(pos[-1])
    pos = np.concatenate(chunks)
    return pos[: np.searchsorted(pos, n_trials)]


@settings(deadline=None)
@given(n_trials=st.integers(0, 5000), p=st.sampled_from([0.0, 1e-9, 0.001, 0.02, 0.3, 0.9, 1.0]),
       step=st.sampled_from([None, 1, 3, 64, 10**6]), seed=st.integers(0, 2**32 - 1))
def test_bernoulli_chunks_are_the_positions_and_leave_the_generator_where_they_did(
        n_trials, p, step, seed):
    # drawn in chunks (the cross-ward ties) or at once, the same successes, and the
    # generator left at the same place for what is drawn next
    a, b = np.random.default_rng(seed), np.random.default_rng(seed)
    want = old_bernoulli_positions(n_trials, p, a)
    chunks = list(network._bernoulli_chunks(n_trials, p, b, step))
    got = np.concatenate(chunks) if chunks else np.empty(0, dtype=np.int64)
    assert got.dtype == np.int64 and np.array_equal(got, want)
    assert all(c.size <= (step or n_trials + 10**6) for c in chunks)
    assert np.array_equal(network._bernoulli_positions(n_trials, p, np.random.default_rng(seed)),
                          want)
    assert a.random() == b.random()
