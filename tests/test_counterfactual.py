"""The no-campaign twin: exact on hand-worked graphs, common random numbers (the twin is
bit for bit the scenario run without nudges), properties of the campaign's effect, and the
twin in `nudgesim run`'s text, files, plot and report."""

from __future__ import annotations

import json
import math

import networkx as nx
import pandas as pd
import pytest
from cases import NETWORKS, RULES  # tests/cases.py: shared small-scenario ingredients
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import nudgesim as ns
from nudgesim import scenarios
from nudgesim.cli import main
from nudgesim.cli.run import effect_lines
from nudgesim.engine import no_campaign
from nudgesim.outcomes import OUTCOMES, needs_counterfactual
from nudgesim.plots import run_figure
from nudgesim.result import Result
from nudgesim.scenario import ScenarioWarning

SMALL_TOWN = scenarios.path(scenarios.SMALL_TOWN)
CAMPAIGN = list(Result.CAMPAIGN_KEYS)


def path_with_wards(n: int, ward_a: int) -> nx.Graph:
    """0-1-...-(n-1); residents 0..ward_a-1 live in ward A, the rest in ward B."""
    g = nx.path_graph(n)
    nx.set_node_attributes(g, {i: "A" if i < ward_a else "B" for i in g}, "ward")
    return g


def caddy_scenario(threshold: float, steps: int = 5) -> ns.Scenario:
    """A progressive threshold rule, nobody taking part at the start, and caddies delivered
    to every household of ward A at step 1 with nobody opting out (£2 each)."""
    return ns.Scenario.from_dict({
        "steps": steps, "initial_adopters": 0,
        "population": {"wards": [{"name": "A"}, {"name": "B"}]},
        "rule": {"kind": "threshold", "threshold": threshold, "lapse": 0.0},
        "impact": {"per_adopter_step": 1.0, "unit": "t"},
        "nudges": [{"kind": "default", "label": "caddy", "opt_out": 0.0,
                    "cost_per_contact": 2.0, "targeting": {"wards": ["A"]}}],
    })


# --------------------------------------------------------------------------- exact


def test_without_nudges_the_campaign_adds_exactly_nothing():
    sc = ns.Scenario.from_toml(SMALL_TOWN).replace(nudges=[], steps=12)
    res = ns.simulate(sc, counterfactual=True)
    s = res.summary
    assert s["campaign_extra_adopters"] == 0 and s["campaign_extra_impact"] == 0.0
    assert s["counterfactual_final_adoption"] == s["final_adoption"]
    assert s["cost_per_extra_adopter"] is None and s["cost_per_extra_impact"] is None
    ts = res.timeseries
    assert ts["counterfactual_adopters"].equals(ts["adopters"])
    assert ts["counterfactual_impact"].equals(ts["impact"])


def test_a_caddy_cascade_on_a_path_adds_the_hand_counted_households():
    # threshold 1/2 on a path: ward A (0, 1, 2) is enrolled at step 1, then one more
    # household a step (3 at step 2, 4 at 3, ...); with no campaign nobody ever starts
    res = ns.simulate(caddy_scenario(0.5), graph=path_with_wards(10, 3), counterfactual=True)
    ts = res.timeseries
    assert ts["adopters"].tolist() == [0, 3, 4, 5, 6, 7]
    assert ts["counterfactual_adopters"].tolist() == [0] * 6
    assert ts["counterfactual_rate"].tolist() == [0.0] * 6
    s = res.summary
    assert s["campaign_extra_adopters"] == 7
    assert s["campaign_extra_impact"] == 3 + 4 + 5 + 6 + 7 == 25.0
    assert s["total_cost"] == 6.0 and s["counterfactual_final_adoption"] == 0.0
    assert s["cost_per_extra_adopter"] == 6.0 / 7 and s["cost_per_extra_impact"] == 6.0 / 25
    wards = res.by_ward[res.by_ward["step"] == 5].set_index("ward")
    assert wards["adopters"].to_dict() == {"A": 3, "B": 4}
    assert wards["counterfactual_adopters"].to_dict() == {"A": 0, "B": 0}


def test_a_caddy_that_cannot_spread_adds_exactly_the_households_enrolled():
    # threshold 0.51: one adopted neighbour of two is not enough, so only ward A moves
    res = ns.simulate(caddy_scenario(0.51), graph=path_with_wards(10, 4), counterfactual=True)
    s = res.summary
    assert s["campaign_extra_adopters"] == 4 and s["campaign_extra_impact"] == 4 * 5
    assert s["cost_per_extra_adopter"] == 8.0 / 4


