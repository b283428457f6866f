"""Experiments: a base scenario, levers and uncertainties, a design, replicates, a run store.

An experiment varies *paths into the scenario* (``"nudges[leaflet].reach"``,
``"network.mean_degree_in"``, ``"rule.adopt_norm"``). *Levers* are what the council
chooses, *uncertainties* what it cannot control (EMA workbench's split); both become
columns of one tidy table. Designs: full grid, Latin hypercube, Sobol (Saltelli) or Morris
samples. Replicate r of every design point uses the same seed (common random numbers), so
differences between points are not blurred by independent noise.

Every finished run is written atomically to ``<out>/runs/<run id>.parquet`` where the run id
is a hash of the fully resolved scenario (seed included), so re-running the same command
after a crash continues exactly where it stopped. The executor (serial, processes, Dask)
never changes the tables: each run carries its own seed and rows are sorted at the end.

This module never imports Mesa or solara.
"""

from __future__ import annotations

import copy
import dataclasses
import json
import math
import platform
import re
import subprocess
import sys
import time
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.dataset as ds
import pyarrow.fs as pafs

from . import limits
from .files import lock_folder, output_dir, safe_name, write_atomic, write_parquet_atomic
from .outcomes import OUTCOMES, check_outcomes, needs_counterfactual, regional_outcomes
from .parallel import EXECUTORS, RunOptions, default_workers
from .runs import Job, iter_jobs, parse_path, replicate_seed, run_id, set_path
from .scenario import CONTROL, Scenario, ScenarioError, control_character, load_toml_text

# the run pipeline's names, importable from here as before
__all__ = [
    "DESIGNS", "Experiment", "ExperimentResult", "Factor", "check_finite", "parse_path",
    "read_store", "replicate_seed", "run_id", "run_store", "set_path", "summarise",
]

DESIGNS = ("grid", "lhs", "sobol", "morris")
MORRIS_LEVELS = 4  # SALib's default grid of p = 4 levels (Morris 1991; Saltelli et al. 2008)
T95: dict[int, float] = {}  # cache of Student t quantiles by degrees of freedom
# assumption: a million runs is days of computing on a workstation and more rows than the
# tables handle comfortably; a bigger design is a typo (or needs several experiments)
MAX_RUNS = 1_000_000
MAX_DEPTH = 32  # nesting an experiment file may have; deeper is not a real experiment


# ---------------------------------------------------------------------------------------
# Checks on what an experiment file may hold
# ---------------------------------------------------------------------------------------


def _is_number(x: Any) -> bool:
    return isinstance(x, (int, float, np.integer, np.floating)) and not isinstance(
        x, (bool, np.bool_)
    )


def _key_path(where: str, key: Any) -> str:
    key = str(key)
    return f"{where}.{key}" if re.fullmatch(r"[A-Za-z_][A-Za-z0-9_]*", key) else f'{where}."{key}"'


def check_finite(value: Any, where: str) -> None:
    """Every float in `value` (nested tables and lists too) must be finite: NaN or infinity
    would run "successfully" and mean nothing. Nesting deeper than MAX_DEPTH is refused
    rather than recursed into."""
    stack = [(value, where, 0)]
    while stack:
        v, at, depth = stack.pop()
        if depth > MAX_DEPTH:
            at = at if len(at) <= 80 else at[:77] + "..."
            raise ScenarioError(f"{at}: nested more than {MAX_DEPTH} levels deep; not allowed")
        if isinstance(v, (float, np.floating)) and not math.isfinite(v):
            raise ScenarioError(f"{at}: {float(v)!r} is not allowed; give a finite number")
        if isinstance(v, Mapping):
            stack.extend((x, _key_path(at, k), depth + 1) for k, x in v.items())
        elif isinstance(v, (list, tuple)):
            stack.extend((x, f"{at}[{i}]", depth + 1) for i, x in enumerate(v))


def _count(value: Any, field_name: str, minimum: int) -> None:
    """An integer setting (replicates, samples, seed, levels); booleans are not integers."""
    if isinstance(value, np.generic):
        value = value.item()  # shown as 1.5, not np.float64(1.5)
    if not isinstance(value, (int, np.integer)) or isinstance(value, (bool, np.bool_)):
        raise ScenarioError(f"{field_name}: {value!r} is not allowed; give an integer >= {minimum}")
    if value < minimum:
        raise ScenarioError(f"{field_name}: {value} is not allowed; give an integer >= {minimum}")


# ---------------------------------------------------------------------------------------
# Factors: levers and uncertainties
# ---------------------------------------------------------------------------------------


def _cell(value: Any) -> Any:
    """How a value appears in a table cell: scalars as they are, tables as compact JSON."""
    if isinstance(value, (bool, int, float, str)) or value is None:
        return value
    return json.dumps(value, sort_keys=True, separators=(",", ":"))


