"""The page's figures: node layout (cached per graph), static pictures drawn once per model
(:class:`Frame`) and the small overlays of marks a browser canvas redraws each step.

Per step the page sends no picture: matplotlib draws what stays (ties, axes, nudge lanes)
once per model, and a canvas in the browser redraws what changed (each resident's state as
one byte, the curves' points, the y ticks) from a few kilobytes of marks.
"""

from __future__ import annotations

import base64
import hashlib
import io
import json
import math
from dataclasses import dataclass
from typing import Any

import networkx as nx
import numpy as np
from matplotlib import colormaps
from matplotlib.cm import ScalarMappable
from matplotlib.collections import LineCollection
from matplotlib.colors import Normalize, to_hex
from matplotlib.figure import Figure
from matplotlib.lines import Line2D
from matplotlib.patches import Patch
from matplotlib.ticker import MaxNLocator

from ..engine import Engine
from ..model import STATES, NudgeModel

LAYOUT_GROUP = 250
"""Residents laid out together (assumption: networkx's dense spring layout takes ~0.3 s for
300 nodes but its sparse one ~7 s for 1,000, so big wards are split into index blocks)."""
COLOURS = {"never": "#c8c8c8", "adopter": "#2ca02c", "lapsed": "#ff7f0e", "ambassador": "#6a3d9a"}


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
TWIN_COLOUR = "#1f77b4"
"""The no-campaign twin's curve: a colour of its own, so it is not read as a ward."""
TWIN_DASH = (4.0, 2.5)
"""Its dash pattern in points (on, off), as matplotlib's legend and the canvas draw it."""
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


def title(model: NudgeModel) -> str:
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


# ---------------------------------------------------------------------------------------
# The ward map (scenarios with [geography]): the polygons come from the boundary file
# (nudgesim.geography through nudgesim.maps), drawn by the canvas; only fills change
# ---------------------------------------------------------------------------------------

MAP_BOX = (0.02, 0.16, 0.96, 0.82)
"""The map's axes in the picture (left, bottom, width, height); the colour bar below."""
MAP_PIXELS = 1280
"""Boundaries are simplified to 1/MAP_PIXELS of the map's extent, about half a pixel on a
wide screen (assumption: finer detail is invisible and only lengthens the message)."""
MAP_CMAP = "YlGn"
"""The same scale as the ward view and nudgesim.maps: 0-100% fixed, so a colour keeps its
meaning from step to step."""


def has_map(model: NudgeModel) -> bool:
    return getattr(model.nudge_scenario, "geography", None) is not None


_MAPS: dict[tuple, tuple[Frame, str, str]] = {}


def map_frame(model: NudgeModel) -> tuple[Frame, str, str]:
    """The map's colour bar drawn once (the picture), each ward's polygon rings as
    fractions of that picture (JSON: [{"ward": index in the engine's wards, "rings":
    [[x0, y0, x1, y1, ...], ...]}, ...]; holes are rings too, filled even-odd) and the ward
    names as canvas texts (drawn over the fills). Cached per boundary geometry and wards."""
    from ..maps import boundaries

    gdf = boundaries(model.nudge_scenario)
    if gdf is None:
        raise ValueError("this scenario has no [geography] table: no map to draw")
    names = list(model.engine.population.ward_names)
    h = hashlib.sha1()
    for wkb in gdf.geometry.to_wkb():
        h.update(wkb)
    key = (h.hexdigest(), tuple(map(str, gdf.index)), tuple(names))
    if key in _MAPS:
        return _MAPS[key]
    x0, y0, x1, y1 = (float(v) for v in gdf.total_bounds)
    left, bottom, width, height = MAP_BOX
    # the graph's picture size whatever the borough's shape: the page's columns stay level
    fig = Figure(figsize=GRAPH_SIZE, dpi=FRAME_DPI)
    ax = fig.add_axes((left, bottom, width, height))
    ax.set_axis_off()
    # equal scale on both axes: widen the shorter span to the axes' own proportions
    pad = 0.02 * max(x1 - x0, y1 - y0)
    dx, dy = x1 - x0 + 2 * pad, y1 - y0 + 2 * pad
    ratio = fig.get_figheight() * height / (fig.get_figwidth() * width)
    dx, dy = max(dx, dy / ratio), max(dy, dx * ratio)
    cx, cy = (x0 + x1) / 2, (y0 + y1) / 2
    ax.set_xlim(cx - dx / 2, cx + dx / 2)
    ax.set_ylim(cy - dy / 2, cy + dy / 2)
    cax = fig.add_axes((0.2, 0.07, 0.6, 0.03))
    fig.colorbar(ScalarMappable(Normalize(0, 100), MAP_CMAP), cax=cax, orientation="horizontal",
                 label="households adopting (%)")
    frame = _frame(fig, ax)
    ylo, yhi = ax.get_ylim()
    index = {name: i for i, name in enumerate(names)}
    simple = gdf.geometry.simplify(max(x1 - x0, y1 - y0) / MAP_PIXELS, preserve_topology=True)
    shapes, texts = [], []
    for name, geom, point in zip(gdf.index, simple, gdf.geometry.representative_point(),
                                 strict=True):
        if str(name) not in index:  # boundaries name wards the model lacks: outline only
            continue
        for poly in getattr(geom, "geoms", [geom]):
            rings = [poly.exterior, *poly.interiors]
            shapes.append({"ward": index[str(name)], "rings": [
                np.column_stack([frame.fx(np.asarray(r.xy[0])),
                                 frame.fy(np.asarray(r.xy[1]), ylo, yhi)]).ravel().round(4)
                .tolist() for r in rings]})
        texts.append({"x": frame.fx([point.x])[0], "y": frame.fy([point.y], ylo, yhi)[0],
                      "text": str(name), "size": 7 * frame.pt, "align": "center",
                      "color": "#202020", "halo": "#ffffff"})
    entry = (frame, json.dumps(shapes, separators=(",", ":")),
             json.dumps({"texts": texts}, separators=(",", ":")))
    if len(_MAPS) >= _LAYOUT_CACHE_SIZE:
        _MAPS.pop(next(iter(_MAPS)))
    _MAPS[key] = entry
    return entry


