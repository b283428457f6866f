"""`nudgesim sweep EXPERIMENT.toml`: run (or resume) a sweep and write its tables."""

from __future__ import annotations

import argparse
import sys

from ..experiment import Experiment
from .options import add_run_options, parse_run_args


def main(argv: list[str]) -> int:
    """`nudgesim sweep EXPERIMENT.toml`: run (or resume) a sweep and write its tables."""
    p = argparse.ArgumentParser(prog="nudgesim sweep", description=main.__doc__)
    add_run_options(p)
    p.add_argument(
        "--dry-run", action="store_true", help="validate and show the design, run nothing"
    )
    p.add_argument(
        "--wait",
        action="store_true",
        help="if another sweep is writing the folder, wait for it (default: exit 2 at once)",
    )
    args = parse_run_args(p, argv)
    exp = Experiment.from_toml(
        args.experiment, replicates=args.replicates, samples=args.samples, seed=args.seed
    )
    tasks = exp.tasks()  # validates every design point
    if args.dry_run:
        print(exp.design_table().to_string(index=False))
        print(f"{len(exp.points())} points x {exp.replicates} replicates = {len(tasks)} runs")
        return 0
    res = exp.run(
        out=args.out,
        executor=args.executor,
        workers=args.workers,
        scheduler=args.scheduler,
        progress=False if args.no_progress else None,
        retry_errors=args.retry_errors,
        wait=args.wait,
        dask_timeout=args.dask_timeout,
    )
    m = res.manifest
    r = m["runs"]
    print(
        f"{exp.name}: {m['design']['points']} points x {exp.replicates} replicates = {r['total']} "
        f"runs ({r['computed_now']} computed now, {r['reused_from_store']} reused, "
        f"{r['errors']} errors) in {m['timings']['wall_s']:.1f} s"
    )
    print(f"  wrote {res.out}/ (runs.parquet, summary.parquet, manifest.json, runs/)")
    if r["errors"]:
        first = res.runs.loc[res.runs["status"] == "error", "error"].iloc[0]
        print(f"  {r['errors']} run(s) failed, e.g.: {first}\n  their rows say why (runs.parquet: "
              "status, error); the same command with --retry-errors runs them again",
              file=sys.stderr)
    return 0
