"""`nudgesim plan SCENARIO.toml --budget 50000 --menu MENU.toml`."""

from __future__ import annotations

import argparse
from pathlib import Path

import pandas as pd

from ..errors import UsageError
from ..files import check_replaceable, output_dir
from ..parallel import resolve_dask_timeout
from ..planning import PLAN_FILES, TARGETS, Menu, format_table, plan
from ..planning.budget import format_decision
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
    p.add_argument("--draws", type=int, help="run the top portfolios on K parameter draws "
                   "(priors, or --posterior rows): decisions under uncertainty")
    p.add_argument("--evidence", choices=["at_scale", "published"],
                   help="the priors' evidence level (default: the scenario's, else at_scale)")
    p.add_argument("--posterior", help="CSV of parameter draws (one column per parameter, "
                   "e.g. a calibration's posterior or a draws.csv) instead of the priors")
    p.add_argument("--ensemble-top", type=int, default=12,
                   help="how many of the best portfolios the ensemble runs (default 12)")
    p.add_argument("--out", help="results folder (default results/plan-<scenario>)")
    p.add_argument("--report", action="store_true", help="also write report.html / report.md")
    args = parse_args(p, argv)
    if args.dask_timeout is not None:
        resolve_dask_timeout(args.dask_timeout)  # a bad value is refused before any run
    posterior = read_posterior(args.posterior) if args.posterior else None
    sc = load_scenario(args.scenario, seed=args.seed, steps=args.steps)
    menu = Menu.from_toml(args.menu)
    out = Path(args.out) if args.out else output_dir(f"plan-{sc.name}")
    check_replaceable(out, refuse("plan.json", PLAN_FILES, "plan"))  # before the runs
    result = plan(sc, menu, args.budget, target=args.target, replicates=args.replicates,
                  max_exhaustive=args.max_exhaustive, top=args.top, executor=args.executor,
                  workers=args.workers, scheduler=args.scheduler,
                  dask_timeout=args.dask_timeout, draws=args.draws, evidence=args.evidence,
                  posterior=posterior, ensemble_top=args.ensemble_top)
    result.save(out)
    m = result.meta
    print(m["question"])
    print(f"  {m['portfolios_total']:,} portfolios, {m['portfolios_feasible']:,} fit the budget "
          f"by the screen, {m['portfolios_evaluated']} evaluated ({m['method']}) with "
          f"{m['replicates']} paired replicates each")
    print(format_table(result.table, m, rows=10))
    if (decision := format_decision(result)):
        print(decision)
    if args.report:
        from ..report import write_report

        write_report(out)
    extra = ", ensemble.csv, draws.csv, decision.csv, voi.csv, ensemble.json" if "ensemble" in m else ""
    print(f"  wrote {out}/ (plan.csv, plan.json, comparison.csv, runs.csv, curves.csv, "
          f"wards.csv, scenario.toml{extra}{', report.html, report.md' if args.report else ''})")
    return 0


def read_posterior(path: str) -> pd.DataFrame:
    """A posterior or draws CSV as a table of parameter columns (a `draw` column, as in a
    saved draws.csv, is the row number and is dropped)."""
    try:
        table = pd.read_csv(path)
    except FileNotFoundError:
        raise UsageError(f"--posterior: file not found: {path}") from None
    except (OSError, UnicodeDecodeError, pd.errors.ParserError, pd.errors.EmptyDataError) as err:
        raise UsageError(f"--posterior: cannot read {path} as CSV ({err}); allowed: a CSV "
                         "with one column per parameter") from None
    return table.drop(columns=["draw"], errors="ignore")
