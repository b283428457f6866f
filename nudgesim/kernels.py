"""Compiled kernels for the engine's hot path: a step is a pass over residents, not ties.

Why: a numpy step makes ~20 passes over resident-sized arrays and two sparse products;
at 10^6 residents that is memory traffic, not arithmetic. Here a step is:

1. ``Counts.sync``: every resident's integer tie counts (Σ influence·adopted and
   Σ influence over its ties, and over its in-ward ties if a community group may boost
   them) are brought up to date by pushing the differences of the few residents whose
   adoption or influence changed to their neighbours — a few thousand tie visits rather
   than all 10^7 at a million residents. On a unit-weight graph with integer influence
   these integers are exactly the numpy engine's norm numerator and denominator (with
   influence an integer times 2^-K, such as 2.5, exactly those times 2^K).
2. ``_decide``: one pass over residents in blocks (:func:`block`): norms from
   the counts, the nudges' terms (Effects: "stamped residents get table[t - stamp]"),
   the log-odds, the counter-based uniform, and a cheap bound that settles most residents
   without ``exp``; the few the bound cannot settle take the exact scalar path.
3. ``_apply``: the synchronous update, habits and the step's tallies in one pass.

Weighted graphs, other fractional influence (1.1) and the cascade rule sum every tie
each step instead (``_decide`` with ``by_counts=False``: the same block code after per-row
sums). Every influence runs here; none sends a step back to numpy.

Exactness (results are bit-identical to the numpy engine, which stays the reference and
the fallback):

* Sums over a CSR row run in stored index order from 0.0, adding ``w * x`` one term at a
  time (what scipy's ``csr_matvec`` does); numba never reassociates or fuses multiply-add
  without ``fastmath``, so norms, exposures and every other +,-,*,/ value are identical.
  Integer counts are exact, whatever the order they were added in.
* ``exp``, ``log``, ``log1p`` and ``pow`` may differ in the last bit between LLVM/libm
  and numpy's SIMD (SVML) loops. Such a difference can only change a decision when the
  uniform lands within a few ulps of the hazard. The kernel therefore marks every
  resident whose uniform is within :data:`NEAR` of its hazard as undecided, and the
  engine recomputes those few hazards with the numpy rule (rules.py) itself. Decisions
  are thus the numpy engine's by construction.
* The uniforms are nudgesim.rng's SplitMix64 hash in wrapping uint64 arithmetic, so they
  depend only on (seed, stream, step, resident), never on the thread count.

Which engine runs (choose_backend): numba is imported, and the kernels compiled or loaded
from numba's cache, only by a run large enough to pay for it; smaller runs take the numpy
engine and never import numba. ``NUDGESIM_NUMBA=0`` (or no numba) always takes numpy,
``NUDGESIM_NUMBA=1`` always the kernels.

Threads (choose_threads): what the process may use (affinity, cgroup quota) minus what
other processes are using right now. Importing this module sets no environment variable:
the OpenMP runtime's wait policy stays whatever the host process has. Rather than tune
spinning, the thread count avoids the case spinning hurts: a team larger than the free
cores, whose regions each wait for a thread that lost its core.

"Other processes" means exactly that (_LoadMeter): over a window, the CPU time spent on
our CPUs (/proc/stat) minus this process's own CPU time over the same window (all its
threads, spinning OpenMP threads included), never the load average. The load average
counts our own recent work too, so a long-lived process (the benchmark, a sweep worker,
the browser view) that had just been busy itself (building a graph, running numpy)
read itself as load and ran one thread. The first window opens at import; a window older
than STALE is topped up by the other processes' runnable threads right now, our own
threads excluded.
"""

from __future__ import annotations

import functools
import hashlib
import importlib.util
import math
import os
import platform
import sys
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

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
#: Residents per block in the decide kernels summing ties, and the least block of those
#: on counts (see block()): a block's scratch arrays (~200 KB) stay in L2. Measured on
#: the reference machine at 10^6 residents: 256 → 4.5 ms, 512 → 4.0, 1024 → 3.9,
#: 2048 → 3.7, 4096 → 3.7.
BLOCK = 2048

#: The counts path's largest block, and the bytes of scratch its block touches per
#: resident (norm, x and five channel rows of doubles, the open flags): see block().
BLOCK_MAX = 8192
SCRATCH_BYTES = 64


@functools.cache
def block() -> int:
    """Residents per block of the decide pass on counts, on this machine: the largest
    power of two from BLOCK to BLOCK_MAX whose scratch fills at most half of the L2
    cache a thread has (BLOCK when the system does not say).

    Why: at 10^7 residents the pass streams a dozen arrays from memory, and longer
    blocks restart those streams less often: 20.5 -> 18.8 (4,096) -> 18.2 ms (8,192)
    compiled for this CPU, 24.2 -> 22.5 -> 21.2 ms for AVX2 (week 30, AMD Zen 5, 1 MB
    L2). Past half the L2 the scratch no longer stays there: 12,288 took 18.4 ms and
    16,384 35.9. Decisions do not depend on the blocks."""
    b = BLOCK
    while 2 * b <= BLOCK_MAX and 2 * b * SCRATCH_BYTES <= l2_bytes() // 2:
        b *= 2
    return b


def l2_bytes(caches: Path = Path("/sys/devices/system/cpu/cpu0/cache")) -> int:
    """The level-2 cache of the first CPU in bytes, divided among the CPUs that share it
    (hyperthreads), from Linux sysfs; 0 when the system does not say."""
    for path in sorted(caches.glob("index*")):
        try:
            if (path / "level").read_text().strip() != "2":
                continue
            text = (path / "size").read_text().strip().upper()
            size = int(text.rstrip("KM")) * {"K": 2**10, "M": 2**20}.get(text[-1:], 1)
            return size // _cpus_in((path / "shared_cpu_list").read_text())
        except (OSError, ValueError):
            continue
    return 0


def _cpus_in(cpu_list: str) -> int:
    """How many CPUs a sysfs CPU list names ("0", "0-1", "0,8", "0-3,8-11")."""
    count = 0
    for part in cpu_list.strip().split(","):
        first, _, last = part.partition("-")
        count += int(last or first) - int(first) + 1
    return max(count, 1)

#: Tie ends of a block that the integer tie sums add up in one running sum (int32
#: scratch, 128 KB: L2-sized); a block with more ties sums row by row. Measured at 10^6
#: residents x 10 ties (one thread, load ~4): 34 ms row by row, 28 ms as one running sum.
TIE_SCRATCH = 16 * BLOCK + 1

#: Undecided residents per chunk whose ids the decide kernel lists for the re-check (a
#: few per 10^9 decisions are undecided at NEAR = 1e-9, so this is ample; more send the
#: re-check back to a scan of every resident's flags, which is the same list).
RECHECK_ROOM = 64

#: Mask buffers kept for reuse between steps (decide's _spare): a step needs three while
#: the engine holds two from the last step (adoption, new adopters).
SPARE_MASKS = 8

RULE_CODES = {"logistic": 0, "threshold": 1, "bass": 2, "independent_cascade": 3}

# Flags: which optional per-step inputs are present.
HAS_INFLUENCE = 1
HAS_TIE_BOOST = 2
HAS_DIRECT = 128
HAS_LOCKED = 256
INTEGRAL = 512  # influence holds int8-range integers (times a power of two): int64 sums
HALF_ROWS = 1024  # compiled without AVX-512: see _norms_from_counts and _counts_in_loop
WARD_RUNS = 2048  # every ward is one run of residents (Graph.runs): see _float_row_ward


def _setting() -> bool | None:
    """NUDGESIM_NUMBA: 0/false/no/off = numpy engine; 1/true/yes/on = compiled kernels
    whenever numba is installed; unset or "auto" = chosen per run (choose_backend)."""
    value = os.environ.get("NUDGESIM_NUMBA", "auto").strip().lower()
    if value in ("0", "false", "no", "off"):
        return False
    if value in ("1", "true", "yes", "on"):
        return True
    return None


#: numba is installed and not switched off. Found without importing it: importing numba
#: and building the dispatchers costs ~0.5 s, paid only by a run that uses the kernels.
AVAILABLE = _setting() is not False and importlib.util.find_spec("numba") is not None
#: None: each engine chooses (choose_backend); True: compiled kernels; False: numpy.
#: NUDGESIM_NUMBA sets it; tests flip it to compare the paths.
ENABLED: bool | None = _setting() if AVAILABLE else False
#: True once numba is imported and the kernels below are numba dispatchers (load()).
LOADED = False
numba: Any = None  # the numba module, once loaded
prange = range  # numba.prange, once loaded

# The workqueue threading layer aborts when two Python threads launch parallel kernels at
# once (e.g. two viz sessions); one lock serialises launches whatever layer numba picked.
_LAUNCH = threading.Lock()
_LOAD = threading.Lock()


class _Kernel:
    """A kernel of this module before numba is loaded: calling it loads numba (load()) and
    calls the dispatcher that replaced it. Kernels refer to each other through the module's
    globals, which load() rebinds before anything is compiled."""

    def __init__(self, fn: Callable, options: dict) -> None:
        self.fn = fn
        self.options = options
        self.__name__ = fn.__name__
        self.__doc__ = fn.__doc__

    def __call__(self, *args: Any) -> Any:
        load()
        return globals()[self.__name__](*args)


def njit(**options: Any) -> Callable[[Callable], _Kernel]:
    """numba.njit, deferred to load(): importing this module never imports numba."""
    return lambda fn: _Kernel(fn, options)


def load() -> None:
    """Import numba and make every kernel of this module a numba dispatcher (compiled, or
    loaded from numba's on-disk cache, on its first call)."""
    global numba, prange, LOADED
    if LOADED:
        return
    with _LOAD:
        if LOADED:
            return
        import numba as nb

        numba, prange = nb, nb.prange
        names = globals()
        names["_prefetch"] = prefetch_intrinsic()
        names["_f64_from_bits"] = f64_from_bits_intrinsic()
        names["_trailing_zeros"] = trailing_zeros_intrinsic()
        for name, obj in list(names.items()):
            if isinstance(obj, _Kernel):
                names[name] = nb.njit(**obj.options)(obj.fn)
        LOADED = True


def _prefetch(arr: np.ndarray, i: int) -> None:
    """Ask the CPU to fetch arr[i]'s cache line (no effect on any value). load() replaces
    this with a numba intrinsic; the kernels only run after load()."""


def prefetch_intrinsic() -> Any:
    """_prefetch as LLVM's prefetch instruction (read, keep in every cache level): a loop
    that visits scattered residents asks for the lines it needs a few steps ahead, so
    their cache misses overlap instead of following one another."""
    ir: Any = importlib.import_module("llvmlite.ir")  # untyped package
    binding: Any = importlib.import_module("llvmlite.binding")
    # the intrinsic's name carries its pointer type: "p0" from LLVM 17 (opaque pointers
    # only), "p0i8" for the typed i8* of the LLVM 14-16 that numba 0.60-0.6x build on
    name = "llvm.prefetch.p0" if binding.llvm_version_info[0] >= 17 else "llvm.prefetch.p0i8"
    from numba.core import cgutils, types
    from numba.extending import intrinsic

    @intrinsic
    def prefetch(typingctx, arr, i):
        if not isinstance(arr, types.Array) or arr.ndim != 1:
            return None  # one-dimensional arrays only

        def codegen(context, builder, signature, args):
            aryty = signature.args[0]
            ary = context.make_array(aryty)(context, builder, args[0])
            index = context.cast(builder, args[1], signature.args[1], types.intp)
            ptr = cgutils.get_item_pointer(context, builder, aryty, ary, [index],
                                           wraparound=False)
            i8p = ir.IntType(8).as_pointer()
            i32 = ir.IntType(32)
            fn = cgutils.get_or_insert_function(
                builder.module, ir.FunctionType(ir.VoidType(), [i8p, i32, i32, i32]),
                name)
            builder.call(fn, [builder.bitcast(ptr, i8p), i32(0), i32(3), i32(1)])
            return context.get_dummy_value()

        return types.void(arr, i), codegen

    return prefetch


def _f64_from_bits(bits: int) -> float:
    """The double whose bits are the int64 `bits` (load() replaces this with an LLVM
    bitcast; vectorised, it is no instruction at all)."""
    return float(np.array(bits, dtype=np.int64).view(np.float64))


def _trailing_zeros(word: int) -> int:
    """The number of zero bits below the lowest set bit of a nonzero uint64 (load()
    replaces this with LLVM's cttz: one instruction)."""
    return (int(word) & -int(word)).bit_length() - 1


def f64_from_bits_intrinsic() -> Any:
    """_f64_from_bits as LLVM's bitcast from i64 to double."""
    ir: Any = importlib.import_module("llvmlite.ir")  # untyped package
    from numba.core import types
    return _int64_intrinsic("f64_from_bits", lambda word: types.float64,
                            lambda builder, v: builder.bitcast(v, ir.DoubleType()))


def trailing_zeros_intrinsic() -> Any:
    """_trailing_zeros as LLVM's cttz on a 64-bit integer (ours, not numba's internal
    one, so a numba release that moves that cannot break load())."""
    ir: Any = importlib.import_module("llvmlite.ir")  # untyped package
    return _int64_intrinsic("trailing_zeros", lambda word: word,
                            lambda builder, v: builder.cttz(v, ir.Constant(ir.IntType(1), 0)))


def _int64_intrinsic(name: str, result: Callable, emit: Callable) -> Any:
    """A numba intrinsic of one 64-bit integer (signed or not) that `emit(builder,
    value)` compiles to one LLVM instruction, returning `result(argument type)`."""
    from numba.core import types
    from numba.extending import intrinsic

    def typer(typingctx, word):
        if not isinstance(word, types.Integer) or word.bitwidth != 64:
            return None

        def codegen(context, builder, signature, args):
            return emit(builder, args[0])

        return result(word)(word), codegen

    typer.__name__ = typer.__qualname__ = name  # numba names the intrinsic after it
    return intrinsic(typer)


_U64 = np.uint64
GOLDEN = _U64(rngmod.GOLDEN)
ODD = _U64(rngmod.ODD)
M1 = _U64(rngmod.M1)
M2 = _U64(rngmod.M2)


def step_key(key: int, step: int) -> int:
    """The per-step offset of the counter-based stream (same as rng.uniform_array)."""
    return rngmod.step_key(key, step)


@njit(inline="always", cache=True, error_model="numpy")
def _uniform(i, skey):
    """rng.uniform_array's SplitMix64 value for resident i, in wrapping uint64 math."""
    return _uniform_at(np.uint64(i) * ODD + skey)

@njit(inline="always", cache=True, error_model="numpy")
def _uniform_at(z):
    """The same from the counter z = i * ODD + skey (a loop over i adds ODD instead of
    multiplying: one 64-bit multiply fewer per resident)."""
    z = (z ^ (z >> np.uint64(30))) * M1
    z = (z ^ (z >> np.uint64(27))) * M2
    z = z ^ (z >> np.uint64(31))
    return np.float64(z >> np.uint64(11)) * 2.0**-53

@njit(inline="always", cache=True, error_model="numpy")
def _uniform_below(z):
    """A lower bound of _uniform_at(z), less than 2^-31 below it: the hash's top 31 bits
    (which the last xor-shift leaves as they are), converted as an int32. The exp-free
    bound only needs a value never above the uniform, and the exact path draws the
    uniform itself. Why not the uniform: x86 without AVX-512 has no instruction that
    converts 64-bit integer lanes to doubles, and the decide loop went scalar there."""
    z = (z ^ (z >> np.uint64(30))) * M1
    z = (z ^ (z >> np.uint64(27))) * M2
    return np.float64(np.int32(z >> np.uint64(33))) * 2.0**-31

# ---- tie sums over the graph (recount mode, norms for tests, the exact re-check) ----
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

@njit(inline="always", cache=True, error_model="numpy")
def _count_bytes(start, end, ties, v):
    """Σ v over ties[start:end] in int64, `ties` as uint32 (no check of each index for
    being negative)."""
    c = 0
    for jj in range(start, end):
        c += np.int64(v[ties[jj]])
    return c

@njit(inline="always", cache=True, error_model="numpy")
def _count_ward(i, indptr, indices, x, f8, has_infl, ward):
    """(Σ f x, Σ f) over row i's ties, then over its in-ward ones, in one pass."""
    wi = ward[i]
    c = 0
    d = 0
    cw = 0
    dw = 0
    for jj in range(indptr[i], indptr[i + 1]):
        j = indices[jj]
        same = np.int64(ward[j] == wi)
        f = np.int64(f8[j]) if has_infl else np.int64(1)
        fx = f * np.int64(x[j])
        c += fx
        d += f
        cw += same * fx
        dw += same * f
    return c, d, cw, dw

@njit(inline="always", cache=True, error_model="numpy")
def _fsum(i, indptr, indices, weights, unit, x, fl, has_infl, ward):
    """Float sums in stored order from 0.0, one ``w * x`` at a time (scipy's order), over
    row i's ties and, in the same pass, over its in-ward ones.

    Why in one pass, the others' terms added as 0.0: a sum from +0.0 is never -0.0 (in
    round-to-nearest x + y is -0.0 only when both are), and s + (±0.0) is s for any
    other s, infinities and NaN included, so adding 0.0 gives the sum that skips the
    term, bit for bit, without a branch per tie. A weighted step at 10^6 with a
    community group took 257-268 ms in two passes (the second skipping other wards),
    ~165 ms in one; it now takes the float fast path (_float_row_ward, rows kept between
    steps), 8-12 ms."""
    wi = ward[i]
    num = 0.0
    den = 0.0
    inum = 0.0
    iden = 0.0
    for jj in range(indptr[i], indptr[i + 1]):
        j = indices[jj]
        w = 1.0 if unit else weights[jj]
        a = np.float64(x[j])
        if has_infl:
            f = fl[j]
            tn = w * (f * a)
            td = w * f
        else:
            tn = w * a
            td = w * 1.0
        num += tn
        den += td
        same = ward[j] == wi
        inum += tn if same else 0.0
        iden += td if same else 0.0
    return num, den, inum, iden

