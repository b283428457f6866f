"""The compiled kernels give the numpy engine's results bit for bit: every rule, every nudge
kind, weighted graphs, fractional influence, several norm messages, and the exact re-check
of near-tie decisions. Shapes are tiny so compilation (cached) dominates the runtime."""

from __future__ import annotations

import os
import subprocess
import sys

import networkx as nx
import numpy as np
import pytest
from cases import NETWORKS as BASE_NETWORKS
from cases import RULES
from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st

import nudgesim as ns
from nudgesim import kernels, rng
from nudgesim.engine import Engine
from nudgesim.network import from_edges
from nudgesim.nudges import Effects, Stamps

pytestmark = pytest.mark.skipif(not kernels.AVAILABLE, reason="numba not installed or disabled")


@pytest.fixture(autouse=True)
def compiled(monkeypatch):
    """Every engine here takes the kernels (tiny runs would choose numpy by themselves)."""
    monkeypatch.setattr(kernels, "ENABLED", True)

NETWORKS = [
    *BASE_NETWORKS,
    # weighted ties: the float path, summed in scipy's order
    {"kind": "watts_strogatz", "k": 4, "p": 0.2, "weights": {"dist": "uniform", "low": 0.1, "high": 2.0}},
]
NUDGES = [
    {"kind": "reminder", "every": 2},
    {"kind": "pledge"},
    {"kind": "norm_feedback", "every": 3},
    {"kind": "norm_feedback", "every": 2, "injunctive": True, "scope": "borough"},
    {"kind": "incentive", "cost_per_adopter": 1.0, "crowding_out": 0.5, "end": 5},
    {"kind": "canvassing"},
    {"kind": "information"},
    {"kind": "ambassadors", "targeting": {"strategy": "degree", "count": 5}},  # integer influence
    {"kind": "ambassadors", "influence": 2.5, "targeting": {"count": 7}},  # int8 x 2^-1
    {"kind": "ambassadors", "influence": 1.1, "targeting": {"count": 7}},  # float sums
    {"kind": "default", "start": 4},
    {"kind": "community_partnership", "wards": ["W02"], "duration": 4, "norm_salience": 0.5},
]


def small(seed, rule, network, nudges, steps=8, n=90):
    return ns.Scenario.from_dict({
        "seed": seed, "steps": steps, "population": {"size": n, "wards": 3}, "network": network,
        "rule": rule, "initial_adopters": 0.15, "nudges": list(nudges),
    })


def run_both(sc, monkeypatch, graph=None):
    fast = ns.simulate(sc, graph=graph)
    with monkeypatch.context() as m:
        m.setattr(kernels, "ENABLED", False)
        slow = ns.simulate(sc, graph=graph)
    return fast, slow


def assert_same(a, b):
    assert a.timeseries.equals(b.timeseries)
    assert a.by_ward.equals(b.by_ward)
    assert np.array_equal(a.adopted, b.adopted)


def pin_block(monkeypatch, size=kernels.BLOCK):
    """Decide in blocks of `size` (tests that size their populations in blocks): the
    kernels' block() would choose by this machine's L2 cache."""
    monkeypatch.setattr(kernels, "block", lambda: size)


SETTINGS = settings(max_examples=30, deadline=None,
                    suppress_health_check=[HealthCheck.too_slow, HealthCheck.function_scoped_fixture])


@SETTINGS
@given(seed=st.integers(0, 10**6), rule=st.sampled_from(RULES), network=st.sampled_from(NETWORKS),
       nudges=st.lists(st.sampled_from(NUDGES), min_size=1, max_size=3))
def test_kernels_match_numpy_for_every_rule_and_nudge(seed, rule, network, nudges, monkeypatch):
    assert_same(*run_both(small(seed, rule, network, nudges), monkeypatch))


@SETTINGS
@given(seed=st.integers(0, 10**6), rule=st.sampled_from(RULES),
       nudges=st.lists(st.sampled_from(NUDGES), min_size=1, max_size=3))
def test_every_decision_through_the_exact_path_changes_nothing(seed, rule, nudges, monkeypatch):
    # a band of 0.5 sends about every resident to the numpy re-check: same decisions
    sc = small(seed, rule, NETWORKS[0], nudges)
    monkeypatch.setattr(kernels, "NEAR", 0.5)
    fast, slow = run_both(sc, monkeypatch)
    assert_same(fast, slow)


def test_the_exact_path_is_used_when_the_band_is_wide(monkeypatch):
    monkeypatch.setattr(kernels, "NEAR", 0.5)
    eng = Engine(small(1, RULES[0], NETWORKS[0], [NUDGES[0]]))
    eng.run()
    assert eng.near_ties > 0


def test_weighted_boosted_sums_match_scipy_bit_for_bit(monkeypatch):
    sc = small(3, RULES[0], NETWORKS[4], [NUDGES[-1] | {"start": 1, "tie_strength": 0.7}], n=200)
    eng = Engine(sc)
    with monkeypatch.context() as m:
        m.setattr(kernels, "ENABLED", False)
        ref = Engine(sc)
    x = np.random.default_rng(0).random(eng.n) * 3.3
    boost = np.random.default_rng(1).random(eng.n)
    for tb in (None, boost):
        assert np.array_equal(eng.neighbour_sum(x, tb), ref.neighbour_sum(x, tb))
    for _ in range(3):
        t, fx, logs = eng.begin_step()
        t2, fx2, logs2 = ref.begin_step()
        assert np.array_equal(eng.perceived_norm(fx), ref.perceived_norm(fx2))
        a, b = eng.decide(t, fx), ref.decide(t2, fx2)
        assert np.array_equal(a[0], b[0]) and np.array_equal(a[1], b[1])
        eng.finish_step(t, fx, logs, *a)
        ref.finish_step(t2, fx2, logs2, *b)


def test_hand_worked_norm_with_two_messages():
    # resident 1 sees adopters 0 and 2 of three ties: 2/3, then two messages in order
    g = nx.Graph()
    g.add_nodes_from(range(4))
    g.add_edges_from([(1, 0), (1, 2), (1, 3)])
    sc = ns.Scenario.from_dict({"steps": 2, "population": {"wards": 1}, "initial_adopters": [0, 2],
                                "rule": {"kind": "threshold"}})
    eng = Engine(sc, graph=g)
    assert eng.backend.graph is not None
    fx = Effects(4, t=1, ward=eng.population.ward)
    everyone = Stamps(eng.stamp_book)
    everyone.mark(np.arange(4), 1)
    fx.message(everyone, 0.5, np.full((3, 1), 0.0), injunctive=False)  # shows 0 to all
    fx.message(everyone, 0.25, np.full((3, 1), 1.0), injunctive=True)  # shows 1 to all
    norm = eng.perceived_norm(fx)
    first = 2 / 3 + 0.5 * (0.0 - 2 / 3)
    assert norm[1] == first + 0.25 * (1.0 - first)
    # adopter 0 (share 0 of its one tie to 1) is pulled down by the first message: 0 stays 0,
    # then up by the second; injunctive only blocks downward pulls
    assert norm[0] == 0.0 + 0.25 * 1.0