@dataclass(frozen=True)
class Factor:
    """One varied path: a list of choices, or a range {low, high} (levels for grids)."""

    path: str
    role: str  # "lever" or "uncertainty"
    values: tuple[Any, ...] | None = None
    labels: tuple[str, ...] | None = None
    low: float | None = None
    high: float | None = None
    levels: int | None = None
    integer: bool = False

    @classmethod
    def parse(cls, path: str, spec: Any, role: str) -> Factor:
        parse_path(path)
        where = f'{role}s."{path}"'
        check_finite(spec, where)
        if isinstance(spec, (list, tuple)):
            if not spec:
                raise ScenarioError(f"{where}: empty list; give at least one value")
            return cls(path, role, values=tuple(spec))
        if isinstance(spec, Mapping):
            keys = set(spec)
            if "values" in keys:
                extra = keys - {"values", "labels"}
                if extra:
                    raise ScenarioError(
                        f"{where}: unknown key(s) {sorted(extra)}; allowed: values, labels"
                    )
                if not isinstance(spec["values"], (list, tuple)):
                    raise ScenarioError(f"{where}.values: {spec['values']!r}; give a list")
                values = list(spec["values"])
                labels = spec.get("labels")
                if not values:
                    raise ScenarioError(f"{where}.values: empty list")
                if labels is not None:
                    if not isinstance(labels, (list, tuple)):
                        raise ScenarioError(f"{where}.labels: {labels!r}; give a list")
                    labels = [str(x) for x in labels]
                    if len(labels) != len(values) or len(set(labels)) != len(labels):
                        raise ScenarioError(
                            f"{where}.labels: need {len(values)} distinct labels, got {labels}"
                        )
                return cls(
                    path, role, values=tuple(values), labels=tuple(labels) if labels else None
                )
            extra = keys - {"low", "high", "levels", "integer"}
            if extra or not {"low", "high"} <= keys:
                raise ScenarioError(
                    f"{where}: {dict(spec)!r} is not allowed; give a list of values, "
                    "{values = [...], labels = [...]}, or a range {low, high[, levels, integer]}"
                )
            low, high = spec["low"], spec["high"]
            if not all(_is_number(x) for x in (low, high)):
                raise ScenarioError(f"{where}: low and high must be numbers, got {low!r}, {high!r}")
            low, high = float(low), float(high)
            if not high > low:
                raise ScenarioError(f"{where}: high ({high}) must be greater than low ({low})")
            levels = spec.get("levels")
            if levels is not None:
                _count(levels, f"{where}.levels", 2)
                if levels > MAX_RUNS:
                    raise ScenarioError(
                        f"{where}.levels: {levels} is not allowed; at most {MAX_RUNS:,}"
                    )
                levels = int(levels)
            integer = spec.get("integer", False)
            if not isinstance(integer, bool):
                raise ScenarioError(f"{where}.integer: {integer!r} is not allowed; true or false")
            return cls(path, role, low=float(low), high=float(high), levels=levels, integer=integer)
        raise ScenarioError(
            f"{where}: {spec!r} is not allowed; give a list of values (grid / categorical) or a "
            "range {low = ..., high = ...} (samplers)"
        )

    @property
    def is_range(self) -> bool:
        return self.values is None

    def _bounds(self) -> tuple[float, float]:
        """(low, high) of a range factor; `parse` sets both whenever `values` is None."""
        assert self.low is not None and self.high is not None, "not a range factor"
        return self.low, self.high

    def grid_values(self) -> list[Any]:
        if not self.is_range:
            return list(self.values)  # type: ignore[arg-type]
        if self.levels is None:
            raise ScenarioError(
                f"{self.role}s.{self.path!r}: a range needs 'levels' in a grid design "
                "(e.g. {low = 0.1, high = 0.9, levels = 5}) or use a list of values"
            )
        low, high = self._bounds()
        xs = np.linspace(low, high, self.levels)
        return sorted({int(round(x)) for x in xs}) if self.integer else [float(x) for x in xs]

    def from_unit(self, u: float) -> Any:
        """Map u in [0, 1] to a value: linear on ranges, equal-width bins on choices."""
        u = min(max(float(u), 0.0), 1.0)
        if self.is_range:
            low, high = self._bounds()
            if self.integer:
                lo, hi = int(math.ceil(low)), int(math.floor(high))
                return int(min(lo + math.floor(u * (hi - lo + 1)), hi))
            return float(low + u * (high - low))
        k = len(self.values)  # type: ignore[arg-type]
        return self.values[min(int(u * k), k - 1)]  # type: ignore[index]

    def cell(self, value: Any) -> Any:
        """What the tidy table shows for a value of this factor."""
        if self.labels is not None:
            for v, label in zip(self.values, self.labels, strict=False):  # type: ignore[arg-type]
                if v == value:
                    return label
        return _cell(value)


# ---------------------------------------------------------------------------------------
# One run in the store
# ---------------------------------------------------------------------------------------


def _measure_name(fn: Callable | None) -> str | None:
    return None if fn is None else f"{fn.__module__}.{fn.__qualname__}"


