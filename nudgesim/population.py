"""Residents as a struct of numpy arrays: one array per trait, indexed by resident.

Never per-agent objects on the hot path; the Mesa agents (``model.py``) read these arrays.
"""

from __future__ import annotations

import warnings
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from .rng import Streams
from .scenario import (
    TRAIT_RANGES,
    WARD_COLUMN_HINTS,
    WARD_TRAITS,
    PopulationSpec,
    ScenarioError,
    ScenarioWarning,
    describe_range,
    plain,
    ward_table_columns,
    with_mean,
)

if TYPE_CHECKING:
    import pandas as pd


TRAITS = tuple(TRAIT_RANGES)  # attitude, habit, cost, susceptibility, threshold


@dataclass
class Population:
    """Traits of every resident; resident i is row i everywhere in the engine."""

    ward: np.ndarray  # int32 index into ward_names
    ward_names: list[str]
    attitude: np.ndarray
    habit: np.ndarray  # initial habit; the engine keeps the evolving copy
    cost: np.ndarray
    susceptibility: np.ndarray
    threshold: np.ndarray
    ids: list[Any] | None = None  # external ids (graph nodes / CSV ids); None = 0..n-1
    ward_baseline: np.ndarray | None = field(default=None)  # per ward, NaN where not given

    @property
    def n(self) -> int:
        return len(self.ward)

    @property
    def n_wards(self) -> int:
        return len(self.ward_names)

    def ward_sizes(self) -> np.ndarray:
        return np.bincount(self.ward, minlength=self.n_wards)


def _ward_blocks(spec: PopulationSpec, n: int) -> tuple[np.ndarray, list[str], np.ndarray]:
    """Contiguous blocks of residents per ward: neighbours on generated lattices share wards."""
    names = spec.ward_names()
    baseline = np.full(len(names), np.nan)
    if written := spec.ward_sizes():
        sizes = scaled_sizes(np.array(written), n)
    else:
        if n < len(names):
            raise ScenarioError(
                f"population.wards: {len(names)} wards for only {n} residents; "
                "allowed: at most one ward per resident"
            )
        sizes = np.array([len(b) for b in np.array_split(np.arange(n), len(names))])
    if isinstance(spec.wards, list):
        baseline = np.array([np.nan if w.baseline is None else w.baseline for w in spec.wards])
    ward = np.repeat(np.arange(len(names), dtype=np.int32), sizes)
    return ward, names, baseline


def ward_blocks(spec: PopulationSpec, n: int) -> np.ndarray:
    """Each of `n` residents' ward when the scenario places them itself (contiguous blocks
    of the ward sizes): the wards build_population gives when no file names them."""
    return _ward_blocks(spec, n)[0]


def _written_size(spec: PopulationSpec) -> int | None:
    """The number of residents the population spec names: its size, else its ward sizes."""
    if spec.size is not None:
        return spec.size
    sizes = spec.ward_sizes()
    return sum(sizes) if sizes else None


def scaled_sizes(sizes: np.ndarray, n: int) -> np.ndarray:
    """Ward sizes in the same proportions adding up to `n` (largest remainder, every ward
    keeps at least one resident): a graph with another number of residents than the
    scenario's wards keeps the wards' shares."""
    sizes = np.asarray(sizes, dtype=np.int64)
    if sizes.sum() == n:
        return sizes
    if n < sizes.size:
        raise ScenarioError(
            f"population.wards: {sizes.size} wards for only {n} residents; "
            "allowed: at most one ward per resident"
        )
    spare = n - sizes.size  # one resident each first, the rest by share
    exact = spare * sizes / sizes.sum()
    out = np.floor(exact).astype(np.int64)
    order = np.argsort(-(exact - out), kind="stable")
    out[order[: spare - out.sum()]] += 1
    return out + 1


def _ward_from_labels(labels: pd.Series | list, names: list[str], where: str) -> np.ndarray:
    """Map ward labels (names or 0-based indices) to indices, explaining unknown ones."""
    lookup = {name: i for i, name in enumerate(names)}
    out = np.empty(len(labels), dtype=np.int32)
    for k, lab in enumerate(labels):
        key = str(lab)
        if key in lookup:
            out[k] = lookup[key]
        elif isinstance(lab, (int, np.integer)) and 0 <= lab < len(names):
            out[k] = int(lab)
        else:
            raise ScenarioError(
                f"{where}: unknown ward {lab!r}; allowed: {names[:10]}"
                f"{'…' if len(names) > 10 else ''}"
            )
    return out


