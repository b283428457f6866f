"""Priors (nudgesim.evidence.priors), trial prediction and leave-one-out (predict)."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

import nudgesim as ns
from nudgesim.evidence import priors as P
from nudgesim.evidence.predict import leave_one_out, predict_trial, trial_effects
from nudgesim.runs import replicate_seeds

SMALL = {
    "seed": 3, "steps": 12,
    "population": {"size": 300, "wards": 4},
    "network": {"kind": "ward_clustered", "mean_degree_in": 6.0, "mean_degree_out": 1.5},
    "initial_adopters": 0.3,
    "nudges": [
        {"kind": "reminder", "label": "text a", "start": 1, "every": 4},
        {"kind": "reminder", "label": "text b", "start": 2},
        {"kind": "information", "label": "leaflet", "start": 1},
    ],
}


def small(**extra) -> ns.Scenario:
    return ns.Scenario.from_dict(SMALL | extra)


# ------------------------------------------------------------------ the [uncertainty] table


def test_uncertainty_table_defaults_are_left_out_and_pins_round_trip():
    sc = small()
    assert sc.uncertainty.evidence == "at_scale" and sc.uncertainty.pin == []
    assert "uncertainty" not in sc.to_dict()  # run ids of existing scenarios do not change
    pinned = small(uncertainty={"evidence": "published",
                                "pin": ["rule.adopt_norm", "reminder.boost",
                                        "nudges[leaflet].attitude_boost"]})
    again = ns.Scenario.from_toml_str(pinned.to_toml())
    assert again.uncertainty == pinned.uncertainty


@pytest.mark.parametrize("pin, words", [
    ("rule.p", "is not a field of rule 'logistic'"),
    ("pledge.bost", "is not a field of 'pledge' nudges"),
    ("reminder.bost", "is not a field of 'reminder' nudges"),
    ("nope.reach", "is not a scenario table"),
    ("nudges[poster.reach", "cannot read it"),
])
def test_a_pin_must_be_a_parameter_of_the_scenario(pin, words):
    with pytest.raises(ns.ScenarioError) as err:
        small(uncertainty={"pin": [pin]})
    msg = str(err.value)
    assert "\n" not in msg and msg.startswith("uncertainty.pin[0]:") and words in msg


# ------------------------------------------------------------------ apply_draw


def test_apply_draw_sets_rule_fields_and_every_nudge_of_a_kind():
    sc = small()
    out = P.apply_draw(sc, {"rule.adopt_norm": 2.5, "reminder.boost": 1.25,
                            "pledge.boost": 9.0, "nudges[leaflet].reach": 0.5})
    assert out.rule.adopt_norm == 2.5
    assert [n.boost for n in out.nudges if n.kind == "reminder"] == [1.25, 1.25]
    assert out.nudges[2].reach == 0.5
    assert P.apply_draw(sc, {}).to_dict() == sc.to_dict()  # a kind it lacks: ignored


def test_apply_draw_keeps_pinned_names_and_paths():
    sc = small(uncertainty={"pin": ["rule.adopt_norm", "nudges[text b].boost"]})
    out = P.apply_draw(sc, {"rule.adopt_norm": 9.0, "reminder.boost": 2.0})
    assert out.rule.adopt_norm == sc.rule.adopt_norm
    assert [n.boost for n in out.nudges[:2]] == [2.0, sc.nudges[1].boost]
    assert "rule.adopt_norm" not in P.priors(sc).names


def test_pins_are_checked_for_form_so_the_twin_and_menu_options_keep_them(tmp_path):
    # a pin on a kind or nudge the scenario lacks is well formed: the no-campaign twin and
    # a plan's options (which change the nudges) keep the scenario's pins
    pins = ["reminder.boost", "nudges[leaflet].attitude_boost", "pledge.boost"]
    sc = small(uncertainty={"pin": pins})
    res = ns.simulate(sc, counterfactual=True)
    assert res.counterfactual is not None and res.counterfactual.scenario.nudges == []
    assert P.apply_draw(sc.replace(nudges=[]), {"reminder.boost": 2.0}).nudges == []


def test_a_draw_of_a_path_the_scenario_lacks_changes_nothing():
    # a posterior's nudges[leaflet].reach on an option without the leaflet
    sc = small().replace(nudges=[SMALL["nudges"][0]])
    assert P.apply_draw(sc, {"nudges[leaflet].reach": 0.2}).to_dict() == sc.to_dict()


@pytest.mark.parametrize("draw", [{"reminder.bost": 1.0}, {"rule.q": 0.1},
                                  {"nope.reach": 0.1}])
def test_apply_draw_refuses_unknown_fields(draw):
    with pytest.raises(ns.ScenarioError):
        P.apply_draw(small(), draw)


# ------------------------------------------------------------------ priors and sampling


def test_priors_cover_the_rule_and_the_kinds_present():
    pr = P.priors(small())
    logistic = [f for f in ns.scenario.LogisticRule.model_fields if f != "kind"]
    assert [n for n in pr.names if n.startswith("rule.")] == [f"rule.{f}" for f in logistic]
    assert {"reminder.boost", "information.attitude_boost"} <= set(pr.names)
    assert not any(n.startswith("pledge.") for n in pr.names)
    assert "pledge.boost" in P.priors(small(), kinds=["pledge"]).names
    bass = P.priors(small(rule={"kind": "bass"}))
    assert [n for n in bass.names if n.startswith("rule.")] == ["rule.p", "rule.q", "rule.lapse"]
    table = pr.table()
    assert list(table.columns[:6]) == ["name", "distribution", "p05", "p50", "p95", "basis"]
    assert (table["p05"] <= table["p50"]).all() and (table["p50"] <= table["p95"]).all()


def test_rule_priors_are_centred_on_todays_defaults():
    pr = P.priors(small())
    rule = small().rule
    for name in pr.names:
        if name.startswith("rule."):
            p = pr[name]
            assert p.loc == getattr(rule, name[5:]) and p.basis == "assumption", name


def test_sample_is_deterministic_with_one_column_per_name():
    pr = P.priors(small())
    a, b = pr.sample(16, seed=5), pr.sample(16, seed=5)
    assert a.shape == (16, len(pr.names)) and list(a.columns) == pr.names
    pd.testing.assert_frame_equal(a, b)
    assert not a.equals(pr.sample(16, seed=6))
    # a parameter's draws do not depend on which other parameters there are
    other = P.priors(small(), kinds=["pledge", "default"]).sample(16, seed=5)
    np.testing.assert_array_equal(other["reminder.boost"], a["reminder.boost"])


def test_evidence_level_is_validated():
    with pytest.raises(ns.ScenarioError, match="evidence"):
        P.priors(small(), evidence="optimistic")  # type: ignore[arg-type]


MESSAGES = ["norm_feedback", "reminder", "pledge", "information", "canvassing",
            "ambassadors", "community_partnership"]


@pytest.mark.parametrize("kind", MESSAGES)
def test_at_scale_is_narrower_and_closer_to_no_effect_for_messages(kind):
    lib = P.library()
    kf = lib.kinds[kind]
    pub, at = (P.fitted_priors(lib, kind, lvl) for lvl in ("published", "at_scale"))
    for name, null in zip(kf.names, kf.nulls):
        (p05, p50, p95), (a05, a50, a95) = pub[name].quantiles(), at[name].quantiles()
        assert abs(a50 - null) < abs(p50 - null)
        assert a95 - a05 < p95 - p05
        # wide enough to include no effect: the null lies within 1.645 sd of the centre
        assert abs(at[name].loc - null) <= at[name].scale * P.Z90 + 1e-12


def test_defaults_keep_their_effect_at_scale():
    lib = P.library()
    pub, at = (P.fitted_priors(lib, "default", lvl) for lvl in ("published", "at_scale"))
    assert set(pub) == {"default.opt_out", "default.lapse_reduction"} and pub == at


def test_the_default_kind_is_fitted_on_two_parameters_jointly():
    """Ebeling & Lotz (a choice at sign-up) is emulated on opt_out only, Liebe et al. on
    both; the fit gives Liebe's four-year share status-quo stickiness (lapse_reduction well
    above today's 0) and a median opt_out between the two records' own values."""
    lib = P.library()
    kf = lib.kinds["default"]
    assert kf.names == ("default.opt_out", "default.lapse_reduction")
    assert kf.informed("ebeling_lotz2015") == ("default.opt_out",)
    assert kf.informed("liebe2021") == kf.names
    emus = {e.record: e for e in lib.emulations if e.record in kf.records}
    assert emus["liebe2021"].shape == tuple(len(d) for d in kf.designs)
    pri = P.fitted_priors(lib, "default", "published")
    assert pri["default.lapse_reduction"].quantiles()[0] > 0.5
    # Ebeling & Lotz alone: opt_out 0.32; Liebe et al. at 77 pp needs opt_out <= 0.21
    assert 0.15 < pri["default.opt_out"].quantiles()[1] < 0.32
    assert "estimated from the records" in pri["default.opt_out"].reason
    assert "one record informs it" in pri["default.lapse_reduction"].reason


def test_a_sign_up_default_does_not_depend_on_stickiness():
    """Why Ebeling & Lotz informs opt_out only: its one-decision trial is read before any
    enrolled household could lapse (live emulation, same seed)."""
    from nudgesim.evidence import replicate

    a, b = (replicate.emulate("ebeling_lotz2015", {"default.opt_out": 0.3,
                                                   "default.lapse_reduction": x},
                              replicates=1, seed=7) for x in (0.0, 8.0))
    assert a.simulated == b.simulated


@pytest.mark.parametrize("kind", ["reminder", "norm_feedback", "default"])
def test_published_priors_cover_the_spread_of_their_records(kind):
    """Between-setting heterogeneity estimated from the records: at the published level
    each record's effect lies between the emulated effects at the 5% and 95% points of the
    prior (the other parameters at their medians; effects decrease in opt_out)."""
    lib = P.library()
    kf = lib.kinds[kind]
    pri = P.fitted_priors(lib, kind, "published")
    for e in lib.emulations:
        if e.record not in kf.records:
            continue
        main = e.names[0]
        rest = [pri[n].quantiles()[1] for n in e.names[1:]]
        ends = [float(e.curve()(pri[main].quantiles()[i], *rest)) for i in (0, 2)]
        assert min(ends) <= e.y <= max(ends), (e.record, ends)


def _field_ok(name: str, value: float) -> bool:
    """The value passes the field's own validation in a scenario that has it."""
    head, _, fld = name.partition(".")
    if head == "rule":
        rk, _, fld = fld.partition(":")
        data = {"rule": {"kind": rk, fld: value}}
    else:
        nudge = {"kind": head, "start": 1} | ({"wards": ["W01"]}
                                              if head == "community_partnership" else {})
        data = {"nudges": [nudge | {fld: value}]}
    try:
        ns.Scenario.from_dict({"population": {"size": 10}} | data)
    except ns.ScenarioError:
        return False
    return True


