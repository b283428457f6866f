"""`nudgesim sensitivity EXPERIMENT.toml --outcome final_adoption --method sobol`."""

from __future__ import annotations

import argparse

import pandas as pd

from ..experiment import Experiment
from ..sensitivity import METHODS, sensitivity
from .options import add_run_options, parse_run_args


def main(argv: list[str]) -> int:
    """`nudgesim sensitivity EXPERIMENT.toml --outcome final_adoption --method sobol`."""
    p = argparse.ArgumentParser(prog="nudgesim sensitivity", description=main.__doc__)
    add_run_options(p, default_out="results/<experiment name>_<method>")
    p.add_argument("--outcome", default="final_adoption", help="summary field to analyse")
    p.add_argument("--method", choices=METHODS, default="sobol")
    p.add_argument("--no-plot", action="store_true")
    args = parse_run_args(p, argv)
    exp = Experiment.from_toml(args.experiment, seed=args.seed)
    res = sensitivity(
        exp,
        outcome=args.outcome,
        method=args.method,
        samples=args.samples,
        replicates=args.replicates,
        out=args.out,
        executor=args.executor,
        workers=args.workers,
        scheduler=args.scheduler,
        progress=False if args.no_progress else None,
        plot=not args.no_plot,
        dask_timeout=args.dask_timeout,
    )
    with pd.option_context("display.width", 120, "display.max_colwidth", 50):
        print(res.indices.drop(columns=["outcome"]).round(3).to_string(index=False))
    m = res.sweep.manifest
    print(
        f"{len(res.sweep.summary)} points x {exp.replicates} replicates "
        f"({m['runs']['computed_now']} computed now) in {m['timings']['wall_s']:.1f} s; "
        f"wrote {res.sweep.out}/sensitivity_{args.method}_{args.outcome}.csv"
        + ("" if args.no_plot else " and .png")
    )
    return 0