def _read_csv(csv_path: Any) -> pd.DataFrame:
    """The residents table, refused when unreadable, oddly shaped or with duplicate ids."""
    import pandas as pd  # only for a residents CSV: a scenario's own residents need none

    try:
        table = pd.read_csv(csv_path)
    except FileNotFoundError:
        raise ScenarioError(f"population.csv: file not found: {csv_path}") from None
    except Exception as err:  # pandas raises many kinds; all mean "not a readable CSV"
        one_line = " ".join(str(err).split())
        raise ScenarioError(f"population.csv: cannot read {csv_path}: {one_line}") from None
    allowed = {"id", "ward", *TRAITS}
    unknown = sorted(set(map(str, table.columns)) - allowed)
    if unknown and set(unknown) & {"households", "baseline", *WARD_COLUMN_HINTS}:
        raise ScenarioError(
            f"population.csv: {csv_path} looks like a ward table (column(s) {unknown}), "
            "but population.csv takes one row per resident; give it as population.wards = "
            f"\"{Path(csv_path).name}\" with columns {', '.join(ward_table_columns())}"
        )
    if unknown:
        raise ScenarioError(
            f"population.csv: unknown column(s) {unknown}; allowed: {sorted(allowed)}"
        )
    if table.empty:
        raise ScenarioError(f"population.csv: {csv_path} has no rows; allowed: one per resident")
    if "id" in table:
        keys = table["id"].astype(str)
        dup = list(dict.fromkeys(keys[keys.duplicated()]))
        if dup:
            raise ScenarioError(
                f"population.csv: duplicate id(s) {dup[:10]}{'…' if len(dup) > 10 else ''} "
                f"in {csv_path}; allowed: each id once"
            )
    return table


def _trait_values(values: Any, name: str, source: str, ids: list[Any] | None) -> np.ndarray:
    """Per-resident values of a trait (CSV column or node attribute), held to the trait's
    range: the same rule as for the scenario's distributions."""
    try:
        x = np.asarray(values, dtype=np.float64)
    except (TypeError, ValueError):
        raise ScenarioError(f"{source}: values must be numbers") from None
    lo, hi = TRAIT_RANGES[name]
    bad = ~np.isfinite(x)
    if lo is not None:
        bad |= x < lo
    if hi is not None:
        bad |= x > hi
    if bad.any():
        i = int(np.flatnonzero(bad)[0])
        who = ids[i] if ids is not None else i
        allowed = "a finite number" if lo is None and hi is None else (
            f"values in {describe_range(lo, hi)}")
        raise ScenarioError(
            f"{source}: {plain(x[i])} for resident {who!r} is not allowed; allowed: {allowed}"
        )
    return x


