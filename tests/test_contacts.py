"""The nudges' contact weeks (issue 16): targeting, reach, stamping and the direct/locked
flags are computed in proportion to the residents contacted, and every one of them picks,
stamps and flags exactly what the old whole-population computation did. Each faster piece
is checked against a copy of the code it replaced (kept here as the reference), with the
chunk size shrunk so the chunked and sampled paths run on a few hundred residents."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import nudgesim as ns
from nudgesim import kernels
from nudgesim import nudges as nd
from nudgesim.engine import Engine
from nudgesim.nudges import Effects, StampBook, Stamps, merge_sorted, top_k
from nudgesim.rng import Streams

SLOW = [HealthCheck.too_slow, HealthCheck.function_scoped_fixture]


@pytest.fixture
def small_chunks(monkeypatch):
    """Chunks of 16 residents and samples of 512 scores: the chunked reach draw, the
    chunked int32 ids and the sampled bound of top_k all run on small scenarios."""
    monkeypatch.setattr(nd, "CHUNK", 16)
    monkeypatch.setattr(nd, "SAMPLE", 512)


# --------------------------------------------------------------------------- the old code


def old_eligible(targeting, engine) -> np.ndarray:
    pop = engine.population
    mask = np.ones(pop.n, dtype=bool)
    if targeting.wards is not None:
        mask &= np.isin(pop.ward, [pop.ward_names.index(w) for w in targeting.wards])
    if targeting.adopted is not None:
        mask &= engine.adopted == targeting.adopted
    if targeting.attitude_below is not None:
        mask &= pop.attitude < targeting.attitude_below
    if targeting.attitude_above is not None:
        mask &= pop.attitude > targeting.attitude_above
    return mask


def old_top_k(scores, ids, k, streams, name) -> np.ndarray:
    """The full stable lexsort that select() used before top_k."""
    return np.lexsort((-streams.uniform(name, 0, ids), -scores))[:k]


def old_scores(targeting, engine, stream) -> np.ndarray:
    if targeting.strategy == "random":
        return engine.streams.uniform(f"{stream}:rank", 0, engine.population.n)
    if targeting.strategy == "ward":
        return -engine.ward_rates()[engine.population.ward]
    return nd.strategy_scores(targeting, engine, stream)  # cached network scores


def old_targets(nudge, engine) -> np.ndarray:
    """Nudge.targets as it was: select() on all residents, then the reach, then (for a
    community partnership) the group's wards; int32 when kept for the run."""
    targeting = nudge.spec.targeting
    ids = np.flatnonzero(old_eligible(targeting, engine))
    k = nd.take_count(targeting, len(ids))
    if k is not None:
        scores = old_scores(targeting, engine, nudge.stream)[ids]
        ids = np.sort(ids[old_top_k(scores, ids, k, engine.streams, f"{nudge.stream}:tiebreak")])
    old_reach = engine.streams.uniform(f"{nudge.stream}:reach", 0, engine.n) < nudge.spec.reach
    ids = ids[old_reach[ids]]
    if isinstance(nudge, nd.CommunityPartnershipNudge):
        ids = ids[nudge.in_group[engine.population.ward[ids]]]
    return ids.astype(np.int32) if nudge._static else ids


class OldStamps:
    def __init__(self, n):
        self.step = np.full(n, -1)

    def mark(self, ids, t):
        self.step[ids] = t

    def ids(self):
        return np.flatnonzero(self.step >= 0)


# --------------------------------------------------------------------------- pieces


@given(old=st.sets(st.integers(0, 200), max_size=60), new=st.lists(st.integers(0, 200), max_size=60),
       wide=st.booleans())
def test_merge_sorted_is_the_sorted_union(old, new, wide):
    a = np.array(sorted(old), dtype=np.int64 if wide else np.int32)
    b = np.array([x for x in new if x not in old], dtype=np.int32)
    got = merge_sorted(a, b)
    assert np.array_equal(got, np.union1d(a, b))


