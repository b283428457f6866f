"""`nudgesim bench`: how fast the engine is, measured against honest baselines in one run.

Everything is timed in one process on one graph per size, so the ratios compare like with
like on whatever machine runs it: the compiled engine (and, `weighted`, on the same graph
with tie weights; `fractional`, with ambassadors of influence 1.1; `cascade`, under the
independent cascade rule), the numpy engine (NUDGESIM_NUMBA=0 path), the per-agent Mesa reference path (``NudgeModel(vectorised=False)``), an idiomatic
Mesa model whose agents loop over their neighbours, and a bare scipy float32 ``A @ x``.
The workload is the default logistic rule with norm feedback, ambassadors and reminders
all active. The table goes to ``results/benchmark/`` with a description of the machine.
No number here is asserted by a test: speed is shown, not tested.
"""

from __future__ import annotations

import argparse
import functools
import gc
import json
import os
import platform
import re
import time
import tracemalloc
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from . import kernels
from .engine import Engine
from .files import write_atomic
from .network import RowProduct
from .scenario import Scenario

CONTENDERS = ("engine", "ties", "weighted", "fractional", "cascade", "numpy", "agents", "mesa",
              "scipy", "floor")
#: The `weighted` contender's tie weights (an assumption: any non-integer weights take
#: the same float path).
TIE_WEIGHTS = {"dist": "uniform", "low": 0.1, "high": 2.0}
#: The `fractional` contender's ambassador influence: no integer times a power of two,
#: so ties are summed in float (any such value takes the same path; assumption).
FRACTIONAL_INFLUENCE = 1.1
#: The `cascade` contender's rule: the independent cascade at its defaults (p 0.1,
#: progressive), whose exposure is summed over every tie each step.
CASCADE_RULE = {"kind": "independent_cascade"}
#: Contenders that run the benchmark's unit ties another way, summing every tie each
#: step, each paired with scipy's A @ x on those ties: bench_scenario's arguments.
UNIT_TIE_VARIANTS: dict[str, dict[str, Any]] = {
    "fractional": {"influence": FRACTIONAL_INFLUENCE}, "cascade": {"rule": CASCADE_RULE}}
#: Largest size each slow contender is run at (its step takes ~seconds there; assumption).
DEFAULT_LIMITS = {"agents": 10_000, "mesa": 100_000}
GRAPH_KINDS = {
    "watts_strogatz": {"kind": "watts_strogatz", "k": 10, "p": 0.1},
    "erdos_renyi": {"kind": "erdos_renyi", "mean_degree": 10.0},
    "barabasi_albert": {"kind": "barabasi_albert", "m": 5},
    "ward_clustered": {"kind": "ward_clustered", "mean_degree_in": 8.0, "mean_degree_out": 2.0},
}


