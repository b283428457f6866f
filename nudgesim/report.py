"""A report a council officer can read: the question, the scenario in words, the ranked
options with intervals, the plots, and the assumptions with their sources.

Reads a results folder written by `nudgesim plan` (plan.json, plan.csv, curves.csv,
wards.csv, scenario.toml) or by `nudgesim run` (summary.json, timeseries.parquet,
by_ward.parquet, scenario.toml) and writes report.html (self-contained: images inlined
as base64, no network) and report.md (images as PNG files beside it).

Every string in those files may come from a user (names, labels, units, paths), so the
document is a `nudgesim.document.Doc` of plain-text spans (escaped by its HTML and
Markdown writers), and plot labels escape `$` (which would otherwise start matplotlib
mathtext). A sweep folder's report is nudgesim.sweep_report's.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path
from typing import Any

import matplotlib

matplotlib.use("Agg")  # headless: reports are written on servers and in CI
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
import pandas as pd  # noqa: E402
from matplotlib.ticker import FuncFormatter  # noqa: E402

from .document import Doc, Span, em, money, num, pct, strong, unit_money  # noqa: E402
from .errors import UserError  # noqa: E402
from .files import save_figure, write_atomic  # noqa: E402
from .network import WardClustered  # noqa: E402
from .plots import plot_text  # noqa: E402
from .scenario import Scenario, ScenarioError  # noqa: E402

# ---------------------------------------------------------------------------------------
# Words
# ---------------------------------------------------------------------------------------

NUDGE_WORDS = {
    "information": "a leaflet or letter explaining why and how (a small, fading change of attitude)",
    "reminder": "a reminder message, e.g. a text on bin day (a short-lived prompt)",
    "norm_feedback": "a card telling households how many in their area take part",
    "ambassadors": "residents recruited as peer ambassadors, whose example counts for more",
    "community_partnership": "a residents' group that strengthens ties within its wards",
    "default": "delivering a caddy to households unless they opt out",
    "pledge": "asking households to make a public pledge",
    "incentive": "a reward that lowers the effort while it lasts",
    "canvassing": "door-to-door conversations",
}

SHOWN = 10  # rows of the ranked table in the report (the rest are in plan.csv)
#: Wards a ward plot draws one bar each; above it, the lowest and highest half of this
#: many (a national run's 3,100 bars would be a 700-inch picture nobody can read)
WARD_BARS = 40
#: Wards listed at each end (lowest, highest) of a run report's ward table when the run
#: has more wards than WARD_BARS (all wards are in by_ward.parquet)
WARD_ROWS = 10

INTERVAL_WORDS = (
    "Numbers in brackets are 95% intervals. They show how much the answer moves because "
    "of chance in the simulation (which households happen to act each week): the average "
    "of endlessly many re-runs would lie inside them about 95 times in 100. They do ",
    em("not"),
    " include doubt about the assumptions listed at the end; if those are "
    "wrong, the numbers are wrong in ways no interval shows.",
)

ENSEMBLE_INTERVAL_WORDS = (
    "Numbers in brackets are ranges that hold 95% of the results over many plausible sets "
    "of the model's uncertain settings (drawn from what published trials and stated "
    "assumptions allow), each simulated several times. They ", em("do"),
    " include doubt about those settings as well as chance in the simulation; they do ",
    em("not"), " include doubt about the model's structure.",
)


def _interval(fmt, value, lo, hi) -> str:
    if lo is None or hi is None or not np.isfinite(lo) or not np.isfinite(hi):
        return fmt(value)
    return f"{fmt(value)} ({fmt(lo)} to {fmt(hi)})"


def network_words(sc: Scenario) -> str:
    net = sc.network
    if isinstance(net, WardClustered) and net.mean_degree_in is not None:
        return (f"Each household knows about {net.mean_degree_in:g} others in its own ward and "
                f"{net.mean_degree_out or 0:g} elsewhere (an invented social network).")
    words = {
        "watts_strogatz": "a 'small world' network: mostly near neighbours, a few long ties",
        "barabasi_albert": "a network where a few households know very many others",
        "erdos_renyi": "a random network",
        "complete": "everyone knowing everyone",
        "file": f"a social network read from {getattr(net, 'path', 'a file')}",
        "ward_clustered": "a network with dense ties inside wards and few across",
    }
    return f"Households are tied by {words.get(net.kind, net.kind)}."


def rule_words(sc: Scenario) -> str:
    kind = sc.rule.kind
    if kind == "logistic":
        return ("Each week, every household that does not take part weighs whether to start, "
                "and every household that does weighs whether to stop. The chances depend on "
                "its attitude, on how many people it knows take part (the social norm), on "
                "habit, and on how much effort it finds it.")
    return {
        "threshold": "A household starts once enough of the people it knows take part.",
        "bass": "Households start on their own initiative or by copying people they know "
                "(the Bass model of diffusion).",
        "independent_cascade": "Each household that starts has one chance to persuade each "
                               "person it knows.",
    }.get(kind, kind)


def scenario_words(sc: Scenario, initial: float | None, wards: pd.DataFrame | None) -> str:
    names = sc.population.ward_names()
    size = sc.population.size
    sizes = sc.population.ward_sizes()
    if size is None and sizes:
        size = sum(sizes)
    regions = sc.population.ward_regions()
    who = ((f"{size:,} households" if size else "the households") + f" in {len(names):,} wards"
           + (f" of {len(set(regions))} regions" if regions else ""))
    parts = [f"The simulated area has {who}."]
    if sc.description:
        parts.append(f"({sc.description}.)")
    parts.append(network_words(sc))
    parts.append(rule_words(sc))
    if initial is not None:
        parts.append(f"At the start, {pct(initial)} of households take part.")
    parts.append(f"The simulation runs for {sc.steps} {sc.step_unit}s. Environmental impact "
                 f"is counted as '{sc.impact.unit}': "
                 f"{sc.impact.per_adopter_step:g} per household taking part per "
                 f"{sc.step_unit}.")
    return " ".join(parts)


def assumptions(sc: Scenario, items: list[dict[str, Any]] | None = None) -> list[tuple[str, str,
                                                                                       str]]:
    """(what, value, source) for every model setting that carries a description, plus the
    menu's own sources. The descriptions say 'assumption' or name a study."""
    rows: list[tuple[str, str, str]] = []
    rule = sc.rule
    for name, f in type(rule).model_fields.items():
        if name == "kind" or not f.description:
            continue
        rows.append((f"decision rule: {name.replace('_', ' ')}", _show(getattr(rule, name)),
                     f.description))
    pop = sc.population
    for name in ("attitude", "cost", "susceptibility", "habit"):
        f = type(pop).model_fields[name]
        rows.append((f"households: {name}", _show(getattr(pop, name)), f.description or ""))
    imp = type(sc.impact).model_fields["per_adopter_step"]
    rows.append(("impact per household per step", f"{sc.impact.per_adopter_step:g} "
                 f"{sc.impact.unit}", imp.description or ""))
    rows.append(("social network", sc.network.kind.replace("_", " "),
                 "invented for this synthetic borough (assumption)"))
    for n in sc.nudges:
        rows.append((f"nudge in the scenario: {n.name}", n.kind.replace("_", " "),
                     "scenario file (see its comments; unit costs there are assumptions)"))
    for it in items or []:
        rows.append((f"option: {it['label']}", str(it.get("kind", "")).replace("_", " "),
                     it.get("source") or "menu file (no source given: treat as an assumption)"))
    return rows


