"""EMA workbench adapter: a nudgesim scenario as an ``ema_workbench`` model.

EMA users bring their own designs, evaluators and scenario discovery (PRIM, feature
scoring, optimisation); nudgesim brings the simulation. ``model(...)`` returns an
``ema_workbench.Model`` whose levers and uncertainties are *paths into the scenario* in
the grammar of sweeps (``rule.adopt_norm``, ``nudges[leaflet].reach``), given as in an
experiment file (a range ``{low, high[, integer]}``, a list of choices, or
``{values, labels}``; EMA names each one by :func:`parameter_name`, a Python identifier,
and passes the path to the model), and whose outcomes are named run summaries with their direction
(``nudgesim.outcomes``: EMA's MAXIMIZE / MINIMIZE / INFO).

Seeds: every experiment runs the scenario's seed (common random numbers, as nudgesim's
sweeps do), so differences between experiments are not blurred by independent noise.
For replicates, add ``"seed"`` as an uncertainty (a list of seeds): it is a path too.

ema_workbench is an optional dependency (``pip install 'nudgesim[ema]'``), imported only
when this module's ``model`` is called.
"""

from __future__ import annotations

import copy
import importlib
import keyword
import math
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from .errors import UsageError
from .experiment import Factor
from .outcomes import needs_counterfactual, outcome
from .runs import set_path
from .scenario import Scenario

DEFAULT_OUTCOMES = ("final_adoption", "adopters_gained", "total_cost", "cost_per_adopter_gained")
"""What a campaign is judged on when no outcomes are named (see nudgesim.outcomes)."""


def _ema() -> Any:
    """The ema_workbench module, or a UsageError saying how to install it."""
    try:  # imported by name: an optional dependency without type information
        ema_workbench = importlib.import_module("ema_workbench")
    except ImportError:
        raise UsageError("nudgesim.ema needs ema_workbench 3 (not installed); allowed: "
                         "pip install 'nudgesim[ema]' or pip install 'ema_workbench>=3'") from None
    major = str(getattr(ema_workbench, "__version__", "0")).split(".")[0]
    if not major.isdigit() or int(major) < 3:
        raise UsageError(f"nudgesim.ema needs ema_workbench 3, found "
                         f"{getattr(ema_workbench, '__version__', '?')}; allowed: >= 3")
    return ema_workbench


def _plain(x: Any) -> Any:
    """numpy scalars (what EMA's samplers give) as Python values, which pydantic takes."""
    return x.item() if isinstance(x, np.generic) else x


@dataclass(frozen=True)
class ScenarioFunction:
    """The function EMA calls once per experiment, with one keyword per lever and
    uncertainty (its path). Top level and plain data, so it pickles for EMA's
    MultiprocessingEvaluator."""

    scenario: dict[str, Any]
    base_dir: str
    outcomes: tuple[str, ...]
    choices: dict[str, dict[str, Any]] = field(default_factory=dict)  # label -> value
    integers: frozenset[str] = frozenset()

    def build(self, params: Mapping[str, Any]) -> Scenario:
        """The scenario with these parameter values set (labels mapped to their values)."""
        data = copy.deepcopy(self.scenario)
        for path, raw in params.items():
            value = _plain(raw)
            if path in self.choices:
                value = self.choices[path][str(value)]
            elif path in self.integers:
                value = int(value)
            set_path(data, path, value, what="EMA parameter")
        return Scenario.from_dict(data, Path(self.base_dir))

    def __call__(self, **params: Any) -> dict[str, float]:
        from .engine import simulate

        res = simulate(self.build(params), counterfactual=needs_counterfactual(self.outcomes))
        out = {}
        for name in self.outcomes:
            v = res.summary.get(name)
            out[name] = math.nan if v is None else float(v)
        return out


def parameter_name(path: str) -> str:
    """The EMA name of a scenario path: a Python identifier, as ema_workbench 3 requires
    (``nudges[leaflet].reach`` -> ``nudges_leaflet_reach``); the path itself is the
    parameter's ``variable_name``, which is what the model function receives."""
    name = re.sub(r"\W+", "_", path).strip("_") or "p"
    return f"p_{name}" if name[0].isdigit() or keyword.iskeyword(name) else name


