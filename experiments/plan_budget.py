"""Worked example of the planning tools on the SYNTHETIC borough.

1. plan: which nudges from experiments/menus/borough.toml, within £50,000? (+ report)
2. trial: how would an evaluator see the bin-day text — residents vs whole wards randomised?
3. calibrate: (a) a one-off norm message moving 35% -> 44% (Goldstein et al. 2008) and
   (b) +1.4 pp at scale (DellaVigna & Linos 2022); (c) the logistic intercept from a
   monthly series (experiments/data/borough_monthly_synthetic.csv, synthetic).
4. decide under uncertainty: the plan again with the top portfolios on parameter draws
   from the at-scale priors (32 draws x 4 replicates; --quick: 8 x 2): p_best, regret,
   robust choices, value of information and the pilot, with the decision figures.

Run: .venv/bin/python experiments/plan_budget.py [--quick] [--out results/plan_budget]
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import nudgesim as ns
from nudgesim.planning import Menu, ObservedSeries, TrialEffect, format_table
from nudgesim.planning.budget import format_decision
from nudgesim.planning.figures import decision_figures
from nudgesim.report import write_report

HERE = Path(__file__).parent


def norm_message_scenario(borough: ns.Scenario, steps: int) -> ns.Scenario:
    """The borough without nudges, 35% taking part at the start (Goldstein's control rate)."""
    data = borough.to_dict()
    data["nudges"] = []
    data["population"]["wards"] = [{"name": w["name"]} for w in data["population"]["wards"]]
    data["initial_adopters"] = 0.35
    data["steps"] = steps
    return ns.Scenario.from_dict(data, borough.base_dir)


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--quick", action="store_true", help="fewer replicates (a smoke run)")
    p.add_argument("--out", default="results/plan_budget")
    p.add_argument("--executor", default="processes", choices=["serial", "processes", "dask"])
    args = p.parse_args()
    reps = 4 if args.quick else 10
    out = Path(args.out)
    kw = {"executor": args.executor}
    borough = ns.Scenario.from_toml(HERE / "scenarios" / "borough.toml")

    # 1. the budget planner and its report
    menu = Menu.from_toml(HERE / "menus" / "borough.toml")
    result = ns.plan(borough, menu, 50_000, target="adoption", replicates=reps, **kw)
    result.save(out / "plan")
    html, _ = write_report(out / "plan")
    print(result.meta["question"])
    print(format_table(result.table, result.meta, rows=5))
    print(f"  report: {html}\n")

    # 2. trial emulation: the same nudge, randomised by resident and by ward
    for unit in ("resident", "ward"):
        t = ns.trial(borough, "bin-day text", unit=unit, replicates=reps, **kw)
        s = t.summary
        print(f"trial of '{s['nudge']}' randomised by {unit} ({s['n_treated']} treated, "
              f"{s['n_control']} control): estimate {100 * s['estimate']:+.2f} pp "
              f"(mean SE {100 * s['mean_se']:.2f}), true effect {100 * s['true_effect']:+.2f} pp,"
              f" bias {100 * s['bias']:+.2f} pp, power {s['power']:.0%}")
        t.save(out / f"trial_{unit}")
    print()

    # 3. calibration against published effects and an observed series
    base = norm_message_scenario(borough, steps=8)
    message = {"kind": "reminder", "label": "norm message", "start": 1, "half_life": 4.0}
    for label, target in (
        ("academic: 35% -> 44% (Goldstein et al. 2008)",
         TrialEffect(nudge=message, at_step=4, control=0.35, treated=0.44,
                     label="Goldstein et al. 2008 Exp. 1")),
        ("at scale: +1.4 pp (DellaVigna & Linos 2022)",
         TrialEffect(nudge=message, at_step=4, effect=0.014,
                     label="DellaVigna & Linos 2022, nudge units")),
    ):
        cal = ns.calibrate(base, target, {"nudge.boost": (0.0, 8.0)}, replicates=reps,
                           posterior=False, **kw)  # the point fit answers this question
        lo, hi = cal.interval["nudge.boost"]
        print(f"calibrated message strength, {label}: boost {cal.parameters['nudge.boost']:.2f} "
              f"log-odds (95% interval {lo:.2f}–{hi:.2f}); simulated effect "
              f"{100 * cal.fit['simulated'].iloc[0]:+.2f} pp")
        cal.save(out / f"calibrated_{'academic' if '44' in label else 'at_scale'}.toml")
    series = ObservedSeries.from_csv(HERE / "data" / "borough_monthly_synthetic.csv")
    cal = ns.calibrate(borough, series, {"rule.adopt_intercept": (-8.0, -6.0)},
                       replicates=reps, **kw)
    lo, hi = cal.interval["rule.adopt_intercept"]
    print(f"calibrated adopt_intercept to the synthetic monthly series: "
          f"{cal.parameters['rule.adopt_intercept']:.3f} (95% interval {lo:.3f} to {hi:.3f}; "
          f"the synthetic truth is -6.8); RMSE {100 * cal.meta['rmse']:.2f} pp")
    clo, chi = cal.credible["rule.adopt_intercept"]
    print(f"  posterior (emulator + emcee, {len(cal.posterior)} draws): 90% credible interval "
          f"{clo:.3f} to {chi:.3f}")
    cal.save(out / "calibrated_borough.toml")
    for w in cal.warnings:
        print(f"  warning: {w}")

    # 4. the same question with what we do not know about the parameters
    draws, ens_reps = (8, 2) if args.quick else (32, 4)
    ens = ns.plan(borough, menu, 50_000, target="adoption", replicates=ens_reps, draws=draws,
                  **kw)
    ens.save(out / "plan_ensemble")
    figures = decision_figures(out / "plan_ensemble")
    print(f"\n{ens.meta['question']}")
    print(format_table(ens.table, ens.meta, rows=5))
    print(format_decision(ens))
    print(f"  figures: {', '.join(p.name for p, _ in figures)}")
    (out / "summary.json").write_text(json.dumps({
        "plan_top": result.table.head(3)[
            ["variant", "extra_cost", "extra_adopters"]].to_dict("records"),
        "ensemble": {k: ens.meta["ensemble"][k] for k in (
            "draws", "replicates", "evpi", "best_expected", "minimax_regret", "best_p10")},
    }, indent=2, default=str))


if __name__ == "__main__":
    main()
