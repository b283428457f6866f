"""League table: every nudge kind at a common budget on the default borough.

Each arm runs the default borough with ONE nudge sized to spend about the same budget
(default £20,000 for 20,000 households) and is compared with the same borough and seeds
without any nudge (common random numbers, paired by replicate). Reported: extra adopters at
week 52 with a 95% t-interval, the cost actually spent, and £ per extra adopter with the
interval implied by the extra adopters' interval (open-ended when it includes zero).

Unit costs are assumptions (order-of-magnitude, as in experiments/scenarios/borough.toml);
effect sizes are the scenario defaults (assumptions unless cited in nudgesim/scenario.py).
This ranks the *model's* assumptions, not the nudges in the real world.

    .venv/bin/python experiments/nudge_league_table.py            # ~1-2 min on 2 cores
    .venv/bin/python experiments/nudge_league_table.py --quick
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
WARD_GROUP_COST = (
    4000.0  # £ per ward for a community group (assumption: borough.toml's £12k / 3 wards)
)


def campaigns(budget: float, households: int, wards_by_baseline: list[str]) -> dict[str, dict]:
    """One nudge per kind, sized so its planned spend is about `budget` (see module doc)."""

    def count(unit: float, contacts: int, fixed: float = 0.0) -> int:
        return int(min(households, max(1, (budget - fixed) // (unit * contacts))))

    k_groups = max(1, int(budget // WARD_GROUP_COST))
    return {
        "information": {
            "kind": "information",
            "start": 1,
            "every": 18,
            "cost_per_contact": 0.35,
            "targeting": {"count": count(0.35, 3)},
        },  # 3 leaflet drops, £0.35 each
        "reminder": {
            "kind": "reminder",
            "start": 2,
            "every": 1,
            "cost_per_contact": 0.04,
            "targeting": {"count": count(0.04, 51)},
        },  # weekly SMS, £0.04 each
        "norm_feedback": {
            "kind": "norm_feedback",
            "start": 1,
            "every": 4,
            "injunctive": True,
            "cost_per_contact": 0.60,
            "targeting": {"count": count(0.60, 13)},
        },
        "ambassadors": {
            "kind": "ambassadors",
            "start": 8,
            "duration": 26,
            "cost_fixed": 5000.0,
            "cost_per_contact": 150.0,
            "targeting": {"strategy": "degree", "count": count(150.0, 1, 5000.0)},
        },
        "community_partnership": {
            "kind": "community_partnership",
            "start": 13,
            "duration": 16,
            "cost_fixed": k_groups * WARD_GROUP_COST,
            "wards": wards_by_baseline[:k_groups],
        },
        "default": {
            "kind": "default",
            "start": 1,
            "cost_per_contact": 8.0,  # caddy + delivery
            "targeting": {"adopted": False, "strategy": "ward", "count": count(8.0, 1)},
        },
        "pledge": {
            "kind": "pledge",
            "start": 1,
            "cost_per_contact": 2.0,  # doorstep card (assumption)
            "targeting": {"adopted": False, "count": count(2.0, 1)},
        },
        "canvassing": {
            "kind": "canvassing",
            "start": 1,
            "cost_per_contact": 4.0,  # ~4 doors/h at £16/h
            "targeting": {"adopted": False, "count": count(4.0, 1)},
        },
        # £0.50 a week per adopting household for 26 weeks; planned for ~35% adopting (assumption)
        "incentive": {
            "kind": "incentive",
            "start": 1,
            "duration": 26,
            "cost_per_adopter": 0.5,
            "targeting": {"count": count(0.5 * 26 * 0.35, 1)},
        },
    }


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    p.add_argument("--out", default="results/nudge_league_table")
    p.add_argument("--quick", action="store_true", help="tiny settings for tests")
    p.add_argument("--executor", choices=EXECUTORS, default="processes")
    p.add_argument("--workers", type=int)
    p.add_argument("--seed", type=int, default=12)
    p.add_argument("--budget", type=float, default=20_000.0, help="£ per arm for 20,000 households")
    p.add_argument("--replicates", type=int, default=10)
    args = p.parse_args(argv)
    out = Path(args.out)
    base = ns.Scenario.from_toml(ROOT / "scenarios" / "borough.toml").replace(nudges=[])
    reps = args.replicates
    if args.quick:
        base = base.replace(population=base.to_dict()["population"] | {"size": 2000})
        reps = 2
    n = base.population.size
    budget = args.budget * n / 20_000  # same budget per household whatever the population
    wards = sorted(base.population.wards, key=lambda w: w.baseline)
    arms = campaigns(budget, n, [w.name for w in wards])
    exp = ns.Experiment(
        base,
        levers={
            "nudges": {"values": [[]] + [[a] for a in arms.values()], "labels": ["none", *arms]}
        },
        replicates=reps,
        seed=args.seed,
        outcomes=["final_adopters", "total_cost", "total_contacts"],
        name="nudge_league_table",
    )
    res = exp.run(out=out / "sweep", executor=args.executor, workers=args.workers)
    runs = res.runs.rename(columns={"nudges": "nudge"})
    wide = runs.pivot(index="replicate", columns="nudge", values="final_adopters")
    rows = []
    for kind in arms:
        d = (wide[kind] - wide["none"]).to_numpy(dtype=float)
        m = d.mean()
        half = (
            stats.t.ppf(0.975, len(d) - 1) * d.std(ddof=1) / np.sqrt(len(d))
            if len(d) > 1
            else np.nan
        )
        cost = runs.loc[runs["nudge"] == kind, "total_cost"].mean()
        lo, hi = m - half, m + half
        rows.append(
            {
                "nudge": kind,
                "cost": cost,
                "contacts": runs.loc[runs["nudge"] == kind, "total_contacts"].mean(),
                "extra_adopters": m,
                "extra_ci_low": lo,
                "extra_ci_high": hi,
                "cost_per_extra_adopter": cost / m if m > 0 else np.inf,
                "cpea_ci_low": cost / hi if hi > 0 else np.inf,
                "cpea_ci_high": cost / lo if lo > 0 else np.inf,
            }
        )
    table = pd.DataFrame(rows).sort_values("cost_per_extra_adopter").reset_index(drop=True)
    write_atomic(out / "nudge_league_table.csv", table.to_csv(index=False))

    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(1, 2, figsize=(11, 4.2), dpi=100, sharey=True)
    y = np.arange(len(table))[::-1]
    axes[0].barh(
        y,
        table["extra_adopters"],
        color="#2ca02c",
        xerr=[
            table["extra_adopters"] - table["extra_ci_low"],
            table["extra_ci_high"] - table["extra_adopters"],
        ],
        capsize=3,
    )
    axes[0].set_yticks(
        y,
        [f"{k}  (£{c:,.0f})" for k, c in zip(table["nudge"], table["cost"], strict=False)],
        fontsize=8,
    )
    axes[0].axvline(0, color="grey", lw=0.8)
    axes[0].set_xlabel("extra adopters at week 52 vs no nudge (mean, 95% CI)")
    finite = table["cost_per_extra_adopter"].replace(np.inf, np.nan)
    cap = (
        float(np.nanmax(table["cpea_ci_high"].replace(np.inf, np.nan)))
        if finite.notna().any()
        else 1.0
    )
    cap = max(cap, float(np.nanmax(finite)) if finite.notna().any() else 1.0) * 1.1
    for yi, (_, r) in zip(y, table.iterrows(), strict=False):
        if np.isfinite(r["cost_per_extra_adopter"]):
            axes[1].plot(
                [r["cpea_ci_low"], min(r["cpea_ci_high"], cap)], [yi, yi], color="#1f77b4", lw=2
            )
            axes[1].plot(r["cost_per_extra_adopter"], yi, "o", color="#1f77b4")
            if not np.isfinite(r["cpea_ci_high"]):
                axes[1].annotate("→ ∞", (cap, yi), fontsize=7, va="center")
        else:
            axes[1].annotate("no gain", (0, yi), fontsize=8, va="center")
    axes[1].set_xlim(0, cap * 1.08)
    axes[1].set_xlabel("£ per extra adopter (95% interval)")
    for ax in axes:
        ax.grid(axis="x", alpha=0.3)
    fig.suptitle(
        f"One nudge at a time, ~£{budget:,.0f} each, default borough ({n:,} households, "
        f"{reps} paired replicates)",
        fontsize=9,
    )
    fig.tight_layout()
    save_figure(fig, out / "nudge_league_table.png")
    with pd.option_context("display.width", 160):
        print(table.to_string(index=False, float_format=lambda x: f"{x:,.1f}"))
    print(f"wrote {out}/nudge_league_table.png and .csv")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