def _show(value: Any) -> str:
    if hasattr(value, "model_dump"):
        d = value.model_dump(exclude_none=True)
        dist = d.pop("dist", "")
        inner = ", ".join(f"{k} {v:g}" if isinstance(v, float) else f"{k} {v}"
                          for k, v in d.items() if not (isinstance(v, float) and not np.isfinite(v)))
        return f"{dist} ({inner})"
    return f"{value:g}" if isinstance(value, float) else str(value)


# ---------------------------------------------------------------------------------------
# Plots
# ---------------------------------------------------------------------------------------


def _save(fig, path: Path) -> Path:
    return save_figure(fig, path, dpi=100)


def plot_curves(curves: pd.DataFrame, names: dict[str, str], sc: Scenario, path: Path,
                title: str = "Share of households taking part (line: average; band: 95% of "
                "simulations)") -> Path:
    """Adoption over time for the baseline and chosen options, with the replicate band."""
    fig, ax = plt.subplots(figsize=(8.5, 4.2))
    colours = ["#555555", "#1f77b4", "#ff7f0e", "#2ca02c", "#9467bd"]
    for i, (key, label) in enumerate(names.items()):
        c = curves[curves["scenario"] == key]
        ax.fill_between(c["step"], 100 * c["lo"], 100 * c["hi"], color=colours[i % 5], alpha=0.2,
                        lw=0)
        ax.plot(c["step"], 100 * c["mean"], color=colours[i % 5], lw=2, label=plot_text(label),
                ls="--" if key == "baseline" else "-")
    ax.set_xlabel(plot_text(f"{sc.step_unit}s since the campaign began"))
    ax.set_ylabel("households taking part (%)")
    ax.set_title(title, fontsize=10)
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8, frameon=True, loc="center right")
    fig.tight_layout()
    return _save(fig, path)