@pytest.mark.parametrize("step", [0, 1, 7, 10**6])
def test_uniform_hash_matches_rng_for_every_resident(step):
    key = rng.Streams(123).key("decide")
    ids = np.arange(5000)
    out = np.empty(ids.size)
    kernels._uniforms(ids, np.uint64(kernels.step_key(key, step)), out)
    assert np.array_equal(out, rng.uniform_array(key, step, ids))


@pytest.mark.parametrize("step", [0, 7, 10**6])
def test_the_bound_reads_a_uniform_never_above_the_drawn_one(step):
    # the decide loop's exp-free bound takes the hash's top 31 bits (int32 lanes convert
    # on AVX2); the exact path draws the uniform itself
    key = rng.Streams(5).key("decide")
    ids = np.arange(200_000)
    skey = np.uint64(kernels.step_key(key, step))
    below, exact = np.empty(ids.size), np.empty(ids.size)
    kernels._uniforms_below(ids, skey, below)
    kernels._uniforms(ids, skey, exact)
    assert np.all(below <= exact) and np.all(exact - below < 2.0**-31)
    assert np.array_equal(below, np.floor(exact * 2.0**31) * 2.0**-31)


def test_one_ward_finds_blocks_inside_a_run_of_equal_wards():
    starts = np.flatnonzero(np.diff(np.array([0, 0, 0, 1, 1, 2, 2, 2, 2]))).astype(np.int64) + 1
    assert starts.tolist() == [3, 5]
    one = [(lo, hi) for lo in range(9) for hi in range(lo + 1, 10)
           if kernels._one_ward(starts, lo, hi)]
    assert one == [(0, 1), (0, 2), (0, 3), (1, 2), (1, 3), (2, 3), (3, 4), (3, 5), (4, 5),
                   (5, 6), (5, 7), (5, 8), (5, 9), (6, 7), (6, 8), (6, 9), (7, 8), (7, 9),
                   (8, 9)]
    assert kernels._one_ward(np.zeros(0, dtype=np.int64), 0, 9)


def test_scattered_wards_match_numpy(tmp_path, monkeypatch):
    # wards from a file need not be contiguous: blocks whose wards alternate take the
    # per-resident lookups and ward tallies, next to blocks inside one ward
    monkeypatch.setattr(kernels, "PARALLEL_MIN_N", 0)
    pin_block(monkeypatch)
    n = 6 * kernels.BLOCK
    r = np.random.default_rng(3)
    ward = np.sort(r.integers(0, 3, n))
    ward[: 2 * kernels.BLOCK] = r.integers(0, 3, 2 * kernels.BLOCK)
    path = tmp_path / "people.csv"
    path.write_text("id,ward\n" + "".join(f"{i},W0{w + 1}\n" for i, w in enumerate(ward)))
    nudges = [
        {"kind": "norm_feedback", "every": 2, "reach": 0.8, "scope": "ward", "injunctive": True},
        {"kind": "norm_feedback", "start": 3, "every": 3, "reach": 0.5},
        {"kind": "reminder", "every": 1, "reach": 0.4},
        {"kind": "community_partnership", "wards": ["W02"], "duration": 4},
    ]
    sc = ns.Scenario.from_dict({
        "seed": 4, "steps": 7, "population": {"csv": str(path)},
        "network": NETWORKS[0], "rule": RULES[0], "initial_adopters": 0.15, "nudges": nudges,
    })
    fast, slow = run_both(sc, monkeypatch)
    assert_same(fast, slow)
    eng = Engine(sc)
    assert eng.backend.graph is not None and eng.backend.graph.starts.size > 100


def test_the_cache_key_names_the_compile_target(monkeypatch):
    # NUMBA_CPU_NAME / NUMBA_CPU_FEATURES (e.g. AVX2 code on an AVX-512 machine) give other
    # machine code: a cache warmed for one target is not warm for the other
    for var in ("NUMBA_CPU_NAME", "NUMBA_CPU_FEATURES"):
        monkeypatch.delenv(var, raising=False)
    host = kernels.cache_key()
    monkeypatch.setenv("NUMBA_CPU_NAME", "haswell")
    assert kernels.cache_key() != host


def test_results_do_not_depend_on_the_thread_count(monkeypatch):
    kernels.load()
    sc = small(9, RULES[0], NETWORKS[1], [NUDGES[0], NUDGES[7]], n=300)
    monkeypatch.setattr(kernels, "PARALLEL_MIN_N", 0)  # force the threaded kernels
    monkeypatch.setattr(kernels, "ADAPTIVE_THREADS", False)  # exactly k threads, any load
    runs = []
    for k in sorted({1, kernels.numba.config.NUMBA_NUM_THREADS}):
        with kernels.threads(k):
            assert kernels.thread_count(10**6) == k
            runs.append(ns.simulate(sc))
    for r in runs[1:]:
        assert_same(runs[0], r)


def test_env_var_selects_the_numpy_engine():
    code = "import nudgesim.kernels as k; print(k.AVAILABLE, k.ENABLED)"
    env = dict(os.environ, NUDGESIM_NUMBA="0")
    out = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True,
                         check=True)
    assert out.stdout.split() == ["False", "False"]


# --------------------------------------------------------------------------- maintained counts


def _expected_counts(g: kernels.Graph, a: np.ndarray, f: np.ndarray | None):
    """Σ f·a and Σ f over every resident's ties, and over its in-ward ties, by bincount."""
    n = g.n
    f = np.ones(n) if f is None else f.astype(np.float64)
    rows = np.repeat(np.arange(n), np.diff(g.indptr))
    cols = g.indices
    same = g.ward[rows] == g.ward[cols]
    fa = f * a
    out = []
    for keep in (np.ones(cols.size, bool), same):
        out.append(np.stack([np.bincount(rows[keep], weights=fa[cols[keep]], minlength=n),
                             np.bincount(rows[keep], weights=f[cols[keep]], minlength=n)], 1))
    return out


@SETTINGS
@given(seed=st.integers(0, 10**6),
       changes=st.lists(st.tuples(st.sampled_from([0.0, 0.01, 0.05, 0.5, 1.0]), st.booleans()),
                        min_size=1, max_size=6))
