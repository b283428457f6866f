"""Browser visualisation: a Mesa SolaraViz page over :class:`~nudgesim.model.NudgeModel`.

``nudgesim viz [SCENARIO.toml] [--port 8765] [--host 127.0.0.1]`` checks the scenario, then
serves ``nudgesim.app:Page`` with solara's server in this process (no child to outlive it),
behind a Host-header check, with the scenario's path in ``NUDGESIM_VIZ_SCENARIO``. The page
shows the social graph coloured by resident state (up
to :data:`GRAPH_LIMIT` residents; a ward view above that), the adoption curve with nudge
windows shaded, cumulative cost and impact, and Mesa's controls plus the campaign's main
levers. Nothing is built at import: each browser session builds its own model.
"""

from __future__ import annotations

import argparse
import hashlib
import math
import os
import re
import socket
import subprocess
import sys
from collections.abc import Iterable
from functools import lru_cache
from pathlib import Path
from typing import Any

import networkx as nx
import numpy as np
import solara
from matplotlib.cm import ScalarMappable
from matplotlib.collections import LineCollection
from matplotlib.colors import Normalize
from matplotlib.figure import Figure
from matplotlib.ticker import FuncFormatter
from mesa.visualization import Slider, SolaraViz
from mesa.visualization.utils import update_counter

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
SCENARIO_DIR = Path(__file__).resolve().parents[1] / "experiments" / "scenarios"
DEFAULT_SCENARIO = SCENARIO_DIR / "small_town.toml"
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
    """File name → path for experiments/scenarios/*.toml, plus the command-line file."""
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
# Components: plain functions of the model, as in Mesa's examples
# ---------------------------------------------------------------------------------------


def _title(model: NudgeModel) -> str:
    sc = model.nudge_scenario
    return f"{sc.name}: {sc.step_unit} {model.t} of {sc.steps}"


def graph_figure(model: NudgeModel) -> Figure:
    """Residents coloured by state on the cached layout."""
    pos, segments = layout(model)
    codes = model.state_codes()
    fig = Figure(figsize=(6.4, 5.2))
    ax = fig.add_subplot()
    ax.add_collection(LineCollection(segments, colors="#9a9a9a", linewidths=0.3, alpha=0.35))
    for c, state in enumerate(STATES):
        sel = codes == c
        ax.scatter(pos[sel, 0], pos[sel, 1], s=36 if state == "ambassador" else 9,
                   c=COLOURS[state], edgecolors="black" if state == "ambassador" else "none",
                   linewidths=0.4, label=f"{state} ({int(sel.sum())})", zorder=3 if c else 2)
    pop = model.engine.population
    if pop.n_wards > 1:
        for w, name in enumerate(pop.ward_names):
            members = pos[pop.ward == w]
            if len(members):
                ax.text(members[:, 0].mean(), members[:, 1].max() + 0.05, name, fontsize=7,
                        ha="center", va="bottom", color="#333333")
    ax.set_title(f"{_title(model)} — households by state", fontsize=10)
    ax.legend(loc="upper center", bbox_to_anchor=(0.5, -0.01), ncol=4, fontsize=8,
              frameon=False, markerscale=1.5)
    ax.set_axis_off()
    ax.autoscale_view()
    fig.tight_layout()
    return fig


def ward_figure(model: NudgeModel) -> Figure:
    """Adoption per ward now (bars coloured by rate) against step 0 (black ticks)."""
    pop, eng = model.engine.population, model.engine
    rates = 100 * eng.ward_rates()
    start = 100 * eng.ward_log[0] / np.maximum(pop.ward_sizes(), 1)
    y = np.arange(pop.n_wards)
    fig = Figure(figsize=(6.4, max(3.0, 1.2 + 0.22 * pop.n_wards)))
    ax = fig.add_subplot()
    norm = Normalize(0, 100)
    cmap = fig.colorbar(ScalarMappable(norm, "YlGn"), ax=ax, pad=0.01).cmap
    ax.barh(y, rates, color=cmap(norm(rates)), edgecolor="#555555", linewidth=0.4)
    ax.plot(start, y, "|", color="black", ms=10, mew=2, label="step 0")
    ax.set_yticks(y, pop.ward_names, fontsize=7)
    ax.invert_yaxis()
    ax.set_xlim(0, 100)
    ax.set_xlabel("households adopting (%)")
    ax.set_title(f"{_title(model)} — adoption by ward ({eng.n:,} households; "
                 f"graph drawn up to {GRAPH_LIMIT:,})", fontsize=9)
    ax.legend(loc="lower right", fontsize=8, frameon=False)
    ax.grid(axis="x", alpha=0.3)
    fig.tight_layout()
    return fig


