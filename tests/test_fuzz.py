"""Hostile but fair input, through the real command line in-process: every invalid mutation of
the shipped scenario and menu files exits 2 with one first line naming the field and no
traceback; every valid one exits 0.

The table is data: add a `Mutation` (or generate some) to cover another file kind. Each
names the file it changes, the change (a dict of dotted paths to new values, a function of
the parsed TOML, or the whole TOML text), the exit code and, for errors, the field the first
line must name.
"""

from __future__ import annotations

import dataclasses
import io
import math
import re
import tomllib
import traceback
from collections.abc import Callable
from contextlib import redirect_stderr, redirect_stdout
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
import tomli_w
from hypothesis import given, settings
from hypothesis import strategies as st

import nudgesim as ns
from nudgesim.cli import main
from nudgesim.scenario import MAX_STEPS

ROOT = Path(__file__).parents[1]
FILES = {
    "borough": ROOT / "experiments" / "scenarios" / "borough.toml",
    "small_town": ROOT / "experiments" / "scenarios" / "small_town.toml",
    "menu": ROOT / "experiments" / "menus" / "borough.toml",
    "ambassador_sweep": ROOT / "experiments" / "sweeps" / "ambassador_targeting.toml",
    "sobol_sweep": ROOT / "experiments" / "sweeps" / "borough_sobol.toml",
}
EXPERIMENTS = ("ambassador_sweep", "sobol_sweep")
DELETE = object()  # a dict change's value that removes the field


def run_cli(argv: list[str]) -> tuple[int, str, str]:
    """`nudgesim argv...` in this process: (exit code, stdout, stderr). An exception that
    escapes main is what a user would see as a traceback, so it is written to stderr."""
    out, err = io.StringIO(), io.StringIO()
    with redirect_stdout(out), redirect_stderr(err):
        try:
            code = main(argv)
        except SystemExit as exc:  # argparse's own usage errors
            code = exc.code if isinstance(exc.code, int) else 1
        except BaseException:  # noqa: BLE001 - reported as the traceback a user would get
            err.write(traceback.format_exc())
            code = 1
    return code, out.getvalue(), err.getvalue()


Change = dict[str, Any] | Callable[[dict[str, Any]], None] | str


@dataclass
class Mutation:
    """One changed input file and what the command line must answer."""

    description: str
    target: str  # key of FILES
    change: Change
    code: int  # 0 valid, 2 refused
    field: str = ""  # for code 2: what the first line of stderr must name
    files: dict[str, str] = dataclasses.field(default_factory=dict)  # extra files beside the input
    command: str = "validate"  # validate | run
    stderr: str = ""  # for code 0: text stderr must hold (e.g. a warning)

    @property
    def id(self) -> str:
        return f"{self.target}: {self.description}"


def apply(text: str, change: Change) -> str:
    """The mutated TOML text."""
    if isinstance(change, str):
        return change
    data = tomllib.loads(text)
    if callable(change):
        change(data)
    else:
        for path, value in change.items():
            set_or_delete(data, path, value)
    return tomli_w.dumps(data)


def parts(path: str | tuple) -> tuple:
    """'nudges[2].targeting.count' -> ('nudges', 2, 'targeting', 'count'); tuples pass through
    (generated paths are tuples, since TOML keys such as "targeting.count" hold dots)."""
    if isinstance(path, tuple):
        return path
    return tuple(int(t[1:-1]) if t.startswith("[") else t
                 for t in re.findall(r"[^.\[\]]+|\[\d+\]", path))


def dotted(path: tuple) -> str:
    """How messages write a path: ('items', 3, 'levels', 'targeting.count') ->
    'items[3].levels.targeting.count'."""
    out = ""
    for part in path:
        out += f"[{part}]" if isinstance(part, int) else ("." if out else "") + part
    return out


def set_or_delete(data: dict[str, Any], path: str | tuple, value: Any) -> None:
    *parent, last = parts(path)
    node: Any = data
    for part in parent:
        node = node[part]
    if value is DELETE:
        del node[last]
    else:
        node[last] = value


