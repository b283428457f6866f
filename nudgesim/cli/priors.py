"""`nudgesim priors [--refit | --loo]`: the priors table, their refit, the leave-one-out check."""

from __future__ import annotations

import argparse
from pathlib import Path

from . import parse_args


def main(argv: list[str]) -> int:
    """Print the priors (both levels, with their basis); ``--refit`` emulates every fitted
    record on its kind's design and rewrites priors.toml (about a minute; a developer's
    step, the file ships with the package); ``--loo`` prints the leave-one-out check."""
    from ..evidence import priors as prior_data
    from ..evidence import replicate, trials
    from ..evidence.predict import leave_one_out
    from ..evidence.priors import Level

    p = argparse.ArgumentParser(prog="nudgesim priors",
                                description="Priors of nudgesim's parameters: table, refit, "
                                "leave-one-out check.")
    p.add_argument("--refit", action="store_true", help="emulate every record, refit, rewrite")
    p.add_argument("--loo", action="store_true", help="leave-one-out coverage at both levels")
    p.add_argument("--replicates", type=int, default=8, help="emulations per design point")
    p.add_argument("--seed", type=int, default=2014)
    p.add_argument("--out", type=Path, default=prior_data.DATA, help="where --refit writes")
    args = parse_args(p, argv)
    levels: tuple[Level, ...] = ("published", "at_scale")
    if args.refit:
        lib = prior_data.refit(prior_data.read(prior_data.DATA), trials(),
                               replicate.emulate, args.replicates, args.seed)
        prior_data.write(lib, args.out)
        print(f"wrote {args.out}")
    elif args.loo:
        for level in levels:
            res = leave_one_out(level)
            inside = int(res.table["inside"].sum())
            print(f"{level}: {inside} of {len(res.table)} published effects ({res.rate:.0%}) "
                  "inside the 90% predictive interval of a prior fitted without them")
            print(res.table.drop(columns=["prior"]).round(2).to_string(index=False))
    else:
        print(prior_data.library_table().to_string(index=False))
    return 0