def SpaceView(model: NudgeModel):
    fig = graph_figure(model) if model.engine.n <= GRAPH_LIMIT else ward_figure(model)
    return solara.FigureMatplotlib(fig, format="png")


LANE = 0.045  # height of one nudge's lane, as a fraction of the axes (assumption: legible)


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
                transform=ax.get_xaxis_transform(), color="black")


def adoption_figure(model: NudgeModel) -> Figure:
    """Adoption so far over the whole run's time axis, nudge windows shaded."""
    log, sc = model.engine.log, model.nudge_scenario
    steps = np.asarray(log["step"])
    rate = 100 * np.asarray(log["adopters"]) / max(model.engine.n, 1)
    fig = Figure(figsize=(6.4, 4.2))
    ax = fig.add_subplot()
    wards = np.vstack(model.engine.ward_log) / np.maximum(model.engine.population.ward_sizes(), 1)
    lanes = LANE * len(sc.nudges) + 0.02
    data_top = min(100.0, max(10.0, 110 * float(wards.max())))
    ax.set_xlim(-0.5, sc.steps + 0.5)
    ax.set_ylim(0, data_top / (1.0 - lanes))  # the lanes sit above the data
    ax.set_yticks([y for y in ax.get_yticks() if 0 <= y <= data_top])
    _shade_windows(ax, model)
    if wards.shape[1] > 1:
        ax.fill_between(steps, 100 * wards.min(axis=1), 100 * wards.max(axis=1), color="grey",
                        alpha=0.25, lw=0, label="range across wards")
    ax.plot(steps, rate, color="black", lw=2, label=f"all households ({rate[-1]:.1f}% now)")
    ax.set_xlabel(f"step ({sc.step_unit})")
    ax.set_ylabel("households adopting (%)")
    ax.set_title(f"{_title(model)} — adoption; bars = nudge active, | = contact",
                 fontsize=9)
    ax.legend(loc="lower right", fontsize=7, frameon=False)
    ax.grid(alpha=0.3)
    fig.tight_layout()
    return fig


def AdoptionCurve(model: NudgeModel):
    return solara.FigureMatplotlib(adoption_figure(model), format="png")


def cost_impact_figure(model: NudgeModel) -> Figure:
    log, sc = model.engine.log, model.nudge_scenario
    steps = np.asarray(log["step"])
    cost = np.cumsum(log["cost_step"])
    impact = np.cumsum(log["impact_step"])
    fig = Figure(figsize=(6.4, 3.4))
    ax = fig.add_subplot()
    ax.plot(steps, cost, color="tab:red", lw=2)
    ax.set_xlim(-0.5, sc.steps + 0.5)
    ax.set_ylim(bottom=0)
    ax.set_ylabel("cumulative cost (£)", color="tab:red")
    ax.yaxis.set_major_formatter(FuncFormatter(lambda v, _: f"£{v:,.0f}"))
    ax.set_xlabel(f"step ({sc.step_unit})")
    ax.grid(alpha=0.3)
    twin = ax.twinx()
    twin.plot(steps, impact, color="tab:green", lw=2)
    twin.set_ylim(bottom=0)
    twin.set_ylabel(f"cumulative impact\n({sc.impact.unit})", color="tab:green", fontsize=8)
    ax.set_title(f"£{cost[-1]:,.0f} spent; {impact[-1]:,.2f} {sc.impact.unit}", fontsize=9)
    fig.tight_layout()
    return fig


def CostImpact(model: NudgeModel):
    return solara.FigureMatplotlib(cost_impact_figure(model), format="png")