def test_households_that_join_anyway_are_not_counted_as_the_campaigns():
    # threshold 0: everyone starts at step 1 with or without caddies; the caddies reach
    # households that were joining anyway, so the campaign adds none and has no price
    res = ns.simulate(caddy_scenario(0.0), graph=path_with_wards(6, 2), counterfactual=True)
    s = res.summary
    assert s["adopters_gained"] == 6 and s["cost_per_adopter_gained"] == 4.0 / 6
    assert s["campaign_extra_adopters"] == 0 and s["campaign_extra_impact"] == 0.0
    assert s["cost_per_extra_adopter"] is None and s["cost_per_extra_impact"] is None
    assert s["total_cost"] == 4.0


def test_without_the_twin_the_run_is_as_before_and_the_effect_is_none():
    sc = ns.Scenario.from_toml(SMALL_TOWN).replace(steps=26)
    plain, both = ns.simulate(sc), ns.simulate(sc, counterfactual=True)
    assert plain.counterfactual is None
    assert list(plain.timeseries.columns) == list(Result.LOG_COLUMNS[:2]) + [
        "adoption_rate", *Result.LOG_COLUMNS[2:], "cost", "impact"]
    assert all(plain.summary[k] is None for k in CAMPAIGN)
    # the campaign's own run is the same bit for bit, twin or not
    pd.testing.assert_frame_equal(
        both.timeseries.drop(columns=list(Result.COUNTERFACTUAL_COLUMNS)), plain.timeseries,
        check_exact=True)
    pd.testing.assert_frame_equal(
        both.by_ward.drop(columns=["counterfactual_adopters", "counterfactual_rate"]),
        plain.by_ward, check_exact=True)
    assert (both.adopted == plain.adopted).all()
    summary = both.summary
    assert {k: v for k, v in summary.items() if k not in CAMPAIGN} == {
        k: v for k, v in plain.summary.items() if k not in CAMPAIGN}


# --------------------------------------------------------------------------- common random numbers


def assert_same_run(a: Result, b: Result) -> None:
    pd.testing.assert_frame_equal(a.timeseries, b.timeseries, check_exact=True)
    pd.testing.assert_frame_equal(a.by_ward, b.by_ward, check_exact=True)
    assert (a.adopted == b.adopted).all()


def test_the_twin_is_the_scenario_without_nudges_bit_for_bit():
    """Every nudge kind the small town has, on the engine it picks: building the world once
    and sharing it changes no draw of the twin."""
    sc = ns.Scenario.from_toml(SMALL_TOWN)
    res = ns.simulate(sc, counterfactual=True)
    assert res.counterfactual is not None
    assert no_campaign(sc).nudges == [] and no_campaign(sc).seed == sc.seed
    assert_same_run(res.counterfactual, ns.simulate(no_campaign(sc)))
    assert res.summary["campaign_extra_adopters"] == (
        res.summary["final_adopters"] - res.counterfactual.summary["final_adopters"])


def test_the_twin_on_the_compiled_kernels_is_the_numpy_twin(monkeypatch):
    """Two engines (and two kernel graphs) over one shared world: the compiled path gives
    the numpy path's twin bit for bit."""
    from nudgesim import kernels

    if not kernels.AVAILABLE:
        pytest.skip("numba is not installed or NUDGESIM_NUMBA=0")
    sc = ns.Scenario.from_toml(SMALL_TOWN).replace(steps=26)
    monkeypatch.setattr(kernels, "ENABLED", False)
    numpy_run = ns.simulate(sc, counterfactual=True)
    monkeypatch.setattr(kernels, "ENABLED", True)
    compiled = ns.simulate(sc, counterfactual=True)
    assert compiled.counterfactual is not None and numpy_run.counterfactual is not None
    assert_same_run(compiled, numpy_run)
    assert_same_run(compiled.counterfactual, numpy_run.counterfactual)
    assert_same_run(compiled.counterfactual, ns.simulate(no_campaign(sc)))


def test_the_twin_of_a_users_graph_shares_that_graph():
    g = nx.connected_watts_strogatz_graph(300, 6, 0.1, seed=3)
    sc = ns.Scenario.from_toml(SMALL_TOWN).replace(steps=26)
    with pytest.warns(ScenarioWarning, match="the graph gives the size") as caught:
        res = ns.simulate(sc, graph=g, counterfactual=True)
    assert len(caught) == 1  # the world is built once, for both runs
    assert res.counterfactual is not None
    with pytest.warns(ScenarioWarning):
        assert_same_run(res.counterfactual, ns.simulate(no_campaign(sc), graph=g))
    assert res.summary["residents"] == 300 and res.counterfactual.n_ties == g.number_of_edges()