@settings(max_examples=60, deadline=None)
@given(marks=st.lists(st.tuples(st.lists(st.integers(0, 79), max_size=50), st.booleans(),
                                st.booleans()), max_size=8))
def test_stamps_keep_the_ids_of_everyone_ever_marked(marks):
    # sorted or not, duplicates, int32 or int64, the same array passed again
    book = StampBook(80, 52)
    stamps, old = Stamps(book), OldStamps(80)
    last = None
    for t, (ids, again, narrow) in enumerate(marks, start=1):
        arr = last if again and last is not None else np.array(ids, dtype=np.int32 if narrow else np.int64)
        stamps.mark(arr, t)
        old.mark(arr, t)
        last = arr
        assert np.array_equal(stamps.step, old.step)
        assert np.array_equal(stamps.ids(), old.ids())


@settings(max_examples=60, deadline=None)
@given(marks=st.lists(st.tuples(st.booleans(), st.booleans(), st.booleans(),
                                st.lists(st.integers(0, 39), max_size=20)), max_size=10))
def test_deferred_restamps_read_as_if_marked_at_once(marks):
    # the same target array again is deferred (StampBook.defer) until the stamps are read:
    # marks at the same step, other arrays in between, another row, reads at any point
    book = StampBook(40, 52)
    stamps, other, old = Stamps(book), Stamps(book), OldStamps(40)
    fixed = np.array([3, 5, 8, 21], dtype=np.int32)
    t = 0
    for again, same_step, read, ids in marks:
        t += 0 if same_step and t else 1
        arr = fixed if again else np.array(ids, dtype=np.int64)
        stamps.mark(arr, t)
        old.mark(arr, t)
        other.mark(fixed, t)
        if read:
            assert np.array_equal(stamps.step, old.step)
    assert np.array_equal(stamps.step, old.step)
    assert np.array_equal(stamps.ids(), old.ids())


def test_fixed_targets_marked_again_are_owed_until_read():
    book = StampBook(10, 52)
    stamps = Stamps(book)
    ids = np.array([1, 4, 7], dtype=np.int32)
    stamps.mark(ids, 2)
    stamps.mark(ids, 3)
    assert book.pending == {stamps.row: (ids, 2, 3)}
    stamps.mark(ids, 5)  # still owed from 2: the row holds that
    matrix, rows = book.deferred()
    assert rows.tolist() == [[stamps.row, 2, 5]]
    assert matrix[stamps.row].tolist() == [-1, 2, -1, -1, 2, -1, -1, 2, -1, -1]
    assert stamps.step.tolist() == [-1, 5, -1, -1, 5, -1, -1, 5, -1, -1]
    assert not book.pending
    stamps.mark(ids, 6)
    stamps.mark(ids, 6)  # twice in one step: stamped at once, and the next is not deferred
    assert not book.pending
    stamps.mark(ids, 7)
    assert not book.pending
    stamps.mark(ids, 8)
    assert book.pending == {stamps.row: (ids, 7, 8)}


@pytest.mark.parametrize("by_counts", [True, False])
def test_the_compiled_decide_pass_applies_the_owed_restamps(monkeypatch, by_counts):
    # the national campaign's bin-day texts go to the same residents every week: their
    # re-stamps are owed after the nudges act and applied by the decide pass (norms from
    # the counts, or summed over ties), which leaves the stamps and the town exactly as
    # the numpy engine's
    from nudgesim.bench import national_scenario

    sc = national_scenario(3000, 52)
    monkeypatch.setattr(kernels, "ENABLED", True)
    fast = Engine(sc)
    assert fast.backend.compiled
    if not by_counts:
        fast.backend.counts = None
    monkeypatch.setattr(kernels, "ENABLED", False)
    slow = Engine(sc)
    owed = 0
    for _ in range(12):
        monkeypatch.setattr(kernels, "ENABLED", True)
        t, fx, logs = fast.begin_step()
        owed += len(fast.stamp_book.pending)
        fast.respond(t, fx, logs)
        assert not fast.stamp_book.pending
        monkeypatch.setattr(kernels, "ENABLED", False)
        slow.step()
        assert np.array_equal(fast.stamp_book.matrix, slow.stamp_book.matrix)
        assert np.array_equal(fast.adopted, slow.adopted)
    assert owed >= 8