def Summary(model: NudgeModel):
    """Headline numbers a planner asks for, and what the levers did."""
    eng, sc = model.engine, model.nudge_scenario
    log = eng.log
    gained = log["adopters"][-1] - log["adopters"][0]
    cost = float(np.sum(log["cost_step"]))
    per = f"£{cost / gained:,.2f}" if gained > 0 else "n/a"
    lines = [
        f"**{sc.name}** ({getattr(model, 'scenario_path', Path('-')).name}, seed {sc.seed}): "
        f"{eng.n:,} households, {eng.network.n_ties:,} ties, {len(sc.nudges)} nudges",
        f"**{sc.step_unit.capitalize()} {model.t} of {sc.steps}** — adoption "
        f"{100 * eng.adoption_rate():.1f}% ({log['adopters'][-1]:,} households, "
        f"{gained:+,} since step 0); ambassadors serving: {log['ambassadors'][-1]}",
        f"Cost so far £{cost:,.0f}; impact {float(np.sum(log['impact_step'])):,.2f} "
        f"{sc.impact.unit}; £ per adopter gained {per}",
        "Levers apply on top of the chosen file (0 removes that nudge, a lever on a file "
        "without it adds small_town.toml's); press **Reset** to rebuild with them.",
    ]
    lines += [f"*{note}*" for note in getattr(model, "notes", [])]
    return solara.Markdown("\n\n".join(lines))


COMPONENTS = [SpaceView, AdoptionCurve, Summary, CostImpact]


def make_model(**params: Any) -> VizModel:
    """The model a new browser session starts with (the command-line scenario as is)."""
    return VizModel(**params)


@solara.component
def Dashboard(model: NudgeModel):
    """The figures in a fixed two-column layout, redrawn whenever Mesa's controls step.

    Mesa passes ``components`` to a draggable grid whose JavaScript (vue-grid-layout 2)
    needs Vue 2; solara 1.64 with ipyvuetify 3 runs Vue 3 and the grid stays empty
    ("GlobalVue.use is not a function"), so the page lays the components out itself.
    """
    update_counter.get()  # Mesa's signal that the model stepped
    with solara.Columns([1, 1]):
        with solara.Column():
            SpaceView(model)
            CostImpact(model)
        with solara.Column():
            AdoptionCurve(model)
            Summary(model)


@solara.component
def Page():
    """One model per browser session, built on first render (never at import). Mesa's
    SolaraViz provides the controls, the lever inputs and Reset; Dashboard the figures."""
    initial = solara.use_memo(make_model, [])
    model = solara.use_reactive(initial)
    params = solara.use_memo(model_params, [])
    SolaraViz(model, components=[], model_params=params, play_interval=150,
              name="nudgesim — nudges on a social network")
    Dashboard(model.value)


page = Page


# ---------------------------------------------------------------------------------------
# `nudgesim viz`
# ---------------------------------------------------------------------------------------


def _check_port(host: str, port: int) -> None:
    from .errors import UsageError

    if not 1 <= port <= 65535:
        raise UsageError(f"--port: {port} is not a port; allowed: 1..65535")
    with socket.socket(socket.AF_INET6 if ":" in host else socket.AF_INET) as s:
        s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)  # as the server does
        try:
            s.bind((host, port))
        except OSError as err:
            raise UsageError(
                f"--port: cannot listen on {host}:{port} ({err.strerror}); "
                "choose another port with --port"
            ) from None


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


def _cdn_packages() -> list[str]:
    """npm packages (name@version) that solara's page and widgets load from its CDN: found
    in solara's own templates and Vue files, so a solara upgrade needs no change here."""
    import re

    import solara.server.settings as settings

    pattern = re.compile(r"cdn(?:\}\}|\(\)\}|\})?/((?:@[\w.-]+/)?[\w.-]+@\d+\.\d+\.\d+[\w.+-]*)/",
                         re.IGNORECASE)
    root = Path(solara.__file__).parent
    found = {settings.assets.fontawesome_path.strip("/").split("/")[0]}
    sources = [*root.glob("server/templates/*.j2"), *root.glob("widgets/vue/*.vue"),
               *root.glob("components/*.py"), *root.glob("components/*.vue")]
    for f in sources:
        found.update(pattern.findall(f.read_text(encoding="utf-8")))
    return sorted(found)


