"""Decisions under uncertainty: from an option × draw matrix to what a council should do.

Everything here is plain arithmetic on arrays so that it can be checked by hand:

* ``values[o, d]`` is option o's expected result (the mean of its replicates) under
  parameter draw d, larger = better (callers flip the sign of outcomes to minimise);
* ``runs[o, d, r]`` the single runs behind it, for the variance decomposition.

Definitions (Claxton 1999, J Health Econ 18:341; Strong, Oakley & Brennan 2014, Med Decis
Making 34:311):

* ``p_best``: the share of draws in which the option has the best value (ties shared);
* regret in a draw: the best option's value minus this option's; expected regret is its
  mean over draws, and the smallest expected regret is the EVPI (expected value of perfect
  information): what knowing every parameter exactly would be worth;
* EVPPI of one parameter: what knowing that parameter alone would be worth, by the
  regression method: each option's value is smoothed on the parameter (the fitted value
  estimates E[value | parameter]) and EVPPI = mean over draws of the best fitted value
  minus the best mean fitted value.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence

import numpy as np
import pandas as pd
from scipy import interpolate

ROBUST_QUANTILE = 0.10  # "best 10th percentile": the option whose bad case is least bad (convention)
MIN_DISTINCT = 5  # fewer distinct parameter values cannot carry a smoother (assumption)
MAX_KNOTS = 8  # interior knots of the spline: enough for smooth dose-response (assumption)
# GCV with each degree of freedom counted 1.4 times: less prone to fitting noise with few
# draws (Kim & Gu 2004, J R Stat Soc B 66:337; mgcv's `gamma`)
GCV_GAMMA = 1.4
LAMBDAS = np.logspace(-6, 6, 25)  # roughness penalties tried by GCV (assumption: wide grid)


def p_best(values: np.ndarray) -> np.ndarray:
    """Per option: the share of draws in which it is best; a tie shares the draw equally,
    so the shares add up to one."""
    v = np.asarray(values, dtype=np.float64)
    best = v == v.max(axis=0, keepdims=True)
    return (best / best.sum(axis=0, keepdims=True)).mean(axis=1)


def regret(values: np.ndarray) -> np.ndarray:
    """regret[o, d] = best value in draw d minus option o's (0 for the draw's best)."""
    v = np.asarray(values, dtype=np.float64)
    return v.max(axis=0, keepdims=True) - v


def evpi(values: np.ndarray) -> float:
    """Expected value of perfect information: E[max over options] − max of E (the smallest
    expected regret)."""
    v = np.asarray(values, dtype=np.float64)
    return float(v.max(axis=0).mean() - v.mean(axis=1).max())


def variance_shares(runs: np.ndarray) -> pd.DataFrame:
    """Per option (rows of runs[o, d, r]): how much of a single run's variance comes from
    the parameters and how much from simulation noise (one-way random-effects ANOVA).

    Within-draw variance s_w² (mean over draws of the replicates' variance) is the noise.
    The draw means vary by the parameters *and* by the noise left in a mean of R runs, so
    the parameters' variance is var(draw means) − s_w²/R (floored at 0). Total = the two
    added, the variance of one run's result across parameter draws and seeds."""
    x = np.asarray(runs, dtype=np.float64)
    if x.ndim != 3 or x.shape[2] < 2 or x.shape[1] < 2:
        raise ValueError("runs must be options × draws (≥2) × replicates (≥2)")
    r = x.shape[2]
    noise = x.var(axis=2, ddof=1).mean(axis=1)
    between = x.mean(axis=2).var(axis=1, ddof=1)
    params = np.maximum(between - noise / r, 0.0)
    total = params + noise
    with np.errstate(invalid="ignore", divide="ignore"):
        share = np.where(total > 0, params / np.where(total > 0, total, 1.0), np.nan)
    return pd.DataFrame({"var_params": params, "var_noise": noise, "share_params": share})


def summarise(values: np.ndarray, options: Sequence[str]) -> pd.DataFrame:
    """One row per option: expected value, p_best, expected and worst regret, the 10th
    percentile over draws, and which option each rule picks (best expected, minimax
    regret, best 10th percentile). A tie on a robust rule goes to the better expected
    value, then (as every tie on the expected value) to the earlier option."""
    v = np.asarray(values, dtype=np.float64)
    reg = regret(v)
    mean = v.mean(axis=1)
    p10 = np.quantile(v, ROBUST_QUANTILE, axis=1)
    table = pd.DataFrame({
        "option": list(options), "expected": mean, "p_best": p_best(v),
        "expected_regret": reg.mean(axis=1), "max_regret": reg.max(axis=1), "p10": p10,
    })
    index = np.arange(len(v))
    # np.lexsort sorts by its last key first: ties on a robust rule go to the better mean
    table["best_expected"] = index == int(np.argmax(mean))
    table["minimax_regret"] = index == int(np.lexsort((-mean, reg.max(axis=1)))[0])
    table["best_p10"] = index == int(np.lexsort((-mean, -p10))[0])
    return table


def fit(x: np.ndarray, y: np.ndarray) -> Callable[[np.ndarray], np.ndarray]:
    """E[y | x] as a function: a penalised cubic regression spline (a P-spline, Eilers &
    Marx 1996, Stat Sci 11:89: B-spline basis, second-difference penalty), its smoothness
    chosen by generalised cross-validation (GCV_GAMMA), and the constant fit (x says
    nothing about y) kept when GCV prefers it. The constant option matters: without it the stiffest fit is
    a straight line, which reads a trend into pure noise and biases EVPPI upward. A
    parameter with fewer than MIN_DISTINCT values is a factor: E[y | x] is the mean of y at
    each value (joined by straight lines between them)."""
    x = np.asarray(x, dtype=np.float64)
    y = np.asarray(y, dtype=np.float64)
    n = len(y)
    mean = float(y.mean())
    ux, inverse, counts = np.unique(x, return_inverse=True, return_counts=True)
    rss0 = float(((y - mean) ** 2).sum())
    if len(ux) == 1 or rss0 == 0.0:
        return lambda t: np.full(np.shape(t), mean)
    if len(ux) < MIN_DISTINCT:
        uy = np.bincount(inverse, weights=y) / counts
        return lambda t: np.interp(np.asarray(t, dtype=np.float64), ux, uy)
    lo, scale = float(ux[0]), float(ux[-1] - ux[0])
    inner = max(min(len(ux) // 4, MAX_KNOTS), 1)
    knots = np.concatenate([np.zeros(3), np.linspace(0.0, 1.0, inner + 2), np.ones(3)])
    basis = interpolate.BSpline.design_matrix((x - lo) / scale, knots, 3).toarray()
    m = basis.shape[1]
    d2 = np.diff(np.eye(m), n=2, axis=0)
    btb, bty, pen = basis.T @ basis, basis.T @ y, d2.T @ d2
    best_gcv, best_coef = n * rss0 / (n - GCV_GAMMA) ** 2, None
    for lam in LAMBDAS:
        a = btb + lam * pen + 1e-10 * np.eye(m)
        coef = np.linalg.solve(a, bty)
        edf = float(np.trace(np.linalg.solve(a, btb)))
        rss = float(((y - basis @ coef) ** 2).sum())
        gcv = n * rss / max(n - GCV_GAMMA * edf, 1e-9) ** 2
        if gcv < best_gcv:
            best_gcv, best_coef = gcv, coef
    if best_coef is None:
        return lambda t: np.full(np.shape(t), mean)
    coef = best_coef

    def fitted(t: np.ndarray) -> np.ndarray:
        u = np.clip((np.asarray(t, dtype=np.float64) - lo) / scale, 0.0, 1.0)
        return interpolate.BSpline(knots, coef, 3)(u)

    return fitted


def incremental(values: np.ndarray) -> np.ndarray:
    """Each option's value minus the best-on-average option's, draw by draw."""
    v = np.asarray(values, dtype=np.float64)
    return v - v[int(np.argmax(v.mean(axis=1)))]


def evppi(values: np.ndarray, parameter: np.ndarray) -> tuple[float, np.ndarray]:
    """(EVPPI of one parameter, fitted[o, d]) by the regression method (Strong, Oakley &
    Brennan 2014): with g_o(θ) the smoothed E[value_o | θ], EVPPI = mean_d max_o g_o(θ_d)
    − max_o mean_d g_o(θ_d).

    What is smoothed is each option's value minus that of the best option on average
    (the incremental net benefit of Strong et al.): EVPPI is unchanged by subtracting
    anything common to all options in a draw, and options that move together (a large
    common swing, small differences) would otherwise be fitted with different smoothness
    and show differences that are not in the data. The estimate is kept within [0, EVPI],
    the bounds the true value obeys (noise can push an estimate outside them)."""
    v = np.asarray(values, dtype=np.float64)
    centred = incremental(v)
    fitted = np.vstack([fit(parameter, row)(parameter) for row in centred])
    value = float(fitted.max(axis=0).mean() - fitted.mean(axis=1).max())
    return min(max(value, 0.0), evpi(v)), fitted


def voi(values: np.ndarray, draws: pd.DataFrame) -> pd.DataFrame:
    """Single-parameter EVPPI for each column of `draws` (rows = draws, in the order of
    values' columns), largest first, with its share of the EVPI and the R² of the fits
    (how much of the options' differences the parameter alone explains)."""
    v = np.asarray(values, dtype=np.float64)
    total = evpi(v)
    rows = []
    diff = incremental(v)  # what separates the options, draw by draw (as fitted)
    den = float(((diff - diff.mean(axis=1, keepdims=True)) ** 2).sum())
    for name in draws.columns:
        theta = draws[name].to_numpy(dtype=np.float64)
        value, fitted = evppi(v, theta)
        num = float(((fitted - fitted.mean(axis=1, keepdims=True)) ** 2).sum())
        rows.append({"parameter": name, "evppi": value,
                     "share_of_evpi": value / total if total > 0 else math.nan,
                     "r2": num / den if den > 0 else math.nan})
    out = pd.DataFrame(rows, columns=["parameter", "evppi", "share_of_evpi", "r2"])
    return out.sort_values("evppi", ascending=False, kind="stable").reset_index(drop=True)


def switch_point(values: np.ndarray, parameter: np.ndarray, grid: int = 512
                 ) -> float | None:
    """The parameter value, nearest its median, at which the option with the best fitted
    value changes (None when one option is best over the whole range drawn): where a
    pilot trial's answer would flip the decision."""
    theta = np.asarray(parameter, dtype=np.float64)
    v = np.asarray(values, dtype=np.float64)
    ux = np.unique(theta)
    if len(ux) < 2:
        return None
    xs = np.linspace(ux[0], ux[-1], grid)
    centred = incremental(v)  # as in evppi
    curves = np.vstack([fit(theta, row)(xs) for row in centred])
    arg = np.argmax(curves, axis=0)
    changes = np.flatnonzero(arg[1:] != arg[:-1])
    if len(changes) == 0:
        return None
    points = (xs[changes] + xs[changes + 1]) / 2
    return float(points[np.argmin(np.abs(points - np.median(theta)))])