def test_stamps_share_a_sorted_target_array_instead_of_copying_it():
    stamps = Stamps(StampBook(10, 52))
    ids = np.array([1, 4, 7], dtype=np.int32)
    stamps.mark(ids, 3)
    assert stamps.ids() is ids
    stamps.mark(np.array([2, 4, 9]), 5)  # 4 again: only 2 and 9 are new
    assert stamps.ids().tolist() == [1, 2, 4, 7, 9]
    assert stamps.step.tolist() == [-1, 3, 5, -1, 5, -1, -1, 3, -1, 5]


@settings(max_examples=60, deadline=None)
@given(steps=st.lists(st.lists(st.tuples(st.sampled_from(["direct", "locked"]),
                                         st.lists(st.integers(0, 39), max_size=12)), max_size=4),
                      min_size=1, max_size=6),
       refill=st.integers(0, 5), compiled=st.booleans())
def test_flags_cleared_where_last_set_are_the_dense_masks(steps, refill, compiled):
    # a pool reused step after step, as the engine does; one step fills "direct" by hand
    if compiled:
        kernels.load()
    saved = kernels.LOADED
    kernels.LOADED = compiled and saved
    try:
        pool: dict = {}
        made: dict = {}
        for t, flags in enumerate(steps):
            fx = Effects(40, t + 1, pool=pool)
            if t == refill:
                fx.buffer("direct", True, bool)  # someone else's contents: a full reset follows
            want = {"direct": np.zeros(40, bool), "locked": np.zeros(40, bool)}
            for channel, ids in flags:
                key = (channel, tuple(ids))  # the same list again: the same array object
                arr = made.setdefault(key, np.array(ids, dtype=np.int64))
                fx.flag(channel, arr)
                want[channel][ids] = True
            for channel in ("direct", "locked"):
                got = getattr(fx, channel)
                if got is None:
                    assert not any(ch == channel for ch, _ in flags)
                else:
                    assert np.array_equal(got, want[channel])
    finally:
        kernels.LOADED = saved


def test_flags_of_the_same_array_as_last_step_are_left_as_they_are(monkeypatch):
    pool: dict = {}
    serving = np.array([2, 5])
    fx = Effects(40, 1, pool=pool)
    fx.flag("direct", serving)
    calls = []
    monkeypatch.setattr(kernels, "put", lambda *a: calls.append(a))
    fx = Effects(40, 2, pool=pool)
    fx.flag("direct", serving)  # nothing to clear, nothing to set
    assert not calls and np.flatnonzero(fx.direct).tolist() == [2, 5]
    monkeypatch.undo()
    fx.flag("direct", np.array([7]))  # a second flag in the same step adds to it
    fx = Effects(40, 3, pool=pool)
    fx.flag("direct", serving)  # last step set two arrays: both cleared, then set again
    assert np.flatnonzero(fx.direct).tolist() == [2, 5]


def test_flags_over_an_eighth_of_the_residents_are_cleared_in_full():
    pool: dict = {}
    fx = Effects(16, 1, pool=pool)
    fx.flag("direct", np.arange(10))
    fx = Effects(16, 2, pool=pool)
    fx.flag("direct", np.array([3]))
    assert np.flatnonzero(fx.direct).tolist() == [3]


@settings(max_examples=200, deadline=None, suppress_health_check=SLOW)
@given(values=st.lists(st.one_of(st.integers(-3, 3).map(float),
                                 st.floats(allow_nan=True, allow_infinity=True), st.just(-0.0)),
                       min_size=0, max_size=400),
       k=st.integers(0, 120), seed=st.integers(0, 2**32 - 1), sparse_ids=st.booleans())
