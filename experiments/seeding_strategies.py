"""Whom should the council recruit as peer ambassadors? Five ways to pick the same number
(so the same cost) on the default borough, compared by adoption after one year.

Strategies (nudgesim.network targeting helpers): at random, by degree, by (sampled)
betweenness, by k-core number, and round-robin across detected communities. Every arm runs
the whole default campaign; "none" runs it without ambassadors. Replicate r of every arm
shares its seed (common random numbers), so the extra adopters of an arm over "none" are
paired differences, reported with 95% t-intervals across replicates.

Betweenness uses the scenario default: Brandes path counting from 256 sampled source
residents (Brandes & Pich 2007), about a second on 20,000 residents.

    .venv/bin/python experiments/seeding_strategies.py            # a few minutes on 2 cores
    .venv/bin/python experiments/seeding_strategies.py --quick
"""

from __future__ import annotations

import argparse
from pathlib import Path

import numpy as np
import pandas as pd
from scipy import stats

import nudgesim as ns
from nudgesim.parallel import EXECUTORS
from nudgesim.result import save_figure, write_atomic

ROOT = Path(__file__).resolve().parent
STRATEGIES = ["random", "degree", "betweenness", "kcore", "community"]


def paired(diff: np.ndarray) -> tuple[float, float, float]:
    """Mean and 95% t-interval of paired differences across replicates."""
    m = float(np.mean(diff))
    if len(diff) < 2:
        return m, float("nan"), float("nan")
    half = float(stats.t.ppf(0.975, len(diff) - 1) * np.std(diff, ddof=1) / np.sqrt(len(diff)))
    return m, m - half, m + half


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    p.add_argument("--out", default="results/seeding_strategies")
    p.add_argument("--quick", action="store_true", help="tiny settings for tests")
    p.add_argument("--executor", choices=EXECUTORS, default="processes")
    p.add_argument("--workers", type=int)
    p.add_argument("--seed", type=int, default=31)
    p.add_argument("--ambassadors", type=int, default=200, help="ambassadors per arm (equal cost)")
    args = p.parse_args(argv)
    out = Path(args.out)
    base = ns.Scenario.from_toml(ROOT / "scenarios" / "borough.toml")
    reps, count = 10, args.ambassadors
    if args.quick:
        base = base.replace(population=base.to_dict()["population"] | {"size": 2000}, steps=20)
        reps, count = 2, min(count, 20)
    amb = next(n for n in base.nudges if n.kind == "ambassadors")
    arms = [{"strategy": "random", "count": 0}] + [
        {"strategy": s, "count": count}
        for s in STRATEGIES
    ]
    exp = ns.Experiment(
        base,
        levers={
            f"nudges[{amb.label}].targeting": {"values": arms, "labels": ["none", *STRATEGIES]}
        },
        replicates=reps,
        seed=args.seed,
        outcomes=["final_adopters", "total_cost"],
        per_step=["adopters"],
        name="seeding_strategies",
    )
    res = exp.run(out=out / "sweep", executor=args.executor, workers=args.workers)
    runs = res.runs.rename(columns={f"nudges[{amb.label}].targeting": "ambassadors"})
    final = runs[runs["step"] == base.steps].pivot(
        index="replicate", columns="ambassadors", values="adopters"
    )
    cost = runs[runs["step"] == base.steps].groupby("ambassadors")["total_cost"].mean()
    rows = []
    for s in STRATEGIES:
        m, lo, hi = paired((final[s] - final["none"]).to_numpy(dtype=float))
        rows.append(
            {
                "strategy": s,
                "ambassadors": count,
                "extra_adopters_mean": m,
                "extra_adopters_ci_low": lo,
                "extra_adopters_ci_high": hi,
                "final_adoption_mean": final[s].mean() / base.population.size,
                "extra_cost_vs_none": cost[s] - cost["none"],
            }
        )
    table = pd.DataFrame(rows)
    write_atomic(out / "seeding_strategies.csv", table.to_csv(index=False))

    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(1, 2, figsize=(10, 4), dpi=100)
    y = np.arange(len(table))
    axes[0].barh(
        y,
        table["extra_adopters_mean"],
        color="#2ca02c",
        xerr=[
            table["extra_adopters_mean"] - table["extra_adopters_ci_low"],
            table["extra_adopters_ci_high"] - table["extra_adopters_mean"],
        ],
        capsize=3,
    )
    axes[0].set_yticks(y, table["strategy"])
    axes[0].axvline(0, color="grey", lw=0.8)
    axes[0].set_xlabel(
        f"extra adopters after {base.steps} weeks vs no ambassadors\n(mean, 95% CI, paired)"
    )
    axes[0].set_title(
        f"{count} ambassadors per arm: extra cost vs none £{table['extra_cost_vs_none'].mean():,.0f}",
        fontsize=9,
    )
    curves = runs.groupby(["ambassadors", "step"])["adopters"].mean().unstack(0)
    for s in STRATEGIES:
        axes[1].plot(curves.index, curves[s] - curves["none"], label=s)
    amb_stop = min(amb.stop(base.steps), base.steps)
    axes[1].axvspan(amb.start, amb_stop, color="grey", alpha=0.12, label="ambassadors active")
    axes[1].set_xlabel("week")
    axes[1].set_ylabel("extra adopters vs no ambassadors (mean)")
    axes[1].legend(fontsize=8)
    axes[1].grid(alpha=0.3)
    fig.suptitle(
        f"Choosing peer ambassadors on the default borough ({base.population.size:,} households, "
        f"{reps} paired replicates)",
        fontsize=9,
    )
    fig.tight_layout()
    save_figure(fig, out / "seeding_strategies.png")
    print(table.to_string(index=False, float_format=lambda x: f"{x:,.1f}"))
    print(f"wrote {out}/seeding_strategies.png and .csv")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