@njit(inline="always", cache=True, error_model="numpy")
def _row_sums(i, indptr, indices, weights, unit, x, ward, infl, tb, flags):
    """(Σ w·x, Σ w·1-or-influence) over row i, each then plus tb·(same over in-ward
    ties): the operation order of Engine.neighbour_sum. x is a uint8 mask (adopted for
    the norm, newly adopted for the cascade exposure), times the influence if any.

    With unit weights and int8 influence (flag INTEGRAL: the influence is f8 x scale,
    scale a power of two) every partial sum is an integer below 2^53 times scale, so
    int64 sums times scale equal the float sums exactly, without the float-add
    dependency chain.
    """
    has_infl = (flags & HAS_INFLUENCE) != 0
    boosted = (flags & HAS_TIE_BOOST) != 0
    f8, fl, scale = infl  # (int8 influence / scale (INTEGRAL), float64 influence, scale)
    if unit and (not has_infl or (flags & INTEGRAL) != 0):
        if boosted:
            c, d, cw, dw = _count_ward(i, indptr, indices, x, f8, has_infl, ward)
            num = np.float64(c) * scale  # exact: a power of two times an integer < 2^53
            den = np.float64(d) * scale
            num += tb * (np.float64(cw) * scale)
            den += tb * (np.float64(dw) * scale)
            return num, den
        if has_infl:
            c, d = _count_infl(i, indptr, indices, x, f8)
        else:
            c, d = _count(i, indptr, indices, x)
        return np.float64(c) * scale, np.float64(d) * scale
    num, den, inum, iden = _fsum(i, indptr, indices, weights, unit, x, fl, has_infl, ward)
    if boosted:
        num += tb * inum
        den += tb * iden
    return num, den

# ---- the nudges' terms, evaluated for one resident -----------------------------------
@njit(inline="always", cache=True, error_model="numpy")
def _messages(i, norm, was, ward, stamps, t, mrow, mtab, mshown, minj):
    """Engine.perceived_norm's pulls toward the norm messages shown to resident i, in
    order. A resident never shown a message (stamp -1) reads the table's last entry, a
    zero weight, and keeps its norm exactly, as in numpy: no branch to mispredict."""
    for k in range(mrow.shape[0]):
        s = stamps[mrow[k], i]
        pulled = norm + mtab[k, t - s] * (mshown[k, s + 1, ward[i]] - norm)
        if minj[k] and was:
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
    if p == 0.0:  # what the formula gives (sigmoid(-inf) is 0.0), without log and exp:
        return 0.0  # a lapse of 0 (progressive rules), a Bass p of 0 with no adopted tie
    return _sigmoid(np.log(p) - np.log1p(-p) + push)

@njit(inline="always", cache=True, error_model="numpy")
def _mechanistic(i, was, rule, params, norm, exposure, cost, threshold, util, lap, ash,
                 crel):
    """rules.hazards of the threshold, Bass and cascade rules for resident i."""
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

@njit(inline="always", cache=True, error_model="numpy")
def _exp_above(x):
    """A double never below e^x, for x <= 0, without exp: with y = x log2(e), the double
    whose exponent and top 20 mantissa bits are (y + 1023) 2^20, rounded up by more than
    one unit (covering the rounding of y), is 2^floor(Y) (1 + frac(Y)) for some Y > y,
    and 1 + f >= 2^f on [0, 1]. At most 6.2% above e^x; y below -1000 reads -1000."""
    w = max(min(x, 0.0) * (1.4426950408889634 * 2.0**20), -1000.0 * 2.0**20)
    return _f64_from_bits(np.int64(np.int32(w + (1023.0 * 2.0**20 + 2.0))) << 32)

@njit(inline="always", cache=True, error_model="numpy")
def _surely_no_event(u, x, margin):
    """True when uniform u is above sigmoid(x) by more than margin, decided without exp:
    sigmoid(x) < e^x <= _exp_above(x). Most hazards are a few per cent, so most residents
    skip the exp; the bound only ever answers "certainly no event", which the exact value
    would answer too. Branch-free, so the caller's loop vectorises (int32 lanes: AVX2
    converts doubles to int32, not int64).

    Against the fifth-order series it replaced (sigmoid(x) < 1/d, d = 2 + z + ... +
    z^5/120, z = -x) it is tighter where hazards are small, e.g. 0.72% against 1.08%
    at x = -5, and it takes fewer instructions: the decide pass at 10^7 took 1-3% less
    (weeks 30 and 45: 26.3 -> 25.9 and 25.6 -> 25.3 ms compiled for AVX2, 23.9 -> 23.2
    and 21.6 -> 21.4 ms for AVX-512; AMD Zen 5)."""
    return (x < 0.0) & (u - margin > _exp_above(x))

@njit(inline="always", cache=True, error_model="numpy")
def _cascade_bound(e, p_tie, push):
    """A number never below the cascade's adoption hazard, _shift(1 - (1 - p)^e, push),
    for exposure e > 0 (2.0 when there is none to give: a uniform is never above it).

    1 - (1 - p)^e <= p max(e, 1) = h: Bernoulli's inequality for e >= 1, and
    (1 - p)^e >= 1 - p for e <= 1. A push <= 0 only lowers a hazard (_shift). One > 0
    gives h e^push / (1 + h (e^push - 1)) <= h e^push, and e^push <= 1.07 /
    _exp_above(-push), since _exp_above is at most 6.2% above exp (down to -1000 log 2,
    so for a push up to 600)."""
    h = p_tie * max(e, 1.0)
    if push <= 0.0:
        return h
    if push > 600.0:
        return 2.0
    return h * (1.07 / _exp_above(-push))

@njit(cache=True, error_model="numpy")
def _cascade_bound_many(e, p_tie, push, out):
    """_cascade_bound over arrays (for tests)."""
    for i in range(out.shape[0]):
        out[i] = _cascade_bound(e[i], p_tie, push[i])

@njit(cache=True, error_model="numpy")
def _surely_no_event_many(u, x, margin, out):
    """_surely_no_event over arrays (for tests)."""
    for k in range(u.shape[0]):
        out[k] = _surely_no_event(u[k], x[k], margin)

@njit(inline="always", cache=True, error_model="numpy")
def _choose(u, was, p, band):
    """(adopt, lapse, undecided) for one resident; undecided = the uniform is within band
    of the hazard, marked adopt & lapse for the exact re-check."""
    if abs(u - p) <= band:
        return True, True, 1
    return (not was) and u < p, was and u < p, 0

# ---- the decide kernels ----------------------------------------------------------
# Residents are taken in blocks: first each block's norms (from the counts, or summed
# over ties), then _decide_block's simple loops over block slices. Indexed from 0, those
# loops let LLVM prove indices non-negative and emit SIMD (4 doubles per instruction
# with AVX2 and on Intel's AVX-512 CPUs, whose LLVM tuning keeps to 256 bits; 8 on AMD
# Zen 4 and 5; the same loops on absolute indices ran 2.5x slower); the scratch stays
# in L2 (see block()). Chunks count their own undecided
# residents: numba's parfor reduction analysis fails ("unexpected cycle in lookup") on a
# `near +=` over this inlined code.
#
# Without AVX-512 (AVX2: no masked loads and stores, no 64-bit integer multiply or
# conversion, no fast gather), a loop vectorises only when every lane does the same
# work: table lookups by stamp run in a scalar loop of their own, then the arithmetic on
# the looked-up values in a vector loop; a per-resident condition becomes a select on
# values loaded unconditionally; flags are combined and counted eight bytes to a word.

@njit(inline="always", cache=True, error_model="numpy")
def cascade_ties(unit, flags, cascade):
    """True when the cascade's exposure is an integer tie sum of one byte per neighbour,
    influence x new adoption (unit ties, integer influence if any; under a community
    group's boost with each row's in-ward sum from the same pass), read from decide()'s
    tie_x."""
    return (cascade and unit
            and ((flags & HAS_INFLUENCE) == 0 or (flags & INTEGRAL) != 0))

@njit(inline="always", cache=True, error_model="numpy")
def integer_ties(unit, flags, cascade):
    """True when the norms are integer tie sums of one byte per neighbour (unit ties, no
    in-ward boost, integer influence if any, no cascade exposure): _norms_from_graph's
    fast case, which reads decide()'s tie_x."""
    return (unit and (flags & HAS_TIE_BOOST) == 0 and not cascade
            and ((flags & HAS_INFLUENCE) == 0 or (flags & INTEGRAL) != 0))

@njit(inline="always", cache=True, error_model="numpy")
def float_ties(unit, flags, cascade):
    """True when the norms (or the cascade's exposure) are float tie sums (weighted
    ties, or influence that is not a small integer), a community group's in-ward boost
    or not: each tie then reads one value per neighbour, influence x adoption (x new
    adoption for the cascade; int8 when the influence is integral or absent, else a
    one-byte code or float64: _tie_x), and the norms' denominators are cached
    (_row_totals_f), as in the integer case. (Integer sums under a boost stay with
    _row_sums: Program.influence gives them no floats.)"""
    return not unit or ((flags & HAS_INFLUENCE) != 0 and (flags & INTEGRAL) == 0)

@njit(parallel=True, cache=True, error_model="numpy")
def _products_f(a, fl, v):
    """v = influence x adoption: _fsum's f * a exactly, so a tie reads one value instead
    of two. float64, since any influence is allowed (1.1 is not exact in float32)."""
    for i in prange(v.shape[0]):
        v[i] = fl[i] * np.float64(a[i])

@njit(inline="always", cache=True, error_model="numpy")
def _float_row(start, end, ties, weights, unit, v):
    """Σ w x v over ties[start:end] from 0.0, one term at a time: _fsum's numerator in
    its order (v = f a exactly, see _products_f; 1.0 x v is v). `ties` as uint32: with
    int32 indices numba checks each for a negative index. Alone at 10^6 residents on one
    thread such a loop took 13.9 ms, 9.2-10.0 on uint32, 8.0 as this while loop."""
    num = 0.0
    jj = start
    if unit:
        while jj < end:
            num += 1.0 * np.float64(v[ties[jj]])
            jj += 1
    else:
        while jj < end:
            num += weights[jj] * np.float64(v[ties[jj]])
            jj += 1
    return num

@njit(inline="always", cache=True, error_model="numpy")
def _coded_row(start, end, ties, weights, unit, code, table):
    """_float_row with each neighbour's f a read as table[code]: one byte a tie, where
    float64 values would be eight (_influence_codes)."""
    num = 0.0
    jj = start
    if unit:
        while jj < end:
            num += 1.0 * table[code[ties[jj]]]
            jj += 1
    else:
        while jj < end:
            num += weights[jj] * table[code[ties[jj]]]
            jj += 1
    return num

@njit(inline="always", cache=True, error_model="numpy")
def _float_row_ward(start, end, ties, weights, unit, v, ward, wi, runs, wlo, whi):
    """_float_row over every tie and, in the same pass, over the ones to ward wi: the
    others' terms are added as 0.0, which gives the sum that skips them (see _fsum).

    runs (every ward one run of residents, wi's being [wlo, whi)): a neighbour is in
    ward wi when its id is in that range, without reading its ward. At 10^6 on a
    weighted graph (AVX2 Zen 3) a pass over every row took 50-90 ms reading each
    neighbour's ward, 23-24 ms by its id, against 17-19 ms for the sum alone."""
    num = 0.0
    inum = 0.0
    for jj in range(start, end):
        j = ties[jj]
        t = (1.0 if unit else weights[jj]) * np.float64(v[j])
        num += t
        same = (j >= wlo and j < whi) if runs else ward[j] == wi
        inum += t if same else 0.0
    return num, inum

@njit(inline="always", cache=True, error_model="numpy")
def _coded_row_ward(start, end, ties, weights, unit, code, table, ward, wi, runs, wlo, whi):
    """_float_row_ward with each neighbour's f a read as table[code] (_coded_row)."""
    num = 0.0
    inum = 0.0
    for jj in range(start, end):
        j = ties[jj]
        t = (1.0 if unit else weights[jj]) * table[code[j]]
        num += t
        same = (j >= wlo and j < whi) if runs else ward[j] == wi
        inum += t if same else 0.0
    return num, inum

@njit(parallel=True, cache=True, error_model="numpy")
def _row_totals_f(indptr, indices, weights, unit, fl, has_infl, ward, in_ward, den):
    """Each resident's Σ w f over its ties (Σ w without influence), in _fsum's order:
    the float norm's denominator, which depends on the ties and the influence only.
    in_ward: over its in-ward ties only (the others added as 0.0, as in _fsum)."""
    for i in prange(den.shape[0]):
        wi = ward[i]
        d = 0.0
        for jj in range(indptr[i], indptr[i + 1]):
            j = indices[jj]
            w = 1.0 if unit else weights[jj]
            t = w * (fl[j] if has_infl else 1.0)
            d += t if not in_ward or ward[j] == wi else 0.0
        den[i] = d

@njit(parallel=True, cache=True, error_model="numpy")
def _products(a, f8, v):
    """v = influence x adoption as int8 (|f| <= 127, adoption 0/1; or uint8 influence
    codes, _influence_codes): the one byte per neighbour that a tie sum reads. Before,
    each tie read the neighbour's adoption and its influence, two scattered bytes."""
    for i in prange(v.shape[0]):
        v[i] = f8[i] * np.int8(a[i])

@njit(parallel=True, cache=True, error_model="numpy")
def _row_totals(indptr, indices, f8, den):
    """Each resident's total tie influence, Σ f over its ties (exact integers): the
    norm's denominator, which depends on the influence only, not on adoption."""
    for i in prange(den.shape[0]):
        d = 0
        for jj in range(indptr[i], indptr[i + 1]):
            d += np.int64(f8[indices[jj]])
        den[i] = d

@njit(inline="always", cache=True, error_model="numpy")
def _pair(word):
    """The two int16 counts of an int32 word (little-endian: the first in the low half),
    as doubles. Reading int16 counts as int32 words and splitting them with shifts
    vectorised best: 0.60 ns a resident on AVX2 code against 0.75 converting int16 lanes
    (int32 counts: 0.65), and 0.50 against 0.53 on AVX-512 (10^7, one thread, from memory)."""
    return np.float64(np.int16(word)), np.float64(word >> 16)

@njit(inline="always", cache=True, error_model="numpy")
def _row_norm(first, second, tb):
    """The norm of a row of int16 counts read as two int32 words (Σ f·a and Σ f, then
    the same over in-ward ties), with the week's in-ward boost tb (0.0 without: exact,
    the counts are integers)."""
    c, d = _pair(first)
    ci, di = _pair(second)
    num = c + tb * ci
    den = d + tb * di
    return num / den if den > 0 else 0.0

@njit(cache=True, error_model="numpy")
def _norms_from_counts(lo, m, cnt, ward, starts, ward_boost, flags, norm):
    """Perceived norms (before messages) of residents lo..lo+m-1 from Counts.both."""
    # the counts as one flat run of rows: a compile-time stride (2, or 4 with in-ward
    # counts) that LLVM vectorises (through the 2-D view's run-time strides it did not:
    # 0.72 -> 0.18 ms for this loop at 10^6 residents)
    w = cnt.shape[1]
    flat = cnt.reshape(cnt.shape[0] * w)[w * lo:w * (lo + m)]
    if w == 4:  # Counts(inward=True)
        # Without a boost this week the in-ward counts weigh 0.0, which is exact (counts
        # are integers: 0.0 x c is +-0.0, and a + -0.0 = a for a = float(integer), never
        # -0.0), and it makes the loop read each row's four counts: LLVM then loads rows
        # whole and shuffles. Reading two of the four, it gathered them on AVX-512
        # (vpgatherqd), which kept the hardware prefetcher from streaming the counts: at
        # 10^7 (AMD Zen 5) that loop took a quarter of the step, 3.05 ns a resident
        # against 0.65 as whole rows. Code without AVX-512 (HALF_ROWS) has no such
        # gather, and there reading the half that counts is the quicker: the decide pass
        # at 10^7 took 26.9 ms against 28.2 reading whole rows (compiled for AVX2).
        boosted = (flags & HAS_TIE_BOOST) != 0
        wb = ward[lo:lo + m]
        narrow = cnt.itemsize == 2  # int16 counts (Counts): a row is two int32 words
        words = flat.view(np.int32)
        if not boosted and (flags & HALF_ROWS) != 0:
            if narrow:
                for j in range(m):
                    num, den = _pair(words[2 * j])
                    norm[j] = num / den if den > 0 else 0.0
                return
            for j in range(m):
                num = np.float64(flat[4 * j])
                den = np.float64(flat[4 * j + 1])
                norm[j] = num / den if den > 0 else 0.0
            return
        if not boosted or _one_ward(starts, lo, lo + m):  # the usual block: one boost
            tb = ward_boost[wb[0]] if boosted else 0.0
            if narrow:
                for j in range(m):
                    norm[j] = _row_norm(words[2 * j], words[2 * j + 1], tb)
                return
            for j in range(m):
                num = np.float64(flat[4 * j]) + tb * np.float64(flat[4 * j + 2])
                den = np.float64(flat[4 * j + 1]) + tb * np.float64(flat[4 * j + 3])
                norm[j] = num / den if den > 0 else 0.0
            return
        for j in range(m):
            tb = ward_boost[wb[j]]
            if narrow:
                c, d = _pair(words[2 * j])
                ci, di = _pair(words[2 * j + 1])
            else:
                c, d = np.float64(flat[4 * j]), np.float64(flat[4 * j + 1])
                ci, di = np.float64(flat[4 * j + 2]), np.float64(flat[4 * j + 3])
            num = c + tb * ci
            den = d + tb * di
            norm[j] = num / den if den > 0 else 0.0
    elif cnt.itemsize == 2:  # a row is one int32 word
        words = flat.view(np.int32)
        for j in range(m):
            num, den = _pair(words[j])
            norm[j] = num / den if den > 0 else 0.0
    else:
        for j in range(m):
            num = np.float64(flat[2 * j])
            den = np.float64(flat[2 * j + 1])
            norm[j] = num / den if den > 0 else 0.0

