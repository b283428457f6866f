"""Make the synthetic per-ward participation series shipped beside this script.

SYNTHETIC: nothing here comes from a real council. The 'truth' is the packaged borough
scenario (seed 42) with rule.adopt_intercept = -6.8; each ward's adoption rate is read
every 13 weeks and a survey of 60 households per ward is drawn from it (binomial, from
nudgesim.rng.Streams(2024).generator("synthetic ward survey")). Run:
    .venv/bin/python experiments/data/make_synthetic.py
"""

from __future__ import annotations

from pathlib import Path

import nudgesim as ns
from nudgesim.files import write_atomic
from nudgesim.rng import Streams

HERE = Path(__file__).parent
TRUTH = -6.8
STEPS = [0, 13, 26, 39, 52]
SURVEYED = 60  # households per ward per survey (assumption: a small council panel)


def main() -> None:
    borough = ns.Scenario.from_toml(HERE.parent / "scenarios" / "borough.toml")
    truth = borough.replace(rule=borough.rule.model_dump() | {"adopt_intercept": TRUTH})
    by_ward = ns.simulate(truth).by_ward
    rng = Streams(2024).generator("synthetic ward survey")
    rows = []
    for step in STEPS:
        at = by_ward[by_ward["step"] == step]
        for ward, rate in zip(at["ward"], at["adoption_rate"]):
            rows.append(f"{ward},{step},{rng.binomial(SURVEYED, rate) / SURVEYED:.4f},{SURVEYED}")
    header = (
        "# SYNTHETIC data - not from any real council. Made by experiments/data/make_synthetic.py:\n"
        f"# experiments/scenarios/borough.toml (seed 42) with rule.adopt_intercept = {TRUTH} (the\n"
        "# 'truth'), each ward's adoption rate read every 13 weeks, and a survey of n = 60\n"
        "# households per ward drawn from it (binomial noise from\n"
        "# nudgesim.rng.Streams(2024).generator('synthetic ward survey')).\n"
        "# Columns: ward, step (week), adoption_rate (share of surveyed households taking part),\n"
        "# n (surveyed).\n"
    )
    write_atomic(HERE / "borough_wards_synthetic.csv",
                 header + "ward,step,adoption_rate,n\n" + "\n".join(rows) + "\n")


if __name__ == "__main__":
    main()