def run_mutation(m: Mutation, tmp_path: Path) -> tuple[int, str, str]:
    src = FILES[m.target]
    text = src.read_text(encoding="utf-8")
    if m.target in EXPERIMENTS:  # its scenario path is relative to the shipped file
        data = tomllib.loads(text)
        data["scenario"] = str((src.parent / data["scenario"]).resolve())
        text = tomli_w.dumps(data)
    text = apply(text, m.change)
    for name, content in m.files.items():
        (tmp_path / name).write_text(content, encoding="utf-8")
    if m.target == "menu":
        menu = tmp_path / "menu.toml"
        menu.write_text(text, encoding="utf-8")
        return run_cli(["validate", str(FILES["borough"]), "--menu", str(menu)])
    path = tmp_path / f"{m.target}.toml"
    path.write_text(text, encoding="utf-8")
    if m.target in EXPERIMENTS:  # validated and designed, nothing run
        return run_cli(["sweep", str(path), "--dry-run"])
    if m.command == "run":
        return run_cli(["run", str(path), "--no-plot", "--out", str(tmp_path / "out")])
    return run_cli(["validate", str(path)])


# ---------------------------------------------------------------------------------------
# The table: generated mutations of every number and text in the shipped files ...
# ---------------------------------------------------------------------------------------


def leaves(obj: Any, path: tuple = ()) -> list[tuple[tuple, Any]]:
    """(path, value) of every scalar in parsed TOML."""
    if isinstance(obj, dict):
        return [leaf for k, v in obj.items() for leaf in leaves(v, (*path, k))]
    if isinstance(obj, list):
        return [leaf for i, v in enumerate(obj) for leaf in leaves(v, (*path, i))]
    return [(path, obj)]


NON_FINITE = [math.nan, math.inf, -math.inf]


def _level_field(path: tuple) -> str | None:
    """A menu level is named by its field ('items[0].levels.reach'), not by its position."""
    for key in ("levels", "level_labels"):
        if key in path:
            return dotted(path[: path.index(key) + 2])
    return None


def generated() -> list[Mutation]:
    out: list[Mutation] = []
    k = 0
    for target in ("borough", "small_town", "menu", *EXPERIMENTS):
        data = tomllib.loads(FILES[target].read_text(encoding="utf-8"))
        for path, value in leaves(data):
            where = dotted(path)
            if target in EXPERIMENTS and path[0] in ("levers", "uncertainties"):
                where = path[1]  # a factor is named by its scenario path
            if isinstance(value, float):
                bad = NON_FINITE[k % 3]
                k += 1
                where = _level_field(path) or where
                out.append(Mutation(f"{dotted(path)} = {bad}", target, {path: bad}, 2, where))
            elif isinstance(value, str) and path[-1] not in ("kind", "dist"):
                if "wards" in path and "name" not in path:  # a ward list names known wards
                    continue
                where = _level_field(path) or where
                out.append(Mutation(f"{dotted(path)} with a NUL", target,
                                    {path: value + "\x00"}, 2, where))
    return out


def _levels_nan(data: dict[str, Any]) -> None:
    data["items"][0]["levels"]["reach"][1] = math.nan


def _wards_without_sizes(data: dict[str, Any]) -> None:
    del data["population"]["size"]
    for w in data["population"]["wards"]:
        w.pop("baseline", None)


def _deep(depth: int) -> str:
    return "name = \"deep\"\ndescription = " + "[" * depth + "]" * depth + "\n"