def map_fills(model: NudgeModel) -> str:
    """Each ward's fill now, in the engine's ward order (JSON list of hex colours): all the
    map sends per step."""
    rates = np.clip(model.engine.ward_rates(), 0.0, 1.0)
    return json.dumps([to_hex(c) for c in colormaps[MAP_CMAP](rates)])


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
    if twin_of(model) is not None:
        handles.append(Line2D([], [], color=TWIN_COLOUR, lw=1.5, ls=(0, TWIN_DASH),
                              label="all households, no campaign (same seed)"))
    ax.legend(handles=handles, loc="lower right", fontsize=7, frameon=False)
    ax.set_xlabel(f"step ({sc.step_unit})")
    ax.set_ylabel("households adopting (%)")
    ax.grid(axis="x", alpha=0.3)
    _no_y_labels(ax, room=24)
    fig.subplots_adjust(left=0.11, right=0.98, bottom=0.12, top=0.98)
    return _frame(fig, ax)


def twin_of(model: NudgeModel) -> Engine | None:
    """The model's no-campaign twin (levers.VizModel has one), or None."""
    twin = getattr(model, "twin", None)
    return twin if isinstance(twin, Engine) else None


def adoption_overlay(model: NudgeModel, frame: Frame) -> dict[str, Any]:
    """The curve so far, the no-campaign twin's curve (dashed, under it), the range across
    wards and the y ticks (the data use the axes below the nudge lanes)."""
    eng, twin = model.engine, twin_of(model)
    wards = np.vstack(eng.ward_log) / np.maximum(eng.population.ward_sizes(), 1)
    rate = 100 * np.asarray(eng.log["adopters"]) / max(eng.n, 1)
    reach = 1.0 - (LANE * len(model.nudge_scenario.nudges) + 0.02)
    twin_rate = np.zeros(0) if twin is None else 100 * np.asarray(twin.log["adopters"]) / max(
        twin.n, 1)
    peak = min(100.0, max(100 * float(wards.max()), float(twin_rate.max(initial=0.0))))
    hi, axis = y_axis(frame, peak, AXIS_FLOOR["adoption"], "{:.{d}f}", reach=reach)
    x = frame.fx(eng.log["step"])
    bands = []
    if wards.shape[1] > 1:
        bands = [{"x": x, "lo": frame.fy(100 * wards.min(axis=1), 0.0, hi),
                  "hi": frame.fy(100 * wards.max(axis=1), 0.0, hi),
                  "color": "rgba(128,128,128,0.25)"}]
    curve = {"x": x, "y": frame.fy(rate, 0.0, hi), "color": "#000000", "width": 2 * frame.pt,
             "dot": True}
    lines = [curve]
    if twin is not None:
        lines.insert(0, {"x": frame.fx(twin.log["step"]), "y": frame.fy(twin_rate, 0.0, hi),
                         "color": TWIN_COLOUR, "width": 1.5 * frame.pt,
                         "dash": [d * frame.pt for d in TWIN_DASH]})
    return _merge(axis, {"lines": lines, "bands": bands})


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