NUDGES = [
    {"kind": "information", "reach": 0.8},
    {"kind": "reminder", "every": 2, "reach": 0.5, "cost_per_contact": 0.1},
    {"kind": "norm_feedback", "every": 3, "injunctive": True},
    {"kind": "default", "opt_out": 0.4, "cost_per_contact": 1.0,
     "targeting": {"adopted": False, "share": 0.3}},
    {"kind": "pledge", "uptake": 0.3, "cost_per_contact": 0.5},
    {"kind": "incentive", "cost_reduction": 0.5, "duration": 4, "cost_per_adopter": 0.2},
    {"kind": "ambassadors", "targeting": {"count": 5, "strategy": "degree"}},
]


@settings(max_examples=25, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    seed=st.integers(0, 2**31 - 1),
    n=st.integers(30, 200),
    rule=st.sampled_from(RULES),
    network=st.sampled_from(NETWORKS),
    chosen=st.lists(st.sampled_from(range(len(NUDGES))), max_size=3, unique=True),
    start=st.integers(1, 4),
)
def test_the_campaigns_effect_is_bounded_consistent_and_paired(seed, n, rule, network,
                                                               chosen, start):
    nudges = [NUDGES[i] | {"start": start} for i in chosen]
    sc = ns.Scenario.from_dict({"seed": seed, "steps": 8, "population": {"size": n, "wards": 3},
                                "initial_adopters": 0.2, "rule": rule, "network": network,
                                "impact": {"per_adopter_step": 0.5}, "nudges": nudges})
    res = ns.simulate(sc, counterfactual=True)
    s = res.summary
    extra, extra_impact, cost = (s["campaign_extra_adopters"], s["campaign_extra_impact"],
                                 s["total_cost"])
    assert -n <= extra <= n
    assert extra == s["final_adopters"] - round(s["counterfactual_final_adoption"] * n)
    assert -0.5 * n * 8 <= extra_impact <= 0.5 * n * 8
    if extra > 0:
        assert s["cost_per_extra_adopter"] == cost / extra
    else:
        assert s["cost_per_extra_adopter"] is None
    if extra_impact > 0:
        assert math.isclose(s["cost_per_extra_impact"] * extra_impact, cost, abs_tol=1e-9)
    else:
        assert s["cost_per_extra_impact"] is None
    assert res.counterfactual is not None and res.counterfactual.summary["total_cost"] == 0.0
    assert_same_run(res.counterfactual, ns.simulate(no_campaign(sc)))
    if not nudges:
        assert extra == 0 and extra_impact == 0.0


# --------------------------------------------------------------------------- outcomes


def test_the_campaigns_effect_is_a_named_outcome_with_unit_and_direction():
    assert [o for o in OUTCOMES if OUTCOMES[o].counterfactual] == CAMPAIGN
    assert tuple(OUTCOMES)[-5:] == Result.CAMPAIGN_KEYS
    assert OUTCOMES["campaign_extra_adopters"].direction == "maximize"
    assert OUTCOMES["cost_per_extra_adopter"].direction == "minimize"
    assert OUTCOMES["cost_per_extra_impact"].unit_for("t") == "£ per t"
    assert needs_counterfactual(["final_adoption", "cost_per_extra_adopter"])
    assert not needs_counterfactual(["final_adoption", "not_an_outcome"])


# --------------------------------------------------------------------------- command line