def plot_frontier(table: pd.DataFrame, meta: dict[str, Any], path: Path) -> Path:
    """Cost against the target for every evaluated portfolio; the frontier joined up."""
    key = meta["target_column"]
    scale = 100.0 if key == "lowest_ward_adoption" else 1.0
    fig, ax = plt.subplots(figsize=(8.5, 4.5))
    y, lo, hi = (scale * table[k] for k in (key, f"{key}_lo", f"{key}_hi"))
    ax.errorbar(table["extra_cost"], y, yerr=[y - lo, hi - y], fmt="o", color="#9aa7b5",
                ms=4, lw=1, label="option evaluated (bar: 95% interval)")
    front = table[table["on_frontier"]].sort_values("extra_cost")
    ax.plot(front["extra_cost"], scale * front[key], "-o", color="#d62728", ms=6,
            label="best value for money (frontier)")
    for _, r in front.iterrows():
        if r["rank"] and r["rank"] <= 3:
            ax.annotate(f"#{int(r['rank'])}", (r["extra_cost"], scale * r[key]),
                        textcoords="offset points", xytext=(5, -12), fontsize=9)
    ax.axvline(meta["budget"], color="black", ls=":", lw=1.5, label=f"budget {money(meta['budget'])}")
    ax.xaxis.set_major_formatter(FuncFormatter(lambda v, _: f"£{v:,.0f}"))
    ax.set_xlabel("expected cost of the campaign")
    ax.set_ylabel(plot_text(_target_axis(meta)))
    ax.set_title("What each option buys: cost against result", fontsize=10)
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8, frameon=False, loc="lower right")
    fig.tight_layout()
    return _save(fig, path)


def _target_axis(meta: dict[str, Any]) -> str:
    key = meta["target_column"]
    if key == "lowest_ward_adoption":
        return "lowest ward: households taking part (%)"
    if key == "extra_impact":
        return f"extra {meta.get('impact_unit', 'impact')}"
    return "extra households taking part"


