"""The budget planner: which portfolio of nudges from a menu, within a budget?"""

from __future__ import annotations

import itertools
import json
import math
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

import numpy as np
import pandas as pd
from pydantic import Field, ValidationError

from ..files import replace_folder, write_atomic
from ..outcomes import OUTCOMES, Direction
from ..parallel import Executor, RunOptions
from ..runs import set_path
from ..scenario import Scenario, ScenarioError, explain, load_toml_text, plain
from ..spec import Spec
from . import ensemble
from .comparison import PLAN_FILES, Comparison, compare, ensemble_comparison, refuse
from .stats import jsonable, pareto


class _MenuSpec(Spec):
    """Menus follow the scenario's rules: unknown fields, non-finite floats and control
    characters are refused."""


class MenuItem(_MenuSpec):
    """A candidate nudge: its full spec as in a scenario, and alternative levels."""

    label: str = Field(..., description="name shown in tables; unique within the menu")
    nudge: dict[str, Any] = Field(..., description="a nudge exactly as in a scenario's [[nudges]]")
    levels: dict[str, list[Any]] = Field(
        default_factory=dict,
        description="alternative values of nudge fields (dotted paths, e.g. 'targeting.count'); "
        "every combination is one option",
    )
    level_labels: dict[str, list[str]] = Field(
        default_factory=dict,
        description="plain names of the levels, same order (e.g. every = ['monthly', 'weekly'])",
    )
    required: bool = Field(False, description="every portfolio must include this item")
    source: str = Field("", description="where the costs and effects come from (shown in reports)")


class Menu(_MenuSpec):
    """What the council could buy."""

    name: str = "menu"
    description: str = ""
    keep_scenario_nudges: bool = Field(
        False, description="true: the scenario's own nudges run in every portfolio (committed); "
        "false: the menu is the whole campaign and the baseline has no nudges")
    items: list[MenuItem] = Field(..., min_length=1)

    @classmethod
    def from_toml(cls, path: str | Path) -> Menu:
        try:
            text = Path(path).read_text(encoding="utf-8")
        except FileNotFoundError:
            raise ScenarioError(f"menu file not found: {path}") from None
        except (OSError, UnicodeDecodeError) as err:
            raise ScenarioError(f"cannot read menu file {path}: {err}") from None
        try:
            data = load_toml_text(text)
        except ScenarioError as err:
            raise ScenarioError(f"{path}: {err}") from None
        return cls.from_dict(data, str(path))

    @classmethod
    def from_dict(cls, data: dict[str, Any], where: str = "menu") -> Menu:
        """A validated menu; errors name the field (`items[2].levels.reach`), the value and
        what is allowed, on the first line."""
        try:
            menu = cls.model_validate(data)
        except ValidationError as err:
            raise ScenarioError(f"{where}: {explain(err, Menu)}") from None
        for i, item in enumerate(menu.items):
            # nudges are free-form here (checked as scenario nudges later), so their numbers
            # are held to the scenario's rule now: a value a level overrides is still read
            for name, value in (("nudge", item.nudge), ("levels", item.levels)):
                if (bad := _non_finite(value, f"items[{i}].{name}")) is not None:
                    raise ScenarioError(f"{where}: {bad[0]}: {plain(bad[1])} is not allowed; "
                                        "allowed: a finite number")
            for key, values in item.levels.items():
                field_name = f"{where}: items[{i}].levels.{key}"
                if not values:
                    raise ScenarioError(f"{field_name}: no values; allowed: one or more")
                shown = [json.dumps(v, sort_keys=True) for v in values]
                if len(set(shown)) != len(shown):
                    raise ScenarioError(
                        f"{field_name}: {plain(values)} repeats a value; allowed: each value once")
                try:
                    set_level(json.loads(json.dumps(item.nudge)), key, values[0])
                except ScenarioError:
                    raise ScenarioError(
                        f"{field_name}: {key!r} is not a field of this nudge (its parts must "
                        "exist in items.nudge); allowed: e.g. 'reach' or 'targeting.count'"
                    ) from None
            for key, names in item.level_labels.items():
                if key not in item.levels or len(names) != len(item.levels[key]):
                    raise ScenarioError(
                        f"{where}: items[{i}].level_labels.{key}: needs one name per value of "
                        f"levels.{key} ({item.levels.get(key)}), got {names}")
                if len(set(names)) != len(names):
                    raise ScenarioError(f"{where}: items[{i}].level_labels.{key}: {names} "
                                        "repeats a name; allowed: each name once")
        labels = [i.label for i in menu.items]
        if len(set(labels)) != len(labels):
            raise ScenarioError(f"{where}: items.label must be unique, got {labels}")
        return menu

    def check(self, scenario: Scenario, where: str = "menu") -> int:
        """Validate every option as a nudge of `scenario` (before any run is spent on it);
        returns the number of options. Errors name the menu item's field."""
        data = scenario.to_dict()
        committed = list(data.get("nudges", [])) if self.keep_scenario_nudges else []
        count = 0
        for i, opts in enumerate(self.options()):
            for name, spec in opts:
                try:
                    Scenario.from_dict(data | {"nudges": [*committed, spec]}, scenario.base_dir)
                except ScenarioError as err:
                    text = str(err)
                    own = f"nudges[{len(committed)}]"
                    if text.startswith(own):
                        rest = text.removeprefix(own)
                        # a value set by a level is named where it is written: levels.<key>
                        key = next((k for k in self.items[i].levels
                                    if rest.startswith((f".{k}:", f".{k}[", f".{k}."))), None)
                        text = (f"items[{i}].levels.{key}{rest.removeprefix('.' + key)}"
                                if key else f"items[{i}].nudge{rest}")
                    else:
                        text = f"items[{i}]: {text}"
                    raise ScenarioError(f"{where}: {text} (menu option {name!r})") from None
                count += 1
        return count

    def options(self) -> list[list[tuple[str, dict[str, Any]]]]:
        """Per item: its options as (name, nudge spec); every level combination is one."""
        out = []
        for item in self.items:
            keys = list(item.levels)
            opts = []
            for values in itertools.product(*(item.levels[k] for k in keys)):
                spec = json.loads(json.dumps(item.nudge))
                spec.setdefault("label", item.label)
                for k, v in zip(keys, values):
                    set_level(spec, k, v)
                suffix = ", ".join(_level_name(item, k, v) for k, v in zip(keys, values))
                opts.append((f"{item.label} ({suffix})" if suffix else item.label, spec))
            out.append(opts)
        return out


