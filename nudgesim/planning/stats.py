"""What every planning tool shares: paired replicate seeds, intervals, the frontier.

Common random numbers: replicate r of every variant runs with the same seed
(:func:`paired_seeds`). The engine's draws depend only on (seed, stream, step, resident)
and each nudge has its own stream, so baseline and variant in replicate r differ only by
what the variant changes; differences are paired and their intervals are far narrower
than unpaired ones.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np
from scipy import stats

from ..outcomes import Direction
from ..runs import replicate_seeds
from ..scenario import Scenario, ScenarioError

LEVEL = 0.95  # confidence level of every interval reported here (convention)
BOOTSTRAP = 2000  # resamples for ratio intervals (assumption: enough for 2.5/97.5 percentiles)


def paired_seeds(scenario: Scenario, replicates: int) -> list[int]:
    """Seeds of replicates 0..replicates-1, shared by every variant (at least two): the
    rule experiments use (:func:`nudgesim.runs.replicate_seed`)."""
    if replicates < 2:
        raise ScenarioError(f"replicates: {replicates} is too few; allowed: 2 or more "
                            "(an interval needs at least two)")
    return replicate_seeds(scenario.seed, replicates)


def t_interval(x: np.ndarray) -> tuple[float, float, float]:
    """Mean and 95% t-interval of paired differences over replicates."""
    x = np.asarray(x, dtype=np.float64)
    m = float(x.mean())
    if len(x) < 2:
        return m, math.nan, math.nan
    half = stats.t.ppf(0.5 + LEVEL / 2, len(x) - 1) * x.std(ddof=1) / math.sqrt(len(x))
    return m, m - half, m + half


def ratio_interval(num: np.ndarray, den: np.ndarray, rng: np.random.Generator
                   ) -> tuple[float | None, float | None, float | None]:
    """Ratio of means with a paired percentile bootstrap; None where the denominator can
    be zero or negative (the ratio then means nothing: no extra adopters to pay for)."""
    if den.mean() <= 0:
        return None, None, None
    est = float(num.mean() / den.mean())
    idx = rng.integers(0, len(num), size=(BOOTSTRAP, len(num)))
    n_b, d_b = num[idx].mean(axis=1), den[idx].mean(axis=1)
    if (d_b <= 0).any():
        return est, None, None
    lo, hi = np.percentile(n_b / d_b, [50 * (1 - LEVEL), 50 * (1 + LEVEL)])
    return est, float(lo), float(hi)


def pareto(columns: Sequence[np.ndarray], directions: Sequence[Direction]) -> np.ndarray:
    """True where no other row is at least as good on every column and strictly better
    on one; "better" is each column's outcome direction (maximize or minimize)."""
    signs = [{"maximize": 1.0, "minimize": -1.0}[d] for d in directions]
    x = np.column_stack([s * np.asarray(c, dtype=np.float64) for s, c in zip(signs, columns)])
    out = np.ones(len(x), dtype=bool)
    for i in range(len(x)):
        dominated = (x >= x[i]).all(axis=1) & (x > x[i]).any(axis=1)
        out[i] = not dominated.any()
    return out


def jsonable(obj: Any) -> Any:
    """JSON-safe: NaN/inf to None, numpy scalars to Python."""
    if isinstance(obj, dict):
        return {str(k): jsonable(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [jsonable(v) for v in obj]
    if isinstance(obj, (np.floating, float)):
        return float(obj) if math.isfinite(obj) else None
    if isinstance(obj, np.integer):
        return int(obj)
    if isinstance(obj, np.bool_):
        return bool(obj)
    return obj


def run_row(s: Mapping[str, Any]) -> dict[str, Any]:
    """One run's row of runs.csv, from its summary."""
    low = s["lowest_ward_adoption"]
    return {
        "residents": s["residents"],
        "initial_adopters": s["final_adopters"] - s["adopters_gained"],
        "final_adopters": s["final_adopters"],
        "final_adoption": s["final_adopters"] / max(s["residents"], 1),
        "total_cost": s["total_cost"], "total_impact": s["total_impact"],
        "total_contacts": s["total_contacts"],
        "lowest_ward_adoption": np.nan if low is None else low,
    }
