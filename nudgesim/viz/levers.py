"""Scenario files and the page's levers: which files the page offers, the levers' values
as a file sets them, a scenario with the levers applied, and the model a session builds."""

from __future__ import annotations

import os
from functools import lru_cache
from pathlib import Path
from typing import Any

from mesa.visualization import Slider

from .. import scenarios
from ..engine import Engine, no_campaign
from ..model import NudgeModel
from ..scenario import (
    Ambassadors,
    Incentive,
    NormFeedback,
    Pledge,
    Scenario,
    ScenarioError,
)

ENV_SCENARIO = "NUDGESIM_VIZ_SCENARIO"
SCENARIO_DIR = scenarios.folder()  # package data: an installed package has them too
DEFAULT_SCENARIO = scenarios.path(scenarios.SMALL_TOWN)

AS_IN_FILE = "as in file"
POPULATIONS = [AS_IN_FILE, "250", "500", "1000", "2000", "5000", "10000", "20000"]
NETWORKS = [AS_IN_FILE, "ward_clustered", "watts_strogatz", "barabasi_albert", "erdos_renyi"]
STRATEGIES = ["degree", "betweenness", "kcore", "community", "ward", "random"]


# ---------------------------------------------------------------------------------------
# Scenario files and levers
# ---------------------------------------------------------------------------------------


def initial_scenario_path() -> Path:
    """The scenario given on the command line (via the environment), else small_town."""
    return Path(os.environ.get(ENV_SCENARIO) or DEFAULT_SCENARIO).resolve()


def scenario_files() -> dict[str, Path]:
    """File name → path for the shipped scenarios, plus the command-line file."""
    files = {p.name: p for p in sorted(SCENARIO_DIR.glob("*.toml"))}
    first = initial_scenario_path()
    if files.get(first.name) != first:
        files = {first.name: first, **{k: v for k, v in files.items() if k != first.name}}
    return files


@lru_cache(maxsize=16)
def load_scenario(path: str) -> Scenario:
    return Scenario.from_toml(path)


@lru_cache(maxsize=1)
def template_nudges() -> dict[str, Any]:
    """Nudges a lever adds to a file that lacks that kind: small_town.toml's, whose
    schedules and unit costs are stated assumptions there."""
    sc = load_scenario(str(DEFAULT_SCENARIO))
    return {n.kind: n for n in reversed(sc.nudges)}


def _first(sc: Scenario, kind: type) -> Any:
    return next((n for n in sc.nudges if isinstance(n, kind)), None)


def file_levers(sc: Scenario) -> dict[str, Any]:
    """The levers' values as the scenario file sets them (0 = that nudge is absent)."""
    nf, amb = _first(sc, NormFeedback), _first(sc, Ambassadors)
    inc, pl = _first(sc, Incentive), _first(sc, Pledge)
    return {
        "norm_reach": nf.reach if nf else 0.0,
        "injunctive": nf.injunctive if nf else False,
        "ambassadors": (amb.targeting.count or 0) if amb else 0,
        "ambassador_strategy": amb.targeting.strategy if amb else "degree",
        "incentive": inc.cost_reduction if inc else 0.0,
        "pledge_uptake": pl.uptake if pl else 0.0,
    }


def _fit(spec: Any, steps: int) -> Any:
    """A template nudge moved to step 1 if it would start after this scenario's end."""
    if spec.start <= steps:
        return spec
    return spec.model_copy(update={"start": 1, "end": None})


def apply_levers(base: Scenario, levers: dict[str, Any]) -> tuple[Scenario, list[str]]:
    """The scenario with the levers applied, and notes on levers that could not apply.

    A lever set to 0 removes that kind of nudge; a positive lever on a file without that
    kind adds small_town.toml's nudge of that kind.
    """
    data = base.to_dict()
    notes: list[str] = []
    pop, net = data["population"], data["network"]
    fixed_graph = net["kind"] == "file" or pop.get("csv")
    size = levers.get("population", AS_IN_FILE)
    if size not in (None, AS_IN_FILE):
        if fixed_graph:
            notes.append("population lever ignored: residents come from a graph/CSV file")
        else:
            pop["size"] = int(size)
            if isinstance(pop.get("wards"), list):  # keep names and baselines, split evenly
                pop["wards"] = [{k: v for k, v in w.items() if k != "size"} for w in pop["wards"]]
    kind = levers.get("network", AS_IN_FILE)
    if kind not in (None, AS_IN_FILE) and kind != net["kind"]:
        if fixed_graph:
            notes.append("network lever ignored: the graph comes from a file")
        else:
            net = {"kind": kind} | ({"weights": net["weights"]} if "weights" in net else {})
            if kind == "ward_clustered":  # degrees as in small_town.toml (assumption)
                net |= {"mean_degree_in": 6.0, "mean_degree_out": 1.5}
            data["network"] = net

    steps, templates = base.steps, template_nudges()
    nudges = list(base.nudges)
    injunctive, strategy = levers.get("injunctive"), levers.get("ambassador_strategy")
    plans = [
        ("norm_feedback", NormFeedback, levers.get("norm_reach"),
         lambda n, v: {"reach": v,
                       "injunctive": n.injunctive if injunctive is None else bool(injunctive)}),
        ("ambassadors", Ambassadors, levers.get("ambassadors"),
         lambda n, v: {"targeting": n.targeting.model_copy(update={
             "count": int(v), "share": None, "strategy": strategy or n.targeting.strategy})}),
        ("incentive", Incentive, levers.get("incentive"), lambda n, v: {"cost_reduction": v}),
        ("pledge", Pledge, levers.get("pledge_uptake"), lambda n, v: {"uptake": v}),
    ]
    for kind_name, cls, value, update in plans:
        if value is None:
            continue
        if value <= 0:
            nudges = [n for n in nudges if not isinstance(n, cls)]
            continue
        if not any(isinstance(n, cls) for n in nudges):
            nudges.append(_fit(templates[kind_name], steps))
        nudges = [n.model_copy(update=update(n, value)) if isinstance(n, cls) else n
                  for n in nudges]
    data["nudges"] = [n.model_dump(mode="json", exclude_none=True) for n in nudges]
    return Scenario.from_dict(data, base.base_dir), notes