def prefetch_assets() -> list[str]:
    """Fill solara's CDN cache from the npm registry, for machines that reach npm but not
    the CDN (CI here). Solara serves cached files itself, so the page then loads offline.
    Returns the packages fetched (none when all are cached)."""
    import shutil
    import tarfile
    import tempfile

    import solara.server.settings as settings

    from .errors import UsageError

    cache = Path(settings.assets.proxy_cache_dir)
    missing = [p for p in _cdn_packages() if not (cache / p).is_dir()]
    if missing and shutil.which("npm") is None:
        raise UsageError(f"--prefetch-assets needs npm to fetch {missing}; install Node.js/npm")
    for package in missing:
        with tempfile.TemporaryDirectory() as tmp:
            subprocess.run(["npm", "pack", package, "--pack-destination", tmp, "--silent"],
                           check=True, stdout=subprocess.DEVNULL)
            (tarball,) = Path(tmp).glob("*.tgz")
            staging = Path(tmp) / "x"
            with tarfile.open(tarball) as tar:
                tar.extractall(staging, filter="data")
            (cache / package).parent.mkdir(parents=True, exist_ok=True)
            shutil.move(str(staging / "package"), str(cache / package))  # atomic-enough
    return missing


def viz_main(argv: list[str]) -> int:
    """Check the scenario (exit 2 with a message if bad), then serve the page with solara."""
    from .engine import Engine

    p = argparse.ArgumentParser(
        prog="nudgesim viz",
        description="Serve the browser visualisation (Mesa SolaraViz) on loopback.",
    )
    p.add_argument("scenario", nargs="?", default=str(DEFAULT_SCENARIO),
                   help="scenario TOML (default: experiments/scenarios/small_town.toml)")
    p.add_argument("--port", type=int, default=8765, help="port (default 8765)")
    p.add_argument("--host", default="127.0.0.1",
                   help="interface (default 127.0.0.1; anything else exposes the app)")
    p.add_argument("--allow-host", action="append", default=[], metavar="NAME",
                   help="also answer requests addressed to NAME (repeatable); by default only "
                   "127.0.0.1, localhost, [::1] and --host are answered")
    p.add_argument("--prefetch-assets", action="store_true",
                   help="fetch the page's JavaScript/CSS from the npm registry into solara's "
                   "cache (for machines without the CDN), then exit")
    args = p.parse_args(argv)
    if args.prefetch_assets:
        fetched = prefetch_assets()
        print(f"nudgesim viz: {len(fetched)} asset package(s) fetched"
              + (f": {', '.join(fetched)}" if fetched else " (all cached)"))
        return 0
    path = Path(args.scenario).resolve()
    sc = Scenario.from_toml(path)  # ScenarioError → the CLI prints it and exits 2
    Engine(sc)  # also catches graph/CSV problems before the server starts
    hosts = allowed_hosts(args.host, args.port, args.allow_host)
    _check_port(args.host, args.port)
    if args.host not in LOOPBACK:
        print(f"nudgesim viz: warning: listening on {args.host} exposes the app beyond "
              "this machine", file=sys.stderr)
    os.environ[ENV_SCENARIO] = str(path)
    authority = f"[{args.host}]" if ":" in args.host else args.host
    print(f"nudgesim viz: {sc.name} ({path.name}) at http://{authority}:{args.port}/ "
          "(Ctrl-C stops)", flush=True)
    serve(args.host, args.port, hosts)
    return 0


main = viz_main

if __name__ == "__main__":  # python -m nudgesim.app [--prefetch-assets | SCENARIO ...]
    from .errors import UsageError

    try:
        sys.exit(viz_main(sys.argv[1:]))
    except (ScenarioError, UsageError) as err:
        print(f"nudgesim viz: error: {err}", file=sys.stderr)
        sys.exit(2)
    except KeyboardInterrupt:
        sys.exit(130)
