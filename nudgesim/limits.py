"""Size before allocation: estimate the memory a scenario needs from its sizes alone.

A run that cannot fit should be refused in a second with the estimate and the limit, not
after minutes of swapping or a numpy MemoryError. The estimate reads only the scenario (and
the sizes of its input files), never builds anything.

The coefficients are measured peaks of ``simulate`` in a fresh process (VmHWM above the
imported baseline, 20 steps with a weekly reminder; ``experiments/benchmark.py`` prints the
engine's steady state beside them):

- On the numpy engine (small runs), 200 B per resident and 14 B per tie end bound the peaks of Watts–Strogatz (k = 2…40),
  Erdős–Rényi, Barabási–Albert, ward-clustered and complete graphs from 10^5 to 2·10^6
  residents and up to 2.5·10^7 tie ends (measured 2026-12-02 at commit 5d04710, on the
  graph build of network._csr_from_keys): the largest need 193 B per resident (k = 2,
  10^6 residents: 221 MB) and 12–13 B per tie end (complete, 5,000 residents: 301 MB;
  k = 40: 349 MB at 5·10^5). The graph build no longer sets the tie cost: it holds ~10 B
  per tie end (its edge arrays or its output, 4 B, plus one int64 key per tie, 4 B, and
  two int64 per resident), measured 9.9 B for the national scenario at 2.5·10^7
  households (peak 3.7 GB with the traits, against 41 B and 11.5 GB for the scipy build
  it replaced); the Watts–Strogatz and Barabási–Albert builders, with int64 edge arrays,
  peak at 16–22 B. The engine's set-up and steps peak at ~12.5 B per tie end and, at up to 10^6
  residents, ~190 B per resident, which the build's 41 B per tie end used to hide.
- On the compiled engine (the runs `kernels.backend_for` gives it), 150 MB + 75 B per
  resident (fitted to a 10^6-resident run, 221 MB, and the national scenario's 2.5·10^7
  households over 52 weeks, 5.32 GB, each with 14 B per tie end), or 400 MB + 75 B per
  resident when numba must first compile the kernels (a cold cache): 6.6 GB with the
  margin for the national run that peaked at 5.44 GB (6.3 GB when the cache is warm).
- A graph read from a file peaks at ~29× the file's size, edge list or GraphML alike (5·10^5
  edges: a 5.9 MB edge list read by pyarrow into arrays, 168 MB; the same graph as a
  23.8 MB GraphML file read through networkx, 687 MB); a residents CSV at ~10×.
- Community targeting adds its method's own memory above the graph (scores.community_memory):
  igraph's Leiden ~100 B per tie end (its copy of the graph: 9.7 GB at 10^8 tie ends),
  fast Louvain ~100 B per resident (its work arrays and first graph of communities).
- Records grow with steps × wards (the by-ward table and its temporaries, ~100 B a cell)
  plus ~1 kB a step for the step log.

Each coefficient is rounded up and the total gets a 15% margin, so the check refuses only
what clearly cannot fit; it is an estimate, and ``--max-memory`` overrides the limit.
"""

from __future__ import annotations

import argparse
import math
import os
import re
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

from .errors import ResourceError, UsageError
from .kernels import backend_for, cache_is_warm
from .network import GraphFile
from .registry import GRAPHS

if TYPE_CHECKING:
    from .scenario import Scenario

PER_RESIDENT = 200
#: The compiled engine: a fixed part and a part per resident, fitted to two measured
#: whole-run peaks above the imports (2026-12-02): Watts-Strogatz k = 2 at 10^6 residents,
#: 221 MB, and the national scenario at 2.5e7 households over 52 weeks, 5.32 GB; minus
#: 14 B per tie end, that is 124 MB + 69 B per resident (a Dask worker at 1e7 fits it:
#: 2.26 GB measured). Rounded up to 150 MB and 75 B.
PER_RESIDENT_COMPILED = 75
KERNELS_LOADED = 150_000_000
#: numba compiling the kernels on a cold cache peaked ~300 MB above the imports, against
#: ~56 MB to load them from the cache (measured 2026-12-02): 250 MB more.
KERNELS_COMPILING = 400_000_000
PER_TIE_END = 14
PER_WARD_STEP = 100
PER_STEP = 1_000
GRAPH_FILE_FACTOR = 32
CSV_FACTOR = 12
MARGIN = 1.15
ENV_MAX_MEMORY = "NUDGESIM_MAX_MEMORY"


