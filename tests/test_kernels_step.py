"""The weekly step's bookkeeping on the compiled engine: the re-check reads the undecided
residents' ids from the decide kernel (or finds them itself when a chunk had too many),
step masks are reused only when nobody holds them, the one-pass stamp test, and channels
written by several terms. Each compares with the numpy engine or a plain definition."""

from __future__ import annotations

import numpy as np
import pytest
from cases import NETWORKS, RULES
from hypothesis import given, settings
from hypothesis import strategies as st
from test_kernels import NUDGES, assert_same, pin_block, run_both, small

import nudgesim as ns
from nudgesim import kernels
from nudgesim.engine import Engine

pytestmark = pytest.mark.skipif(not kernels.AVAILABLE, reason="numba not installed or disabled")


@pytest.fixture(autouse=True)
def compiled(monkeypatch):
    monkeypatch.setattr(kernels, "ENABLED", True)
    monkeypatch.setattr(kernels, "PARALLEL_MIN_N", 0)  # several chunks even when small


def _single_stamp_reference(sb: np.ndarray) -> int:
    s0 = int(sb.max())
    return s0 if np.all((sb == s0) | (sb == -1)) else -2


@settings(max_examples=200, deadline=None)
@given(dtype=st.sampled_from([np.int16, np.int32]),
       values=st.lists(st.sampled_from([-5, -1, 0, 3, 7, 32766, 32767]), min_size=1,
                       max_size=40))
def test_single_stamp_in_one_pass_agrees_with_its_definition(dtype, values):
    kernels.load()
    sb = np.array(values, dtype=dtype)
    got = kernels._single_stamp(sb, sb.size)
    want = _single_stamp_reference(sb)
    # -2 is always safe (the general path); any other answer must be the definition's
    assert got == want or (got == -2 and dtype == np.int16 and 32767 in values)


@pytest.mark.parametrize("values, expected", [
    ([-1, -1, -1], -1),  # nobody stamped
    ([-1, 4, -1, 4], 4),  # one contact week
    ([4, 4], 4),
    ([4, 5, -1], -2),  # two weeks: the general path
    ([-5, -1], -2),
    ([-5, -5], -5),
])
def test_single_stamp_by_hand(values, expected):
    kernels.load()
    sb = np.array(values, dtype=np.int16)
    assert kernels._single_stamp(sb, sb.size) == expected


@pytest.mark.parametrize("room", [0, 1, 10**6])
@pytest.mark.parametrize("rule", RULES)
def test_recheck_ids_from_the_kernel_or_a_scan_give_numpys_results(rule, room, monkeypatch):
    # a band of 0.5 leaves hundreds undecided per chunk: room 10**6 lists them all in the
    # kernel, room 0 and 1 overflow and the re-check scans the flags instead
    monkeypatch.setattr(kernels, "NEAR", 0.5)
    monkeypatch.setattr(kernels, "RECHECK_ROOM", room)
    sc = small(3, rule, NETWORKS[3], [NUDGES[0], NUDGES[2], NUDGES[10]], n=2500)
    fast, slow = run_both(sc, monkeypatch)
    assert_same(fast, slow)


def test_found_lists_the_undecided_in_order_or_gives_up():
    found = np.array([[3, 9, -7], [12, -7, -7], [-7, -7, -7]], dtype=np.int64)
    assert kernels._found(found, np.array([2, 1, 0])).tolist() == [3, 9, 12]
    assert kernels._found(found, np.array([2, 4, 0])) is None  # chunk 1 overflowed


def test_masks_someone_holds_are_never_reused(monkeypatch):
    sc = small(8, RULES[0], NETWORKS[0], [NUDGES[0], NUDGES[7]], steps=12, n=3000)
    eng = Engine(sc)
    assert eng.backend.graph is not None
    kept = []
    for _ in range(sc.steps):
        eng.step()
        kept.append((eng.adopted, eng.adopted.copy(), eng.newly_adopted,
                     eng.newly_adopted.copy()))
    for adopted, adopted_then, newly, newly_then in kept:
        assert np.array_equal(adopted, adopted_then)
        assert np.array_equal(newly, newly_then)
    # nobody else held them: the engine's masks are new objects each step, all alive
    assert len({id(k[0]) for k in kept}) == sc.steps


def test_masks_are_reused_once_dropped_with_the_same_results(monkeypatch):
    sc = small(8, RULES[0], NETWORKS[0], [NUDGES[0], NUDGES[7]], steps=12, n=3000)
    eng = Engine(sc)
    seen = set()
    views = []
    for t in range(sc.steps):
        eng.step()
        seen.add(id(eng.adopted))
        if t == 3:
            views.append((eng.adopted[5:], eng.adopted.copy()[5:]))  # a view holds it too
    pool = eng.backend.effects["decide:masks"]
    assert len(pool) <= kernels.SPARE_MASKS
    assert len(seen) < sc.steps  # buffers came round again
    held, then = views[0]
    assert np.array_equal(held, then)
    fast, slow = run_both(sc, monkeypatch)
    assert_same(fast, slow)


