"""The evidence library (data validity), its emulated trials and the published patterns."""

from __future__ import annotations

import math

import numpy as np
import pandas as pd
import pytest

import nudgesim.evidence as ev
from nudgesim.cli import main as cli_main
from nudgesim.evidence import replicate as rp
from nudgesim.evidence.library import COMPARABLE_UNITS, UNITS, EvidenceError, load


@pytest.fixture(scope="module")
def table() -> pd.DataFrame:
    return ev.trials()


def test_columns(table):
    for c in ["id", "nudge", "behaviour", "effect", "effect_lo", "effect_hi", "unit", "n",
              "weeks", "source"]:
        assert c in table.columns
    assert table["id"].is_unique and len(table) >= 25


def test_every_record_is_sourced_and_consistent(table):
    undated = table.loc[~table["source"].str.contains(r"\b(?:19|20)\d\d\b"), "id"]
    assert sorted(undated) == ["chong_peru", "recyclebank_windsor"]  # no year in our reference
    for _, r in table.iterrows():
        assert r["unit"] in UNITS and len(r["mapping"]) >= 20 and r["read_in"]
        if not math.isnan(r["effect_lo"]):
            assert r["effect_lo"] <= r["effect"] <= r["effect_hi"] and r["interval"]
        if r["comparable"]:
            assert r["unit"] in COMPARABLE_UNITS and r["nudge"] != "not comparable"


def test_comparable_records_are_exactly_the_emulated(table):
    assert sorted(table.loc[table["comparable"], "id"]) == sorted(rp.representable())


@pytest.mark.parametrize("bad, message", [
    ({"effect": 5.0, "effect_lo": 6.0, "effect_hi": 7.0, "interval": "95% CI"}, "outside"),
    ({"effect": 5.0, "unit": "furlongs"}, "unit: 'furlongs' is not allowed"),
    ({"effect": 5.0, "comparable": True, "nudge": "not comparable"}, "comparable"),
    ({"effect": 5.0, "effect_lo": 4.0}, "together"),
])
def test_bad_records_are_explained(tmp_path, bad, message):
    import tomli_w

    rec = {"id": "x2020", "nudge": "reminder", "behaviour": "b", "setting": "s",
           "persistence": "p", "source": "Someone 2020, Journal", "read_in": "paper",
           "verified": True, "comparable": False, "mapping": "a mapping of twenty chars",
           "unit": "pp"} | bad
    path = tmp_path / "t.toml"
    path.write_text(tomli_w.dumps({"trials": [rec]}))
    with pytest.raises(EvidenceError, match=message) as err:
        load(path)
    assert str(err.value).startswith(str(path))


def test_duplicate_ids_are_refused(tmp_path):
    import tomli_w

    rec = ev.library.library().trials[0].model_dump(exclude_none=True)
    path = tmp_path / "t.toml"
    path.write_text(tomli_w.dumps({"trials": [rec, rec]}))
    with pytest.raises(EvidenceError, match="appears twice"):
        load(path)


def test_unknown_record_lists_the_allowed():
    with pytest.raises(EvidenceError, match="allowed"):
        rp.emulate("nobody1999")
    with pytest.raises(EvidenceError, match="no trial emulation"):
        rp.emulate("nisa2019_overall")


def test_emulate_is_deterministic_and_draws_apply():
    a = rp.emulate("dellavigna_linos2022_at_scale", replicates=3, seed=5)
    b = rp.emulate("dellavigna_linos2022_at_scale", replicates=3, seed=5)
    assert np.array_equal(a.per_replicate, b.per_replicate) and a.simulated == b.simulated
    big = rp.emulate("dellavigna_linos2022_at_scale", {"reminder.boost": 3.0},
                     replicates=3, seed=5)
    assert big.scenario.nudges[0].boost == 3.0
    assert big.simulated > a.simulated + 1.0  # a stronger prompt moves more people


@pytest.mark.parametrize("record", rp.representable())
def test_replication_recreates_its_baseline(record):
    rep = rp.emulate(record, replicates=2, seed=0)
    assert abs(rep.control.mean() - rep.emulation.baseline) * 100 <= rp.BASELINE_TOLERANCE_PP