def _non_finite(obj: Any, path: str) -> tuple[str, float] | None:
    """(where, value) of the first NaN or infinity in plain data, else None."""
    if isinstance(obj, float) and not math.isfinite(obj):
        return path, obj
    items = obj.items() if isinstance(obj, dict) else enumerate(obj) if isinstance(obj, list) else ()
    for k, v in items:
        found = _non_finite(v, f"{path}[{k}]" if isinstance(k, int) else f"{path}.{k}")
        if found is not None:
            return found
    return None


def _level_name(item: MenuItem, key: str, value: Any) -> str:
    """How a level appears in tables: its label when given, else 'field=value'."""
    labels = item.level_labels.get(key)
    if labels is not None:
        return str(labels[item.levels[key].index(value)])
    if isinstance(value, list):
        return f"{len(value)} {key.split('.')[-1]}"
    return f"{key.split('.')[-1]}={value}"


def set_level(spec: dict[str, Any], key: str, value: Any) -> None:
    """Write a level into a nudge spec: its parts must exist in the item's nudge."""
    set_path(spec, key, value, create_missing=False, what="level")


@dataclass(frozen=True)
class Target:
    """What a plan maximises (or minimises): an outcome of the run summary, the column of
    the comparison table that ranks portfolios, the one the screen adds up, and words."""

    outcome: str
    column: str
    screen_column: str
    label: str

    @property
    def direction(self) -> Direction:
        return OUTCOMES[self.outcome].direction


TARGETS = {
    "adoption": Target("final_adopters", "extra_adopters", "extra_adopters",
                       "extra households taking part at the end"),
    "impact": Target("total_impact", "extra_impact", "extra_impact",
                     "extra environmental impact"),
    "equity": Target("lowest_ward_adoption", "lowest_ward_adoption", "extra_lowest_ward",
                     "share taking part in the lowest ward at the end"),
}