def _run_frame(out: dict[str, Any]) -> pd.DataFrame:
    """The stored form of one run: one row, or one row per step when per-step columns asked."""
    value = out["value"] or {}
    summary = {k: _outcome_value(v) for k, v in value.get("summary", {}).items()}
    steps = value.get("steps", {})
    if steps:
        df = pd.DataFrame(steps)
        df["step"] = df["step"].astype("Int64")
        for k, v in summary.items():
            df[k] = v
    else:
        df = pd.DataFrame([summary]) if summary else pd.DataFrame(index=[0])
    df["status"] = out["status"]
    df["error"] = out["error"]
    df["elapsed_s"] = float(out["elapsed_s"])
    return df


def _outcome_value(v: Any) -> Any:
    """Numbers as float64 (None → NaN) so every run's columns share one type."""
    if v is None:
        return float("nan")
    if isinstance(v, (bool, int, float, np.integer, np.floating)):
        return float(v)
    return str(v)


# ---------------------------------------------------------------------------------------
# The experiment
# ---------------------------------------------------------------------------------------


@dataclass
class ExperimentResult:
    """What a sweep produced: the tidy runs table, per-point summary and the manifest."""

    out: Path
    runs: pd.DataFrame
    summary: pd.DataFrame
    manifest: dict[str, Any]
    unit_design: np.ndarray | None = None  # design in [0, 1]^d (samplers), rows = points


# settings an experiment file may give besides `name` and `scenario`
FILE_SETTINGS = (
    "levers",
    "uncertainties",
    "design",
    "samples",
    "replicates",
    "seed",
    "outcomes",
    "per_step",
)