def test_default_emulation_matches_ebeling_lotz_closely():
    # opt_out 0.3 of 93% non-adopters: 0.7 x 0.93 = 65.1 pp expected; published 63 pp.
    # 42,000 residents: sd of one trial's difference <= 0.5 / sqrt(21,000) x sqrt(2) = 0.5 pp
    rep = rp.emulate("ebeling_lotz2015", replicates=3, seed=0)
    assert rep.n == 42_000 and abs(rep.simulated - 65.1) < 1.0


def test_trial_sizes_are_the_published_ones():
    """One-decision trials have the library's n (capped); the others TRIAL_SIZE or more."""
    lib = ev.library.library()
    for rid, em in rp.EMULATIONS.items():
        n = lib.get(rid).n
        if em.decision:
            assert em.size == (min(n, rp.DECISION_CAP) if n else rp.TRIAL_SIZE), rid
            assert em.steps == em.read == 1
        else:
            assert em.size >= rp.TRIAL_SIZE


@pytest.mark.parametrize("record, draw, shift", [
    # the norm card: adopt_norm x weight x shown rate (perceived norm 0 before the card)
    ("goldstein2008_exp1", {"norm_feedback.weight": 0.2, "rule.adopt_norm": 2.5},
     2.5 * 0.2 * 0.75),
    # the published shifts of the nudge-unit records (trials.toml's mapping)
    ("dellavigna_linos2022_at_scale", {"reminder.boost": rp.logit(0.189) - rp.logit(0.175)},
     None),
    ("dellavigna_linos2022_academic", {"reminder.boost": rp.logit(0.347) - rp.logit(0.26)},
     None),
])
def test_a_one_decision_trial_is_a_log_odds_shift_at_the_decision(record, draw, shift):
    """The control arm decides with hazard b and the treated with sigmoid(logit(b) + x):
    the emulated effect is that difference within 4 sd of a trial of the emulated size."""
    rep = rp.emulate(record, draw, replicates=3, seed=1)
    b = rep.emulation.baseline
    x = shift if shift is not None else next(iter(draw.values()))
    expected = 100 * (1 / (1 + math.exp(-(rp.logit(b) + x))) - b)
    sd = 100 * math.sqrt(2 * 2 * b * (1 - b) / rep.n / 3)  # 3 trials, arms of n / 2
    assert abs(rep.simulated - expected) < 4 * sd
    assert abs(rep.control.mean() - b) < 4 * sd / 2
    if shift is None:  # the mapping reproduces the published effect
        published = ev.library.library().get(record).effect
        assert abs(rep.simulated - published) < 4 * sd + 0.1


def test_a_pledge_decision_is_uptake_times_the_pledgers_shift():
    draw = {"pledge.uptake": 0.5, "pledge.boost": 1.5}
    rep = rp.emulate("baca_motes2013", draw, replicates=4, seed=2)
    b = 0.35
    treated = 0.5 * b + 0.5 / (1 + math.exp(-(rp.logit(b) + 1.5)))
    expected = 100 * (treated - b) / b  # relative %
    sd = 100 * math.sqrt(2 * 2 * b * (1 - b) / rep.n / 4) / b
    assert abs(rep.simulated - expected) < 4 * sd


def test_a_sticky_default_keeps_liebes_households():
    """Status quo (default.lapse_reduction) is what the 4-year share needs: without it
    enrolled households lapse like any adopter; 3 log-odds with opt_out 0.15 gives ~77 pp."""
    plain = rp.emulate("liebe2021", replicates=2, seed=0)
    sticky = rp.emulate("liebe2021", {"default.lapse_reduction": 3.0,
                                      "default.opt_out": 0.15}, replicates=2, seed=0)
    assert sticky.scenario.nudges[0].lapse_reduction == 3.0
    assert plain.simulated < 35 and abs(sticky.simulated - 77) < 5


def test_energy_reports_as_norm_letters_have_no_effect_to_retain():
    """Why Allcott & Rogers 2014 is emulated with reminders: injunctive norm letters that
    show the true ward rate have no positive effect at the end (trials.toml's mapping)."""
    em = rp.EMULATIONS["allcott_rogers2014_persistence"]
    letter = {"kind": "norm_feedback", "label": "letter", "start": 1, "every": 4, "end": 105,
              "scope": "ward", "injunctive": True}
    sc = rp.trial_scenario(rp.replace(em, nudge=letter))
    curves = rp._paired_curves(sc, rp.replicate_seeds(0, 3), "serial")
    assert curves[:, em.end].mean() < 0.3  # pp; reminders give ~5 pp (next test)
    rep = rp.emulate("allcott_rogers2014_persistence", replicates=2, seed=0)
    assert 0.8 < rep.simulated < 1.05


