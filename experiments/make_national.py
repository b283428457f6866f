"""Make the national scenario nudgesim ships (experiments/scenarios/national/): the
borough's campaign scaled up to every household in England and Wales.

What is measured and what is invented:

- The total, 24,782,800 households (England 23,435,700 and Wales 1,347,100), is the
  Census 2021 count (Office for National Statistics, 2022, "Population and household
  estimates, England and Wales: Census 2021", released 28 June 2022).
- The split of England's households among its nine regions is APPROXIMATE and UNCHECKED:
  shares recalled from the ONS Census 2021 regional household estimates, not copied from
  the table nor checked against it (check ONS table TS041 before quoting a region).
- The wards are SYNTHETIC (assumption): 3,100 units whose sizes are lognormal draws
  (sigma 0.45) scaled to each region's total, ~8,000 households on average like
  nudgesim.bench.SCALE_WARD_SIZE. Real electoral wards are smaller and more numerous;
  here the ward only sets how local the ward-clustered ties are.
- The campaign, baselines and ward names are nudgesim.bench.national_scenario's: ward k
  copies the synthetic borough's ward k mod 24 (its baseline), the nudges that name
  wards name every copy, ambassadors stay 1% of households.

Seeded: the same options write the same files.

    .venv/bin/python experiments/make_national.py                   # the shipped files
    .venv/bin/python experiments/make_national.py --households 20000 --wards 40 --out DIR
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import numpy as np
import pandas as pd
import tomli_w

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from nudgesim import files  # noqa: E402
from nudgesim.bench import national_scenario  # noqa: E402
from nudgesim.population import scaled_sizes  # noqa: E402

OUT = ROOT / "experiments" / "scenarios" / "national"
SEED = 20210321  # Census Day 2021, as a seed
WARDS = 3_100
#: England and Wales, Census 2021 (ONS 2022): exact.
ENGLAND, WALES = 23_435_700, 1_347_100
HOUSEHOLDS = ENGLAND + WALES
#: England's regions, households in millions: APPROXIMATE and unchecked (recalled, not
#: copied from ONS table TS041), used only as shares of ENGLAND; Wales is exact.
ENGLISH_REGIONS_M = {
    "North East": 1.17,
    "North West": 3.15,
    "Yorkshire and The Humber": 2.30,
    "East Midlands": 2.04,
    "West Midlands": 2.43,
    "East of England": 2.59,
    "London": 3.42,
    "South East": 3.79,
    "South West": 2.44,
}
#: Spread of synthetic ward sizes (lognormal sigma; assumption: most wards within about
#: half to twice the mean, as council wards of one size class are).
WARD_SIGMA = 0.45


def region_households(total: int = HOUSEHOLDS) -> dict[str, int]:
    """Households per region adding up to `total`: Wales's census share of it, England's
    split by the approximate regional shares (largest remainder)."""
    wales = round(total * WALES / HOUSEHOLDS)
    england = scaled_sizes(np.round(np.array(list(ENGLISH_REGIONS_M.values())) * 1e4)
                           .astype(np.int64), total - wales)
    return dict(zip(ENGLISH_REGIONS_M, england.tolist(), strict=True)) | {"Wales": wales}


def ward_table(households: int, wards: int, seed: int = SEED) -> pd.DataFrame:
    """name, households, baseline, region: `wards` synthetic wards (national_scenario's
    names and baselines) in contiguous blocks per region, sizes lognormal within each."""
    regions = region_households(households)
    if wards < len(regions) or households < wards:
        raise SystemExit(f"--wards: {wards}; allowed: from {len(regions)} (one per region) "
                         f"to the number of households ({households:,})")
    per_region = scaled_sizes(np.array(list(regions.values())), wards)
    rng = np.random.default_rng(np.random.SeedSequence(seed))
    sizes, names = [], []
    for (region, total), count in zip(regions.items(), per_region, strict=True):
        draws = rng.lognormal(0.0, WARD_SIGMA, int(count))
        weights = np.maximum(np.round(draws / draws.sum() * 1e9), 1).astype(np.int64)
        sizes.append(scaled_sizes(weights, total))
        names += [region] * int(count)
    sc = national_scenario(households, ward_size=max(1, round(households / wards)))
    base = sc.population.wards
    if not isinstance(base, list) or len(base) != wards:
        raise SystemExit(f"--wards: {wards} does not divide {households:,} households into "
                         "wards of one round size; allowed: a ward count near that")
    return pd.DataFrame({"name": [w.name for w in base],
                         "households": np.concatenate(sizes),
                         "baseline": [w.baseline for w in base],
                         "region": names})


def scenario_data(households: int, wards: int, steps: int) -> dict:
    """national_scenario's campaign on the ward table (wards = "wards.csv")."""
    sc = national_scenario(households, ward_size=max(1, round(households / wards)))
    if steps != sc.steps:  # a shorter year drops the nudges after it (with a warning)
        sc = sc.replace(steps=steps)
    data = sc.to_dict()
    data["name"] = "national" if households == HOUSEHOLDS else f"national-{households}"
    data["description"] = (
        f"Synthetic England and Wales: the borough's food-waste campaign on {households:,} "
        f"households in {wards:,} synthetic wards of 10 regions (Census 2021 totals; "
        "regional split approximate; wards invented)")
    data["population"].pop("size", None)
    data["population"]["wards"] = "wards.csv"
    return data


HEADER = """\
# GENERATED by experiments/make_national.py: edit that script, not this file.
# Every household in England and Wales (Census 2021: 24,782,800; ONS 2022), split among
# 9 English regions (APPROXIMATE shares) and Wales, in SYNTHETIC wards (lognormal sizes,
# an assumption; seeded). The campaign is the synthetic borough's, scaled up as
# nudgesim.bench.national_scenario does; its unit costs are the borough's assumptions.
# Needs ~6 GB of memory and 1-3 minutes on 2 cores (the no-campaign twin doubles the
# steps; --no-counterfactual skips it): see docs/national.md.
"""


def write(out: Path, households: int, wards: int, steps: int, seed: int) -> Path:
    """The ward table and the scenario, each written atomically."""
    table = ward_table(households, wards, seed)
    data = scenario_data(households, wards, steps)
    files.write_atomic(out / "wards.csv", table.to_csv(index=False))
    files.write_atomic(out / "national.toml", HEADER + tomli_w.dumps(data))
    return out / "national.toml"


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--households", type=int, default=HOUSEHOLDS,
                   help=f"households in all (default {HOUSEHOLDS:,}: Census 2021)")
    p.add_argument("--wards", type=int, default=WARDS, help=f"wards (default {WARDS:,})")
    p.add_argument("--steps", type=int, default=52, help="weeks (default 52)")
    p.add_argument("--seed", type=int, default=SEED, help="seed of the ward sizes")
    p.add_argument("--out", type=Path, default=OUT, help="folder (default the shipped one)")
    a = p.parse_args(argv)
    if a.wards < 1 or a.households < a.wards:  # every ward holds a household
        p.error(f"--households {a.households} and --wards {a.wards}: need "
                "1 <= wards <= households")
    if a.steps < 1:
        p.error(f"--steps {a.steps}: allowed: a whole number >= 1")
    path = write(a.out, a.households, a.wards, a.steps, a.seed)
    print(f"wrote {path} and {path.parent / 'wards.csv'}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