@dataclass
class Experiment:
    """A base scenario, factors, a design and replicates. See the module docstring."""

    scenario: Scenario
    levers: dict[str, Any] = field(default_factory=dict)
    uncertainties: dict[str, Any] = field(default_factory=dict)
    design: str = "grid"
    samples: int | None = None
    replicates: int = 1
    seed: int | None = None
    outcomes: list[str] | None = None
    per_step: list[str] = field(default_factory=list)
    measure: Callable[[Any], dict[str, float]] | None = None
    name: str | None = None

    def __post_init__(self) -> None:
        if isinstance(self.scenario, (str, Path)):
            self.scenario = Scenario.from_toml(self.scenario)
        if not isinstance(self.scenario, Scenario):
            raise ScenarioError(
                f"scenario: expected a Scenario or a TOML path, got {type(self.scenario).__name__}"
            )
        if self.design not in DESIGNS:
            raise ScenarioError(
                f"design: {self.design!r} is not allowed; allowed: {', '.join(DESIGNS)}"
            )
        _count(self.replicates, "replicates", 1)
        if self.samples is not None:
            _count(self.samples, "samples", 1)
        if self.seed is None:
            self.seed = self.scenario.seed
        _count(self.seed, "seed", 0)
        self.replicates, self.seed = int(self.replicates), int(self.seed)
        self.samples = None if self.samples is None else int(self.samples)
        # the name becomes the results folder (results/<name>): one safe folder name
        self.name = safe_name(self.scenario.name if self.name is None else self.name)
        self.levers = dict(self.levers or {})
        self.uncertainties = dict(self.uncertainties or {})
        both = set(self.levers) & set(self.uncertainties)
        if both:
            raise ScenarioError(
                f"{sorted(both)}: a path can be a lever or an uncertainty, not both"
            )
        self.factors = [Factor.parse(p, s, "lever") for p, s in self.levers.items()] + [
            Factor.parse(p, s, "uncertainty") for p, s in self.uncertainties.items()
        ]
        reserved = {"point", "replicate", "seed", "run_id", "step", "status", "error"}
        clash = reserved & {f.path for f in self.factors}
        if clash:
            raise ScenarioError(f"{sorted(clash)}: these names are reserved for table columns")
        self.per_step = list(self.per_step or [])
        _check_per_step(self.per_step)
        if self.outcomes is not None and self.measure is None:
            _check_outcomes(self.outcomes)
            regional = regional_outcomes(self.outcomes)
            if regional and self.scenario.population.ward_regions() is None:
                raise ScenarioError(
                    f"outcomes: {regional} need wards with regions, and the scenario's have "
                    "none; allowed: give every ward a region (population.wards[].region or "
                    "a ward table's region column), or name other outcomes"
                )
        if self.design in ("lhs", "sobol", "morris") and not self.factors:
            raise ScenarioError(f"design {self.design!r} needs at least one lever or uncertainty")
        if self.design in ("lhs", "sobol", "morris") and self.samples is None:
            raise ScenarioError(f"samples: design {self.design!r} needs a number of samples")
        # samples is set here (checked just above); the test only tells mypy so
        if self.design == "sobol" and self.samples is not None and self.samples & (self.samples - 1):
            lo = 1 << (self.samples.bit_length() - 1)
            raise ScenarioError(
                f"samples: {self.samples} is not a power of 2, which Sobol sequences need "
                f"(Saltelli sampling in SALib); try {lo} or {2 * lo}"
            )
        points = self._point_count()
        if points * self.replicates > MAX_RUNS:
            raise ScenarioError(
                f"design: {points:,} points x {self.replicates:,} replicates = "
                f"{points * self.replicates:,} runs; allowed: at most {MAX_RUNS:,} per experiment"
            )
        self._points: list[dict[str, Any]] | None = None
        self._unit: np.ndarray | None = None
        self._scenarios: list[Scenario] | None = None

    def _point_count(self) -> int:
        """How many design points the design will have, known before any is built."""
        d = len(self.factors)
        if self.design == "grid":
            sizes = [
                len(f.values) if not f.is_range else (f.levels or 1)  # type: ignore[arg-type]
                for f in self.factors
            ]
            return math.prod(sizes)
        per = {"lhs": 1, "sobol": d + 2, "morris": d + 1}[self.design]
        return int(self.samples) * per  # type: ignore[arg-type]

    # -- construction from TOML ------------------------------------------------------
    @classmethod
    def from_toml(cls, path: str | Path, **overrides: Any) -> Experiment:
        path = Path(path)
        try:
            data = load_toml_text(path.read_text(encoding="utf-8"))
        except FileNotFoundError:
            raise ScenarioError(f"experiment file not found: {path}") from None
        except ScenarioError as err:
            raise ScenarioError(f"{path}: {err}") from None
        except UnicodeDecodeError:
            raise ScenarioError(f"{path}: not a UTF-8 text file; give a TOML file") from None
        except OSError as err:
            raise ScenarioError(
                f"{path}: cannot read the experiment file: {err.strerror}"
            ) from None
        try:
            return cls.from_dict(
                data, base_dir=path.resolve().parent, default_name=path.stem, **overrides
            )
        except ScenarioError as err:
            raise ScenarioError(f"{path}: {err}") from None

    @classmethod
    def from_dict(
        cls,
        data: dict[str, Any],
        base_dir: Path | None = None,
        default_name: str | None = None,
        **overrides: Any,
    ) -> Experiment:
        base_dir = Path(base_dir or Path.cwd())
        if not isinstance(data, Mapping):
            raise ScenarioError(f"experiment: expected a table, got {type(data).__name__}")
        allowed = {"name", "scenario", *FILE_SETTINGS}
        unknown = set(data) - allowed
        if unknown:
            raise ScenarioError(
                f"unknown field(s) {sorted(map(str, unknown))}; "
                f"allowed: {', '.join(sorted(allowed))}"
            )
        for key in sorted(data):
            check_finite(data[key], str(key))
            if key != "scenario" or isinstance(data[key], str):  # a [scenario] table checks its own
                bad = control_character(data[key], CONTROL, str(key))
                if bad is not None:
                    raise ScenarioError(
                        f"{bad[0]}: control character {bad[1]!r} is not allowed; "
                        "allowed: printable text"
                    )
        if "name" in data and not isinstance(data["name"], str):
            raise ScenarioError(f"name: {data['name']!r} is not allowed; give a text name")
        for key in ("outcomes", "per_step"):
            if key in data and not (
                isinstance(data[key], list) and all(isinstance(x, str) for x in data[key])
            ):
                raise ScenarioError(f"{key}: {data[key]!r} is not allowed; give a list of names")
        if "design" in data and not isinstance(data["design"], str):
            raise ScenarioError(
                f"design: {data['design']!r} is not allowed; allowed: {', '.join(DESIGNS)}"
            )
        spec = data.get("scenario")
        if isinstance(spec, str):
            scenario = Scenario.from_toml(base_dir / spec)
        elif isinstance(spec, dict):
            scenario = Scenario.from_dict(spec, base_dir)
        else:
            raise ScenarioError(
                "scenario: give a scenario file path (relative to the experiment "
                "file) or a [scenario] table"
            )
        for key in ("levers", "uncertainties"):
            if key in data and not isinstance(data[key], dict):
                raise ScenarioError(f"{key}: must be a table of path = values")
        kwargs = {k: data[k] for k in FILE_SETTINGS if k in data}
        kwargs["name"] = data.get("name", default_name and safe_name(default_name, "file name"))
        kwargs.update({k: v for k, v in overrides.items() if v is not None})
        return cls(scenario=scenario, **kwargs)

    def replace(self, **changes: Any) -> Experiment:
        """A copy with some settings changed (design, samples, replicates, seed...)."""
        return dataclasses.replace(self, **changes)

    # -- the design ------------------------------------------------------------------
    def problem(self) -> dict[str, Any]:
        """SALib problem over the unit cube: each factor is mapped from [0, 1] by Factor.from_unit."""
        return {
            "num_vars": len(self.factors),
            "names": [f.path for f in self.factors],
            "bounds": [[0.0, 1.0]] * len(self.factors),
        }

    def points(self) -> list[dict[str, Any]]:
        """Design points as {path: value} in design order (cached)."""
        if self._points is not None:
            return self._points
        fs = self.factors
        if self.design == "grid":
            import itertools

            grids = [f.grid_values() for f in fs]
            pts = [
                dict(zip([f.path for f in fs], combo, strict=False))
                for combo in itertools.product(*grids)
            ]
            unit = None
        else:
            if self.design == "lhs":
                from scipy.stats import qmc

                unit = qmc.LatinHypercube(d=len(fs), rng=np.random.default_rng(self.seed)).random(
                    self.samples
                )
            elif self.design == "sobol":
                from SALib.sample import sobol

                unit = sobol.sample(
                    self.problem(), self.samples, calc_second_order=False, seed=self.seed
                )
            else:
                from SALib.sample import morris

                unit = morris.sample(
                    self.problem(), self.samples, num_levels=MORRIS_LEVELS, seed=self.seed
                )
            pts = [{f.path: f.from_unit(u) for f, u in zip(fs, row, strict=False)} for row in unit]
        self._points, self._unit = pts, unit
        return pts

    @property
    def unit_design(self) -> np.ndarray | None:
        self.points()
        return self._unit

    def design_table(self) -> pd.DataFrame:
        """One row per design point with every factor as a column (as shown in the tables)."""
        rows = [
            {"point": i, **{f.path: f.cell(p[f.path]) for f in self.factors}}
            for i, p in enumerate(self.points())
        ]
        df = pd.DataFrame(rows) if rows else pd.DataFrame({"point": []})
        return df

    def scenarios(self) -> list[Scenario]:
        """Every design point as a validated Scenario; a bad path or value fails here, before
        any run starts, with a message naming the point and the factor values."""
        if self._scenarios is not None:
            return self._scenarios
        base = self.scenario.to_dict()
        out = []
        for i, p in enumerate(self.points()):
            data = copy.deepcopy(base)
            for path, value in p.items():
                set_path(data, path, value)
            try:
                out.append(Scenario.from_dict(data, self.scenario.base_dir))
            except ScenarioError as err:
                shown = ", ".join(f"{k} = {_cell(v)!r}" for k, v in p.items())
                raise ScenarioError(f"design point {i} ({shown}): {err}") from None
        self._scenarios = out
        return out

    def seeds(self) -> list[int]:
        return [replicate_seed(self.seed, r) for r in range(self.replicates)]  # type: ignore[arg-type]

    def tasks(self) -> list[dict[str, Any]]:
        """One task per (point, replicate), with its run id."""
        extra: dict[str, Any] = {"per_step": self.per_step, "measure": _measure_name(self.measure)}
        twin = needs_counterfactual(self.outcomes or ())
        if twin:  # only then: the run ids of every other experiment stay as they were
            extra["counterfactual"] = True
        out = []
        for i, sc in enumerate(self.scenarios()):
            base = sc.to_dict()
            uses_files = bool(sc.named_files())
            for r, seed in enumerate(self.seeds()):
                d = base | {"seed": seed}
                rid = run_id(d, extra | ({"base_dir": str(sc.base_dir)} if uses_files else {}))
                out.append(
                    {
                        "point": i,
                        "replicate": r,
                        "seed": seed,
                        "run_id": rid,
                        "scenario": d,
                        "base_dir": str(sc.base_dir),
                        "per_step": self.per_step,
                        "measure": self.measure,
                        "counterfactual": twin,
                    }
                )
        return out

    # -- running ---------------------------------------------------------------------
    def run(
        self,
        out: str | Path | None = None,
        executor: str = "processes",
        workers: int | None = None,
        scheduler: str | None = None,
        progress: bool | None = None,
        retry_errors: bool = False,
        wait: bool = False,
        dask_timeout: float | None = None,
    ) -> ExperimentResult:
        """Run every (point, replicate) not yet in the store, then write the tables.

        out: results folder (default results/<name>). progress: tqdm bar on stderr
        (None = only on a terminal). retry_errors: run again those that raised before.
        The folder is locked for the whole sweep (files.lock_folder): a second sweep into
        it is a UsageError naming the holder's pid, or with `wait` waits its turn.
        dask_timeout: seconds a Dask scheduler may take to answer, and a cluster may stay
        without workers (parallel.resolve_dask_timeout).
        """
        if scheduler is not None:
            executor = "dask"
        if executor not in EXECUTORS:
            raise ScenarioError(
                f"executor: {executor!r} is not allowed; allowed: {', '.join(EXECUTORS)}"
            )
        _check_per_step(self.per_step)
        tasks = self.tasks()  # validates every design point before anything is written
        if scheduler is None:  # workers here share this machine's memory
            copies = 1 if executor == "serial" else min(len(tasks), workers or default_workers())
            self.check_memory(copies)
        out = output_dir(self.name, out)
        with lock_folder(out, wait=wait, on_wait=_say_waiting(out)):
            return self._run_locked(
                tasks, out, executor, workers, scheduler, progress, retry_errors, dask_timeout
            )

    def check_memory(self, copies: int = 1) -> None:
        """Refuse (ResourceError) a sweep whose largest run, once per concurrent worker,
        does not fit in memory (limits.check_memory), before any worker starts."""
        sizes = {limits.estimate_memory(sc).total: sc for sc in self.scenarios()}
        if sizes:
            limits.check_memory(sizes[max(sizes)], copies=copies)

    def _run_locked(
        self,
        tasks: list[dict[str, Any]],
        out: Path,
        executor: str,
        workers: int | None,
        scheduler: str | None,
        progress: bool | None,
        retry_errors: bool,
        dask_timeout: float | None = None,
    ) -> ExperimentResult:
        """The sweep proper; only ever called while holding the folder's lock, so the
        temporaries it deletes cannot belong to another live sweep."""
        store = out / "runs"
        store.mkdir(parents=True, exist_ok=True)
        for folder in (out, store):
            for tmp in folder.glob(".*.tmp"):  # half-written by a sweep killed mid-write
                tmp.unlink(missing_ok=True)
        started = datetime.now(UTC)
        t0 = time.perf_counter()
        unique: dict[str, dict[str, Any]] = {}
        for t in tasks:
            unique.setdefault(t["run_id"], t)
        done = {p.stem for p in store.glob("*.parquet")}
        if retry_errors:
            done = {
                rid for rid in done if rid in unique and not _is_error(store / f"{rid}.parquet")
            } | (done - set(unique))
        todo = [t for rid, t in unique.items() if rid not in done]
        computed, errors = 0, 0
        from tqdm.auto import tqdm

        bar = tqdm(
            total=len(unique),
            initial=len(unique) - len(todo),
            desc=str(self.name),
            unit="run",
            file=sys.stderr,
            disable=(None if progress is None else not progress),
            dynamic_ncols=True,
        )
        try:
            jobs = [
                Job(
                    scenario=t["scenario"],
                    base_dir=t["base_dir"],
                    options={"per_step": t["per_step"], "measure": t["measure"],
                             "counterfactual": t["counterfactual"]},
                    run_id=t["run_id"],
                )
                for t in todo
            ]
            options = RunOptions(executor, workers, scheduler, dask_timeout)  # type: ignore[arg-type]
            for _, res in iter_jobs(jobs, options):
                write_parquet_atomic(_run_frame(res), store / f"{res['run_id']}.parquet")
                computed += 1
                errors += res["status"] != "ok"
                bar.update(1)
        finally:
            bar.close()
        elapsed = time.perf_counter() - t0
        stored = read_store(run_store(out, unique))  # one dataset read, not one per file
        runs = self._consolidate(tasks, stored)
        summary = summarise(runs, self)
        manifest = self._manifest(
            started,
            elapsed,
            computed,
            len(unique) - len(todo),
            runs,
            stored,
            executor,
            workers,
            scheduler,
        )
        write_parquet_atomic(runs, out / "runs.parquet")
        write_parquet_atomic(summary, out / "summary.parquet")
        write_atomic(out / "manifest.json", json.dumps(manifest, indent=2, default=str) + "\n")
        return ExperimentResult(
            out=out, runs=runs, summary=summary, manifest=manifest, unit_design=self.unit_design
        )

    def _outcome_columns(self, available: Iterable[str]) -> list[str]:
        available = list(available)
        # a summary number named as a factor (a lever on "steps") is that factor's column
        skip = {"scenario", "seed", "status", "error", "elapsed_s", "step", *self.per_step,
                *(f.path for f in self.factors)}
        if self.outcomes is None:
            return [c for c in available if c not in skip]
        missing = [o for o in self.outcomes if o not in available]
        if missing and any(available):
            raise ScenarioError(
                f"outcomes: {missing} not produced by the runs; allowed: "
                f"{[c for c in available if c not in skip]}"
            )
        return [o for o in self.outcomes if o in available]

    def _consolidate(self, tasks: list[dict[str, Any]], stored: pd.DataFrame) -> pd.DataFrame:
        """One tidy table: design columns, replicate, seed, run id, outcomes, status.

        `stored` is every task's run file as one frame with a ``run_id`` column
        (:func:`read_store`); a run id shared by several tasks (duplicate design points)
        gives its rows to each of them."""
        design = self.design_table().set_index("point")
        has_ok = bool((stored["status"] == "ok").any()) if "status" in stored else False
        available = [c for c in stored.columns if c != "run_id"] if has_ok else []
        outcomes = self._outcome_columns(available)
        keep = (["step"] if self.per_step else []) + self.per_step + outcomes + ["status", "error"]
        heads = pd.DataFrame([
            {
                "point": t["point"],
                **design.loc[t["point"]].to_dict(),
                "replicate": t["replicate"],
                "seed": t["seed"],
                "run_id": t["run_id"],
            }
            for t in tasks
        ])
        if heads.empty:
            return pd.DataFrame()
        body = stored.reindex(columns=["run_id", *keep])
        # a left merge keeps the tasks' order and, within a run, the stored rows' order
        runs = heads.merge(body, on="run_id", how="left", sort=False, validate="many_to_many")
        for c in ("point", "replicate"):
            if c in runs:
                runs[c] = runs[c].astype(np.int64)
        if "seed" in runs:
            runs["seed"] = runs["seed"].astype(np.int64)
        for c in outcomes + self.per_step:
            if c in runs and runs[c].dtype == object:
                if runs[c].map(lambda v: v is None or isinstance(v, float)).all():
                    runs[c] = runs[c].astype(np.float64)
        if "step" in runs:
            runs["step"] = runs["step"].astype("Int64")
        for c in ("status", "error"):
            runs[c] = runs[c].fillna("" if c == "error" else "missing").astype(str)
        order = ["point", "replicate"] + (["step"] if self.per_step else [])
        return runs.sort_values(order, kind="stable").reset_index(drop=True)

    def _manifest(
        self,
        started: datetime,
        elapsed: float,
        computed: int,
        reused: int,
        runs: pd.DataFrame,
        stored: pd.DataFrame,
        executor: str,
        workers: int | None,
        scheduler: str | None,
    ) -> dict[str, Any]:
        first = stored.drop_duplicates("run_id").set_index("run_id")["elapsed_s"]
        run_times = [float(first[rid]) for rid in runs["run_id"].unique()]
        per_run = runs.drop_duplicates(["point", "replicate"])
        return {
            "experiment": str(self.name),
            "created": started.isoformat(timespec="seconds"),
            "scenario": self.scenario.to_dict(),
            "design": {
                "kind": self.design,
                "samples": self.samples,
                "points": len(self.points()),
                "replicates": self.replicates,
                "seed": self.seed,
                "levers": {
                    f.path: _jsonable_spec(self.levers[f.path])
                    for f in self.factors
                    if f.role == "lever"
                },
                "uncertainties": {
                    f.path: _jsonable_spec(self.uncertainties[f.path])
                    for f in self.factors
                    if f.role == "uncertainty"
                },
                "outcomes": self.outcomes,
                "per_step": self.per_step,
                "measure": _measure_name(self.measure),
            },
            "seeds": self.seeds(),
            "runs": {
                "total": int(len(per_run)),
                "unique": int(runs["run_id"].nunique()),
                "computed_now": computed,
                "reused_from_store": reused,
                "errors": int((per_run["status"] == "error").sum()),
            },
            "timings": {
                "wall_s": round(elapsed, 3),
                "run_s_total": round(sum(run_times), 3),
                "run_s_mean": round(float(np.mean(run_times)), 4) if run_times else None,
                "executor": executor,
                "workers": workers,
                "scheduler": scheduler,
            },
            "versions": versions(),
            "git_commit": git_commit(),
        }


