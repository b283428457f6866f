"""Named outcomes of a run, with their unit and which way is better.

One vocabulary for every consumer: the names are ``Result.summary``'s keys, experiments
and sensitivity check outcome names against it, and planning takes the sign of "better"
(ranking, Pareto frontier) from :attr:`Outcome.direction` instead of deciding it itself
(EMA workbench's ScalarOutcome says MINIMIZE / MAXIMIZE / INFO the same way).
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from typing import Literal

from .errors import ScenarioError

Direction = Literal["maximize", "minimize", "info"]
DIRECTIONS: tuple[Direction, ...] = ("maximize", "minimize", "info")
IMPACT_UNIT = "impact unit"
"""Placeholder unit of impact outcomes: the scenario names it (scenario.impact.unit)."""


@dataclass(frozen=True)
class Outcome:
    """One named outcome: unit, direction (what a campaign wants) and what it means.

    numeric: False for the summary's text fields (names), which no analysis can average.
    counterfactual: True when it compares the run with its no-campaign twin, so a run must
    be simulated with ``counterfactual=True`` to have it (None otherwise).
    regional: True when it needs the scenario's wards to name their regions (None otherwise).
    """

    name: str
    unit: str
    direction: Direction
    description: str
    numeric: bool = True
    counterfactual: bool = False
    regional: bool = False

    def __post_init__(self) -> None:
        if self.direction not in DIRECTIONS:
            raise ValueError(f"direction: {self.direction!r}; allowed: {DIRECTIONS}")

    @property
    def sign(self) -> int:
        """+1 when more is better, -1 when less is better, 0 for information only."""
        return {"maximize": 1, "minimize": -1, "info": 0}[self.direction]

    def unit_for(self, impact_unit: str) -> str:
        """The unit with the scenario's impact unit filled in."""
        return self.unit.replace(IMPACT_UNIT, impact_unit)


_ALL = (
    Outcome("scenario", "", "info", "the scenario's name", numeric=False),
    Outcome("seed", "", "info", "the run's seed"),
    Outcome("residents", "households", "info", "households simulated"),
    Outcome("ties", "ties", "info", "social ties in the network"),
    Outcome("steps", "steps", "info", "steps simulated"),
    Outcome("initial_adoption", "share", "info", "share taking part at step 0 (before nudges)"),
    Outcome("final_adoption", "share", "maximize", "share taking part at the last step"),
    Outcome("final_adopters", "households", "maximize", "households taking part at the end"),
    Outcome("adopters_gained", "households", "maximize",
            "households taking part at the end minus at the start"),
    Outcome("peak_adoption", "share", "maximize", "highest share taking part at any step"),
    Outcome("peak_step", "step", "info", "step of the highest share taking part"),
    Outcome("time_to_50pct", "steps", "minimize",
            "first step with half the households taking part (None if never)"),
    Outcome("ever_adopted", "share", "maximize", "share that took part at some step"),
    Outcome("total_lapses", "lapses", "minimize", "times a household stopped taking part"),
    Outcome("total_contacts", "contacts", "info", "nudge contacts made (what costs accrue on)"),
    Outcome("total_cost", "£", "minimize", "what the nudges cost over the run"),
    Outcome("total_impact", IMPACT_UNIT, "maximize",
            "environmental impact of households taking part, summed over steps"),
    Outcome("impact_unit", "", "info", "the unit of total_impact", numeric=False),
    Outcome("cost_per_adopter_gained", "£ per household", "minimize",
            "total_cost / adopters_gained (None when none were gained)"),
    Outcome("cost_per_impact", f"£ per {IMPACT_UNIT}", "minimize",
            "total_cost / total_impact (None without impact)"),
    Outcome("lowest_ward", "", "info", "the ward with the lowest final share", numeric=False),
    Outcome("lowest_ward_adoption", "share", "maximize",
            "final share taking part in the lowest ward (equity)"),
    Outcome("lowest_region", "", "info",
            "the region with the lowest final share (None when wards have no regions)",
            numeric=False, regional=True),
    Outcome("lowest_region_adoption", "share", "maximize",
            "final share taking part in the lowest region (None when wards have no regions)",
            regional=True),
    Outcome("counterfactual_final_adoption", "share", "info",
            "final share taking part in the same run with no campaign (same seed)",
            counterfactual=True),
    Outcome("campaign_extra_adopters", "households", "maximize",
            "households taking part at the end minus in the no-campaign twin",
            counterfactual=True),
    Outcome("campaign_extra_impact", IMPACT_UNIT, "maximize",
            "total_impact minus the no-campaign twin's", counterfactual=True),
    Outcome("cost_per_extra_adopter", "£ per household", "minimize",
            "total_cost / campaign_extra_adopters (None when the campaign added none)",
            counterfactual=True),
    Outcome("cost_per_extra_impact", f"£ per {IMPACT_UNIT}", "minimize",
            "total_cost / campaign_extra_impact (None when the campaign added none)",
            counterfactual=True),
)

#: every ``Result.summary`` key, in the summary's order
OUTCOMES: dict[str, Outcome] = {o.name: o for o in _ALL}


def numeric_outcomes() -> list[str]:
    """Outcome names an analysis can average, in the summary's order."""
    return [o.name for o in OUTCOMES.values() if o.numeric]


def needs_counterfactual(names: Iterable[str]) -> bool:
    """Whether any of these outcomes needs the no-campaign twin (simulate(...,
    counterfactual=True)); unknown names need nothing (check_outcomes reports them)."""
    return any(OUTCOMES[n].counterfactual for n in names if n in OUTCOMES)


def regional_outcomes(names: Iterable[str]) -> list[str]:
    """The names among these that need wards with regions (unknown names: none)."""
    return [n for n in names if n in OUTCOMES and OUTCOMES[n].regional]


def outcome(name: str, where: str = "outcome") -> Outcome:
    """The numeric outcome called `name`; a ScenarioError naming the allowed ones if none."""
    found = OUTCOMES.get(name)
    if found is None or not found.numeric:
        raise ScenarioError(
            f"{where}: {name!r} is not a numeric outcome; allowed: {', '.join(numeric_outcomes())}"
        )
    return found


def check_outcomes(names: list[str], where: str = "outcomes") -> None:
    """Every name is a numeric outcome (one message listing the unknown ones)."""
    bad = [n for n in names if n not in numeric_outcomes()]
    if bad:
        raise ScenarioError(
            f"{where}: unknown outcome(s) {bad}; allowed: {', '.join(numeric_outcomes())}"
        )