@pytest.mark.parametrize("rule", RULES[:3])
def test_channels_written_by_several_terms_match_numpy(rule, monkeypatch):
    # two reminders and an information campaign all add to the utility channel, two
    # incentives to cost relief: each channel's first term starts its sum, the others add
    nudges = [
        {"kind": "reminder", "every": 2},
        {"kind": "reminder", "every": 3, "start": 2},
        {"kind": "information"},
        {"kind": "incentive", "cost_per_adopter": 1.0, "end": 5},
        {"kind": "incentive", "cost_per_adopter": 2.0, "start": 3},
    ]
    pin_block(monkeypatch)
    sc = small(21, rule, NETWORKS[3], nudges, steps=8, n=2 * kernels.BLOCK + 77)
    eng = Engine(sc)
    for _ in range(3):
        eng.step()
    t, fx, _ = eng.begin_step()
    tchan = kernels.Program(fx, eng.stamp_book.matrix, {}).tchan
    assert len(set(tchan.tolist())) < tchan.size  # some channel has several terms
    fast, slow = run_both(sc, monkeypatch)
    assert_same(fast, slow)


def test_spare_hands_out_only_buffers_nobody_else_holds():
    """_spare's rule, asked directly: a buffer held by a name, a view, a memoryview or a
    pandas Series is never handed out again; one nobody holds is (the reference count a
    list-only array has is measured, since Python 3.14 may count the call's argument
    differently)."""
    import pandas as pd

    pool: dict = {}
    a = kernels._spare(pool, 16)
    first = id(a)
    holders = [a[2:], memoryview(a), pd.Series(a, copy=False)]
    del a
    while holders:
        b = kernels._spare(pool, 16)
        assert id(b) != first
        del b
        holders.pop()
    assert id(kernels._spare(pool, 16)) == first  # nobody holds it now
    assert kernels._refs_when_alone() in (1, 2)


@settings(max_examples=200, deadline=None)
@given(n=st.integers(1, 5 * 2048), data=st.data())
def test_blocks_cover_the_range_and_end_at_a_lone_ward_boundary(n, data):
    # _block_size: blocks tile [lo, hi) in order, none longer than BLOCK, and a block that
    # one ward boundary would cut in two ends there (so it lies in one ward); a block
    # with several boundaries inside is left whole
    kernels.load()
    cuts = data.draw(st.lists(st.integers(1, max(1, n - 1)), unique=True, max_size=12))
    starts = np.array(sorted(c for c in cuts if 0 < c < n), dtype=np.int64)
    lo0 = data.draw(st.integers(0, n - 1))
    lo, blocks = lo0, []
    while lo < n:
        m = int(kernels._block_size(lo, n, starts, kernels.BLOCK))
        blocks.append((lo, m))
        lo += m
    assert lo == n and all(1 <= m <= kernels.BLOCK for _, m in blocks)
    for lo, m in blocks:
        inside = [s for s in starts.tolist() if lo < s < lo + m]
        assert len(inside) != 1
        whole = min(kernels.BLOCK, n - lo)
        if m < whole:  # cut: at the only boundary that the whole block would hold
            assert lo + m in starts.tolist()
            assert [s for s in starts.tolist() if lo < s < lo + whole] == [lo + m]


@pytest.mark.parametrize("wards", [3, 7])
@pytest.mark.parametrize("rule", RULES)
def test_blocks_cut_at_ward_boundaries_match_numpy(rule, wards, monkeypatch):
    # wards of ~4,100 residents (one boundary in some blocks: the block is cut there) and
    # ~1,760 (several boundaries: blocks left whole), with a community group's in-ward
    # boost (the counts' in-ward columns) and ward-scoped norm messages
    monkeypatch.setattr(kernels, "PARALLEL_MIN_N", 0)
    pin_block(monkeypatch)
    nudges = [
        {"kind": "norm_feedback", "every": 2, "reach": 0.8, "scope": "ward"},
        {"kind": "community_partnership", "wards": ["W02"], "duration": 4,
         "norm_salience": 0.5},
        {"kind": "pledge", "every": 3, "targeting": {"share": 0.3}},
    ]
    sc = ns.Scenario.from_dict({
        "seed": 3, "steps": 6, "population": {"size": 6 * kernels.BLOCK + 123, "wards": wards},
        "network": NETWORKS[3], "rule": rule, "initial_adopters": 0.15, "nudges": nudges,
    })
    fast, slow = run_both(sc, monkeypatch)
    assert_same(fast, slow)