ALL = sorted(P.library().assumptions.items()) + sorted(
    ((f"{lvl}:{n}", p) for (lvl, n), p in P.library().fitted.items()))


@settings(max_examples=60, deadline=None)
@given(st.sampled_from(ALL), st.floats(0.0, 1.0))
def test_every_prior_stays_in_its_fields_allowed_range(item, u):
    key, prior = item
    name = key.split(":", 1)[1] if key.startswith(P.LEVELS) else key
    value = float(prior.ppf(u))
    assert prior.low <= value <= prior.high
    assert _field_ok(name, value), (name, value)
    assert _field_ok(name, prior.low) and _field_ok(name, prior.high)


# ------------------------------------------------------------------ the fit


def _fake(kind="reminder", slope=10.0, effects=(5.0,), se=0.5, at_scale=()):
    """A linear emulator: effect = slope × θ (pp), records with the given effects."""
    lib = P.library()
    design = tuple(np.linspace(0, 1, 9))
    kf = P.KindFit(kind, ("boost",), (0.0,), (design,), True,
                   tuple(f"r{i}" for i in range(len(effects))), tuple(at_scale))
    emus = [P.Emulation(f"r{i}", kf.names, (design,), tuple(slope * np.array(design)),
                        (0.1,) * 9, 8, y, se, "test", f"r{i}" in at_scale)
            for i, y in enumerate(effects)]
    hyper = {kf.name: P.Prior(kf.name, 0.5, 0.5, 0.0, 1.0)}
    return lib, kf, emus, hyper


