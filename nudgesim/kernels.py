"""Compiled kernels for the engine's hot path: one fused pass over the graph per step.

Why: a numpy step makes ~20 passes over resident-sized arrays and two sparse products;
at 10^6 residents that is memory traffic, not arithmetic. The numba kernel reads each
tie once, draws the counter-based uniform in registers and writes only the two decision
masks.

Exactness (results are bit-identical to the numpy engine, which stays the reference and
the fallback):

* Sums over a CSR row run in stored index order from 0.0, adding ``w * x`` one term at a
  time (what scipy's ``csr_matvec`` does); numba never reassociates or fuses multiply-add
  without ``fastmath``, so norms, exposures and every other +,-,*,/ value are identical.
* ``exp``, ``log``, ``log1p`` and ``pow`` may differ in the last bit between LLVM/libm
  and numpy's SIMD (SVML) loops. Such a difference can only change a decision when the
  uniform lands within a few ulps of the hazard. The kernel therefore marks every
  resident whose uniform is within :data:`NEAR` of its hazard as undecided, and the
  engine recomputes those few hazards with the numpy rule (rules.py) itself. Decisions
  are thus the numpy engine's by construction; at 10^6 residents about one resident in
  ~250 steps is re-checked.
* The uniforms are nudgesim.rng's SplitMix64 hash in wrapping uint64 arithmetic, so they
  depend only on (seed, stream, step, resident), never on the thread count.

Set ``NUDGESIM_NUMBA=0`` (or uninstall numba) to use the pure-numpy engine.
"""

from __future__ import annotations

import os
import threading

import numpy as np

from . import rng as rngmod

#: Half-width of the band around a hazard inside which a decision is re-checked with numpy.
#: Transcendental results differ by a few ulps (<1e-15 relative); 1e-9 leaves a 10^5 margin
#: while sending only ~2e-9 of residents per step to the exact path.
NEAR = 1e-9
#: Below this many residents the kernels run on one thread: starting the thread team costs
#: more than it saves, and parallel sweeps already use every core (assumption, measured
#: on the 2-core reference machine: break-even near 30,000 residents).
PARALLEL_MIN_N = 50_000

RULE_CODES = {"logistic": 0, "threshold": 1, "bass": 2, "independent_cascade": 3}

# Channel bits: which optional per-resident arrays are present this step.
HAS_INFLUENCE = 1
HAS_TIE_BOOST = 2
HAS_UTILITY = 4
HAS_LAPSE = 8
HAS_ATTITUDE = 16
HAS_COST_RELIEF = 32
HAS_NORM_SALIENCE = 64
HAS_DIRECT = 128
HAS_LOCKED = 256
INTEGRAL = 512  # influence holds int8-range integers: sum ties in int64 (exact)


def _wanted() -> bool:
    return os.environ.get("NUDGESIM_NUMBA", "1").strip().lower() not in ("0", "false", "no", "off")


# GNU OpenMP's worker threads spin after each parallel region by default; on a 2-core
# machine they then steal the CPU from the numpy work between kernels (measured: a 100k
# step took 42 ms instead of 9). Passive waiting unless the user chose otherwise. Must be
# set before numba starts its OpenMP pool (at the first parallel launch).
os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")

try:  # numba is optional: the numpy engine computes the same results
    if not _wanted():
        raise ImportError("disabled by NUDGESIM_NUMBA=0")
    import numba
    from numba import njit, prange

    AVAILABLE = True
except ImportError:  # pragma: no cover - exercised only without numba
    AVAILABLE = False

#: Engines built while this is True use the kernels; tests flip it to compare the paths.
ENABLED = AVAILABLE

# The workqueue threading layer aborts when two Python threads launch parallel kernels at
# once (e.g. two viz sessions); one lock serialises launches whatever layer numba picked.
_LAUNCH = threading.Lock()

_U64 = np.uint64
GOLDEN = _U64(rngmod._GOLDEN)
ODD = _U64(rngmod._ODD)
M1 = _U64(rngmod._M1)
M2 = _U64(rngmod._M2)


def step_key(key: int, step: int) -> int:
    """The per-step offset of the counter-based stream (same as rng.uniform_array)."""
    return rngmod._step_key(key, step)


