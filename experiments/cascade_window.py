"""The cascade window (Watts 2002, PNAS 99:5766, Fig. 1) with nudgesim's threshold rule.

One random resident adopts on an Erdős–Rényi graph; everyone else adopts once the adopted
share of their neighbours reaches a common threshold phi. Global cascades happen only inside
a window of mean degree z: below it the graph is fragmented, above it too few residents are
"vulnerable" (degree <= 1/phi) to carry the cascade. The window narrows as phi rises.

The dashed lines are the analytic window of Watts' generating-function condition for
Poisson degrees, sum_k k(k-1) p_k [k <= 1/phi] = z; the markers are simulations.

    .venv/bin/python experiments/cascade_window.py            # ~2 min on 2 cores
    .venv/bin/python experiments/cascade_window.py --quick    # seconds (tests)
"""

from __future__ import annotations

import argparse
import math
from pathlib import Path

import numpy as np

import nudgesim as ns
from nudgesim.parallel import EXECUTORS
from nudgesim.result import save_figure, write_atomic

GLOBAL = 0.01  # a cascade is "global" when it reaches >= 1% of residents (assumption; Watts
#               uses a finite share of an infinite graph, 1% is our finite-n stand-in)


def analytic_window(phi: float, z: np.ndarray) -> np.ndarray:
    """True where Watts' cascade condition holds for a Poisson(z) degree distribution."""
    kmax = math.floor(1.0 / phi + 1e-12)
    out = np.zeros_like(z, dtype=bool)
    for i, zz in enumerate(z):
        s = sum(k * (k - 1) * math.exp(-zz) * zz**k / math.factorial(k) for k in range(2, kmax + 1))
        out[i] = s > zz
    return out


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    p.add_argument("--out", default="results/cascade_window")
    p.add_argument("--quick", action="store_true", help="tiny settings for tests")
    p.add_argument("--executor", choices=EXECUTORS, default="processes")
    p.add_argument("--workers", type=int)
    p.add_argument("--seed", type=int, default=2002)
    args = p.parse_args(argv)
    out = Path(args.out)

    if args.quick:
        n, reps, zs, phis = 1000, 4, [1.0, 2.0, 4.0, 8.0], [0.18, 0.24]
    else:
        n, reps, zs, phis = (
            10_000,
            50,
            [float(z) for z in np.arange(0.5, 10.01, 0.5)],
            [0.12, 0.18, 0.24],
        )
    base = ns.Scenario.from_dict(
        {
            "name": "cascade_window",
            "steps": 80,
            "initial_adopters": 1,  # one random seed
            "population": {"size": n},
            "network": {"kind": "erdos_renyi", "mean_degree": 4.0},
            "rule": {"kind": "threshold", "threshold": 0.18},
        }
    )
    exp = ns.Experiment(
        base,
        levers={},
        uncertainties={"rule.threshold": phis, "network.mean_degree": zs},
        replicates=reps,
        seed=args.seed,
        outcomes=["final_adoption"],
        name="cascade_window",
    )
    res = exp.run(out=out / "sweep", executor=args.executor, workers=args.workers)
    runs = res.runs.rename(columns={"rule.threshold": "phi", "network.mean_degree": "z"})
    runs["global"] = runs["final_adoption"] >= GLOBAL
    table = (
        runs.groupby(["phi", "z"])
        .agg(
            runs=("global", "size"),
            cascade_frequency=("global", "mean"),
            mean_size_if_global=(
                "final_adoption",
                lambda s: s[s >= GLOBAL].mean() if (s >= GLOBAL).any() else np.nan,
            ),
        )
        .reset_index()
    )
    write_atomic(out / "cascade_window.csv", table.to_csv(index=False))

    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(1, 2, figsize=(10, 4), dpi=100, sharex=True)
    zfine = np.linspace(0.2, max(zs) + 0.5, 400)
    colors = plt.cm.viridis(np.linspace(0.1, 0.85, len(phis)))
    for phi, color in zip(phis, colors, strict=False):
        t = table[table["phi"] == phi]
        axes[0].plot(t["z"], t["cascade_frequency"], "o-", color=color, ms=4, label=f"φ = {phi}")
        axes[1].plot(t["z"], t["mean_size_if_global"], "s-", color=color, ms=4, label=f"φ = {phi}")
        inside = analytic_window(phi, zfine)
        if inside.any():
            lo, hi = zfine[inside][0], zfine[inside][-1]
            for ax in axes:
                ax.axvline(lo, color=color, ls="--", lw=0.9)
                ax.axvline(hi, color=color, ls="--", lw=0.9)
    axes[0].set_ylabel("frequency of global cascades (share of runs)")
    axes[1].set_ylabel("mean size of global cascades (share of residents)")
    for ax in axes:
        ax.set_xlabel("mean degree z (Erdős–Rényi)")
        ax.set_ylim(-0.02, 1.02)
        ax.grid(alpha=0.3)
    axes[0].legend(title="threshold", fontsize=8)
    fig.suptitle(
        f"Cascade window: one random seed, n = {n:,}, {reps} runs per point; dashed = analytic window "
        "(Watts 2002)",
        fontsize=9,
    )
    fig.tight_layout()
    save_figure(fig, out / "cascade_window.png")
    print(table.to_string(index=False, float_format=lambda x: f"{x:.3f}"))
    print(
        f"wrote {out}/cascade_window.png and .csv ({res.manifest['timings']['wall_s']:.0f} s of runs)"
    )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
