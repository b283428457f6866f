"""Ensembles and decisions under uncertainty: exact decision maths on hand-made matrices,
hand-worked ensembles (rules whose hazards are 0 or 1), common random numbers, files and
the command line."""

from __future__ import annotations

import math

import numpy as np
import pandas as pd
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from hypothesis.extra.numpy import arrays

import nudgesim as ns
from nudgesim import planning as pl
from nudgesim.cli import main
from nudgesim.errors import UsageError
from nudgesim.planning import decision as dc
from nudgesim.planning import ensemble
from nudgesim.runs import replicate_seeds

BIG = 60.0  # +-60 log-odds: hazards are 0 or 1 to machine precision
NEVER = {"kind": "logistic", "adopt_intercept": -BIG, "lapse_intercept": -BIG}
SERIAL = {"executor": "serial"}
CADDY = {"kind": "default", "label": "caddy", "start": 1, "opt_out": 0.0,
         "cost_per_contact": 2.5, "targeting": {"adopted": False}}


def small(**fields) -> ns.Scenario:
    """400 households in 4 wards, 120 taking part at the start."""
    base = {
        "name": "small", "seed": 7, "steps": 12,
        "population": {"size": 400, "wards": 4},
        "network": {"kind": "ward_clustered", "mean_degree_in": 6.0, "mean_degree_out": 1.0},
        "initial_adopters": 120,
    }
    return ns.Scenario.from_dict(base | fields)


# --------------------------------------------------------------------------- decision maths


def test_p_best_shares_ties_and_regret_and_evpi_are_hand_worked():
    v = np.array([[1.0, 2.0, 3.0],
                  [1.0, 0.0, 3.0],
                  [0.0, 5.0, 3.0]])
    # draw 0: options 0 and 1 tie; draw 1: option 2; draw 2: all three tie
    assert dc.p_best(v) == pytest.approx([(1 / 2 + 1 / 3) / 3, (1 / 2 + 1 / 3) / 3,
                                          (1 + 1 / 3) / 3])
    assert dc.regret(v).tolist() == [[0, 3, 0], [0, 5, 0], [1, 0, 0]]
    # E[max] = (1 + 5 + 3)/3 = 3; max E = max(2, 4/3, 8/3) = 8/3
    assert dc.evpi(v) == pytest.approx(3 - 8 / 3)


def test_robust_choices_differ_from_the_best_expected_when_the_bad_case_is_bad():
    v = np.array([[4.0, 4.0, 4.0, -4.0],   # A: best on average, one disaster
                  [1.0, 1.0, 1.0, 1.0],    # B: steady
                  [3.0, 3.0, -1.0, 2.0]])  # C
    t = dc.summarise(v, ["A", "B", "C"]).set_index("option")
    assert t["expected"].tolist() == [2.0, 1.0, 1.75]
    assert t["expected_regret"].tolist() == [1.5, 2.5, 1.75]
    assert t["max_regret"].tolist() == [6.0, 3.0, 5.0]
    # numpy's linear 10th percentile of four values sits 0.3 of the way from the lowest
    assert t["p10"].tolist() == pytest.approx([-4 + 0.3 * 8, 1.0, -1 + 0.3 * 3])
    assert t.index[t["best_expected"]].tolist() == ["A"]
    assert t.index[t["minimax_regret"]].tolist() == ["B"]
    assert t.index[t["best_p10"]].tolist() == ["B"]
    assert dc.evpi(v) == pytest.approx(t["expected_regret"].min())


@settings(max_examples=60, deadline=None)
@given(arrays(np.float64, st.tuples(st.integers(1, 5), st.integers(1, 12)),
              elements=st.floats(-1e3, 1e3)))
def test_p_best_adds_to_one_and_evpi_is_the_least_expected_regret(v):
    assert dc.p_best(v).sum() == pytest.approx(1.0)
    assert (dc.regret(v) >= 0).all()
    assert dc.evpi(v) == pytest.approx(dc.regret(v).mean(axis=1).min(), abs=1e-9)
    assert dc.summarise(v, [str(i) for i in range(len(v))])[
        ["best_expected", "minimax_regret", "best_p10"]].sum().tolist() == [1, 1, 1]


