"""`nudgesim report RESULTS_DIR`."""

from __future__ import annotations

import argparse

from ..report import write_report
from . import parse_args


def main(argv: list[str]) -> int:
    """`nudgesim report RESULTS_DIR`."""
    p = argparse.ArgumentParser(prog="nudgesim report", description=write_report.__doc__)
    p.add_argument("results_dir", help="folder written by 'nudgesim plan', 'nudgesim sweep' or 'nudgesim run'")
    args = parse_args(p, argv)
    html_path, md_path = write_report(args.results_dir)
    print(f"wrote {html_path} and {md_path}")
    return 0