@njit(inline="always", cache=True, error_model="numpy")
def _running_sums(ties, v, cum):
    """cum[k] = v[ties[0]] + ... + v[ties[k-1]] (cum[0] = 0), eight ties at a time.

    Why eight at a time: one tie after another, each partial sum waits for the last add.
    Here each group's eight sums come from pair and quad sums of its own values, so only
    two adds a group wait on the group before, and the group's loads overlap.
    Measured at 10^6 residents and 10^7 tie ends (two threads, with the row pass below):
    7.14 -> 6.22 ms. Integer adds: the same sums in any order."""
    count = ties.shape[0]
    acc = np.int32(0)
    cum[0] = 0
    c8 = count // 8 * 8
    for k in range(0, c8, 8):
        a0 = np.int32(v[ties[k]])
        a1 = np.int32(v[ties[k + 1]])
        a2 = np.int32(v[ties[k + 2]])
        a3 = np.int32(v[ties[k + 3]])
        a4 = np.int32(v[ties[k + 4]])
        a5 = np.int32(v[ties[k + 5]])
        a6 = np.int32(v[ties[k + 6]])
        a7 = np.int32(v[ties[k + 7]])
        p01 = a0 + a1
        p45 = a4 + a5
        s3 = acc + (p01 + (a2 + a3))
        s5 = s3 + p45
        cum[k + 1] = acc + a0
        cum[k + 2] = acc + p01
        cum[k + 3] = acc + p01 + a2
        cum[k + 4] = s3
        cum[k + 5] = s3 + a4
        cum[k + 6] = s5
        cum[k + 7] = s5 + a6
        acc = s3 + (p45 + (a6 + a7))
        cum[k + 8] = acc
    for k in range(c8, count):
        acc += np.int32(v[ties[k]])
        cum[k + 1] = acc

@njit(inline="always", cache=True, error_model="numpy")
def _float_norms(lo, m, indptr, ties, weights, unit, tie_x, cascade, norm, expo):
    """_norms_from_graph's float case: each row's Σ w x (f a) in _fsum's order, read
    as one value a tie (exact, see _float_row), over its cached Σ w f (_row_totals_f).
    A row is summed only when it is dirty (a neighbour's f a changed since its sum was
    kept: _mark_changed); else its kept sum is the same double. The form of f a is
    chosen once a block, outside the row loop."""
    v8, vf, denf, code, table = tie_x[0], tie_x[2], tie_x[3], tie_x[4], tie_x[5]
    dirty, nums = tie_x[7], tie_x[8]
    if v8.size > 0:  # integer or no influence: one byte a tie, 1 MB at 10^6
        for j in range(m):
            i = lo + j
            if dirty[i]:
                nums[i] = _float_row(indptr[i], indptr[i + 1], ties, weights, unit, v8)
                dirty[i] = 0
    elif code.size > 0:  # few influence terms: one byte a tie too
        for j in range(m):
            i = lo + j
            if dirty[i]:
                nums[i] = _coded_row(indptr[i], indptr[i + 1], ties, weights, unit, code,
                                     table)
                dirty[i] = 0
    else:
        for j in range(m):
            i = lo + j
            if dirty[i]:
                nums[i] = _float_row(indptr[i], indptr[i + 1], ties, weights, unit, vf)
                dirty[i] = 0
    if cascade:  # the exposure is the sum itself; its hazard reads no norm
        for j in range(m):
            expo[j] = nums[lo + j]
            norm[j] = 0.0
        return
    for j in range(m):  # a loop of its own, with no row to sum: it vectorises
        i = lo + j
        d = denf[i]
        norm[j] = nums[i] / d if d > 0 else 0.0

@njit(inline="always", cache=True, error_model="numpy")
def _boosted_norm(i, num, inum, denf, denw, ward_boost, wi, norm, j):
    """(Σ + tb Σ in-ward) / (D + tb D_w), in _row_sums' order of operations."""
    tb = ward_boost[wi]
    num += tb * inum
    den = denf[i] + tb * denw[i]
    norm[j] = num / den if den > 0 else 0.0

@njit(inline="always", cache=True, error_model="numpy")
def _run_of(i, runs, starts, n, wlo, whi):
    """The run of wards [wlo, whi) that holds resident i, given the last row's (rows come
    in order): searched again only past its end."""
    if runs and i >= whi:
        return _ward_run(i, starts, n)
    return wlo, whi

@njit(inline="always", cache=True, error_model="numpy")
def _value_rows_boosted(lo, m, indptr, ties, weights, unit, v, ward, starts, runs, dirty,
                        nums, inums):
    """_float_norms_boosted's dirty rows summed with f a read as values v (int8 or
    float64)."""
    n = ward.shape[0]
    wlo, whi = 0, 0
    for j in range(m):
        i = lo + j
        if dirty[i]:
            wlo, whi = _run_of(i, runs, starts, n, wlo, whi)
            nums[i], inums[i] = _float_row_ward(indptr[i], indptr[i + 1], ties, weights,
                                                unit, v, ward, ward[i], runs, wlo, whi)
            dirty[i] = 0

@njit(inline="always", cache=True, error_model="numpy")
def _float_norms_boosted(lo, m, indptr, ties, weights, unit, tie_x, ward, ward_boost,
                         starts, runs, cascade, norm, expo):
    """_float_norms under a community group: each row's in-ward sum from the same pass
    (_float_row_ward), kept beside its sum until the row is dirty again, D_w cached as D
    is."""
    v8, vf, denf, code, table, denw = (tie_x[0], tie_x[2], tie_x[3], tie_x[4], tie_x[5],
                                       tie_x[6])
    dirty, nums, inums = tie_x[7], tie_x[8], tie_x[9]
    if v8.size > 0:
        _value_rows_boosted(lo, m, indptr, ties, weights, unit, v8, ward, starts, runs,
                            dirty, nums, inums)
    elif code.size > 0:
        n = ward.shape[0]
        wlo, whi = 0, 0
        for j in range(m):
            i = lo + j
            if dirty[i]:
                wlo, whi = _run_of(i, runs, starts, n, wlo, whi)
                nums[i], inums[i] = _coded_row_ward(indptr[i], indptr[i + 1], ties, weights,
                                                    unit, code, table, ward, ward[i], runs,
                                                    wlo, whi)
                dirty[i] = 0
    else:
        _value_rows_boosted(lo, m, indptr, ties, weights, unit, vf, ward, starts, runs,
                            dirty, nums, inums)
    if cascade:  # Σ + tb Σ in-ward, as _row_sums adds them
        for j in range(m):
            i = lo + j
            expo[j] = nums[i] + ward_boost[ward[i]] * inums[i]
            norm[j] = 0.0
        return
    for j in range(m):
        i = lo + j
        _boosted_norm(i, nums[i], inums[i], denf, denw, ward_boost, ward[i], norm, j)

@njit(inline="always", cache=True, error_model="numpy")
def _cascade_boosted(lo, m, indptr, ties, weights, v, ward, ward_boost, starts, runs, scale,
                     norm, expo):
    """The cascade's exposure under a community group: Σ f n + tb Σ in-ward f n, both
    sums from one pass (_float_row_ward) over v = f8 x new adoption. Its terms are small
    integers, so the float sums are the integers _row_sums counts, exactly, and the
    exposure is its double: (c x scale) + tb x (c_w x scale). At 10^6 such a step took
    159-230 ms through _row_sums (norm and exposure, each neighbour's ward read), 104-129
    with the exposure alone, 31-34 ms so (13-15 without the group)."""
    n = ward.shape[0]
    wlo, whi = 0, 0
    for j in range(m):
        i = lo + j
        wi = ward[i]
        wlo, whi = _run_of(i, runs, starts, n, wlo, whi)
        num, inum = _float_row_ward(indptr[i], indptr[i + 1], ties, weights, True, v, ward,
                                    wi, runs, wlo, whi)
        expo[j] = num * scale + ward_boost[wi] * (inum * scale)
        norm[j] = 0.0

@njit(cache=True, error_model="numpy")
def _norms_from_graph(lo, m, indptr, indices, weights, unit, adopted, newly, ward,
                      starts, ward_boost, infl, flags, cascade, tie_x, cum, norm, expo):
    """The same, summed over each resident's ties (and the cascade's exposure). cum:
    int32 scratch for the integer case's running sum."""
    boosted = (flags & HAS_TIE_BOOST) != 0
    has_infl = (flags & HAS_INFLUENCE) != 0
    if integer_ties(unit, flags, cascade):
        # the common case taken first: integer sums over unit ties (exact, see
        # _row_sums), one byte read per tie: the numerator's influence x adoption
        # (_products), the denominator from the row's length or its cached total influence
        # (_row_totals: it changes only when the influence does). With influence f8 x
        # scale both sums carry the scale, a power of two: the ratio is the same double
        v, den = tie_x[0], tie_x[1]
        base = indptr[lo]
        count = indptr[lo + m] - base
        if count < cum.shape[0]:
            # one running sum over the block's ties, each row's sum the difference of two
            # of its values: no short loop (and its set-up) per row, and exact, since
            # |Σ| <= 127 x cum.shape[0] stays far inside int32
            # (uint32: no check of each index for being negative; 4.7 -> 4.0 ms for the
            # loop at 10^6 on two threads)
            _running_sums(indices[base:base + count].view(np.uint32), v, cum)
            rows = indptr[lo:lo + m + 1]  # each row's ends, read once
            for j in range(m):
                s = rows[j] - base
                e = rows[j + 1] - base
                d = den[lo + j] if has_infl else e - s
                num = np.float64(cum[e] - cum[s])
                dn = np.float64(d)
                norm[j] = num / dn if dn > 0 else 0.0
            return
        ties = indices.view(np.uint32)
        for j in range(m):  # a block with more ties than the scratch (hubs)
            i = lo + j
            c = _count_bytes(indptr[i], indptr[i + 1], ties, v)
            d = den[i] if has_infl else indptr[i + 1] - indptr[i]
            num = np.float64(c)
            dn = np.float64(d)
            norm[j] = num / dn if dn > 0 else 0.0
        return
    if cascade_ties(unit, flags, cascade):
        # the cascade's exposure, an integer sum of influence x new adoption read as one
        # byte a tie (exact x scale, as in _row_sums), by the running sums of the case
        # above. Its hazard reads no norm (rules.independent_cascade), so the norm is
        # left at 0.0. Before, one pass summed norm and exposure reading adoption, new
        # adoption and influence per tie. At 10^6 (reminders only), a step took
        # 7.9-8.4 ms with a plain loop over each row's bytes, 4.8-5.2 ms with these sums.
        # A loop of its own: sharing the norms' (a branch per row) took the decide kernel
        # 14.4 ms, against 9.5 for the plain loop; one helper writing both sums first,
        # then a pass dividing or scaling them, took the integer norms' step 5.7 -> 6.4 ms
        v, scale = tie_x[0], infl[2]
        if boosted and (flags & WARD_RUNS) != 0:  # a community group's in-ward boost
            _cascade_boosted(lo, m, indptr, indices.view(np.uint32), weights, v, ward,
                             ward_boost, starts, True, scale, norm, expo)
            return
        if boosted:
            _cascade_boosted(lo, m, indptr, indices.view(np.uint32), weights, v, ward,
                             ward_boost, starts, False, scale, norm, expo)
            return
        base = indptr[lo]
        count = indptr[lo + m] - base
        if count < cum.shape[0]:
            _running_sums(indices[base:base + count].view(np.uint32), v, cum)
            rows = indptr[lo:lo + m + 1]
            for j in range(m):
                expo[j] = np.float64(cum[rows[j + 1] - base] - cum[rows[j] - base]) * scale
                norm[j] = 0.0
            return
        ties = indices.view(np.uint32)
        for j in range(m):  # a block with more ties than the scratch (hubs)
            i = lo + j
            expo[j] = np.float64(_count_bytes(indptr[i], indptr[i + 1], ties, v)) * scale
            norm[j] = 0.0
        return
    if float_ties(unit, flags, cascade):
        # _fsum's sums in its order, each term w x (f a) read as one value (exact, see
        # _float_row), the denominator cached (_row_totals_f): at 10^6 on a weighted
        # graph the decide pass took ~2x as long summing both, with the flags checked
        # per tie
        # unit as a constant in each call: LLVM then compiles each case's row loop
        # without the other's branch. At 10^6 on a weighted graph the pass took 14.5 ms
        # with unit read at run time, 11.5 ms so (AVX2 Zen 3, fastest of 20 each)
        ties = indices.view(np.uint32)  # tie ends are never negative
        if boosted and (flags & WARD_RUNS) != 0:  # a community group's in-ward boost
            _float_norms_boosted(lo, m, indptr, ties, weights, unit, tie_x, ward,
                                 ward_boost, starts, True, cascade, norm, expo)
        elif boosted:
            _float_norms_boosted(lo, m, indptr, ties, weights, unit, tie_x, ward,
                                 ward_boost, starts, False, cascade, norm, expo)
        elif unit:
            _float_norms(lo, m, indptr, ties, weights, True, tie_x, cascade, norm, expo)
        else:
            _float_norms(lo, m, indptr, ties, weights, False, tie_x, cascade, norm, expo)
        return
    for j in range(m):
        i = lo + j
        tb = ward_boost[ward[i]] if boosted else 0.0
        if cascade:  # its hazard reads no norm, as in cascade_ties' case: one sum a row
            expo[j], _ = _row_sums(i, indptr, indices, weights, unit, newly, ward, infl, tb,
                                   flags)
            norm[j] = 0.0
            continue
        num, den = _row_sums(i, indptr, indices, weights, unit, adopted, ward, infl, tb,
                             flags)
        norm[j] = num / den if den > 0 else 0.0

@njit(inline="always", cache=True, error_model="numpy")
def _one_ward(starts, lo, hi):
    """True when residents lo..hi-1 live in one ward: no run of equal wards starts inside
    (starts: Graph.starts). Generated populations live in contiguous wards, so this
    holds for all but a few blocks, found without reading the block's wards."""
    k = np.searchsorted(starts, lo, side="right")
    return k == starts.shape[0] or starts[k] >= hi

@njit(inline="always", cache=True, error_model="numpy")
def _block_size(lo, hi, starts, block):
    """Residents in the block from lo (at most `block`, not past hi). A block that one ward
    boundary would cut in two ends at the boundary instead, so that each block of a
    population in contiguous wards lies in one ward and takes _one_ward's fast paths.
    With 8,000-household wards a quarter of the blocks straddled two, and their
    ward-by-ward loops (a lookup per resident, a per-ward tally whose every store waits
    for the last) took the decide pass from 6.5 to 7.6 ns a resident (in cache, 10^5
    residents, one thread). A block with several boundaries (wards smaller than a
    block, or wards not contiguous) is left whole: cutting it would give tiny blocks.
    Decisions do not depend on the blocks."""
    m = min(block, hi - lo)
    k = np.searchsorted(starts, lo, side="right")
    if k < starts.shape[0] and starts[k] < lo + m:
        if k + 1 == starts.shape[0] or starts[k + 1] >= lo + m:
            m = starts[k] - lo
    return m

@njit(inline="always", cache=True, error_model="numpy")
def _pull(norm, hit, w_in, w_out, sh_in, sh_out):
    """A norm message's pull on one resident's norm, in a block given one stamp value:
    (w_in, sh_in) for those it reached (hit), (w_out, sh_out) for the rest (a weight of
    0.0 for those never reached keeps the norm exactly)."""
    w = w_in if hit else w_out
    sh = sh_in if hit else sh_out
    return norm + w * (sh - norm)

@njit(inline="always", cache=True, error_model="numpy")
def _single_stamp(sb, m):
    """s0 if every stamp in sb[:m] is s0 or -1 (s0 = -1: nobody stamped), else -2.

    One pass in the stamps' own type (32 lanes of int8 to a 256-bit vector): the
    largest stamp, and the least with each -1 read as the type's largest value. All
    stamps are s0 or -1 exactly when the two agree, or when the largest is -1 and the
    least is that stand-in. (A real stamp equal to the stand-in can only turn an answer
    into -2, the general path, which gives the same values.) Two passes, the second
    counting in 64-bit lanes, took twice as long."""
    big = sb.dtype.type(np.iinfo(sb.dtype).max)
    hi = sb[0]
    lo = big
    for j in range(m):
        v = sb[j]
        hi = max(hi, v)
        lo = min(lo, big if v == -1 else v)
    if lo == hi or (hi == -1 and lo == big):
        return np.int64(hi)
    return np.int64(-2)

@njit(inline="always", cache=True, error_model="numpy")
def _log_odds(att, cc, nrm, h, util, lap, was, coef):
    """rules.logistic's log-odds for one resident, in numpy's order: of lapsing if
    adopted (was), else of adopting.

    Each coefficient is chosen first, then one sum is made: a - b c is a + (-b) c in
    IEEE arithmetic, so this is numpy's value bit for bit, with half the multiplies and
    adds of working out both sums and choosing one."""
    p0, p1, p2, p3, p4, p5, p6, p7, p8, p9 = coef
    return ((p5 if was else p0) + (-p6 if was else p1) * att + (-p7 if was else p2) * nrm
            + (-p8 if was else p3) * h + (p9 if was else -p4) * cc + (lap if was else util))

@njit(inline="always", cache=True, error_model="numpy")
def _settled_habit(h, open_, grows, fuse_habit, gain, keep):
    """The habit the logistic loop writes back: the next one (grows: adopted or enrolled
    by a default) when the bound settles the resident and the step is fused, else h
    unchanged. Written back either way: a store under `if fuse_habit` kept the loop from
    vectorising (the 10^7 pass took ~1.5x as long), and so did working out the next
    habit only when needed (compiled for AVX2: 1.6x)."""
    grown = _next_habit(h, grows != 0, gain, keep)
    return h if (open_ or not fuse_habit) else grown

@njit(inline="always", cache=True, error_model="numpy")
def _next_habit(h, now, gain, keep):
    """rules.update_habit for one resident: toward 1 while adopted (now), decaying
    otherwise. The fused decide loop, its exact path and _apply_block all take it from
    here, so their habits stay the numpy engine's bit for bit."""
    return h + gain * (1.0 - h) if now else h * keep

@njit(inline="always", cache=True, error_model="numpy")
def _restamp(lo, m, stamps, restamp):
    """StampBook.deferred()'s re-stamps (row, s_from, t) on block lo..lo+m-1: in each
    such stamp row the block's stamps s_from become t, before anything reads them and
    while the lines are in cache for the block."""
    for q in range(restamp.shape[0]):
        sb = stamps[restamp[q, 0], lo:lo + m]
        s_from = sb.dtype.type(restamp[q, 1])
        s_to = sb.dtype.type(restamp[q, 2])
        for j in range(m):
            sb[j] = s_to if sb[j] == s_from else sb[j]