def run_store(out: str | Path, run_ids: Iterable[str] | None = None) -> ds.Dataset:
    """A sweep folder's run store (``<out>/runs/<run id>.parquet``, one file per run) as
    one pyarrow dataset: filter, project and aggregate it with pyarrow (or DuckDB, Polars)
    without opening the files one by one. The schema is every file's schema unified with
    permissive promotion (an error run's file has no outcome columns; they read as null).

    run_ids: the runs to include, in this order (default: every file, sorted by name). The
    order fixes the column order where files differ, so a sweep passes its tasks' order."""
    store = Path(out) / "runs"
    if run_ids is None:
        paths = sorted(str(p) for p in store.glob("*.parquet"))
    else:
        paths = [str(store / f"{rid}.parquet") for rid in dict.fromkeys(run_ids)]
        missing = [p for p in paths if not Path(p).is_file()]
        if missing:
            raise ScenarioError(f"run store {store}: {len(missing)} run file(s) missing, "
                                f"e.g. {Path(missing[0]).name}; run the sweep again to redo them")
    if not paths:
        return ds.dataset(pa.table({"run_id": pa.array([], pa.string())}))
    factory = ds.FileSystemDatasetFactory(pafs.LocalFileSystem(), paths, ds.ParquetFileFormat())
    return factory.finish(factory.inspect(promote_options="permissive"))