if AVAILABLE:

    @njit(inline="always", cache=True, error_model="numpy")
    def _uniform(i, skey):
        """rng.uniform_array's SplitMix64 value for resident i, in wrapping uint64 math."""
        z = np.uint64(i) * ODD + skey
        z = (z ^ (z >> np.uint64(30))) * M1
        z = (z ^ (z >> np.uint64(27))) * M2
        z = z ^ (z >> np.uint64(31))
        return np.float64(z >> np.uint64(11)) * 2.0**-53

    # Small single-purpose loops: LLVM compiles each tightly; one loop full of per-tie
    # branches on the channel flags ran 2x slower.
    @njit(inline="always", cache=True, error_model="numpy")
    def _count(i, indptr, indices, x):
        c = 0
        for jj in range(indptr[i], indptr[i + 1]):
            c += np.int64(x[indices[jj]])
        return c, np.int64(indptr[i + 1] - indptr[i])

    @njit(inline="always", cache=True, error_model="numpy")
    def _count_infl(i, indptr, indices, x, f8):
        c = 0
        d = 0
        for jj in range(indptr[i], indptr[i + 1]):
            j = indices[jj]
            f = np.int64(f8[j])
            c += f * np.int64(x[j])
            d += f
        return c, d

    @njit(cache=True, error_model="numpy")
    def _count_ward(i, indptr, indices, x, f8, has_infl, ward):
        wi = ward[i]
        c = 0
        d = 0
        for jj in range(indptr[i], indptr[i + 1]):
            j = indices[jj]
            same = np.int64(ward[j] == wi)
            f = np.int64(f8[j]) if has_infl else np.int64(1)
            c += same * f * np.int64(x[j])
            d += same * f
        return c, d

    @njit(cache=True, error_model="numpy")
    def _fsum(i, indptr, indices, weights, unit, x, f32, has_infl, ward, in_ward):
        """Float sums in stored order from 0.0, one ``w * x`` at a time (scipy's order)."""
        wi = ward[i] if in_ward else 0
        num = 0.0
        den = 0.0
        for jj in range(indptr[i], indptr[i + 1]):
            j = indices[jj]
            if in_ward and ward[j] != wi:
                continue
            w = 1.0 if unit else weights[jj]
            a = np.float64(x[j])
            if has_infl:
                f = np.float64(f32[j])
                num += w * (f * a)
                den += w * f
            else:
                num += w * a
                den += w * 1.0
        return num, den

    @njit(inline="always", cache=True, error_model="numpy")
    def _row_sums(i, indptr, indices, weights, unit, x, ward, infl, tie_boost, flags):
        """(Σ w·x, Σ w·1-or-influence) over row i, each then plus tie_boost·(same over in-ward
        ties): the operation order of Engine.neighbour_sum. x is a uint8 mask (adopted for
        the norm, newly adopted for the cascade exposure), times the influence if any.

        With unit weights and int8 influence (flag INTEGRAL) every partial sum is an integer
        below 2^53, so int64 sums equal the float sums exactly, without the float-add
        dependency chain.
        """
        has_infl = (flags & HAS_INFLUENCE) != 0
        boosted = (flags & HAS_TIE_BOOST) != 0
        f8, f32 = infl  # int8 copy (INTEGRAL) or exact float32 copy of fx.influence
        if unit and (not has_infl or (flags & INTEGRAL) != 0):
            if has_infl:
                c, d = _count_infl(i, indptr, indices, x, f8)
            else:
                c, d = _count(i, indptr, indices, x)
            num = np.float64(c)
            den = np.float64(d)
            if boosted:
                c, d = _count_ward(i, indptr, indices, x, f8, has_infl, ward)
                num += tie_boost[i] * np.float64(c)
                den += tie_boost[i] * np.float64(d)
            return num, den
        num, den = _fsum(i, indptr, indices, weights, unit, x, f32, has_infl, ward, False)
        if boosted:
            inum, iden = _fsum(i, indptr, indices, weights, unit, x, f32, has_infl, ward, True)
            num += tie_boost[i] * inum
            den += tie_boost[i] * iden
        return num, den

    @njit(parallel=True, cache=True, error_model="numpy")
    def _compress(x, i8, f32):
        """Small copies of the influence weights for the gathers (an 8 MB float64 array at
        10^6 residents misses cache on every rewired tie; 1 MB of int8 does not).
        Returns (all are integers in int8 range, all are exact in float32)."""
        not_int = 0
        not_f32 = 0
        for i in prange(x.shape[0]):
            v = x[i]
            f = np.float32(v)
            f32[i] = f
            if np.float64(f) != v:
                not_f32 += 1
            if -128.0 <= v <= 127.0 and v == np.floor(v):
                i8[i] = np.int8(v)
            else:
                i8[i] = 0
                not_int += 1
        return not_int == 0, not_f32 == 0

    @njit(inline="always", cache=True, error_model="numpy")
    def _norm_at(i, indptr, indices, weights, unit, adopted, newly, ward, influence, tie_boost,
                 flags, msg_weight, msg_shown, msg_inj):
        """Engine.perceived_norm for resident i."""
        num, den = _row_sums(i, indptr, indices, weights, unit, adopted, ward, influence,
                             tie_boost, flags)
        norm = num / den if den > 0 else 0.0
        for k in range(msg_weight.shape[0]):
            pulled = norm + msg_weight[k, i] * (msg_shown[k, i] - norm)
            if msg_inj[k] and adopted[i] != 0:
                pulled = max(pulled, norm)
            norm = pulled
        return norm

    @njit(inline="always", cache=True, error_model="numpy")
    def _sigmoid(x):
        return 1.0 / (1.0 + np.exp(-x))

    @njit(inline="always", cache=True, error_model="numpy")
    def _shift(p, push):
        if push == 0:
            return p
        return _sigmoid(np.log(p) - np.log1p(-p) + push)

    @njit(inline="always", cache=True, error_model="numpy")
    def _hazard(i, was, rule, params, norm, exposure, attitude, habit, cost, threshold, susc,
                utility, lapse, att_shift, relief_a, salience, flags):
        """rules.hazards for resident i: p_adopt if not adopted, else p_lapse."""
        util = utility[i] if (flags & HAS_UTILITY) != 0 else 0.0
        lap = lapse[i] if (flags & HAS_LAPSE) != 0 else 0.0
        ash = att_shift[i] if (flags & HAS_ATTITUDE) != 0 else 0.0
        crel = relief_a[i] if (flags & HAS_COST_RELIEF) != 0 else 0.0
        if rule == 0:  # logistic
            sal = salience[i] if (flags & HAS_NORM_SALIENCE) != 0 else 0.0
            att = attitude[i] + ash
            c = cost[i] * (1.0 - crel)
            nrm = susc[i] * (1.0 + sal) * norm
            if not was:
                u = (params[0] + params[1] * att + params[2] * nrm + params[3] * habit[i]
                     - params[4] * c + util)
            else:
                u = (params[5] - params[6] * att - params[7] * nrm - params[8] * habit[i]
                     + params[9] * c + lap)
            return _sigmoid(u)
        relief = cost[i] * crel
        if was:
            push = lap - ash - relief
            return _shift(params[params.shape[0] - 1], push)
        push = util + ash + relief
        if rule == 1:  # threshold
            return 1.0 if norm >= threshold[i] else 0.0
        if rule == 2:  # bass
            return _shift(params[0] + params[1] * norm, push)
        return _shift(1.0 - params[0] ** exposure, push)  # independent cascade: params[0] = 1-p

    @njit(cache=True, error_model="numpy")
    def _exposure(i, indptr, indices, weights, unit, newly, ward, influence, tie_boost, flags):
        """Cascade exposure of resident i (a call, not inlined: only the cascade rule needs it)."""
        num, _ = _row_sums(i, indptr, indices, weights, unit, newly, ward, influence, tie_boost,
                           flags)
        return num

    @njit(parallel=True, cache=True, error_model="numpy")
    def _decide_kernel(indptr, indices, weights, unit, adopted, newly, ward, influence,
                       tie_boost, msg_weight, msg_shown, msg_inj, rule, params, attitude, habit,
                       cost, threshold, susc, utility, lapse, att_shift, relief_a, salience,
                       direct, locked, flags, skey, band, adopt_out, lapse_out):
        """Fused step: norm (or exposure), hazard, uniform, decision. Returns the number of
        undecided residents (uniform within `band` of the hazard), marked adopt & lapse."""
        n = adopt_out.shape[0]
        near = 0
        for i in prange(n):
            was = adopted[i] != 0
            forced_in = (not was) and (flags & HAS_DIRECT) != 0 and direct[i]
            kept = was and (flags & HAS_LOCKED) != 0 and locked[i]
            a_out = forced_in
            l_out = False
            if not (forced_in or kept):
                norm = _norm_at(i, indptr, indices, weights, unit, adopted, newly, ward,
                                influence, tie_boost, flags, msg_weight, msg_shown, msg_inj)
                exposure = 0.0
                if rule == 3:
                    exposure = _exposure(i, indptr, indices, weights, unit, newly, ward,
                                         influence, tie_boost, flags)
                p = _hazard(i, was, rule, params, norm, exposure, attitude, habit, cost,
                            threshold, susc, utility, lapse, att_shift, relief_a, salience, flags)
                u = _uniform(i, skey)
                if abs(u - p) <= band:
                    a_out = True
                    l_out = True
                    near += 1
                else:
                    a_out = (not was) and u < p
                    l_out = was and u < p
            adopt_out[i] = a_out
            lapse_out[i] = l_out
        return near

    @njit(parallel=True, cache=True, error_model="numpy")
    def _uniform_many(ids, skey, out):
        """The decide stream's uniforms for residents ids (tests compare them with rng.py)."""
        for k in prange(ids.shape[0]):
            out[k] = _uniform(ids[k], skey)

    @njit(parallel=True, cache=True, error_model="numpy")
    def _norm_kernel(indptr, indices, weights, unit, adopted, newly, ward, influence, tie_boost,
                     flags, msg_weight, msg_shown, msg_inj, out):
        for i in prange(out.shape[0]):
            out[i] = _norm_at(i, indptr, indices, weights, unit, adopted, newly, ward, influence,
                              tie_boost, flags, msg_weight, msg_shown, msg_inj)

    @njit(cache=True, error_model="numpy")
    def _norm_rows(rows, indptr, indices, weights, unit, adopted, newly, ward, influence,
                   tie_boost, flags, msg_weight, msg_shown, msg_inj, out):
        """Perceived norm (out[:, 0]) and exposure (out[:, 1]) of a few residents."""
        for k in range(rows.shape[0]):
            i = rows[k]
            out[k, 0] = _norm_at(i, indptr, indices, weights, unit, adopted, newly, ward,
                                 influence, tie_boost, flags, msg_weight, msg_shown, msg_inj)
            out[k, 1], _ = _row_sums(i, indptr, indices, weights, unit, newly, ward, influence,
                                     tie_boost, flags)

    @njit(parallel=True, cache=True, error_model="numpy")
    def _neighbour_sum_kernel(indptr, indices, weights, unit, x, ward, tie_boost, boosted, out):
        """Engine.neighbour_sum for a float64 x: A @ x, plus tie_boost * (in-ward A) @ x."""
        for i in prange(out.shape[0]):
            s = 0.0
            for jj in range(indptr[i], indptr[i + 1]):
                s += (1.0 if unit else weights[jj]) * x[indices[jj]]
            if boosted:
                wi = ward[i]
                inner = 0.0
                for jj in range(indptr[i], indptr[i + 1]):
                    j = indices[jj]
                    if ward[j] == wi:
                        inner += (1.0 if unit else weights[jj]) * x[j]
                s += tie_boost[i] * inner
            out[i] = s

    @njit(parallel=True, cache=True, error_model="numpy")
    def _tally_kernel(adopted, ever, ward, n_wards, chunks):
        """(adopters, ever adopted, adopters per ward as float64) in one pass."""
        n = adopted.shape[0]
        part = np.zeros((chunks, n_wards), dtype=np.float64)
        counts = np.zeros((chunks, 2), dtype=np.int64)
        size = (n + chunks - 1) // chunks
        for c in prange(chunks):
            for i in range(c * size, min(n, (c + 1) * size)):
                if adopted[i]:
                    part[c, ward[i]] += 1.0
                    counts[c, 0] += 1
                if ever[i]:
                    counts[c, 1] += 1
        by_ward = np.zeros(n_wards, dtype=np.float64)
        a = 0
        e = 0
        for c in range(chunks):
            a += counts[c, 0]
            e += counts[c, 1]
            for w in range(n_wards):
                by_ward[w] += part[c, w]
        return a, e, by_ward


