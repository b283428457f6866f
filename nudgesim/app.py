"""Browser visualisation: a Mesa SolaraViz page over :class:`~nudgesim.model.NudgeModel`.

``nudgesim viz [SCENARIO.toml] [--port 8765] [--host 127.0.0.1]`` checks the scenario, then
serves ``nudgesim.app:Page`` with solara's server in this process (no child to outlive it),
behind a Host-header check, with the scenario's path in ``NUDGESIM_VIZ_SCENARIO``. The page
shows the social graph coloured by resident state (up
to :data:`GRAPH_LIMIT` residents; a ward view above that), the adoption curve with nudge
windows shaded, cumulative cost and impact, and Mesa's controls plus the campaign's main
levers. Nothing is built at import: each browser session builds its own model.

Per step the page sends no picture: matplotlib draws what stays (ties, axes, nudge lanes)
once per model, and a canvas in the browser redraws what changed (each resident's state as
one byte, the curves' points, the y ticks) from a few kilobytes of marks.
"""

from __future__ import annotations

import base64
import hashlib
import html
import io
import json
import math
import os
import re
from collections.abc import Iterable
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path
from typing import Any

import ipyvuetify
import networkx as nx
import numpy as np
import solara
import traitlets
from matplotlib import colormaps
from matplotlib.cm import ScalarMappable
from matplotlib.collections import LineCollection
from matplotlib.colors import Normalize, to_hex
from matplotlib.figure import Figure
from matplotlib.lines import Line2D
from matplotlib.patches import Patch
from matplotlib.ticker import MaxNLocator
from mesa.visualization import Slider, SolaraViz
from mesa.visualization.utils import update_counter

from . import scenarios
from .model import STATES, NudgeModel
from .scenario import (
    Ambassadors,
    Incentive,
    NormFeedback,
    Pledge,
    Scenario,
    ScenarioError,
)

ENV_SCENARIO = "NUDGESIM_VIZ_SCENARIO"
LOOPBACK = ("127.0.0.1", "localhost", "::1")
SHUTDOWN_GRACE = 5
"""Seconds a stopping server waits for open browser tabs before closing them (assumption:
long enough to finish a frame; uvicorn's default waits for ever while a tab is open)."""
SCENARIO_DIR = scenarios.folder()  # package data: an installed package has them too
DEFAULT_SCENARIO = scenarios.path(scenarios.SMALL_TOWN)
GRAPH_LIMIT = 2000
"""Largest population drawn as a node-link graph (assumption: above ~2,000 households the
drawing is an unreadable hairball and slow to render; the ward view is shown instead)."""
LAYOUT_GROUP = 250
"""Residents laid out together (assumption: networkx's dense spring layout takes ~0.3 s for
300 nodes but its sparse one ~7 s for 1,000, so big wards are split into index blocks)."""

AS_IN_FILE = "as in file"
POPULATIONS = [AS_IN_FILE, "250", "500", "1000", "2000", "5000", "10000", "20000"]
NETWORKS = [AS_IN_FILE, "ward_clustered", "watts_strogatz", "barabasi_albert", "erdos_renyi"]
STRATEGIES = ["degree", "betweenness", "kcore", "community", "ward", "random"]
COLOURS = {"never": "#c8c8c8", "adopter": "#2ca02c", "lapsed": "#ff7f0e", "ambassador": "#6a3d9a"}


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
    Mesa's SolaraViz re-creates the model with them on Reset). None means "as in file"."""

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
        super().__init__(sc, rng=None if rng is None else int(rng))


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


# ---------------------------------------------------------------------------------------
# Layout: computed once per graph and cached, never per frame
# ---------------------------------------------------------------------------------------

_LAYOUTS: dict[str, tuple[np.ndarray, np.ndarray]] = {}
_LAYOUT_CACHE_SIZE = 8


def graph_key(model: NudgeModel) -> str:
    a, ward = model.engine.adjacency, model.engine.population.ward
    h = hashlib.sha1()
    for arr in (a.indptr, a.indices, ward):
        h.update(np.ascontiguousarray(arr).tobytes())
    return h.hexdigest()


def _fit_disc(pts: np.ndarray, radius: float) -> np.ndarray:
    """Scale a block's positions so 90% fall inside `radius` and pull stragglers (isolated
    residents the spring layout pushes far away) onto its rim: blocks never overlap."""
    pts = pts - np.median(pts, axis=0)
    dist = np.hypot(pts[:, 0], pts[:, 1])
    scale = np.percentile(dist, 90) if len(pts) > 1 else 0.0
    if scale <= 0:
        return pts * 0.0
    pts = pts * (0.85 * radius / scale)
    dist = np.maximum(np.hypot(pts[:, 0], pts[:, 1]), 1e-12)
    return pts * np.minimum(1.0, radius / dist)[:, None]