def _parameter(ema: Any, f: Factor, name: str) -> tuple[Any, dict[str, Any] | None]:
    """The EMA parameter of a factor, and its label -> value map for choices."""
    if f.is_range:
        assert f.low is not None and f.high is not None
        if f.integer:
            return ema.IntegerParameter(name, math.ceil(f.low), math.floor(f.high),
                                        variable_name=f.path), None
        return ema.RealParameter(name, f.low, f.high, variable_name=f.path), None
    values = list(f.values or ())
    labels = list(f.labels) if f.labels else None
    if labels is None:
        if not all(isinstance(v, (str, int, float, bool)) for v in values):
            raise UsageError(f"{f.role}s.{f.path!r}: choices that are tables or lists need "
                             "labels; allowed: {values = [...], labels = [...]}")
        labels = [str(v) for v in values]
        if len(set(labels)) != len(labels):
            raise UsageError(f"{f.role}s.{f.path!r}: {values} repeat a value; give distinct "
                             "choices")
    return (ema.CategoricalParameter(name, labels, variable_name=f.path),
            dict(zip(labels, values, strict=True)))


def model(
    scenario_path: str | Path | Scenario,
    levers: Mapping[str, Any] | None = None,
    uncertainties: Mapping[str, Any] | None = None,
    outcomes: Sequence[str] = DEFAULT_OUTCOMES,
    *,
    name: str = "nudgesim",
) -> Any:
    """An ``ema_workbench.Model`` running `scenario_path` (a TOML path or a Scenario).

    levers / uncertainties: ``{path: spec}`` as in an experiment file — ``{"low": a,
    "high": b}`` (``"integer": True`` for whole numbers) becomes a Real/IntegerParameter, a
    list of choices or ``{"values": [...], "labels": [...]}`` a CategoricalParameter
    (categories are the labels; tables as values need labels). outcomes: numeric run
    summaries (nudgesim.outcomes), each a ScalarOutcome with its direction. Parameters are
    named by :func:`parameter_name` (the experiments table's columns). Every path is
    checked against the scenario now, so a typo fails here, not in experiment 37.
    """
    ema = _ema()
    sc = scenario_path if isinstance(scenario_path, Scenario) else Scenario.from_toml(scenario_path)
    outs = tuple(outcomes)
    if not outs:
        raise UsageError("outcomes: empty; allowed: names from nudgesim.outcomes, e.g. "
                         "'final_adoption'")
    found = [outcome(o, where="outcomes") for o in outs]
    factors = [Factor.parse(p, s, "lever") for p, s in (levers or {}).items()]
    factors += [Factor.parse(p, s, "uncertainty") for p, s in (uncertainties or {}).items()]
    names: dict[str, str] = {}
    for f in factors:
        if f.path in names:
            raise UsageError(f"{f.path!r}: both a lever and an uncertainty; give it once")
        name_f = parameter_name(f.path)
        if name_f in names.values():
            raise UsageError(f"{f.path!r}: its EMA name {name_f!r} is taken by another path; "
                             "allowed: paths that differ in letters or digits")
        names[f.path] = name_f
    params, choices = {}, {}
    for f in factors:
        params[f.path], labels = _parameter(ema, f, names[f.path])
        if labels is not None:
            choices[f.path] = labels
    fn = ScenarioFunction(
        scenario=sc.to_dict(), base_dir=str(sc.base_dir), outcomes=outs, choices=choices,
        integers=frozenset(f.path for f in factors if f.is_range and f.integer))
    for f in factors:  # every path and both ends of every range make a valid scenario
        tries = [f.low, f.high] if f.is_range else list(choices[f.path])
        for v in tries:
            fn.build({f.path: v})
    m = ema.Model(name, function=fn)
    m.levers = [params[f.path] for f in factors if f.role == "lever"]
    m.uncertainties = [params[f.path] for f in factors if f.role == "uncertainty"]
    kinds = {"maximize": ema.ScalarOutcome.MAXIMIZE, "minimize": ema.ScalarOutcome.MINIMIZE,
             "info": ema.ScalarOutcome.INFO}
    m.outcomes = [ema.ScalarOutcome(o.name, kind=kinds[o.direction]) for o in found]
    return m