@dataclass(frozen=True)
class MemoryEstimate:
    """Estimated peak bytes of one run, by part (residents, ties, records, input files)."""

    parts: dict[str, int]
    residents: int
    tie_ends: int

    @property
    def total(self) -> int:
        return math.ceil(MARGIN * sum(self.parts.values()))

    def describe(self) -> str:
        shown = ", ".join(f"{k} {format_bytes(v)}" for k, v in self.parts.items() if v)
        return f"~{format_bytes(self.total)} ({shown}; +{round(100 * (MARGIN - 1))}% margin)"


def format_bytes(n: float) -> str:
    for unit, size in (("TB", 1e12), ("GB", 1e9), ("MB", 1e6), ("kB", 1e3)):
        if n >= size:
            return f"{n / size:.1f} {unit}"
    return f"{int(n)} B"


_SIZE = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*([kmgt]?)(i?b?)\s*$", re.IGNORECASE)


def parse_size(text: str | int | float, option: str = "--max-memory") -> int:
    """'8G', '500 MB', '1.5GiB' or a plain number of bytes -> bytes (k/M/G/T are powers of
    1000, with an 'i' powers of 1024)."""
    if isinstance(text, (int, float)) and not isinstance(text, bool):
        value, unit, binary = float(text), "", ""
    else:
        m = _SIZE.match(str(text))
        if not m:
            raise UsageError(
                f"{option}: {text!r} is not a size; allowed: a number of bytes or one with "
                "a unit such as 500M, 8G, 1.5GiB"
            )
        value, unit, binary = float(m.group(1)), m.group(2).lower(), m.group(3).lower()
    base = 1024 if binary.startswith("i") else 1000
    size = value * base ** " kmgt".index(unit or " ")
    if not math.isfinite(size) or size <= 0:
        raise UsageError(f"{option}: {text!r} must be a positive size")
    return int(size)


def available_memory() -> int:
    """Bytes this process can still take: the kernel's MemAvailable, capped by a cgroup
    (container) limit when there is one. Linux; elsewhere the physical memory."""
    avail = None
    try:
        with open("/proc/meminfo") as fh:
            for line in fh:
                if line.startswith("MemAvailable:"):
                    avail = int(line.split()[1]) * 1024
                    break
    except OSError:
        pass
    if avail is None:
        try:
            avail = os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES")
        except (ValueError, OSError, AttributeError):
            return 2**63 - 1
    cgroup = _cgroup_room()
    return min(avail, cgroup) if cgroup is not None else avail


def _cgroup_room() -> int | None:
    """memory.max - memory.current of this process's cgroup (v2), if limited."""
    try:
        rel = Path("/proc/self/cgroup").read_text().strip().splitlines()[-1].split(":", 2)[2]
        base = Path("/sys/fs/cgroup") / rel.lstrip("/")
        limit = (base / "memory.max").read_text().strip()
        if limit == "max":
            return None
        return max(0, int(limit) - int((base / "memory.current").read_text()))
    except (OSError, IndexError, ValueError):
        return None