# ---------------------------------------------------------------------------------------
# Python-side wrappers: argument packing, thread count, the exact re-check
# ---------------------------------------------------------------------------------------

_EMPTY_F = np.zeros(0)
_EMPTY_B = np.zeros(0, dtype=np.bool_)
_NO_MSG = np.zeros((0, 0))
_NO_INJ = np.zeros(0, dtype=np.bool_)


class _Threads:
    """Run small problems on one thread (see PARALLEL_MIN_N); always hold the launch lock."""

    def __init__(self, n: int) -> None:
        self.n = n

    def __enter__(self) -> None:
        _LAUNCH.acquire()
        self.saved = numba.get_num_threads()
        if self.n < PARALLEL_MIN_N:
            numba.set_num_threads(1)

    def __exit__(self, *exc) -> None:
        numba.set_num_threads(self.saved)
        _LAUNCH.release()


class Graph:
    """The network's CSR arrays as the kernels want them (no copies; no weights when all
    ties weigh 1, so the engine never needs a scipy matrix on this path)."""

    def __init__(self, network, ward: np.ndarray) -> None:
        self.indptr = network.indptr
        self.indices = network.indices
        w = network.weights
        self.unit = bool(w is None or w.size == 0 or np.all(w == 1.0))
        # a unit-weight graph never reads its weights: w * x == x exactly when w == 1.0
        self.weights = _EMPTY_F if self.unit else np.ascontiguousarray(w, np.float64)
        self.ward = np.ascontiguousarray(ward, dtype=np.int32)
        self.n = network.n