@pytest.mark.parametrize("size", [1000, kernels.BLOCK, 3000, kernels.BLOCK_MAX])
def test_decisions_do_not_depend_on_the_block_size(size, monkeypatch):
    # block() sizes the decide pass's blocks by the L2 cache (2,048 to 8,192 residents);
    # blocks of any length, cut at ward boundaries or left whole, decide the same, with
    # the in-ward boost, ward-scoped messages and a pledge's stamps, in two chunks of
    # 8,253 residents (more would keep every block shorter than BLOCK_MAX)
    monkeypatch.setattr(kernels, "_chunks", lambda n: 2)
    pin_block(monkeypatch, size)
    nudges = [
        {"kind": "norm_feedback", "every": 2, "reach": 0.8, "scope": "ward", "injunctive": True},
        {"kind": "community_partnership", "wards": ["W02"], "duration": 4},
        {"kind": "pledge", "every": 3, "targeting": {"share": 0.3}},
        {"kind": "reminder", "every": 1, "reach": 0.5},
    ]
    sc = ns.Scenario.from_dict({
        "seed": 5, "steps": 6, "population": {"size": 2 * kernels.BLOCK_MAX + 123, "wards": 5},
        "network": NETWORKS[3], "rule": RULES[0], "initial_adopters": 0.15, "nudges": nudges,
    })
    fast, slow = run_both(sc, monkeypatch)
    assert_same(fast, slow)


@pytest.mark.parametrize(("l2", "shared", "expected"), [
    (None, "0", kernels.BLOCK),  # the system does not say
    ("256K", "0", 2048), ("512K", "0", 4096), ("1024K", "0", 8192), ("2M", "0", 8192),
    ("1024K", "0-1", 4096), ("2048K", "0,8", 8192), ("1024K", "", kernels.BLOCK),
])
def test_blocks_fill_at_most_half_the_l2_a_thread_has(l2, shared, expected, tmp_path,
                                                      monkeypatch):
    # sysfs as Linux writes it: index0/1 the L1 caches, index2 the L2 (shared by the
    # hyperthreads in shared_cpu_list), index3 the L3
    for k, (level, size) in enumerate([("1", "48K"), ("1", "32K"), ("2", l2), ("3", "32M")]):
        if size is None:
            continue
        d = tmp_path / f"index{k}"
        d.mkdir()
        (d / "level").write_text(level + "\n")
        (d / "size").write_text(size + "\n")
        (d / "shared_cpu_list").write_text((shared if level == "2" else "0-1") + "\n")
    l2_bytes = kernels.l2_bytes(tmp_path)
    monkeypatch.setattr(kernels, "l2_bytes", lambda: l2_bytes)
    assert kernels.block.__wrapped__() == expected


COMMUNITY = {"kind": "community_partnership", "wards": ["W02"], "start": 2, "duration": 3}


@pytest.mark.parametrize("gathers", [True, False])
@pytest.mark.parametrize("nudges", [
    [COMMUNITY],  # no norm message: the loop's pull weighs 0.0
    [COMMUNITY, {"kind": "norm_feedback", "every": 2, "reach": 0.6, "scope": "ward"}],
    [COMMUNITY, {"kind": "norm_feedback", "every": 3, "injunctive": True},
     {"kind": "reminder", "every": 2, "reach": 0.5}],
    [COMMUNITY, {"kind": "norm_feedback", "every": 2}, {"kind": "norm_feedback", "every": 3,
                                                         "injunctive": True}],  # two: passes
    # shown to those not yet taking part, so a block holds residents shown it in
    # different weeks: several stamp values, a pass of its own
    [COMMUNITY, {"kind": "norm_feedback", "every": 2, "targeting": {"adopted": False}}],
])
def test_the_logistic_loop_reading_the_counts_itself_matches_numpy(gathers, nudges,
                                                                    monkeypatch):
    # With AVX-512 (gathers) a block in one ward with int16 in-ward counts and at most
    # one norm message given to one stamp value reads its counts in the logistic loop
    # (_counts_in_loop); without, or with two messages, norms and messages take passes of
    # their own. Weeks with and without the community group's boost, wards of 2,048.
    monkeypatch.setattr(kernels, "gathers", lambda: gathers)
    pin_block(monkeypatch)
    sc = ns.Scenario.from_dict({
        "seed": 8, "steps": 8, "population": {"size": 3 * kernels.BLOCK, "wards": 3},
        "network": NETWORKS[3], "rule": RULES[0], "initial_adopters": 0.2,
        "nudges": nudges,
    })
    eng = Engine(sc)
    eng.run()
    assert eng.backend.counts.inward and eng.backend.counts.both.dtype == np.int16
    fast, slow = run_both(sc, monkeypatch)
    assert_same(fast, slow)