def test_fit_reproduces_its_record_through_the_emulator():
    lib, kf, emus, hyper = _fake(effects=(5.0, 5.0, 5.0))
    res = P.fit(kf, hyper, emus, floor=0.25)
    pub = res.priors[kf.name]
    assert abs(10 * pub.quantiles()[1] - 5.0) < 0.5  # the emulated effect at the median
    at = P.fit(kf, hyper, emus, floor=0.25, ratio=lib.ratio).priors[kf.name]
    assert abs(10 * at.loc - 5.0 * lib.ratio) < 0.3
    assert abs(at.loc) <= at.scale * P.Z90 + 1e-12  # includes no effect
    # records that agree: heterogeneity estimated near 0, the floor sets the spread
    tau = res.tau[kf.name]
    assert tau is not None and tau < 0.05
    assert res.tau_range[kf.name][0] == 0.0


def test_heterogeneity_is_estimated_from_records_that_disagree():
    """Two precise records at θ = 0.4 and 0.6: the between-setting sd is estimated from
    them (about √2 × their half-distance, 0.14, since the mean is estimated too: the n − 1
    of REML), and the prior for a new setting spans both; one record alone leaves the
    spread to the floor."""
    lib, kf, emus, hyper = _fake(effects=(4.0, 6.0), se=0.05)
    res = P.fit(kf, hyper, emus, floor=0.1)
    tau = res.tau[kf.name]
    assert tau is not None and 0.11 < tau < 0.18
    lo_t, hi_t = res.tau_range[kf.name]
    assert lo_t < tau < hi_t
    lo, mid, hi = res.priors[kf.name].quantiles()
    assert lo < 0.4 and hi > 0.6 and abs(mid - 0.5) < 0.02
    one = P.fit(kf, hyper, emus[:1], floor=0.1)
    assert one.tau[kf.name] is None and one.tau_range[kf.name] is None
    lo1, mid1, hi1 = one.priors[kf.name].quantiles()
    # floor: sd 0.1 x 0.4 for the record and for the new setting: 2 x 1.645 x √2 x 0.04
    assert abs(mid1 - 0.4) < 0.02 and 0.16 < hi1 - lo1 < 0.21