RESIDENTS = "id,ward,threshold\n0,North,0.2\n1,North,0.4\n2,South,0.6\n3,South,0.8\n"
DUPLICATE_IDS = "id,ward\n0,North\n1,North\n1,South\n4,South\n4,South\n"
EDGES = "0 1\n1 2\n2 3\n3 0\n"
GRAPHML = """<?xml version="1.0" encoding="UTF-8"?>
<graphml xmlns="http://graphml.graphdrawing.org/xmlns">
  <key id="t" for="node" attr.name="threshold" attr.type="double"/>
  <graph edgedefault="undirected">
    <node id="0"><data key="t">0.2</data></node>
    <node id="1"><data key="t">0.4</data></node>
    <node id="2"><data key="t">0.6</data></node>
    <edge source="0" target="1"/><edge source="1" target="2"/>
  </graph>
</graphml>
"""


def _tiny(**extra: Any) -> Callable[[dict[str, Any]], None]:
    """small_town made tiny (4 residents from a CSV/graph), with its nudges dropped."""

    def change(data: dict[str, Any]) -> None:
        data["population"] = {"csv": "residents.csv"}
        data["network"] = {"kind": "file", "path": "ties.edgelist"}
        data["nudges"] = []
        for path, value in extra.items():
            set_or_delete(data, path, value)

    return change


def _on_graphml(**extra: Any) -> Callable[[dict[str, Any]], None]:
    def change(data: dict[str, Any]) -> None:
        data["population"] = {}
        data["network"] = {"kind": "file", "path": "g.graphml"}
        data["nudges"] = []
        for path, value in extra.items():
            set_or_delete(data, path, value)

    return change


