"""`nudgesim init --wards wards.csv [--boundaries wards.geojson] [--out scenario.toml]`.

Writes a starting scenario from a council's own files: its ward table (and boundaries),
the model's documented defaults for everything else, and one leaflet as a first nudge to
edit. The text is validated by loading it back before it is written, and an existing file
is never overwritten without --force.
"""

from __future__ import annotations

import argparse
import os
from pathlib import Path

from ..errors import UsageError
from ..scenario import Scenario, read_ward_table
from . import parse_args

TEMPLATE = """\
# Starting scenario written by `nudgesim init` from {source}.
# Everything below the ward files is a documented default or an assumption: replace it with
# the council's own figures (see docs/borough.md).
name = {name}
description = "Starting scenario from the council's ward table"
seed = 42
steps = 52
step_unit = "week"

[population]
wards = {wards}   # name, households, baseline (+ optional <trait>_mean columns)
{geography}
[network]
kind = "ward_clustered"   # households know mostly people in their own ward (assumption)
mean_degree_in = 8.0
mean_degree_out = 2.0
cross = {cross}

[rule]
kind = "logistic"

[impact]
per_adopter_step = 0.0015   # t food waste separated per household per week (assumption)
unit = "t food waste diverted"

[[nudges]]   # a first nudge to edit: one leaflet to most households in week 1
kind = "information"
label = "leaflet"
start = 1
reach = 0.9
cost_per_contact = 0.35   # print + door drop (assumption)
"""


def _quoted(text: str) -> str:
    """A TOML basic string (backslashes and quotes escaped)."""
    return '"' + text.replace("\\", "\\\\").replace('"', '\\"') + '"'


def _relative(path: Path, folder: Path) -> str:
    """`path` as the scenario will name it: relative to the scenario's folder when it can
    be (the folder can then move with its files), else absolute."""
    try:
        return Path(os.path.relpath(path.resolve(), folder.resolve())).as_posix()
    except ValueError:  # another drive on Windows
        return str(path.resolve())


def scenario_text(wards: Path, out: Path, boundaries: Path | None = None,
                  name: str | None = None) -> str:
    """The starting scenario's TOML for these files, validated by loading it back (the
    ward table and boundaries are read and matched exactly as a run reads them)."""
    folder = out.parent
    geography = ""
    if boundaries is not None:
        geography = (f"\n[geography]\nboundaries = {_quoted(_relative(boundaries, folder))}\n"
                     'name_field = "name"\n')
    text = TEMPLATE.format(
        source=", ".join(p.name for p in (wards, boundaries) if p is not None),
        name=_quoted(name or out.stem),
        wards=_quoted(_relative(wards, folder)),
        geography=geography,
        cross='"adjacent"   # cross-ward ties between neighbouring wards' if boundaries
        else '"uniform"    # no boundaries: every pair of wards alike',
    )
    Scenario.from_toml_str(text, base_dir=folder)
    return text


def main(argv: list[str] | None = None) -> int:
    from .. import files

    parser = argparse.ArgumentParser(
        prog="nudgesim init",
        description="Write a starting scenario from a council's ward table (CSV or Parquet: "
        "name, households, baseline) and, optionally, ward boundaries.")
    parser.add_argument("--wards", required=True, help="ward table (.csv or .parquet)")
    parser.add_argument("--boundaries", help="ward boundaries (GeoJSON, GeoPackage, shapefile)")
    parser.add_argument("--out", default="scenario.toml",
                        help="scenario file to write (default scenario.toml)")
    parser.add_argument("--name", help="scenario name (default: the file's stem)")
    parser.add_argument("--force", action="store_true", help="overwrite an existing --out")
    args = parse_args(parser, argv)
    out = Path(args.out)
    if out.suffix.lower() != ".toml":
        raise UsageError(f"--out: {args.out!r} is not allowed; allowed: a .toml file name")
    if out.exists() and not args.force:
        raise UsageError(f"--out: {out} exists; allowed: a new file name, or --force to "
                         "overwrite it")
    if not out.parent.is_dir():
        raise UsageError(f"--out: folder {out.parent} does not exist; allowed: a file in an "
                         "existing folder")
    wards = Path(args.wards)
    boundaries = Path(args.boundaries) if args.boundaries else None
    text = scenario_text(wards, out, boundaries, args.name)
    files.write_atomic(out, text)
    n = len(read_ward_table(wards))
    print(f"wrote {out} ({n} wards{', with boundaries' if boundaries else ''}); next:\n"
          f"  nudgesim validate {out}\n  nudgesim run {out}")
    return 0