def layout(model: NudgeModel) -> tuple[np.ndarray, np.ndarray]:
    """Node positions (n x 2) and tie segments (m x 2 x 2), cached by graph content.

    Wards sit on a grid (big wards split into blocks of LAYOUT_GROUP residents); inside
    each block networkx's spring layout with a fixed seed places residents, so the same
    graph always looks the same.
    """
    key = graph_key(model)
    if key in _LAYOUTS:
        return _LAYOUTS[key]
    eng = model.engine
    n, ward = eng.n, eng.population.ward
    groups: list[np.ndarray] = []
    for w in range(eng.population.n_wards):
        members = np.flatnonzero(ward == w)
        for k in range(0, len(members), LAYOUT_GROUP):
            groups.append(members[k : k + LAYOUT_GROUP])
    groups = [g for g in groups if len(g)]
    cols = max(1, math.ceil(math.sqrt(len(groups))))
    pos = np.zeros((n, 2))
    graph = model.grid.G
    for k, members in enumerate(groups):
        centre = np.array([k % cols, -(k // cols)], dtype=float)
        sub = graph.subgraph(members.tolist())
        local = nx.spring_layout(sub, seed=0, iterations=50)
        pts = np.array([local[i] for i in members.tolist()]).reshape(-1, 2)
        pos[members] = centre + _fit_disc(pts, radius=0.42)
    a = eng.adjacency.tocoo()
    upper = a.row < a.col
    segments = np.stack([pos[a.row[upper]], pos[a.col[upper]]], axis=1)
    if len(_LAYOUTS) >= _LAYOUT_CACHE_SIZE:
        _LAYOUTS.pop(next(iter(_LAYOUTS)))
    _LAYOUTS[key] = (pos, segments)
    return pos, segments


# ---------------------------------------------------------------------------------------
# Frames and overlays: matplotlib draws what stays (axes, ties, names) once, a canvas in
# the browser draws what changes (residents' colours, the curves) from small arrays
# ---------------------------------------------------------------------------------------

FRAME_DPI = 100
"""Resolution of the static pictures (assumption: sharp at the page's ~600 px columns)."""
GRAPH_DPI = 130
"""The graph's picture is denser (thin ties), so it gets more pixels (assumption)."""
NODE_SIZE = {"never": 1.5, "adopter": 1.5, "lapsed": 1.5, "ambassador": 3.0}
"""Dot radius per state in points (matplotlib's scatter sizes 9 and 36 before)."""
DRAW_ORDER = (0, 2, 1, 3)
"""State codes in drawing order: non-adopters underneath, ambassadors on top."""
GRAPH_SIZE, ADOPTION_SIZE, COST_SIZE = (6.4, 7.1), (6.4, 5.2), (6.4, 4.3)
"""Picture sizes in inches: their aspect ratios balance the page's two columns."""
LANE = 0.045  # height of one nudge's lane, as a fraction of the axes (assumption: legible)
HEADROOM = 1.1  # y axes reach at least 10% above the data so far (assumption)
AXIS_FLOOR = {"adoption": 10.0, "cost": 1.0, "impact": 1.0}
"""Smallest y-axis top (%, £, impact unit) before there are data to scale to (assumption:
the old figures' 10% floor; £1 and 1 unit so an empty axis still has ticks)."""


@dataclass(frozen=True)
class Frame:
    """A static picture (a PNG data URL) and where its axes sit in it, so the canvas can
    place marks: positions are fractions of the picture from its top-left corner."""

    image: str
    aspect: float  # height / width
    box: tuple[float, float, float, float]  # the axes' left, top, width, height
    xlim: tuple[float, float]
    pt: float  # one typographic point as a fraction of the picture's width

    def fx(self, values: Any) -> list[float]:
        left, _, width, _ = self.box
        lo, hi = self.xlim
        return np.round(left + width * (np.asarray(values, float) - lo) / (hi - lo), 5).tolist()

    def fy(self, values: Any, lo: float, hi: float) -> list[float]:
        _, top, _, height = self.box
        frac = (np.asarray(values, float) - lo) / (hi - lo)
        return np.round(top + height * (1.0 - frac), 5).tolist()


def _frame(fig: Figure, ax: Any) -> Frame:
    """Render `fig` once and record where `ax` sits in the picture."""
    box = ax.get_position()
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=fig.dpi)
    width, height = fig.get_size_inches()
    image = "data:image/png;base64," + base64.b64encode(buf.getvalue()).decode("ascii")
    place = (float(box.x0), float(1.0 - box.y1), float(box.width), float(box.height))
    x0, x1 = ax.get_xlim()
    return Frame(image, float(height / width), place, (float(x0), float(x1)),
                 float(1 / 72 / width))


def _no_y_labels(*axes: Any, room: float) -> None:
    """The canvas draws the y ticks: the data's range grows during a run, the picture
    does not change. `room` (points) is kept between the axis and its label for them."""
    for ax in axes:
        ax.tick_params(axis="y", which="both", left=False, right=False, labelleft=False,
                       labelright=False)
        ax.yaxis.labelpad = room


def y_axis(frame: Frame, peak: float, floor: float, fmt: str, side: str = "left",
           reach: float = 1.0, grid: bool = True) -> tuple[float, dict[str, list]]:
    """Ticks for 0..`peak` x HEADROOM (at least `floor`) as canvas marks, and the axis top.

    `reach` is the share of the axes the data may use (the adoption curve leaves the top
    to the nudge lanes); `fmt` formats a tick value given its decimals, e.g. "£{:,.{d}f}".
    """
    # an array at run time; matplotlib's stub says Sequence, which has no boolean masks
    ticks = np.asarray(MaxNLocator(nbins=5, steps=[1, 2, 2.5, 5, 10]).tick_values(
        0.0, max(float(peak) * HEADROOM, floor)))
    ticks = ticks[ticks >= 0]
    hi = float(ticks[-1]) / reach
    decimals = max(0, -math.floor(math.log10(ticks[1] - ticks[0]) + 1e-9))
    left, _, width, _ = frame.box
    edge = left if side == "left" else left + width
    out = -1 if side == "left" else 1
    tick, gap, size = 3.5 * frame.pt, 3.5 * frame.pt, 10 * frame.pt
    lines, texts = [], []
    for value, y in zip(ticks, frame.fy(ticks, 0.0, hi), strict=True):
        if grid:
            lines.append({"x": [left, left + width], "y": [y, y],
                          "color": "rgba(176,176,176,0.3)", "width": 0.8 * frame.pt})
        lines.append({"x": [edge, edge + out * tick], "y": [y, y], "color": "#000000",
                      "width": 0.8 * frame.pt})
        texts.append({"x": edge + out * (tick + gap), "y": y,
                      "text": fmt.format(float(value), d=decimals), "size": size,
                      "align": "right" if side == "left" else "left", "color": "#000000"})
    return hi, {"lines": lines, "texts": texts}


def _merge(*layers: dict[str, list]) -> dict[str, list]:
    out: dict[str, list] = {}
    for layer in layers:
        for k, v in layer.items():
            out[k] = out.get(k, []) + v
    return out


def _title(model: NudgeModel) -> str:
    sc = model.nudge_scenario
    return f"{sc.name}: {sc.step_unit} {model.t} of {sc.steps}"


_FRAMES: dict[tuple, tuple[Frame, str]] = {}


def graph_frame(model: NudgeModel) -> tuple[Frame, str]:
    """Ties and ward names drawn once per graph (cached like the layout), and each
    resident's position as fractions of that picture ("x0,y0,x1,y1,...")."""
    pos, segments = layout(model)
    pop = model.engine.population
    key = (graph_key(model), tuple(pop.ward_names))
    if key in _FRAMES:
        return _FRAMES[key]
    fig = Figure(figsize=GRAPH_SIZE, dpi=GRAPH_DPI)
    ax = fig.add_axes((0.0, 0.0, 1.0, 1.0))
    ax.set_axis_off()
    # a list of the (2 x 2) rows: what LineCollection iterates over anyway, and the
    # Sequence its stub asks for
    ax.add_collection(LineCollection(list(segments), colors="#9a9a9a", linewidths=0.3, alpha=0.35))
    lo, hi = pos.min(axis=0), pos.max(axis=0)
    ax.set_xlim(lo[0] - 0.06, hi[0] + 0.06)
    ax.set_ylim(lo[1] - 0.04, hi[1] + (0.16 if pop.n_wards > 1 else 0.04))
    if pop.n_wards > 1:
        for w, name in enumerate(pop.ward_names):
            members = pos[pop.ward == w]
            if len(members):
                ax.text(members[:, 0].mean(), members[:, 1].max() + 0.04, name, fontsize=7,
                        ha="center", va="bottom", color="#333333", parse_math=False)
    frame = _frame(fig, ax)
    xy = np.column_stack([frame.fx(pos[:, 0]), frame.fy(pos[:, 1], *ax.get_ylim())])
    entry = (frame, ",".join(f"{v:.5g}" for v in xy.ravel()))
    if len(_FRAMES) >= _LAYOUT_CACHE_SIZE:
        _FRAMES.pop(next(iter(_FRAMES)))
    _FRAMES[key] = entry
    return entry


def node_styles(frame: Frame) -> list[dict[str, Any]]:
    """Fill, outline and radius (fraction of the width) for each state code."""
    return [{"fill": COLOURS[s], "edge": "#000000" if s == "ambassador" else "",
             "r": NODE_SIZE[s] * frame.pt, "lw": 0.4 * frame.pt} for s in STATES]


def encode_codes(codes: np.ndarray) -> str:
    """State codes as one digit per resident: ~1 byte each on the wire."""
    return (np.asarray(codes, np.uint8) + ord("0")).tobytes().decode("ascii")


def state_counts(codes: np.ndarray) -> dict[str, int]:
    counts = np.bincount(codes, minlength=len(STATES))
    return {s: int(counts[c]) for c, s in enumerate(STATES)}


def ward_frame(model: NudgeModel) -> Frame:
    """Axes, ward names and the colour scale of the ward view, drawn once per model."""
    pop = model.engine.population
    fig = Figure(figsize=(6.4, max(3.0, 1.0 + 0.2 * pop.n_wards)), dpi=FRAME_DPI)
    ax = fig.add_subplot()
    fig.colorbar(ScalarMappable(Normalize(0, 100), "YlGn"), ax=ax, pad=0.01)
    ax.set_yticks(np.arange(pop.n_wards), pop.ward_names, fontsize=7)
    for label in ax.get_yticklabels():
        label.set_parse_math(False)
    ax.set_ylim(pop.n_wards - 0.5, -0.5)
    ax.set_xlim(0, 100)
    ax.set_xlabel("households adopting (%); | = step 0")
    ax.grid(axis="x", alpha=0.3)
    fig.subplots_adjust(left=0.22, right=0.98, bottom=0.8 / fig.get_size_inches()[1], top=0.97)
    return _frame(fig, ax)


def ward_overlay(model: NudgeModel, frame: Frame) -> dict[str, Any]:
    """One bar per ward (adoption now, coloured as the scale) and a tick at step 0."""
    eng, pop = model.engine, model.engine.population
    rates = 100 * eng.ward_rates()
    start = 100 * eng.ward_log[0] / np.maximum(pop.ward_sizes(), 1)
    y, ylim = np.arange(pop.n_wards), (pop.n_wards - 0.5, -0.5)
    hexes = [to_hex(c) for c in colormaps["YlGn"](rates / 100)]
    x0, x1 = frame.fx([0.0])[0], frame.fx(rates)
    top, bottom = frame.fy(y - 0.4, *ylim), frame.fy(y + 0.4, *ylim)
    rects = [[x0, t, r, b, h] for t, r, b, h in zip(top, x1, bottom, hexes, strict=True)]
    ticks = [{"x": [x, x], "y": [t, b], "color": "#000000", "width": 2 * frame.pt}
             for x, t, b in zip(frame.fx(start), frame.fy(y - 0.3, *ylim),
                                frame.fy(y + 0.3, *ylim), strict=True)]
    return {"rects": rects, "lines": ticks}


def _shade_windows(ax: Any, model: NudgeModel) -> None:
    """One shaded lane per nudge along the top of the axes, named at its start, with a tick
    at each contact step: overlapping full-height shading would hide the curve."""
    for i, w in enumerate(model.nudge_windows()):
        top, colour = 1.0 - LANE * i, f"C{i % 10}"
        ax.axvspan(w["start"] - 0.5, w["stop"] - 0.5, ymin=top - LANE * 0.9, ymax=top,
                   color=colour, alpha=0.35, lw=0)
        for c in w["contacts"]:
            ax.axvline(c, ymin=top - LANE * 0.9, ymax=top, color=colour, lw=1.2)
        ax.text(w["start"] - 0.3, top - LANE * 0.45, w["name"], fontsize=6.5, va="center",
                transform=ax.get_xaxis_transform(), color="black", parse_math=False)


def adoption_frame(model: NudgeModel) -> Frame:
    """Axes, nudge lanes and legend of the adoption curve over the whole run."""
    sc = model.nudge_scenario
    fig = Figure(figsize=ADOPTION_SIZE, dpi=FRAME_DPI)
    ax = fig.add_subplot()
    ax.set_xlim(-0.5, sc.steps + 0.5)
    _shade_windows(ax, model)
    handles = [Patch(color="grey", alpha=0.25, lw=0, label="range across wards"),
               Line2D([], [], color="black", lw=2, label="all households")]
    if model.engine.population.n_wards <= 1:
        handles = handles[1:]
    ax.legend(handles=handles, loc="lower right", fontsize=7, frameon=False)
    ax.set_xlabel(f"step ({sc.step_unit})")
    ax.set_ylabel("households adopting (%)")
    ax.grid(axis="x", alpha=0.3)
    _no_y_labels(ax, room=24)
    fig.subplots_adjust(left=0.11, right=0.98, bottom=0.12, top=0.98)
    return _frame(fig, ax)


def adoption_overlay(model: NudgeModel, frame: Frame) -> dict[str, Any]:
    """The curve so far, the range across wards and the y ticks (the data use the axes
    below the nudge lanes)."""
    eng = model.engine
    wards = np.vstack(eng.ward_log) / np.maximum(eng.population.ward_sizes(), 1)
    rate = 100 * np.asarray(eng.log["adopters"]) / max(eng.n, 1)
    reach = 1.0 - (LANE * len(model.nudge_scenario.nudges) + 0.02)
    peak = min(100.0, 100 * float(wards.max()))
    hi, axis = y_axis(frame, peak, AXIS_FLOOR["adoption"], "{:.{d}f}", reach=reach)
    x = frame.fx(eng.log["step"])
    bands = []
    if wards.shape[1] > 1:
        bands = [{"x": x, "lo": frame.fy(100 * wards.min(axis=1), 0.0, hi),
                  "hi": frame.fy(100 * wards.max(axis=1), 0.0, hi),
                  "color": "rgba(128,128,128,0.25)"}]
    curve = {"x": x, "y": frame.fy(rate, 0.0, hi), "color": "#000000", "width": 2 * frame.pt,
             "dot": True}
    return _merge(axis, {"lines": [curve], "bands": bands})


def cost_frame(model: NudgeModel) -> Frame:
    """Axes of cumulative cost (left, £) and impact (right, the scenario's unit)."""
    sc = model.nudge_scenario
    fig = Figure(figsize=COST_SIZE, dpi=FRAME_DPI)
    ax = fig.add_subplot()
    ax.set_xlim(-0.5, sc.steps + 0.5)
    ax.set_ylabel("cumulative cost (£)", color="tab:red")
    ax.set_xlabel(f"step ({sc.step_unit})")
    ax.grid(axis="x", alpha=0.3)
    twin = ax.twinx()
    twin.set_ylabel(f"cumulative impact\n({sc.impact.unit})", color="tab:green", fontsize=8,
                    parse_math=False)
    _no_y_labels(ax, room=46)
    _no_y_labels(twin, room=24)
    fig.subplots_adjust(left=0.15, right=0.87, bottom=0.15, top=0.97)
    return _frame(fig, ax)


def cost_overlay(model: NudgeModel, frame: Frame) -> dict[str, Any]:
    """Both cumulative curves so far and their y ticks (cost left, impact right)."""
    log = model.engine.log
    cost, impact = np.cumsum(log["cost_step"]), np.cumsum(log["impact_step"])
    cost_hi, cost_axis = y_axis(frame, cost[-1], AXIS_FLOOR["cost"], "£{:,.{d}f}")
    impact_hi, impact_axis = y_axis(frame, impact[-1], AXIS_FLOOR["impact"], "{:,.{d}f}",
                                    side="right", grid=False)
    x = frame.fx(log["step"])
    curves = [{"x": x, "y": frame.fy(cost, 0.0, cost_hi), "color": "#d62728",
               "width": 2 * frame.pt, "dot": True},
              {"x": x, "y": frame.fy(impact, 0.0, impact_hi), "color": "#2ca02c",
               "width": 2 * frame.pt, "dot": True}]
    return _merge(cost_axis, impact_axis, {"lines": curves})


# ---------------------------------------------------------------------------------------
# The canvas widget and the page's components
# ---------------------------------------------------------------------------------------

_CANVAS_TEMPLATE = r"""
<template>
  <div class="nudgesim-plot"
       :style="{position: 'relative', width: '100%', aspectRatio: String(1 / aspect)}">
    <img v-if="image" :src="image" alt=""
         style="position: absolute; left: 0; top: 0; width: 100%; height: 100%" />
    <canvas ref="canvas"
            style="position: absolute; left: 0; top: 0; width: 100%; height: 100%"></canvas>
  </div>
</template>
<script>
module.exports = {
  mounted() {
    this.observer = new ResizeObserver(() => this.schedule());
    this.observer.observe(this.$refs.canvas);
    this.schedule();
  },
  beforeUnmount() {
    if (this.observer) this.observer.disconnect();
  },
  watch: {
    codes() { this.schedule(); },
    node_xy() { this.schedule(); },
    marks() { this.schedule(); },
  },
  methods: {
    schedule() {
      if (this.pending) return;
      this.pending = true;
      Promise.resolve().then(() => { this.pending = false; this.draw(); });
    },
    draw() {
      const c = this.$refs.canvas;
      if (!c) return;
      const dpr = window.devicePixelRatio || 1;
      const w = c.clientWidth, h = c.clientHeight;
      if (!w || !h) return;
      if (c.width !== Math.round(w * dpr) || c.height !== Math.round(h * dpr)) {
        c.width = Math.round(w * dpr);
        c.height = Math.round(h * dpr);
      }
      const g = c.getContext("2d");
      g.setTransform(dpr, 0, 0, dpr, 0, 0);
      g.clearRect(0, 0, w, h);
      const marks = Object.assign({bands: [], rects: [], lines: [], texts: []},
                                  JSON.parse(this.marks || "{}"));
      for (const b of marks.bands) {
        g.beginPath();
        b.x.forEach((x, i) => g.lineTo(x * w, b.hi[i] * h));
        for (let i = b.x.length - 1; i >= 0; i--) g.lineTo(b.x[i] * w, b.lo[i] * h);
        g.closePath();
        g.fillStyle = b.color;
        g.fill();
      }
      for (const r of marks.rects) {
        g.fillStyle = r[4];
        g.fillRect(r[0] * w, r[1] * h, (r[2] - r[0]) * w, (r[3] - r[1]) * h);
        g.strokeStyle = "#555555";
        g.lineWidth = 0.5;
        g.strokeRect(r[0] * w, r[1] * h, (r[2] - r[0]) * w, (r[3] - r[1]) * h);
      }
      g.lineJoin = "round";
      for (const l of marks.lines) {
        g.beginPath();
        l.x.forEach((x, i) => g.lineTo(x * w, l.y[i] * h));
        g.strokeStyle = l.color;
        g.lineWidth = Math.max(1, l.width * w);
        g.stroke();
        if (l.dot && l.x.length) {
          const n = l.x.length - 1;
          g.beginPath();
          g.arc(l.x[n] * w, l.y[n] * h, Math.max(2, 1.5 * l.width * w), 0, 2 * Math.PI);
          g.fillStyle = l.color;
          g.fill();
        }
      }
      g.textBaseline = "middle";
      for (const s of marks.texts) {
        g.font = Math.max(8, s.size * w).toFixed(1) + "px 'DejaVu Sans', sans-serif";
        g.textAlign = s.align;
        g.fillStyle = s.color;
        g.fillText(s.text, s.x * w, s.y * h);
      }
      if (this.xySource !== this.node_xy) {  // positions change only with the graph
        this.xySource = this.node_xy;
        this.xy = this.node_xy ? Float64Array.from(this.node_xy.split(","), Number) : [];
      }
      const codes = this.codes, xy = this.xy;
      if (!codes || 2 * codes.length !== xy.length) return;
      for (const code of this.draw_order) {
        const s = this.node_styles[code];
        const r = Math.max(1, s.r * w);
        const ch = 48 + code;
        g.beginPath();
        for (let i = 0; i < codes.length; i++) {
          if (codes.charCodeAt(i) !== ch) continue;
          g.moveTo(xy[2 * i] * w + r, xy[2 * i + 1] * h);
          g.arc(xy[2 * i] * w, xy[2 * i + 1] * h, r, 0, 2 * Math.PI);
        }
        g.fillStyle = s.fill;
        g.fill();
        if (s.edge) {
          g.strokeStyle = s.edge;
          g.lineWidth = Math.max(0.5, s.lw * w);
          g.stroke();
        }
      }
    },
  },
};
</script>
"""


class PlotCanvas(ipyvuetify.VuetifyTemplate):
    """A static picture with a canvas on top that the browser redraws from small arrays.

    Only changed traits cross the websocket: per frame the residents' state codes (one
    byte each) and the marks (curves, ticks, bars) as JSON, never a picture. Coordinates
    are fractions of the picture (x from the left, y from the top), sizes fractions of its
    width. Bulky values are strings: reacton walks list props element by element on every
    render, which cost more than the rest of a step.
    """

    template = traitlets.Unicode(_CANVAS_TEMPLATE).tag(sync=True)
    image = traitlets.Unicode("").tag(sync=True)
    aspect = traitlets.Float(0.75).tag(sync=True)
    node_xy = traitlets.Unicode("").tag(sync=True)  # "x0,y0,x1,y1,..."
    node_styles: traitlets.List[dict[str, Any]] = traitlets.List().tag(sync=True)
    draw_order = traitlets.List(list(DRAW_ORDER)).tag(sync=True)
    codes = traitlets.Unicode("").tag(sync=True)
    marks = traitlets.Unicode("{}").tag(sync=True)  # JSON: lines, bands, rects, texts


CAPTION_STYLE = "font-size: 13px; margin: 4px 0 2px 0; color: inherit"


def _caption(text: str, extra_html: str = "") -> None:
    solara.HTML(tag="div", unsafe_innerHTML=html.escape(text) + extra_html, style=CAPTION_STYLE)


def _legend(counts: dict[str, int]) -> str:
    dot = ('<span style="display:inline-block;width:{d}px;height:{d}px;border-radius:50%;'
           'background:{c};{b}margin:0 4px 0 12px;vertical-align:middle"></span>')
    return "".join(
        dot.format(d=9 if s == "ambassador" else 7, c=COLOURS[s],
                   b="border:1px solid #000;" if s == "ambassador" else "")
        + f"{s} ({n:,})" for s, n in counts.items())


@solara.component
def GraphView(model: NudgeModel, t: int = 0):
    """Residents coloured by state on the cached layout: only the codes change per step."""
    frame, xy = solara.use_memo(lambda: graph_frame(model), [model])
    styles = solara.use_memo(lambda: node_styles(frame), [frame])
    codes = model.state_codes()
    _caption(f"{_title(model)} — households by state")
    PlotCanvas.element(image=frame.image, aspect=frame.aspect, node_xy=xy,
                       node_styles=styles, codes=encode_codes(codes))
    _caption("", _legend(state_counts(codes)))


@solara.component
def WardView(model: NudgeModel, t: int = 0):
    """Adoption per ward now (bars coloured by rate) against step 0 (black ticks)."""
    frame = solara.use_memo(lambda: ward_frame(model), [model])
    _caption(f"{_title(model)} — adoption by ward ({model.engine.n:,} households; graph "
             f"drawn up to {GRAPH_LIMIT:,})")
    PlotCanvas.element(image=frame.image, aspect=frame.aspect,
                       marks=json.dumps(ward_overlay(model, frame)))


@solara.component
def SpaceView(model: NudgeModel, t: int = 0):
    if model.engine.n <= GRAPH_LIMIT:
        GraphView(model, t)
    else:
        WardView(model, t)


@solara.component
def AdoptionCurve(model: NudgeModel, t: int = 0):
    """The adoption curve so far over the whole run's time axis."""
    frame = solara.use_memo(lambda: adoption_frame(model), [model])
    rate = 100 * model.engine.adoption_rate()
    _caption(f"{_title(model)} — adoption {rate:.1f}% now; bars = nudge active, | = contact")
    PlotCanvas.element(image=frame.image, aspect=frame.aspect,
                       marks=json.dumps(adoption_overlay(model, frame)))


@solara.component
def CostImpact(model: NudgeModel, t: int = 0):
    """Cumulative cost and impact so far."""
    frame = solara.use_memo(lambda: cost_frame(model), [model])
    log, unit = model.engine.log, model.nudge_scenario.impact.unit
    _caption(f"Cost £{np.sum(log['cost_step']):,.0f} (red, left); impact "
             f"{np.sum(log['impact_step']):,.2f} {unit} (green, right)")
    PlotCanvas.element(image=frame.image, aspect=frame.aspect,
                       marks=json.dumps(cost_overlay(model, frame)))


def summary_html(model: NudgeModel) -> str:
    """Headline numbers a planner asks for, and what the levers did (escaped HTML: one
    widget whose text changes, where solara's Markdown builds a new widget per change)."""
    eng, sc = model.engine, model.nudge_scenario
    log, e = eng.log, html.escape
    gained = log["adopters"][-1] - log["adopters"][0]
    cost = float(np.sum(log["cost_step"]))
    per = f"£{cost / gained:,.2f}" if gained > 0 else "n/a"
    name = getattr(model, "scenario_path", Path("-")).name
    paragraphs = [
        f"<b>{e(sc.name)}</b> ({e(name)}, seed {sc.seed}): {eng.n:,} households, "
        f"{eng.network.n_ties:,} ties, {len(sc.nudges)} nudges",
        f"<b>{e(sc.step_unit.capitalize())} {model.t} of {sc.steps}</b> — adoption "
        f"{100 * eng.adoption_rate():.1f}% ({log['adopters'][-1]:,} households, "
        f"{gained:+,} since step 0); ambassadors serving: {log['ambassadors'][-1]}",
        f"Cost so far £{cost:,.0f}; impact {float(np.sum(log['impact_step'])):,.2f} "
        f"{e(sc.impact.unit)}; £ per adopter gained {per}",
        "Levers apply on top of the chosen file (0 removes that nudge, a lever on a file "
        "without it adds small_town.toml's); press <b>Reset</b> to rebuild with them.",
    ]
    paragraphs += [f"<i>{e(note)}</i>" for note in getattr(model, "notes", [])]
    return "".join(f"<p>{p}</p>" for p in paragraphs)


@solara.component
def Summary(model: NudgeModel, t: int = 0):
    solara.HTML(tag="div", unsafe_innerHTML=summary_html(model), classes=["nudgesim-summary"])


COMPONENTS = [SpaceView, AdoptionCurve, Summary, CostImpact]

PAGE_CSS = """
.v-slider .v-slider__container { margin-inline-end: 44px; }
.v-slider .v-slider__container > input {
  display: block !important; position: absolute; left: calc(100% + 8px); top: 50%;
  transform: translateY(-50%); width: 36px; padding: 0; border: 0; background: transparent;
  color: inherit; font-size: 13px; pointer-events: none;
}
.nudgesim-summary { font-size: 15px; }
.nudgesim-summary p { margin: 0 0 10px 0; }
"""
"""Every slider shows its value beside its track: Mesa builds solara sliders, whose value
shows only while dragging, so the page unhides the read-only input Vuetify keeps in each
slider (it always holds the current value)."""


def make_model(**params: Any) -> VizModel:
    """The model a new browser session starts with (the command-line scenario as is)."""
    return VizModel(**params)


@solara.component
def Dashboard(model: NudgeModel):
    """The figures in a fixed two-column layout.

    Mesa passes ``components`` to a draggable grid whose JavaScript (vue-grid-layout 2)
    needs Vue 2; solara 1.64 with ipyvuetify 3 runs Vue 3 and the grid stays empty
    ("GlobalVue.use is not a function"), so the page lays the components out itself. Each
    step re-renders this component alone (with the clock as a prop of its children), not one
pass per component.
    """
    update_counter.get()  # Mesa's signal that the model stepped: one render for all
    t = model.t  # a changed prop re-renders the components; a picture is never redrawn
    solara.Style(PAGE_CSS)
    with solara.Columns([1, 1]):
        with solara.Column(gap="6px"):
            SpaceView(model, t)
            Summary(model, t)
        with solara.Column(gap="6px"):
            AdoptionCurve(model, t)
            CostImpact(model, t)


PLAY_INTERVAL = 51
"""Mesa's pause between Play steps in ms (its own default, on its slider's 1 + 10k grid;
the page can change it)."""


@solara.component
def Page():
    """One model per browser session, built on first render (never at import). Mesa's
    SolaraViz provides the controls, the lever inputs and Reset; Dashboard the figures."""
    initial = solara.use_memo(make_model, [])
    model = solara.use_reactive(initial)
    params = solara.use_memo(model_params, [])
    SolaraViz(model, components=[], model_params=params, play_interval=PLAY_INTERVAL,
              name="nudgesim — nudges on a social network")
    Dashboard(model.value)


page = Page


# ---------------------------------------------------------------------------------------
# Serving the page (`nudgesim viz`, in nudgesim.cli.viz, checks its input first)
# ---------------------------------------------------------------------------------------


_DNS_NAME = re.compile(r"[a-z0-9]([a-z0-9.-]*[a-z0-9])?", re.IGNORECASE)


def _is_host_name(name: str) -> bool:
    """A DNS name or IPv4 address, or an IPv6 address (the only kind with colons)."""
    if ":" not in name:
        return _DNS_NAME.fullmatch(name) is not None
    import ipaddress

    try:
        ipaddress.IPv6Address(name)
    except ValueError:
        return False
    return True


def allowed_hosts(host: str, port: int, extra: Iterable[str] = ()) -> frozenset[str]:
    """Host header values the server answers: the loopback names, `host` and `extra`, each
    with `port` (and bare when the port is 80, as browsers then omit it)."""
    from .errors import UsageError

    out = set()
    named = [("", n) for n in LOOPBACK] + [("--host", host)] + [("--allow-host", n) for n in extra]
    for option, given in named:
        name = given.strip().strip("[]").lower()
        if not _is_host_name(name):
            raise UsageError(
                f"{option}: {given!r} is not a host name; allowed: a DNS name or IP address "
                "without port, e.g. mybox.local"
            )
        authority = f"[{name}]" if ":" in name else name
        out.add(f"{authority}:{port}")
        if port == 80:
            out.add(authority)
    return frozenset(out)


class TrustedHosts:
    """ASGI wrapper that answers only requests whose Host header is one of `allowed`.

    Why: a page on evil.example.com whose name the attacker re-points at 127.0.0.1 (DNS
    rebinding) reaches a loopback server as same-origin, with its own name in Host. Plain
    requests get 400, websockets are closed before the handshake (the server sends 403).
    Starlette's TrustedHostMiddleware drops the port and misreads [::1], hence this one.
    """

    def __init__(self, app: Any, allowed: Iterable[str]) -> None:
        self.app = app
        self.allowed = frozenset(a.lower() for a in allowed)

    async def __call__(self, scope: dict, receive: Any, send: Any) -> None:
        if scope["type"] in ("http", "websocket"):
            host = next((v for k, v in scope.get("headers", []) if k.lower() == b"host"), b"")
            if host.decode("latin-1").strip().lower() not in self.allowed:
                if scope["type"] == "websocket":
                    await send({"type": "websocket.close", "code": 1008})
                    return
                body = b"Invalid Host header: nudgesim viz answers only the names it serves\n"
                await send({"type": "http.response.start", "status": 400,
                            "headers": [(b"content-type", b"text/plain; charset=utf-8"),
                                        (b"content-length", str(len(body)).encode())]})
                await send({"type": "http.response.body", "body": body})
                return
        await self.app(scope, receive, send)


def serve(host: str, port: int, allowed: Iterable[str]) -> None:
    """Serve the page as ``solara run nudgesim.app:Page --production`` would, in this
    process and behind :class:`TrustedHosts`. Returns when the server stops (SIGTERM or
    Ctrl-C: uvicorn then re-raises the signal, so the process ends as the signal says)."""
    import solara.server.settings as settings
    import uvicorn

    # what `solara run` sets before its server imports the app
    os.environ["SOLARA_APP"] = "nudgesim.app:Page"
    os.environ["SERVER_NAME"] = host
    os.environ["SERVER_PORT"] = str(port)
    settings.main.mode = "production"
    from solara.__main__ import LOGGING_CONFIG
    from solara.server.starlette import app as solara_app

    config = uvicorn.Config(TrustedHosts(solara_app, allowed), host=host, port=port,
                            log_config=LOGGING_CONFIG, timeout_graceful_shutdown=SHUTDOWN_GRACE)
    uvicorn.Server(config).run()
