"""Residents as a struct of numpy arrays: one array per trait, indexed by resident.

Never per-agent objects on the hot path; the Mesa agents (``model.py``) read these arrays.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import numpy as np
import pandas as pd

from .rng import Streams
from .scenario import PopulationSpec, ScenarioError

TRAITS = ("attitude", "habit", "cost", "susceptibility", "threshold")


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
    if isinstance(spec.wards, list) and spec.wards[0].size is not None:
        sizes = np.array([w.size for w in spec.wards])
        if sizes.sum() != n:
            raise ScenarioError(
                f"population.wards: ward sizes add up to {sizes.sum()} but there are {n} "
                "residents (from the graph or csv)"
            )
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


def build_population(
    spec: PopulationSpec,
    streams: Streams,
    *,
    n: int | None = None,
    ids: list[Any] | None = None,
    node_attributes: dict[str, list[Any]] | None = None,
    csv_path: Any = None,
) -> Population:
    """Draw every trait from its own named stream (changing one leaves the others alone).

    `n`/`ids` come from a given graph; `node_attributes` (trait name → values in node order)
    and the CSV's columns override the distributions.
    """
    overrides: dict[str, Any] = dict(node_attributes or {})
    if csv_path is not None:
        try:
            table = pd.read_csv(csv_path)
        except FileNotFoundError:
            raise ScenarioError(f"population.csv: file not found: {csv_path}") from None
        except Exception as err:  # pandas raises many kinds; all mean "not a readable CSV"
            raise ScenarioError(f"population.csv: cannot read {csv_path}: {err}") from None
        allowed = {"id", "ward", *TRAITS}
        unknown = sorted(set(table.columns) - allowed)
        if unknown:
            raise ScenarioError(
                f"population.csv: unknown column(s) {unknown}; allowed: {sorted(allowed)}"
            )
        if n is not None and len(table) != n:
            raise ScenarioError(
                f"population.csv: {len(table)} rows but the graph has {n} residents"
            )
        if "id" in table and ids is not None:  # align rows to the graph's node order
            by_id = {str(v): k for k, v in enumerate(table["id"].tolist())}
            missing = [v for v in ids if str(v) not in by_id]
            if missing or len(by_id) != len(table):
                raise ScenarioError(
                    "population.csv: the id column must list every graph node once; "
                    f"missing e.g. {missing[:3]}" if missing else
                    "population.csv: duplicate ids in the id column"
                )
            table = table.iloc[[by_id[str(v)] for v in ids]].reset_index(drop=True)
        elif "id" in table:
            ids = table["id"].tolist()
        for col in table.columns:
            if col != "id":
                overrides[col] = table[col].tolist()
        n = len(table)
    if n is None:
        n = spec.size
    if n is None:
        if isinstance(spec.wards, list):
            n = sum(w.size for w in spec.wards)
        else:
            raise ScenarioError("population.size: required (no graph, csv or ward sizes)")
    if spec.size is not None and spec.size != n:
        raise ScenarioError(
            f"population.size: {spec.size} but the graph/csv has {n} residents; "
            "leave size out or make them agree"
        )

    ward, names, baseline = _ward_blocks(spec, n) if "ward" not in overrides else (None, None, None)
    if ward is None:
        labels = overrides.pop("ward")
        if isinstance(spec.wards, list):
            names = spec.ward_names()
        else:
            names = list(dict.fromkeys(str(v) for v in labels))  # order of first appearance
        ward = _ward_from_labels(labels, names, "population ward column/attribute")
        baseline = np.full(len(names), np.nan)
        if isinstance(spec.wards, list):
            baseline = np.array([np.nan if w.baseline is None else w.baseline for w in spec.wards])

    traits: dict[str, np.ndarray] = {}
    for name in TRAITS:
        if name in overrides:
            try:
                values = np.asarray(overrides[name], dtype=np.float64)
            except (TypeError, ValueError):
                raise ScenarioError(f"population: {name} values must be numbers") from None
            if np.isnan(values).any():
                raise ScenarioError(f"population: {name} has missing values")
            traits[name] = values
        else:
            traits[name] = getattr(spec, name).sample(streams.generator(f"trait:{name}"), n)
    for name in ("habit", "cost", "threshold"):
        bad = (traits[name] < 0) | (traits[name] > 1)
        if bad.any():
            raise ScenarioError(
                f"population.{name}: values must be in [0, 1], got {traits[name][bad][0]!r}"
            )
    return Population(
        ward=ward, ward_names=list(names), ids=ids, ward_baseline=baseline, **traits
    )
