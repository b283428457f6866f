"""`nudgesim run [SCENARIO]` and `nudgesim validate SCENARIO [--menu MENU]`."""

from __future__ import annotations

import argparse
import time
from pathlib import Path

from .. import limits, scenarios
from ..errors import ScenarioError
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
    twin = not args.no_counterfactual
    if not args.no_plot:
        from ..plots import send_layout

        send_layout(sc, twin)  # the drawing helper lays out the figure meanwhile
    t0 = time.perf_counter()
    res = simulate(sc, counterfactual=twin)
    elapsed = time.perf_counter() - t0
    residents = args.residents
    res.save(out, plot=not args.no_plot, residents=residents)
    s = res.summary
    print(f"{sc.name}: {s['residents']:,} residents, {s['ties']:,} ties, {s['steps']} "
          f"{sc.step_unit}s in {elapsed:.2f} s ("
          + ("with the no-campaign twin)" if twin else "no-campaign twin skipped: totals only)"))
    totals = "  totals: " if twin else "  "
    print(f"{totals}adoption {100 * s['initial_adoption']:.1f}% -> "
          f"{100 * s['final_adoption']:.1f}% (peak {100 * s['peak_adoption']:.1f}% at step "
          f"{s['peak_step']}); lowest ward {s['lowest_ward']} at "
          f"{100 * (s['lowest_ward_adoption'] or 0):.1f}%"
          + (f"; lowest region {s['lowest_region']} at {100 * s['lowest_region_adoption']:.1f}%"
             if s.get("lowest_region") is not None else ""))
    cost = f"cost £{s['total_cost']:,.0f}; impact {s['total_impact']:,.2f} {s['impact_unit']}"
    if twin:
        print(f"          {cost}")
        for line in effect_lines(s, sc.step_unit):
            print(f"  {line}")
    else:
        cpa = s["cost_per_adopter_gained"]
        print(f"  {cost}; £ per adopter gained {'n/a' if cpa is None else f'{cpa:,.2f}'}")
    plots = "" if args.no_plot else ", adoption.png" + (", map.png" if sc.geography else "")
    regions = s.get("lowest_region") is not None
    tables = ("by_ward.parquet" + (", by_region.parquet" if regions else "")
              + (", residents.parquet" if residents else ""))
    print(f"  wrote {out}/ (timeseries.parquet/.csv, {tables}, summary.json, "
          f"scenario.toml{plots})")
    return 0


def _pounds(x: float) -> str:
    """£ per unit: pence matter below £100."""
    return f"£{x:,.2f}" if abs(x) < 100 else f"£{x:,.0f}"


def effect_lines(s: dict, step_unit: str) -> list[str]:
    """What the campaign added over its no-campaign twin, in words (a summary with the
    campaign_* keys); a £ per extra unit that does not exist says why."""
    extra, extra_impact, unit = (s["campaign_extra_adopters"], s["campaign_extra_impact"],
                                 s["impact_unit"])
    pp = 100 * extra / max(s["residents"], 1)
    lines = [
        f"effect of the campaign, against the same {s['steps']} {step_unit}s with no campaign "
        f"(same seed; {100 * s['counterfactual_final_adoption']:.1f}% at the end):",
        f"        {extra:+,} households ({pp:+.1f} pp) and {extra_impact:+,.2f} {unit} "
        "over no campaign",
    ]
    per_household = s["cost_per_extra_adopter"]
    if per_household is not None:
        price = f"{_pounds(per_household)} per extra household"
    elif extra == 0:
        price = "£ per extra household n/a: the campaign added no households"
    else:
        price = (f"£ per extra household n/a: the campaign ended with {-extra:,} fewer "
                 "households than no campaign")
    per_impact = s["cost_per_extra_impact"]
    if per_impact is not None:
        price += f"; {_pounds(per_impact)} per extra {unit}"
    else:
        price += f"; £ per extra {unit} n/a: the campaign added no impact"
    return [*lines, f"        {price}"]


def cmd_validate(args: argparse.Namespace) -> int:
    """Check what a run would check: the scenario, the residents CSV and graph file it names
    (read and built exactly as the run does: residents, ties, initial adopters, nudges'
    targets) and, with --menu, every option of a planning menu. No step is simulated.
    --no-build stops before the build: building is most of validate's time at national
    scale (48 s for 24.8M households, against ~2 s without)."""
    limits.apply_memory_option(args)
    sc = load_scenario(args.scenario)
    if args.no_build:
        data = sc.to_dict()
        for table, key in sc.named_files():
            path = sc.resolve(data[table][key])
            if not path.is_file():
                raise ScenarioError(f"{table}.{key}: {str(path)!r} is not a file; allowed: "
                                    "a path to an existing file, relative to the scenario")
        estimate = limits.check_memory(sc)
        print(f"{args.scenario}: valid as written ({sc.name}, {len(sc.nudges)} nudges, "
              f"{sc.steps} steps; residents and ties not built, so the contents of the files "
              f"they are read from and the nudges' targets are unchecked; needs "
              f"{estimate.describe()})")
    else:
        from ..engine import Engine

        engine = Engine(sc)
        print(f"{args.scenario}: valid ({sc.name}, {len(sc.nudges)} nudges, {sc.steps} steps, "
              f"{engine.n:,} residents, {engine.network.n_ties:,} ties; needs "
              f"{limits.estimate_memory(sc, engine.n, engine.network.indices.size).describe()})")
    if args.menu:
        from ..planning import Menu

        options = Menu.from_toml(args.menu).check(sc, args.menu)
        print(f"{args.menu}: valid ({options} options)")
    return 0