def test_counts_follow_any_sequence_of_changes(seed, changes):
    eng = Engine(small(seed, RULES[0], NETWORKS[1], [], n=150))
    g = eng.backend.graph
    counts = kernels.Counts(g, inward=True)
    r = np.random.default_rng(seed)
    a = r.random(g.n) < 0.3
    for share, with_influence in changes:  # large shares recount, small ones push
        a = a ^ (r.random(g.n) < share)
        f = r.integers(0, 6, g.n).astype(np.int8) if with_influence else None
        counts.sync(a.view(np.uint8), f)
        everywhere, in_ward = _expected_counts(g, a, f)
        assert np.array_equal(counts.cnt, everywhere)
        assert np.array_equal(counts.cnt_in, in_ward)


@pytest.mark.parametrize("network", [NETWORKS[0], NETWORKS[1]])
def test_counts_pushed_in_chunks_reach_neighbours_in_other_chunks(network, monkeypatch):
    # threaded: each chunk pushes to its own residents, the far neighbours come after
    monkeypatch.setattr(kernels, "PARALLEL_MIN_N", 0)
    eng = Engine(small(4, RULES[0], network, [], n=600))
    g = eng.backend.graph
    counts = kernels.Counts(g, inward=True)
    r = np.random.default_rng(4)
    a = r.random(g.n) < 0.3
    f = r.integers(0, 6, g.n).astype(np.int8)
    counts.sync(a.view(np.uint8), f)
    for _ in range(5):
        a = a ^ (r.random(g.n) < 0.01)
        f = np.where(r.random(g.n) < 0.01, r.integers(0, 6, g.n), f).astype(np.int8)
        counts.sync(a.view(np.uint8), f)
        everywhere, in_ward = _expected_counts(g, a, f)
        assert np.array_equal(counts.cnt, everywhere)
        assert np.array_equal(counts.cnt_in, in_ward)
    assert counts.recounts == 1 and counts.pushed > 0


@settings(max_examples=200, deadline=None)
@given(seed=st.integers(0, 10**6), n=st.integers(0, 70), chunks=st.integers(1, 4),
       has_f=st.booleans(), check_f=st.booleans(), share=st.sampled_from([0.0, 0.1, 0.5]))
def test_changed_finds_exactly_the_residents_that_differ(seed, n, chunks, has_f, check_f,
                                                        share):
    # whole words of eight with several changes, words without any, and the tail after
    # the last whole word; ids ascending, and each chunk's tie ends
    r = np.random.default_rng(seed)
    a_seen = (r.random(n) < 0.4).astype(np.uint8)
    a = a_seen ^ (r.random(n) < share).astype(np.uint8)
    f_seen = r.integers(-2, 3, n).astype(np.int8)
    f = np.where(r.random(n) < share, r.integers(-2, 3, n), f_seen).astype(np.int8)
    if not has_f:
        f = np.empty(0, dtype=np.int8)
    indptr = np.concatenate([[0], np.cumsum(r.integers(0, 5, n))]).astype(np.int64)
    w = kernels._words
    ids, per, ends, fits = kernels._changed(a, a_seen, f, f_seen, has_f, check_f, w(a),
                                            w(a_seen), w(f), w(f_seen), chunks, indptr)
    now_f = f if has_f else np.ones(n, dtype=np.int8)
    expected = np.flatnonzero((a != a_seen) | (check_f & (now_f != f_seen)))
    assert fits and ids.tolist() == expected.tolist()
    assert per.sum() == expected.size
    assert ends.sum() == int((indptr[expected + 1] - indptr[expected]).sum())


def test_counts_push_few_changes_and_recount_many():
    eng = Engine(small(2, RULES[0], NETWORKS[1], [], n=400))
    counts = kernels.Counts(eng.backend.graph, inward=False)
    a = np.zeros(400, dtype=bool)
    counts.sync(a.view(np.uint8), None)
    assert counts.recounts == 1  # the first sync builds them
    a[[3, 77, 250]] = True
    counts.sync(a.view(np.uint8), None)
    assert counts.recounts == 1 and counts.pushed == int(eng.backend.graph.indptr[[4, 78, 251]].sum()
                                                          - eng.backend.graph.indptr[[3, 77, 250]].sum())
    a[:] = True
    counts.sync(a.view(np.uint8), None)
    assert counts.recounts == 2
    assert np.array_equal(counts.cnt, _expected_counts(eng.backend.graph, a, None)[0])


def _path_graph(ward):
    """0-1-2-...: each resident tied to the next (CSR, unit weights)."""
    from types import SimpleNamespace

    n = len(ward)
    rows = [[j for j in (i - 1, i + 1) if 0 <= j < n] for i in range(n)]
    indptr = np.cumsum([0] + [len(r) for r in rows]).astype(np.int64)
    indices = np.array([j for r in rows for j in r], dtype=np.int32)
    net = SimpleNamespace(indptr=indptr, indices=indices, weights=None, n=n)
    return kernels.Graph(net, np.array(ward))


def test_graph_knows_when_every_ward_is_one_run():
    assert _path_graph([0, 0, 1, 1]).runs
    assert _path_graph([2, 2, 0, 0, 1]).runs
    assert not _path_graph([0, 1, 0]).runs  # ward 0 twice: runs cannot stand for wards
    assert _path_graph([]).runs


def test_ward_run_of_a_resident():
    g = _path_graph([0, 0, 0, 1, 1, 1])
    assert [tuple(kernels._ward_run(j, g.starts, g.n)) for j in (0, 2, 3, 5)] == [
        (0, 3), (0, 3), (3, 6), (3, 6)]


@pytest.mark.parametrize("ward, in_ward_1, in_ward_3", [
    # (Σ f·a, Σ f) over the in-ward ties of residents 1 (ties 0, 2) and 3 (ties 2, 4)
    ([0, 0, 0, 1, 1, 1], [3, 4], [0, 1]),  # one run per ward: 1 shares 2's ward, 3 shares 4's
    ([0, 1, 0, 1, 0, 1], [0, 0], [0, 0]),  # scattered wards: no in-ward ties at 1 or 3
    ([0, 0, 0, 0, 1, 1], [3, 4], [3, 3]),  # both share resident 2's ward, 3 not 4's
])
def test_push_of_one_change_by_hand(ward, in_ward_1, in_ward_3, monkeypatch):
    # path 0-1-2-3-4-5; resident 2 adopts and its influence becomes 3: neighbours 1 and 3
    # gain 3 in Σ f·a and 3 - 1 = 2 in Σ f; the in-ward sums only where 2's ward is theirs
    monkeypatch.setattr(kernels, "PUSH_MAX_SHARE", 1.0)  # push even this large a share
    g = _path_graph(ward)
    counts = kernels.Counts(g, inward=True)
    a = np.zeros(6, dtype=np.uint8)
    f = np.ones(6, dtype=np.int8)
    counts.sync(a, f)
    assert counts.recounts == 1 and counts.cnt[:, 1].tolist() == [1, 2, 2, 2, 2, 1]
    a[2] = 1
    f[2] = 3
    counts.sync(a, f)
    assert counts.recounts == 1 and counts.pushed == 2  # resident 2's two tie ends
    assert counts.cnt.tolist() == [[0, 1], [3, 4], [0, 2], [3, 4], [0, 2], [0, 1]]
    assert counts.cnt_in[1].tolist() == in_ward_1
    assert counts.cnt_in[3].tolist() == in_ward_3
    assert np.array_equal(counts.cnt_in, _expected_counts(g, a.astype(bool), f)[1])


