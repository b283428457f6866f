"""`nudgesim evidence [--out DIR] [--evidence published|at_scale] [--draws K]
[--pattern-draws K]`."""

from __future__ import annotations

import argparse
from pathlib import Path

from ..errors import UsageError
from ..files import foreign_files, replace_folder, save_figure, write_atomic
from . import parse_args

FILES = frozenset({"replication.csv", "patterns.csv", "replication.png", "decay_draws.csv",
                   "decay_region.csv"})


def forest_plot(table, path: Path) -> Path:
    """Published (black) vs simulated (blue, with its interval) per comparable record."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    import numpy as np

    rows = table[table["simulated"].notna() | table["n_emulated"].notna()].reset_index(drop=True)
    fig, axes = plt.subplots(len(rows), 1, figsize=(8, 0.9 * len(rows) + 1.2), squeeze=False)
    for ax, (_, r) in zip(axes[:, 0], rows.iterrows()):
        if r["simulated"] is not None and np.isfinite(r["simulated"]):
            ax.errorbar([r["simulated"]], [0], xerr=[[r["simulated"] - r["simulated_lo"]],
                        [r["simulated_hi"] - r["simulated"]]], fmt="o", color="tab:blue",
                        label="simulated (95% interval)")
        lo, hi = r["published_lo"], r["published_hi"]
        if lo is not None and np.isfinite(lo):
            ax.errorbar([r["published"]], [0.4], xerr=[[r["published"] - lo], [hi - r["published"]]],
                        fmt="s", color="black", label="published")
        else:
            ax.plot([r["published"]], [0.4], "s", color="black", label="published")
        ax.set_yticks([])
        ax.set_ylim(-0.5, 0.9)
        ax.set_ylabel(f"{r['id']}\n({r['unit']})", rotation=0, ha="right", va="center",
                      fontsize=8)
        ax.tick_params(axis="x", labelsize=8)
    axes[0, 0].legend(loc="upper right", fontsize=7, ncol=2)
    covers = rows["interval_covers"].dropna()
    axes[0, 0].set_title("Published effects vs nudgesim's emulated trials"
                         + (f"\nsimulated interval: {covers.iloc[0]}" if len(covers) else ""),
                         fontsize=10)
    fig.tight_layout()
    return save_figure(fig, path, dpi=110)


def main(argv: list[str]) -> int:
    """Emulate every comparable library record and check the published patterns."""
    p = argparse.ArgumentParser(prog="nudgesim evidence", description=(
        "Replicate the published nudge trials in silico: replication.csv, patterns.csv, "
        "replication.png, and the decay across prior draws (decay_draws.csv, "
        "decay_region.csv)"))
    p.add_argument("--out", default="results/evidence", help="results folder")
    p.add_argument("--evidence", default="published", metavar="{published,at_scale}",
                   help="prior level the draws come from (default published: the level the "
                        "replication is checked at)")
    p.add_argument("--draws", type=int, default=32,
                   help="parameter draws from the priors (default 32: predictive intervals, "
                        "parameters and simulation noise; 0: nudgesim's default parameters, "
                        "simulation noise only)")
    p.add_argument("--pattern-draws", type=int, default=32,
                   help="prior draws (level --evidence) the decay after a campaign's end is "
                        "checked across (0: skip)")
    p.add_argument("--replicates", type=int, default=8)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--executor", default="processes", choices=["serial", "processes"])
    args = parse_args(p, argv)
    if args.evidence not in ("published", "at_scale"):
        raise UsageError(f"--evidence: {args.evidence!r} is not allowed; allowed: "
                         "'published', 'at_scale'")
    if args.replicates < 2:
        raise UsageError(f"--replicates: {args.replicates} is not allowed; allowed: 2 or more")
    if args.draws < 0:
        raise UsageError(f"--draws: {args.draws} is not allowed; allowed: 0 or more")
    if args.pattern_draws < 0:
        raise UsageError(f"--pattern-draws: {args.pattern_draws} is not allowed; allowed: 0 "
                         "or more")
    if args.seed < 0:
        raise UsageError(f"--seed: {args.seed} is not allowed; allowed: 0 or more")
    from ..evidence.replicate import decay_draws, decay_region, patterns, replication_table

    table = replication_table(args.evidence, draws=args.draws, replicates=args.replicates,
                              seed=args.seed, executor=args.executor)
    decays = (decay_draws(args.pattern_draws, args.evidence, replicates=2,
                          seed=args.seed, executor=args.executor)
              if args.pattern_draws else None)
    pats = patterns(replicates=max(args.replicates, 3), seed=args.seed,
                    executor=args.executor, draws=decays)
    out = Path(args.out)
    with replace_folder(out, lambda f: foreign_files(f, "replication.csv", FILES,
                                                     "evidence")) as tmp:
        write_atomic(tmp / "replication.csv", table.to_csv(index=False))
        write_atomic(tmp / "patterns.csv", pats.to_csv(index=False))
        forest_plot(table, tmp / "replication.png")
        if decays is not None:
            write_atomic(tmp / "decay_draws.csv", decays.to_csv(index=False))
            write_atomic(tmp / "decay_region.csv", decay_region(decays).to_csv(index=False))
    emulated = table[table["n_emulated"].notna()]
    inside = int(emulated["within"].fillna(False).astype(bool).sum())
    print(f"{len(emulated)} of {len(table)} records emulated; published effect inside the "
          f"simulated 95% interval for {inside} of {len(emulated)} "
          f"({inside / max(len(emulated), 1):.0%}; {emulated['interval_covers'].iloc[0]})")
    print(f"patterns reproduced: {int(pats['reproduced'].sum())} of {len(pats)}")
    written = sorted(f for f in FILES if (out / f).exists())
    print(f"  wrote {out}/ ({', '.join(written)})")
    return 0