def _f(arr: np.ndarray | None) -> np.ndarray:
    return _EMPTY_F if arr is None else arr


def _b(arr: np.ndarray | None) -> np.ndarray:
    return _EMPTY_B if arr is None else arr


def _u8(mask: np.ndarray) -> np.ndarray:
    """A bool mask as uint8 without a copy (kernels add it as 0/1)."""
    return np.ascontiguousarray(mask, dtype=np.bool_).view(np.uint8)


def _messages(fx) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    msgs = fx.norm_messages
    if not msgs:
        return _NO_MSG, _NO_MSG, _NO_INJ
    if len(msgs) == 1:  # views, no copy: the common case of one feedback nudge
        w, s, inj = msgs[0]
        return w.reshape(1, -1), s.reshape(1, -1), np.array([inj])
    return (
        np.stack([m[0] for m in msgs]),
        np.stack([m[1] for m in msgs]),
        np.array([m[2] for m in msgs], dtype=np.bool_),
    )


_NO_INFL = (np.zeros(0, dtype=np.int8), np.zeros(0, dtype=np.float32))


def _prepare(fx) -> tuple[int, tuple[np.ndarray, np.ndarray]] | None:
    """Channel flags and the compressed influence weights, or None when the influence
    weights are not exact in float32 (then the numpy engine takes this step)."""
    flags = 0
    for bit, arr in (
        (HAS_INFLUENCE, fx.influence),
        (HAS_TIE_BOOST, fx.tie_boost),
        (HAS_UTILITY, fx.utility),
        (HAS_LAPSE, fx.lapse),
        (HAS_ATTITUDE, fx.attitude),
        (HAS_COST_RELIEF, fx.cost_relief),
        (HAS_NORM_SALIENCE, fx.norm_salience),
        (HAS_DIRECT, fx.direct),
        (HAS_LOCKED, fx.locked),
    ):
        if arr is not None:
            flags |= bit
    if fx.influence is None:
        return flags, _NO_INFL
    x = np.ascontiguousarray(fx.influence, dtype=np.float64)
    i8 = np.empty(x.size, dtype=np.int8)
    f32 = np.empty(x.size, dtype=np.float32)
    with _Threads(x.size):
        small_int, exact32 = _compress(x, i8, f32)
    if small_int:
        flags |= INTEGRAL
    elif not exact32:
        return None
    return flags, (i8, f32)