UNIFORM_WIDE = {"dist": "uniform", "low": -1.0, "high": 2.0}
HANDWRITTEN = [
    # --- issue 11 §1: nonsense that ran "successfully" ---------------------------------
    Mutation("attitude = nan", "borough", {"population.attitude": math.nan}, 2,
             "population.attitude"),
    Mutation("rule.adopt_intercept = nan", "borough", {"rule.adopt_intercept": math.nan}, 2,
             "rule.adopt_intercept"),
    Mutation("reminder boost = nan", "borough", {"nudges[1].boost": math.nan}, 2,
             "nudges[1].boost"),
    Mutation("pledge boost = inf", "small_town", {"nudges[3].boost": math.inf}, 2,
             "nudges[3].boost"),
    Mutation("susceptibility = inf", "borough", {"population.susceptibility": math.inf}, 2,
             "population.susceptibility"),
    Mutation("targeting.attitude_below = nan", "small_town",
             {"nudges[3].targeting.attitude_below": math.nan}, 2,
             "nudges[3].targeting.attitude_below"),
    Mutation("cost_per_contact = inf", "borough", {"nudges[0].cost_per_contact": math.inf}, 2,
             "nudges[0].cost_per_contact"),
    Mutation("attitude uniform with nan bounds", "borough",
             {"population.attitude": {"dist": "uniform", "low": math.nan, "high": math.nan}}, 2,
             "population.attitude.low"),
    Mutation("rule.threshold uniform on [-1, 2]", "small_town",
             {"rule": {"kind": "threshold", "threshold": UNIFORM_WIDE}}, 2, "rule.threshold"),
    Mutation("population.threshold uniform on [-1, 2]", "small_town",
             {"population.threshold": UNIFORM_WIDE}, 2, "population.threshold"),
    Mutation("rule.threshold = 1.5", "small_town",
             {"rule": {"kind": "threshold", "threshold": 1.5}}, 2, "rule.threshold"),
    Mutation("rule.threshold normal without bounds", "small_town",
             {"rule": {"kind": "threshold", "threshold": {"dist": "normal", "mean": 0.3,
                                                          "sd": 0.1}}}, 2, "rule.threshold"),
    Mutation("rule.threshold beta on [0, 2]", "small_town",
             {"rule": {"kind": "threshold", "threshold": {"dist": "beta", "high": 2.0}}}, 2,
             "rule.threshold"),
    Mutation("cost beta on [-0.5, 1]", "borough",
             {"population.cost": {"dist": "beta", "low": -0.5, "high": 1.0}}, 2,
             "population.cost"),
    Mutation("habit = 1.2", "borough", {"population.habit": 1.2}, 2, "population.habit"),
    Mutation("susceptibility uniform from -1", "borough",
             {"population.susceptibility": {"dist": "uniform", "low": -1.0, "high": 1.0}}, 2,
             "population.susceptibility"),
    Mutation("tie weights uniform from -1", "borough",
             {"network.weights": {"dist": "uniform", "low": -1.0, "high": 1.0}}, 2,
             "network.weights"),
    Mutation("normal attitude low = -inf", "borough", {"population.attitude.low": -math.inf}, 2,
             "population.attitude.low"),
    Mutation("residents CSV with duplicate ids", "small_town", _tiny(), 2, "population.csv",
             files={"residents.csv": DUPLICATE_IDS, "ties.edgelist": EDGES}),
    Mutation("residents CSV with threshold 1.5", "small_town", _tiny(), 2, "population.csv",
             files={"residents.csv": RESIDENTS.replace("0.8", "1.5"), "ties.edgelist": EDGES}),
    Mutation("residents CSV with an inf attitude", "small_town", _tiny(), 2, "population.csv",
             files={"residents.csv": "id,attitude\n0,1\n1,inf\n2,0\n3,0\n",
                    "ties.edgelist": EDGES}),
    Mutation("residents CSV that is not a CSV", "small_town", _tiny(), 2, "population.csv",
             files={"residents.csv": "\x00\x01binary", "ties.edgelist": EDGES}),
    Mutation("residents CSV with only a header", "small_town", _tiny(), 2, "population.csv",
             files={"residents.csv": "id,ward\n", "ties.edgelist": EDGES}),
    Mutation("residents CSV missing", "small_town", _tiny(), 2, "population.csv",
             files={"ties.edgelist": EDGES}),
    Mutation("graph file missing", "small_town", _tiny(), 2, "network.path",
             files={"residents.csv": RESIDENTS}),
    Mutation("graph file unparsable", "small_town", _tiny(), 2, "network.path",
             files={"residents.csv": RESIDENTS, "ties.edgelist": "0 1 2 3 4\n"}),
    Mutation("graph file with a negative weight", "small_town", _tiny(), 2, "network.path",
             files={"residents.csv": RESIDENTS, "ties.edgelist": "0 1 -1\n1 2 1\n2 3 1\n"}),
    Mutation("graph file not GraphML", "small_town", _on_graphml(), 2, "network.path",
             files={"g.graphml": "<graphml><broken"}),
    Mutation("CSV and graph disagree on residents", "small_town", _tiny(), 2, "population.csv",
             files={"residents.csv": RESIDENTS, "ties.edgelist": "0 1\n1 2\n2 3\n3 4\n"}),
    Mutation("nudge ward unknown to the CSV's wards", "small_town",
             _tiny(nudges=[{"kind": "information", "targeting": {"wards": ["Nowhere"]}}]), 2,
             "nudges[0].targeting.wards",
             files={"residents.csv": RESIDENTS, "ties.edgelist": EDGES}),
    Mutation("initial adopter id unknown to the CSV", "small_town",
             _tiny(initial_adopters=[99]), 2, "initial_adopters",
             files={"residents.csv": RESIDENTS, "ties.edgelist": EDGES}),
    # --- issue 11 §2: tracebacks ---------------------------------------------------------
    Mutation("wards list without sizes and no population.size", "small_town",
             'name="a"\n[population]\nwards=[{name="A"},{name="B"}]\n', 2, "population.size"),
    Mutation("wards list without sizes (from the borough)", "borough", _wards_without_sizes, 2,
             "population.size"),
    Mutation("steps = 2**63 - 1", "borough", {"steps": 2**63 - 1}, 2, "steps"),
    Mutation("steps above the maximum", "small_town", {"steps": MAX_STEPS + 1}, 2, "steps"),
    Mutation("5,000-deep nested list", "borough", _deep(5000), 2, "malformed TOML"),
    Mutation("name with NUL", "borough", {"name": "x\x00y"}, 2, "name"),
    Mutation("name with an escape sequence", "borough", {"name": "x\x1b[31my"}, 2, "name"),
    Mutation("step_unit with a newline", "small_town", {"step_unit": "week\n"}, 2, "step_unit"),
    Mutation("ward name with a NUL", "small_town", {"population.wards[0].name": "A\x00"}, 2,
             "population.wards[0].name"),
    Mutation("--out names an existing file", "small_town", {}, 2, "--out", command="run",
             files={"out": "not a folder"}),
    Mutation("wards given as a list with a bad item", "small_town",
             {"population.wards[1]": 3}, 2, "population.wards[1]"),
    Mutation("wards given as text", "small_town", {"population.wards": "eight"}, 2,
             "population.wards"),
    Mutation("ward size zero", "small_town", {"population.wards[0].size": 0}, 2,
             "population.wards[0].size"),
    Mutation("initial_adopters list with a fraction", "small_town",
             {"initial_adopters": [1.5], "population.wards": 8}, 2, "initial_adopters[0]"),
    Mutation("seed above 2**63 - 1", "small_town", {"seed": 2**63}, 2, "seed"),
    Mutation("seed negative", "small_town", {"seed": -1}, 2, "seed"),
    Mutation("population.size negative", "small_town", {"population.size": -5}, 2,
             "population.size"),
    Mutation("population.size as text", "small_town", {"population.size": "many"}, 2,
             "population.size"),
    Mutation("unknown top-level field", "small_town", {"colour": "green"}, 2, "colour"),
    Mutation("unknown nudge field", "small_town", {"nudges[0].bost": 1.0}, 2, "nudges[0].bost"),
    Mutation("unknown nudge kind", "small_town", {"nudges[0].kind": "hug"}, 2,
             "nudges[0].kind"),
    Mutation("unknown network kind", "small_town", {"network.kind": "torus"}, 2, "network.kind"),
    Mutation("unknown distribution", "small_town", {"population.cost.dist": "cauchy"}, 2,
             "population.cost.dist"),
    Mutation("probability above 1", "small_town", {"nudges[0].reach": 1.5}, 2, "nudges[0].reach"),
    Mutation("probability below 0", "small_town", {"nudges[1].reach": -0.1}, 2,
             "nudges[1].reach"),
    Mutation("ward baseline above 1", "small_town", {"population.wards[2].baseline": 1.01}, 2,
             "population.wards[2].baseline"),
    Mutation("nudge starts after the last step", "small_town", {"steps": 10}, 2, "nudges[3].start"),
    Mutation("end before start", "small_town", {"nudges[4].end": 2}, 2, "nudges[4].end"),
    Mutation("normal with high < low", "borough", {"population.attitude.low": 4.0}, 2,
             "population.attitude.high"),
    Mutation("beta with a = 0", "borough", {"population.cost.a": 0.0}, 2, "population.cost.a"),
    Mutation("odd k for watts_strogatz", "small_town",
             {"network": {"kind": "watts_strogatz", "k": 3}}, 2, "network.k"),
    Mutation("watts_strogatz k above the residents", "small_town",
             {"network": {"kind": "watts_strogatz", "k": 2000}}, 2, "network.k"),
    Mutation("barabasi_albert m above the residents", "small_town",
             {"network": {"kind": "barabasi_albert", "m": 5000}}, 2, "network.m"),
    Mutation("erdos_renyi mean degree above n - 1", "small_town",
             {"network": {"kind": "erdos_renyi", "mean_degree": 5000.0}}, 2,
             "network.mean_degree"),
    Mutation("ward_clustered mean degree in above a ward's size", "small_town",
             {"network.mean_degree_in": 500.0}, 2, "network.mean_degree_in"),
    Mutation("bass p + q > 1", "small_town", {"rule": {"kind": "bass", "p": 0.5, "q": 0.7}}, 2,
             "rule.q"),
    Mutation("count and share both given", "small_town", {"nudges[2].targeting.share": 0.5}, 2,
             "nudges[2].targeting.share"),
    Mutation("half_life negative", "small_town", {"nudges[3].half_life": -1.0}, 2,
             "nudges[3].half_life"),
    Mutation("half_life as the wrong word", "small_town", {"nudges[3].half_life": "never"}, 2,
             "nudges[3].half_life"),
    Mutation("community partnership in an unknown ward", "borough",
             {"nudges[4].wards": ["Atlantis"]}, 2, "nudges[4].wards"),
    Mutation("initial_adopters and baselines both", "small_town", {"initial_adopters": 10}, 2,
             "initial_adopters"),
    Mutation("malformed TOML", "small_town", "steps = [\n", 2, "malformed TOML"),
    Mutation("TOML top-level nan", "small_town", "steps = 5\n[impact]\nper_adopter_step = nan\n",
             2, "impact.per_adopter_step"),
    Mutation("more initial adopters than residents", "small_town",
             {"initial_adopters": 5000, "population.wards": 8}, 2, "initial_adopters"),
    # --- valid: exit 0 ---------------------------------------------------------------------
    Mutation("unchanged", "borough", {}, 0),
    Mutation("unchanged", "small_town", {}, 0),
    Mutation("unchanged", "menu", {}, 0),
    Mutation("steps at the maximum", "small_town", {"steps": MAX_STEPS}, 0),
    Mutation("steps = 1 (nudges moved)", "small_town", {"steps": 1, "nudges": []}, 0),
    Mutation("seed = 2**63 - 1", "small_town", {"seed": 2**63 - 1}, 0),
    Mutation("normal attitude without bounds", "borough",
             {"population.attitude": {"dist": "normal", "mean": 0.0, "sd": 1.0}}, 0),
    Mutation("normal threshold with bounds inside [0, 1]", "small_town",
             {"rule": {"kind": "threshold", "threshold": {"dist": "normal", "mean": 0.3,
                                                          "sd": 0.1, "low": 0.0,
                                                          "high": 1.0}}}, 0),
    Mutation("threshold at the edges", "small_town",
             {"rule": {"kind": "threshold", "threshold": {"dist": "uniform", "low": 0.0,
                                                          "high": 1.0}}}, 0),
    Mutation("normal with sd 0 clipped into range", "small_town",
             {"population.cost": {"dist": "normal", "mean": 0.5, "sd": 0.0}}, 0),
    Mutation("description with newlines and tabs", "small_town",
             {"description": "line one\n\tline two"}, 0),
    Mutation("unicode name", "small_town", {"name": "Saint-Étienne 2025 — trial"}, 0),
    Mutation("very negative but finite intercept", "small_town",
             {"rule.adopt_intercept": -1e300}, 0),
    Mutation("tiny population from a CSV and an edge list", "small_town", _tiny(), 0,
             files={"residents.csv": RESIDENTS, "ties.edgelist": EDGES}),
    Mutation("node thresholds and rule.threshold both: node attributes win, with a warning",
             "small_town", _on_graphml(rule={"kind": "threshold", "threshold": 0.5}), 0,
             files={"g.graphml": GRAPHML}, stderr="nudgesim: warning: rule.threshold"),
    Mutation("CSV thresholds and population.threshold both: a warning", "small_town",
             _tiny(**{"population.threshold": 0.5, "rule": {"kind": "threshold"}}), 0,
             files={"residents.csv": RESIDENTS, "ties.edgelist": EDGES},
             stderr="nudgesim: warning: population.threshold"),
    Mutation("a short run of the small town", "small_town", {}, 0, command="run"),
    Mutation("a short run with node thresholds", "small_town",
             _on_graphml(rule={"kind": "threshold"}), 0, command="run",
             files={"g.graphml": GRAPHML}),
    # --- the menu ----------------------------------------------------------------------------
    Mutation("a level value nan", "menu", _levels_nan, 2, "items[0].levels.reach"),
    Mutation("a level value above 1", "menu", {"items[0].levels.reach": [0.5, 1.5]}, 2,
             "items[0].levels.reach"),
    Mutation("a level path that does not exist", "menu",
             {"items[1].levels": {"targeting.count": [1, 2]}}, 2, "items[1].levels"),
    Mutation("an empty level", "menu", {"items[0].levels.reach": []}, 2, "items[0].levels.reach"),
    Mutation("a repeated level value", "menu", {"items[0].levels.reach": [0.5, 0.5]}, 2,
             "items[0].levels.reach"),
    Mutation("labels not one per level", "menu", {"items[0].level_labels.reach": ["one"]}, 2,
             "items[0].level_labels.reach"),
    Mutation("a nudge with an unknown kind", "menu", {"items[2].nudge.kind": "hug"}, 2,
             "items[2].nudge.kind"),
    Mutation("a nudge field out of range", "menu", {"items[5].nudge.opt_out": 2.0}, 2,
             "items[5].nudge.opt_out"),
    Mutation("a nudge in an unknown ward", "menu", {"items[4].nudge.wards": ["Atlantis"]}, 2,
             "items[4].nudge.wards"),
    Mutation("no items", "menu", {"items": []}, 2, "items"),
    Mutation("duplicate labels", "menu", {"items[1].label": "leaflet"}, 2, "items.label"),
    Mutation("unknown menu field", "menu", {"budget": 5.0}, 2, "budget"),
    Mutation("unknown item field", "menu", {"items[0].price": 5.0}, 2, "items[0].price"),
    Mutation("menu name with a NUL", "menu", {"name": "m\x00"}, 2, "name"),
    Mutation("deeply nested menu", "menu", _deep(5000), 2, "malformed TOML"),
    Mutation("required item", "menu", {"items[0].required": True}, 0),
]