def _star_graph(leaves):
    """Resident 0 tied to each of residents 1..leaves, all in one ward (CSR)."""
    from types import SimpleNamespace

    indptr = np.concatenate([[0, leaves], leaves + np.arange(1, leaves + 1)]).astype(np.int64)
    indices = np.concatenate([np.arange(1, leaves + 1), np.zeros(leaves)]).astype(np.int32)
    net = SimpleNamespace(indptr=indptr, indices=indices, weights=None, n=leaves + 1)
    return kernels.Graph(net, np.zeros(leaves + 1, dtype=np.int64))


def test_counts_are_int16_until_a_sum_could_pass_its_range(monkeypatch):
    # a hub of 300 ties: 300 x 109 = 32,700 fits int16, 300 x 110 = 33,000 does not
    monkeypatch.setattr(kernels, "PUSH_MAX_SHARE", 1.0)
    g = _star_graph(300)
    counts = kernels.Counts(g, inward=True)
    assert counts.most == 300 and counts.both.dtype == np.int16
    a = np.ones(301, dtype=np.uint8)
    f = np.ones(301, dtype=np.int8)
    counts.sync(a, None)
    assert counts.cnt[0].tolist() == counts.cnt_in[0].tolist() == [300, 300]
    f[1:] = 109
    counts.sync(a, f)
    assert counts.both.dtype == np.int16 and counts.cnt[0].tolist() == [32700, 32700]
    f[1:] = 110
    counts.sync(a, f)
    assert counts.both.dtype == np.int32 and counts.cnt[0].tolist() == [33000, 33000]
    a[7] = 0  # one leaf lapses: a push into the widened counts
    pushed = counts.pushed
    counts.sync(a, f)
    assert counts.pushed == pushed + 1
    assert counts.cnt[0].tolist() == counts.cnt_in[0].tolist() == [32890, 33000]
    everywhere, in_ward = _expected_counts(g, a.astype(bool), f)
    assert np.array_equal(counts.cnt, everywhere) and np.array_equal(counts.cnt_in, in_ward)


def test_a_graph_beyond_int16_counts_matches_numpy(monkeypatch):
    # int32 counts from the start, and int16 ones widened when the ambassadors begin
    # (COUNT16 lowered so that a small town needs them): the kernels' int32 variant
    for nudges in ([NUDGES[7], NUDGES[11]], [NUDGES[7], NUDGES[2]]):  # in-ward counts or not
        sc = small(3, RULES[0], NETWORKS[0], nudges, n=300)
        for limit in (2, 10):
            monkeypatch.setattr(kernels, "COUNT16", limit)
            eng = Engine(sc)
            eng.run()
            assert eng.backend.counts.both.dtype == np.int32
            assert_same(*run_both(sc, monkeypatch))


def test_a_run_of_127_steps_or_more_keeps_int16_stamps_and_matches_numpy(monkeypatch):
    # the kernels' int16-stamp variant (runs shorter than 127 steps keep int8 stamps)
    nudges = [NUDGES[0], NUDGES[2], NUDGES[11] | {"start": 120}]
    short, long = (small(2, RULES[0], NETWORKS[0], nudges, steps=s) for s in (126, 127))
    assert Engine(short).stamp_book.dtype is np.int8
    assert Engine(long).stamp_book.dtype is np.int16
    assert_same(*run_both(long, monkeypatch))


@pytest.mark.parametrize("limit", [kernels.COUNT16, 2])  # int16 counts, int32 counts
@pytest.mark.parametrize("gathers", [True, False])
def test_norms_from_whole_rows_or_the_half_that_counts_match_numpy(gathers, limit,
                                                                   monkeypatch):
    # AVX-512 code reads each resident's row of counts whole; code without it (HALF_ROWS)
    # reads only the all-ties half in the weeks without the community group's boost
    dtype = np.int16 if limit == kernels.COUNT16 else np.int32
    monkeypatch.setattr(kernels, "gathers", lambda: gathers)
    monkeypatch.setattr(kernels, "COUNT16", limit)
    sc = small(3, RULES[0], NETWORKS[0], [NUDGES[7], NUDGES[11]], n=300)
    eng = Engine(sc)
    eng.run()
    assert eng.backend.counts.inward and eng.backend.counts.both.dtype == dtype
    assert_same(*run_both(sc, monkeypatch))


@SETTINGS
@given(seed=st.integers(0, 10**6))
def test_counts_with_scattered_wards_follow_changes(seed):
    # wards that are not one run each: the push reads wards instead of run bounds
    eng = Engine(small(seed, RULES[0], NETWORKS[1], [], n=150))
    r = np.random.default_rng(seed)
    from types import SimpleNamespace

    net = eng.backend.graph
    g = kernels.Graph(SimpleNamespace(indptr=net.indptr, indices=net.indices, weights=None,
                                      n=net.n), r.integers(0, 4, net.n))
    assert not g.runs
    counts = kernels.Counts(g, inward=True)
    a = r.random(g.n) < 0.3
    for _ in range(4):
        a = a ^ (r.random(g.n) < 0.02)
        f = r.integers(0, 6, g.n).astype(np.int8)
        counts.sync(a.view(np.uint8), f)
        everywhere, in_ward = _expected_counts(g, a, f)
        assert np.array_equal(counts.cnt, everywhere)
        assert np.array_equal(counts.cnt_in, in_ward)


def test_counts_catch_up_when_someone_else_changes_the_state(monkeypatch):
    # a script may flip residents by hand between steps: both engines must see the same town
    sc = small(5, RULES[0], NETWORKS[0], [NUDGES[0], NUDGES[7]], n=150, steps=6)
    eng = Engine(sc)
    with monkeypatch.context() as m:
        m.setattr(kernels, "ENABLED", False)
        ref = Engine(sc)
    flip = np.arange(0, 150, 7)
    for e in (eng, ref):
        e.step()
        e.step()
        e.adopted[flip] ^= True
        e.run()
    assert eng.backend.counts is not None and eng.backend.counts.pushed > 0
    assert_same(eng.result(), ref.result())


@settings(max_examples=300, deadline=None)
@given(u=st.floats(0.0, 1.0, exclude_max=True), x=st.floats(-800.0, 50.0))
def test_the_exp_free_bound_only_settles_clear_non_events(u, x):
    out = np.empty(1, dtype=bool)
    kernels._surely_no_event_many(np.array([u]), np.array([x]), 4 * kernels.NEAR, out)
    if out[0]:
        with np.errstate(over="ignore"):  # exp(800): the hazard is 0
            assert u > 1.0 / (1.0 + np.exp(-x)) + kernels.NEAR