@dataclass
class Plan:
    """Ranked portfolios (`table`), the comparison behind them, and how the search went."""

    table: pd.DataFrame
    comparison: Comparison
    meta: dict[str, Any]

    def save(self, out_dir: str | Path) -> Path:
        """Folder read by `nudgesim report`: plan.csv, plan.json and the comparison tables."""
        out = Path(out_dir)
        with replace_folder(out, refuse("plan.json", PLAN_FILES, "plan")) as tmp:
            self.comparison.write_into(tmp)
            write_atomic(tmp / "plan.csv", self.table.to_csv(index=False))
            write_atomic(tmp / "plan.json", json.dumps(jsonable(self.meta), indent=2) + "\n")
        return out


def plan(
    scenario: Scenario,
    menu: Menu,
    budget: float,
    target: Literal["adoption", "impact", "equity"] = "adoption",
    replicates: int = 10,
    max_exhaustive: int = 64,
    top: int = 24,
    screen_replicates: int = 2,
    executor: Executor = "processes",
    workers: int | None = None,
    scheduler: str | None = None,
    dask_timeout: float | None = None,
    draws: int | None = None,
    evidence: str | None = None,
    posterior: pd.DataFrame | None = None,
    ensemble_top: int = 12,
) -> Plan:
    """Search nudge portfolios whose expected cost fits `budget`, evaluate them with
    paired replicates, rank by `target` and mark the cost–impact frontier.

    1. Screen: each option alone (on top of the baseline) for `screen_replicates` runs gives
       its expected cost (cost depends on contacts and uptake, so it must be simulated) and
       its effect on the target.
    2. Candidates: every portfolio whose summed expected cost fits. If there are at most
       `max_exhaustive`, all are evaluated; otherwise the `top` best by the additive
       screen plus the additive screen's cost–effect frontier (a knapsack surrogate that
       ignores interactions; the evaluation then measures them).
    3. Evaluate candidates with `replicates` paired runs; rank those whose mean cost fits.
    4. With ``draws`` (priors at level `evidence`) or a `posterior`: the `ensemble_top`
       best affordable portfolios of step 3 run again on K parameter draws × `replicates`
       (common random numbers, :mod:`.ensemble`); the table then ranks them by the
       ensemble mean with intervals that cover parameters and noise, beside p_best,
       expected regret and the robust choices, and the comparison carries the decision
       and value-of-information tables. Steps 1–3 use the scenario's own values.
    """
    use_ensemble = ensemble.check(draws, evidence, posterior)
    if use_ensemble and ensemble_top < 2:
        raise ScenarioError(f"ensemble_top: {ensemble_top} is not allowed; allowed: 2 or "
                            "more portfolios (a decision needs a choice)")
    if target not in TARGETS:
        raise ScenarioError(f"target: {target!r} is not allowed; allowed: {', '.join(TARGETS)}")
    if not (budget > 0 and math.isfinite(budget)):
        raise ScenarioError(
            f"budget: {plain(budget)} is not allowed; allowed: a positive, finite amount of £")
    menu.check(scenario, f"menu {menu.name!r}")  # every option valid before any run
    data = scenario.to_dict()
    committed = list(data.get("nudges", [])) if menu.keep_scenario_nudges else []
    base = Scenario.from_dict(data | {"nudges": committed}, scenario.base_dir)
    options = menu.options()
    flat = [(i, name, spec) for i, opts in enumerate(options) for name, spec in opts]
    if posterior is not None and isinstance(posterior, pd.DataFrame):
        # a column no option has is a typo: say so before any run, not after the search
        ensemble.check_columns([base.replace(nudges=[*committed, spec]) for _, _, spec in flat]
                               + [base], posterior.columns)
    run_kw: dict[str, Any] = {"executor": executor, "workers": workers,
                              "scheduler": scheduler, "dask_timeout": dask_timeout}
    aim = TARGETS[target]
    sign = 1 if aim.direction == "maximize" else -1  # more of the target is better, or less

    # 1. screen each option alone
    screen = compare(base, {name: base.replace(nudges=[*committed, spec])
                            for _, name, spec in flat},
                     replicates=max(screen_replicates, 2), **run_kw)
    st = screen.table.set_index("variant")
    key = aim.column
    opt_cost = {name: float(st.loc[name, "extra_cost"]) for _, name, _ in flat}
    opt_gain = {name: float(st.loc[name, aim.screen_column]) for _, name, _ in flat}

    # 2. candidate portfolios
    choices = [[None, *opts] if not menu.items[i].required else list(opts)
               for i, opts in enumerate(options)]
    n_all = math.prod(len(c) for c in choices)
    if n_all > 200_000:
        raise ScenarioError(f"menu: {n_all:,} portfolios is too many; allowed: up to 200,000 "
                            "(fewer items or levels)")
    feasible = []
    for combo in itertools.product(*choices):
        picked = [c for c in combo if c is not None]
        if not picked:
            continue
        cost = sum(opt_cost[n] for n, _ in picked)
        if cost <= budget:
            feasible.append((picked, cost, sum(opt_gain[n] for n, _ in picked)))
    if not feasible:
        cheapest = min(opt_cost.values())
        raise ScenarioError(f"budget: £{budget:,.0f} buys no portfolio; the cheapest option "
                            f"costs about £{cheapest:,.0f}")
    if len(feasible) <= max_exhaustive:
        method, candidates = "exhaustive", feasible
    else:
        method = "additive screen, then evaluation"
        ranked = sorted(feasible, key=lambda f: (-sign * f[2], f[1]))
        chosen = {id(f) for f in ranked[:top]}
        by_cost = sorted(feasible, key=lambda f: (f[1], -sign * f[2]))
        best = -math.inf
        for f in by_cost:  # the screen's frontier: each step up in cost buys more effect
            if sign * f[2] > best:
                best = sign * f[2]
                chosen.add(id(f))
        candidates = [f for f in feasible if id(f) in chosen]

    # 3. evaluate
    names = {" + ".join(n for n, _ in picked): picked for picked, _, _ in candidates}
    variants = {name: base.replace(nudges=[*committed, *(s for _, s in picked)])
                for name, picked in names.items()}
    comp = compare(base, variants, replicates=replicates, **run_kw)
    table = rank_table(comp, names, budget, aim, opt_cost)
    nominal = table
    if use_ensemble:
        best_few: list[str] = table.loc[table["within_budget"], "variant"].tolist()[:ensemble_top]
        if len(best_few) < 2:
            best_few = table["variant"].tolist()[:max(ensemble_top, 2)]
        comp = ensemble_comparison(
            base, {"baseline": base, **{v: variants[v] for v in best_few}}, replicates,
            RunOptions(executor, workers, scheduler, dask_timeout), draws, evidence,
            posterior, target, None, decide_among=best_few)
        table = rank_table(comp, names, budget, aim, opt_cost)
        assert comp.decision is not None
        keep = ["option", "p_best", "expected_regret", "max_regret", "p10",
                "best_expected", "minimax_regret", "best_p10"]
        table = table.merge(comp.decision[keep].rename(columns={"option": "variant"}),
                            on="variant", how="left")
    meta = {
        "question": f"Which nudges, within £{budget:,.0f}, give the most "
                    f"{aim.label} of {scenario.steps} {scenario.step_unit}s?",
        "scenario": scenario.name, "scenario_description": scenario.description,
        "menu": menu.name, "menu_description": menu.description,
        "budget": budget, "target": target, "target_column": key,
        "target_label": aim.label,
        "impact_unit": scenario.impact.unit,
        "replicates": replicates, "screen_replicates": max(screen_replicates, 2),
        "portfolios_total": n_all - (0 if any(i.required for i in menu.items) else 1), "portfolios_feasible": len(feasible),
        "portfolios_evaluated": len(candidates), "method": method,
        "keep_scenario_nudges": menu.keep_scenario_nudges,
        "items": [{"label": it.label, "kind": it.nudge.get("kind"), "source": it.source,
                   "levels": it.levels, "required": it.required} for it in menu.items],
        "options": [{"option": n, "screen_cost": opt_cost[n], "screen_gain": opt_gain[n]}
                    for _, n, _ in flat],
        "seed": scenario.seed,
        "seeds": comp.runs.loc[comp.runs["scenario"] == "baseline", "seed"].tolist(),
        "baseline_final_adoption": float(comp.runs.loc[comp.runs["scenario"] == "baseline",
                                                       "final_adoption"].mean()),
        "baseline_lowest_ward": float(comp.runs.loc[comp.runs["scenario"] == "baseline",
                                                    "lowest_ward_adoption"].mean()),
    }
    if use_ensemble:
        meta["ensemble"] = comp.meta["ensemble"] | {"top": ensemble_top}
        meta["nominal"] = nominal[["variant", "extra_cost", key, f"{key}_lo", f"{key}_hi",
                                   "within_budget"]].to_dict("records")
        meta["question"] += " (with what we do not know about the parameters)"
    comp.meta = meta
    return Plan(table=table, comparison=comp, meta=meta)