def _lever(path: str, spec: Any) -> Callable[[dict[str, Any]], None]:
    def change(data: dict[str, Any]) -> None:
        data["levers"][path] = spec

    return change


def _no_levers(data: dict[str, Any]) -> None:
    data.pop("levers")
    data.pop("uncertainties")


EXPERIMENT_CASES = [
    Mutation("unknown design", "ambassador_sweep", {"design": "latin"}, 2, "design"),
    Mutation("zero replicates", "ambassador_sweep", {"replicates": 0}, 2, "replicates"),
    Mutation("negative seed", "ambassador_sweep", {"seed": -1}, 2, "seed"),
    Mutation("true as replicates", "ambassador_sweep", {"replicates": True}, 2, "replicates"),
    Mutation("unknown field", "ambassador_sweep", {"colour": "red"}, 2, "colour"),
    Mutation("missing scenario file", "ambassador_sweep", {"scenario": "nowhere.toml"}, 2,
             "scenario"),
    Mutation("unknown lever path", "ambassador_sweep",
             _lever("nudges[no such nudge].reach", [0.1, 0.2]), 2, "nudges[no such nudge]"),
    Mutation("lever value out of range", "ambassador_sweep",
             _lever("nudges[peer ambassadors].reach", [0.5, 1.5]), 2, "reach"),
    Mutation("range low above high", "sobol_sweep",
             {("uncertainties", "rule.adopt_norm"): {"low": 4.0, "high": 2.0}}, 2,
             "rule.adopt_norm"),
    Mutation("NaN in a lever list", "ambassador_sweep",
             _lever("nudges[peer ambassadors].reach", [0.5, math.nan]), 2, "reach"),
    Mutation("infinite range bound", "sobol_sweep",
             {("uncertainties", "rule.adopt_norm", "high"): math.inf}, 2, "rule.adopt_norm"),
    Mutation("unknown outcome", "ambassador_sweep", {"outcomes": ["happiness"]}, 2, "outcomes"),
    Mutation("unknown per-step column", "ambassador_sweep", {"per_step": ["mood"]}, 2,
             "per_step"),
    Mutation("zero samples", "sobol_sweep", {"samples": 0}, 2, "samples"),
    Mutation("a design of billions", "sobol_sweep", {"samples": 2**40}, 2, "design"),
    Mutation("empty name", "ambassador_sweep", {"name": ""}, 2, "name"),
    Mutation("name of dots", "ambassador_sweep", {"name": ".."}, 2, "name"),
    Mutation("deeply nested", "ambassador_sweep", _deep(5000), 2, "malformed TOML"),
    Mutation("traversal name becomes one folder", "ambassador_sweep", {"name": "../../evil"}, 0),
    Mutation("no factors at all", "ambassador_sweep", _no_levers, 0),
    Mutation("lhs design", "sobol_sweep", {"design": "lhs", "samples": 8}, 0),
    Mutation("as shipped", "ambassador_sweep", {}, 0),
    Mutation("as shipped", "sobol_sweep", {}, 0),
]