def test_variance_shares_are_the_one_way_anova_split():
    runs = np.array([[[-1.0, 1.0], [1.0, 3.0]],    # draw means 0, 2; within variance 2
                     [[-1.0, 1.0], [-1.0, 1.0]]])  # the parameters change nothing
    t = dc.variance_shares(runs)
    # between-draw variance of the means 2, minus the noise left in a mean of 2 runs (2/2)
    assert t["var_params"].tolist() == [1.0, 0.0]
    assert t["var_noise"].tolist() == [2.0, 2.0]
    assert t["share_params"].tolist() == pytest.approx([1 / 3, 0.0])


def test_evppi_equals_evpi_when_one_parameter_explains_everything_and_zero_when_none():
    rng = np.random.default_rng(1)
    a, b = rng.uniform(0, 1, 400), rng.uniform(0, 1, 400)
    v = np.vstack([np.zeros(400), 2 * a - 1, np.sin(3 * a) - 0.5])
    table = dc.voi(v, pd.DataFrame({"b": b, "a": a}))
    assert table["parameter"].tolist() == ["a", "b"]  # largest first
    assert table.loc[0, "evppi"] == pytest.approx(dc.evpi(v), rel=1e-3)
    assert table.loc[0, "share_of_evpi"] == pytest.approx(1.0, rel=1e-3)
    assert table.loc[1, "evppi"] == 0.0


def test_evppi_of_an_irrelevant_parameter_is_small_beside_noise():
    """The regression estimate is biased upward by noise; with the constant fit allowed,
    over 20 data sets of 200 draws its mean stays under 10% of the EVPI (measured: ~3%)."""
    share = []
    for seed in range(20):
        rng = np.random.default_rng(seed)
        a, b = rng.uniform(0, 1, 200), rng.uniform(0, 1, 200)
        v = np.vstack([np.zeros(200), 2 * a - 1 + 0.1 * rng.normal(size=200)])
        t = dc.voi(v, pd.DataFrame({"a": a, "b": b})).set_index("parameter")
        share.append(t.loc["b", "evppi"] / dc.evpi(v))
        assert t.loc["a", "share_of_evpi"] > 0.9
    assert np.mean(share) < 0.10


def test_a_discrete_parameter_is_a_factor_and_the_switch_point_is_found():
    x = np.repeat([0.0, 1.0, 2.0], 4)
    v = np.vstack([np.zeros(12), x - 0.5])  # option 1 better unless x = 0
    assert dc.voi(v, pd.DataFrame({"x": x}))["evppi"].iloc[0] == pytest.approx(dc.evpi(v))
    rng = np.random.default_rng(3)
    a = rng.uniform(0, 1, 300)
    assert dc.switch_point(np.vstack([a, np.full(300, 0.3)]), a) == pytest.approx(0.3, abs=0.02)
    assert dc.switch_point(np.vstack([a + 1, a]), a) is None


# --------------------------------------------------------------------------- ensembles