def rule_params(rule) -> tuple[int, np.ndarray]:
    """Rule code and its coefficients in the order the kernel reads them."""
    kind = rule.kind
    if kind == "logistic":
        vals = [rule.adopt_intercept, rule.adopt_attitude, rule.adopt_norm, rule.adopt_habit,
                rule.adopt_cost, rule.lapse_intercept, rule.lapse_attitude, rule.lapse_norm,
                rule.lapse_habit, rule.lapse_cost]
    elif kind == "threshold":
        vals = [rule.lapse]
    elif kind == "bass":
        vals = [rule.p, rule.q, rule.lapse]
    else:  # independent cascade: the base of the power, as rules.py computes it
        vals = [1.0 - rule.p, rule.lapse]
    return RULE_CODES[kind], np.array(vals, dtype=np.float64)


def perceived_norm(g: Graph, adopted: np.ndarray, fx) -> np.ndarray | None:
    """Engine.perceived_norm, bit for bit (None: leave this one to numpy, see _prepare)."""
    prep = _prepare(fx)
    if prep is None:
        return None
    flags, infl = prep
    mw, ms, mi = _messages(fx)
    out = np.empty(g.n)
    a8 = _u8(adopted)
    with _Threads(g.n):
        _norm_kernel(g.indptr, g.indices, g.weights, g.unit, a8, a8, g.ward, infl,
                     _f(fx.tie_boost), flags, mw, ms, mi, out)
    return out