def plot_wards(wards: pd.DataFrame, names: dict[str, str], path: Path) -> Path:
    """Final adoption per ward, baseline against the chosen option, lowest wards first;
    with more than WARD_BARS wards, only the lowest and highest WARD_BARS / 2 of them
    (the title says so), so the picture stays readable at any number of wards."""
    keys = list(names)
    base = wards[wards["scenario"] == keys[0]].set_index("ward")["final_adoption"]
    order = base.sort_values(kind="stable").index
    total = len(order)
    if total > WARD_BARS:
        order = order[: WARD_BARS // 2].append(order[-(WARD_BARS // 2):])
    fig, ax = plt.subplots(figsize=(8.5, max(3.5, 0.22 * len(order) + 1.2)))
    ypos = np.arange(len(order))
    h = 0.8 / len(keys)
    colours = ["#9e9e9e", "#1f77b4", "#ff7f0e"]
    for i, key in enumerate(keys):
        v = wards[wards["scenario"] == key].set_index("ward")["final_adoption"].reindex(order)
        ax.barh(ypos + i * h, 100 * v, height=h, color=colours[i % 3],
                label=plot_text(names[key]))
    ax.set_yticks(ypos + h * (len(keys) - 1) / 2, [plot_text(w) for w in order], fontsize=8)
    ax.invert_yaxis()
    ax.set_xlabel("households taking part at the end (%)")
    if total > WARD_BARS:
        ax.axhline(WARD_BARS // 2 - 0.5 + h * (len(keys) - 1) / 2, color="black", lw=0.8,
                   ls=":")
    shown = (f"the lowest and highest {WARD_BARS // 2} of {total:,} wards"
             if total > WARD_BARS else "lowest first")
    ax.set_title(f"By ward, {shown}" + ("" if "run" in names else " (average of simulations)"),
                 fontsize=10)
    ax.grid(axis="x", alpha=0.3)
    ax.legend(fontsize=8, frameon=True, loc="upper right")
    fig.tight_layout()
    return _save(fig, path)


# ---------------------------------------------------------------------------------------
# The document: one structure, written as HTML and as Markdown
# ---------------------------------------------------------------------------------------
# Report of a plan folder and of a single run
# ---------------------------------------------------------------------------------------


def _scenario(folder: Path) -> Scenario:
    path = folder / "scenario.toml"
    if not path.exists():
        raise ScenarioError(f"RESULTS_DIR: {folder} has no scenario.toml; allowed: a folder "
                            "written by 'nudgesim plan' or 'nudgesim run'")
    return Scenario.from_toml(path)


def plan_doc(folder: Path) -> Doc:
    meta = json.loads((folder / "plan.json").read_text())
    table = pd.read_csv(folder / "plan.csv")
    curves = pd.read_csv(folder / "curves.csv")
    wards = pd.read_csv(folder / "wards.csv")
    sc = _scenario(folder)
    unit = meta.get("impact_unit", "impact")
    doc = Doc(f"Campaign options: {meta['menu']}")
    doc.h("The question")
    doc.p(str(meta["question"]), f" The budget is {money(meta['budget'])}.")
    ranked = table[table["rank"] > 0].sort_values("rank")
    base_final = meta.get("baseline_final_adoption")
    doc.h("The answer in brief")
    if len(ranked):
        best = ranked.iloc[0]
        doc.p(
            "The best option found is ", strong(best["variant"]), ". "
            f"It is expected to cost {money(best['extra_cost'])} and to bring "
            f"{_interval(num, best['extra_adopters'], best['extra_adopters_lo'], best['extra_adopters_hi'])}"
            f" more households to take part by the end than doing nothing "
            f"({unit}: "
            f"{_interval(lambda v: num(v, 1), best['extra_impact'], best['extra_impact_lo'], best['extra_impact_hi'])}"
            f" more over the period). That is about "
            f"{unit_money(best['cost_per_extra_adopter'])} per extra household. Without a "
            f"campaign, {pct(base_final)} of households would take part at the end; with it, "
            f"{pct(best['final_adoption'])}.")
        value = ranked.dropna(subset=["cost_per_extra_adopter"])
        value = value[value["extra_adopters_lo"] > 0].sort_values("cost_per_extra_adopter")
        if len(value) and value.iloc[0]["variant"] != best["variant"]:
            c = value.iloc[0]
            doc.p("The best value for money is ", strong(c["variant"]), ": "
                  f"{money(c['extra_cost'])} for {num(c['extra_adopters'])} extra households "
                  f"({unit_money(c['cost_per_extra_adopter'])} each).")
    else:
        doc.p("No option evaluated fitted the budget once its cost was simulated in full.")
    ensemble = _ensemble(folder)
    doc.note(*(ENSEMBLE_INTERVAL_WORDS if ensemble else INTERVAL_WORDS))
    doc.h("The scenario in words")
    initial = curves.loc[(curves["scenario"] == "baseline") & (curves["step"] == 0), "mean"]
    doc.p(scenario_words(sc, float(initial.iloc[0]) if len(initial) else None, wards))
    menu: list[str | Span] = []
    for i, it in enumerate(meta["items"]):
        menu += ["; " if i else "", em(it["label"]),
                 f" — {NUDGE_WORDS.get(it['kind'], it['kind'])}"]
    doc.p("The options come from a menu of things the council could buy: ", *menu, ".")
    doc.h("Ranked options")
    doc.p(f"Options ranked by {meta['target_label']}. Costs are what the campaign "
          "is expected to spend (they depend on how many households are contacted and respond, "
          "so they were simulated too). 'Frontier' marks options that no other option beats "
          "on both cost and result. The highlighted row is the best within budget.")
    header = ["#", "Options in the campaign", "Expected cost", "Extra households taking part",
              f"Extra {unit}", "£ per extra household", "Lowest ward at the end",
              "Frontier"]
    rows = []
    for _, r in table.head(SHOWN).iterrows():
        rows.append([
            str(int(r["rank"])) if r["rank"] else "over budget",
            str(r["variant"]),
            _interval(money, r["extra_cost"], r["extra_cost_lo"], r["extra_cost_hi"]),
            _interval(num, r["extra_adopters"], r["extra_adopters_lo"], r["extra_adopters_hi"]),
            _interval(lambda v: num(v, 1), r["extra_impact"], r["extra_impact_lo"],
                      r["extra_impact_hi"]),
            _interval(unit_money, r["cost_per_extra_adopter"], _nan(r["cost_per_extra_adopter_lo"]),
                      _nan(r["cost_per_extra_adopter_hi"])),
            _interval(pct, r["lowest_ward_adoption"], r["lowest_ward_adoption_lo"],
                      r["lowest_ward_adoption_hi"]),
            "yes" if r["on_frontier"] else "",
        ])
    doc.table(header, rows, highlight={0} if len(ranked) else set())
    if len(table) > SHOWN:
        doc.p(f"{len(table) - SHOWN} further options evaluated are in plan.csv.")
    top = list(ranked["variant"].head(2))
    names = {"baseline": "no campaign"} | {v: f"#{i + 1}: {_short(v)}" for i, v in enumerate(top)}
    doc.h("Pictures")
    doc.img(plot_curves(curves, names, sc, folder / "report_adoption.png"),
            "Households taking part week by week without a campaign (dashed) and with the two "
            "best options. The shaded band holds 95% of the simulated runs.")
    doc.img(plot_frontier(table, meta, folder / "report_frontier.png"),
            "Every option evaluated: expected cost against result. Red points are the best "
            "value for money at each cost; the dotted line is the budget.")
    ward_names = {"baseline": "no campaign"} | ({top[0]: f"#1: {_short(top[0])}"} if top else {})
    doc.img(plot_wards(wards, ward_names, folder / "report_wards.png"),
            "Households taking part at the end, ward by ward: who is left behind?")
    best = top[0] if top else None
    _map(doc, sc, lambda: _plan_map(folder, sc, wards, best, f"#1: {_short(best or '', 40)}"),
         "Households taking part at the end, ward by ward on the map, with no campaign"
         + (" and with the best option, and the difference (blue = more households, red = "
            "fewer; averages of the simulations)." if best else "."))
    if ensemble:
        _uncertainty_section(doc, folder, ensemble)
    _assumption_section(doc, sc, meta["items"])
    doc.h("How this was worked out")
    doc.bullets([
        f"The menu allows {meta['portfolios_total']:,} combinations; "
        f"{meta['portfolios_feasible']:,} looked affordable after simulating each option on its "
        f"own; {meta['portfolios_evaluated']} were then simulated in full "
        f"({meta['method']}).",
        f"Each was simulated {meta['replicates']} times with the same {meta['replicates']} sets "
        "of random draws as the no-campaign baseline (replicate seeds derived from seed "
        f"{meta['seed']}), so differences come from the campaign, not from luck.",
        "Interactions between nudges are simulated, not added up; but options never evaluated "
        "in full could in principle do better than those shown when the search was not "
        "exhaustive.",
        "This is a synthetic borough: the figures illustrate the method. Replace the costs, "
        "ward baselines and behaviour settings with local evidence (or calibrate them to local "
        "data) before using the ranking to decide.",
    ])
    return doc


def _ensemble(folder: Path) -> dict[str, Any] | None:
    path = folder / "ensemble.json"
    return json.loads(path.read_text()) if path.exists() else None


def _uncertainty_section(doc: Doc, folder: Path, ens: dict[str, Any]) -> None:
    """What we do not know, for a council officer: how often each option wins over the
    plausible settings, what choosing it could give up, the robust choices, and which
    unknown is worth a pilot (planning.decision; figures from planning.figures)."""
    from .planning.figures import decision_figures

    decision = pd.read_csv(folder / "decision.csv").set_index("option")
    voi = pd.read_csv(folder / "voi.csv")
    what = {"final_adopters": "households taking part", "total_impact": "impact"}.get(
        str(ens.get("outcome")), str(ens.get("outcome", "result")).replace("_", " "))
    source = ("a calibrated posterior" if ens.get("source") == "posterior" else
              f"the priors at the '{ens.get('evidence')}' evidence level")
    doc.h("What we do not know, and what it means for the choice")
    doc.p(f"Each option was simulated on the same {ens['draws']} plausible sets of the "
          f"model's uncertain settings, drawn from {source}, {ens['replicates']} times each "
          "with the same random draws for every option. Ranges in this report therefore "
          f"cover {ens['covers']}.")
    choices = [("Best on average", ens["best_expected"]),
               ("Smallest worst-case shortfall (minimax regret)", ens["minimax_regret"]),
               ("Best in a bad case (10th percentile)", ens["best_p10"])]
    rows = []
    for label, option in choices:
        d = decision.loc[option] if option in decision.index else None
        rows.append([label, _short(str(option)),
                     "" if d is None else pct(float(d["p_best"]), 0),
                     "" if d is None else num(float(d["expected_regret"]), 1)])
    doc.table(["Rule for choosing", "Option", "Chance it is the best",
               f"Expected shortfall ({what})"], rows)
    same = len({o for _, o in choices}) == 1
    doc.p("The three rules agree: the choice does not depend on how much risk the council "
          "is willing to take." if same else
          "The rules disagree: choosing between them is choosing how much risk to take.",
          f" If every uncertain setting were known exactly, the best choice would gain on "
          f"average {num(float(ens['evpi']), 1)} ({what}) over the best choice today: the "
          "expected value of perfect information, an upper limit on what any study could "
          "add to this decision.")
    if len(voi):
        top = voi.sort_values("evppi", ascending=False).head(3)
        doc.p("Which unknown matters most for the choice (expected value of partial perfect "
              "information, by the regression method of Strong, Oakley & Brennan 2014): "
              "what knowing that one setting exactly would add, on average.")
        doc.table(["Uncertain setting", f"Value of knowing it ({what})", "Share of the most "
                   "any study could add"],
                  [[str(r["parameter"]), num(float(r["evppi"]), 1),
                    pct(float(r["share_of_evpi"]), 0)] for _, r in top.iterrows()])
        pilot = (ens.get("pilot") or {}).get("pilot")
        if pilot:
            doc.p(f"A pilot for {ens['pilot'].get('parameter')}: {pilot}")
    for path, alt in decision_figures(folder):
        doc.img(path, alt)


def _nan(v: Any) -> float | None:
    return None if v is None or (isinstance(v, float) and not np.isfinite(v)) else float(v)


def _short(name: str, limit: int = 60) -> str:
    return name if len(name) <= limit else name[: limit - 1] + "…"


def _assumption_section(doc: Doc, sc: Scenario, items: list[dict[str, Any]] | None) -> None:
    doc.h("Assumptions and their sources")
    doc.p("Every setting that drives the results, with where it comes from. "
          "'Assumption' means a reasoned guess with no study behind it yet.")
    doc.table(["What", "Value", "Source"], [list(row) for row in assumptions(sc, items)])


def run_doc(folder: Path) -> Doc:
    """Report of one `nudgesim run`: what the campaign added over doing nothing (when the
    run has its no-campaign twin), then what happens in total, and the pictures."""
    s = json.loads((folder / "summary.json").read_text())
    sc = _scenario(folder)
    ts = _table(folder, "timeseries")
    by_ward = _table(folder, "by_ward")
    twin = s.get("campaign_extra_adopters") is not None and "counterfactual_rate" in ts
    doc = Doc(f"What the campaign achieves: {s['scenario']}")
    doc.h("The question")
    doc.p(f"What happens over {s['steps']} {sc.step_unit}s if the council runs the nudges in "
          f"this scenario, " + ("what does it add over doing nothing, " if twin else "")
          + "what does it cost, and who is left behind?")
    if twin:
        _added_section(doc, s, sc)
    doc.h("Totals, including what would have happened anyway" if twin else "The answer in brief")
    cpa = s.get("cost_per_adopter_gained")
    gained = s["adopters_gained"]
    change = (f"{num(gained)} more households" if gained is None or gained >= 0
              else f"{num(-gained)} fewer household{'s' if gained < -1 else ''}")
    doc.p(f"Households taking part go from {pct(s['initial_adoption'])} to "
          f"{pct(s['final_adoption'])} ({change}). The "
          f"campaign costs {money(s['total_cost'])} ({money(cpa)} per household gained "
          f"since the start) and the households taking part achieve "
          f"{num(s['total_impact'], 1)} {s['impact_unit']} in total. The lowest ward "
          f"is {s['lowest_ward']} at {pct(s['lowest_ward_adoption'])}"
          + (f"; the lowest region is {s['lowest_region']} at "
             f"{pct(s['lowest_region_adoption'])}." if s.get("lowest_region") else "."))
    if not twin:
        doc.note("This run has no no-campaign twin ('nudgesim run --no-counterfactual', or "
                 "ns.simulate without counterfactual=True), so these totals include what "
                 "would have happened anyway. Run it with the twin to see what the campaign "
                 "itself added.")
    doc.h("The scenario in words")
    doc.p(scenario_words(sc, s["initial_adoption"], None))
    if sc.nudges:
        doc.bullets([(em(n.name), f" from {sc.step_unit} {n.start}: "
                               f"{NUDGE_WORDS.get(n.kind, n.kind)}") for n in sc.nudges])
    curves = pd.DataFrame({"scenario": "run", "step": ts["step"], "mean": ts["adoption_rate"],
                           "lo": ts["adoption_rate"], "hi": ts["adoption_rate"]})
    names = {"run": "whole area, with the campaign"}
    if twin:
        curves = pd.concat([pd.DataFrame({
            "scenario": "baseline", "step": ts["step"], "mean": ts["counterfactual_rate"],
            "lo": ts["counterfactual_rate"], "hi": ts["counterfactual_rate"]}), curves])
        names = {"baseline": "whole area, no campaign (same seed)", **names}
    doc.h("Pictures")
    doc.img(plot_curves(curves, names, sc, folder / "report_adoption.png",
                        title="Share of households taking part (one simulation"
                              + (" of each)" if twin else ")")),
            "Households taking part week by week (one simulation"
            + (" with the campaign, one without)." if twin else ")."))
    last = by_ward[by_ward["step"] == by_ward["step"].max()]
    wards = pd.DataFrame({"scenario": "run", "ward": last["ward"],
                          "final_adoption": last["adoption_rate"]})
    ward_names = {"run": "with the campaign"}
    if twin and "counterfactual_rate" in last:
        wards = pd.concat([pd.DataFrame({"scenario": "baseline", "ward": last["ward"],
                                         "final_adoption": last["counterfactual_rate"]}), wards])
        ward_names = {"baseline": "no campaign", **ward_names}
    n_wards = last["ward"].nunique()
    doc.img(plot_wards(wards, ward_names, folder / "report_wards.png"),
            "Households taking part at the end, ward by ward"
            + (f" (the lowest and highest {WARD_BARS // 2} of {n_wards:,} wards)."
               if n_wards > WARD_BARS else "."))
    if (folder / "by_region.parquet").exists():
        _region_section(doc, _table(folder, "by_region"), twin)
    if n_wards > WARD_BARS:
        _ward_extremes(doc, last, sc, twin)
    _map(doc, sc, lambda: _run_map(folder, sc, by_ward),
         "Households taking part, ward by ward, on the map: at the start and at the end"
         + (", and what the campaign added (with it minus without, same seed; blue = more "
            "households, red = fewer)." if twin else
            " (run with the no-campaign twin to map what the campaign itself added)."))
    _assumption_section(doc, sc, None)
    return doc


def _region_section(doc: Doc, by_region: pd.DataFrame, twin: bool) -> None:
    """One row per region: its size, the share taking part at the start and the end and,
    with the twin, with no campaign and what the campaign added (by_region.parquet)."""
    first = by_region[by_region["step"] == by_region["step"].min()].set_index("region")
    last = by_region[by_region["step"] == by_region["step"].max()]
    twin = twin and "counterfactual_rate" in last
    doc.h("By region")
    header = ["Region", "Wards", "Households", "At the start", "At the end"]
    if twin:
        header += ["With no campaign", "Added by the campaign"]
    rows = []
    for r in last.sort_values("adoption_rate", kind="stable").itertuples(index=False):
        row = [str(r.region), num(r.wards), num(r.residents),
               pct(first.loc[r.region, "adoption_rate"]), pct(r.adoption_rate)]
        if twin:
            row += [pct(r.counterfactual_rate),
                    f"{100 * (r.adoption_rate - r.counterfactual_rate):+.1f} pp"]
        rows.append(row)
    doc.p("Households taking part, region by region, lowest at the end first (every step "
          "is in by_region.parquet).")
    doc.table(header, rows)


def _ward_extremes(doc: Doc, last: pd.DataFrame, sc: Scenario, twin: bool) -> None:
    """The WARD_ROWS lowest and highest wards at the end, with their region: a run with
    thousands of wards lists its extremes, not every ward (all are in by_ward.parquet)."""
    regions = sc.population.ward_regions()
    region_of = dict(zip(sc.population.ward_names(), regions, strict=True)) if regions else {}
    twin = twin and "counterfactual_rate" in last
    ranked = last.sort_values("adoption_rate", kind="stable")
    header = ["", "Ward", *(["Region"] if region_of else []), "Households", "At the end",
              *(["With no campaign"] if twin else [])]
    rows = []
    for label, part in (("lowest", ranked.head(WARD_ROWS)), ("highest", ranked.tail(WARD_ROWS))):
        for i, r in enumerate(part.itertuples(index=False)):
            rank = i + 1 if label == "lowest" else len(ranked) - len(part) + i + 1
            rows.append([f"{label} ({rank:,})" if i == 0 else f"{rank:,}", str(r.ward),
                         *([region_of.get(str(r.ward), "")] if region_of else []),
                         num(r.residents), pct(r.adoption_rate),
                         *([pct(r.counterfactual_rate)] if twin else [])])
    doc.h("Lowest and highest wards")
    doc.p(f"The {WARD_ROWS} wards with the lowest and the {WARD_ROWS} with the highest share "
          f"taking part at the end, of {len(ranked):,} (ranked 1 = lowest; every ward and "
          "step is in by_ward.parquet).")
    doc.table(header, rows)


def _run_map(folder: Path, sc: Scenario, by_ward: pd.DataFrame) -> Path | None:
    """The run's own map.png, or drawn now when the run was saved without plots (map.png
    belongs to the run folder's files, so drawing it later keeps the folder a run's)."""
    path = folder / "map.png"
    if path.exists():
        return path
    from .maps import run_map

    return run_map(sc, by_ward, path)


def _map(doc: Doc, sc: Scenario, draw: Callable[[], Path | None], alt: str) -> None:
    """A ward map when the scenario has `[geography]` (nothing otherwise); a note saying why
    there is none when its boundary file cannot be read from here: a report should still
    say everything else."""
    if getattr(sc, "geography", None) is None:
        return
    try:
        path = draw()
    except UserError as err:
        doc.note(f"No ward map: {err}")
        return
    if path is not None:
        doc.img(path, alt)


def _plan_map(folder: Path, sc: Scenario, wards: pd.DataFrame, best: str | None,
              label: str) -> Path | None:
    """report_map.png of a plan: mean final adoption per ward with no campaign, with the
    best option, and the difference (nudgesim.maps.plan_panels)."""
    from .maps import Panel, boundaries, map_figure, plan_panels, save_map

    gdf = boundaries(sc)
    if gdf is None:
        return None
    if best is None:
        base = wards[wards["scenario"] == "baseline"].set_index("ward")["final_adoption"]
        panels = [Panel("At the end with no campaign", base)]
    else:
        panels = plan_panels(wards, best, label)
    fig = map_figure(gdf, panels, f"{sc.name}: households taking part by ward after "
                                  f"{sc.steps} {sc.step_unit}s (average of simulations)")
    return save_map(fig, folder / "report_map.png")


def _added_section(doc: Doc, s: dict[str, Any], sc: Scenario) -> None:
    """What the campaign added over its no-campaign twin, first: the totals also count
    households that would have taken part anyway."""
    extra, extra_impact = s["campaign_extra_adopters"], s["campaign_extra_impact"]
    unit = s["impact_unit"]
    doc.h("What the campaign added")
    if extra > 0:
        added = (f"The campaign adds {num(extra)} households taking part at the end "
                 f"({_pp(extra / max(s['residents'], 1))}: {pct(s['final_adoption'])} instead "
                 f"of {pct(s['counterfactual_final_adoption'])} with no campaign)")
    elif extra == 0:
        added = (f"The campaign adds no households taking part at the end (both end at "
                 f"{pct(s['final_adoption'])})")
    else:
        added = (f"The campaign ends with {num(-extra)} fewer households taking part than "
                 f"no campaign ({pct(s['final_adoption'])} instead of "
                 f"{pct(s['counterfactual_final_adoption'])})")
    doc.p(added, f" and {'+' if extra_impact > 0 else ''}{num(extra_impact, 1)} {unit} over "
          f"the {s['steps']} {sc.step_unit}s. It costs {money(s['total_cost'])}: ",
          strong(_price(s["cost_per_extra_adopter"], "household", "households")),
          " and ", strong(_price(s["cost_per_extra_impact"], unit, unit)), ".")
    doc.note("'No campaign' is the same area run again with no nudges and the same random "
             f"draws (seed {s['seed']}): the same households, ties and chance events, so "
             "chance that both runs share cancels out of the difference. Chance does not "
             "cancel entirely: the households the campaign moves change what their "
             "neighbours see next. This is one pair of simulations with no interval; use "
             "'nudgesim plan' (or nudgesim.compare) for 95% intervals over many pairs.")


def _pp(share: float) -> str:
    return f"{100 * share:+.1f} percentage points"


def _price(per: float | None, what: str, plural: str) -> str:
    """£ per extra unit, or why there is none (the campaign added nothing)."""
    if per is None:
        return f"no £ per extra {what}, since it adds no {plural}"
    return f"{unit_money(per)} per extra {what}"


def _table(folder: Path, name: str) -> pd.DataFrame:
    if (folder / f"{name}.parquet").exists():
        return pd.read_parquet(folder / f"{name}.parquet")
    if (folder / f"{name}.csv").exists():
        return pd.read_csv(folder / f"{name}.csv")
    raise ScenarioError(f"RESULTS_DIR: {folder} has no {name}.parquet or {name}.csv")


def write_report(results_dir: str | Path) -> tuple[Path, Path]:
    """Write report.html (self-contained) and report.md into the results folder."""
    folder = Path(results_dir)
    if not folder.is_dir():
        raise ScenarioError(f"RESULTS_DIR: {folder} is not a folder")
    if (folder / "plan.json").exists():
        doc = plan_doc(folder)
    elif (folder / "manifest.json").exists():
        from .sweep_report import sweep_doc

        doc = sweep_doc(folder)
    elif (folder / "summary.json").exists():
        doc = run_doc(folder)
    else:
        raise ScenarioError(f"RESULTS_DIR: {folder} has no plan.json, manifest.json or "
                            "summary.json; allowed: a folder written by 'nudgesim plan', "
                            "'nudgesim sweep' or 'nudgesim run'")
    html_path, md_path = folder / "report.html", folder / "report.md"
    write_atomic(html_path, doc.html())
    write_atomic(md_path, doc.markdown())
    return html_path, md_path
