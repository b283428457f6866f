"""`nudgesim run [SCENARIO]` and `nudgesim validate SCENARIO [--menu MENU]`."""

from __future__ import annotations

import argparse
import time
from pathlib import Path

from .. import limits, scenarios
from . import load_scenario


def cmd_run(args: argparse.Namespace) -> int:
    from .. import files
    from ..engine import simulate
    from ..result import check_run_folder

    limits.apply_memory_option(args)
    path = args.scenario or str(scenarios.path(scenarios.BOROUGH))
    sc = load_scenario(path, args.seed, args.steps)
    out = Path(args.out) if args.out else files.output_dir(sc.name)
    check_run_folder(out)  # a file, a foreign folder or the working folder: say so before a run
    t0 = time.perf_counter()
    res = simulate(sc)
    elapsed = time.perf_counter() - t0
    res.save(out, plot=not args.no_plot)
    s = res.summary
    print(f"{sc.name}: {s['residents']:,} residents, {s['ties']:,} ties, {s['steps']} "
          f"{sc.step_unit}s in {elapsed:.2f} s")
    print(f"  adoption {100 * s['initial_adoption']:.1f}% -> {100 * s['final_adoption']:.1f}% "
          f"(peak {100 * s['peak_adoption']:.1f}% at step {s['peak_step']}); "
          f"lowest ward {s['lowest_ward']} at {100 * (s['lowest_ward_adoption'] or 0):.1f}%")
    cpa = s["cost_per_adopter_gained"]
    print(f"  cost £{s['total_cost']:,.0f}; impact {s['total_impact']:,.2f} {s['impact_unit']}; "
          f"£ per adopter gained {'n/a' if cpa is None else f'{cpa:,.2f}'}")
    print(f"  wrote {out}/ (timeseries.parquet/.csv, by_ward.parquet, summary.json, "
          f"scenario.toml{'' if args.no_plot else ', adoption.png'})")
    return 0


def cmd_validate(args: argparse.Namespace) -> int:
    """Check what a run would check: the scenario, the residents CSV and graph file it names
    (read and built exactly as the run does: residents, ties, initial adopters, nudges'
    targets) and, with --menu, every option of a planning menu. No step is simulated."""
    from ..engine import Engine

    limits.apply_memory_option(args)
    sc = load_scenario(args.scenario)
    engine = Engine(sc)
    print(f"{args.scenario}: valid ({sc.name}, {len(sc.nudges)} nudges, {sc.steps} steps, "
          f"{engine.n:,} residents, {engine.network.n_ties:,} ties; needs "
          f"{limits.estimate_memory(sc, engine.n, engine.network.indices.size).describe()})")
    if args.menu:
        from ..planning import Menu

        options = Menu.from_toml(args.menu).check(sc, args.menu)
        print(f"{args.menu}: valid ({options} options)")
    return 0