def test_a_two_parameter_fit_with_a_record_on_each_axis():
    """a is informed by both records, b only by the second: effect_0 = 10a and
    effect_1 = 10a + 5b; the records (3 and 6 pp) pin a = 0.3 and b = 0.6."""
    da, db = tuple(np.linspace(0, 1, 9)), tuple(np.linspace(0, 2, 9))
    kf = P.KindFit("k", ("a", "b"), (0.0, 0.0), (da, db), False, ("r0", "r1"), (),
                   {"r0": ("a",)})
    assert kf.informed("r0") == ("k.a",) and kf.informed("r1") == ("k.a", "k.b")
    grid = 10 * np.array(da)[:, None] + 5 * np.array(db)[None, :]
    emus = [P.Emulation("r0", ("k.a",), (da,), tuple(10 * np.array(da)), (0.1,) * 9, 8,
                        3.0, 0.05, "test"),
            P.Emulation("r1", kf.names, (da, db), tuple(grid.ravel()), (0.1,) * 81, 8,
                        6.0, 0.05, "test")]
    assert emus[1].curve()(da[3], db[5]) == pytest.approx(grid[3, 5])  # C order
    hyper = {"k.a": P.Prior("k.a", 0.5, 1.0, 0.0, 1.0), "k.b": P.Prior("k.b", 1.0, 2.0, 0, 2)}
    res = P.fit(kf, hyper, emus, floor=0.05)
    assert res.tau["k.a"] is not None and res.tau["k.b"] is None
    assert res.priors["k.a"].quantiles()[1] == pytest.approx(0.3, abs=0.05)
    assert res.priors["k.b"].quantiles()[1] == pytest.approx(0.6, abs=0.15)


def test_refit_with_a_fake_emulator_and_records():
    lib = P.library()
    calls = []

    def emulate(record, draw, replicates, seed):
        calls.append(record)
        theta = next(iter(draw.values()))  # the kind's main parameter
        return {"simulated": 20.0 * theta, "per_replicate": 20.0 * theta + np.array([-.1, .1])}

    records = pd.DataFrame([{"id": r, "effect": 6.0, "unit": "pp", "n": 4000,
                             "baseline": 0.3} for k in lib.kinds.values() for r in k.records])
    out = P.refit(lib, records, emulate, replicates=2)
    expected = sum(int(np.prod([len(k.designs[k.axis(n)]) for n in k.informed(r)]))
                   for k in lib.kinds.values() for r in k.records)
    assert len(calls) == expected
    for kind, kf in lib.kinds.items():
        if not kf.records:
            continue
        assert {n for (_, n) in out.fitted if n.startswith(kind + ".")} == set(kf.names)
        lo, med, hi = out.fitted[("published", kf.name)].quantiles()
        assert 20.0 * lo <= 6.0 <= 20.0 * hi, kind  # each fitted prior reproduces its records


