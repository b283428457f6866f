"""The page: a Mesa SolaraViz page over :class:`~nudgesim.model.NudgeModel`.

``nudgesim viz`` serves :func:`Page` (see :mod:`nudgesim.viz.server`). The page shows the
social graph coloured by resident state (up to :data:`GRAPH_LIMIT` residents; a ward view
above that; the wards on a map when the scenario has ``[geography]``), the adoption curve with nudge windows shaded, cumulative cost and impact, and
Mesa's controls plus the campaign's main levers. Nothing is built at import: each browser
session builds its own model.

Per step the page sends no picture: matplotlib draws what stays (ties, axes, nudge lanes)
once per model, and a canvas in the browser redraws what changed (each resident's state as
one byte, the curves' points, the y ticks) from a few kilobytes of marks.
"""

from __future__ import annotations

import html
import json
from pathlib import Path
from typing import Any

import ipyvuetify
import numpy as np
import solara
import traitlets
from mesa.visualization import SolaraViz
from mesa.visualization.utils import update_counter

from ..model import NudgeModel
from .figures import (
    COLOURS,
    DRAW_ORDER,
    adoption_frame,
    adoption_overlay,
    cost_frame,
    cost_overlay,
    encode_codes,
    graph_frame,
    has_map,
    map_fills,
    map_frame,
    node_styles,
    state_counts,
    title,
    twin_of,
    ward_frame,
    ward_overlay,
)
from .levers import make_model, model_params

GRAPH_LIMIT = 2000
"""Largest population drawn as a node-link graph (assumption: above ~2,000 households the
drawing is an unreadable hairball and slow to render; the ward view is shown instead)."""


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
    shapes() { this.schedule(); },
    fills() { this.schedule(); },
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
      if (this.shapeSource !== this.shapes) {  // polygons change only with the model
        this.shapeSource = this.shapes;
        this.parsed = this.shapes ? JSON.parse(this.shapes) : [];
      }
      const fills = this.fills ? JSON.parse(this.fills) : [];
      g.lineJoin = "round";
      for (const s of this.parsed) {
        g.beginPath();
        for (const ring of s.rings) {
          g.moveTo(ring[0] * w, ring[1] * h);
          for (let i = 2; i < ring.length; i += 2) g.lineTo(ring[i] * w, ring[i + 1] * h);
          g.closePath();
        }
        g.fillStyle = fills[s.ward] || "#d9d9d9";
        g.fill("evenodd");
        g.strokeStyle = "#404040";
        g.lineWidth = 0.6;
        g.stroke();
      }
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
        g.setLineDash(l.dash ? l.dash.map((d) => d * w) : []);
        g.stroke();
        g.setLineDash([]);
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
        if (s.halo) {  // an outline keeps text legible on dark fills
          g.strokeStyle = s.halo;
          g.lineWidth = 3;
          g.strokeText(s.text, s.x * w, s.y * h);
        }
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
    are fractions of the picture (x from the left, y from the top), sizes (line widths,
    dash patterns) fractions of its width. Bulky values are strings: reacton walks list props element by element on every
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
    shapes = traitlets.Unicode("").tag(sync=True)  # JSON: [{ward, rings}] (figures.map_frame)
    fills = traitlets.Unicode("").tag(sync=True)  # JSON: one colour per ward


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
    _caption(f"{title(model)} — households by state")
    PlotCanvas.element(image=frame.image, aspect=frame.aspect, node_xy=xy,
                       node_styles=styles, codes=encode_codes(codes))
    _caption("", _legend(state_counts(codes)))


@solara.component
def WardView(model: NudgeModel, t: int = 0):
    """Adoption per ward now (bars coloured by rate) against step 0 (black ticks)."""
    frame = solara.use_memo(lambda: ward_frame(model), [model])
    _caption(f"{title(model)} — adoption by ward ({model.engine.n:,} households; graph "
             f"drawn up to {GRAPH_LIMIT:,})")
    PlotCanvas.element(image=frame.image, aspect=frame.aspect,
                       marks=json.dumps(ward_overlay(model, frame)))


@solara.component
def MapView(model: NudgeModel, t: int = 0):
    """Wards on the map coloured by adoption now: the polygons are sent once per model,
    then only one colour per ward each step."""
    frame, shapes, labels = solara.use_memo(lambda: map_frame(model), [model])
    rates = model.engine.ward_rates()
    names = model.engine.population.ward_names
    low, high = int(np.argmin(rates)), int(np.argmax(rates))
    _caption(f"{title(model)} — adoption by ward on the map ({model.engine.n:,} households); "
             f"lowest {names[low]} {100 * rates[low]:.1f}%, highest {names[high]} "
             f"{100 * rates[high]:.1f}%")
    PlotCanvas.element(image=frame.image, aspect=frame.aspect, shapes=shapes,
                       fills=map_fills(model), marks=labels)


@solara.component
def SpaceView(model: NudgeModel, t: int = 0):
    if has_map(model):
        MapView(model, t)
    elif model.engine.n <= GRAPH_LIMIT:
        GraphView(model, t)
    else:
        WardView(model, t)


@solara.component
def AdoptionCurve(model: NudgeModel, t: int = 0):
    """The adoption curve so far over the whole run's time axis."""
    frame = solara.use_memo(lambda: adoption_frame(model), [model])
    rate, twin = 100 * model.engine.adoption_rate(), twin_of(model)
    without = "" if twin is None else f" ({100 * twin.adoption_rate():.1f}% with no campaign)"
    _caption(f"{title(model)} — adoption {rate:.1f}% now{without}; bars = nudge active, "
             "| = contact")
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
        *campaign_effect(model, cost),
        "Levers apply on top of the chosen file (0 removes that nudge, a lever on a file "
        "without it adds small_town.toml's); press <b>Reset</b> to rebuild with them.",
    ]
    paragraphs += [f"<i>{e(note)}</i>" for note in getattr(model, "notes", [])]
    return "".join(f"<p>{p}</p>" for p in paragraphs)


def campaign_effect(model: NudgeModel, cost: float) -> list[str]:
    """What the campaign has added so far over its no-campaign twin (escaped HTML), or
    nothing for a model without one."""
    twin = twin_of(model)
    if twin is None:
        return []
    eng, unit = model.engine, html.escape(model.nudge_scenario.impact.unit)
    extra = eng.log["adopters"][-1] - twin.log["adopters"][-1]
    extra_impact = float(np.sum(eng.log["impact_step"]) - np.sum(twin.log["impact_step"]))
    if extra > 0:
        per = f"£{cost / extra:,.2f} per extra household"
    else:
        per = ("no £ per extra household: " + ("none added" if extra == 0 else
                                               f"{-extra:,} fewer than with no campaign"))
    return [f"<b>Campaign's effect so far</b> over the same households with no campaign "
            f"(same seed, {100 * twin.adoption_rate():.1f}%): {extra:+,} households "
            f"({100 * extra / max(eng.n, 1):+.1f} pp) and {extra_impact:+,.2f} {unit}; {per}"]


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