def read_store(dataset: ds.Dataset) -> pd.DataFrame:
    """A run store dataset as one frame with a ``run_id`` column (the file's name), rows in
    the dataset's file order and, within a run, in the file's order."""
    batches, ids = [], []
    for tagged in dataset.scanner().scan_batches():  # each batch knows its file
        batch = tagged.record_batch
        rid = Path(getattr(tagged.fragment, "path", "")).name.removesuffix(".parquet")
        batches.append(batch)
        ids.append(np.full(batch.num_rows, rid, dtype=object))
    table = pa.Table.from_batches(batches, schema=dataset.schema)
    order = {p: i for i, p in enumerate(getattr(dataset, "files", []))}
    df = table.to_pandas()
    if "run_id" not in df.columns:
        df.insert(0, "run_id", np.concatenate(ids) if ids else np.array([], dtype=object))
    if order and len(df):  # the scanner may interleave files when threaded: restore order
        rank = df["run_id"].map({Path(p).name.removesuffix(".parquet"): i
                                 for p, i in order.items()})
        df = df.iloc[np.lexsort((np.arange(len(df)), rank.to_numpy()))].reset_index(drop=True)
    return df


def _say_waiting(out: Path) -> Callable[[int | None], None]:
    def say(pid: int | None) -> None:
        who = f"pid {pid}" if pid is not None else "another process"
        print(f"nudgesim: {out} is in use by {who}; waiting for it", file=sys.stderr)

    return say