def test_an_ensemble_over_an_opt_out_share_is_hand_worked():
    """No one adopts or lapses on their own; the caddy enrols all 280 non-adopters unless
    everyone opts out: a draw of opt_out 0 adds 280 households, a draw of 1 adds none."""
    sc = small(rule=NEVER)
    post = pd.DataFrame({"default.opt_out": [0.0, 1.0, 0.0, 1.0, 0.0]})
    comp = ns.compare(sc, {"caddy": sc.replace(nudges=[CADDY])}, replicates=2, **SERIAL,
                      posterior=post)
    row = comp.table.iloc[0]
    assert row["extra_adopters"] == 168 and row["covers"] == ensemble.COVERS
    assert (row["extra_adopters_lo"], row["extra_adopters_hi"]) == (0, 280)
    assert row["extra_adopters_share_params"] == 1.0  # no noise at all in this world
    d = comp.decision.set_index("option")
    # opt_out = 1 draws tie (both add nobody): the caddy is best in 3 + 2 x 1/2 of 5 draws
    assert d.loc["caddy", "p_best"] == pytest.approx(0.8)
    assert d.loc["baseline", "expected_regret"] == 168 and d.loc["caddy", "max_regret"] == 0
    assert comp.meta["ensemble"]["evpi"] == 0  # the caddy is never worse: nothing to learn
    assert comp.ensemble.query("scenario == 'caddy'")["extra_adopters"].tolist() == [
        280, 280, 0, 0, 280, 280, 0, 0, 280, 280]
    assert comp.draws.columns.tolist() == ["draw", "default.opt_out"]

    # £5 per household against £700 of caddies: worth it only when they are kept
    comp = ns.compare(sc, {"caddy": sc.replace(nudges=[CADDY])}, replicates=2, **SERIAL,
                      posterior=post, value=5.0)
    d = comp.decision.set_index("option")
    assert d.loc["caddy", "expected"] == pytest.approx((3 * 700 - 2 * 700) / 5)
    assert d.loc["baseline", "expected_regret"] == pytest.approx(3 * 700 / 5)
    assert d.index[d["best_expected"]].tolist() == ["caddy"]
    assert d.index[d["best_p10"]].tolist() == ["baseline"]  # the caddy loses £700 in 2 of 5
    evpi = comp.meta["ensemble"]["evpi"]
    assert evpi == pytest.approx(3 * 700 / 5 - 140)
    top = comp.voi.iloc[0]
    assert top["parameter"] == "default.opt_out" and top["evppi"] == pytest.approx(evpi)
    # the pilot: a trial of the caddy at opt-out 0 (median) against the switch point 0.5
    assert top["pilot_nudge"] == "default" and top["value_switch"] == pytest.approx(0.5,
                                                                                  abs=0.01)
    z = 1.959963984540054 + 0.8416212335729143
    n = math.ceil(top["enrolled_full"] * (z * top["se_full"] / abs(
        top["effect_at_median"] - top["effect_at_switch"])) ** 2)
    assert top["pilot_households"] == n and top["pilot_feasible"] == (n <= 400)


def test_every_option_sees_the_same_draws_and_seeds():
    """Common random numbers: an inert variant differs from the baseline by exactly zero in
    every draw and replicate, though the drawn parameters move the baseline itself."""
    sc = small(initial_adopters=0.3)
    inert = sc.replace(nudges=[{"kind": "information", "attitude_boost": 0.0}])
    post = pd.DataFrame({"rule.adopt_intercept": [-6.0, -4.0, -2.0]})
    comp = ns.compare(sc, {"inert": inert}, replicates=2, **SERIAL, posterior=post)
    e = comp.ensemble
    assert (e["extra_adopters"] == 0).all() and (e["extra_cost"] == 0).all()
    assert e.groupby("scenario")["seed"].agg(list).tolist() == [replicate_seeds(7, 6)] * 2
    base = comp.runs.query("scenario == 'baseline'").groupby("draw")["final_adopters"].mean()
    assert base.is_monotonic_increasing and base.iloc[0] < base.iloc[-1]
    assert comp.meta["ensemble"]["source"] == "posterior"


def test_without_draws_nothing_changes_and_bad_input_is_refused(tmp_path):
    sc = small(rule=NEVER)
    comp = ns.compare(sc, {"caddy": sc.replace(nudges=[CADDY])}, replicates=2, **SERIAL)
    assert comp.ensemble is None and "covers" not in comp.table and comp.meta == {}
    comp.save(tmp_path / "plain")
    assert sorted(p.name for p in (tmp_path / "plain").iterdir()) == [
        "comparison.csv", "curves.csv", "runs.csv", "scenario.toml", "wards.csv"]
    v = {"caddy": sc.replace(nudges=[CADDY])}
    with pytest.raises(UsageError, match="^evidence: needs draws"):
        ns.compare(sc, v, evidence="at_scale", **SERIAL)
    with pytest.raises(UsageError, match="^evidence: 'strong' is not allowed"):
        ns.compare(sc, v, draws=4, evidence="strong", **SERIAL)
    with pytest.raises(UsageError, match="^draws: 9 is not allowed with a posterior of 3 rows"):
        ns.compare(sc, v, draws=9, posterior=pd.DataFrame({"default.opt_out": [0, .5, 1]}))
    with pytest.raises(UsageError, match="^posterior: column 'default.opt_out' has values"):
        ns.compare(sc, v, posterior=pd.DataFrame({"default.opt_out": [0, np.nan, 1]}))