def test_the_bound_settles_most_small_hazards():
    u = np.random.default_rng(0).random(10_000)
    out = np.empty(u.size, dtype=bool)
    kernels._surely_no_event_many(u, np.full(u.size, -5.0), 4 * kernels.NEAR, out)  # p = 0.7%
    assert out.mean() > 0.99  # the bound is 0.72% here (the fifth-order series' 1.08%)


def test_the_exp_bound_is_above_exp_and_close_to_it():
    kernels.load()
    x = np.concatenate([np.linspace(-690.0, 0.0, 20_001), -np.logspace(-12, 2.8, 2_001),
                        [-1e-300, 0.0, 3.0]])
    bound = np.array([kernels._exp_above(v) for v in x])
    exact = np.exp(np.minimum(x, 0.0))
    assert (bound > exact).all()
    assert (bound / exact).max() < 1.0616  # 1 + f against 2^f: at most 6.15% above
    # very negative: never below e^x, and a normal double (no underflow to 0)
    assert kernels._exp_above(-1e6) > 0.0 and kernels._exp_above(-745.0) > np.exp(-745.0)


def test_effect_values_at_a_few_residents_equal_the_dense_arrays():
    # the exact re-check reads Effects.at; the numpy engine reads the dense arrays
    sc = small(3, RULES[0], NETWORKS[0], [NUDGES[0], NUDGES[1], NUDGES[4], NUDGES[6]], n=100)
    eng = Engine(sc)
    ids = np.arange(0, 100, 3)
    for _ in range(6):
        t, fx, logs = eng.begin_step()
        for channel in fx.ADDITIVE:
            dense = getattr(fx, channel)
            at = np.broadcast_to(fx.at(channel, ids), ids.shape)
            assert np.array_equal(at, np.zeros(ids.size) if dense is None else dense[ids])
        eng.finish_step(t, fx, logs, *eng.decide(t, fx))


@pytest.mark.parametrize("rule", RULES[:3])
def test_many_blocks_and_chunks_match_numpy(rule, monkeypatch):
    # several blocks per chunk on the threaded path; blocks with one stamp value and one
    # ward (the scalar-lookup shortcut) next to blocks where stamps vary (targets that
    # change with adoption) and wards meet
    monkeypatch.setattr(kernels, "PARALLEL_MIN_N", 0)
    nudges = [
        {"kind": "norm_feedback", "every": 2, "reach": 0.8, "scope": "ward", "injunctive": True},
        {"kind": "reminder", "every": 1, "reach": 0.5, "targeting": {"adopted": False}},
        {"kind": "pledge", "every": 3, "targeting": {"share": 0.3}},
        {"kind": "ambassadors", "targeting": {"strategy": "degree", "count": 40}},
    ]
    pin_block(monkeypatch)
    n = 8 * 3 * kernels.BLOCK  # 3 blocks in each of 2 threads x 4 chunks
    sc = small(11, rule, NETWORKS[0], nudges, steps=7, n=n)
    fast, slow = run_both(sc, monkeypatch)
    assert_same(fast, slow)


@pytest.mark.parametrize("band", [kernels.NEAR, 0.5])
@pytest.mark.parametrize("rule", RULES)
def test_the_fused_step_equals_decide_then_apply(rule, band, monkeypatch):
    # Engine.step decides and updates in one compiled pass; begin/decide/finish (the
    # per-agent view's order) in two. A band of 0.5 sends most residents to the re-check,
    # which the fused pass leaves untouched and applies afterwards.
    monkeypatch.setattr(kernels, "NEAR", band)
    monkeypatch.setattr(kernels, "PARALLEL_MIN_N", 0)
    sc = small(5, rule, NETWORKS[0], [NUDGES[0], NUDGES[2], NUDGES[7], NUDGES[10]], n=3000)
    fused, split = Engine(sc), Engine(sc)
    while fused.t < fused.steps:
        fused.step()
        t, fx, logs = split.begin_step()
        split.finish_step(t, fx, logs, *split.decide(t, fx))
        for name in ("adopted", "newly_adopted", "ever_adopted", "habit"):
            assert np.array_equal(getattr(fused, name), getattr(split, name)), name
    assert fused.near_ties == split.near_ties
    if band == 0.5:
        assert fused.near_ties > 0
    assert_same(fused.result(), split.result())


def _run_tie_sums(sc, graph=None):
    """Engine.run on the kernels with every tie summed each step (what weighted graphs and
    the cascade rule take), even on a unit-weight graph the counts would serve."""
    eng = Engine(sc, graph)
    eng.backend.counts = None
    return eng.run()


@pytest.mark.parametrize("nudges", [
    [NUDGES[0]],  # no influence: the adoption bytes themselves
    [NUDGES[7], NUDGES[2]],  # integer influence: influence x adoption, cached totals
    [NUDGES[7] | {"start": 3, "duration": 2}, NUDGES[8] | {"influence": 2.0, "start": 4}],
    # halves and quarters: integers x 2^-3 (2.5 x 0.25 x 2 = 1.25 is 10 x 2^-3)
    [NUDGES[8] | {"start": 2}, NUDGES[8] | {"influence": 0.25, "start": 3},
     NUDGES[7] | {"influence": 2.0, "start": 4}, NUDGES[2]],
])
@pytest.mark.parametrize("rule", RULES[:3])
def test_summing_every_tie_matches_numpy_on_unit_graphs(rule, nudges, monkeypatch):
    # the integer tie sums of _norms_from_graph (one byte per tie, one running sum per
    # block, denominators recounted only when the influence terms change) against numpy;
    # several blocks and chunks, and influence that starts, stops and changes
    monkeypatch.setattr(kernels, "PARALLEL_MIN_N", 0)
    sc = small(7, rule, NETWORKS[0], nudges, steps=8, n=3 * kernels.BLOCK + 17)
    fast = _run_tie_sums(sc)
    with monkeypatch.context() as m:
        m.setattr(kernels, "ENABLED", False)
        slow = ns.simulate(sc)
    assert_same(fast, slow)


@settings(max_examples=60, deadline=None)
@given(st.lists(st.integers(-127, 127), min_size=1, max_size=40),
       st.lists(st.integers(0, 39), max_size=70))
def test_running_sums_are_the_prefix_sums_of_the_tied_values(values, ties):
    # _running_sums takes eight ties at a time with pair and quad sums, then the rest
    # one by one: every length (below, at and past a multiple of eight) gives cumsum's
    v = np.array(values, dtype=np.int8)
    t = np.array([k % v.size for k in ties], dtype=np.int32)
    cum = np.full(t.size + 5, -999, dtype=np.int32)
    kernels._running_sums(t, v, cum)
    assert cum[0] == 0
    assert np.array_equal(cum[1:t.size + 1], np.cumsum(v[t].astype(np.int64)))
    assert np.all(cum[t.size + 1:] == -999)  # nothing written past the ties