@pytest.fixture(scope="module")
def patterns() -> pd.DataFrame:
    return rp.patterns(replicates=6, seed=0).set_index("pattern")


def test_boomerang_pattern(patterns):
    """Descriptive card: adopters above the shown norm participate less (interval below
    0); the injunctive card removes at least half of it; non-adopters below gain."""
    ok = patterns["reproduced"]
    assert ok["boomerang: descriptive card, adopters above the shown norm"]
    assert ok["boomerang removed: injunctive card, adopters above the shown norm"]
    assert ok["descriptive card, non-adopters below the shown norm"]
    # what the model cannot do: approval does not protect non-adopters' norms
    assert not ok["boomerang on non-adopters above the norm, injunctive card"]


def test_decay_pattern_as_the_model_gives_it(patterns):
    """nudgesim's effect is sustained at the end, but does NOT decay after it nor sag
    between contacts: the docs report this as a pattern the model cannot produce."""
    row = patterns.loc["effect sustained at the end of a campaign"]
    assert row["reproduced"] and row["simulated_lo"] > 0.5
    decay = patterns.loc["decay after the end"]
    assert not decay["reproduced"] and decay["simulated"] > 0.9
    assert not patterns.loc["backsliding between contacts", "reproduced"]


def test_decay_across_prior_draws():
    """Each draw's retention is its effect a year after the end over the effect at the end
    (NaN below MIN_RETAINED_PP); the region table ranks parameters by |Spearman|; the
    pattern rows give the shares of draws."""
    tab = rp.decay_draws(4, "published", replicates=1, seed=3, size=1000)
    assert len(tab) == 4 and "rule.lapse_habit" in tab.columns
    done = tab[tab["retention"].notna()]
    assert len(done) >= 2 and (done["at_end_pp"] >= rp.MIN_RETAINED_PP).all()
    assert np.allclose(done["retention"], done["after_52_pp"] / done["at_end_pp"])
    assert (done["decays"] == (done["retention"] < rp.DECAYS_BELOW)).all()
    region = rp.decay_region(tab)
    rho = region["spearman_with_retention"].abs().dropna().to_numpy()
    assert (np.diff(rho) <= 0).all()
    same = rp.decay_draws(4, "published", replicates=1, seed=3, size=1000)
    assert same.equals(tab)


def test_wilson_interval():
    p, lo, hi = rp._wilson(19, 32)  # a hand-checked case: 0.594 (0.423 to 0.745)
    assert (round(p, 3), round(lo, 3), round(hi, 3)) == (0.594, 0.423, 0.745)
    assert rp._wilson(0, 10)[1] == pytest.approx(0.0, abs=1e-12)


def test_cli_writes_the_files(tmp_path, capsys):
    out = tmp_path / "ev"
    assert cli_main(["evidence", "--out", str(out), "--replicates", "2", "--draws", "2",
                     "--pattern-draws", "2", "--executor", "serial"]) == 0
    printed = capsys.readouterr().out
    assert "parameters (priors, level published) and simulation noise" in printed
    assert (out / "decay_draws.csv").exists() and (out / "decay_region.csv").exists()
    assert len(pd.read_csv(out / "patterns.csv")) == 9
    table = pd.read_csv(out / "replication.csv")
    for c in ["id", "published", "published_lo", "published_hi", "simulated",
              "simulated_lo", "simulated_hi", "within", "reason"]:
        assert c in table.columns
    assert len(table) == len(ev.trials())
    assert (out / "replication.png").stat().st_size > 1000 and (out / "patterns.csv").exists()
    assert (table.loc[table["n_emulated"].isna(), "reason"].str.len() > 10).all()
    assert (table.loc[table["n_emulated"].notna(), "replicates"] >= 4).all()  # 2 draws x 2


@pytest.mark.parametrize("argv", [["--replicates", "1"], ["--evidence", "wishful"],
                                  ["--draws", "-1"], ["--pattern-draws", "-2"]])
def test_cli_bad_input(tmp_path, capsys, argv):
    assert cli_main(["evidence", "--out", str(tmp_path / "x"), *argv]) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith("nudgesim: error:") and "\n" not in err