def test_a_posterior_is_thinned_evenly():
    post = pd.DataFrame({"rule.adopt_norm": np.arange(10.0)})
    table, source = ensemble.parameter_draws([small()], 4, None, post)
    assert table["rule.adopt_norm"].tolist() == [0.0, 3.0, 6.0, 9.0]
    assert source["rows_used"] == [0, 3, 6, 9]


def test_a_draw_sets_every_nudge_of_a_kind_and_paths_but_not_pins():
    sc = small(nudges=[{"kind": "reminder", "label": "a", "boost": 1.0},
                       {"kind": "reminder", "label": "b", "boost": 1.0},
                       {"kind": "information", "label": "leaflet", "reach": 0.5}],
               uncertainty={"pin": ["rule.adopt_cost"]})
    out = ensemble.apply_draw(sc, {"reminder.boost": 2.0, "nudges[leaflet].reach": 0.25,
                                   "rule.adopt_norm": 1.5, "pledge.boost": 9.0,
                                   "rule.adopt_cost": 7.0})
    assert [n.boost for n in out.nudges[:2]] == [2.0, 2.0]
    assert out.nudges[2].reach == 0.25 and out.rule.adopt_norm == 1.5
    assert out.rule.adopt_cost == sc.rule.adopt_cost


def test_draws_from_the_priors_are_the_priors_sample_for_every_option():
    from nudgesim.evidence.priors import priors

    sc = small(initial_adopters=0.3, steps=6)
    text = sc.replace(nudges=[{"kind": "reminder", "every": 2}])
    comp = ns.compare(sc, {"text": text}, replicates=2, draws=3, **SERIAL)
    expected = priors(ensemble.union([sc, text])).sample(3, sc.seed)
    assert comp.draws.drop(columns="draw").equals(expected)
    assert comp.meta["ensemble"]["source"] == "priors"
    assert comp.meta["ensemble"]["evidence"] == "at_scale"
    assert "reminder.boost" in comp.draws.columns


# --------------------------------------------------------------------------- plan


MENU = {
    "name": "test menu",
    "items": [
        {"label": "caddy", "nudge": CADDY | {"cost_per_contact": 1.0},
         "levels": {"targeting.wards": [["W01"], ["W01", "W02"]]},
         "level_labels": {"targeting.wards": ["one ward", "two wards"]}},
        {"label": "text", "nudge": {"kind": "reminder", "every": 1, "boost": 1.0,
                                    "cost_per_contact": 0.01}},
    ],
}