class VizModel(NudgeModel):
    """NudgeModel built from a scenario file plus the page's levers (keyword arguments, as
    Mesa's SolaraViz re-creates the model with them on Reset). None means "as in file".

    ``twin`` is the no-campaign run (engine.no_campaign) on the same residents and ties
    with the same seed, stepped alongside: the page draws it beside the campaign's curve,
    so what the levers add is seen against what would happen anyway."""

    def __init__(
        self,
        scenario_file: str | None = None,
        population: str = AS_IN_FILE,
        network: str = AS_IN_FILE,
        norm_reach: float | None = None,
        injunctive: bool | None = None,
        ambassadors: int | None = None,
        ambassador_strategy: str | None = None,
        incentive: float | None = None,
        pledge_uptake: float | None = None,
        rng: int | None = None,
    ) -> None:
        path = scenario_files().get(scenario_file or "", initial_scenario_path())
        base = load_scenario(str(path))
        levers = {
            "population": population, "network": network, "norm_reach": norm_reach,
            "injunctive": injunctive, "ambassadors": ambassadors,
            "ambassador_strategy": ambassador_strategy, "incentive": incentive,
            "pledge_uptake": pledge_uptake,
        }
        try:
            sc, notes = apply_levers(base, levers)
        except ScenarioError as err:  # an odd combination: run the file, say why
            sc, notes = base, [f"levers not applied: {err}"]
        self.scenario_path = path
        self.notes = notes
        # no seed given: the file's own seed (NudgeModel's rng=None would draw a fresh one)
        if rng is None:
            super().__init__(sc)
        else:
            super().__init__(sc, rng=int(rng))
        self.twin = Engine(no_campaign(self.nudge_scenario), world=self.engine.world)

    def step(self) -> None:
        """One step of the campaign and of its no-campaign twin."""
        super().step()
        while self.twin.t < self.engine.t:
            self.twin.step()


def model_params(sc: Scenario | None = None) -> dict[str, Any]:
    """SolaraViz controls; initial values are the command-line scenario's own."""
    sc = sc or load_scenario(str(initial_scenario_path()))
    lv = file_levers(sc)
    return {
        "scenario_file": {"type": "Select", "value": initial_scenario_path().name,
                          "values": list(scenario_files()), "label": "Scenario file"},
        "population": {"type": "Select", "value": AS_IN_FILE, "values": POPULATIONS,
                       "label": "Population (households)"},
        "network": {"type": "Select", "value": AS_IN_FILE, "values": NETWORKS,
                    "label": "Network kind"},
        "norm_reach": Slider("Norm feedback reach", lv["norm_reach"], 0.0, 1.0, 0.05),
        "injunctive": {"type": "Checkbox", "value": lv["injunctive"],
                       "label": "Injunctive norm message"},
        "ambassadors": Slider("Ambassadors", lv["ambassadors"], 0, 500, 5),
        "ambassador_strategy": {"type": "Select", "value": lv["ambassador_strategy"],
                                "values": STRATEGIES, "label": "Ambassador targeting"},
        "incentive": Slider("Incentive (cost cut)", lv["incentive"],
                            0.0, 1.0, 0.05),
        "pledge_uptake": Slider("Pledge uptake", lv["pledge_uptake"], 0.0, 1.0, 0.05),
        "rng": Slider("Random seed", min(sc.seed, 999), 0, 999, 1),
    }


def make_model(**params: Any) -> VizModel:
    """The model a new browser session starts with (the command-line scenario as is)."""
    return VizModel(**params)