@pytest.mark.parametrize("rule", [RULES[0], RULES[3]])
def test_summing_every_tie_row_by_row_when_a_block_has_too_many_ties(rule, monkeypatch):
    # a complete graph of 300 has 89,700 tie ends in one block: more than the running
    # sum's scratch, so the rows are summed one by one (the cascade's exposure always is)
    graph = nx.complete_graph(300)
    assert 300 * 299 > kernels.TIE_SCRATCH
    sc = small(2, rule, NETWORKS[0], [NUDGES[7], NUDGES[0]], steps=5, n=300)
    fast = _run_tie_sums(sc, graph)
    with monkeypatch.context() as m:
        m.setattr(kernels, "ENABLED", False)
        slow = ns.simulate(sc, graph=graph)
    assert_same(fast, slow)


def test_tie_totals_follow_the_influence_terms():
    # the cached denominators are recounted when the influence terms change, not before
    sc = small(4, RULES[0], NETWORKS[0], [NUDGES[7] | {"start": 2, "duration": 2}], n=400)
    eng = Engine(sc)
    eng.backend.counts = None
    keys = []
    while eng.t < eng.steps:
        eng.step()
        keys.append(eng.backend.effects.get("ties:key"))
    assert keys[0] is None  # no influence at step 1: no totals needed
    assert keys[1] is not None and keys[2] is keys[1]  # steps 2-3: counted once
    den = eng.backend.effects["ties:den"]
    f = np.ones(eng.n, dtype=np.int64)
    for ids, factor in keys[1]:
        f[ids] *= int(factor)
    net = eng.network
    expected = np.add.reduceat(f[net.indices], net.indptr[:-1])
    assert np.array_equal(den, expected)