def test_top_k_on_a_sampled_bound_picks_what_the_full_lexsort_picks(small_chunks, values, k,
                                                                     seed, sparse_ids):
    scores = np.array(values, dtype=np.float64)
    rng = np.random.default_rng(seed)
    ids = (np.sort(rng.choice(10 * len(scores) + 1, len(scores), replace=False)) if sparse_ids
           else np.arange(len(scores)))
    k = min(k, len(ids))
    streams = Streams(seed)
    old = old_top_k(scores, ids, k, streams, "s")
    assert np.array_equal(top_k(scores, ids, k, streams, "s"), old)
    if not sparse_ids:  # ids None: the positions are the ids
        assert np.array_equal(top_k(scores, None, k, streams, "s"), old)


def test_top_k_bound_path_runs_and_agrees_on_many_ties(small_chunks, monkeypatch):
    # integer degrees with many ties at the k-th: the bound found from the sample is used
    seen = []
    bound = nd._above_bound
    monkeypatch.setattr(nd, "_above_bound", lambda s, k: seen.append(r := bound(s, k)) or r)
    rng = np.random.default_rng(5)
    scores = rng.poisson(10, 5_000).astype(np.float64)
    scores[[0, 4_999]] = scores.max(), np.nan  # the first is in every pick, the last in none
    streams = Streams(2)
    for k in (1, 7, 50, 400):
        old = old_top_k(scores, np.arange(5_000), k, streams, "t")
        assert np.array_equal(top_k(scores, None, k, streams, "t"), old)
    assert sum(r is not None for r in seen) == 4


def test_reach_mask_is_the_old_draw_in_chunks(small_chunks):
    streams = Streams(11)
    for n, reach in ((1, 0.5), (16, 0.3), (17, 0.3), (1_000, 0.8), (1_000, 0.0)):
        old = streams.uniform("r", 0, n) < reach
        assert np.array_equal(nd.reach_mask(streams, "r", n, reach), old)
    assert nd.reach_mask(streams, "r", 1_000, 1.0) is None  # every uniform in [0, 1) passes


@given(mask=st.lists(st.booleans(), max_size=100))
def test_nonzero_in_int32_chunks_is_flatnonzero(mask):
    m = np.array(mask, dtype=bool)
    for chunk in (1, 16, 1 << 18):
        saved, nd.CHUNK = nd.CHUNK, chunk
        try:
            got = nd.nonzero(m, np.int32)
        finally:
            nd.CHUNK = saved
        assert got.dtype == np.int32 and np.array_equal(got, np.flatnonzero(m))


# --------------------------------------------------------------------------- targets


TARGETING = st.fixed_dictionaries({}, optional={
    "strategy": st.sampled_from(["random", "degree", "kcore", "ward"]),
    "count": st.integers(0, 150),
    "share": st.sampled_from([0.0, 0.1, 0.5, 1.0]),
    "wards": st.lists(st.sampled_from(["A", "B", "C"]), min_size=1, max_size=2, unique=True),
    "adopted": st.booleans(),
    "attitude_below": st.floats(-1, 1),
    "attitude_above": st.floats(-1, 1),
}).filter(lambda t: not ("count" in t and "share" in t))


def town(seed: int, nudges: list[dict], steps: int = 10) -> ns.Scenario:
    return ns.Scenario.from_dict({
        "seed": seed, "steps": steps, "initial_adopters": 0.25,
        "population": {"size": 300, "wards": [{"name": w} for w in "ABC"]},
        "network": {"kind": "ward_clustered", "mean_degree_in": 4.0, "mean_degree_out": 1.0},
        "rule": {"kind": "logistic", "adopt_intercept": -2.0},
        "nudges": nudges,
    })


@settings(max_examples=60, deadline=None, suppress_health_check=SLOW)
@given(seed=st.integers(0, 2**16), targeting=TARGETING, reach=st.sampled_from([1.0, 0.6]),
       kind=st.sampled_from(["information", "community_partnership", "default"]))
