"""Sobol indices of final adoption for the default borough (Saltelli sampling via SALib).

Which of the things the council cannot control (network density, rule coefficients) and the
things it chooses (number of ambassadors, strength of the feedback card, SMS reach) drive
adoption after one year? First-order (S1) and total-order (ST) indices with 95% bootstrap
intervals. The factors and their ranges are in experiments/sweeps/borough_sobol.toml
(ranges are assumptions, roughly ±30% around the scenario defaults).

Default: N = 64 base samples x (8 factors + 2) = 640 points, 1 replicate each, on the full
20,000-household borough; replicate noise then shows up in the bootstrap intervals (raise
--replicates to average it out at proportional cost).

    .venv/bin/python experiments/sensitivity.py              # a few minutes on 2 cores
    .venv/bin/python experiments/sensitivity.py --quick      # N = 4, 2,000 households
"""

from __future__ import annotations

import argparse
from pathlib import Path

import nudgesim as ns
from nudgesim.parallel import EXECUTORS

ROOT = Path(__file__).resolve().parent


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    p.add_argument("--out", default="results/sensitivity")
    p.add_argument("--quick", action="store_true", help="tiny settings for tests")
    p.add_argument("--executor", choices=EXECUTORS, default="processes")
    p.add_argument("--workers", type=int)
    p.add_argument("--samples", type=int, default=64, help="Sobol base sample N (power of 2)")
    p.add_argument("--replicates", type=int, default=1)
    p.add_argument("--outcome", default="final_adoption")
    args = p.parse_args(argv)
    exp = ns.Experiment.from_toml(ROOT / "sweeps" / "borough_sobol.toml")
    samples, reps = args.samples, args.replicates
    if args.quick:
        sc = exp.scenario.replace(population=exp.scenario.to_dict()["population"] | {"size": 2000})
        exp = exp.replace(scenario=sc)
        samples, reps = 4, 1
    res = ns.sensitivity(
        exp,
        outcome=args.outcome,
        method="sobol",
        samples=samples,
        replicates=reps,
        out=Path(args.out),
        executor=args.executor,
        workers=args.workers,
    )
    print(res.indices.drop(columns="outcome").round(3).to_string(index=False))
    m = res.sweep.manifest
    print(
        f"{m['design']['points']} points x {reps} replicates in {m['timings']['wall_s']:.0f} s; "
        f"wrote {res.figure} and its .csv"
    )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