def _jsonable_spec(spec: Any) -> Any:
    return json.loads(json.dumps(spec, default=str))


def _is_error(path: Path) -> bool:
    try:
        return bool((pd.read_parquet(path, columns=["status"])["status"] == "error").any())
    except Exception:
        return True


def _check_outcomes(names: list[str]) -> None:
    """Outcomes of a sweep without a `measure` function are the run summary's numbers."""
    check_outcomes(names)


def _check_per_step(cols: list[str]) -> None:
    from .result import Result

    allowed = [*Result.LOG_COLUMNS, "adoption_rate", "cost", "impact"]
    bad = [c for c in cols if c not in allowed]
    if bad:
        raise ScenarioError(f"per_step: unknown column(s) {bad}; allowed: {', '.join(allowed)}")


def _t975(df: int) -> float:
    if df not in T95:
        from scipy.stats import t

        T95[df] = float(t.ppf(0.975, df))
    return T95[df]


def summarise(runs: pd.DataFrame, exp: Experiment) -> pd.DataFrame:
    """Per design point (and step): n, errors, and for each numeric outcome the mean, sample
    std and a 95% Student-t confidence interval of the mean across replicates."""
    keys = ["point"] + (["step"] if exp.per_step else [])
    factor_cols = [f.path for f in exp.factors]
    # text outcomes (a None-only column reads as numeric) and, without regions, the
    # regional ones (always None there) are not summarised
    skip = {name for name, o in OUTCOMES.items()
            if not o.numeric or (o.regional and exp.scenario.population.ward_regions() is None)}
    numeric = [
        c
        for c in runs.columns
        if c not in {*keys, *factor_cols, "replicate", "seed", "run_id", "status", "error",
                     *skip}
        and pd.api.types.is_numeric_dtype(runs[c])
    ]
    ok = runs[runs["status"] == "ok"]
    if exp.per_step:
        ok = ok[ok["step"].notna()]
    head = runs.drop_duplicates("point")[["point", *factor_cols]]
    per_point = runs.drop_duplicates(["point", "replicate"]).groupby("point")["status"]
    counts = pd.DataFrame(
        {
            "n_runs": per_point.size(),
            "n_errors": per_point.apply(lambda s: int((s == "error").sum())),
        }
    )
    g = ok.groupby(keys, sort=True)[numeric]
    mean, std, n = g.mean(), g.std(ddof=1), g.count()
    stats = {}
    for c in numeric:
        half = (
            pd.Series([_t975(int(k) - 1) if k > 1 else np.nan for k in n[c]], index=n.index)
            * std[c]
            / np.sqrt(n[c])
        )
        stats[f"{c}_mean"] = mean[c]
        stats[f"{c}_std"] = std[c]
        stats[f"{c}_ci_low"] = mean[c] - half
        stats[f"{c}_ci_high"] = mean[c] + half
    body = pd.DataFrame(stats).reset_index() if numeric else ok[keys].drop_duplicates()
    out = head.merge(counts.reset_index(), on="point").merge(body, on="point", how="left")
    return out.sort_values(keys, kind="stable").reset_index(drop=True)


def versions() -> dict[str, str]:
    """Versions of Python and the packages that shape results."""
    from importlib import metadata

    out = {"python": platform.python_version()}
    for pkg in (
        "nudgesim",
        "numpy",
        "scipy",
        "pandas",
        "networkx",
        "pyarrow",
        "pydantic",
        "SALib",
        "dask",
        "distributed",
    ):
        try:
            out[pkg] = metadata.version(pkg)
        except metadata.PackageNotFoundError:
            pass
    return out


def git_commit() -> str | None:
    """`git rev-parse HEAD` of the package's checkout (+ '-dirty' with local changes), if any."""
    root = Path(__file__).resolve().parent.parent
    try:
        head = subprocess.run(
            ["git", "rev-parse", "HEAD"], cwd=root, capture_output=True, text=True, timeout=5
        )
        if head.returncode != 0:
            return None
        dirty = subprocess.run(
            ["git", "diff", "--quiet", "HEAD", "--"], cwd=root, capture_output=True, timeout=10
        )
        return head.stdout.strip() + ("-dirty" if dirty.returncode == 1 else "")
    except (OSError, subprocess.SubprocessError):
        return None
