"""The boomerang of descriptive norms and its fix (Schultz et al. 2007, Psych. Science 18:429).

Every household in the default borough gets a ward feedback card every 4 weeks for a year
("x% of your ward separate their food waste"), with or without an approving message (a
smiley: the injunctive norm). Residents are split by whether the norm they perceive among
their own contacts at week 0 is above or below the ward rate the card shows. The card pulls
everyone's perceived norm toward the shown rate, so residents *above* it are pulled down
(the boomerang) and those *below* it pulled up. In nudgesim the injunctive message stops the
downward pull for adopters only (scenario.NormFeedback), which is how Schultz et al. read
their result: it keeps those doing well from backsliding.

Outcomes, as differences from the same borough with no card (common random numbers, paired
by replicate, 95% t-intervals): adoption = share of week-0 non-adopters adopting at week 52;
lapse = share of week-0 adopters who lapsed at least once during the year.

    .venv/bin/python experiments/norm_boomerang.py            # ~1 min on 2 cores
    .venv/bin/python experiments/norm_boomerang.py --quick
"""

from __future__ import annotations

import argparse
from pathlib import Path

import numpy as np
import pandas as pd
from scipy import stats

import nudgesim as ns
from nudgesim.engine import Engine
from nudgesim.experiment import replicate_seed
from nudgesim.nudges import Effects
from nudgesim.parallel import EXECUTORS, RunOptions, map_runs
from nudgesim.result import save_figure, write_atomic

ROOT = Path(__file__).resolve().parent
ARMS = {"none": None, "descriptive": False, "descriptive + injunctive": True}


def one_run(task: dict) -> list[dict]:
    """Run one arm and replicate; return adoption and lapse by group (picklable, top level)."""
    sc = ns.Scenario.from_dict(task["scenario"])
    eng = Engine(sc)
    n = eng.n
    norm0 = eng.perceived_norm(Effects(n))
    shown0 = eng.ward_rates()[eng.population.ward]
    above = norm0 > shown0
    adopted0 = eng.adopted.copy()
    lapsed = np.zeros(n, dtype=bool)
    while eng.t < eng.steps:
        eng.step()
        lapsed |= adopted0 & ~eng.adopted
    rows = []
    for group, mask in (("above the shown norm", above), ("below the shown norm", ~above)):
        non, ado = mask & ~adopted0, mask & adopted0
        rows.append(
            {
                "arm": task["arm"],
                "replicate": task["replicate"],
                "group": group,
                "residents": int(mask.sum()),
                "adoption": float(eng.adopted[non].mean()) if non.any() else np.nan,
                "lapse": float(lapsed[ado].mean()) if ado.any() else np.nan,
            }
        )
    return rows


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    p.add_argument("--out", default="results/norm_boomerang")
    p.add_argument("--quick", action="store_true", help="tiny settings for tests")
    p.add_argument("--executor", choices=EXECUTORS, default="processes")
    p.add_argument("--workers", type=int)
    p.add_argument("--seed", type=int, default=2007)
    args = p.parse_args(argv)
    out = Path(args.out)
    base = ns.Scenario.from_toml(ROOT / "scenarios" / "borough.toml")
    reps = 20
    card = next(n for n in base.to_dict()["nudges"] if n["kind"] == "norm_feedback")
    base = base.replace(nudges=[])
    if args.quick:
        base = base.replace(population=base.to_dict()["population"] | {"size": 2000}, steps=16)
        reps = 3
    card |= {"start": 1, "every": 4, "reach": 1.0}
    card.pop("end", None)
    tasks = []
    for arm, injunctive in ARMS.items():
        nudges = [] if injunctive is None else [card | {"injunctive": injunctive}]
        for r in range(reps):
            sc = base.to_dict() | {"nudges": nudges, "seed": replicate_seed(args.seed, r)}
            tasks.append({"arm": arm, "replicate": r, "scenario": sc})
    options = RunOptions(args.executor, args.workers)
    rows = [row for res in map_runs(one_run, tasks, options) for row in res]
    runs = pd.DataFrame(rows)
    out.mkdir(parents=True, exist_ok=True)
    write_atomic(out / "runs.csv", runs.to_csv(index=False))

    ctrl = runs[runs["arm"] == "none"].set_index(["group", "replicate"])
    table = []
    for arm in list(ARMS)[1:]:
        t = runs[runs["arm"] == arm].set_index(["group", "replicate"])
        for group in ("above the shown norm", "below the shown norm"):
            for outcome in ("adoption", "lapse"):
                d = (t.loc[group, outcome] - ctrl.loc[group, outcome]).to_numpy(dtype=float) * 100
                m = d.mean()
                half = stats.t.ppf(0.975, len(d) - 1) * d.std(ddof=1) / np.sqrt(len(d))
                table.append(
                    {
                        "arm": arm,
                        "group": group,
                        "outcome": outcome,
                        "control_pct": 100 * ctrl.loc[group, outcome].mean(),
                        "change_pp": m,
                        "ci_low_pp": m - half,
                        "ci_high_pp": m + half,
                        "residents": int(t.loc[group, "residents"].mean()),
                    }
                )
    table = pd.DataFrame(table)
    write_atomic(out / "norm_boomerang.csv", table.to_csv(index=False))

    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(1, 2, figsize=(10, 4), dpi=100, sharey=False)
    colors = {"descriptive": "#ff7f0e", "descriptive + injunctive": "#1f77b4"}
    for ax, outcome, label in (
        (axes[0], "adoption", "adoption among week-0 non-adopters"),
        (axes[1], "lapse", "lapse among week-0 adopters"),
    ):
        for k, arm in enumerate(colors):
            t = table[(table["arm"] == arm) & (table["outcome"] == outcome)]
            x = np.arange(2) + (k - 0.5) * 0.36
            ax.bar(
                x,
                t["change_pp"],
                0.36,
                color=colors[arm],
                label=arm,
                yerr=[t["change_pp"] - t["ci_low_pp"], t["ci_high_pp"] - t["change_pp"]],
                capsize=3,
            )
        ax.set_xticks(
            np.arange(2),
            [
                "perceived norm above\nthe shown ward rate",
                "perceived norm below\nthe shown ward rate",
            ],
        )
        ax.axhline(0, color="grey", lw=0.8)
        ax.set_ylabel("change vs no card (percentage points)")
        ax.set_title(label, fontsize=9)
        ax.grid(axis="y", alpha=0.3)
    axes[0].legend(fontsize=8)
    fig.suptitle(
        f"Ward feedback cards every 4 weeks, {base.population.size:,} households, "
        f"{reps} paired replicates (bars: 95% CI)",
        fontsize=9,
    )
    fig.tight_layout()
    save_figure(fig, out / "norm_boomerang.png")
    print(table.to_string(index=False, float_format=lambda x: f"{x:.2f}"))
    print(f"wrote {out}/norm_boomerang.png and .csv")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