def _ward_sizes(scenario: Scenario, n: int) -> list[int]:
    wards = scenario.population.wards
    sizes = scenario.population.ward_sizes()
    if sizes:
        return sizes
    count = len(wards) if isinstance(wards, list) else int(wards)
    count = max(1, min(count, n)) if n else max(1, count)
    return [n // count + (i < n % count) for i in range(count)]


def _residents(scenario: Scenario) -> int | None:
    pop = scenario.population
    if pop.size is not None:
        return pop.size
    sizes = pop.ward_sizes()
    return sum(sizes) if sizes else None


def _file_size(scenario: Scenario, path: str) -> int:
    try:
        return scenario.resolve(path).stat().st_size
    except OSError:
        return 0  # a missing file is reported by the reader, with its name


def expected_tie_ends(scenario: Scenario, n: int) -> int:
    """Tie ends (twice the undirected ties) the scenario's generator is expected to make:
    each graph kind says so itself (network.GraphKind.expected_tie_ends); a graph file is
    costed by its size instead."""
    spec = scenario.network
    return GRAPHS[spec.kind].expected_tie_ends(spec, n, _ward_sizes(scenario, n))


def estimate_memory(
    scenario: Scenario, n: int | None = None, tie_ends: int | None = None
) -> MemoryEstimate:
    """Peak memory of one run of `scenario`, from its sizes. `n`/`tie_ends` come from a
    graph the caller already holds (then no graph file is costed)."""
    parts: dict[str, int] = {}
    spec = scenario.network
    graph_file = spec.path if n is None and isinstance(spec, GraphFile) else None
    if graph_file is not None:
        parts["graph file"] = GRAPH_FILE_FACTOR * _file_size(scenario, graph_file)
    if scenario.population.csv:
        parts["residents csv"] = CSV_FACTOR * _file_size(scenario, scenario.population.csv)
    if n is None:
        n = _residents(scenario)
    if n is None:  # size comes from a file: bounded by that file's own cost above
        n = 0
    if tie_ends is None:
        tie_ends = 0 if graph_file is not None else expected_tie_ends(scenario, n)
    wards = len(_ward_sizes(scenario, n)) if n else 1
    compiled = bool(n) and backend_for(n, scenario.steps).compiled
    if compiled:
        parts["kernels"] = (KERNELS_LOADED if cache_is_warm(scenario.steps)
                            else KERNELS_COMPILING)
    parts["residents"] = (PER_RESIDENT_COMPILED if compiled else PER_RESIDENT) * n
    parts["ties"] = PER_TIE_END * tie_ends
    parts["communities"] = _community_bytes(scenario, n, tie_ends)
    parts["records"] = (scenario.steps + 1) * (PER_STEP + PER_WARD_STEP * wards)
    return MemoryEstimate(parts=parts, residents=n, tie_ends=tie_ends)


def _community_bytes(scenario: Scenario, n: int, tie_ends: int) -> int:
    """The largest community method any nudge targets by (each run computes it once)."""
    from .scores import community_memory

    methods = {nudge.targeting.community_method for nudge in _community_nudges(scenario)}
    return max((community_memory(m, n, tie_ends) for m in methods), default=0)


def _community_nudges(scenario: Scenario) -> list:
    """The scenario's nudges that target by community (each needs a partition)."""
    return [nudge for nudge in scenario.nudges if nudge.targeting.strategy == "community"]


def memory_limit(max_memory: str | int | None = None) -> tuple[int, str]:
    """(bytes, where the number comes from): --max-memory, else NUDGESIM_MAX_MEMORY, else
    what the machine has available now."""
    if max_memory is not None:
        return parse_size(max_memory), "--max-memory"
    env = os.environ.get(ENV_MAX_MEMORY)
    if env:
        return parse_size(env, ENV_MAX_MEMORY), f"--max-memory or {ENV_MAX_MEMORY}"
    return available_memory(), "available memory"


def check_memory(
    scenario: Scenario,
    max_memory: str | int | None = None,
    *,
    n: int | None = None,
    tie_ends: int | None = None,
    copies: int = 1,
) -> MemoryEstimate:
    """Refuse (ResourceError, exit 2) a run whose estimate exceeds the limit; `copies` runs
    at once (a sweep's workers) each need their own."""
    est = estimate_memory(scenario, n, tie_ends)
    limit, source = memory_limit(max_memory)
    need = est.total * max(1, copies)
    if need > limit:
        each = f" x {copies} workers" if copies > 1 else ""
        raise ResourceError(
            f"memory: {scenario.name!r} needs {est.describe()}{each}, more than the "
            f"{format_bytes(limit)} limit ({source}); make the population or network smaller, "
            f"{_leiden_hint(scenario, est, limit // max(1, copies))}or raise the limit "
            f"with --max-memory (e.g. --max-memory {_suggest(need)})"
        )
    return est


def _leiden_hint(scenario: Scenario, est: MemoryEstimate, limit: int) -> str:
    """Where igraph's Leiden is what does not fit (the run would fit `limit` with fast
    Louvain instead), that advice; else nothing."""
    from .scores import community_memory, community_method

    leiden = [nudge.name for nudge in _community_nudges(scenario)
              if community_method(nudge.targeting.community_method, est.residents) == "leiden"]
    if not leiden:
        return ""
    fast = community_memory("fast_louvain", est.residents, est.tie_ends)
    swapped = MemoryEstimate(dict(est.parts, communities=fast), est.residents, est.tie_ends)
    if swapped.total > limit:
        return ""
    return (f"set targeting.community_method = 'fast_louvain' for {', '.join(leiden)} "
            f"(igraph's Leiden copies the graph; fast Louvain needs ~{format_bytes(fast)}), ")


def _suggest(need: int) -> str:
    return f"{math.ceil(need / 1e9)}G"


def add_memory_option(parser: argparse.ArgumentParser) -> None:
    """--max-memory for a command that runs simulations."""
    parser.add_argument(
        "--max-memory",
        metavar="SIZE",
        help="refuse runs estimated to need more than SIZE (e.g. 8G; default: the memory "
        f"available now, or {ENV_MAX_MEMORY})",
    )


def apply_memory_option(args: argparse.Namespace) -> None:
    """--max-memory reaches every run of the command, sweep workers included, through the
    environment variable check_memory reads (the CLI restores it when the command ends)."""
    if getattr(args, "max_memory", None) is not None:
        os.environ[ENV_MAX_MEMORY] = str(parse_size(args.max_memory))