def build_population(
    spec: PopulationSpec,
    streams: Streams,
    *,
    n: int | None = None,
    ids: list[Any] | None = None,
    node_attributes: dict[str, list[Any]] | None = None,
    csv_path: Any = None,
    threshold: Any = None,
) -> Population:
    """Draw every trait from its own named stream (changing one leaves the others alone).

    `n`/`ids` come from a given graph. Precedence, most specific first: a residents CSV
    column, then the graph's node attribute, then `threshold` (the rule's distribution),
    then the population's distribution. A warning says when an explicitly written source
    is overridden, since both were given and only one is used.
    """
    overrides: dict[str, Any] = dict(node_attributes or {})
    source = {k: f"graph node attribute {k!r}" for k in overrides}
    if csv_path is not None:
        table = _read_csv(csv_path)
        if n is not None and len(table) != n:
            raise ScenarioError(
                f"population.csv: {len(table)} rows but the graph has {n} residents"
            )
        if "id" in table and ids is not None:  # align rows to the graph's node order
            by_id = {str(v): k for k, v in enumerate(table["id"].tolist())}
            missing = [v for v in ids if str(v) not in by_id]
            if missing:
                raise ScenarioError(
                    "population.csv: the id column must list every graph node once; "
                    f"missing e.g. {missing[:3]}"
                )
            table = table.iloc[[by_id[str(v)] for v in ids]].reset_index(drop=True)
        elif "id" in table:
            ids = table["id"].tolist()
        for col in table.columns:
            if col == "id":
                continue
            if col in source:
                _warn(f"population.csv: column {col!r} overrides the {source[col]}")
            overrides[col] = table[col].tolist()
            source[col] = f"population.csv column {col!r}"
        n = len(table)
    if n is None:
        n = spec.size
    if n is None:
        if sizes := spec.ward_sizes():
            n = sum(sizes)
        else:
            raise ScenarioError(
                "population.size: required when there is no residents csv, graph or ward "
                "sizes; allowed: a whole number >= 1"
            )
    written = _written_size(spec)
    if written is not None and written != n:
        if csv_path is not None:  # the residents file and the size sit in one scenario
            raise ScenarioError(
                f"population.size: {written} but the residents csv has {n} rows; "
                "leave size out or make them agree"
            )
        # a graph's nodes are the residents: it gives the size, and ward sizes follow it
        if spec != PopulationSpec(size=1000):  # not merely the default population
            field = "population.size" if spec.size is not None else "population.wards"
            _warn(
                f"{field}: {written:,} residents in the scenario, but the graph has {n:,}; "
                "the graph gives the size (ward sizes scaled to it)"
            )

    if "ward" not in overrides:
        ward, names, baseline = _ward_blocks(spec, n)
    else:
        labels = overrides.pop("ward")
        if isinstance(spec.wards, list):
            names = spec.ward_names()
        else:
            names = list(dict.fromkeys(str(v) for v in labels))  # order of first appearance
        ward = _ward_from_labels(labels, names, source["ward"])
        baseline = np.full(len(names), np.nan)
        if isinstance(spec.wards, list):
            baseline = np.array([np.nan if w.baseline is None else w.baseline for w in spec.wards])

    traits: dict[str, np.ndarray] = {}
    for name in TRAITS:
        # written and not the default: a scenario rebuilt from to_dict() (sweeps, results
        # folders) has every field "set", and warning about a default helps no one
        written = name in spec.model_fields_set and getattr(spec, name) != type(
            spec).model_fields[name].get_default(call_default_factory=True)
        given = [f"population.{name}"] if written else []
        if name == "threshold" and threshold is not None:
            if given:
                _warn("population.threshold: rule.threshold overrides it")
            given = ["rule.threshold"]
        if name in overrides:
            for field_name in given:
                _warn(f"{field_name}: the {source[name]} overrides it (per-resident data wins)")
            traits[name] = _trait_values(overrides[name], name, source[name], ids)
        else:
            dist = threshold if name == "threshold" and threshold is not None else getattr(spec, name)
            traits[name] = _sample_trait(spec, name, dist, ward, streams)
    return Population(
        ward=ward, ward_names=list(names), ids=ids, ward_baseline=baseline, **traits
    )


def _sample_trait(
    spec: PopulationSpec, name: str, dist: Any, ward: np.ndarray, streams: Streams
) -> np.ndarray:
    """One trait for every resident from its stream. When some wards set the trait's mean
    (`<trait>_mean`), each ward's residents are drawn in ward order from the distribution
    moved to its mean (scenario.with_mean); otherwise one draw of n, as always."""
    rng = streams.generator(f"trait:{name}")
    wards = spec.wards if isinstance(spec.wards, list) else []
    means = {i: m for i, w in enumerate(wards)
             if name in WARD_TRAITS and (m := w.trait_means().get(name)) is not None}
    if not means:
        return dist.sample(rng, ward.size)
    out = np.empty(ward.size, dtype=np.float64)
    for i in range(len(wards)):
        members = np.flatnonzero(ward == i)
        ward_dist = with_mean(dist, means[i]) if i in means else dist
        out[members] = ward_dist.sample(rng, members.size)
    return out


def _warn(message: str) -> None:
    """One line naming the field that is given twice; the run uses the documented winner."""
    warnings.warn(message, ScenarioWarning, stacklevel=3)