TABLE = HANDWRITTEN + EXPERIMENT_CASES + generated()


def test_the_table_is_big_and_names_are_unique():
    assert len(TABLE) >= 100
    assert sum(m.code == 0 for m in TABLE) >= 15
    ids = [m.id for m in TABLE]
    assert len(set(ids)) == len(ids), [i for i in ids if ids.count(i) > 1]


@pytest.mark.parametrize("m", TABLE, ids=[m.id for m in TABLE])
def test_mutation(m: Mutation, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)  # a run without --out must not write into the repository
    code, out, err = run_mutation(m, tmp_path)
    assert "Traceback" not in err + out
    assert code == m.code, err
    if m.code == 2:
        first = err.splitlines()[0]
        assert first.startswith("nudgesim: error: ")
        assert m.field in first, f"first line does not name {m.field!r}: {first}"
        assert "np.float64" not in err and "constrained-" not in err
        assert len(err.strip().splitlines()) <= 2, err  # one line (two bounds may both be bad)
    else:
        assert m.stderr in err
        assert "valid" in out or "adoption" in out or " runs" in out


# ---------------------------------------------------------------------------------------
# Properties: any finite value in a field's range is accepted, any non-finite one refused
# ---------------------------------------------------------------------------------------

SMALL = tomllib.loads(FILES["small_town"].read_text(encoding="utf-8"))


