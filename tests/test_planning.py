"""Planning: exact results where the outcome is hand-worked (rules whose hazards are 0 or 1),
statistical checks with stated tolerances, and properties of the frontier."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

import nudgesim as ns
from nudgesim import planning as pl
from nudgesim.cli import main
from nudgesim.runs import replicate_seeds
from nudgesim.scenario import ScenarioError

BIG = 60.0  # +-60 log-odds: hazards are 0 or 1 to machine precision
NEVER = {"kind": "logistic", "adopt_intercept": -BIG, "lapse_intercept": -BIG}
SERIAL = {"executor": "serial"}


def small(**fields) -> ns.Scenario:
    """400 households in 4 wards: big enough for statistics, fast enough for tests."""
    base = {
        "name": "small", "seed": 7, "steps": 12,
        "population": {"size": 400, "wards": 4},
        "network": {"kind": "ward_clustered", "mean_degree_in": 6.0, "mean_degree_out": 1.0},
        "initial_adopters": 0.3,
    }
    return ns.Scenario.from_dict(base | fields)


ENROL_ALL = {"kind": "default", "label": "caddy", "start": 1, "opt_out": 0.0,
             "cost_per_contact": 2.5, "targeting": {"adopted": False}}


# --------------------------------------------------------------------------- compare


def test_a_variant_that_changes_nothing_differs_by_exactly_zero():
    """Common random numbers: a nudge with no effect and no cost leaves every draw as it was."""
    sc = small()
    inert = sc.replace(nudges=[{"kind": "information", "attitude_boost": 0.0}])
    comp = ns.compare(sc, {"inert": inert}, replicates=3, **SERIAL)
    row = comp.table.iloc[0]
    assert (row["extra_adopters"], row["extra_adopters_lo"], row["extra_adopters_hi"]) == (0, 0, 0)
    assert row["extra_cost"] == 0 and row["cost_per_extra_adopter"] is None
    assert comp.runs["seed"].tolist() == replicate_seeds(7, 3) * 2


def test_compare_is_hand_worked_for_an_opt_out_default():
    # nobody adopts or lapses on their own; the default enrols all 280 non-adopters at step 1
    sc = small(rule=NEVER, initial_adopters=120)
    comp = ns.compare(sc, {"default": sc.replace(nudges=[ENROL_ALL])}, replicates=2, **SERIAL)
    r = comp.table.iloc[0]
    assert r["extra_adopters"] == 280 and r["extra_adopters_lo"] == 280
    assert r["extra_cost"] == 280 * 2.5
    assert r["cost_per_extra_adopter"] == pytest.approx(2.5)
    assert r["cost_per_extra_adopter_lo"] == pytest.approx(2.5)
    assert r["final_adoption"] == 1.0
    curve = comp.curves[comp.curves["scenario"] == "default"]["mean"].tolist()
    assert curve == [0.3] + [1.0] * 12


def test_compare_gives_the_same_table_on_every_executor():
    sc = small()
    v = {"reminder": sc.replace(nudges=[{"kind": "reminder", "every": 2, "boost": 1.0}])}
    a = ns.compare(sc, v, replicates=2, **SERIAL).table
    b = ns.compare(sc, v, replicates=2, executor="processes", workers=2).table
    assert a.equals(b)


def test_a_saved_comparison_replaces_its_folder_whole_and_never_a_users_folder(tmp_path):
    sc = small(rule=NEVER, initial_adopters=120)
    comp = ns.compare(sc, {"default": sc.replace(nudges=[ENROL_ALL])}, replicates=2, **SERIAL)
    out = tmp_path / "cmp"
    comp.save(out)
    (out / "report_adoption.png").write_bytes(b"old")
    comp.save(out)
    assert sorted(p.name for p in out.iterdir()) == sorted(
        pl.COMPARISON_FILES - {"ensemble.csv", "draws.csv", "decision.csv", "voi.csv",
                               "ensemble.json"})
    mine = tmp_path / "mine"
    mine.mkdir()
    (mine / "thesis.tex").write_text("years of work")
    with pytest.raises(ns.errors.UsageError, match="not a nudgesim comparison folder"):
        comp.save(mine)
    assert (mine / "thesis.tex").read_text() == "years of work"


def test_compare_rejects_one_replicate():
    with pytest.raises(ScenarioError, match="replicates"):
        ns.compare(small(), [small(name="x")], replicates=1, **SERIAL)


# --------------------------------------------------------------------------- trial


@pytest.mark.parametrize("unit", ["resident", "ward"])
def test_trial_of_a_certain_nudge_estimates_exactly(unit):
    """Everyone enrolled adopts for sure and nobody else ever does: the estimate is the
    treated arm's 100% minus control's 0%, and the true effect is all 280 non-adopters."""
    sc = small(rule=NEVER, initial_adopters=120)
    t = ns.trial(sc, ENROL_ALL, unit=unit, replicates=2, **SERIAL)
    runs = t.runs
    assert np.allclose(runs["true_effect"], 280 / 400)
    if unit == "resident":
        # change in adoption: treated non-adopters 0 -> 1, treated adopters stay; so the
        # estimate is the treated arm's share of non-adopters, close to 0.7
        assert ((runs["estimate"] - 0.7).abs() < 0.1).all()
        assert (runs["n_treated"] == 200).all()
    else:
        assert (runs["n_treated"] == 2).all() and (runs["n_control"] == 2).all()
    assert t.summary["power"] == 1.0


def test_without_spillover_the_resident_trial_is_unbiased():
    """No norm term: residents do not affect each other, so the trial's estimate should
    match the true effect up to simulation noise (tolerance: 3 standard errors)."""
    rule = {"kind": "logistic", "adopt_intercept": -3.0, "adopt_norm": 0.0, "lapse_norm": 0.0}
    sc = small(rule=rule, population={"size": 2000, "wards": 4})
    nudge = {"kind": "reminder", "every": 1, "boost": 1.0}
    t = ns.trial(sc, nudge, unit="resident", replicates=8, **SERIAL)
    s = t.summary
    assert s["true_effect"] > 0.05
    assert abs(s["bias"]) < 3 * s["sd_of_estimates"] / np.sqrt(8)
    assert s["power"] == 1.0


def test_trial_by_label_takes_the_nudge_out_of_the_background_and_checks_input():
    sc = small(nudges=[{"kind": "reminder", "label": "text"}, {"kind": "information"}])
    without, with_, k, name = pl.with_nudge(sc, "text")
    assert [n.name for n in without.nudges] == ["information"]
    assert [n.name for n in with_.nudges] == ["information", "text"] and k == 1
    with pytest.raises(ScenarioError, match="nudge"):
        ns.trial(sc, "nope", **SERIAL)
    with pytest.raises(ScenarioError, match="share"):
        ns.trial(sc, "text", share=1.0, **SERIAL)
    with pytest.raises(ScenarioError, match="unit"):
        ns.trial(sc, "text", unit="street", **SERIAL)


# --------------------------------------------------------------------------- calibrate


def test_calibrate_recovers_an_opt_out_share_from_a_trial_effect():
    # effect at step 1 = share of the (all non-adopting) residents who do not opt out
    sc = small(rule=NEVER, initial_adopters=0, steps=2)
    nudge = {"kind": "default", "opt_out": 0.5}
    target = pl.TrialEffect(nudge=nudge, at_step=1, effect=0.6)
    cal = ns.calibrate(sc, target, {"nudge.opt_out": (0.0, 1.0)}, replicates=4, **SERIAL)
    assert cal.parameters["nudge.opt_out"] == pytest.approx(0.4, abs=0.03)
    lo, hi = cal.interval["nudge.opt_out"]
    assert lo <= cal.parameters["nudge.opt_out"] + 1e-9 and hi >= lo
    assert cal.nudge["opt_out"] == cal.parameters["nudge.opt_out"]
    assert cal.scenario.nudges[-1].kind == "default" and not cal.warnings


def test_calibrate_recovers_an_intercept_from_a_series(tmp_path):
    truth = small(rule={"kind": "logistic", "adopt_intercept": -4.0}, steps=16)
    ts = ns.simulate(truth).timeseries
    csv = tmp_path / "obs.csv"
    csv.write_text("# synthetic\nstep,adoption_rate\n" + "".join(
        f"{s},{ts['adoption_rate'][s]}\n" for s in range(0, 17, 4)))
    series = pl.ObservedSeries.from_csv(csv)
    start = truth.replace(rule={"kind": "logistic", "adopt_intercept": -6.0})
    cal = ns.calibrate(start, series, {"rule.adopt_intercept": (-6.0, -2.0)}, replicates=4,
                       **SERIAL)
    # tolerance 0.3 log-odds: the target is one noisy run of 400 households
    assert cal.parameters["rule.adopt_intercept"] == pytest.approx(-4.0, abs=0.3)
    out = cal.save(tmp_path / "calibrated.toml")
    back = ns.Scenario.from_toml(out)
    assert back.rule.adopt_intercept == pytest.approx(cal.parameters["rule.adopt_intercept"])
    assert (tmp_path / "calibrated.fit.csv").exists()


def test_calibrate_says_when_the_target_is_out_of_reach():
    sc = small(rule=NEVER, initial_adopters=0, steps=2)
    target = pl.TrialEffect(nudge={"kind": "default", "opt_out": 0.5}, at_step=1, effect=0.6)
    cal = ns.calibrate(sc, target, {"nudge.opt_out": (0.8, 1.0)}, replicates=2, **SERIAL)
    assert cal.at_bound == ["nudge.opt_out"]
    assert any("not reproduced" in w for w in cal.warnings)


def test_calibration_inputs_are_checked(tmp_path):
    sc = small()
    series = pl.ObservedSeries(np.array([0, 4]), np.array([0.3, 0.35]))
    with pytest.raises(ScenarioError, match="no part"):
        ns.calibrate(sc, series, {"rule.nope.x": (0, 1)}, **SERIAL)
    with pytest.raises(ScenarioError, match="low < high"):
        ns.calibrate(sc, series, {"rule.adopt_intercept": (1, 0)}, **SERIAL)
    bad = tmp_path / "bad.csv"
    bad.write_text("week,rate\n1,0.3\n")
    with pytest.raises(ScenarioError, match="lacks column"):
        pl.ObservedSeries.from_csv(bad)


def test_set_path_understands_both_index_styles():
    d = {"nudges": [{"boost": 1.0}], "rule": {}}
    pl.set_path(d, "nudges[0].boost", 2.0)
    pl.set_path(d, "nudges.0.half_life", 3.0)
    pl.set_path(d, "rule.adopt_intercept", -5.0)
    assert d == {"nudges": [{"boost": 2.0, "half_life": 3.0}], "rule": {"adopt_intercept": -5.0}}


# --------------------------------------------------------------------------- plan

MENU = {
    "name": "test menu",
    "items": [
        {"label": "caddy", "nudge": ENROL_ALL | {"cost_per_contact": 1.0},
         "levels": {"targeting.wards": [["W01"], ["W01", "W02"]]},
         "level_labels": {"targeting.wards": ["one ward", "two wards"]}},
        {"label": "leaflet", "nudge": {"kind": "information", "cost_per_contact": 0.5,
                                       "attitude_boost": 0.0}},
    ],
}


def test_menu_options_enumerate_levels_with_their_names():
    menu = pl.Menu.from_dict(MENU)
    names = [[n for n, _ in opts] for opts in menu.options()]
    assert names == [["caddy (one ward)", "caddy (two wards)"], ["leaflet"]]
    assert menu.options()[0][1][1]["targeting"]["wards"] == ["W01", "W02"]
    with pytest.raises(ScenarioError, match="level_labels"):
        pl.Menu.from_dict(MENU | {"items": [MENU["items"][0] | {"level_labels": {
            "targeting.wards": ["one"]}}]})
    with pytest.raises(ScenarioError, match="items"):
        pl.Menu.from_dict({"name": "empty", "items": []})


def test_plan_is_exhaustive_on_a_small_menu_and_respects_the_budget():
    # 100 households per ward, ~70 not adopting: one ward ~£70, two ~£140; leaflet £200
    sc = small(rule=NEVER, initial_adopters=120)
    result = ns.plan(sc, pl.Menu.from_dict(MENU), budget=150.0, replicates=2, **SERIAL)
    t = result.table
    assert result.meta["method"] == "exhaustive"
    assert result.meta["portfolios_total"] == 5  # (none + 2 levels) x (none + leaflet) - empty
    assert set(t["variant"]) == {"caddy (one ward)", "caddy (two wards)"}
    best = t.iloc[0]
    assert best["rank"] == 1 and best["variant"] == "caddy (two wards)"
    # each enrolled household costs £1 and adopts for sure (~70 per ward, drawn at random)
    assert best["extra_cost"] == best["extra_adopters"] and 100 < best["extra_cost"] <= 150
    assert t["on_frontier"].all()


def test_plan_command_writes_a_results_folder_and_rejects_bad_input(tmp_path, capsys):
    import tomli_w

    sc_path, menu_path = tmp_path / "s.toml", tmp_path / "m.toml"
    sc_path.write_text(small(rule=NEVER, initial_adopters=120).to_toml())
    menu_path.write_text(tomli_w.dumps(MENU))
    out = tmp_path / "out"
    argv = ["plan", str(sc_path), "--budget", "150", "--menu", str(menu_path),
            "--replicates", "2", "--executor", "serial", "--out", str(out)]
    assert main(argv) == 0
    assert {"plan.csv", "plan.json", "curves.csv", "wards.csv", "scenario.toml"} <= {
        p.name for p in out.iterdir()}
    assert "caddy (two wards)" in capsys.readouterr().out
    assert main(argv[:-2] + ["--target", "happiness"]) == 2
    # a rerun replaces the folder whole: a report written into it stays only if rewritten,
    # a stray file of the old run's kind is gone, a user's own file refuses the rerun
    (out / "report.md").write_text("old report")
    assert main(argv) == 0 and not (out / "report.md").exists()
    (out / "notes.txt").write_text("mine")
    assert main(argv) == 2
    assert "is not a nudgesim plan folder (holds notes.txt)" in capsys.readouterr().err
    assert (out / "notes.txt").read_text() == "mine" and (out / "plan.json").exists()
    assert main(["plan", str(sc_path), "--budget", "1", "--menu", str(menu_path),
                 "--executor", "serial"]) == 2
    assert "buys no portfolio" in capsys.readouterr().err


@settings(max_examples=50, deadline=None)
@given(st.lists(st.tuples(st.integers(0, 20), st.integers(0, 20)), min_size=1, max_size=30))
def test_frontier_points_are_not_dominated_and_the_rest_are(points):
    cost, value = (np.array(x, dtype=float) for x in zip(*points))
    front = pl.pareto([cost, value], ["minimize", "maximize"])
    for i in range(len(cost)):
        dominated = ((cost <= cost[i]) & (value >= value[i])
                     & ((cost < cost[i]) | (value > value[i]))).any()
        assert front[i] == (not dominated)
    assert front[np.argmax(value - 1e-6 * cost)]  # the best value at least cost is on it


def test_menu_numbers_are_finite_and_levels_are_checked_where_written():
    bad_nudge = MENU | {"items": [MENU["items"][1] | {"nudge": {"kind": "information",
                                                                 "reach": float("nan")}}]}
    with pytest.raises(ScenarioError, match=r"^menu: items\[0\]\.nudge\.reach: nan is not allowed"):
        pl.Menu.from_dict(bad_nudge)
    repeated = {"label": "l", "nudge": {"kind": "information"}, "levels": {"reach": [0.5, 0.5]}}
    with pytest.raises(ScenarioError, match=r"items\[0\]\.levels\.reach: .* repeats a value"):
        pl.Menu.from_dict({"items": [repeated]})
    nowhere = {"label": "l", "nudge": {"kind": "information"}, "levels": {"targeting.x.y": [1]}}
    with pytest.raises(ScenarioError, match=r"items\[0\]\.levels\.targeting\.x\.y: "):
        pl.Menu.from_dict({"items": [nowhere]})
    with pytest.raises(ScenarioError, match=r"^menu: name: control character"):
        pl.Menu.from_dict(MENU | {"name": "a\x00b"})


def test_menu_check_names_the_level_that_gives_a_bad_value_before_any_run():
    sc = small(rule=NEVER)
    menu = pl.Menu.from_dict({"items": [{"label": "l", "nudge": {"kind": "information"},
                                         "levels": {"reach": [0.5, 1.5]}}]})
    with pytest.raises(ScenarioError) as err:
        menu.check(sc, "m.toml")
    assert str(err.value).startswith("m.toml: items[0].levels.reach: Input should be less than")
    with pytest.raises(ScenarioError, match=r"items\[0\]\.levels\.reach"):  # plan checks first
        ns.plan(sc, menu, budget=100.0, replicates=2, **SERIAL)
    assert pl.Menu.from_dict(MENU).check(sc) == 3


@pytest.mark.parametrize("budget", [float("nan"), float("inf"), -1.0, 0.0])
def test_plan_refuses_a_budget_that_is_not_a_positive_finite_amount(budget):
    with pytest.raises(ScenarioError, match="^budget: .* allowed: a positive, finite amount"):
        ns.plan(small(rule=NEVER), pl.Menu.from_dict(MENU), budget=budget, **SERIAL)
