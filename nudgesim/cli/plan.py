"""`nudgesim plan SCENARIO.toml --budget 50000 --menu MENU.toml`."""

from __future__ import annotations

import argparse
from pathlib import Path

from ..files import check_replaceable, output_dir
from ..parallel import resolve_dask_timeout
from ..planning import PLAN_FILES, TARGETS, Menu, format_table, plan
from ..planning.comparison import refuse
from . import load_scenario, parse_args
from .options import add_dask_timeout_option


def main(argv: list[str]) -> int:
    """`nudgesim plan`: search portfolios, print the ranked table, write a results folder."""
    p = argparse.ArgumentParser(prog="nudgesim plan", description=(plan.__doc__ or "").split("\n")[0])
    p.add_argument("scenario", help="scenario TOML")
    p.add_argument("--budget", type=float, required=True, help="£ available")
    p.add_argument("--menu", required=True, help="menu TOML of candidate nudges")
    p.add_argument("--target", default="adoption", choices=list(TARGETS))
    p.add_argument("--replicates", type=int, default=10)
    p.add_argument("--max-exhaustive", type=int, default=64)
    p.add_argument("--top", type=int, default=24)
    p.add_argument("--steps", type=int, help="override the scenario's steps")
    p.add_argument("--seed", type=int, help="override the scenario's seed")
    p.add_argument("--executor", default="processes", choices=["serial", "processes", "dask"])
    p.add_argument("--workers", type=int)
    p.add_argument("--scheduler", help="Dask scheduler address (executor dask)")
    add_dask_timeout_option(p)
    p.add_argument("--out", help="results folder (default results/plan-<scenario>)")
    p.add_argument("--report", action="store_true", help="also write report.html / report.md")
    args = parse_args(p, argv)
    if args.dask_timeout is not None:
        resolve_dask_timeout(args.dask_timeout)  # a bad value is refused before any run
    sc = load_scenario(args.scenario, seed=args.seed, steps=args.steps)
    menu = Menu.from_toml(args.menu)
    out = Path(args.out) if args.out else output_dir(f"plan-{sc.name}")
    check_replaceable(out, refuse("plan.json", PLAN_FILES, "plan"))  # before the runs
    result = plan(sc, menu, args.budget, target=args.target, replicates=args.replicates,
                  max_exhaustive=args.max_exhaustive, top=args.top, executor=args.executor,
                  workers=args.workers, scheduler=args.scheduler,
                  dask_timeout=args.dask_timeout)
    result.save(out)
    m = result.meta
    print(m["question"])
    print(f"  {m['portfolios_total']:,} portfolios, {m['portfolios_feasible']:,} fit the budget "
          f"by the screen, {m['portfolios_evaluated']} evaluated ({m['method']}) with "
          f"{m['replicates']} paired replicates each")
    print(format_table(result.table, m, rows=10))
    if args.report:
        from ..report import write_report

        write_report(out)
    print(f"  wrote {out}/ (plan.csv, plan.json, comparison.csv, runs.csv, curves.csv, "
          f"wards.csv, scenario.toml{', report.html, report.md' if args.report else ''})")
    return 0