@pytest.mark.parametrize("network, nudges", [
    (NETWORKS[-1], [NUDGES[0]]),  # weighted, no influence: Σ w a over Σ w
    (NETWORKS[-1], [NUDGES[7] | {"start": 3, "duration": 2},  # weighted, integer influence
                    NUDGES[8] | {"start": 4}]),  # then fractional: it starts, stops, changes
    (NETWORKS[-1], [NUDGES[9] | {"start": 2, "duration": 3},  # weighted, 1.1 and 1.3
                    NUDGES[9] | {"influence": 1.3, "start": 4}]),
    (NETWORKS[0], [NUDGES[9] | {"start": 2, "duration": 3},  # unit ties, not in float32
                   NUDGES[9] | {"influence": 2.7, "start": 4}, NUDGES[2]]),
    (NETWORKS[0], [NUDGES[8] | {"influence": 0.1, "start": 2},  # not a small power of two
                   NUDGES[8] | {"influence": 100.5, "start": 3}]),  # x 2 is past int8
    # more terms than codes: float64 values of influence x adoption
    (NETWORKS[-1], [NUDGES[9] | {"influence": 1.1 + k / 10, "start": 2 + k // 4}
                    for k in range(kernels.CODED_TERMS + 1)]),
    # a community group's in-ward boost, summed in the same pass: weighted with integer
    # influence (int8), unit ties with 1.1 (codes), weighted past the codes (float64)
    (NETWORKS[-1], [NUDGES[7] | {"targeting": {"count": 900}},
                    NUDGES[11] | {"start": 2, "tie_strength": 0.7}]),
    (NETWORKS[0], [NUDGES[9] | {"targeting": {"count": 900}},
                   NUDGES[11] | {"start": 2, "tie_strength": 1.3, "wards": ["W01", "W03"]}]),
    (NETWORKS[-1], [NUDGES[9] | {"influence": 1.1 + k / 10, "start": 2 + k // 4}
                    for k in range(kernels.CODED_TERMS + 1)]
     + [NUDGES[11] | {"start": 3, "tie_strength": 2.0}]),
])
@pytest.mark.parametrize("rule", RULES[:3])
def test_float_tie_sums_match_numpy(rule, network, nudges, monkeypatch):
    # _norms_from_graph's float case (float_ties: one value of influence x adoption per
    # tie, int8, a code or float64, denominators cached until the influence terms change)
    # against numpy, in several blocks and chunks
    monkeypatch.setattr(kernels, "PARALLEL_MIN_N", 0)
    sc = small(8, rule, network, nudges, steps=8, n=3 * kernels.BLOCK + 17)
    fast = _run_tie_sums(sc)
    with monkeypatch.context() as m:
        m.setattr(kernels, "ENABLED", False)
        slow = ns.simulate(sc)
    assert_same(fast, slow)


@pytest.mark.parametrize("network, nudges", [
    (NETWORKS[-1], [NUDGES[0]]),  # weighted, no influence: the adoption bytes
    (NETWORKS[-1], [NUDGES[7] | {"start": 3, "duration": 3}]),  # integer influence, int8
    (NETWORKS[0], [NUDGES[9] | {"start": 2, "duration": 4}]),  # 1.1: codes, then none
    # the same residents' code, 3, worth 1.1 and then 1.3: new terms mark every row
    (NETWORKS[-1], [NUDGES[9] | {"targeting": {"strategy": "degree", "count": 900},
                                 "start": 2, "duration": 3},
                    NUDGES[9] | {"targeting": {"strategy": "degree", "count": 900},
                                 "influence": 1.3, "start": 5}]),
    (NETWORKS[-1], [NUDGES[9] | {"influence": 1.1 + k / 10, "start": 2 + k // 4}
                    for k in range(kernels.CODED_TERMS + 1)]),  # float64 values
    (NETWORKS[-1], [NUDGES[7] | {"targeting": {"count": 900}},  # with in-ward sums
                    NUDGES[11] | {"start": 2, "tie_strength": 1.3, "duration": 3}]),
    (NETWORKS[0], [NUDGES[9] | {"targeting": {"count": 900}},
                   NUDGES[11] | {"start": 3, "tie_strength": 0.7, "wards": ["W01", "W03"]}]),
])
@pytest.mark.parametrize("rule", [RULES[0], RULES[3]])  # norms; the cascade's exposure
def test_kept_float_sums_are_the_sums_from_scratch(rule, network, nudges, monkeypatch):
    # each row's float tie sums are kept between steps and summed again only when a
    # neighbour's influence x adoption changed (_kept_sums, _mark_changed): after every
    # step they are bit for bit those of an engine that sums every row every step, and
    # the kept copy was diffed, not replaced, while the form stayed the same (kept sums
    # of weeks on other paths wait, unread, for the next float week)
    monkeypatch.setattr(kernels, "PARALLEL_MIN_N", 0)
    sc = small(6, rule, network, nudges, steps=9, n=3 * kernels.BLOCK + 17)
    kept, scratch = Engine(sc), Engine(sc)
    kept.backend.counts = scratch.backend.counts = None
    diffed = 0
    while kept.t < kept.steps:
        seen = kept.backend.effects.get("kept:seen")
        scratch.backend.effects["kept:form"] = None  # every row dirty, every step
        kept.step()
        scratch.step()
        pool, full = kept.backend.effects, scratch.backend.effects
        if "kept:seen" not in pool:  # no float sums yet (unit ties, no influence)
            continue
        diffed += pool["kept:seen"] is seen
        assert np.array_equal(pool["kept:sums"], full["kept:sums"])
        if pool["kept:form"][1]:  # a community group's week: the in-ward sums too
            assert np.array_equal(pool["kept:inward"], full["kept:inward"])
        assert not pool["kept:dirty"].any()
    assert diffed >= 4
    assert_same(kept.result(), scratch.result())


@pytest.mark.parametrize("dtype", [np.int8, np.uint8, np.float64])
def test_changed_values_mark_their_neighbours_rows(dtype):
    # a path 0-1-...-10 and a tie 2-9; residents 2, 5 and 9 change (2 and 5 in one word,
    # 9 past the last whole word of one-byte values): the rows of 1, 3, 9, of 4, 6 and of
    # 8, 10, 2 are dirty, the kept copy follows, and past the budget the caller is told
    # to sum every row
    edges = [(i, i + 1) for i in range(10)] + [(2, 9)]
    ends = np.array(edges).T
    net = from_edges(11, ends[0], ends[1])
    seen = np.zeros(11, dtype=dtype)
    v = seen.copy()
    v[2], v[5], v[9] = 3, 2, 1
    dirty = np.zeros(11, dtype=np.uint8)
    vb, sb = v.view(np.uint8), seen.view(np.uint8)
    args = (8 // v.itemsize, net.indptr, net.indices, dirty)
    assert kernels._mark_changed(vb, sb, kernels._words(vb), kernels._words(sb), *args, 99, 2)
    assert np.flatnonzero(dirty).tolist() == [1, 2, 3, 4, 6, 8, 9, 10]
    assert np.array_equal(seen, v)
    dirty[:] = 0
    assert kernels._mark_changed(vb, sb, kernels._words(vb), kernels._words(sb), *args, 99, 2)
    assert not dirty.any()  # nothing changed since
    v[5] = 1
    assert not kernels._mark_changed(vb, sb, kernels._words(vb), kernels._words(sb), *args,
                                     0, 2)


@pytest.mark.parametrize("runs", [True, False])
@pytest.mark.parametrize("rule, network", [(RULES[0], NETWORKS[-1]), (RULES[3], NETWORKS[0])])
def test_boosted_float_sums_find_in_ward_ties_by_run_or_by_ward(runs, rule, network,
                                                                monkeypatch):
    # a community group on weighted ties (and the cascade's exposure on unit ties): a
    # neighbour is in-ward by its id's range where every ward is one run of residents
    # (Graph.runs), else by its ward; both are numpy's
    monkeypatch.setattr(kernels, "PARALLEL_MIN_N", 0)
    nudges = [NUDGES[7] | {"targeting": {"count": 900}},
              NUDGES[11] | {"start": 2, "tie_strength": 20.0, "wards": ["W01", "W03"]}]
    sc = small(5, rule, network, nudges, steps=8, n=3 * kernels.BLOCK + 17)
    eng = Engine(sc)
    eng.backend.counts = None
    assert eng.backend.graph.runs
    eng.backend.graph.runs = runs
    fast = eng.run()
    with monkeypatch.context() as m:
        m.setattr(kernels, "ENABLED", False)
        slow = ns.simulate(sc)
    assert_same(fast, slow)


@pytest.mark.parametrize("nudges", [
    [NUDGES[0]],  # no influence
    [NUDGES[7] | {"targeting": {"strategy": "degree", "count": 900}}, NUDGES[2]],  # integer
    [NUDGES[8] | {"targeting": {"count": 900}}],  # a half: integers x 2^-1
    [NUDGES[9] | {"targeting": {"count": 900}}],  # 1.1: the general float sums
    # a community group's in-ward boost: both sums from one pass, with influence or not
    [NUDGES[7] | {"targeting": {"count": 900}}, NUDGES[11] | {"start": 2, "tie_strength": 1.3}],
    [NUDGES[11] | {"start": 3, "tie_strength": 0.7, "wards": ["W01", "W03"]}],
])
@pytest.mark.parametrize("network", [NETWORKS[0], NETWORKS[-1]])
def test_cascade_exposure_matches_numpy(network, nudges, monkeypatch):
    # the cascade's exposure summed in integers, one byte a tie (cascade_ties), or in
    # float on weighted ties and for influence 1.1 (float_ties, rows kept), influence
    # weighing each new adopter's tie, against numpy; many blocks and chunks
    monkeypatch.setattr(kernels, "PARALLEL_MIN_N", 0)
    sc = small(9, RULES[3], network, nudges, steps=8, n=3 * kernels.BLOCK + 17)
    fast, slow = run_both(sc, monkeypatch)
    assert_same(fast, slow)


def test_float_tie_totals_follow_the_influence_terms():
    # the float denominators, Σ w f over each row in stored order, are counted when the
    # influence terms change and kept while they stay the same
    nudges = [NUDGES[8] | {"start": 2, "duration": 2}]
    sc = small(5, RULES[0], NETWORKS[-1], nudges, steps=5, n=400)
    eng = Engine(sc)
    eng.backend.counts = None
    keys, dens = [], []
    while eng.t < eng.steps:
        eng.step()
        keys.append(eng.backend.effects.get("tiesf:key"))
        dens.append(eng.backend.effects["tiesf:den"].copy())
    assert keys[0] == () and keys[1] != () and keys[2] is keys[1] and keys[3] == ()
    net = eng.network
    for key, den in zip(keys, dens, strict=True):
        f = np.ones(eng.n)
        for ids, factor in key:
            f[ids] *= factor
        expected = np.zeros(eng.n)
        for i in range(eng.n):  # one row at a time, in stored order from 0.0, as _fsum
            for p in range(net.indptr[i], net.indptr[i + 1]):
                expected[i] += net.weights[p] * f[net.indices[p]]
        assert np.array_equal(den, expected)


def test_the_shift_of_a_factor_is_its_least_power_of_two():
    assert [kernels._shift_of(f) for f in (3.0, 2.5, 0.25, 1.75, 1 / 64, 0.0, 127.0)] == [
        0, 1, 2, 2, 6, 0, 0]
    # 1/128 needs 2^7, 1.1 and 0.1 no power of two, 128 and 100.5 x 2 pass int8
    assert [kernels._shift_of(f) for f in (1 / 128, 1.1, 0.1, 128.0, 100.5)] == [None] * 5


FACTORS = [0.0, 0.5, 1.0, 2.0, 2.5, 3.0, 0.25, 1.75, 0.125, 1 / 64, 63.5, 64.5, 100.0, 1.1, 0.1]


def influence_terms(most: int):
    """Up to `most` (factor, residents) influence terms over 12 residents."""
    return st.lists(st.tuples(st.sampled_from(FACTORS),
                              st.lists(st.integers(0, 11), unique=True)),
                    min_size=1, max_size=most)


def effects_with(terms) -> Effects:
    fx = Effects(12, t=1, ward=np.zeros(12, dtype=np.int64))
    for factor, ids in terms:
        fx.scale_influence(np.array(ids, dtype=np.int64), factor)
    return fx


@settings(max_examples=120, deadline=None)
@given(terms=influence_terms(4))
def test_integer_influence_is_the_influence_exactly(terms):
    # f8 x scale is the numpy engine's dense influence bit for bit, or None when some
    # factor is no integer over 2^6 at most, the shifts add past 2^6, or a product
    # (after any term) passes int8
    fx = effects_with(terms)
    pool: dict = {}
    small = kernels._integer_influence(fx, pool)
    shifts = [kernels._shift_of(f) for f, _ in terms]
    if None in shifts or sum(shifts) > kernels.FINEST_SHIFT:
        assert small is None
        return
    big = sum(shifts)
    value = np.ones(fx.n)
    fits = True
    for factor, ids in terms:
        value[ids] *= factor
        fits &= bool(np.abs(value * 2.0**big).max() <= 127)
    if not fits:
        assert small is None
        return
    f8, scale = small
    assert f8.dtype == np.int8 and scale == 2.0**-big
    assert np.array_equal(f8 * scale, fx.influence)
    again = kernels._integer_influence(fx, pool)  # the same terms: kept, not recounted
    assert again is not None and again[0] is f8 and again[1] == scale


@settings(max_examples=80, deadline=None)
@given(terms=influence_terms(kernels.CODED_TERMS))
def test_influence_codes_read_the_influence_exactly(terms):
    # table[code] is the numpy engine's dense influence bit for bit, and code x 0 reads 0.0
    fx = effects_with(terms)
    pool: dict = {}
    code, table = kernels._influence_codes(tuple(fx.influence_terms), fx.n, pool)
    assert code.dtype == np.uint8 and code.min() >= 1 and table[0] == 0.0
    assert np.array_equal(table[code], fx.influence)
    again = kernels._influence_codes(tuple(fx.influence_terms), fx.n, pool)
    assert again[0] is code and again[1] is table  # the same terms: kept


def test_any_influence_runs_on_the_kernels(monkeypatch):
    # influence not exact in float32 (1.1) once sent each step to the numpy engine
    sc = small(3, RULES[0], NETWORKS[0], [NUDGES[9] | {"start": 1}, NUDGES[2]], n=300)
    fast = Engine(sc)
    with monkeypatch.context() as m:
        m.setattr(Engine, "inputs", lambda *a: pytest.fail("a step ran on numpy"))
        fast.run()
    with monkeypatch.context() as m:
        m.setattr(kernels, "ENABLED", False)
        slow = ns.simulate(sc)
    assert_same(fast.result(), slow)


@pytest.mark.parametrize("strength", [0.7, 1e307])
def test_counts_of_scaled_influence_match_numpy(strength, monkeypatch):
    # the counts hold influence / scale (2.5 as 5 x 2^-1) and give numpy's norms, boosted
    # in-ward ties included; a boost near the largest double takes the tie sums instead,
    # where tb x (influence / scale) could overflow and tb x influence does not
    nudges = [NUDGES[8] | {"targeting": {"count": 60}},
              NUDGES[11] | {"start": 1, "duration": 8, "tie_strength": strength}]
    sc = small(6, RULES[0], NETWORKS[0], nudges, n=300)
    eng = Engine(sc)
    assert eng.backend.counts is not None
    fast = eng.run()
    with monkeypatch.context() as m:
        m.setattr(kernels, "ENABLED", False)
        slow = ns.simulate(sc)
    assert_same(fast, slow)
    synced = bool(eng.backend.counts.f_key)  # the counts followed the influence
    assert synced == (strength < 2.0**900)


@pytest.mark.parametrize("lapse", [0.0, 0.05])
@pytest.mark.parametrize("p, nudges", [
    (0.6, [NUDGES[8] | {"influence": 0.5, "targeting": {"count": 2000}}]),  # e < 1: p
    # pushes: reminders (utility), information (attitude), an incentive (cost relief)
    (0.2, [NUDGES[8] | {"targeting": {"count": 900}}, NUDGES[0]]),
    (0.2, [NUDGES[6] | {"reach": 0.5}]),
    (0.2, [NUDGES[4] | {"reach": 0.5, "crowding_out": 0.0}]),
    (0.2, [NUDGES[4] | {"reach": 0.5, "end": 3}]),  # then crowding out: a push < 0
    (0.45, []),
])
def test_cascade_bounds_settle_as_numpy_decides(lapse, p, nudges, monkeypatch):
    # the cascade settles residents whose uniform is above a bound of their hazard: 0.0
    # (not reached; adopted with no lapse), p max(e, 1) for one reached, its odds times a
    # bound of e^push under a push > 0; with influence 0.5 a single new adopter gives
    # e = 0.5, where e p is below 1 - (1 - p)^e
    monkeypatch.setattr(kernels, "PARALLEL_MIN_N", 0)
    rule = {"kind": "independent_cascade", "p": p, "lapse": lapse}
    sc = small(11, rule, NETWORKS[0], nudges, steps=8, n=3 * kernels.BLOCK + 17)
    fast, slow = run_both(sc, monkeypatch)
    assert_same(fast, slow)


@settings(max_examples=300, deadline=None)
@given(p=st.floats(1e-12, 1.0), e=st.floats(1e-3, 2e3), push=st.floats(-60.0, 700.0))
@example(p=1e-6, e=1.0, push=0.3863)  # where _exp_above is 6.15% above exp
@example(p=0.5, e=0.5, push=0.0)  # e < 1: p, not e p
def test_the_cascade_bound_is_never_below_the_hazard(p, e, push):
    # the numpy rule's hazard, as rules.independent_cascade computes it
    from nudgesim import rules

    q = 1.0 - p
    hazard = rules.shift(np.array([1.0 - q**e]), np.array([push]))[0]
    out = np.empty(1)
    kernels._cascade_bound_many(np.array([e]), 1.0 - q, np.array([push]), out)
    assert out[0] >= hazard - 1e-12
