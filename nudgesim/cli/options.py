"""Options several subcommands share: where runs execute, and how long Dask may take."""

from __future__ import annotations

import argparse

from .. import limits
from ..errors import UsageError
from ..parallel import DASK_TIMEOUT, DASK_TIMEOUT_ENV, EXECUTORS, resolve_dask_timeout
from . import parse_args


def add_run_options(
    p: argparse.ArgumentParser, default_out: str = "results/<experiment name>"
) -> None:
    """The options of an experiment command (sweep, sensitivity)."""
    p.add_argument("experiment", help="experiment TOML (see experiments/sweeps/)")
    p.add_argument("--out", help=f"results folder (default {default_out})")
    p.add_argument(
        "--executor",
        choices=EXECUTORS,
        default="processes",
        help="where runs execute (default: local processes on all cores)",
    )
    p.add_argument("--workers", type=int, help="processes / Dask LocalCluster workers")
    p.add_argument(
        "--scheduler", help="Dask scheduler address, e.g. tcp://host:8786 (implies dask)"
    )
    p.add_argument("--replicates", type=int, help="override the experiment's replicates")
    p.add_argument("--samples", type=int, help="override the experiment's samples")
    p.add_argument("--seed", type=int, help="override the experiment's seed")
    p.add_argument("--retry-errors", action="store_true", help="run again runs that raised")
    p.add_argument("--no-progress", action="store_true", help="no progress bar")
    add_dask_timeout_option(p)
    limits.add_memory_option(p)


def add_dask_timeout_option(p: argparse.ArgumentParser) -> None:
    p.add_argument(
        "--dask-timeout",
        type=float,
        metavar="SECONDS",
        help="Dask: seconds to wait for the scheduler to answer and for a cluster without "
        f"workers to get one (default ${DASK_TIMEOUT_ENV}, else {DASK_TIMEOUT:g})",
    )


def parse_run_args(p: argparse.ArgumentParser, argv: list[str]) -> argparse.Namespace:
    """Parse, then refuse bad executor options before any run (exit 2, one line)."""
    args = parse_args(p, argv)
    limits.apply_memory_option(args)
    if getattr(args, "dask_timeout", None) is not None:
        resolve_dask_timeout(args.dask_timeout)  # a bad value is refused before any run
    if args.workers is not None and args.workers < 1:
        raise UsageError(f"--workers: must be >= 1, got {args.workers}")
    return args