def rank_table(comp: Comparison, names: Mapping[str, list[tuple[str, Any]]], budget: float,
           aim: Target, opt_cost: Mapping[str, float]) -> pd.DataFrame:
    """The comparison's table as a plan's: items, chance of going over budget, whether the
    mean cost fits, the screen's cost, the frontier, ranked by the target."""
    key = aim.column
    sign = 1 if aim.direction == "maximize" else -1
    table = comp.table.copy()
    table.insert(1, "items", [len(names[v]) for v in table["variant"]])
    over = comp.runs[comp.runs["scenario"] != "baseline"].assign(
        over=lambda d: d["total_cost"] > budget + comp.runs.loc[
            comp.runs["scenario"] == "baseline", "total_cost"].mean())
    table["p_over_budget"] = over.groupby("scenario")["over"].mean().reindex(
        table["variant"]).to_numpy()
    table["within_budget"] = table["extra_cost"] <= budget
    table["screen_cost"] = [sum(opt_cost[n] for n, _ in names[v]) for v in table["variant"]]
    table["on_frontier"] = pareto([table["extra_cost"].to_numpy(), table[key].to_numpy()],
                                  [OUTCOMES["total_cost"].direction, aim.direction])
    table = table.sort_values(["within_budget", key, "extra_cost"],
                              ascending=[False, sign < 0, True]).reset_index(drop=True)
    table.insert(0, "rank", np.where(table["within_budget"], np.arange(1, len(table) + 1), 0))
    return table