def neighbour_sum(g: Graph, x: np.ndarray, tie_boost: np.ndarray | None) -> np.ndarray:
    """Engine.neighbour_sum, bit for bit."""
    out = np.empty(g.n)
    x = np.ascontiguousarray(x, dtype=np.float64)
    with _Threads(g.n):
        _neighbour_sum_kernel(g.indptr, g.indices, g.weights, g.unit, x, g.ward,
                              _f(tie_boost), tie_boost is not None, out)
    return out


def tally(adopted: np.ndarray, ever: np.ndarray, ward: np.ndarray, n_wards: int):
    """(adopters, ever adopted, float64 adopters per ward) — the numbers _record logs."""
    chunks = 1 if adopted.size < PARALLEL_MIN_N else max(1, numba.get_num_threads()) * 4
    with _Threads(adopted.size):
        a, e, by_ward = _tally_kernel(adopted, ever, ward, n_wards, chunks)
    return int(a), int(e), by_ward


def decide(engine, t: int, fx) -> tuple[np.ndarray, np.ndarray, int] | None:
    """Engine.decide in one pass: (adopt, lapse, residents re-checked with the numpy rule),
    or None when this step must run on numpy (see _prepare)."""
    from . import rules

    prep = _prepare(fx)
    if prep is None:
        return None
    flags, infl = prep
    g: Graph = engine._graph
    pop = engine.population
    code, params = engine._rule_params
    mw, ms, mi = _messages(fx)
    skey = _U64(step_key(engine.streams.key("decide"), t))
    adopt = np.empty(g.n, dtype=np.bool_)
    lapse = np.empty(g.n, dtype=np.bool_)
    graph_args = (g.indptr, g.indices, g.weights, g.unit, _u8(engine.adopted),
                  _u8(engine.newly_adopted), g.ward, infl, _f(fx.tie_boost))
    with _Threads(g.n):
        near = _decide_kernel(*graph_args, mw, ms, mi, code, params, pop.attitude,
                              engine.habit, pop.cost, pop.threshold, pop.susceptibility,
                              _f(fx.utility), _f(fx.lapse), _f(fx.attitude), _f(fx.cost_relief),
                              _f(fx.norm_salience), _b(fx.direct), _b(fx.locked), flags, skey,
                              float(NEAR), adopt, lapse)
    if near:
        # the exact path: the numpy rule itself on the few residents too close to call
        ids = np.flatnonzero(adopt & lapse)
        vals = np.empty((ids.size, 2))
        _norm_rows(ids.astype(np.int64), *graph_args, flags, mw, ms, mi, vals)

        def at(arr):
            return 0.0 if arr is None else arr[ids]

        x = rules.Inputs(
            attitude=pop.attitude[ids], habit=engine.habit[ids], cost=pop.cost[ids],
            susceptibility=pop.susceptibility[ids], threshold=pop.threshold[ids],
            norm=vals[:, 0], exposure=vals[:, 1] if code == 3 else 0.0,
            utility=at(fx.utility), lapse=at(fx.lapse), attitude_shift=at(fx.attitude),
            cost_relief=at(fx.cost_relief), norm_salience=at(fx.norm_salience),
        )
        p_adopt, p_lapse = rules.hazards(engine.rule, x)
        u = engine.streams.uniform("decide", t, ids)
        was = engine.adopted[ids]
        adopt[ids] = ~was & (u < p_adopt)
        lapse[ids] = was & (u < p_lapse)
    return adopt, lapse, int(near)