def bench_scenario(n: int, steps: int, seed: int = 1, weighted: bool = False,
                   influence: float = 3.0, rule: dict | None = None) -> Scenario:
    """Watts-Strogatz k=10, p=0.1 (the issue's graph), with TIE_WEIGHTS if `weighted`;
    the logistic rule unless `rule`; three nudges active from step 1 so every timed step
    computes norms, messages, influence (the ambassadors' `influence`) and reminders."""
    network = GRAPH_KINDS["watts_strogatz"] | ({"weights": TIE_WEIGHTS} if weighted else {})
    name = f"bench-{n}" + ("-weighted" if weighted else "")
    name += f"-influence-{influence:g}" if influence != 3.0 else ""
    name += f"-{rule['kind']}" if rule else ""
    return Scenario.from_dict({
        "name": name, "seed": seed, "steps": steps,
        "population": {"size": n, "wards": 24},
        "network": network,
        "rule": rule or {"kind": "logistic"},
        "initial_adopters": 0.1,
        "nudges": [
            {"kind": "norm_feedback", "start": 1, "every": 4, "scope": "ward", "injunctive": True,
             "reach": 0.8},
            {"kind": "ambassadors", "start": 1, "duration": steps + 1, "influence": influence,
             "targeting": {"strategy": "degree", "count": max(1, n // 100)}},
            {"kind": "reminder", "start": 1, "every": 1, "reach": 0.35},
        ],
    })


@dataclass
class Row:
    contender: str
    n: int
    ties: int  # tie ends (stored CSR entries)
    sec_per_step: float
    decide_sec: float | None = None
    peak_mb: float | None = None
    note: str = ""
    extra: dict[str, Any] = field(default_factory=dict)

    @property
    def resident_steps_per_sec(self) -> float:
        return self.n / self.sec_per_step if self.sec_per_step > 0 else float("nan")


# --------------------------------------------------------------------------- contenders


def _array_bytes(objs: list[Any]) -> dict[int, int]:
    """nbytes of every distinct numpy buffer reachable one level into objs' attributes
    (and into lists and tuples there: the step's pooled masks are a list)."""
    seen: dict[int, int] = {}
    for obj in objs:
        values = obj.values() if isinstance(obj, dict) else vars(obj).values()
        flat = [x for v in values for x in (v if isinstance(v, (list, tuple)) else (v,))]
        for v in flat:
            if isinstance(v, np.ndarray) and v.size:
                base = v if v.base is None else v.base
                if isinstance(base, np.ndarray):
                    seen[id(base)] = base.nbytes
    return seen


def state_bytes(engine: Engine) -> tuple[int, int]:
    """(bytes held per resident, bytes held per tie end) by the engine's state arrays."""
    net = engine.network
    ties, nodes = [net.indices, net.weights], [net.indptr]
    for name in ("adjacency", "product"):  # what a numpy path made: a scipy matrix or a
        a = engine.__dict__.get(name)      # RowProduct (network.RowProduct)
        if isinstance(a, RowProduct):
            ties += [a.cols, a.weights]
            nodes.append(a.order)
        elif a is not None:
            ties += [a.indices, a.data]
            nodes.append(a.indptr)
    tie_arrays = {id(x if x.base is None else x.base): x.nbytes for x in ties if x is not None}
    node_net = {id(x if x.base is None else x.base): x.nbytes for x in nodes}
    objs = [engine, engine.population, engine.stamp_book, engine.backend.effects, *engine.nudges]
    objs += [x for x in (engine.backend.graph, engine.backend.counts) if x is not None]
    everything = _array_bytes(objs)
    per_tie = sum(tie_arrays.values())
    per_resident = sum(v for k, v in everything.items() if k not in tie_arrays)
    per_resident += sum(v for k, v in node_net.items() if k not in everything)
    return per_resident, per_tie


def _time_engine(sc: Scenario, steps: int, numba_on: bool, counts: bool = True,
                 name: str | None = None) -> tuple[Row, Engine]:
    """The compiled engine (counts=False: summing every tie every step, as it does on
    weighted graphs) or, numba_on=False, the numpy engine."""
    gc.collect()  # the previous contender's objects (a Mesa town holds reference cycles)
    saved = kernels.ENABLED
    kernels.ENABLED = numba_on and kernels.AVAILABLE
    try:
        # every kernel loaded (or compiled) before timing: a small run through all steps
        warm = Engine(bench_scenario(2_000, sc.steps, sc.seed))
        if not counts:
            warm.backend.counts = None
        warm.run()
        eng = Engine(sc)
        if not counts:
            eng.backend.counts = None
        eng.step()  # warm-up: first contacts, score caches, the counts' first build
        eng.step()
        threads = kernels.thread_count(eng.n) if eng.backend.compiled else 1
        total = decide = 0.0
        for _ in range(steps):
            t0 = time.perf_counter()
            t, fx, logs = eng.begin_step()
            t1 = time.perf_counter()
            eng.respond(t, fx, logs)  # Engine.step's second half
            t2 = time.perf_counter()
            total += t2 - t0
            decide += t2 - t1
        # memory on steps of their own: tracing every allocation slows the timed ones
        tracemalloc.start()
        base, _ = tracemalloc.get_traced_memory()
        for _ in range(2):
            eng.step()
        _, peak = tracemalloc.get_traced_memory()
        tracemalloc.stop()
    finally:
        kernels.ENABLED = saved
    name = name or (("engine" if counts else "ties") if numba_on else "numpy")
    note = ("numpy" if eng.backend.graph is None else
            "numba, tie counts kept up to date" if eng.backend.counts is not None else
            "numba, every tie summed each step")
    if eng.backend.graph is not None:
        note += f", {threads} thread{'s' if threads > 1 else ''} at the start"
    row = Row(name, eng.n, int(eng.network.indices.size), total / steps, decide / steps,
              (peak - base) / 1e6, note=note)
    return row, eng


def _time_agents(sc: Scenario, steps: int) -> Row:
    from .model import NudgeModel

    model = NudgeModel(sc, vectorised=False)
    model.step()
    t0 = time.perf_counter()
    for _ in range(steps):
        model.step()
    dt = (time.perf_counter() - t0) / steps
    return Row("agents", model.engine.n, int(model.engine.network.indices.size), dt,
               note="NudgeModel(vectorised=False)")


def _time_mesa(eng: Engine, steps: int, seed: int) -> Row:
    """An idiomatic Mesa 3.5 model on the same graph: each agent loops over its neighbours,
    computes the adopted share and draws from the model's RNG (logistic rule, no nudges)."""
    import mesa

    a = eng.adjacency
    r = eng.rule
    adopted0 = eng.adopted.copy()
    pop = eng.population

    class Household(mesa.Agent):
        def __init__(self, model, i):
            super().__init__(model)
            self.i = i
            self.adopted = bool(adopted0[i])
            self.next = self.adopted
            self.neighbours: list[Household] = []

        def step(self):
            nbrs = self.neighbours
            share = sum(1 for h in nbrs if h.adopted) / len(nbrs) if nbrs else 0.0
            i = self.i
            u = (r.adopt_intercept + r.adopt_attitude * pop.attitude[i]
                 + r.adopt_norm * pop.susceptibility[i] * share - r.adopt_cost * pop.cost[i])
            if not self.adopted and self.model.random.random() < 1 / (1 + np.exp(-u)):
                self.next = True

        def advance(self):
            self.adopted = self.next

    class Town(mesa.Model):
        def __init__(self):
            super().__init__(rng=seed)
            self.people = [Household(self, i) for i in range(eng.n)]
            ptr, idx = a.indptr, a.indices
            for i, h in enumerate(self.people):
                h.neighbours = [self.people[j] for j in idx[ptr[i]:ptr[i + 1]]]

        def step(self):
            self.agents.do("step")
            self.agents.do("advance")

    town = Town()
    town.step()
    t0 = time.perf_counter()
    for _ in range(steps):
        town.step()
    dt = (time.perf_counter() - t0) / steps
    return Row("mesa", eng.n, int(a.nnz), dt, note="idiomatic Mesa agents, neighbour loop")


def _time_scipy(eng: Engine, repeats: int) -> tuple[Row, Callable[[], float]]:
    """scipy's bare float32 `A @ x` on the engine's graph, and the product to time again
    in pairs with the `ties` or `weighted` step (see paired_ratio)."""
    gc.collect()
    A = eng.adjacency.astype(np.float32)
    x = eng.adopted.astype(np.float32)
    A @ x
    t0 = time.perf_counter()
    for _ in range(repeats):
        A @ x
    dt = (time.perf_counter() - t0) / repeats

    def product() -> float:
        """Seconds of one product: the mean of PAIR_STEPS after one untimed. At 10^6 the
        first product after engine steps took 10.5-14 ms, the next ones ~7 (as back to
        back), so timing it alone would flatter the engine."""
        A @ x
        t0 = time.perf_counter()
        for _ in range(PAIR_STEPS):
            A @ x
        return (time.perf_counter() - t0) / PAIR_STEPS

    return Row("scipy", eng.n, int(A.nnz), dt, note="bare float32 CSR A @ x, same graph"), product


@functools.cache
def _stream_kernel():
    """A streaming read of uint64 words on every thread: OR-reduced over slices indexed from
    0, so it vectorises and waits only for memory. Compiled once, on first use."""
    from numba import njit, prange

    @njit(parallel=True, cache=True)
    def stream(words, chunks):
        n = words.shape[0]
        size = (n + chunks - 1) // chunks
        acc = np.zeros(chunks, dtype=np.uint64)
        for c in prange(chunks):
            b = words[c * size:min(n, (c + 1) * size)]
            m = np.uint64(0)
            for k in range(b.shape[0]):
                m |= b[k]
            acc[c] = m
        return acc

    return stream


def _last_level_cache_bytes() -> int:
    """Size of the largest CPU cache (Linux sysfs), or 32 MB when the system does not say."""
    sizes = []
    for path in Path("/sys/devices/system/cpu/cpu0/cache").glob("index*/size"):
        try:
            text = path.read_text().strip().upper()
            scale = {"K": 2**10, "M": 2**20}.get(text[-1:], 1)
            sizes.append(int(text.rstrip("KM")) * scale)
        except (OSError, ValueError):
            continue
    return max(sizes, default=32 * 2**20)


class _Floor:
    """The memory floor of one step on this graph: the least time in which a step that
    looks at every tie once can read them (the CSR row pointers and column indices, and
    one float32 per resident) from memory, streamed on the threads the engine's kernels
    would get now (kernels.thread_count: every CPU on a quiet machine). `cold()` first
    reads a buffer of four times the largest cache, so the graph comes from memory, not
    cache: this is the issue's ~1.5 ms at 10^6 residents and 10^7 tie ends. `read()`
    alone, back to back, is partly served from cache.

    Why the engine's thread count: on a busy machine a read on every thread waits for the
    thread that lost its core (measured at load 4 on 2 cores: 25-68 ms instead of 1.5),
    while the engine runs one thread; the ratio of the two then says nothing."""

    def __init__(self, eng: Engine) -> None:
        import numba

        x = eng.adopted.astype(np.float32)
        arrays = [eng.network.indptr, eng.network.indices, x]
        self.n = eng.n
        self.nbytes = sum(a.nbytes for a in arrays)
        self.words = [a.view(np.uint8)[: a.nbytes // 8 * 8].view(np.uint64) for a in arrays]
        self.flush = np.ones(4 * _last_level_cache_bytes() // 8, dtype=np.uint64)
        self.held = x.nbytes + self.flush.nbytes  # memory of its own (the rest are views)
        self.stream = _stream_kernel()
        self.chunks = 4 * numba.get_num_threads()
        self.threads: list[int] = []
        self.read()

    def read(self) -> float:
        import numba

        with kernels.Threads(self.n):
            self.threads.append(numba.get_num_threads())
            t0 = time.perf_counter()
            for w in self.words:
                self.stream(w, self.chunks)
            return time.perf_counter() - t0

    def cold(self) -> float:
        with kernels.Threads(self.n):
            self.stream(self.flush, self.chunks)
        return self.read()


def _time_floor(eng: Engine, repeats: int) -> tuple[Row, _Floor]:
    gc.collect()
    floor = _Floor(eng)
    warm = float(np.median([floor.read() for _ in range(repeats)]))
    cold = float(np.median([floor.cold() for _ in range(repeats)]))
    row = Row("floor", eng.n, int(eng.network.indices.size), cold,
              note=f"every tie read once from memory: {floor.nbytes / 1e6:.3g} MB, on "
                   f"{_thread_range(floor.threads)} (the engine's choice), median (back to "
                   f"back, partly cached: {warm * 1e3:.2f} ms)")
    row.extra["warm_sec"] = warm
    return row, floor


def _thread_range(counts: list[int]) -> str:
    lo, hi = min(counts), max(counts)
    return f"{lo} thread{'s' if lo > 1 else ''}" if lo == hi else f"{lo}-{hi} threads"


#: Paired engine/floor timings: pairs x steps engine steps beyond the timed ones.
PAIRS, PAIR_STEPS = 6, 4


def _note_kept_rows(row: Row, eng: Engine, steps: int) -> None:
    """On the float tie sums' path, whose rows are summed again only when a neighbour
    changed (kernels._kept_sums): the share of rows a step summed, and a step's seconds
    with every row summed, which is what a step changing about everyone costs (and what
    every step cost before the sums were kept). Measured on `steps` steps each, after
    the timed ones; other paths are left as they are."""
    pool = eng.backend.effects
    if "kept:form" not in pool:
        return
    pool["kept:count"] = 0
    for _ in range(steps):
        eng.step()
    share = pool.pop("kept:count") / (steps * eng.n)
    times = []
    for _ in range(steps):
        pool["kept:form"] = None  # every row dirty
        t0 = time.perf_counter()
        eng.step()
        times.append(time.perf_counter() - t0)
    row.extra["rows_summed_share"] = share
    row.extra["every_row_sec_per_step"] = float(np.median(times))
    every = _fmt(row.extra["every_row_sec_per_step"], "s")
    row.note = re.sub(r"every (weighted )?tie summed each step",
                      f"float tie sums kept, a row summed again when a neighbour changed "
                      f"({share:.1%} of rows a step; every row summed: {every} a step)",
                      row.note)


def paired_ratio(eng: Engine, other: Callable[[], float]) -> dict[str, float]:
    """Engine step time over `other`'s (it returns its seconds), measured in pairs:
    PAIR_STEPS engine steps, then `other` straight after, PAIRS times. Both halves of a
    pair see the machine in the same state, so a slow spell on a shared machine moves
    both; the median of the pairs' ratios is the robust figure. (Timed a minute apart,
    unpaired, the `ties` step ÷ scipy's product read 0.72, 0.86 and 1.14 in three runs.
    Against the floor, each pair's first step starts after the floor's cache flush,
    which only counts against the engine.)"""
    ratios = []
    for _ in range(PAIRS):
        t0 = time.perf_counter()
        for _ in range(PAIR_STEPS):
            eng.step()
        step = (time.perf_counter() - t0) / PAIR_STEPS
        ratios.append(step / other())
    return {"median": float(np.median(ratios)), "min": float(min(ratios)),
            "max": float(max(ratios)), "pairs": PAIRS}


def time_graph_builds(n: int, seed: int = 1) -> list[dict[str, Any]]:
    """Seconds and traced peak memory to build each generated graph at n residents."""
    from . import network as netmod
    from .population import build_population
    from .rng import Streams

    out = []
    for name, spec in GRAPH_KINDS.items():
        sc = Scenario.from_dict({"seed": seed, "population": {"size": n, "wards": 24},
                                 "network": spec})
        streams = Streams(seed)
        ward = build_population(sc.population, streams).ward
        tracemalloc.start()
        t0 = time.perf_counter()
        net = netmod.build_network(sc.network, ward, streams.generator("network"))
        dt = time.perf_counter() - t0
        _, peak = tracemalloc.get_traced_memory()
        tracemalloc.stop()
        out.append({"graph": name, "n": n, "tie_ends": int(net.indices.size), "seconds": dt,
                    "peak_mb": peak / 1e6})
        del net
    return out


def _borough_final(seed: int) -> float:
    """One run of the default borough (a top-level function, so worker processes can run it)."""
    from . import simulate

    root = Path(__file__).resolve().parent.parent
    sc = Scenario.from_toml(root / "experiments" / "scenarios" / "borough.toml")
    return float(simulate(sc.replace(seed=seed)).summary["final_adoption"])


def time_sweep(runs: int) -> dict[str, Any]:
    """Wall time of `runs` borough runs: in this process (no pool), on a pool of 1 worker
    process and on a pool of 2. Pools pay their start-up inside the timing."""
    from .parallel import map_runs, pool_imap

    def pooled(workers: int) -> list[float]:
        out = [0.0] * runs
        for i, value in pool_imap(_borough_final, list(range(runs)), workers):
            out[i] = value
        return out

    out: dict[str, Any] = {"runs": runs}
    results = {}
    for name, go in (("serial", lambda: map_runs(_borough_final, range(runs), "serial")),
                     ("1", lambda: pooled(1)), ("2", lambda: pooled(2))):
        t0 = time.perf_counter()
        results[name] = go()
        out[f"seconds_{name}"] = time.perf_counter() - t0
    out["speedup"] = out["seconds_1"] / out["seconds_2"]
    out["speedup_vs_serial"] = out["seconds_serial"] / out["seconds_2"]
    out["identical"] = results["serial"] == results["1"] == results["2"]
    return out


# --------------------------------------------------------------------------- reporting


def python_loop_seconds(n: int = 2_000_000) -> float:
    """Seconds a fixed pure-Python loop (adding n integers) took: how fast this host ran
    the interpreter when the benchmark ended. A shared host's speed swings (the same
    `nudgesim run` took 1.5 s one day and 2.3-2.9 s the next on the same AMD EPYC), so
    absolute times such as `--first-run`'s compare across runs only next to this figure."""
    t0 = time.perf_counter()
    total = 0
    for i in range(n):
        total += i
    return round(time.perf_counter() - t0, 3)


def machine() -> dict[str, Any]:
    """What the numbers were measured on."""
    import scipy

    info: dict[str, Any] = {
        "python": platform.python_version(), "platform": platform.platform(),
        "cpu": platform.processor() or platform.machine(), "cores": os.cpu_count(),
        "numpy": np.__version__, "scipy": scipy.__version__,
    }
    if hasattr(os, "getloadavg"):  # other work on the machine skews every ratio: say so
        info["load_average_1_5_15min"] = ", ".join(f"{x:.2f}" for x in os.getloadavg())
    try:
        with open("/proc/cpuinfo") as fh:
            for line in fh:
                if line.startswith("model name"):
                    info["cpu"] = line.split(":", 1)[1].strip()
                    break
        with open("/proc/meminfo") as fh:
            info["memory_gib"] = round(int(fh.readline().split()[1]) / 2**20, 1)
    except OSError:
        pass
    info["vector_width"] = vector_width()
    info["python_loop_seconds"] = python_loop_seconds()
    cpus = kernels.affinity()
    quota = kernels.cgroup_quota()
    info["cpus_usable"] = (f"{len(cpus)} (affinity)"
                           + (f", cgroup quota {quota:g} CPUs" if quota is not None else ""))
    if kernels.AVAILABLE:
        kernels.load()
        import numba

        info["numba"] = numba.__version__
        info["kernels_target"] = kernels_target()
        l2 = kernels.l2_bytes()
        info["decide_block"] = (f"{kernels.block():,} residents ("
                                + (f"L2 {l2 // 1024:,} KB a thread)" if l2 else "L2 size unknown)"))
        info["numba_threads"] = numba.get_num_threads()
        try:
            info["threading_layer"] = numba.threading_layer()
        except ValueError:  # no parallel kernel has run yet
            info["threading_layer"] = "not started"
    try:
        import mesa

        info["mesa"] = mesa.__version__
    except ImportError:
        pass
    return info


def vector_width(cpuinfo: str | None = None) -> str:
    """The widest SIMD instruction set the CPU offers. The kernels' machine code is built
    for kernels_target(), normally this CPU. LLVM's tuning for Intel's AVX-512 CPUs keeps
    to 256-bit vectors (4 doubles), so what AVX-512 adds there is its instructions (masks,
    64-bit integer multiply and conversion, gathers); for AMD Zen 4 and 5 it takes the
    full 512 bits (the decide loop runs on zmm registers, 8 doubles at a time)."""
    if cpuinfo is None:
        try:
            cpuinfo = Path("/proc/cpuinfo").read_text()
        except OSError:
            return f"unknown ({platform.machine()})"
    flags: set[str] = set()
    for line in cpuinfo.splitlines():
        if line.startswith(("flags", "Features")):
            flags = set(line.split(":", 1)[1].split())
            break
    return _widest(flags) if flags else f"unknown ({platform.machine()})"


def _widest(flags: set[str], detail: bool = True) -> str:
    """The widest SIMD set among CPU flags (/proc/cpuinfo's or LLVM's feature names)."""
    if "avx512f" in flags:
        extra = sorted(f.removeprefix("avx512") for f in flags
                       if f.startswith("avx512") and f != "avx512f")
        return "AVX-512, 512-bit" + (" (avx512f" + "".join(f", {e}" for e in extra) + ")"
                                     if detail else "")
    if "avx2" in flags:
        return "AVX2, 256-bit (no AVX-512)"
    if "avx" in flags:
        return "AVX, 256-bit (no AVX2)"
    if "asimd" in flags or "neon" in flags:
        return "NEON/ASIMD, 128-bit"
    return "SSE or narrower, 128-bit"


def kernels_target() -> str:
    """What numba compiles the kernels for: this CPU, unless NUMBA_CPU_NAME /
    NUMBA_CPU_FEATURES name another (how this project measures AVX2 code on an AVX-512
    machine; numpy's own SIMD and the memory stay this machine's). Imports numba."""
    name, _, chosen = kernels.compile_target()
    flags = kernels.compile_flags()
    how = ("set by NUMBA_CPU_NAME / NUMBA_CPU_FEATURES, not this CPU's own" if chosen
           else "this CPU")
    return f"{name}, {_widest(flags, detail=False)} ({how})"


def _fmt(x: float | None, unit: str = "") -> str:
    if x is None or (isinstance(x, float) and not np.isfinite(x)):
        return "–"
    if unit == "s":
        return f"{x * 1e3:.2f} ms" if x < 1 else f"{x:.2f} s"
    return f"{x:,.0f}" if x >= 100 else f"{x:.3g}"


def _paired_lines(title: str, pairs: list[tuple[str, dict]]) -> list[str]:
    """A paired ratio's lines in the benchmark table (none without pairs)."""
    if not pairs:
        return []
    return ["", title, ""] + [f"- {label}: median {p['median']:.2f}× "
                              f"({p['min']:.2f}–{p['max']:.2f}× over {p['pairs']} pairs)"
                              for label, p in pairs]


def markdown(rows: list[Row], memory: list[dict], builds: list[dict], sweep: dict | None,
             info: dict, command: str) -> str:
    lines = ["# nudgesim benchmark", "",
             "Full step = nudges act (begin_step) + every resident decides + update and record; "
             "logistic rule with norm feedback, ambassadors and reminders active; "
             "Watts-Strogatz k = 10, p = 0.1. `engine` keeps each resident's integer tie "
             "counts up to date from the few who changed (exact; what runs on unit-weight "
             "graphs); `ties` is the same compiled engine summing every tie every step in "
             "integers; `weighted` sums them in float on the same graph with tie weights "
             "uniform in 0.1-2.0 (what runs on weighted graphs); `fractional` sums them in "
             f"float on unit ties with ambassadors of influence {FRACTIONAL_INFLUENCE:g} "
             "(what runs for influence that is no integer times a power of two); both keep "
             "each row's float sum and sum a row again only when a neighbour changed "
             "(exact: the same terms in the same order give the same double), and the note "
             "gives the step with every row summed, as one changing about everyone "
             "would be; `cascade` "
             "runs the independent cascade (p 0.1, progressive) on the same unit ties, its "
             "exposure summed over every tie. "
             "Residents' part = the step "
             "after the nudges (Engine.respond: decide, update, record). `floor` = the memory "
             "floor measured in this run: a streaming read from memory (caches flushed first), on "
             "the threads the engine gets (every CPU when the machine is quiet), of the graph's "
             "row pointers and column indices and a float32 per "
             "resident (every tie read once); × floor is the issue's target ratio (≤ 3).", "",
             "| contender | residents | tie ends | s / step | residents' part | "
             "resident-steps / s | peak MB / step | × floor | × scipy A@x | × engine | note |",
             "|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---|"]
    ref = {r.n: r for r in rows if r.contender == "scipy"}
    floor = {r.n: r for r in rows if r.contender == "floor"}
    eng = {r.n: r for r in rows if r.contender == "engine"}
    for r in rows:
        vs_scipy = r.sec_per_step / ref[r.n].sec_per_step if r.n in ref else None
        vs_eng = r.sec_per_step / eng[r.n].sec_per_step if r.n in eng else None
        vs_floor = r.sec_per_step / floor[r.n].sec_per_step if r.n in floor else None
        lines.append(
            f"| {r.contender} | {r.n:,} | {r.ties:,} | {_fmt(r.sec_per_step, 's')} | "
            f"{_fmt(r.decide_sec, 's')} | {_fmt(r.resident_steps_per_sec)} | "
            f"{_fmt(r.peak_mb)} | {_fmt(vs_floor)} | {_fmt(vs_scipy)} | {_fmt(vs_eng)} | "
            f"{r.note} |")
    lines += _paired_lines(
        "Engine step ÷ memory floor, paired (each pair: "
        f"{PAIR_STEPS} engine steps, then the floor read from memory straight "
        "after, so both see the machine in the same state):",
        [(f"{r.n:,} residents", r.extra["paired_floor_ratio"]) for r in rows
         if "paired_floor_ratio" in r.extra])
    lines += _paired_lines(
        "`ties`, `weighted`, `fractional` and `cascade` step ÷ scipy's `A @ x` on the same "
        "ties, paired "
        f"(each pair: {PAIR_STEPS} steps, then one untimed product and {PAIR_STEPS} "
        "timed straight after; the target is ≤ 1):",
        [(f"`{r.contender}`, {r.n:,} residents", r.extra["paired_scipy_ratio"]) for r in rows
         if "paired_scipy_ratio" in r.extra])
    if memory:
        lines += ["", "## Engine state memory", "",
                  "| residents | tie ends | bytes / resident | bytes / tie end | total MB |",
                  "|---:|---:|---:|---:|---:|"]
        for m in memory:
            lines.append(f"| {m['n']:,} | {m['tie_ends']:,} | {m['bytes_per_resident']:.1f} | "
                         f"{m['bytes_per_tie_end']:.1f} | {m['total_mb']:.1f} |")
    if builds:
        lines += ["", "## Graph building (nudgesim.network.build_network)", "",
                  "| graph | residents | tie ends | seconds | traced peak MB |",
                  "|---|---:|---:|---:|---:|"]
        for b in builds:
            lines.append(f"| {b['graph']} | {b['n']:,} | {b['tie_ends']:,} | {b['seconds']:.2f} "
                         f"| {b['peak_mb']:.0f} |")
    if sweep:
        lines += ["", "## Sweep: default borough on a process pool (start-up included)", "",
                  f"{sweep['runs']} runs: {sweep['seconds_2']:.1f} s on 2 worker processes, "
                  f"{sweep['seconds_1']:.1f} s on 1: speed-up {sweep['speedup']:.2f}×. "
                  f"In this process, without a pool: {sweep['seconds_serial']:.1f} s "
                  f"(2 workers are {sweep['speedup_vs_serial']:.2f}× faster). "
                  f"Results identical: {sweep['identical']}."]
    lines += ["", "## Machine", ""] + [f"- {k}: {v}" for k, v in info.items()]
    lines += ["", f"Reproduce: `{command}`", ""]
    return "\n".join(lines)


# --------------------------------------------------------------------------- CLI


def _parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="nudgesim bench", description=__doc__.splitlines()[0])
    p.add_argument("--sizes", default="10000,100000,1000000",
                   help="comma-separated resident counts (default: 10000,100000,1000000)")
    p.add_argument("--steps", type=int, default=8,
                   help="timed steps per contender (default 8: two norm-feedback contacts)")
    p.add_argument("--contenders", default=",".join(CONTENDERS),
                   help=f"comma-separated subset of {','.join(CONTENDERS)}")
    p.add_argument("--agents-max", type=int, default=DEFAULT_LIMITS["agents"],
                   help="largest size for the per-agent Mesa path (default 10000)")
    p.add_argument("--mesa-max", type=int, default=DEFAULT_LIMITS["mesa"],
                   help="largest size for the idiomatic Mesa model (default 100000)")
    p.add_argument("--graphs", action="store_true", help="also time graph building at the largest size")
    p.add_argument("--sweep", type=int, default=0, metavar="RUNS",
                   help="also time RUNS borough runs on 1 vs 2 workers (0 = skip)")
    p.add_argument("--out", default="results/benchmark", help="output folder")
    p.add_argument("--quick", action="store_true",
                   help="tiny smoke run (2,000 residents, 2 steps, no graphs/sweep; with "
                        "--contended or --first-run: their smallest useful form)")
    p.add_argument("--first-run", action="store_true",
                   help="instead: wall time of the whole `nudgesim run` command on an empty "
                        "kernel cache, then warm, with its -X importtime top entries")
    p.add_argument("--scenario", default=None,
                   help="scenario for --first-run (default experiments/scenarios/borough.toml)")
    p.add_argument("--contended", action="store_true",
                   help="instead: the step next to competing processes it starts and stops "
                        "(busy loops, another OpenMP program, I/O): numpy vs compiled with "
                        "default, 1 and all threads (--sizes default 100000)")
    p.add_argument("--loads", default=",".join(LOADS),
                   help=f"competing loads for --contended (default {','.join(LOADS)})")
    p.add_argument("--scale", action="store_true",
                   help="instead: national scale (issue 16): every set-up stage and the "
                        "weekly steps of the borough's campaign scaled up, each size in a "
                        "fresh process; sizes the memory estimate refuses are recorded")
    p.add_argument("--scale-sizes", default=SCALE_SIZES,
                   help=f"households for --scale (default {SCALE_SIZES})")
    p.add_argument("--scale-steps", default="52",
                   help="weekly steps for --scale: one number, or one per size (default 52)")
    p.add_argument("--scale-ward-size", type=int, default=SCALE_WARD_SIZE,
                   help=f"households per synthetic ward (default {SCALE_WARD_SIZE:,})")
    p.add_argument("--scale-scores", default=",".join(SCALE_SCORES),
                   help="targeting scores timed on their own, comma-separated subset of "
                        f"{','.join(SCALE_SCORES)} (empty: none)")
    p.add_argument("--scale-community-method", default=SCALE_COMMUNITY_METHOD,
                   help="community method timed at every size (default "
                        f"{SCALE_COMMUNITY_METHOD}: igraph's Leiden up to 100,000 households, "
                        "fast Louvain above; a method that cannot fit the memory limit is not timed, and the "
                        "table says so)")
    p.add_argument("--max-memory", default=None, metavar="SIZE",
                   help="--scale: refuse sizes estimated to need more than SIZE (default: "
                        "the memory available now)")
    return p


def _usage(msg: str) -> Exception:
    try:
        from .errors import UsageError

        return UsageError(msg)
    except ImportError:  # pragma: no cover
        return ValueError(msg)


def bench_main(argv: list[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    if args.first_run:
        return first_run_main(args, argv)
    if args.contended:
        return contended_main(args, argv)
    if args.scale:
        return scale_main(args, argv)
    try:
        sizes = [int(s) for s in args.sizes.split(",") if s.strip()]
    except ValueError:
        raise _usage(f"--sizes: {args.sizes!r} is not a comma-separated list of integers") from None
    if any(n < 100 for n in sizes):
        raise _usage(f"--sizes: {sizes} has a size below 100; allowed: integers >= 100")
    wanted = [c.strip() for c in args.contenders.split(",") if c.strip()]
    bad = [c for c in wanted if c not in CONTENDERS]
    if bad:
        raise _usage(f"--contenders: unknown {bad}; allowed: {', '.join(CONTENDERS)}")
    if args.steps < 1:
        raise _usage(f"--steps: {args.steps}; allowed: an integer >= 1")
    if args.quick:
        sizes, args.steps, args.graphs, args.sweep = [2_000], 2, False, 0
    rows: list[Row] = []
    memory: list[dict] = []
    for n in sizes:
        # + 2 warm-up, 2 traced, 1 spare, the paired engine/floor steps, and the two
        # spells of _note_kept_rows
        sc = bench_scenario(n, 3 * args.steps + 5 + PAIRS * PAIR_STEPS)
        eng = None
        product: Callable[[], float] | None = None  # scipy's A @ x, paired with unit ties
        if {"engine", "scipy", "mesa", "floor"} & set(wanted):
            row, eng = _time_engine(sc, args.steps, numba_on=True)
            per_res, per_tie = state_bytes(eng)
            memory.append({"n": n, "tie_ends": int(eng.network.indices.size),
                           "bytes_per_resident": per_res / n,
                           "bytes_per_tie_end": per_tie / max(eng.network.indices.size, 1),
                           "total_mb": (per_res + per_tie) / 1e6})
            row.extra["near_ties"] = eng.near_ties
            if "engine" in wanted:
                rows.append(row)
            print(f"engine  n={n:>9,}  {row.sec_per_step * 1e3:9.2f} ms/step", flush=True)
            if "scipy" in wanted:  # next to the engine: after the numpy engine's many large
                # allocations, the same A @ x measured up to 1.8x slower on this VM
                scipy_row, product = _time_scipy(eng, max(10, args.steps))
                rows.append(scipy_row)
            if "floor" in wanted and kernels.AVAILABLE:
                floor_row, floor = _time_floor(eng, max(10, args.steps))
                rows.append(floor_row)
                row.extra["paired_floor_ratio"] = paired_ratio(eng, floor.cold)
                del floor
        if "ties" in wanted:  # before the numpy engine, whose large allocations slow the
            # A @ x it is paired with (see the scipy row above)
            row, ties = _time_engine(sc, args.steps, numba_on=True, counts=False)
            if product is not None and ties.backend.compiled:
                row.extra["paired_scipy_ratio"] = paired_ratio(ties, product)
            del ties
            rows.append(row)
            print(f"ties    n={n:>9,}  {row.sec_per_step * 1e3:9.2f} ms/step", flush=True)
        if "weighted" in wanted:  # the float tie sums, paired with scipy on the same weights
            wsc = bench_scenario(n, sc.steps, sc.seed, weighted=True)
            row, ties = _time_engine(wsc, args.steps, numba_on=True, counts=False,
                                     name="weighted")
            row.note = row.note.replace("every tie", "every weighted tie")
            if "scipy" in wanted and ties.backend.compiled:
                row.extra["paired_scipy_ratio"] = paired_ratio(ties, _time_scipy(ties, 1)[1])
            _note_kept_rows(row, ties, args.steps)
            del ties
            rows.append(row)
            print(f"weighted n={n:>8,}  {row.sec_per_step * 1e3:9.2f} ms/step", flush=True)
        for name, variant in UNIT_TIE_VARIANTS.items():
            if name not in wanted:
                continue
            row, ties = _time_engine(bench_scenario(n, sc.steps, sc.seed, **variant),
                                     args.steps, numba_on=True, counts=False, name=name)
            if product is not None and ties.backend.compiled:
                row.extra["paired_scipy_ratio"] = paired_ratio(ties, product)
            _note_kept_rows(row, ties, args.steps)
            del ties
            rows.append(row)
            print(f"{name} n={n:>9,}  {row.sec_per_step * 1e3:9.2f} ms/step", flush=True)
        if "numpy" in wanted:
            row, _ = _time_engine(sc, args.steps, numba_on=False)
            rows.append(row)
            print(f"numpy   n={n:>9,}  {row.sec_per_step * 1e3:9.2f} ms/step", flush=True)
        if "agents" in wanted and n <= args.agents_max:
            rows.append(_time_agents(sc, min(args.steps, 2)))
            print(f"agents  n={n:>9,}  {rows[-1].sec_per_step:9.2f} s/step", flush=True)
        if "mesa" in wanted and n <= args.mesa_max and eng is not None:
            rows.append(_time_mesa(eng, min(args.steps, 2), sc.seed))
            print(f"mesa    n={n:>9,}  {rows[-1].sec_per_step:9.2f} s/step", flush=True)
        del eng
    builds = time_graph_builds(max(sizes)) if args.graphs else []
    sweep = time_sweep(args.sweep) if args.sweep else None
    info = machine()
    command = "nudgesim bench " + " ".join(argv if argv is not None else [])
    text = markdown(rows, memory, builds, sweep, info, command.strip())
    out = Path(args.out)
    stamp = time.strftime("%Y%m%d-%H%M%S")
    write_atomic(out / "benchmark.md", text)
    payload = {"rows": [vars(r) | {"resident_steps_per_sec": r.resident_steps_per_sec}
                        for r in rows],
               "memory": memory, "graph_builds": builds, "sweep": sweep, "machine": info,
               "command": command.strip(), "time": stamp}
    write_atomic(out / "benchmark.json", json.dumps(payload, indent=2, default=str) + "\n")
    print(text)
    return 0


# --------------------------------------------------------------------------- first run


def _run_command(cmd: list[str], env: dict[str, str]) -> tuple[float, str, str]:
    """Wall seconds, stdout and stderr of one command (it must succeed)."""
    import subprocess

    t0 = time.perf_counter()
    out = subprocess.run(cmd, env=env, capture_output=True, text=True)
    wall = time.perf_counter() - t0
    if out.returncode != 0:
        raise RuntimeError(f"{' '.join(cmd)} exited {out.returncode}: {out.stderr.strip()[-500:]}")
    return wall, out.stdout, out.stderr


def importtime_top(stderr: str, k: int = 12) -> list[dict[str, Any]]:
    """The modules a command imported directly (not nested inside another import),
    largest cumulative import time first, from `python -X importtime` output."""
    rows: list[dict[str, Any]] = []
    for line in stderr.splitlines():
        if not line.startswith("import time:") or "self [us]" in line:
            continue
        self_us, cum_us, name = line[len("import time:"):].split("|", 2)
        if name.startswith(" ") and not name.startswith("  "):  # nesting indents by 2
            rows.append({"module": name.strip(), "self_ms": int(self_us) / 1e3,
                         "cumulative_ms": int(cum_us) / 1e3})
    return sorted(rows, key=lambda r: -r["cumulative_ms"])[:k]


def first_run(scenario: str, repeats: int = 3, compile_time: bool = True) -> dict[str, Any]:
    """`nudgesim run SCENARIO` in a fresh process on an empty numba cache (a new user's
    first command), then `repeats` times more on the cache it left (later runs), then
    once with -X importtime; also, unless compile_time is False, how long compiling the
    kernels takes on an empty cache (kernels.warm_up in a fresh process: the cost the
    engine weighs when it chooses between numpy and the kernels)."""
    import shutil
    import sys
    import tempfile

    base = {k: v for k, v in os.environ.items() if k != "NUDGESIM_NUMBA"}
    cache = tempfile.mkdtemp(prefix="nudgesim-cold-cache-")
    out_dir = tempfile.mkdtemp(prefix="nudgesim-first-run-")
    env = base | {"NUMBA_CACHE_DIR": cache}
    cmd = [sys.executable, "-m", "nudgesim", "run", scenario, "--out", f"{out_dir}/run"]
    try:
        cold, stdout, _ = _run_command(cmd, env)
        warm = [_run_command(cmd, env)[0] for _ in range(repeats)]
        _, _, imports = _run_command([sys.executable, "-X", "importtime", *cmd[1:]], env)
        cli_import, _, cli_imports = _run_command(
            [sys.executable, "-X", "importtime", "-c", "import nudgesim.cli"], env)
        def loaded(module: str) -> bool:  # an import line of -X importtime, at any depth
            return any(line.startswith("import time:") and line.rsplit("|", 1)[-1].strip()
                       == module for line in imports.splitlines())

        result: dict[str, Any] = {
            "scenario": scenario, "command": " ".join(["nudgesim", *cmd[3:5]]),
            "cold_seconds": cold, "warm_seconds": warm,
            "first_line": stdout.splitlines()[0] if stdout else "",
            "imports_top": importtime_top(imports),
            "import_total_ms": sum(r["cumulative_ms"] for r in importtime_top(imports, 10**6)),
            "cli_import_ms": sum(r["cumulative_ms"] for r in importtime_top(cli_imports, 10**6)),
            "numba_imported": loaded("numba"),
            "pandas_imported": loaded("pandas"),
        }
        if compile_time:
            shutil.rmtree(cache, ignore_errors=True)
            os.makedirs(cache)
            code = "from nudgesim import engine; print(engine.warm_up())"
            _, text, _ = _run_command([sys.executable, "-c", code], env)
            result["compile_seconds"] = float(text.split()[-1])
    finally:
        shutil.rmtree(cache, ignore_errors=True)
        shutil.rmtree(out_dir, ignore_errors=True)
    return result


def first_run_markdown(r: dict[str, Any], info: dict, command: str) -> str:
    warm = r["warm_seconds"]
    lines = ["# nudgesim first run", "",
             f"`{r['command']}` as a whole command, each in a fresh Python process "
             "(interpreter start, imports, simulation, tables and plot).", "",
             "| run | wall seconds |", "|---|---:|",
             f"| first, empty kernel cache | {r['cold_seconds']:.2f} |",
             f"| later (cache as the first left it), {len(warm)} runs | "
             f"{min(warm):.2f} – {max(warm):.2f} (median {float(np.median(warm)):.2f}) |"]
    if "compile_seconds" in r:
        lines.append(f"| compiling the kernels on an empty cache (kernels.warm_up) | "
                     f"{r['compile_seconds']:.1f} |")
    lines += ["", f"The command's own output: `{r['first_line']}`", "",
              f"numba imported by the command: {r['numba_imported']}; "
              f"pandas: {r['pandas_imported']}. "
              f"`import nudgesim.cli`: {r['cli_import_ms']:.0f} ms.", "",
              "## Imports of the command (python -X importtime, top level, cumulative)", "",
              "| module | cumulative ms | self ms |", "|---|---:|---:|"]
    lines += [f"| {m['module']} | {m['cumulative_ms']:.0f} | {m['self_ms']:.0f} |"
              for m in r["imports_top"]]
    lines += ["", "## Machine", ""] + [f"- {k}: {v}" for k, v in info.items()]
    lines += ["", f"Reproduce: `{command}`", ""]
    return "\n".join(lines)


def first_run_main(args: argparse.Namespace, argv: list[str] | None) -> int:
    root = Path(__file__).resolve().parent.parent
    scenario = args.scenario or str(root / "experiments" / "scenarios" / "borough.toml")
    if not Path(scenario).is_file():
        raise _usage(f"--scenario: {scenario} is not a file")
    r = first_run(scenario, repeats=1 if args.quick else 3, compile_time=not args.quick)
    info = machine()
    command = "nudgesim bench " + " ".join(argv if argv is not None else [])
    text = first_run_markdown(r, info, command.strip())
    out = Path(args.out)
    write_atomic(out / "first_run.md", text)
    write_atomic(out / "first_run.json",
                 json.dumps({"first_run": r, "machine": info, "command": command.strip()},
                            indent=2, default=str) + "\n")
    print(text)
    return 0


# --------------------------------------------------------------------------- contended

#: Competing loads for --contended, each started by the benchmark and stopped after it.
LOADS = ("quiet", "busy", "busy-all", "openmp", "io")
LOAD_NOTES = {
    "quiet": "no competitor started",
    "busy": "one busy-loop process",
    "busy-all": "one busy-loop process per CPU",
    "openmp": "another nudgesim process on the kernels, all threads, fixed (an OpenMP "
              "program that does not adapt)",
    "io": "a process writing, syncing and reading back a file",
}
_BUSY = "import time\nend = time.monotonic() + {t}\nwhile time.monotonic() < end:\n    pass\n"
_IO = ("import os, tempfile, time\nend = time.monotonic() + {t}\nblock = os.urandom(1 << 22)\n"
       "with tempfile.TemporaryFile() as fh:\n    while time.monotonic() < end:\n"
       "        fh.seek(0); fh.write(block); fh.flush(); os.fsync(fh.fileno())\n"
       "        fh.seek(0); fh.read()\n")
_OPENMP = ("import time\nfrom nudgesim import bench, kernels\nfrom nudgesim.engine import Engine\n"
           "kernels.ADAPTIVE_THREADS = False\nend = time.monotonic() + {t}\n"
           "while time.monotonic() < end:\n    eng = Engine(bench.bench_scenario(200_000, 40))\n"
           "    while eng.t < eng.steps and time.monotonic() < end:\n        eng.step()\n")


def _start_load(kind: str, seconds: float) -> list[Any]:
    """Start the competitors of one load kind; each also ends by itself after `seconds`."""
    import subprocess
    import sys

    ncpu = len(kernels.affinity())
    code = {"busy": [_BUSY], "busy-all": [_BUSY] * ncpu, "io": [_IO],
            "openmp": [_OPENMP], "quiet": []}[kind]
    env = dict(os.environ, NUDGESIM_NUMBA="1")
    return [subprocess.Popen([sys.executable, "-c", c.format(t=seconds)], env=env,
                             stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
            for c in code]


def _stop_load(procs: list[Any]) -> None:
    for p in procs:
        if p.poll() is None:
            p.kill()
    for p in procs:
        p.wait()


def _steps_per_sec(eng: Engine, steps: int, min_seconds: float = 0.0) -> float:
    """Seconds per step over at least `steps` steps and `min_seconds` (a window shorter
    than a scheduler time slice measures one preemption more than the step), after one
    untimed step that brings this engine's arrays back into cache (the other contender's
    step evicted them)."""
    eng.step()
    done = 0
    t0 = time.perf_counter()
    while eng.t < eng.steps and (done < steps or time.perf_counter() - t0 < min_seconds):
        eng.step()
        done += 1
    return (time.perf_counter() - t0) / max(done, 1)


def contended(n: int, loads: list[str], steps: int = 3, rounds: int = 5,
              settle: float = 1.0, min_seconds: float = 0.15) -> list[dict[str, Any]]:
    """Seconds per step of the numpy engine and of the compiled engine with its default
    (adaptive) thread count, on 1 thread and on every usable CPU, next to each load.
    The four take turns in `rounds` rounds so each sees the same load; the median round
    is reported; each round starts with a different one."""
    ncpu = len(kernels.affinity())
    configs = ["numpy", "default", "1"] + ([str(ncpu)] if ncpu > 1 else [])
    from .engine import warm_up

    # enough steps for every timed window (int16 stamps: under 32,767); a window with no
    # minimum time takes `steps`, so the quick form stays under 127 steps, on the
    # int8-stamp kernels .ci/run compiles up front (int16 ones cost it ~100 s to compile)
    window = 1 + (max(steps, 300) if min_seconds > 0 else steps)
    total = min(30_000, 4 + rounds * len(configs) * len(loads) * window)
    kernels.load()
    if not kernels.cache_is_warm(total):
        warm_up(total)  # compiled and cached before any competitor starts
    saved = kernels.ENABLED
    try:
        kernels.ENABLED = True
        fast = Engine(bench_scenario(n, total))
        kernels.ENABLED = False
        slow = Engine(bench_scenario(n, total))
    finally:
        kernels.ENABLED = saved
    for engine in (fast, fast, slow, slow):  # first contacts, the counts' build
        engine.step()
    out = []
    for kind in loads:
        procs = _start_load(kind, seconds=120 + 10 * rounds * steps)
        try:
            time.sleep(settle if procs else 0.0)
            times: dict[str, list[float]] = {c: [] for c in configs}
            chosen = []
            for r in range(rounds):
                for c in configs[r % len(configs):] + configs[:r % len(configs)]:
                    if c == "numpy":
                        times[c].append(_steps_per_sec(slow, steps, min_seconds))
                    elif c == "default":
                        times[c].append(_steps_per_sec(fast, steps, min_seconds))
                        chosen.append(kernels.thread_count(n))
                    else:
                        saved_adaptive = kernels.ADAPTIVE_THREADS
                        kernels.ADAPTIVE_THREADS = False
                        try:
                            with kernels.threads(int(c)):
                                times[c].append(_steps_per_sec(fast, steps, min_seconds))
                        finally:
                            kernels.ADAPTIVE_THREADS = saved_adaptive
            load1 = os.getloadavg()[0] if hasattr(os, "getloadavg") else float("nan")
        finally:
            _stop_load(procs)
        med = {c: float(np.median(v)) for c, v in times.items()}
        best_fixed = min(med[c] for c in configs if c not in ("numpy", "default"))
        out.append({"load": kind, "note": LOAD_NOTES[kind], "n": n, "seconds": med,
                    "rounds": {c: v for c, v in times.items()},
                    "threads_chosen": sorted(set(chosen)), "load_avg_1min": load1,
                    "default_over_numpy": med["default"] / med["numpy"],
                    "default_over_best_fixed": med["default"] / best_fixed})
        print(f"{kind:9s} n={n:>9,}  " + "  ".join(f"{c}: {med[c] * 1e3:.2f} ms" for c in configs)
              + f"  (threads chosen {sorted(set(chosen))})", flush=True)
    return out


def contended_markdown(rows: list[dict[str, Any]], info: dict, command: str) -> str:
    configs = list(rows[0]["seconds"]) if rows else []
    head = {"numpy": "numpy", "default": "compiled, default threads",
            "1": "compiled, 1 thread"}
    lines = ["# nudgesim on a busy machine", "",
             "One full step (the `nudgesim bench` workload) next to competing processes the "
             "benchmark starts and stops itself. The numpy engine and the compiled engine "
             "with its default thread choice, on 1 thread and on every usable CPU take "
             "turns, so each sees the same load; medians over the rounds. Targets: "
             "default ≤ numpy, and default ≤ 1.5× the best fixed thread count.", "",
             "| load | residents | " + " | ".join(head.get(c, f"compiled, {c} threads")
                                                for c in configs)
             + " | threads chosen | default ÷ numpy | default ÷ best fixed |",
             "|---|---:|" + "---:|" * len(configs) + "---|---:|---:|"]
    for r in rows:
        lines.append(f"| {r['note']} | {r['n']:,} | "
                     + " | ".join(_fmt(r["seconds"][c], "s") for c in configs)
                     + f" | {', '.join(map(str, r['threads_chosen']))} | "
                     f"{r['default_over_numpy']:.2f} | {r['default_over_best_fixed']:.2f} |")
    lines += ["", "## Machine", ""] + [f"- {k}: {v}" for k, v in info.items()]
    lines += ["", f"Reproduce: `{command}`", ""]
    return "\n".join(lines)


def contended_main(args: argparse.Namespace, argv: list[str] | None) -> int:
    if not kernels.AVAILABLE:
        raise _usage("--contended compares the compiled engine: numba is not installed "
                     "or NUDGESIM_NUMBA=0")
    loads = [x.strip() for x in args.loads.split(",") if x.strip()]
    bad = [x for x in loads if x not in LOADS]
    if bad:
        raise _usage(f"--loads: unknown {bad}; allowed: {', '.join(LOADS)}")
    given = [a for a in (argv or []) if a.startswith("--sizes")]
    try:
        sizes = ([int(x) for x in args.sizes.split(",") if x.strip()] if given else [100_000])
    except ValueError:
        raise _usage(f"--sizes: {args.sizes!r} is not a comma-separated list of integers") from None
    rows = []
    for n in sizes:
        if args.quick:
            rows += contended(n, loads, steps=2, rounds=1, settle=0.2, min_seconds=0.0)
        else:
            rows += contended(n, loads)
    info = machine()
    command = "nudgesim bench " + " ".join(argv if argv is not None else [])
    text = contended_markdown(rows, info, command.strip())
    out = Path(args.out)
    write_atomic(out / "contended.md", text)
    write_atomic(out / "contended.json",
                 json.dumps({"rows": rows, "machine": info, "command": command.strip()},
                            indent=2, default=str) + "\n")
    print(text)
    return 0



# --------------------------------------------------------------------------- national scale

#: Households per synthetic ward at --scale. Assumption (issue 16's "realistic ward sizes"):
#: English and Welsh electoral wards hold from under a thousand to over ten thousand
#: households; 8,000 is a round figure inside that range, not a census average.
SCALE_WARD_SIZE = 8_000
SCALE_SIZES = "1e6,1e7,2.5e7"
#: Targeting scores timed on their own at --scale (the campaign itself targets by degree).
SCALE_SCORES = ("degree", "kcore", "betweenness", "community")
#: Betweenness sources timed at --scale; the table also gives the time scaled to the
#: 256 a scenario uses by default (the cost is linear in the sources: one BFS each).
SCALE_BETWEENNESS_SOURCES = 4
#: Community method timed at --scale, at every size: "auto" runs what a scenario's
#: community targeting would (scores.community_method says which; the stage names it).
SCALE_COMMUNITY_METHOD = "auto"
_SCALE_MARK = "@@nudgesim-scale@@"
#: The borough's campaign runs a year of weekly steps; --scale-steps below it times the
#: first weeks of that campaign (later nudges start at weeks 8, 13 and 20).
CAMPAIGN_WEEKS = 52


def national_scenario(n: int, steps: int = 52, ward_size: int = SCALE_WARD_SIZE,
                      seed: int = 42) -> Scenario:
    """The shipped borough's campaign on `n` households in round(n / ward_size) wards.

    Ward k copies the borough's ward k mod 24 (name + number, the same baseline); the
    nudges that name wards name every copy of them; ambassadors stay 1% of households
    (200 of 20,000). Ties are ward-clustered as in the borough (8 in-ward, 2 cross-ward
    on average), so ward size, not n, sets how local the graph is."""
    import tomllib

    from .scenarios import BOROUGH, path

    data = tomllib.loads(path(BOROUGH).read_text())
    base = data["population"]["wards"]
    count = max(1, min(n, round(n / ward_size)))
    wards = [{"name": f"{base[k % len(base)]['name']} {k // len(base) + 1}",
              "baseline": base[k % len(base)]["baseline"]} for k in range(count)]
    copies: dict[str, list[str]] = {}
    for k, w in enumerate(wards):
        copies.setdefault(base[k % len(base)]["name"], []).append(w["name"])

    def scaled(names: list[str]) -> list[str]:
        return [c for name in names for c in copies.get(name, [])] or [wards[0]["name"]]

    data.update(name=f"national-{n}", steps=steps, seed=seed,
                description=f"Synthetic nation: the borough's campaign on {n:,} households "
                            f"in {count:,} wards")
    data["population"].update(size=n, wards=wards)
    for nudge in data["nudges"]:
        if "wards" in nudge:
            nudge["wards"] = scaled(nudge["wards"])
        targeting = nudge.get("targeting", {})
        if "wards" in targeting:
            targeting["wards"] = scaled(targeting["wards"])
        if "count" in targeting:
            targeting["count"] = max(1, round(targeting["count"] * n / 20_000))
    return Scenario.from_dict(data)


def _memory_status() -> dict[str, int]:
    """VmHWM and VmRSS of this process in bytes (Linux; empty elsewhere)."""
    out = {}
    try:
        with open("/proc/self/status") as fh:
            for line in fh:
                if line.startswith(("VmHWM:", "VmRSS:")):
                    key, value = line.split(":", 1)
                    out[key] = int(value.split()[0]) * 1024
    except OSError:
        pass
    return out


def _reset_peak() -> bool:
    """Reset VmHWM to the current RSS (Linux >= 4.0: write 5 to clear_refs), so the next
    reading is the peak of one stage."""
    try:
        with open("/proc/self/clear_refs", "w") as fh:
            fh.write("5")
        return True
    except OSError:
        return False


def scale_one(n: int, steps: int, ward_size: int = SCALE_WARD_SIZE, seed: int = 42,
              scores: tuple[str, ...] = SCALE_SCORES,
              betweenness_sources: int = SCALE_BETWEENNESS_SOURCES,
              community_method: str = SCALE_COMMUNITY_METHOD) -> dict[str, Any]:
    """Every set-up stage and `steps` steps of national_scenario(n), timed in this process
    (run it in a fresh one: the peaks are this process's). Each stage gets its own peak
    resident memory (VmHWM reset before it) and the resident memory after it."""
    import sys

    from . import limits
    from . import network as netmod
    from .engine import initial_adopters
    from .nudges import Targeting, strategy_scores
    from .population import build_population
    from .registry import RULES
    from .rng import Streams
    from .scores import betweenness_scores, community_memory, compiled_betweenness
    from .scores import community_method as community_method_for
    from .world import World

    kernels.load()
    stages: list[dict[str, Any]] = []
    resettable = _reset_peak()

    def stage(name: str, fn: Any) -> Any:
        gc.collect()
        before = _memory_status().get("VmRSS", 0)
        _reset_peak()
        t0 = time.perf_counter()
        value = fn()
        dt = time.perf_counter() - t0
        mem = _memory_status()
        stages.append({"stage": name, "seconds": dt, "rss_before": before,
                       "peak": mem.get("VmHWM", 0), "rss_after": mem.get("VmRSS", 0)})
        print(f"  n={n:,} {name}: {dt:.2f} s, peak {mem.get('VmHWM', 0) / 1e9:.2f} GB",
              file=sys.stderr, flush=True)
        return value

    start = _memory_status().get("VmRSS", 0)
    # the year-long campaign whatever `steps`: a shorter run times its first weeks
    sc = stage("scenario", lambda: national_scenario(n, max(steps, CAMPAIGN_WEEKS),
                                                     ward_size, seed))
    streams = Streams(sc.seed)
    pop = stage("traits and wards", lambda: build_population(sc.population, streams))
    net = stage("graph", lambda: netmod.build_network(sc.network, pop.ward,
                                                      streams.generator("network")))
    if not RULES[sc.rule.kind].reads_threshold:  # as build_world
        pop.threshold = np.broadcast_to(np.float64(np.nan), (pop.n,))
    stage("initial adopters", lambda: initial_adopters(sc, pop, Streams(sc.seed)))
    eng = stage("engine set-up", lambda: Engine(sc, world=World(pop, net)))
    skipped: dict[str, str] = {}
    for kind in scores:
        if kind == "community":
            # what strategy_scores runs for community targeting (labels, then the
            # round-robin ranks, which cost a sort), with the method named
            method = community_method_for(community_method, n)
            label = {"leiden": "Leiden, igraph", "fast_louvain": "fast Louvain, compiled"}.get(
                method, method)
            # a run would be refused by its memory check (limits counts the method's
            # memory for community targeting); the bench records that instead
            need = community_memory(method, n, int(net.indices.size))
            limit, source = limits.memory_limit()
            held = 0 if source == "available memory" else _memory_status().get("VmRSS", 0)
            if held + need > limit:
                skipped[kind] = (f"({label}) not timed: it needs ~{limits.format_bytes(need)} "
                                 f"more, beyond the {limits.format_bytes(limit)} limit "
                                 f"({source})")
                continue
            targeting = Targeting(strategy="community", count=1,
                                  community_method=community_method)
            stage(f"score: community ({label})",
                  lambda t=targeting: strategy_scores(t, eng, "scale"))
            continue
        if kind == "betweenness":
            # a few sources, on the path a scenario's default 256 would take at this size
            compiled = compiled_betweenness(n, 256)
            stage(f"score: betweenness, {betweenness_sources} sources"
                  + (" (compiled)" if compiled else " (numpy)"),
                  lambda c=compiled: betweenness_scores(
                      net, eng.streams.generator("score:betweenness"), betweenness_sources,
                      compiled=c))
            continue
        targeting = Targeting(strategy=kind, count=1)
        stage(f"score: {kind}", lambda t=targeting: strategy_scores(t, eng, "scale"))
    eng.score_cache.clear()  # the run computes the degree scores it needs itself
    # The floor is read from memory straight after every step, so that each step and its
    # floor see the machine in the same state: on a shared machine the host's speed
    # drifts over minutes (the 10^7 floor read 17-24 ms within one hour), and a floor read
    # once, after the steps, paired a slow spell's steps with a quick spell's floor. (Each
    # step then starts after the floor's cache flush, which only counts against the
    # engine.) The floor's buffers are resident before the steps start and throughout, so
    # they are taken off the steps' memory, which stays the run's own (where the peak can
    # be reset to the steps': otherwise it may be an earlier stage's, without them).
    floor = _Floor(eng) if eng.backend.graph is not None else None
    held = floor.held if floor is not None and resettable else 0
    times: list[float] = []
    floors: list[float] = []
    gc.collect()
    _reset_peak()
    for _ in range(steps):
        t0 = time.perf_counter()
        eng.step()
        times.append(time.perf_counter() - t0)
        if floor is not None:
            floors.append(floor.cold())
    mem = _memory_status()
    peak_steps = mem.get("VmHWM", 0) - held
    print(f"  n={n:,} {steps} steps: {sum(times):.2f} s, peak {peak_steps / 1e9:.2f} GB",
          file=sys.stderr, flush=True)
    stages.append({"stage": f"{steps} steps", "seconds": float(sum(times)),
                   "rss_before": stages[-1]["rss_after"], "peak": peak_steps,
                   "rss_after": mem.get("VmRSS", 0) - held})
    floor_sec = floor_threads = None
    paired = None
    if floor is not None:
        floor_sec = float(np.median(floors))
        floor_threads = _thread_range(floor.threads)
        ratios = np.array(times) / np.array(floors)
        paired = {"median": float(np.median(ratios)), "min": float(ratios.min()),
                  "max": float(ratios.max()), "pairs": len(ratios)}
        del floor
    result = stage("result tables", eng.result)
    per_res, per_tie = state_bytes(eng)
    tie_ends = int(net.indices.size)
    graph_stage = next(s for s in stages if s["stage"] == "graph")
    out = {
        "n": n, "wards": pop.n_wards, "tie_ends": tie_ends, "steps": steps,
        "ward_size": ward_size, "stages": stages, "skipped": skipped,
        "step_seconds": times, "step_mean": float(np.mean(times)),
        "step_median": float(np.median(times)), "step_max": float(np.max(times)),
        "floor_seconds": floor_sec, "floor_threads": floor_threads,
        "x_floor": float(np.median(times)) / floor_sec if floor_sec else None,
        "x_floor_paired": paired, "floor_each": floors,
        "backend": eng.backend.reason, "compiled": eng.backend.compiled,
        # the run's own peak: a targeting score timed on its own (the community's fast
        # Louvain needs more than the whole run at 2.5x10^7) has its peak in its stage row
        "peak": max(s["peak"] for s in stages if not s["stage"].startswith("score:")),
        "rss_start": start,
        "peak_per_stage": resettable,
        "build_bytes_per_tie_end": (graph_stage["peak"] - graph_stage["rss_before"])
        / max(tie_ends, 1),
        "state_bytes_per_resident": per_res / n, "state_bytes_per_tie_end":
        per_tie / max(tie_ends, 1),
        "final_adoption": float(result.timeseries["adoption_rate"].iloc[-1]),
        "networkx_imported": "networkx" in sys.modules,  # issue 16: none goes through it
    }
    return out


def _scale_child(params: dict[str, Any], env: dict[str, str]) -> dict[str, Any]:
    """scale_one(**params) in a fresh Python process; a crash becomes a row, not an error."""
    import subprocess
    import sys

    code = ("import json, sys\nfrom nudgesim.bench import scale_one, _SCALE_MARK\n"
            "p = json.loads(sys.argv[1]); p['scores'] = tuple(p['scores'])\n"
            "print(_SCALE_MARK + json.dumps(scale_one(**p)))\n")
    t0 = time.perf_counter()
    proc = subprocess.run([sys.executable, "-c", code, json.dumps(params)], env=env,
                          stdout=subprocess.PIPE, stderr=None, text=True)
    wall = time.perf_counter() - t0
    for line in proc.stdout.splitlines():
        if line.startswith(_SCALE_MARK):
            return json.loads(line[len(_SCALE_MARK):]) | {"status": "measured",
                                                          "wall_seconds": wall}
    return {"n": params["n"], "status": f"failed: the process exited {proc.returncode}"
            + (" (killed: out of memory?)" if proc.returncode in (-9, 137) else ""),
            "wall_seconds": wall}


def _load() -> str:
    return ", ".join(f"{x:.2f}" for x in os.getloadavg()) if hasattr(os, "getloadavg") else "–"


def scale(sizes: list[int], steps: list[int], ward_size: int = SCALE_WARD_SIZE,
          scores: tuple[str, ...] = SCALE_SCORES,
          betweenness_sources: int = SCALE_BETWEENNESS_SOURCES,
          community_method: str = SCALE_COMMUNITY_METHOD,
          max_memory: str | None = None) -> list[dict[str, Any]]:
    """One row per size: refused by limits' estimate (before anything is built), or
    measured by scale_one in a fresh process (so each size's peak memory is its own)."""
    from . import limits

    limit, source = limits.memory_limit(max_memory)
    env = dict(os.environ)
    if max_memory is not None:
        env[limits.ENV_MAX_MEMORY] = str(limits.parse_size(max_memory))
    rows = []
    for n, k in zip(sizes, steps):
        sc = national_scenario(n, max(k, CAMPAIGN_WEEKS), ward_size)
        est = limits.estimate_memory(sc)
        row: dict[str, Any] = {"n": n, "steps": k, "estimate": est.total,
                               "estimate_text": est.describe(), "limit": limit,
                               "limit_source": source, "load_before": _load()}
        if est.total > limit:
            row["status"] = (f"refused: needs {est.total / 1e9:.1f} GB (estimate), limit "
                             f"{limit / 1e9:.1f} GB ({source})")
            wards = sc.population.wards  # a list: national_scenario names every ward
            row["wards"] = len(wards) if isinstance(wards, list) else wards
            print(f"n={n:,}: {row['status']}", flush=True)
        else:
            print(f"n={n:,}: estimate {est.describe()}; measuring in a fresh process",
                  flush=True)
            params = {"n": n, "steps": k, "ward_size": ward_size, "scores": list(scores),
                      "betweenness_sources": betweenness_sources,
                      "community_method": community_method}
            row |= _scale_child(params, env)
        row["load_after"] = _load()
        rows.append(row)
    return rows


def _gb(x: float | None) -> str:
    return "–" if x is None else f"{x / 1e9:.2f}"


def scale_markdown(rows: list[dict[str, Any]], info: dict, command: str) -> str:
    lines = ["# nudgesim at national scale", "",
             "The shipped borough's campaign (leaflet, bin-day texts, ward feedback cards, "
             "ambassadors, a community group, caddy delivery) on synthetic households in "
             "wards of ~8,000 with ward-clustered ties (8 in-ward, 2 cross-ward on average), "
             "each size in a fresh process. Peak = the process's peak resident memory "
             "(VmHWM), interpreter and imports included, over the stages a run goes "
             "through (a `score:` stage, timed on its own, has its peak in the stages "
             "table). × floor = median step ÷ median memory floor, the floor measured in "
             "the same process straight after every step (a streaming read of the graph's "
             "CSR arrays and one float32 per resident, caches flushed first); paired = the "
             "median (and range) over the steps of each step ÷ the floor read after it, "
             "which a host's drift moves least. Load = the "
             "1/5/15-minute load averages before and after the size ran (2 cores here: "
             "other work on the machine slows every figure).", "",
             "Issue 16's targets at 2.5×10^7: graph ≤ 30 s, 52 steps ≤ 60 s, peak ≤ 8 GB; "
             "at 10^7 a step ≤ 3× the floor.", "",
             "| households | wards | tie ends | estimate GB | status | set-up s | graph s | "
             "steps | median step | steps total s | × floor | paired | peak GB | "
             "load before → after |",
             "|---:|---:|---:|---:|---|---:|---:|---:|---:|---:|---:|---|---:|---|"]
    for r in rows:
        if r["status"] != "measured":
            wards = f"{r['wards']:,}" if r.get("wards") else "–"
            lines.append(f"| {r['n']:,} | {wards} | – | {_gb(r['estimate'])} | "
                         f"{r['status']} | – | – | {r['steps']} | – | – | – | – | – | "
                         f"{r['load_before']} → {r['load_after']} |")
            continue
        st = {s["stage"]: s for s in r["stages"]}
        setup = sum(s["seconds"] for s in r["stages"]
                    if s["stage"] in ("scenario", "traits and wards", "graph",
                                      "engine set-up"))
        xf = "–" if r["x_floor"] is None else f"{r['x_floor']:.2f}"
        pf = r.get("x_floor_paired")
        pf = "–" if pf is None else f"{pf['median']:.2f} ({pf['min']:.2f}–{pf['max']:.2f})"
        lines.append(
            f"| {r['n']:,} | {r['wards']:,} | {r['tie_ends']:,} | {_gb(r['estimate'])} | "
            f"measured | {setup:.1f} | {st['graph']['seconds']:.1f} | {r['steps']} | "
            f"{_fmt(r['step_median'], 's')} | {sum(r['step_seconds']):.1f} | {xf} | {pf} | "
            f"{_gb(r['peak'])} | {r['load_before']} → {r['load_after']} |")
    measured = [r for r in rows if r["status"] == "measured"]
    if measured:
        names = list(dict.fromkeys(s["stage"] for r in measured for s in r["stages"]))
        lines += ["", "## Stages: seconds (peak GB during the stage)", "",
                  "Set-up stages as a run does them (`initial adopters` is also inside "
                  "`engine set-up`: timed alone here). The `score:` rows time each targeting "
                  "score on its own; the campaign itself uses degree only.", "",
                  "| stage | " + " | ".join(f"{r['n']:,}" for r in measured) + " |",
                  "|---|" + "---:|" * len(measured)]
        for name in names:
            cells = []
            for r in measured:
                s = next((s for s in r["stages"] if s["stage"] == name), None)
                cells.append("–" if s is None else f"{s['seconds']:.2f} ({_gb(s['peak'])})")
            lines.append(f"| {name} | " + " | ".join(cells) + " |")
        lines += ["", "## Memory and the floor", "",
                  "| households | graph build: bytes / tie end | engine state: bytes / "
                  "resident | bytes / tie end | floor | step mean / max | backend |",
                  "|---:|---:|---:|---:|---:|---:|---|"]
        for r in measured:
            fl = ("–" if r["floor_seconds"] is None else
                  f"{_fmt(r['floor_seconds'], 's')} ({r['floor_threads']})")
            lines.append(f"| {r['n']:,} | {r['build_bytes_per_tie_end']:.0f} | "
                         f"{r['state_bytes_per_resident']:.0f} | "
                         f"{r['state_bytes_per_tie_end']:.1f} | {fl} | "
                         f"{_fmt(r['step_mean'], 's')} / {_fmt(r['step_max'], 's')} | "
                         f"{r['backend']} |")
        skipped = [(r["n"], k, v) for r in measured for k, v in r["skipped"].items()]
        if skipped:
            lines += [""] + [f"- {n:,}: score {k} {v}" for n, k, v in skipped]
    lines += ["", "## Machine", ""] + [f"- {k}: {v}" for k, v in info.items()]
    lines += ["", f"Reproduce: `{command}`", ""]
    return "\n".join(lines)


def _size(text: str, option: str) -> int:
    try:
        value = float(text)
    except ValueError:
        raise _usage(f"{option}: {text!r} is not a number; allowed: e.g. 1e6 or 2500000") from None
    if not np.isfinite(value) or value < 100 or value != int(value):
        raise _usage(f"{option}: {text!r}; allowed: whole numbers >= 100")
    return int(value)


def _warm_for_scale(run_steps: list[int]) -> str:
    """Compile the kernels, where numba's cache is cold for runs of these lengths, before
    any size runs. Otherwise the first size would run on numpy (a run that short does not
    wait for a compile) and the next would time the compiling as its engine set-up."""
    from .engine import warm_up

    cold = sorted({k for k in run_steps if not kernels.cache_is_warm(k)})
    if not kernels.AVAILABLE or not cold:
        return ("numba's cache warm" if kernels.AVAILABLE else
                "none (numba not installed, or NUDGESIM_NUMBA=0)")
    print("compiling the kernels first (numba's cache is cold)", flush=True)
    seconds = sum(warm_up(k) for k in cold)
    return f"compiled first, {seconds:.1f} s (numba's cache was cold)"


def scale_main(args: argparse.Namespace, argv: list[str] | None) -> int:
    sizes = [_size(x.strip(), "--scale-sizes") for x in args.scale_sizes.split(",") if x.strip()]
    if not sizes:
        raise _usage("--scale-sizes: empty; allowed: comma-separated sizes such as 1e6,1e7")
    try:
        steps = [int(x) for x in args.scale_steps.split(",") if x.strip()]
    except ValueError:
        raise _usage(f"--scale-steps: {args.scale_steps!r}; allowed: one integer >= 1 or "
                     "one per size") from None
    if len(steps) == 1:
        steps *= len(sizes)
    if len(steps) != len(sizes) or min(steps) < 1:
        raise _usage(f"--scale-steps: {args.scale_steps!r}; allowed: one integer >= 1 or "
                     f"one per size ({len(sizes)})")
    scores = tuple(x.strip() for x in args.scale_scores.split(",") if x.strip())
    bad = [x for x in scores if x not in SCALE_SCORES]
    if bad:
        raise _usage(f"--scale-scores: unknown {bad}; allowed: {', '.join(SCALE_SCORES)}")
    from .scores import COMMUNITY_METHODS

    if args.scale_community_method not in COMMUNITY_METHODS:
        raise _usage(f"--scale-community-method: {args.scale_community_method!r}; allowed: "
                     f"{', '.join(COMMUNITY_METHODS)}")
    if args.scale_ward_size < 2:
        raise _usage(f"--scale-ward-size: {args.scale_ward_size}; allowed: an integer >= 2")
    if args.max_memory is not None:
        from . import limits

        limits.parse_size(args.max_memory)  # a bad size is named before anything runs
    compiled = _warm_for_scale([max(k, CAMPAIGN_WEEKS) for k in steps])
    rows = scale(sizes, steps, args.scale_ward_size, scores,
                 community_method=args.scale_community_method, max_memory=args.max_memory)
    info = machine() | {"kernels_before_the_sizes": compiled}
    command = ("nudgesim bench " + " ".join(argv if argv is not None else [])).strip()
    text = scale_markdown(rows, info, command)
    out = Path(args.out)
    write_atomic(out / "scale.md", text)
    write_atomic(out / "scale.json", json.dumps({"rows": rows, "machine": info,
                                                 "command": command}, indent=2,
                                                default=str) + "\n")
    print(text)
    return 0


def main(argv: list[str] | None = None) -> int:
    return bench_main(argv)