def test_plan_ensemble_ranks_by_the_ensemble_and_writes_its_files(tmp_path, capsys):
    import tomli_w

    rule = {"kind": "logistic", "adopt_intercept": -4.0}
    sc = small(rule=rule)
    post = pd.DataFrame({"default.opt_out": np.linspace(0.0, 0.9, 6),
                         "reminder.boost": np.linspace(2.0, 0.0, 6)})
    result = ns.plan(sc, pl.Menu.from_dict(MENU), budget=400.0, replicates=2, posterior=post,
                     ensemble_top=3, **SERIAL)
    t, ens = result.table, result.meta["ensemble"]
    assert len(t) == 3 and (t["covers"] == ensemble.COVERS).all()
    assert t["p_best"].sum() == pytest.approx(1.0) and "baseline" not in set(t["variant"])
    assert ens["draws"] == 6 and ens["runs_per_option"] == 12 and len(result.meta["nominal"]) > 3
    comp = result.comparison
    assert len(comp.ensemble) == 4 * 6 * 2 and set(comp.voi["parameter"]) == set(post.columns)
    out = tmp_path / "plan"
    result.save(out)
    assert {"ensemble.csv", "draws.csv", "decision.csv", "voi.csv", "ensemble.json"} <= {
        p.name for p in out.iterdir()}
    # the command line reads a draws.csv back as a posterior and reaches the same table
    sc_path, menu_path = tmp_path / "s.toml", tmp_path / "m.toml"
    sc_path.write_text(sc.to_toml())
    menu_path.write_text(tomli_w.dumps(MENU))
    argv = ["plan", str(sc_path), "--budget", "400", "--menu", str(menu_path),
            "--replicates", "2", "--executor", "serial", "--ensemble-top", "3",
            "--posterior", str(out / "draws.csv"), "--out", str(tmp_path / "cli")]
    assert main(argv) == 0
    printed = capsys.readouterr().out
    assert "best on average" in printed and "EVPI" in printed
    again = pd.read_csv(tmp_path / "cli" / "decision.csv")
    assert again.equals(pd.read_csv(out / "decision.csv"))
    assert main(argv[:-4] + ["--posterior", str(tmp_path / "none.csv")]) == 2
    assert "--posterior: file not found" in capsys.readouterr().err
    assert main(argv[:-4] + ["--evidence", "published"]) == 2
    assert "evidence: needs draws" in capsys.readouterr().err


def test_the_ensemble_is_the_same_on_every_executor():
    sc = small(rule={"kind": "logistic", "adopt_intercept": -4.0})
    v = {"text": sc.replace(nudges=[{"kind": "reminder", "every": 2, "boost": 1.0}])}
    post = pd.DataFrame({"reminder.boost": [0.5, 1.0, 1.5]})
    a = ns.compare(sc, v, replicates=2, posterior=post, **SERIAL)
    b = ns.compare(sc, v, replicates=2, posterior=post, executor="processes", workers=2)
    assert a.table.equals(b.table) and a.ensemble.equals(b.ensemble)
    assert a.decision.equals(b.decision)


def test_decision_figures_are_drawn_from_a_saved_ensemble_and_only_then(tmp_path):
    from PIL import Image

    from nudgesim.planning.figures import FILES, decision_figures

    sc = small(rule=NEVER)
    v = {"caddy": sc.replace(nudges=[CADDY]),
         "half": sc.replace(nudges=[CADDY | {"targeting": {"adopted": False,
                                                           "wards": ["W01", "W02"]}}])}
    post = pd.DataFrame({"default.opt_out": [0.0, 0.2, 0.4, 0.6, 0.8, 1.0]})
    comp = ns.compare(sc, v, replicates=2, posterior=post, value=3.0, **SERIAL)
    comp.save(tmp_path / "ens")
    drawn = decision_figures(tmp_path / "ens")
    assert [p.name for p, _ in drawn] == list(FILES)
    for path, alt in drawn:
        with Image.open(path) as im:
            assert im.size[0] > 400 and alt
    plain = ns.compare(sc, v, replicates=2, **SERIAL)
    plain.save(tmp_path / "plain")
    assert decision_figures(tmp_path / "plain") == []


def test_a_posterior_column_no_option_has_is_refused_before_any_run(monkeypatch):
    # a typo in a posterior's column would change nothing: the plan refuses it up front
    from nudgesim.planning import budget

    def no_runs(*args, **kwargs):
        raise AssertionError("a run started before the posterior was checked")

    monkeypatch.setattr(budget, "compare", no_runs)
    post = pd.DataFrame({"nudges[poster].reach": [0.2, 0.8], "rule.adopt_norm": [2.0, 3.0]})
    with pytest.raises(UsageError, match=r"posterior column 'nudges\[poster\]\.reach'"):
        ns.plan(small(), pl.Menu.from_dict(MENU), budget=400.0, replicates=2, posterior=post,
                **SERIAL)