@njit(inline="always", cache=True, error_model="numpy")
def _counts_in_loop(lo, m, by_counts, cnt, starts, stamps, mrow, rule, flags):
    """(whether _decide_block reads block lo..lo+m-1's counts in its logistic loop, the
    stamp its norm message gives the block, or -1). Yes for the usual block: logistic
    rule, int16 counts with in-ward columns, one ward, at most one norm message, given
    to one stamp value in the block; compiled with AVX-512 (no HALF_ROWS).

    Why: the block then needs no pass of its own over the counts and the norms, and
    the counts stream in with the traits: the decide pass at 10^7 took 16.0 ms against
    17.9 (week 30) and 15.3 against 17.3 (week 45; AMD Zen 5). Compiled for AVX2 the one
    loop's ~20 live values spill its 16 vector registers: 25.8 ms against 22.0 (23.1
    against 21.1 reading half rows), so separate passes stay there."""
    if not (by_counts and rule == 0 and cnt.itemsize == 2 and cnt.shape[1] == 4
            and (flags & HALF_ROWS) == 0 and mrow.shape[0] <= 1
            and _one_ward(starts, lo, lo + m)):
        return False, np.int64(-1)
    if mrow.shape[0] == 0:
        return True, np.int64(-1)
    s0 = _single_stamp(stamps[mrow[0], lo:lo + m], m)
    return s0 >= -1, s0