def test_shipped_priors_match_a_refit_from_the_shipped_emulator():
    lib = P.library()
    again = P.refit(lib, pd.DataFrame(), emulate=None, emulations=lib.emulations)
    assert set(again.fitted) == set(lib.fitted)
    for key, p in lib.fitted.items():
        q = again.fitted[key]
        # rtol 1e-6, not bit for bit: the fit ends at least_squares' own tolerance (xtol
        # 1e-8), and numpy's exp and log differ in their last bits between CPUs (AVX-512
        # against AVX2), which moved a refit by 1.3e-9 on an AMD EPYC (measured)
        assert np.allclose([p.loc, p.scale, p.low, p.high], [q.loc, q.scale, q.low, q.high],
                           rtol=1e-6, atol=1e-12), key


def test_shipped_emulator_matches_a_live_emulation():
    """Two design points of a quick record, emulated again with the refit's settings."""
    from nudgesim.evidence import replicate

    lib = P.library()
    seed = int(lib.settings["emulator_seed"])
    e = next(x for x in lib.emulations if x.record == "ebeling_lotz2015")
    for i in (2, 6):
        out = replicate.emulate(e.record, draw={e.names[0]: e.theta[0][i]},
                                replicates=e.replicates, seed=seed)
        assert out.simulated == pytest.approx(e.effect[i], abs=1e-9)
    # one point of the two-parameter emulator (its layout: C order, opt_out first)
    e = next(x for x in lib.emulations if x.record == "liebe2021")
    i, j = 2, 3
    out = replicate.emulate(e.record, draw={e.names[0]: e.theta[0][i],
                                            e.names[1]: e.theta[1][j]},
                            replicates=e.replicates, seed=seed)
    assert out.simulated == pytest.approx(e.grid(e.effect)[i, j], abs=1e-9)


# ------------------------------------------------------------------ prediction and LOO


def test_predict_trial_interval_contains_the_emulated_truth_of_a_known_draw():
    sc = small()
    nudge = {"kind": "reminder", "label": "new text", "start": 1, "every": 2, "boost": 1.0}
    pred = predict_trial(sc, nudge, weeks=8, draws=12, replicates=2, seed=4,
                         evidence="published")
    assert pred.lo <= pred.median <= pred.hi and pred.weeks == 8
    assert len(pred.runs) == 24 and "reminder.boost" in pred.runs
    assert "parameter" in pred.covers and "trial noise" in pred.covers
    # the truth of one draw (the draws' median parameters), measured with fresh seeds
    pr = P.priors(sc.replace(steps=8), "published", kinds=["reminder"])
    known = pd.DataFrame([{n: pr[n].quantiles()[1] for n in pr.names}])
    from nudgesim.planning.trials import with_nudge

    _, with_, k, _ = with_nudge(sc.replace(steps=8), nudge)
    truth = trial_effects(with_, k, known, replicate_seeds(99, 4)).mean()
    assert pred.lo <= truth <= pred.hi
    again = predict_trial(sc, nudge, weeks=8, draws=12, replicates=2, seed=4,
                          evidence="published")
    pd.testing.assert_frame_equal(pred.runs, again.runs)


def test_predict_trial_refuses_bad_designs():
    with pytest.raises(ns.ScenarioError, match="unit"):
        predict_trial(small(), "text a", unit="street")  # type: ignore[arg-type]
    with pytest.raises(ns.ScenarioError, match="weeks"):
        predict_trial(small(), "text a", weeks=0)


def test_exclude_refits_without_the_record():
    lib = P.library()
    full = P.fitted_prior(lib, "reminder", "published")
    without = P.fitted_prior(lib, "reminder", "published",
                             exclude=["dellavigna_linos2022_academic"])
    assert without.basis == "dellavigna_linos2022_at_scale" and without != full
    sc = small()
    assert P.priors(sc, "published", exclude=["dellavigna_linos2022_academic"])[
        "reminder.boost"].loc == without.loc


def test_leave_one_out_returns_a_rate():
    loo = leave_one_out("published", draws=400)
    fitted = sum(len(k.records) for k in P.library().kinds.values())
    assert len(loo.table) == fitted and 0.0 <= loo.rate <= 1.0
    assert (loo.table["lo"] <= loo.table["hi"]).all()
    assert loo.rate == loo.table["inside"].mean()


def test_leave_one_out_with_a_live_emulator():
    seen = []

    def emulate(record, draw, replicates, seed):
        seen.append(record)
        return {"simulated": float(sum(draw.values()))}

    loo = leave_one_out("at_scale", draws=5, emulate=emulate)
    assert len(seen) == 5 * len(loo.table) and 0.0 <= loo.rate <= 1.0