def format_decision(plan: Plan) -> str:
    """An ensemble plan's decision in a few plain lines for the terminal ('' without one)."""
    comp, ens = plan.comparison, plan.meta.get("ensemble")
    if ens is None or comp.decision is None or comp.voi is None:
        return ""
    d = comp.decision.set_index("option")
    src = (f"priors ({ens['evidence']})" if ens["source"] == "priors"
           else f"a posterior of {ens['posterior_rows']} rows")
    lines = [f"  Ensemble: the top {len(d)} portfolios on {ens['draws']} parameter draws from "
             f"{src} x {ens['replicates']} replicates; intervals above cover {ens['covers']}."]
    for rule, words in (("best_expected", "best on average"),
                        ("minimax_regret", "smallest worst-case regret"),
                        ("best_p10", "best in a bad case (10th percentile)")):
        name = ens[rule]
        lines.append(f"  {words}: {name} (p_best {d.loc[name, 'p_best']:.0%}, expected regret "
                     f"{d.loc[name, 'expected_regret']:,.1f})")
    lines.append(f"  value of knowing every parameter (EVPI): {ens['evpi']:,.1f} "
                 f"({plan.meta['target_label']})")
    for _, r in comp.voi.head(3).iterrows():
        lines.append(f"    {r['parameter']}: EVPPI {r['evppi']:,.1f} "
                     f"({r['share_of_evpi']:.0%} of EVPI)")
    if "pilot" in ens:
        lines.append(f"  pilot for {ens['pilot']['parameter']}: {ens['pilot']['pilot']}")
    return "\n".join(lines)


def format_table(table: pd.DataFrame, meta: Mapping[str, Any], rows: int = 10) -> str:
    """The ranked table as plain text for the terminal."""
    key = meta["target_column"]
    lines = [f"  {'#':>2}  {'cost £':>18}  {'target (95% interval)':>28}  frontier  portfolio"]
    for _, r in table.head(rows).iterrows():
        if key == "lowest_ward_adoption":
            val = f"{100 * r[key]:.1f}% ({100 * r[key + '_lo']:.1f}–{100 * r[key + '_hi']:.1f})"
        else:
            val = f"{r[key]:,.1f} ({r[key + '_lo']:,.1f} to {r[key + '_hi']:,.1f})"
        lines.append(f"  {r['rank'] or '-':>2}  {r['extra_cost']:>18,.0f}  {val:>28}  "
                     f"{'yes' if r['on_frontier'] else '':>8}  {r['variant']}")
    return "\n".join(lines)