def _with(path: str, value: Any) -> dict[str, Any]:
    data = tomllib.loads(tomli_w.dumps(SMALL))
    set_or_delete(data, path, value)
    return data


@settings(max_examples=60, deadline=None)
@given(path=st.sampled_from(["nudges[0].reach", "nudges[3].uptake", "impact.per_adopter_step",
                             "rule.habit_gain"]),
       value=st.floats(0.0, 1.0))
def test_any_finite_value_in_range_is_accepted(path, value):
    ns.Scenario.from_dict(_with(path, value))


@settings(max_examples=30, deadline=None)
@given(path=st.sampled_from(["rule.adopt_intercept", "rule.lapse_norm", "nudges[3].boost",
                             "population.attitude.mean", "nudges[4].crowding_out"]),
       value=st.sampled_from(NON_FINITE))
def test_any_non_finite_value_is_refused_naming_the_field(path, value):
    with pytest.raises(ns.ScenarioError) as err:
        ns.Scenario.from_dict(_with(path, value))
    first = str(err.value).splitlines()[0]
    assert first.startswith(f"{path}: ") and "finite" in first


@settings(max_examples=60, deadline=None)
@given(low=st.floats(-2, 2), width=st.floats(0, 3))
def test_threshold_range_is_one_rule_wherever_written(low, width):
    """population.threshold and rule.threshold accept and refuse exactly the same ranges."""
    dist = {"dist": "uniform", "low": low, "high": low + width}
    inside = 0.0 <= low and low + width <= 1.0
    for where in ({"population": {"size": 10, "threshold": dist}},
                  {"population": {"size": 10}, "rule": {"kind": "threshold", "threshold": dist}}):
        try:
            ns.Scenario.from_dict(where)
            accepted = True
        except ns.ScenarioError:
            accepted = False
        assert accepted == inside, (where, accepted)