def test_targets_are_the_old_pick(small_chunks, seed, targeting, reach, kind):
    spec = {"kind": kind, "start": 1, "reach": reach, "targeting": targeting}
    if kind == "community_partnership":
        spec["wards"] = ["B", "C"]
    eng = Engine(town(seed, [spec]))
    nudge = eng.nudges[0]
    want = old_targets(nudge, eng)
    got = nudge.targets(eng)
    assert got.dtype == want.dtype and np.array_equal(got, want)
    eng.step()  # after a step (new adopters, new ward rates) a dynamic pick is drawn afresh
    assert np.array_equal(nudge.targets(eng), old_targets(nudge, eng))


def test_reachable_narrowed_in_place_narrows_the_targets():
    # trial designs (planning.trials, evidence.replicate) do `reachable &= treated`
    eng = Engine(town(3, [{"kind": "information", "start": 1}]))
    nudge = eng.nudges[0]
    treated = np.arange(eng.n) % 3 == 0
    nudge.reachable &= treated
    assert np.array_equal(nudge.targets(eng), np.flatnonzero(treated))


# --------------------------------------------------------------------------- whole runs


class OldWay:
    """The old Stamps.mark, Effects.flag and Nudge.targets, patched in for a reference run."""

    @staticmethod
    def mark(self, ids, t):
        step = self.step
        fresh = ids is not self._last and (step[ids] < 0).any()
        step[ids] = t
        self._last = ids
        if fresh:
            self._ids = np.flatnonzero(step >= 0)

    @staticmethod
    def flag(self, channel, ids):
        arr = getattr(self, channel)
        if arr is None:
            arr = np.zeros(self.n, dtype=bool)
            setattr(self, channel, arr)
        arr[ids] = True

    @staticmethod
    def targets(self, engine):
        if self._targets is None or not self._static:
            self._targets = old_targets(self, engine)
        return self._targets


ALL_KINDS = [
    {"kind": "information", "start": 1, "reach": 0.9},
    {"kind": "reminder", "start": 2, "every": 1, "reach": 0.35},
    {"kind": "norm_feedback", "start": 3, "every": 4, "reach": 0.8, "injunctive": True},
    {"kind": "ambassadors", "start": 2, "duration": 6, "targeting": {"strategy": "degree", "count": 8}},
    {"kind": "ambassadors", "start": 3, "every": 3, "uptake": 0.5,
     "targeting": {"strategy": "random", "share": 0.05, "adopted": False}},
    {"kind": "community_partnership", "start": 4, "duration": 5, "wards": ["A"]},
    {"kind": "default", "start": 5, "every": 3, "lapse_reduction": 0.5,
     "targeting": {"adopted": False, "wards": ["B"]}},
    {"kind": "pledge", "start": 3, "every": 2, "uptake": 0.2, "targeting": {"strategy": "kcore", "share": 0.3}},
    {"kind": "incentive", "start": 4, "duration": 4, "cost_per_adopter": 1.0, "crowding_out": 0.3,
     "targeting": {"strategy": "ward", "count": 40}},
    {"kind": "canvassing", "start": 2, "every": 4, "adopt_prob": 0.3, "targeting": {"attitude_above": 0.0}},
]


@pytest.mark.parametrize("compiled", [False, True])
def test_runs_are_bit_identical_to_the_old_contacts(small_chunks, monkeypatch, compiled):
    monkeypatch.setattr(kernels, "ENABLED", compiled)

    def run() -> tuple:
        eng = Engine(town(9, ALL_KINDS, steps=14))
        assert eng.backend.compiled == compiled
        res = eng.run()
        return (res.timeseries, eng.adopted, eng.ever_adopted, eng.habit, eng.stamp_book.matrix)

    new = run()
    with monkeypatch.context() as m:
        m.setattr(Stamps, "mark", OldWay.mark)
        m.setattr(Effects, "flag", OldWay.flag)
        m.setattr(nd.Nudge, "targets", OldWay.targets)
        old = run()
    assert new[0].equals(old[0])
    for a, b in zip(new[1:], old[1:]):
        assert np.array_equal(a, b)