@njit(cache=True, error_model="numpy")
def _decide_block(lo, m, expo, ward, starts, adopted, stamps, t, trow, tchan, ttab, mrow,
                  mtab, mshown, minj, rule, params, attitude, habit, cost, threshold, susc,
                  direct, locked, flags, skey, band, adopt_out, lapse_out, norm, ch, x,
                  open_, idx, tmp, found, k0, fuse_habit, gain, keep, in_loop, s_msg,
                  cnt, ward_boost, blank):
    """Residents lo..lo+m-1 given their norms (or, in_loop, their counts): messages,
    nudge channels, then the logistic log-odds and an exp-free bound. Only residents the
    bound cannot settle (a few per cent) take the scalar exact path. Returns the
    undecided count; their ids go to found[k0:] while it has room (see _decide).

    fuse_habit (the fused step, logistic rule): each habit is updated here, in the loop
    that reads it, instead of in a pass of its own in _apply_block (in cache, 10^5
    households, one thread: decide and apply 7.0 -> 6.5 ns a resident). A resident the
    bound settles keeps its adoption unless enrolled by a default, so its new habit is
    known there; an open one keeps the old habit until the exact path has decided it,
    and an undecided one keeps it for the re-check, as in _apply_block.

    in_loop, s_msg: see _counts_in_loop (the block's stamps are re-stamped by then)."""
    hi = lo + m
    ab = adopted[lo:hi]
    wb = ward[lo:hi]
    # Norm messages, then additive channels, each in nudge order like the dense arrays.
    # Unstamped residents (stamp -1) read the tables' zero last entry: their norm is
    # kept exactly and +0.0 changes no value. When a block holds one stamp value besides
    # -1 (a nudge contacting fixed targets) and one ward, which is the usual case, the
    # lookups become two scalars and a select, and the loop vectorises.
    w0 = wb[0]
    one_ward = _one_ward(starts, lo, hi)
    for k in range(0 if in_loop else mrow.shape[0]):
        sb = stamps[mrow[k], lo:hi]
        wtab = mtab[k]
        shown = mshown[k]
        s0 = _single_stamp(sb, m)
        wv, sv = tmp[0], tmp[1]  # each resident's weight and shown rate
        if one_ward and s0 >= -1:  # selects and the pull in one pass, no scratch
            w_in, sh_in = wtab[t - s0], shown[s0 + 1, w0]
            w_out, sh_out = wtab[t + 1], shown[0, w0]
            if minj[k]:
                for j in range(m):
                    nj = norm[j]
                    pulled = _pull(nj, sb[j] == s0, w_in, w_out, sh_in, sh_out)
                    norm[j] = max(pulled, nj) if ab[j] != 0 else pulled
            else:
                for j in range(m):
                    norm[j] = _pull(norm[j], sb[j] == s0, w_in, w_out, sh_in, sh_out)
            continue
        for j in range(m):  # table lookups one resident at a time: AVX2 has no cheap gather
            sj = sb[j]
            wv[j] = wtab[np.uint64(t - sj)]
            sv[j] = shown[np.uint64(sj + 1), np.uint64(wb[j])]
        if minj[k]:  # two loops, not a branch per resident: each vectorises (no masks)
            for j in range(m):
                nj = norm[j]
                pulled = nj + wv[j] * (sv[j] - nj)
                norm[j] = max(pulled, nj) if ab[j] != 0 else pulled
        else:
            for j in range(m):
                nj = norm[j]
                norm[j] = nj + wv[j] * (sv[j] - nj)
    # Each channel's sum in term order, from 0.0 as in numpy (rows no term writes stay
    # zero from allocation). A channel's first term writes 0.0 + value: the same bits as
    # zeroing the row and adding to it, one pass over the row fewer.
    for k in range(trow.shape[0]):
        sb = stamps[trow[k], lo:hi]
        tab = ttab[k]
        acc = ch[tchan[k]]
        first = True
        for q in range(k):
            first = first and tchan[q] != tchan[k]
        s0 = _single_stamp(sb, m)
        if s0 >= -1:
            v_in, v_out = tab[t - s0], tab[t + 1]
            if first:
                for j in range(m):
                    acc[j] = 0.0 + (v_in if sb[j] == s0 else v_out)
            else:
                for j in range(m):
                    acc[j] += v_in if sb[j] == s0 else v_out
        elif first:
            for j in range(m):
                acc[j] = 0.0 + tab[np.uint64(t - sb[j])]
        else:
            for j in range(m):
                acc[j] += tab[np.uint64(t - sb[j])]
    has_direct = (flags & HAS_DIRECT) != 0
    has_locked = (flags & HAS_LOCKED) != 0
    hab_b = habit[lo:hi]
    if rule == 0:
        att_b = attitude[lo:hi]
        cost_b = cost[lo:hi]
        susc_b = susc[lo:hi]
        # who keeps or takes up the behaviour if the bound settles them: the adopted, and
        # (direct & not adopted) those a default enrols; ab | ab is ab when nobody is
        grow_b = direct[lo:hi].view(np.uint8) if has_direct else ab
        util, lap, ash, crel, sal = ch[0], ch[1], ch[2], ch[3], ch[4]
        p0, p1, p2, p3, p4 = params[0], params[1], params[2], params[3], params[4]
        p5, p6, p7, p8, p9 = params[5], params[6], params[7], params[8], params[9]
        margin = 4.0 * band
        z = np.uint64(lo) * ODD + skey
        # cost after relief, susceptibility after salience: the traits themselves in a
        # week whose terms write neither channel (most weeks; x (1 - 0.0) and x (1 + 0.0)
        # are exact), so the loop below reads two rows fewer: the pass at 10^7 took 4-5%
        # less compiled for this CPU, 3% for AVX2 (AMD Zen 5). Else worked out first, in
        # numpy's order, in tmp's rows (free once the messages are in).
        relief = salience = False
        for k in range(tchan.shape[0]):
            relief = relief or tchan[k] == 3
            salience = salience or tchan[k] == 4
        cost_r, susc_r = cost_b, susc_b
        if relief:
            cost_r = tmp[0, :m]
            for j in range(m):
                cost_r[j] = cost_b[j] * (1.0 - crel[j])
        if salience:
            susc_r = tmp[1, :m]
            for j in range(m):
                susc_r[j] = susc_b[j] * (1.0 + sal[j])
        coef = (p0, p1, p2, p3, p4, p5, p6, p7, p8, p9)
        if in_loop:
            words = cnt.reshape(cnt.shape[0] * 4)[4 * lo:4 * hi].view(np.int32)
            tb = ward_boost[w0] if (flags & HAS_TIE_BOOST) != 0 else 0.0
            sbm = blank[:m]  # no message: weights 0.0 keep each norm exactly
            w_in = w_out = sh_in = sh_out = 0.0
            inj = False
            if mrow.shape[0] == 1:
                sbm = stamps[mrow[0], lo:hi]
                w_in, sh_in = mtab[0, t - s_msg], mshown[0, s_msg + 1, w0]
                w_out, sh_out = mtab[0, t + 1], mshown[0, 0, w0]
                inj = minj[0]
            for j in range(m):
                nj = _row_norm(words[2 * j], words[2 * j + 1], tb)
                pulled = _pull(nj, sbm[j] == s_msg, w_in, w_out, sh_in, sh_out)
                nj = max(pulled, nj) if (ab[j] != 0) & inj else pulled  # no branch
                h = hab_b[j]
                xj = _log_odds(att_b[j] + ash[j], cost_r[j], susc_r[j] * nj, h, util[j],
                               lap[j], ab[j] != 0, coef)
                x[j] = xj
                op = not _surely_no_event(_uniform_below(z), xj, margin)
                open_[j] = op
                z += ODD
                hab_b[j] = _settled_habit(h, op, ab[j] | grow_b[j], fuse_habit, gain, keep)
        else:  # the same loop on the norms the passes above worked out (one loop for both,
            # the body an inlined function of the arrays and j, was not vectorised: 1.5x)
            for j in range(m):
                h = hab_b[j]
                xj = _log_odds(att_b[j] + ash[j], cost_r[j], susc_r[j] * norm[j], h, util[j],
                               lap[j], ab[j] != 0, coef)
                x[j] = xj
                op = not _surely_no_event(_uniform_below(z), xj, margin)
                open_[j] = op
                z += ODD
                hab_b[j] = _settled_habit(h, op, ab[j] | grow_b[j], fuse_habit, gain, keep)
    elif rule == 3:  # the cascade: settled, no event, when the uniform is above a bound
        # of the hazard by the band (_choose); only the others take the exact path.
        # Bounds: 0.0 exactly for a resident not adopted whom no new adopter reached, and
        # for an adopted one when the lapse is 0 (a progressive cascade; _shift of 0 is
        # 0). For one reached, _cascade_bound, with the push of _mechanistic added in its
        # order (so of the same sign)
        z = np.uint64(lo) * ODD + skey
        p_tie = 1.0 - params[0]  # params[0] = 1 - p: exact for p <= 1/2 (Sterbenz)
        no_lapse = params[1] == 0.0
        margin = 4.0 * band
        util, ash, crel = ch[0], ch[2], ch[3]
        cost_b = cost[lo:hi]
        for j in range(m):
            e = expo[j]
            was, new = ab[j] != 0, ab[j] == 0
            zero = (was & no_lapse) | (new & (e == 0.0))  # a hazard of exactly 0.0
            push = util[j] + ash[j] + cost_b[j] * crel[j]
            bound = band if zero else _cascade_bound(e, p_tie, push) + margin
            open_[j] = not ((zero | new) & (_uniform_below(z) > bound))
            z += ODD
    elif rule == 1:  # the threshold rule: the same for a resident not adopted whose norm
        # is below its threshold (a loop of its own: `threshold` is empty for other rules)
        thr_b = threshold[lo:hi]
        z = np.uint64(lo) * ODD + skey
        for j in range(m):
            quiet = (ab[j] == 0) & (norm[j] < thr_b[j])
            open_[j] = not (quiet & (_uniform_below(z) > band))
            z += ODD
    else:
        for j in range(m):
            open_[j] = True
    a_b = adopt_out[lo:hi]
    l_b = lapse_out[lo:hi]
    if has_direct:  # defaults: no event, except residents enrolled directly
        d_b = direct[lo:hi]
        for j in range(m):
            a_b[j] = (ab[j] == 0) & d_b[j]
            l_b[j] = False
    else:
        for j in range(m):
            a_b[j] = False
            l_b[j] = False
    k = 0  # the open residents' positions, eight flags per word: most words are zero
    words = open_.view(np.uint64)
    for w in range((m + 7) // 8):
        if words[w] != 0:
            for j in range(w * 8, min(m, w * 8 + 8)):
                if open_[j]:
                    idx[k] = j
                    k += 1
    near = 0
    for q in range(k):  # the exact path, for a few per cent of residents
        j = idx[q]
        i = lo + j
        was = ab[j] != 0
        if not ((has_direct and not was and direct[i]) or (has_locked and was and locked[i])):
            if rule == 0:
                p = _sigmoid(x[j])
            else:
                p = _mechanistic(i, was, rule, params, norm[j], expo[j], cost, threshold,
                                 ch[0, j], ch[1, j], ch[2, j], ch[3, j])
            a_out, l_out, undecided = _choose(_uniform(i, skey), was, p, band)
            a_b[j] = a_out
            l_b[j] = l_out
            if undecided:
                if k0 + near < found.shape[0]:
                    found[k0 + near] = i
                near += 1
        if fuse_habit and not (a_b[j] and l_b[j]):  # the undecided keep theirs
            hab_b[j] = _next_habit(hab_b[j], (was or a_b[j]) and not l_b[j], gain, keep)
    return near

@njit(parallel=True, cache=True, error_model="numpy")
def _decide(by_counts, cnt, indptr, indices, weights, unit, adopted, newly, ward,
            starts, ward_boost, infl, tie_x, stamps, t, trow, tchan, ttab, mrow, mtab, mshown, minj, rule,
            params, attitude, habit, cost, threshold, susc, direct, locked, flags, skey,
            band, adopt_out, lapse_out, chunks, update, ever, logistic, gain, keep, n_wards,
            now_out, found, restamp, block):
    """Every resident's decision: (the number left undecided, tallies, adopters per
    ward). Norms come from the maintained integer counts (by_counts: one pass over
    residents, none over ties) or are summed over each resident's ties (weighted graphs,
    fractional influence, the cascade rule's exposure).

    With `update`, each block is also applied (_apply_block) while it is still in cache:
    the new adoption mask goes to now_out, habits and ever-adopted change in place, and
    the tallies are counted. Safe in the same pass because a decision reads only the
    resident's own habit, and neighbours' adoption from the counts or from `adopted`,
    which is not written. Undecided residents are left as they were for the re-check.

    found: (chunks, room) int64: each chunk's undecided ids in order, so the re-check
    costs O(undecided) instead of a pass over every resident's flags; a chunk with more
    than `room` of them leaves the caller to find them (only the tests' wide band).

    restamp: StampBook's deferred re-stamps, applied block by block (_restamp).

    block: residents per block, block() on counts; BLOCK when summing ties, since the
    running sums' scratch (TIE_SCRATCH) is sized for it. Decisions do not depend on it."""
    n = adopt_out.shape[0]
    size = (n + chunks - 1) // chunks
    near = np.zeros(chunks, dtype=np.int64)
    part = np.zeros((chunks, n_wards), dtype=np.float64)
    counts = np.zeros((chunks, 4), dtype=np.int64)
    fuse_habit = update and logistic
    for c in prange(chunks):
        expo = np.zeros(block)
        norm = np.empty(block)
        ch = np.zeros((5, block))
        x = np.empty(block)
        open_ = np.empty(block, dtype=np.bool_)
        idx = np.empty(block, dtype=np.int64)
        tmp = np.empty((2, block))
        blank = np.full(block, -1, dtype=stamps.dtype)  # a stamp row nobody is in
        cum = np.empty(0 if by_counts else TIE_SCRATCH, dtype=np.int32)
        k = 0
        hi = min(n, (c + 1) * size)
        lo = c * size
        while lo < hi:
            m = _block_size(lo, hi, starts, block)
            _restamp(lo, m, stamps, restamp)
            in_loop, s_msg = _counts_in_loop(lo, m, by_counts, cnt, starts, stamps, mrow,
                                             rule, flags)
            if by_counts and not in_loop:
                _norms_from_counts(lo, m, cnt, ward, starts, ward_boost, flags, norm)
            elif not by_counts:
                _norms_from_graph(lo, m, indptr, indices, weights, unit, adopted, newly,
                                  ward, starts, ward_boost, infl, flags, rule == 3, tie_x, cum,
                                  norm, expo)
            k += _decide_block(lo, m, expo, ward, starts, adopted, stamps, t, trow, tchan,
                               ttab, mrow, mtab, mshown, minj, rule, params, attitude, habit,
                               cost, threshold, susc, direct, locked, flags, skey, band,
                               adopt_out, lapse_out, norm, ch, x, open_, idx, tmp, found[c], k,
                               fuse_habit, gain, keep, in_loop, s_msg, cnt, ward_boost,
                               blank)
            if update:  # habits already updated by _decide_block (fuse_habit)
                _apply_block(lo, lo + m, adopted, adopt_out, lapse_out, ever, habit,
                             False, gain, keep, ward, starts, now_out, part[c], counts[c])
            lo += m
        near[c] = k
    total, by_ward = _tally(counts, part)
    return near, total, by_ward

@njit(cache=True, error_model="numpy")
def _norm_rows(rows, indptr, indices, weights, unit, adopted, newly, ward, ward_boost, infl,
               stamps, t, mrow, mtab, mshown, minj, flags, out):
    """Perceived norm (out[:, 0]) and weighted new-adopter exposure (out[:, 1]) of the
    residents `rows`, summed over their ties."""
    boosted = (flags & HAS_TIE_BOOST) != 0
    for k in range(rows.shape[0]):
        i = rows[k]
        tb = ward_boost[ward[i]] if boosted else 0.0
        num, den = _row_sums(i, indptr, indices, weights, unit, adopted, ward, infl, tb,
                             flags)
        norm = num / den if den > 0 else 0.0
        out[k, 0] = _messages(i, norm, adopted[i] != 0, ward, stamps, t, mrow, mtab, mshown,
                              minj)
        out[k, 1], _ = _row_sums(i, indptr, indices, weights, unit, newly, ward, infl, tb,
                                 flags)

@njit(parallel=True, cache=True, error_model="numpy")
def _norm_kernel(indptr, indices, weights, unit, adopted, ward, ward_boost, infl, stamps, t,
                 mrow, mtab, mshown, minj, flags, out):
    boosted = (flags & HAS_TIE_BOOST) != 0
    for i in prange(out.shape[0]):
        tb = ward_boost[ward[i]] if boosted else 0.0
        num, den = _row_sums(i, indptr, indices, weights, unit, adopted, ward, infl, tb,
                             flags)
        norm = num / den if den > 0 else 0.0
        out[i] = _messages(i, norm, adopted[i] != 0, ward, stamps, t, mrow, mtab, mshown, minj)

# ---- the maintained counts -------------------------------------------------------
@njit(parallel=True, cache=True, error_model="numpy")
def _recount(indptr, indices, ward, a, f, has_f, inward, cnt, a_seen, f_seen, starts,
             runs):
    """Every resident's counts from scratch, a pull over its own ties (no races). A
    neighbour's adoption and influence are requested AHEAD ties before they are read,
    and in-ward ties are told by ward runs where every ward is one (see _push)."""
    n = cnt.shape[0]
    ends = indices.shape[0]
    for i in prange(n):
        wi = ward[i]
        wlo = whi = 0
        if inward and runs:
            wlo, whi = _ward_run(i, starts, n)
        c = 0
        d = 0
        ci = 0
        di = 0
        for jj in range(indptr[i], indptr[i + 1]):
            if jj + AHEAD < ends:
                _prefetch(a, indices[jj + AHEAD])
                if has_f:
                    _prefetch(f, indices[jj + AHEAD])
            j = indices[jj]
            fj = np.int32(f[j]) if has_f else np.int32(1)
            x = fj * np.int32(a[j])
            c += x
            d += fj
            if inward and ((j >= wlo and j < whi) if runs else ward[j] == wi):
                ci += x
                di += fj
        cnt[i, 0] = c
        cnt[i, 1] = d
        if inward:
            cnt[i, 2] = ci
            cnt[i, 3] = di
        a_seen[i] = a[i]
        f_seen[i] = f[i] if has_f else np.int8(1)

@njit(cache=True, error_model="numpy")
def _changed_in(lo, hi, a, a_seen, f, f_seen, has_f, check_f, aw, asw, fw, fsw, ids, k):
    """Residents lo..hi-1 (lo, hi multiples of 8, or hi = n) whose adoption or (if
    check_f) influence differs from what the counts saw, eight at a time: most words
    are unchanged. Writes their ids from ids[k] while ids has room; returns the count.

    A changed word's nonzero bytes are its changed residents, byte b resident 8w + b
    (x86 and ARM numba are little-endian): they are taken lowest first by counting
    trailing zeros, instead of comparing all eight residents again with a branch each
    (at 10^7 with 26,000 changes, 2 threads: 0.99 -> 0.77 ms, comparing influence too
    1.40 -> 0.99 ms)."""
    ones = np.uint64(0x0101010101010101)
    count = 0
    w_hi = min(hi, aw.shape[0] * 8) // 8
    for w in range(lo // 8, w_hi):
        diff = aw[w] ^ asw[w]
        if check_f:
            diff |= (fw[w] if has_f else ones) ^ fsw[w]
        while diff != 0:
            b = _trailing_zeros(diff) >> np.uint64(3)
            if k + count < ids.shape[0]:
                ids[k + count] = w * 8 + np.int64(b)
            count += 1
            diff &= ~(np.uint64(0xFF) << (b << np.uint64(3)))
    for i in range(max(lo, w_hi * 8), hi):  # the tail after the last whole word
        fi = f[i] if has_f else np.int8(1)
        if a[i] != a_seen[i] or (check_f and fi != f_seen[i]):
            if k + count < ids.shape[0]:
                ids[k + count] = i
            count += 1
    return count

@njit(parallel=True, cache=True, error_model="numpy")
def _changed(a, a_seen, f, f_seen, has_f, check_f, aw, asw, fw, fsw, chunks, indptr):
    """Ids (ascending) whose adoption or influence differs from what the counts saw, in
    one pass: each chunk (_chunk_size residents) writes into its own row of a buffer
    sized for a typical step (1/16 of its residents). Returns (ids, how many of them each
    chunk holds, their tie ends in each chunk, True), or False last when a chunk had
    more changes than that: the caller then recounts, which is cheaper than pushing so
    many anyway."""
    n = a.shape[0]
    size = _chunk_size(n, chunks)
    cap = size // 16 + 64
    buf = np.empty((chunks, cap), dtype=np.int64)
    per = np.zeros(chunks, dtype=np.int64)
    ends = np.zeros(chunks, dtype=np.int64)
    for c in prange(chunks):
        per[c] = _changed_in(min(n, c * size), min(n, (c + 1) * size), a, a_seen, f,
                             f_seen, has_f, check_f, aw, asw, fw, fsw, buf[c], 0)
        ends[c] = _tie_ends(buf[c, :min(per[c], cap)], indptr)
    fits = per.max() <= cap
    ids = np.empty(per.sum() if fits else 0, dtype=np.int64)
    k = 0
    for c in range(chunks if fits else 0):
        ids[k:k + per[c]] = buf[c, :per[c]]
        k += per[c]
    return ids, per, ends, fits

@njit(inline="always", cache=True, error_model="numpy")
def _chunk_size(n, chunks):
    """Residents per chunk of _changed and _push: whole words of eight flags."""
    return ((n + chunks - 1) // chunks + 7) // 8 * 8

@njit(inline="always", cache=True, error_model="numpy")
def _tie_ends(ids, indptr):
    """The tie ends of residents `ids`, scattered: their row pointers are requested
    AHEAD residents before use, so the misses overlap."""
    work = 0
    for q in range(ids.shape[0]):
        if q + AHEAD < ids.shape[0]:
            _prefetch(indptr, ids[q + AHEAD])
        work += indptr[ids[q] + 1] - indptr[ids[q]]
    return work

@njit(inline="always", cache=True, error_model="numpy")
def _dirty_ties(i, indptr, indices, dirty):
    """Mark resident i's neighbours' rows dirty; returns how many tie ends that was."""
    for jj in range(indptr[i], indptr[i + 1]):
        dirty[indices[jj]] = 1
    return indptr[i + 1] - indptr[i]

@njit(parallel=True, cache=True, error_model="numpy")
def _mark_changed(vb, sb, vw, sw, per, indptr, indices, dirty, budget, chunks):
    """The float tie sums' dirty rows: every row with a tie to a resident whose f a
    (v, as bytes vb and whole words vw) differs from the copy the kept sums saw (seen:
    sb, sw), which is brought up to date. per: residents a word (8 for one-byte values,
    1 for float64, compared as bits). Graphs are symmetric, so the rows that read
    resident i are i's own ties.

    Why: a row whose neighbours all hold the values they held when it was summed sums
    to the same double again (the same terms in the same order), so only dirty rows are
    summed (_float_norms). A week changes few residents: at 10^5 on the benchmark's
    weighted graph 0.15-0.18 % of them, which dirty 1.3-1.8 % of rows.

    Returns False when the changed residents' tie ends passed `budget` (a chunk's
    share of it): summing every row is then as cheap, and the caller marks them all."""
    words = vw.shape[0]
    size = (words + chunks - 1) // chunks
    over = np.zeros(chunks, dtype=np.bool_)
    share = budget // chunks + 1
    for c in prange(chunks):
        work = 0
        for w in range(c * size, min(words, (c + 1) * size)):
            diff = vw[w] ^ sw[w]
            if diff == 0:
                continue
            sw[w] = vw[w]
            if per == 1:
                work += _dirty_ties(w, indptr, indices, dirty)
            else:
                while diff != 0:
                    b = _trailing_zeros(diff) >> np.uint64(3)
                    work += _dirty_ties(w * per + np.int64(b), indptr, indices, dirty)
                    diff &= ~(np.uint64(0xFF) << (b << np.uint64(3)))
            if work > share:
                over[c] = True
                break
    for k in range(words * 8, vb.shape[0]):  # the bytes after the last whole word
        if vb[k] != sb[k]:
            sb[k] = vb[k]
            _dirty_ties(k * per // 8, indptr, indices, dirty)
    return not over.any()

@njit(inline="always", cache=True, error_model="numpy")
def _ward_run(j, starts, n):
    """[lo, hi): the run of equal wards that holds resident j (starts: Graph.starts)."""
    k = np.searchsorted(starts, j, side="right")
    lo = starts[k - 1] if k > 0 else 0
    hi = starts[k] if k < starts.shape[0] else n
    return lo, hi

@njit(inline="always", cache=True, error_model="numpy")
def _add(i, dx, df, same, cnt):
    cnt[i, 0] += dx
    cnt[i, 1] += df
    if same:
        cnt[i, 2] += dx
        cnt[i, 3] += df

@njit(inline="always", cache=True, error_model="numpy")
def _same_ward(i, k, runs, bounds, ward, ids):
    """Whether neighbour i shares changed resident ids[k]'s ward. With one run per ward
    (runs: Graph.runs) that is i inside ids[k]'s run (bounds[k]), known without reading
    ward[i]: a cross-ward neighbour's ward is a cache miss, and a branch on it stalled
    the push (at 10^7 residents most of a push's time)."""
    if runs:
        return i >= bounds[k, 0] and i < bounds[k, 1]
    return ward[i] == ward[ids[k]]

#: How many changed residents ahead _push_in asks for their row pointers (the row and
#: the neighbours' counts follow at half and a quarter of that): enough misses in flight
#: to overlap, few enough that the lines are still cached when used (assumption).
AHEAD = 16

#: How far ahead along a list of (neighbour, change) pairs _push_in asks for the
#: neighbour's counts: at 10^7 residents, 2.5 x 10^5 such additions took 1.16 ms with 16
#: pairs ahead, 0.80 with 32 and 0.58 with 64 (AMD Zen 5, two threads).
PAIRS_AHEAD = 64

@njit(cache=True, error_model="numpy")
def _push_in(k0, k1, lo, hi, ids, diff, bounds, runs, indptr, indices, ward, inward, cnt,
             near, far):
    """Push the changes ids[k0:k1] (residents of lo..hi-1) to their neighbours in the
    same range; the others go to far as (neighbour, k). Returns how many went there.

    Two passes: the changed residents' rows, scattered, are read first (their row
    pointers and rows requested AHEAD and AHEAD/2 residents before use, so the misses
    overlap) into a list of (neighbour, k) pairs; the additions then follow the list,
    each neighbour's counts requested PAIRS_AHEAD pairs before. Reading rows and adding
    in one loop, the counts could only be requested a few residents ahead, behind the
    rows they come from: at 10^7 residents (AMD Zen 5, in turn on one week's changes) a
    week's Counts.sync took 4.8 ms that way, 3.6 in two passes (and with _changed
    counting each chunk's tie ends on its own thread)."""
    m = 0
    nl = 0
    for k in range(k0, k1):
        if k + AHEAD < k1:
            _prefetch(indptr, ids[k + AHEAD])
        if k + AHEAD // 2 < k1:
            _prefetch(indices, indptr[ids[k + AHEAD // 2]])
        j = ids[k]
        for jj in range(indptr[j], indptr[j + 1]):
            i = indices[jj]
            if i >= lo and i < hi:
                near[nl, 0] = i
                near[nl, 1] = k
                nl += 1
            else:
                far[m, 0] = i
                far[m, 1] = k
                m += 1
    _add_pairs(near[:nl], diff, bounds, runs, ward, ids, inward, cnt)
    return m

@njit(inline="always", cache=True, error_model="numpy")
def _add_pairs(pairs, diff, bounds, runs, ward, ids, inward, cnt):
    """Add change pairs[q, 1]'s differences to the counts of neighbour pairs[q, 0]."""
    w = cnt.shape[1]
    flat = cnt.reshape(cnt.shape[0] * w)
    far_ward = inward and not runs  # _same_ward reads the neighbour's ward
    q_end = pairs.shape[0]
    for q in range(q_end):
        if q + PAIRS_AHEAD < q_end:
            ahead = pairs[q + PAIRS_AHEAD, 0]
            _prefetch(flat, w * ahead)  # a row's counts share a line
            if far_ward:
                _prefetch(ward, ahead)
        i = pairs[q, 0]
        k = pairs[q, 1]
        _add(i, diff[k, 0], diff[k, 1],
             inward and _same_ward(i, k, runs, bounds, ward, ids), cnt)

@njit(parallel=True, cache=True, error_model="numpy")
def _push(ids, per, ends, indptr, indices, ward, a, f, has_f, inward, cnt, a_seen, f_seen,
          starts, runs, chunks):
    """Add each changed resident's differences to its neighbours' counts. The graph is
    symmetric, so j's row lists exactly the residents whose rows list j. Each chunk of
    residents pushes its own changes to neighbours in the same chunk, in parallel (most
    ties are local on a lattice-like or ward-clustered graph); the rest are added after,
    on one thread. Integer additions: the order does not change the counts.

    ids, per, ends: as _changed returns them (the chunks' changes and their tie ends)."""
    n = cnt.shape[0]
    q = ids.shape[0]
    diff = np.empty((q, 2), dtype=np.int32)
    bounds = np.empty((q if inward and runs else 0, 2), dtype=np.int64)
    for k in prange(q):
        if k + AHEAD < q:  # scattered residents: see _push_in
            jn = ids[k + AHEAD]
            _prefetch(a, jn)
            _prefetch(a_seen, jn)
            _prefetch(f_seen, jn)
            if has_f:
                _prefetch(f, jn)
        j = ids[k]
        fn = np.int32(f[j]) if has_f else np.int32(1)
        fo = np.int32(f_seen[j])
        diff[k, 0] = fn * np.int32(a[j]) - fo * np.int32(a_seen[j])
        diff[k, 1] = fn - fo
        # the counts see j's new state from here, while its lines are in cache: a pass of
        # its own after the pushes, on one thread, missed them again (10^7 residents,
        # in-step A/B: the push took 6.1 ms a week with that pass, 5.0 ms without)
        a_seen[j] = a[j]
        f_seen[j] = np.int8(fn)
        if inward and runs:
            bounds[k, 0], bounds[k, 1] = _ward_run(j, starts, n)
    size = _chunk_size(n, chunks)
    start = np.zeros(chunks + 1, dtype=np.int64)
    room = np.zeros(chunks + 1, dtype=np.int64)  # each chunk's share of the pair lists
    for c in range(chunks):
        start[c + 1] = start[c] + per[c]
        room[c + 1] = room[c] + ends[c]
    # (neighbour, change) pairs in int32, as the graph's indices: at most PUSH_MAX_SHARE
    # of the tie ends, 8 bytes each in either list
    far = np.empty((room[chunks], 2), dtype=np.int32)
    near = np.empty((room[chunks], 2), dtype=np.int32)
    nfar = np.zeros(chunks, dtype=np.int64)
    for c in prange(chunks):
        nfar[c] = _push_in(start[c], start[c + 1], min(n, c * size),
                           min(n, (c + 1) * size), ids, diff, bounds, runs, indptr, indices,
                           ward, inward, cnt, near[room[c]:room[c + 1]],
                           far[room[c]:room[c + 1]])
    for c in range(chunks):
        _add_pairs(far[room[c]:room[c] + nfar[c]], diff, bounds, runs, ward, ids, inward,
                   cnt)

# ---- after the decisions -----------------------------------------------------------
_LANES = np.uint64(0x00FF00FF00FF00FF)
_LANE = np.uint64(0xFFFF)

@njit(inline="always", cache=True, error_model="numpy")
def _lanes(w):
    """The eight 0/1 bytes of w added pairwise into four 16-bit lanes (0-2 each)."""
    return (w & _LANES) + ((w >> np.uint64(8)) & _LANES)

@njit(inline="always", cache=True, error_model="numpy")
def _lane_sum(acc):
    return np.int64((acc & _LANE) + ((acc >> np.uint64(16)) & _LANE)
                    + ((acc >> np.uint64(32)) & _LANE) + (acc >> np.uint64(48)))

@njit(cache=True, error_model="numpy")
def _apply_block(lo, hi, adopted, adopt, lapse, ever, habit, logistic, gain, keep, ward,
                 starts, now_out, part, counts):
    """_apply on residents lo..hi-1 (at most BLOCK_MAX): slices indexed from 0 and no
    branches, so LLVM vectorises it (see _decide_block). A resident marked undecided
    (adopt & lapse) keeps its habit and ever-adopted and is not counted: the re-check
    settles it.

    The flags are 0/1 bytes, so the update runs on 64-bit words, eight residents at a
    time, and the tallies add words into 16-bit lanes (at most 2 x BLOCK_MAX / 8 = 2,048
    per lane): counting bytes one by one into 64-bit sums took four SIMD lanes per resident."""
    m = hi - lo
    a_b = adopted[lo:hi]
    ad_b = adopt[lo:hi]
    la_b = lapse[lo:hi]
    ev_b = ever[lo:hi]
    now_b = now_out[lo:hi]
    nw = m // 8
    aw = a_b[:nw * 8].view(np.uint64)
    adw = ad_b[:nw * 8].view(np.uint64)
    law = la_b[:nw * 8].view(np.uint64)
    evw = ev_b[:nw * 8].view(np.uint64)
    noww = now_b[:nw * 8].view(np.uint64)
    c_now = c_ever = c_new = c_lapsed = np.uint64(0)
    for q in range(nw):
        ad = adw[q]
        la = law[q]
        now = (aw[q] | ad) & ~la
        noww[q] = now
        e = evw[q] | now
        evw[q] = e
        c_now += _lanes(now)
        c_ever += _lanes(e)
        c_new += _lanes(ad & ~la)
        c_lapsed += _lanes(la & ~ad)
    n_now = _lane_sum(c_now)
    n_ever = _lane_sum(c_ever)
    n_new = _lane_sum(c_new)
    n_lapsed = _lane_sum(c_lapsed)
    for j in range(nw * 8, m):  # the last few residents, one at a time
        ad = ad_b[j]
        la = la_b[j]
        now = (a_b[j] | ad) & ~la
        now_b[j] = now
        e = ev_b[j] | now
        ev_b[j] = e
        n_now += now
        n_ever += e
        n_new += ad & ~la
        n_lapsed += la & ~ad
    if logistic:
        h_b = habit[lo:hi]
        for j in range(m):
            h = h_b[j]
            grown = _next_habit(h, now_b[j], gain, keep)
            h_b[j] = h if ad_b[j] & la_b[j] else grown
    counts[0] += n_now
    counts[1] += n_ever
    counts[2] += n_new
    counts[3] += n_lapsed
    if _one_ward(starts, lo, hi):
        part[ward[lo]] += n_now
    else:
        w_b = ward[lo:hi]
        for j in range(m):
            part[w_b[j]] += now_b[j]

@njit(parallel=True, cache=True, error_model="numpy")
def _apply(adopted, adopt, lapse, ever, habit, logistic, gain, keep, ward, starts, n_wards,
           chunks, now_out, block):
    """Engine.finish_step's state update and its tallies in one pass: the new adoption
    mask, habits in place, ever-adopted, and (adopters, ever, new, lapsed, per ward)."""
    n = adopted.shape[0]
    size = (n + chunks - 1) // chunks
    part = np.zeros((chunks, n_wards), dtype=np.float64)
    counts = np.zeros((chunks, 4), dtype=np.int64)
    for c in prange(chunks):
        hi = min(n, (c + 1) * size)
        lo = c * size
        while lo < hi:
            m = _block_size(lo, hi, starts, block)
            _apply_block(lo, lo + m, adopted, adopt, lapse, ever, habit, logistic, gain,
                         keep, ward, starts, now_out, part[c], counts[c])
            lo += m
    return _tally(counts, part)

@njit(cache=True, error_model="numpy")
def _tally(counts, part):
    """The chunks' tallies added up: (adopters, ever, new, lapsed), adopters per ward."""
    total = np.zeros(4, dtype=np.int64)
    by_ward = np.zeros(part.shape[1], dtype=np.float64)
    for c in range(counts.shape[0]):
        for k in range(4):
            total[k] += counts[c, k]
        for w in range(part.shape[1]):
            by_ward[w] += part[c, w]
    return total, by_ward

@njit(cache=True, error_model="numpy")
def _put(arr, ids, value):
    """One thread: a memory-bound store loop gains nothing from a team (3.5 million of
    10^7 int16 stamps, from memory: 2.5-2.9 ms on one thread, 2.6-2.8 ms on two), and a
    parallel kernel per array type cost ~0.4 s of compilation each."""
    for k in range(ids.shape[0]):
        arr[ids[k]] = value

@njit(cache=True, error_model="numpy")
def _uniforms(ids, skey, out):
    """The decide stream's uniforms for residents ids, on one thread: tests compare them
    with rng.py, and warm.py warms numba up with it (no OpenMP threads before a fork)."""
    for k in range(ids.shape[0]):
        out[k] = _uniform(ids[k], skey)

@njit(cache=True, error_model="numpy")
def _uniforms_below(ids, skey, out):
    """_uniform_below for residents ids (for tests)."""
    for k in range(ids.shape[0]):
        out[k] = _uniform_below(np.uint64(ids[k]) * ODD + skey)

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


# ---------------------------------------------------------------------------------------
# Python-side wrappers: argument packing, thread count, the exact re-check
# ---------------------------------------------------------------------------------------

_EMPTY_F = np.zeros(0)
_EMPTY_B = np.zeros(0, dtype=np.bool_)
_EMPTY_I8 = np.zeros(0, dtype=np.int8)
_NO_COUNTS = np.zeros((0, 2), dtype=np.int16)  # Counts' usual type: one _decide compiled
CHANNEL_CODES = {"utility": 0, "lapse": 1, "attitude": 2, "cost_relief": 3, "norm_salience": 4}
#: Above this share of tie ends owned by changed residents, recounting every row in
#: parallel beats pushing the changes one by one (assumption; both give the same counts).
PUSH_MAX_SHARE = 0.1


# ---------------------------------------------------------------------------------------
# Which engine runs: the kernels only where they pay for loading (or compiling) them
# ---------------------------------------------------------------------------------------

#: numpy engine, ns per resident-step (measured on the 2-core reference machine, default
#: borough and `nudgesim bench` workloads: 160-330 ns; the lower end is taken).
NUMPY_NS = 200.0
#: Compiled engine on one thread, ns per resident-step (same measurements: 30-100 ns).
KERNEL_NS = 80.0
#: A process's first compiled step on a warm cache: importing numba, building the
#: dispatchers and loading the cached machine code (measured 0.6-1.0 s, quiet to busy).
LOAD_SECONDS = 0.6
#: Compiling the kernels on an empty cache (`nudgesim bench --first-run` measures it;
#: the quiet-machine figure is taken: a busy machine takes two to three times longer).
COMPILE_SECONDS = 25.0


@dataclass(frozen=True)
class Backend:
    """Which engine a run uses, and why (Engine.backend)."""

    compiled: bool
    reason: str


def choose_backend(n: int, steps: int, *, setting: bool | None, available: bool,
                   loaded: bool, warm: Callable[[], bool]) -> Backend:
    """The engine for a run of n residents over `steps` steps. Both give the same results
    bit for bit, so this is only about time: the compiled kernels take
    ``fixed + n·steps·KERNEL_NS`` and numpy ``n·steps·NUMPY_NS``, where `fixed` is 0 when
    the kernels are already loaded in this process, LOAD_SECONDS when numba's cache holds
    them (`warm()`) and COMPILE_SECONDS when it does not. So a one-off run on a cold cache
    takes numpy unless it would run longer than the compilation; on a warm cache the
    kernels take over from 5×10^6 resident-steps (96,000 residents over 52 steps).
    `setting` True/False (NUDGESIM_NUMBA=1/0) decides outright."""
    if not available:
        return Backend(False, "numba is not installed" if setting is not False
                       else "NUDGESIM_NUMBA=0")
    if setting is not None:
        return Backend(setting, f"NUDGESIM_NUMBA={int(setting)}")
    work = n * max(steps, 1)
    numpy_s = work * NUMPY_NS * 1e-9
    kernel_s = work * KERNEL_NS * 1e-9
    if loaded:
        return Backend(kernel_s < numpy_s, "kernels already loaded in this process")
    if numpy_s <= kernel_s + LOAD_SECONDS:
        return Backend(False, f"{work:,} resident-steps: numpy ({numpy_s:.2g} s) is quicker "
                              "than loading the kernels")
    if warm():
        return Backend(True, f"{work:,} resident-steps: the cached kernels pay for loading")
    return Backend(numpy_s > kernel_s + COMPILE_SECONDS,
                   f"{work:,} resident-steps on a cold kernel cache: numpy ({numpy_s:.2g} s) "
                   f"vs compiling (~{COMPILE_SECONDS:.0f} s)")


def backend_for(n: int, steps: int) -> Backend:
    """choose_backend for this process, its settings and numba's cache now."""
    return choose_backend(n, steps, setting=ENABLED, available=AVAILABLE,
                          loaded=LOADED and bool(getattr(_decide, "overloads", None)),
                          warm=lambda: cache_is_warm(steps))


def cache_dir() -> Path | None:
    """Where numba caches this file's kernels, found as numba finds it (without importing
    numba): NUMBA_CACHE_DIR, else __pycache__ beside this file if writable, else the
    user's cache folder."""
    src = Path(os.path.abspath(__file__))
    sub = f"{src.parent.name}_{hashlib.sha1(str(src.parent).encode()).hexdigest()}"
    if os.environ.get("NUMBA_CACHE_DIR"):
        return Path(os.environ["NUMBA_CACHE_DIR"]) / sub
    in_tree = src.parent / "__pycache__"
    if os.access(in_tree if in_tree.exists() else src.parent, os.W_OK):
        return in_tree
    home = os.environ.get("XDG_CACHE_HOME") or os.path.expanduser("~/.cache")
    return Path(home) / "numba" / sub


def cache_key() -> str:
    """What compiled code depends on: numba's version, this file, Python, the CPU (and the
    target numba was told to compile for instead, NUMBA_CPU_NAME / NUMBA_CPU_FEATURES)."""
    from importlib.metadata import PackageNotFoundError, version

    try:
        numba_version = version("numba")
    except PackageNotFoundError:  # pragma: no cover
        numba_version = "?"
    source = hashlib.sha256(Path(__file__).read_bytes()).hexdigest()
    return "\n".join([f"numba {numba_version}", f"kernels.py {source}",
                      f"python {sys.version.split()[0]} {platform.machine()}", f"cpu {_cpu_id()}",
                      "target " + " ".join(os.environ.get(v, "") for v in _TARGET_VARS)])


#: numba's settings that change the machine code it emits for this CPU.
_TARGET_VARS = ("NUMBA_CPU_NAME", "NUMBA_CPU_FEATURES")


def compile_target() -> tuple[str, str, bool]:
    """(CPU name, instruction-set features, whether NUMBA_CPU_NAME / NUMBA_CPU_FEATURES chose
    them) that numba compiles the kernels for: numba's own rule, the host CPU unless told
    otherwise. Imports numba."""
    ll: Any = importlib.import_module("llvmlite.binding")  # untyped packages
    config: Any = importlib.import_module("numba.core.config")
    name = config.CPU_NAME or ll.get_host_cpu_name()
    features = (config.CPU_FEATURES if config.CPU_FEATURES is not None
                else ll.get_host_cpu_features().flatten())
    return name, features, any(os.environ.get(v) for v in _TARGET_VARS)


def compile_flags() -> set[str]:
    """The instruction-set features the kernels are compiled with (compile_target's,
    without LLVM's "+" signs: "avx2", "avx512f", ...). Imports numba."""
    return {f[1:] for f in compile_target()[1].split(",") if f.startswith("+")}


@functools.cache
def gathers() -> bool:
    """Whether the kernels are compiled with AVX-512 (x86's fast gathers and masked
    loads), which some loops are written around (see HALF_ROWS)."""
    return "avx512f" in compile_flags()


def _cpu_id() -> str:
    """The CPU's model and instruction-set flags (what numba's machine code depends on)."""
    model = flags = ""
    try:
        with open("/proc/cpuinfo") as fh:
            for line in fh:
                if line.startswith("model name") and not model:
                    model = line.split(":", 1)[1].strip()
                elif line.startswith("flags") and not flags:
                    flags = hashlib.sha1(line.encode()).hexdigest()[:12]
                if model and flags:
                    break
    except OSError:
        pass
    return f"{model or platform.processor()} {flags}".strip()


MARKER = "nudgesim-kernels.warm"

#: The steps of warm_up's runs, and of the runs `cache_is_warm()` asks about by default:
#: short runs (int8 stamps), like every shipped scenario.
WARM_STEPS = 3


#: Runs shorter than these many steps keep int8, then int16 stamps (longer ones int32):
#: the narrowest type that holds every step and -1 (the largest value of each type stays
#: free for _single_stamp's stand-in).
INT8_STEPS, INT16_STEPS = 2**7 - 1, 2**15 - 1


def stamp_dtype(steps: int) -> type[np.signedinteger]:
    """The type of a run's stamps (StampBook). Most runs are shorter than 127 steps (a
    year in weeks): one byte per resident and nudge, which the decide pass reads every
    step (at 10^7 residents, with the national campaign's six stamp rows, the pass took
    4-5% less than with int16, AMD Zen 5, AVX-512 code and AVX2 code alike)."""
    return np.int8 if steps < INT8_STEPS else np.int16 if steps < INT16_STEPS else np.int32


def _marker(steps: int) -> str:
    """The warm marker of the kernels that runs of `steps` steps use: each stamp type is
    a compiled variant of its own, compiled (and marked warm) when first needed."""
    name = np.dtype(stamp_dtype(steps)).name
    return MARKER if name == "int8" else f"{MARKER}.{name}"


def _variant_steps(steps: int) -> int:
    """The fewest steps of a run with the stamps' type of a run of `steps` steps (the
    scenario warm_up runs, of which `run` takes WARM_STEPS steps)."""
    return WARM_STEPS if steps < INT8_STEPS else INT8_STEPS if steps < INT16_STEPS else INT16_STEPS


def cache_is_warm(steps: int = WARM_STEPS) -> bool:
    """True when warm_up(steps=...) has filled numba's cache, for runs of `steps` steps,
    for this very kernels file, numba, Python and CPU, and the cache still holds the
    main kernel's index."""
    where = cache_dir()
    if where is None:
        return False
    try:
        if (where / _marker(steps)).read_text() != cache_key():
            return False
    except OSError:
        return False
    tag = f"{sys.version_info[0]}{sys.version_info[1]}"
    return any(where.glob(f"kernels._decide-*.py{tag}*.nbi"))


def warm_up(run: Callable[[dict], object], steps: int = WARM_STEPS) -> float:
    """Compile (or load) the kernels a run of `steps` steps uses, with the argument types
    runs pass, and mark numba's cache warm for such runs. Returns the seconds it took.
    `.ci/setup` runs it after installing (engine.warm_up); an engine runs it first when
    it chose the kernels on a cold cache. `run(scenario_dict)` runs a small scenario's
    first WARM_STEPS steps on the kernels: the engine passes it in, so this module never
    imports the engine (layers point one way).

    Kernels only the per-agent view or rare fallbacks call (the split decide/apply path,
    Engine.neighbour_sum and perceived_norm on their own) are left to compile on first
    use: warming them would add their compile time to every cold start."""
    global ENABLED, NEAR, _WARMING, _WARM
    t0 = time.perf_counter()
    saved = ENABLED, NEAR
    ENABLED, _WARMING = True, True
    try:
        for rule in ("logistic", "threshold", "bass", "independent_cascade"):
            sc = {
                "seed": 1, "steps": _variant_steps(steps),
                "population": {"size": 300, "wards": 3},
                "network": {"kind": "watts_strogatz", "k": 4, "p": 0.1},
                "rule": {"kind": rule}, "initial_adopters": 0.1,
                "nudges": [
                    {"kind": "norm_feedback", "start": 1, "every": 2, "injunctive": True},
                    {"kind": "ambassadors", "start": 1, "targeting": {"count": 3}},
                    {"kind": "reminder", "start": 1, "every": 1, "reach": 0.5},
                    {"kind": "community_partnership", "start": 2, "duration": 2,
                     "wards": ["W02"]},
                ],
            }
            run(sc)
            if rule == "logistic":  # the exact re-check of near ties (rare, but in every
                NEAR = 0.5          # long run): a wide band sends residents through it
                run(sc)
                NEAR = saved[1]
    finally:
        (ENABLED, NEAR), _WARMING = saved, False
    _mark_warm(steps)
    _WARM.add(_marker(steps))
    return time.perf_counter() - t0


_WARM: set[str] = set()  # the variants (_marker) this process has seen warm, or warmed
_WARMING = False


def prepare(run: Callable[[dict], object], steps: int = WARM_STEPS) -> None:
    """Before an engine uses the kernels for a run of `steps` steps: load numba and, on a
    cold cache, compile every kernel once with warm_up(run, steps) (so the cache is
    marked warm for the runs that follow)."""
    load()
    if _marker(steps) in _WARM or _WARMING:
        return
    if not cache_is_warm(steps):
        warm_up(run, steps)
    _WARM.add(_marker(steps))


def _mark_warm(steps: int = WARM_STEPS) -> None:
    where = cache_dir()
    if where is None:
        return
    try:
        where.mkdir(parents=True, exist_ok=True)
        tmp = where / f"{MARKER}.{os.getpid()}"
        tmp.write_text(cache_key())
        os.replace(tmp, where / _marker(steps))
    except OSError:  # a read-only cache folder: runs just keep choosing numpy
        pass


# ---------------------------------------------------------------------------------------
# How many threads: what this process may use, minus what other work is using right now
# ---------------------------------------------------------------------------------------

#: Free cores are rounded up from this much: 1.75 free cores run two threads, 1.7 one.
#: Why one thread when the other core is even partly busy: every parallel region waits
#: for its slowest thread, so a thread that loses its core to another process for a time
#: slice stalls the region for that slice (measured with `nudgesim bench --contended`).
SLACK = 0.25
#: Seconds over which other processes' CPU use is averaged (/proc/stat has 10 ms ticks).
LOAD_WINDOW = 0.25
#: False: run on numba.get_num_threads() (within threads(k)), whatever the load.
ADAPTIVE_THREADS = True
_CAP: int | None = None  # threads(k)'s limit


def choose_threads(n: int, cap: int, cpus: int, quota: float | None, others: float) -> int:
    """Threads for a kernel over n residents: one below PARALLEL_MIN_N; else at most `cap`
    (numba's setting, threads(k)), the `cpus` this process may run on (affinity) and the
    cgroup's CPU `quota` (a quota of 1.5 CPUs throttles a second thread half the time), and
    no more than the cores that `others` (cores' worth of other processes' work on those
    CPUs) leave free. Never less than one."""
    if n < PARALLEL_MIN_N:
        return 1
    limit = min(cap, cpus)
    if quota is not None:
        limit = min(limit, max(1, math.floor(quota + 1e-9)))
    return max(1, min(limit, math.floor(cpus - others + SLACK)))


def affinity() -> set[int]:
    """The CPUs this process may run on."""
    try:
        return set(os.sched_getaffinity(0))
    except (AttributeError, OSError):  # pragma: no cover - not Linux
        return set(range(os.cpu_count() or 1))


def cgroup_quota(root: Path = Path("/sys/fs/cgroup"),
                 membership: Path = Path("/proc/self/cgroup")) -> float | None:
    """CPUs' worth of time the process's cgroup may use (cgroup v2 cpu.max or v1
    cfs_quota_us / cfs_period_us), the smallest along its path; None when unlimited."""
    quotas = []
    try:
        lines = membership.read_text().splitlines()
    except OSError:
        lines = []
    for line in lines:
        _, controllers, path = line.split(":", 2)
        rel = path.strip("/")
        if controllers == "":  # v2: cpu.max in the group and its parents
            parts = rel.split("/") if rel else []
            for k in range(len(parts), -1, -1):
                quotas.append(_read_quota(root.joinpath(*parts[:k], "cpu.max")))
        elif "cpu" in controllers.split(","):  # v1
            for base in (root / "cpu", root / "cpu,cpuacct", root / controllers):
                quotas.append(_read_quota(base / rel / "cpu.cfs_quota_us"))
    found = [q for q in quotas if q is not None]
    return min(found) if found else None


def _read_quota(path: Path) -> float | None:
    try:
        if path.name == "cpu.max":
            quota, period = path.read_text().split()[:2]
        else:
            quota = path.read_text().strip()
            period = (path.parent / "cpu.cfs_period_us").read_text().strip()
        if quota in ("max", "-1"):
            return None
        return int(quota) / int(period)
    except (OSError, ValueError):
        return None


_TICK = os.sysconf("SC_CLK_TCK") if hasattr(os, "sysconf") else 100
#: A window longer than this says little about now: the measured rate is combined with
#: a snapshot of other processes' runnable threads (_runnable_others), the larger taken.
STALE = 20 * LOAD_WINDOW


def _busy_seconds(cpus: set[int], stat: Path = Path("/proc/stat")) -> float | None:
    """CPU seconds spent on `cpus` since boot by anyone, this process included (user, nice,
    system, irq, softirq, steal; not idle or I/O wait), from /proc/stat."""
    total = 0
    try:
        with open(stat) as fh:
            for line in fh:
                if not line.startswith("cpu"):
                    break
                name, *fields = line.split()
                if name != "cpu" and int(name[3:]) in cpus:
                    v = [int(x) for x in fields[:8]]
                    total += v[0] + v[1] + v[2] + v[5] + v[6] + v[7]
    except (OSError, ValueError, IndexError):
        return None
    return total / _TICK


def _own_seconds() -> float:
    """CPU seconds this process has used, all its threads together (numba's team, OpenMP
    threads spinning after a region, the caller's own Python threads), children excluded:
    a competing child process is other load."""
    return time.process_time()


def _runnable_others(cpus: set[int], loadavg: Path = Path("/proc/loadavg"),
                     tasks: Path = Path("/proc/self/task"), ncpu: int | None = None) -> float:
    """Other processes' runnable threads right now (the machine's runnable count minus
    this process's threads in state R), scaled to the CPUs we may use. Unlike the load
    average, this counts none of our own recent work."""
    try:
        runnable = int(loadavg.read_text().split()[3].split("/")[0])
    except (OSError, ValueError, IndexError):
        return 0.0
    mine = 0
    try:
        for task in tasks.iterdir():
            try:
                stat = (task / "stat").read_text()
            except OSError:  # the thread ended
                continue
            if stat[stat.rfind(")") + 1:].split()[:1] == ["R"]:
                mine += 1
    except OSError:
        mine = 1  # at least the thread reading this
    share = len(cpus) / max(ncpu or os.cpu_count() or 1, len(cpus))
    return max(0, runnable - max(mine, 1)) * share


class _LoadMeter:
    """Cores' worth of other processes' CPU use on our CPUs: over the window since the last
    sample, the CPU time spent on those CPUs (/proc/stat) minus this process's own (its
    threads included), divided by the window. Samples at most every LOAD_WINDOW; the
    first window starts when the module is imported (start()), so a process that was
    busy itself before its first kernel (building a large graph, say) does not read its
    own work as load. A window longer than STALE is an average over a long time, so the
    larger of it and the runnable snapshot is taken: overestimating costs one thread
    until the next window, underestimating a stalled team."""

    def __init__(self, clock: Callable[[], float] = time.monotonic,
                 own: Callable[[], float] = _own_seconds,
                 busy: Callable[[set[int]], float | None] = _busy_seconds,
                 runnable: Callable[[set[int]], float] = _runnable_others) -> None:
        self.clock, self.own_time, self.busy_time, self.runnable = clock, own, busy, runnable
        self.t: float | None = None
        self.cpus: set[int] = set()
        self.busy = 0.0
        self.own = 0.0
        self.others = 0.0

    def start(self, cpus: set[int]) -> None:
        """Open a window now (no estimate yet)."""
        busy = self.busy_time(cpus)
        if busy is not None:
            self.t, self.cpus, self.busy, self.own = self.clock(), set(cpus), busy, self.own_time()

    def __call__(self, cpus: set[int]) -> float:
        now = self.clock()
        fresh = self.t is not None and cpus == self.cpus
        if fresh and self.t is not None and now - self.t < LOAD_WINDOW:
            return self.others
        busy = self.busy_time(cpus)
        own = self.own_time()
        if busy is None:  # no /proc/stat: nothing to go by
            self.others = 0.0
        elif not fresh or self.t is None:  # no window on these CPUs yet
            self.others = self.runnable(cpus)
        else:
            rate = ((busy - self.busy) - (own - self.own)) / (now - self.t)
            self.others = min(float(len(cpus)), max(0.0, rate))
            if now - self.t > STALE:
                self.others = max(self.others, min(float(len(cpus)), self.runnable(cpus)))
        if busy is not None:
            self.t, self.cpus, self.busy, self.own = now, set(cpus), busy, own
        return self.others


_METER = _LoadMeter()
_METER.start(affinity())
if hasattr(os, "register_at_fork"):  # a forked worker's CPU time starts again from zero
    os.register_at_fork(after_in_child=lambda: _METER.start(affinity()))
_QUOTA: list[float | None] = []  # cgroup_quota(), read once


def thread_count(n: int) -> int:
    """choose_threads for this process, now."""
    cap = numba.get_num_threads() if _CAP is None else min(_CAP, numba.get_num_threads())
    if not ADAPTIVE_THREADS or n < PARALLEL_MIN_N:
        return 1 if n < PARALLEL_MIN_N else cap
    if not _QUOTA:
        _QUOTA.append(cgroup_quota())
    cpus = affinity()
    return choose_threads(n, cap, len(cpus), _QUOTA[0], _METER(cpus))


class Threads:
    """Run a kernel on thread_count(n) threads; always hold the launch lock."""

    def __init__(self, n: int) -> None:
        self.n = n

    def __enter__(self) -> None:
        _LAUNCH.acquire()
        load()
        self.saved = numba.get_num_threads()
        numba.set_num_threads(thread_count(self.n))

    def __exit__(self, *exc) -> None:
        numba.set_num_threads(self.saved)
        _LAUNCH.release()


@contextmanager
def threads(k: int) -> Iterator[None]:
    """Run the kernels on at most k threads inside the block (sweep workers that share a
    machine share its cores). Results never depend on the thread count. Does not load
    numba: a block whose runs take the numpy engine never pays for it."""
    global _CAP
    saved = _CAP
    _CAP = max(1, k) if saved is None else max(1, min(k, saved))
    try:
        yield
    finally:
        _CAP = saved


def _chunks(n: int) -> int:
    return 1 if n < PARALLEL_MIN_N else max(1, numba.get_num_threads()) * 4


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
        #: where each run of equal wards starts (after the first): see _one_ward
        self.starts = np.flatnonzero(np.diff(self.ward)).astype(np.int64) + 1
        #: every ward is one run of residents (generated populations): two residents
        #: share a ward exactly when they share a run (see _same_ward)
        self.runs = bool(self.ward.size == 0 or self.starts.size + 1 == np.count_nonzero(
            np.bincount(self.ward)))
        self.n = network.n


class Counts:
    """Each resident's integer tie counts: Σ influence·adopted and Σ influence over its ties
    (and over its in-ward ties when a community group may boost them).

    Why: on a unit-weight graph with integer influence these integers *are* the numpy
    engine's norm numerator and denominator, exactly. Only a few residents change state
    in a step, so pushing their differences to their neighbours costs a few thousand tie
    visits instead of a pass over every tie (10^7 at a million residents). The counts
    remember which adoption and influence they reflect and catch up by diffing against
    the current ones, so whoever changed the state (the engine, the per-agent path, a
    test) the counts stay right.
    """

    def __init__(self, g: Graph, inward: bool) -> None:
        n = g.n
        self.g = g
        self.inward = inward
        #: per resident Σ f·a and Σ f over its ties, then (inward) the same over its
        #: in-ward ties, in one row: a push touches one cache line per neighbour (two
        #: arrays took two misses: 26.7 -> 20.2 ns per tie end, a week's push 7.0 -> 5.2
        #: ms at 10^7). int16 while every sum fits (see _fit), which halves the bytes
        #: the decide pass reads each step: 25.7 -> 23.9 ms at 10^7 (AMD Zen 5, A/B).
        self.most = _most_ties(g.indptr)
        self.both = np.zeros((n, 4 if inward else 2),
                             dtype=np.int16 if self.most <= COUNT16 else np.int32)
        self.a_seen = np.zeros(n, dtype=np.uint8)
        self.f_seen = np.ones(n, dtype=np.int8)
        self.fresh = False
        self.f_key: tuple | None = None  # the influence the counts saw (Program.f_key)
        self.pushed = 0  # tie ends visited by pushes (diagnostic)
        self.recounts = 0

    @property
    def cnt(self) -> np.ndarray:
        return self.both[:, :2]

    @property
    def cnt_in(self) -> np.ndarray:
        return self.both[:, 2:] if self.inward else _NO_COUNTS

    def _fit(self, f8: np.ndarray | None) -> None:
        """Widen int16 counts to int32 before influence `f8` could take a sum past
        COUNT16: |Σ f| <= ties x the largest |f|. Widening keeps the counts (they fit
        before), and numba compiles the kernels' int32 variant on its first use; it takes
        a hub and a large influence (the default ambassador weighs 3: 10,922 ties)."""
        if self.both.dtype != np.int16 or f8 is None or self.most * 128 <= COUNT16:
            return
        if self.most * max(int(f8.max(initial=0)), -int(f8.min(initial=0))) > COUNT16:
            self.both = self.both.astype(np.int32)

    def sync(self, adopted_u8: np.ndarray, f8: np.ndarray | None,
             f_key: tuple | None = None) -> None:
        """Bring the counts to adoption `adopted_u8` and influence `f8` (None: all 1).
        `f_key` names the influence (see Program); the same key as last time means the
        same influence, so only adoption is compared."""
        g = self.g
        has_f = f8 is not None
        f = f8 if f8 is not None else _EMPTY_I8
        check_f = f_key is None or not _same_key(f_key, self.f_key)
        if check_f:
            self._fit(f8)
        args = (g.indptr, g.indices, g.ward, adopted_u8, f, has_f, self.inward, self.both,
                self.a_seen, self.f_seen)
        self.f_key = f_key
        with Threads(g.n):
            if self.fresh:
                ids, per, ends, fits = _changed(
                    adopted_u8, self.a_seen, f, self.f_seen, has_f, check_f,
                    _words(adopted_u8), _words(self.a_seen), _words(f), _words(self.f_seen),
                    _chunks(g.n), g.indptr)
                work = int(ends.sum())
                if fits and work <= PUSH_MAX_SHARE * g.indices.size:
                    _push(ids, per, ends, *args, g.starts, g.runs, _chunks(g.n))
                    self.pushed += work
                    return
            _recount(*args, g.starts, g.runs)
            self.fresh = True
            self.recounts += 1


#: The largest count int16 holds. Counts are sums of influence over a resident's ties:
#: at most its ties without influence, and Program takes them only for integer
#: influence in int8's range.
COUNT16 = int(np.iinfo(np.int16).max)


def _most_ties(indptr: np.ndarray) -> int:
    """The largest number of ties of any resident, a slice at a time (no n-sized
    temporary at 2.5 x 10^7)."""
    most = 0
    for lo in range(0, indptr.size - 1, 1 << 20):
        most = max(most, int(np.diff(indptr[lo:lo + (1 << 20) + 1]).max(initial=0)))
    return most


def _same_key(a: tuple | None, b: tuple | None) -> bool:
    """Same influence terms: the very same id arrays (held, so never recycled) and factors."""
    return (a is not None and b is not None and len(a) == len(b)
            and all(x is y and f == g for (x, f), (y, g) in zip(a, b, strict=True)))


def _words(x: np.ndarray) -> np.ndarray:
    """The whole 8-byte words of a byte array, as uint64 (a view)."""
    return x[: x.size // 8 * 8].view(np.uint64)


def _u8(mask: np.ndarray) -> np.ndarray:
    """A bool mask as uint8 without a copy (kernels add it as 0/1)."""
    return np.ascontiguousarray(mask, dtype=np.bool_).view(np.uint8)


class Program:
    """One step's Effects packed for the kernels: the terms as small index and table
    arrays over the engine's stamp matrix, influence as int8 (or exact float32), flags."""

    def __init__(self, fx, stamps: np.ndarray, pool: dict) -> None:
        t = fx.t
        self.t = t
        self.stamps = stamps
        terms, msgs = fx.terms, fx.messages
        self.trow = np.array([s.row for _, s, _ in terms], dtype=np.int64)
        self.tchan = np.array([CHANNEL_CODES[c] for c, _, _ in terms], dtype=np.int64)
        # one column more than elapsed steps: stamp -1 reads t - (-1) = t + 1, a zero
        self.ttab = np.zeros((len(terms), t + 2))
        for k, (_, _, table) in enumerate(terms):
            self.ttab[k, : t + 1] = table
        self.mrow = np.array([m[0].row for m in msgs], dtype=np.int64)
        self.mtab = np.zeros((len(msgs), t + 2))
        for k, m in enumerate(msgs):
            self.mtab[k, : t + 1] = m[1]
        n_wards = msgs[0][2].shape[1] if msgs else 1
        self.mshown = np.zeros((len(msgs), t + 2, n_wards))
        for k, m in enumerate(msgs):
            self.mshown[k] = m[2][: t + 2]
        self.minj = np.array([m[3] for m in msgs], dtype=np.bool_)
        flags = 0
        if fx.ward_boost is not None:
            flags |= HAS_TIE_BOOST
            self.ward_boost = fx.ward_boost
        else:
            self.ward_boost = _EMPTY_F
        self.direct = _EMPTY_B if fx.direct is None else fx.direct
        self.locked = _EMPTY_B if fx.locked is None else fx.locked
        if fx.direct is not None:
            flags |= HAS_DIRECT
        if fx.locked is not None:
            flags |= HAS_LOCKED
        #: the influence as int8 integers (None: not such, or everyone weighs 1), and the
        #: power of two they are scaled by: influence = f8 x scale (_integer_influence)
        self.f8: np.ndarray | None = None
        self.scale = 1.0
        #: names this step's influence: the (ids, factor) terms themselves, in order
        self.f_key = tuple(fx.influence_terms)
        self._fx = fx
        if fx.influence_terms:
            flags |= HAS_INFLUENCE
            small = _integer_influence(fx, pool)
            if small is not None:
                flags |= INTEGRAL
                self.f8, self.scale = small
        self.flags = flags

    def influence(self, g: Graph, dense: bool = True) -> tuple[np.ndarray, np.ndarray, float]:
        """(int8, float64, scale) influence for the tie sums: the int8 integers where
        unit ties sum them (influence = int8 x scale), the float64 influence itself
        where sums are in float (weighted ties, or influence that is no such integer).

        dense=False leaves the float64 out: building it is a resident-sized array a
        step (8 MB and 1.5 ms at 10^6), which the fast cases do not read."""
        f8 = _EMPTY_I8 if self.f8 is None else self.f8
        if self.f8 is not None and g.unit or not self._fx.influence_terms or not dense:
            return f8, _EMPTY_F, self.scale
        return f8, self._fx.influence, self.scale

    def messages(self) -> tuple:
        return self.stamps, self.t, self.mrow, self.mtab, self.mshown, self.minj


#: the finest power of two _integer_influence scales by: 2^-6, so 2^6 (everyone's
#: weight of 1) still fits in int8 beside the factors
FINEST_SHIFT = 6


def _shift_of(factor: float) -> int | None:
    """The least k with factor x 2^k an integer of at most 127 (2.5 -> 1, 3.0 -> 0),
    None if there is none within FINEST_SHIFT (1.1, 200)."""
    for k in range(FINEST_SHIFT + 1):
        m = factor * 2.0**k  # exact: a power of two
        if m.is_integer():
            return k if abs(m) <= 127 else None
    return None


def _integer_influence(fx, pool: dict) -> tuple[np.ndarray, float] | None:
    """(f8, scale) with the influence = f8 x scale exactly, f8 int8 and scale = 2^-K, when
    every factor is a multiple of a small power of two (3.0, 2.5, 0.25) and the products
    fit; else None. Every influence, and every tie sum of it, is then an integer times
    scale, below 2^53 times it: float64 holds those exactly in any order of adding, so
    integer sums times scale equal the numpy engine's float sums bit for bit.

    Everyone starts at 2^K (K, the sum of the factors' shifts: 1 x 2^K) and each term
    trades its own 2^k for factor x 2^k, so a resident under any set of terms ends at
    its product x 2^K."""
    shifts = []
    for _, factor in fx.influence_terms:
        k = _shift_of(factor)
        if k is None:
            return None
        shifts.append(k)
    big = sum(shifts)
    if big > FINEST_SHIFT:
        return None
    scale = 2.0**-big
    key = tuple(fx.influence_terms)
    if _same_key(pool.get("influence:key"), key):
        return pool["influence:int8"], scale  # the same terms as last step
    f8 = _pooled(pool, "influence:int8", fx.n, np.int8)
    pool["influence:key"] = None
    f8.fill(1 << big)
    for (ids, factor), k in zip(fx.influence_terms, shifts):
        product = (f8[ids].astype(np.int64) >> k) * int(factor * 2.0**k)
        if np.abs(product).max(initial=0) > 127:
            return None
        f8[ids] = product
    pool["influence:key"] = key
    return f8, scale


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


def perceived_norm(g: Graph, adopted: np.ndarray, fx, stamps: np.ndarray) -> np.ndarray:
    """Engine.perceived_norm, bit for bit."""
    prog = Program(fx, stamps, {})
    out = np.empty(g.n)
    with Threads(g.n):
        _norm_kernel(g.indptr, g.indices, g.weights, g.unit, _u8(adopted), g.ward,
                     prog.ward_boost, prog.influence(g), *prog.messages(), prog.flags, out)
    return out


def neighbour_sum(g: Graph, x: np.ndarray, tie_boost: np.ndarray | None) -> np.ndarray:
    """Engine.neighbour_sum, bit for bit."""
    out = np.empty(g.n)
    x = np.ascontiguousarray(x, dtype=np.float64)
    with Threads(g.n):
        _neighbour_sum_kernel(g.indptr, g.indices, g.weights, g.unit, x, g.ward,
                              _EMPTY_F if tie_boost is None else tie_boost,
                              tie_boost is not None, out)
    return out


def put(arr: np.ndarray, ids: np.ndarray, value) -> None:
    """arr[ids] = value, compiled once the kernels are loaded (the same result either way):
    nudges that contact a third of the town every step stamp them all, and numpy's fancy
    assignment took ~3 ns a resident against ~0.4 ns in the compiled loop (measured). It
    never loads numba itself: a numpy-engine run stays numpy."""
    if not LOADED or ids.size == 0:
        arr[ids] = value
        return
    _put(arr, ids, arr.dtype.type(value))


def _habit(rule) -> tuple[bool, float, float]:
    """(logistic, gain, keep): rules.update_habit's coefficients (habits exist only there)."""
    if rule.kind != "logistic":
        return False, 0.0, 1.0
    return True, rule.habit_gain, 1.0 - rule.habit_decay


def apply(engine, adopt: np.ndarray, lapse: np.ndarray):
    """Engine.finish_step's update: (new adoption mask, adopters, ever adopted, new adopters,
    lapsed, adopters per ward). Habits and ever-adopted are updated in place."""
    g: Graph = engine.backend.graph
    now = np.empty(g.n, dtype=np.bool_)
    with Threads(g.n):
        total, by_ward = _apply(engine.adopted, adopt, lapse, engine.ever_adopted, engine.habit,
                                *_habit(engine.rule), g.ward, g.starts,
                                engine.population.n_wards, _chunks(g.n), now, block())
    return (now, *_totals(total), by_ward)


def _totals(total: np.ndarray) -> tuple[int, int, int, int]:
    return int(total[0]), int(total[1]), int(total[2]), int(total[3])


def decide(engine, t: int, fx, update: bool = False) -> tuple:
    """Engine.decide in one pass: (adopt, lapse, residents re-checked with the numpy rule).

    update=True also applies the decisions in the same pass (Engine.step): the result then
    ends with apply()'s tuple, and habits and ever-adopted have changed in place."""
    book = engine.stamp_book
    # the stamps as stored, with the re-stamps they still owe (StampBook.defer): the
    # pass below applies those as it reads the rows, instead of a pass of its own
    stamps, restamp = book.deferred()
    prog = Program(fx, stamps, engine.backend.effects)
    g: Graph = engine.backend.graph
    pop = engine.population
    code, params = engine.backend.params
    skey = _U64(step_key(engine.streams.key("decide"), t))
    if update:  # the engine keeps only adopt (newly adopted) and now (adopted)
        pool = engine.backend.effects
        adopt, lapse, now = (_spare(pool, g.n), _spare(pool, g.n), _spare(pool, g.n))
    else:  # returned to the caller, who may keep both
        adopt = np.empty(g.n, dtype=np.bool_)
        lapse = np.empty(g.n, dtype=np.bool_)
        now = np.empty(0, dtype=np.bool_)
    chunks = _chunks(g.n)
    found = np.empty((chunks, RECHECK_ROOM), dtype=np.int64)
    a8 = _u8(engine.adopted)
    counts = engine.backend.counts
    threshold = pop.threshold if code == 1 else _EMPTY_F  # NaN view otherwise (engine.py)
    traits = (pop.attitude, engine.habit, pop.cost, threshold, pop.susceptibility)
    flags = prog.flags | (0 if gathers() else HALF_ROWS) | (WARD_RUNS if g.runs else 0)
    tail = (prog.direct, prog.locked, flags, skey, float(NEAR), adopt, lapse,
            chunks, update, engine.ever_adopted, *_habit(engine.rule),
            pop.n_wards if update else 1, now, found)
    terms = (prog.trow, prog.tchan, prog.ttab)
    # the counts hold integers: integer influence (x a power of two, see _scaled_counts),
    # and not the cascade's exposure
    by_counts = (counts is not None and code != 3 and _scaled_counts(prog)
                 and (prog.f8 is not None or not fx.influence_terms))
    if by_counts:
        counts.sync(a8, prog.f8, prog.f_key)
    cnt = counts.both if by_counts else _NO_COUNTS
    with Threads(g.n):
        tie_x = _NO_TIE_X if by_counts else _tie_x(g, prog, a8, _u8(engine.newly_adopted),
                                                   engine.backend.effects, code == 3)
        near, total, by_ward = _decide(
            by_counts, cnt, g.indptr, g.indices, g.weights, g.unit, a8,
            _u8(engine.newly_adopted), g.ward, g.starts, prog.ward_boost,
            prog.influence(g, dense=not by_counts and _summed_in_general(g, prog, code == 3)),
            tie_x, prog.stamps, t, *terms, *prog.messages()[2:], code, params, *traits, *tail,
            restamp, block() if by_counts else BLOCK)
    if len(restamp):  # (a pass cut short leaves them owed: settling them again is exact)
        book.applied()
    n_near = int(near.sum())
    ids = _recheck(engine, t, fx, prog, adopt, lapse, _found(found, near)) if n_near else None
    if not update:
        return adopt, lapse, n_near
    if ids is not None:
        _apply_rechecked(engine, ids, adopt, lapse, now, total, by_ward)
    return adopt, lapse, n_near, (now, *_totals(total), by_ward)


def _summed_in_general(g: Graph, prog: Program, cascade: bool) -> bool:
    """True when _norms_from_graph takes none of its fast cases but sums with _row_sums,
    the one that reads the float64 influence (Program.influence)."""
    return not any(_py(case)(g.unit, prog.flags, cascade)
                   for case in (integer_ties, cascade_ties, float_ties))


def _scaled_counts(prog: Program) -> bool:
    """True when counts of influence f8 = influence / scale give the numpy engine's norms.

    The norm is (C + tb C_w) / (D + tb D_w) in counts, the numpy engine's sums divided by
    scale, a power of two: both sums are then the numpy ones / scale exactly, and so is
    their ratio, unless tb C_w rounds differently. It cannot once tb <= 2^900 (no
    overflow); below the normal range it is lost beside C >= C_w >= 1 either way."""
    return prog.scale == 1.0 or not prog.ward_boost.size or prog.ward_boost.max() <= 2.0**900


def _found(found: np.ndarray, near: np.ndarray) -> np.ndarray | None:
    """The undecided residents' ids in order, from _decide's per-chunk lists (None when
    a chunk had more than fit: then the re-check finds them itself)."""
    if np.any(near > found.shape[1]):
        return None
    return np.concatenate([found[c, : near[c]] for c in range(near.size)])


_ALONE: list[int] = []  # _refs_when_alone(), measured once


def _refs_when_alone() -> int:
    """What sys.getrefcount says of an array only a list holds, asked the way _spare asks.

    Why measured, not assumed 2 (the list's reference and the call's argument): Python
    3.14 may pass the argument as a borrowed reference and report 1, and then a count of 2
    would mean someone else holds the mask. Measured, the rule is "nobody but the pool"
    on every interpreter."""
    probe = [np.empty(1, dtype=np.bool_)]
    return sys.getrefcount(probe[0])


def _spare(pool: dict, n: int) -> np.ndarray:
    """An n-byte bool buffer for a step's masks that nobody else holds any more.

    Why: a fresh np.empty of n bytes is new memory whose pages fault in on first touch,
    every step (three masks: 30 MB at 10^7 residents); last steps' masks are reused
    instead once the engine has dropped them. A mask someone still holds (the engine's
    current state, a caller's saved `engine.adopted`, a view of it) has a reference
    besides the pool's and is never handed out, so nothing anyone kept ever changes."""
    if not getattr(sys, "_is_gil_enabled", lambda: True)():
        # free-threaded Python: another thread may take a reference between the count
        # and the reuse, so the masks are always new there
        return np.empty(n, dtype=np.bool_)
    free = pool.setdefault("decide:masks", [])
    if not _ALONE:
        _ALONE.append(_refs_when_alone())
    alone = _ALONE[0]
    for k in range(len(free)):
        if free[k].size == n and sys.getrefcount(free[k]) == alone:
            buf = free.pop(k)
            free.append(buf)  # most recently handed out last: not handed out again soon
            return buf
    if len(free) >= SPARE_MASKS:  # forget the oldest still held: its holder keeps it alive
        free.pop(0)
    buf = np.empty(n, dtype=np.bool_)
    free.append(buf)
    return buf


def _py(kernel: Any) -> Callable:
    """A kernel's Python function (a numba dispatcher's py_func, or before load() the
    function itself): a one-line condition shared with the kernels, called from Python
    without compiling a specialisation for it."""
    return getattr(kernel, "py_func", None) or kernel.fn


_EMPTY_U8 = np.zeros(0, dtype=np.uint8)
_NO_TIE_X = (_EMPTY_I8, np.zeros(0, dtype=np.int64), _EMPTY_F, _EMPTY_F, _EMPTY_U8, _EMPTY_F,
             _EMPTY_F, _EMPTY_U8, _EMPTY_F, _EMPTY_F)


def _tie_x(g: Graph, prog: Program, a8: np.ndarray, n8: np.ndarray, pool: dict,
           cascade: bool) -> tuple:
    """What _norms_from_graph's fast cases read, (v8, int64 totals, vf, float64 totals,
    code, table, float64 in-ward totals, dirty, kept sums, kept in-ward sums), each
    resident's influence x adoption in one of three forms:

    * integer tie sums (integer_ties): int8 v8 and int64 totals (on unit ties the
      influence may be int8 x a power of two, the scale both sums carry);
    * float ones (float_ties), float64 totals and, by the influence:
      none or integral: int8 v8; set by at most CODED_TERMS terms: uint8 code, with
      table[code] the value (_influence_codes); else float64 vf. Under a community
      group's in-ward boost, the totals over in-ward ties too. Each row's sums are
      kept between steps and summed again only when dirty (_kept_sums).

    For the cascade (cascade_ties, or float_ties under it) f a is influence x new
    adoption (n8), and there are no totals: its exposure is no ratio.

    Adoption itself is v8 when everyone weighs 1. The totals, each resident's tie
    influence, are recounted only when the influence terms change (Program.f_key).
    Call inside Threads."""
    none = _NO_TIE_X
    x8 = n8 if cascade else a8  # the cascade sums new adoption: its exposure
    if _py(integer_ties)(g.unit, prog.flags, cascade) or _py(cascade_ties)(
            g.unit, prog.flags, cascade):
        if prog.f8 is None:
            return x8.view(np.int8), *none[1:]
        v = _pooled(pool, "ties:v", g.n, np.int8)
        _products(x8, prog.f8, v)
        if cascade:  # the exposure is no ratio: no totals
            return v, *none[1:]
        den = _totals_for(pool, "ties", g.n, np.int64, prog.f_key,
                          lambda d: _row_totals(g.indptr, g.indices, prog.f8, d))
        return v, den, *none[2:]
    if not _py(float_ties)(g.unit, prog.flags, cascade):
        return none
    has_infl = (prog.flags & HAS_INFLUENCE) != 0

    def fl() -> np.ndarray:  # the float64 influence, built only where read
        return prog.influence(g)[1]

    v8, vf, code, table = none[0], none[2], none[4], none[5]
    if not has_infl:
        v8 = x8.view(np.int8)
    elif prog.f8 is not None and prog.scale == 1.0:  # integral influence on weighted ties
        v8 = _pooled(pool, "ties:v", g.n, np.int8)
        _products(x8, prog.f8, v8)
    elif len(prog.f_key) <= CODED_TERMS:  # the influence itself, as a code per resident
        coded = _influence_codes(prog.f_key, g.n, pool)
        code = _pooled(pool, "tiesc:v", g.n, np.uint8)
        _products(x8, coded[0], code)
        table = coded[1]
    else:  # w x (f8 x scale) could round where w x f does not: the influence itself
        vf = _pooled(pool, "tiesf:v", g.n, np.float64)
        _products_f(x8, fl(), vf)
    boosted = bool(prog.flags & HAS_TIE_BOOST)
    if v8.size:
        kept = _kept_sums(g, pool, v8, ("int8", boosted, cascade))
    elif code.size:  # a code's value is table[code]: new terms, new values
        kept = _kept_sums(g, pool, code, ("code", boosted, cascade, prog.f_key))
    else:
        kept = _kept_sums(g, pool, vf, ("float64", boosted, cascade))
    if cascade:  # the exposure is no ratio: no totals
        return v8, none[1], vf, none[3], code, table, none[6], *kept
    # the totals need the influence's values: a key of () names "no influence"
    key = prog.f_key if has_infl else ()
    den = _totals_for(pool, "tiesf", g.n, np.float64, key,
                      lambda d: _row_totals_f(g.indptr, g.indices, g.weights, g.unit, fl(),
                                              has_infl, g.ward, False, d))
    denw = none[6]
    if boosted:  # a community group: the in-ward totals too
        denw = _totals_for(pool, "tiesw", g.n, np.float64, key,
                           lambda d: _row_totals_f(g.indptr, g.indices, g.weights, g.unit,
                                                   fl(), has_infl, g.ward, True, d))
    return v8, none[1], vf, den, code, table, denw, *kept


def _kept_sums(g: Graph, pool: dict, v: np.ndarray, form: tuple) -> tuple:
    """(dirty, sums, in-ward sums): each row's float tie sums as last summed, and which
    rows must be summed again because a neighbour's value in `v` (f a) changed since
    (_mark_changed). `form` names what v's values mean, (kind, boosted, cascade[, terms]):
    another kind, a community group's start (its in-ward sums were not kept), new
    adoption for adoption or, for codes, other terms mark every row dirty."""
    n = g.n
    dirty = _pooled(pool, "kept:dirty", n, np.uint8)
    sums = _pooled(pool, "kept:sums", n, np.float64)
    inward = _pooled(pool, "kept:inward", n, np.float64) if form[1] else _EMPTY_F
    seen, was = pool.get("kept:seen"), pool.get("kept:form")
    ok = (was is not None and was[:3] == form[:3]
          and (len(form) == 3 or _same_key(was[3], form[3])))
    if ok and seen is not None and seen.dtype == v.dtype and seen.size == n:
        vb, sb = v.view(np.uint8), seen.view(np.uint8)
        ok = _mark_changed(vb, sb, _words(vb), _words(sb), 8 // v.itemsize, g.indptr,
                           g.indices, dirty, int(PUSH_MAX_SHARE * g.indices.size),
                           _chunks(n))
    else:
        ok = False
    if not ok:
        pool["kept:form"] = None
        pool["kept:seen"] = v.copy()
        dirty.fill(1)
        pool["kept:form"] = form
    if "kept:count" in pool:  # `nudgesim bench`: how many rows a step sums
        pool["kept:count"] += int(np.count_nonzero(dirty))
    return dirty, sums, inward


#: at most this many influence terms are read through codes (_influence_codes): a code
#: (1 + 2 x the subset of terms, 0 for "not adopted") then fits one byte
CODED_TERMS = 7


def _influence_codes(key: tuple, n: int, pool: dict) -> tuple[np.ndarray, np.ndarray]:
    """(code, table): each resident's influence as table[code], code = 1 + 2 x the set
    of terms it is under, as bits; table[0] = 0.0 for code x adoption = 0. A resident's
    influence depends only on which terms it is under: table[1 + bits] folds their
    factors in term order from 1.0, as Effects.influence multiplies them, so it is that
    double exactly. Kept until the terms change: `key` is Program.f_key."""
    if _same_key(pool.get("tiesc:key"), key):
        return pool["tiesc:code"], pool["tiesc:table"]
    code = _pooled(pool, "tiesc:code", n, np.uint8)
    pool["tiesc:key"] = None
    code.fill(1)
    for bit, (ids, _) in enumerate(key):
        code[ids] |= np.uint8(2 << bit)  # term k is bit k + 1 of 1 + 2 x set
    table = np.zeros(2 << len(key))
    for bits in range(1 << len(key)):
        value = 1.0
        for k, (_, factor) in enumerate(key):
            if bits >> k & 1:
                value *= factor
        table[1 + 2 * bits] = value
    pool["tiesc:table"] = table
    pool["tiesc:key"] = key
    return code, table


def _pooled(pool: dict, name: str, n: int, dtype: type) -> np.ndarray:
    """A resident-sized scratch array kept in the engine's pool between steps."""
    arr = pool.get(name)
    if arr is None or arr.size != n:
        arr = pool[name] = np.empty(n, dtype=dtype)
    return arr


def _totals_for(pool: dict, name: str, n: int, dtype: type, key: tuple,
                count: Callable[[np.ndarray], None]) -> np.ndarray:
    """The pooled per-resident tie totals `name`, counted again only when the influence
    `key` differs from the one they were counted for (see _same_key)."""
    den = pool.get(name + ":den")
    if den is None or den.size != n or not _same_key(pool.get(name + ":key"), key):
        den = _pooled(pool, name + ":den", n, dtype)
        pool[name + ":key"] = None
        count(den)
        pool[name + ":key"] = key
    return den


def _apply_rechecked(engine, ids, adopt, lapse, now, total, by_ward) -> None:
    """The fused update left the re-checked residents as they were (the re-check needed
    their habits); apply their decisions as finish_step does, and count them."""
    from . import rules

    was = engine.adopted[ids]
    new = adopt[ids]
    gone = lapse[ids]
    now_ids = (was | new) & ~gone
    now[ids] = now_ids
    ever = engine.ever_adopted
    total += [now_ids.sum(), (now_ids & ~ever[ids]).sum(), new.sum(), gone.sum()]
    ever[ids] |= now_ids
    engine.habit[ids] = rules.update_habit(engine.rule, now_ids, engine.habit[ids])
    np.add.at(by_ward, engine.backend.graph.ward[ids], now_ids)


def _recheck(engine, t, fx, prog: Program, adopt: np.ndarray, lapse: np.ndarray,
             ids: np.ndarray | None = None) -> np.ndarray:
    """The exact path: the numpy rule itself on the few residents too close to call (the
    kernel marked them adopt & lapse, and listed them in `ids` if it could). Returns their
    ids."""
    from . import rules

    g: Graph = engine.backend.graph
    pop = engine.population
    if ids is None:
        ids = np.flatnonzero(adopt & lapse)
    vals = np.empty((ids.size, 2))
    _norm_rows(ids.astype(np.int64), g.indptr, g.indices, g.weights, g.unit,
               _u8(engine.adopted), _u8(engine.newly_adopted), g.ward, prog.ward_boost,
               prog.influence(g), *prog.messages(), prog.flags, vals)
    x = rules.Inputs(
        attitude=pop.attitude[ids], habit=engine.habit[ids], cost=pop.cost[ids],
        susceptibility=pop.susceptibility[ids], threshold=pop.threshold[ids],
        norm=vals[:, 0], exposure=vals[:, 1] if engine.rule.kind == "independent_cascade"
        else 0.0,
        utility=fx.at("utility", ids), lapse=fx.at("lapse", ids),
        attitude_shift=fx.at("attitude", ids), cost_relief=fx.at("cost_relief", ids),
        norm_salience=fx.at("norm_salience", ids),
    )
    p_adopt, p_lapse = rules.hazards(engine.rule, x)
    u = engine.streams.uniform("decide", t, ids)
    was = engine.adopted[ids]
    adopt[ids] = ~was & (u < p_adopt)
    lapse[ids] = was & (u < p_lapse)
    return ids
