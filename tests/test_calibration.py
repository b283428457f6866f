"""Calibration's posterior: exact checks of the likelihood and the per-ward measure, input
errors, determinism, and a coverage test of the 90% credible interval over synthetic data
sets made from known truths."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
from scipy import stats

import nudgesim as ns
from nudgesim import planning as pl
from nudgesim.parallel import RunOptions
from nudgesim.planning import calibration as cal_mod
from nudgesim.runs import replicate_seed, values
from nudgesim.scenario import ScenarioError

SERIAL = {"executor": "serial"}
STEPS = np.arange(0, 17, 4)


def small(**fields) -> ns.Scenario:
    """400 households in 4 named wards over 16 weeks: quick, and noisy enough to matter."""
    base = {
        "name": "small", "seed": 7, "steps": 16,
        "population": {"size": 400, "wards": [{"name": n} for n in ("A", "B", "C", "D")]},
        "network": {"kind": "ward_clustered", "mean_degree_in": 6.0, "mean_degree_out": 1.0},
        "initial_adopters": 0.3, "rule": {"kind": "logistic", "adopt_intercept": -4.0},
    }
    return ns.Scenario.from_dict(base | fields)


# --------------------------------------------------------------------------- exact


def test_log_likelihood_is_the_block_gaussian_with_binomial_noise():
    # two wards of two observations: block-diagonal covariance, worked out with scipy
    obs = np.array([0.30, 0.42, 0.25, 0.31])
    mu = np.array([[0.32, 0.40, 0.27, 0.35]])
    em_var = np.array([[1e-4, 4e-4, 1e-4, 9e-4]])
    sd = np.array([[0.02, 0.03, 0.01, 0.04]])
    c = np.array([[1.0, 0.6], [0.6, 1.0]])
    n = np.array([100.0, 100.0, 50.0, 50.0])
    blocks = [np.array([0, 1]), np.array([2, 3])]
    got = cal_mod.log_likelihood(obs, mu, em_var, sd, [c, c], blocks, n)
    want = 0.0
    for b in blocks:
        s, e = sd[0, b], np.sqrt(em_var[0, b])
        cov = (np.outer(s, s) + np.outer(e, e)) * c + np.diag(mu[0, b] * (1 - mu[0, b]) / n[b])
        want += stats.multivariate_normal(mu[0, b], cov).logpdf(obs[b])
    assert got[0] == pytest.approx(want, rel=1e-12)
    # one block of four with no cross-ward correlation gives the same number
    big = np.eye(4)
    big[:2, :2] = big[2:, 2:] = c
    assert cal_mod.log_likelihood(obs, mu, em_var, sd, [big], [np.arange(4)], n)[0] == (
        pytest.approx(want, rel=1e-12))


def test_ward_rows_read_their_own_ward(tmp_path):
    sc = small()
    res = ns.simulate(sc)
    bw = res.by_ward
    csv = tmp_path / "wards.csv"
    rows = [(w, s) for s in (0, 8, 16) for w in ("D", "A")]
    csv.write_text("# synthetic\nward,step,adoption_rate,n\n" + "".join(
        f"{w},{s},0.5,40\n" for w, s in rows))
    series = pl.ObservedSeries.from_csv(csv, sc)
    assert [list(b) for b in series.blocks()] == [[0, 2, 4], [1, 3, 5]]
    got = cal_mod.observed_rates(sc, {"steps": series.steps.tolist(),
                                      "wards": list(series.wards)})
    want = [float(bw[(bw["ward"] == w) & (bw["step"] == s)]["adoption_rate"].iloc[0])
            for w, s in rows]
    assert got.tolist() == want
    # without wards the borough's rate
    assert cal_mod.observed_rates(sc, {"steps": [0, 16]}).tolist() == (
        res.timeseries["adoption_rate"].to_numpy()[[0, 16]].tolist())


def test_bad_ward_names_and_priors_are_one_line_errors(tmp_path):
    sc = small()
    csv = tmp_path / "wards.csv"
    csv.write_text("ward,step,adoption_rate\nA,0,0.3\nNowhere,4,0.3\n")
    with pytest.raises(ScenarioError, match=r"ward 'Nowhere'.*allowed: \['A', 'B', 'C', 'D'\]"):
        pl.ObservedSeries.from_csv(csv, sc)
    series = pl.ObservedSeries.from_csv(csv)  # no scenario: checked by calibrate
    with pytest.raises(ScenarioError, match="ward 'Nowhere'") as err:
        ns.calibrate(sc, series, {"rule.adopt_intercept": (-6.0, -2.0)}, **SERIAL)
    assert "\n" not in str(err.value)
    dup = tmp_path / "dup.csv"
    dup.write_text("ward,step,adoption_rate\nA,0,0.3\nA,0,0.4\n")
    with pytest.raises(ScenarioError, match="appears twice"):
        pl.ObservedSeries.from_csv(dup)
    ok = pl.ObservedSeries(STEPS, np.full(5, 0.4))
    with pytest.raises(ScenarioError, match=r"priors: 'rule.adopt_norm' is not a calibrated"):
        ns.calibrate(sc, ok, {"rule.adopt_intercept": (-6.0, -2.0)},
                     priors={"rule.adopt_norm": stats.norm(3, 1)}, **SERIAL)
    with pytest.raises(ScenarioError, match="frozen distribution"):
        ns.calibrate(sc, ok, {"rule.adopt_intercept": (-6.0, -2.0)},
                     priors={"rule.adopt_intercept": 3.0}, **SERIAL)


def test_same_seed_same_posterior_and_it_is_saved(tmp_path):
    sc = small()
    truth = ns.simulate(sc).timeseries["adoption_rate"].to_numpy()[STEPS]
    series = pl.ObservedSeries(STEPS, truth, np.full(5, 200.0))
    kw = {"replicates": 2, "grid": 3, "design": 8, "design_replicates": 2, "draws": 300}
    a = ns.calibrate(sc, series, {"rule.adopt_intercept": (-6.0, -2.0)}, **kw, **SERIAL)
    b = ns.calibrate(sc, series, {"rule.adopt_intercept": (-6.0, -2.0)}, **kw, **SERIAL)
    assert a.posterior.equals(b.posterior) and a.credible == b.credible
    assert list(a.posterior.columns) == ["rule.adopt_intercept"] and len(a.posterior) == 300
    lo, hi = a.credible["rule.adopt_intercept"]
    assert lo == a.posterior["rule.adopt_intercept"].quantile(0.05) and lo < -4.0 < hi
    out = a.save(tmp_path / "cal.toml")
    back = pd.read_csv(tmp_path / "cal.posterior.csv")
    assert np.array_equal(back.to_numpy(), a.posterior.to_numpy())
    assert out.read_text() == b.save(tmp_path / "again.toml").read_text()
    # another scenario seed draws another design and chain
    c = ns.calibrate(sc.replace(seed=8), series, {"rule.adopt_intercept": (-6.0, -2.0)}, **kw,
                     **SERIAL)
    assert not c.posterior.equals(a.posterior)


def test_a_prior_pulls_the_posterior():
    sc = small()
    truth = ns.simulate(sc).timeseries["adoption_rate"].to_numpy()[STEPS]
    series = pl.ObservedSeries(STEPS, truth, np.full(5, 30.0))  # weak data
    kw = {"replicates": 2, "grid": 3, "design": 10, "design_replicates": 2, "draws": 400,
          "posterior": True}
    flat = ns.calibrate(sc, series, {"rule.adopt_intercept": (-6.0, -2.0)}, **kw, **SERIAL)
    tight = ns.calibrate(sc, series, {"rule.adopt_intercept": (-6.0, -2.0)}, **kw, **SERIAL,
                         priors={"rule.adopt_intercept": stats.norm(-5.0, 0.2)})
    # a prior sd of 0.2 at -5 against data centred near -4: the posterior moves toward -5
    # and narrows (its sd is at most the prior's)
    assert tight.posterior.mean().iloc[0] < flat.posterior.mean().iloc[0] - 0.2
    assert tight.posterior.std().iloc[0] <= 0.2 + 0.02
    assert "norm(-5.0, 0.2)" in tight.meta["posterior"]["priors"]["rule.adopt_intercept"]


def test_per_ward_posterior_uses_every_ward(tmp_path):
    sc = small()
    bw = ns.simulate(sc).by_ward
    rows = bw[bw["step"].isin([0, 8, 16])]
    series = pl.ObservedSeries(rows["step"].to_numpy(), rows["adoption_rate"].to_numpy(),
                               np.full(len(rows), 100.0), wards=rows["ward"].to_numpy())
    cal = ns.calibrate(sc, series, {"rule.adopt_intercept": (-6.0, -2.0)}, replicates=2, grid=3,
                       design=10, design_replicates=3, draws=300, **SERIAL)
    assert len(cal.emulator.blocks) == 4 and cal.emulator.runs.shape == (10, 3, 12)
    assert list(cal.fit["ward"]) == list(rows["ward"])
    lo, hi = cal.credible["rule.adopt_intercept"]
    assert lo < -4.0 < hi and hi - lo < 2.0


# --------------------------------------------------------------------------- coverage


def test_credible_interval_covers_the_truth_in_at_least_85_percent_of_data_sets():
    """30 data sets, each from its own truth (rule.adopt_intercept uniform in [-5.6, -2.4])
    run with its own seed and surveyed with n = 200 per month; one emulator design over
    [-6, -2] serves them all (the scenario differs only in the parameter). Measured: 28/30
    inside (93%); the threshold is the issue's 85%."""
    sc = small()
    names, bounds = ["rule.adopt_intercept"], np.array([[-6.0, -2.0]])
    layout = pl.ObservedSeries(STEPS, np.zeros(5), np.full(5, 200.0))
    obj = cal_mod.Objective(sc, layout, names, [0, 1], RunOptions("serial"))
    emu = cal_mod.emulate(obj, bounds, 30, 4, sc.seed)
    rng = np.random.default_rng(2024)
    truths = -5.6 + 3.2 * rng.random(30)
    jobs = [obj.jobs([t], [replicate_seed(999, i)])[0] for i, t in enumerate(truths)]
    realised = np.asarray(values(jobs, RunOptions("serial")))
    inside = 0
    for i, t in enumerate(truths):
        obs = rng.binomial(200, realised[i]) / 200
        post = cal_mod.sample_posterior(emu, pl.ObservedSeries(STEPS, obs, np.full(5, 200.0)),
                                        draws=1000, seed=i)
        lo, hi = cal_mod.credible_intervals(post.sample)["rule.adopt_intercept"]
        inside += lo <= t <= hi
    print(f"coverage: {inside}/{len(truths)} inside")
    assert inside / len(truths) >= 0.85, f"{inside}/{len(truths)} inside"


@pytest.mark.parametrize("rows, words", [
    ("0,0.1,100\n4,,100\n8,0.2,100\n", "adoption_rate (empty)"),
    ("0,0.1,100\n4,abc,100\n", "adoption_rate 'abc'"),
    ("0,0.1,100\n2.5,0.2,100\n", "step 2.5"),
    ("0,0.1,100\n-1,0.2,100\n", "step -1"),
])
def test_an_observed_series_with_a_missing_or_bad_cell_is_refused(tmp_path, rows, words):
    path = tmp_path / "obs.csv"
    path.write_text("step,adoption_rate,n\n" + rows)
    with pytest.raises(ScenarioError) as err:
        pl.ObservedSeries.from_csv(path)
    msg = str(err.value)
    assert "\n" not in msg and words in msg and "row" in msg