def test_run_prints_and_saves_the_campaigns_effect(tmp_path, capsys):
    out = tmp_path / "run"
    assert main(["run", str(SMALL_TOWN), "--out", str(out), "--steps", "26"]) == 0
    text = capsys.readouterr().out
    s = json.loads((out / "summary.json").read_text())
    assert s["campaign_extra_adopters"] == s["final_adopters"] - round(
        s["counterfactual_final_adoption"] * s["residents"])
    assert "with the no-campaign twin" in text and "  totals: adoption" in text
    assert (f"{s['campaign_extra_adopters']:+,} households "
            f"({100 * s['campaign_extra_adopters'] / s['residents']:+.1f} pp)") in text
    assert f"(same seed; {100 * s['counterfactual_final_adoption']:.1f}% at the end)" in text
    ts = pd.read_parquet(out / "timeseries.parquet")
    assert ts["counterfactual_adopters"].iloc[-1] == s["final_adopters"] - s[
        "campaign_extra_adopters"]
    assert list(pd.read_csv(out / "timeseries.csv").columns) == list(ts.columns)
    assert "counterfactual_rate" in pd.read_parquet(out / "by_ward.parquet")
    assert (out / "adoption.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"

    assert main(["run", str(SMALL_TOWN), "--out", str(out), "--steps", "26",
                 "--no-counterfactual"]) == 0
    text = capsys.readouterr().out
    assert "effect of the campaign" not in text and "no-campaign twin skipped" in text
    plain = json.loads((out / "summary.json").read_text())
    assert all(plain[k] is None for k in CAMPAIGN)
    assert {k: v for k, v in plain.items() if k not in CAMPAIGN} == {
        k: v for k, v in s.items() if k not in CAMPAIGN}
    assert not set(Result.COUNTERFACTUAL_COLUMNS) & set(
        pd.read_parquet(out / "timeseries.parquet").columns)


def summary_with(extra: int, extra_impact: float) -> dict:
    return {"residents": 1000, "steps": 10, "impact_unit": "t", "counterfactual_final_adoption":
            0.3, "campaign_extra_adopters": extra, "campaign_extra_impact": extra_impact,
            "cost_per_extra_adopter": 500.0 / extra if extra > 0 else None,
            "cost_per_extra_impact": 500.0 / extra_impact if extra_impact > 0 else None}


def test_the_text_says_why_there_is_no_price_per_extra_household():
    lines = "\n".join(effect_lines(summary_with(20, 4.0), "week"))
    assert "+20 households (+2.0 pp) and +4.00 t over no campaign" in lines
    assert "£25.00 per extra household; £125 per extra t" in lines
    none = "\n".join(effect_lines(summary_with(0, 0.0), "week"))
    assert "£ per extra household n/a: the campaign added no households" in none
    assert "£ per extra t n/a: the campaign added no impact" in none
    lost = "\n".join(effect_lines(summary_with(-3, -0.5), "week"))
    assert "-3 households (-0.3 pp)" in lost
    assert "n/a: the campaign ended with 3 fewer households than no campaign" in lost


# --------------------------------------------------------------------------- plot and report


def test_the_run_plot_draws_both_lines_with_a_legend(tmp_path):
    res = ns.simulate(caddy_scenario(0.5), graph=path_with_wards(10, 3), counterfactual=True)
    top, _, bottom = run_figure(res).axes[:3]
    labels = [t.get_text() for t in top.get_legend().get_texts()]
    assert labels == ["range across wards", "whole borough, with the campaign",
                      "whole borough, no campaign (same seed)"]
    twin_line = top.get_lines()[-1]
    assert list(twin_line.get_ydata()) == [0.0] * 6
    impact = run_figure(res).axes[-1]
    assert [t.get_text() for t in impact.get_legend().get_texts()] == [
        "impact, with the campaign", "impact, no campaign"]
    plain = run_figure(ns.simulate(caddy_scenario(0.5), graph=path_with_wards(10, 3)))
    assert [t.get_text() for t in plain.axes[0].get_legend().get_texts()] == [
        "range across wards", "whole borough"]
    ns.simulate(caddy_scenario(0.5), graph=path_with_wards(10, 3),
                counterfactual=True).save(tmp_path / "r")
    assert (tmp_path / "r" / "adoption.png").stat().st_size > 10_000


def test_the_run_report_leads_with_what_the_campaign_added(tmp_path):
    from nudgesim.report import write_report

    out = tmp_path / "r"
    ns.simulate(caddy_scenario(0.5), graph=path_with_wards(10, 3),
                counterfactual=True).save(out, plot=False)
    _, md_path = write_report(out)
    md = md_path.read_text()
    assert md.index("## What the campaign added") < md.index("## Totals, including what")
    assert ("The campaign adds 7 households taking part at the end (+70.0 percentage points: "
            "70.0% instead of 0.0% with no campaign) and +25.0 t over the 5 weeks") in md
    assert "**£0.86 per extra household** and **£0.24 per extra t**" in md
    assert "one pair of simulations with no interval" in md

    flat = tmp_path / "flat"
    ns.simulate(caddy_scenario(0.0), graph=path_with_wards(6, 2),
                counterfactual=True).save(flat, plot=False)
    md = write_report(flat)[1].read_text()
    assert "The campaign adds no households taking part at the end (both end at 100.0%)" in md
    assert "no £ per extra household, since it adds no households" in md
