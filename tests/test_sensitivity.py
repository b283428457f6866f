"""Sensitivity indices: a factor that cannot matter gets exactly zero, one that does dominates."""

from __future__ import annotations

import pandas as pd
import pytest

from nudgesim.cli import main as cli_main
from nudgesim.experiment import Experiment
from nudgesim.scenario import Scenario, ScenarioError
from nudgesim.sensitivity import sensitivity

SMALL = """
name = "sens"
seed = 2
steps = 10
initial_adopters = 0.1
[population]
size = 200
[network]
kind = "watts_strogatz"
k = 4
p = 0.1
[rule]
kind = "logistic"
[[nudges]]
kind = "information"
label = "leaflet"
cost_per_contact = 0.35
"""


def experiment(**kw) -> Experiment:
    # the leaflet's price moves cost only; the adoption intercept moves adoption strongly
    return Experiment(
        Scenario.from_toml_str(SMALL),
        levers={"nudges[leaflet].cost_per_contact": {"low": 0.1, "high": 1.0}},
        uncertainties={"rule.adopt_intercept": {"low": -6.0, "high": -1.0}},
        replicates=2,
        seed=4,
        name="sens",
        **kw,
    )


def test_sobol_gives_zero_to_an_inert_factor_and_most_to_the_driver(tmp_path):
    res = sensitivity(
        experiment(),
        outcome="final_adoption",
        method="sobol",
        samples=16,
        out=tmp_path,
        executor="serial",
        progress=False,
    )
    idx = res.indices.set_index("factor")
    assert len(res.sweep.summary) == 16 * (2 + 2)
    # common random numbers: changing the price leaves adoption bit-identical → exact zeros
    assert idx.loc["nudges[leaflet].cost_per_contact", "ST"] == 0.0
    assert idx.loc["nudges[leaflet].cost_per_contact", "S1"] == 0.0
    assert idx.loc["rule.adopt_intercept", "ST"] > 0.8  # statistical: N = 16, observed ~1.0
    assert (tmp_path / "sensitivity_sobol_final_adoption.png").read_bytes()[:4] == b"\x89PNG"
    csv = pd.read_csv(tmp_path / "sensitivity_sobol_final_adoption.csv")
    assert list(csv.columns) == ["factor", "role", "outcome", "S1", "S1_conf", "ST", "ST_conf"]


def test_morris_ranks_the_driver_first(tmp_path):
    res = sensitivity(
        experiment(),
        outcome="final_adoption",
        method="morris",
        samples=6,
        out=tmp_path,
        executor="serial",
        progress=False,
        plot=False,
    )
    idx = res.indices.set_index("factor")
    assert idx.loc["nudges[leaflet].cost_per_contact", "mu_star"] == 0.0
    assert idx.loc["rule.adopt_intercept", "mu_star"] > 0.1
    assert res.figure is None


def test_bad_outcome_and_method(tmp_path):
    with pytest.raises(ScenarioError, match="method: 'fast'"):
        sensitivity(experiment(), method="fast", out=tmp_path)
    with pytest.raises(ScenarioError, match="outcome: 'nope'"):
        sensitivity(
            experiment(), outcome="nope", samples=4, out=tmp_path, executor="serial", progress=False
        )


def test_cli_sensitivity(tmp_path, capsys):
    (tmp_path / "s.toml").write_text(SMALL)
    (tmp_path / "e.toml").write_text(
        'scenario = "s.toml"\nsamples = 4\n[uncertainties]\n"rule.adopt_intercept" = {low = -6.0, high = -1.0}\n'
        '"network.p" = [0.0, 0.5]\n'
    )
    argv = [
        "sensitivity",
        str(tmp_path / "e.toml"),
        "--out",
        str(tmp_path / "o"),
        "--executor",
        "serial",
        "--no-progress",
        "--outcome",
        "final_adoption",
    ]
    assert cli_main(argv) == 0
    out = capsys.readouterr().out
    assert "rule.adopt_intercept" in out and "ST" in out
    assert (tmp_path / "o" / "sensitivity_sobol_final_adoption.csv").exists()
    assert cli_main([*argv[:-2], "--method", "sobol", "--samples", "5"]) == 2
    assert "power of 2" in capsys.readouterr().err


def test_too_small_a_sample_is_said_and_a_big_enough_one_is_not(tmp_path):
    from nudgesim.scenario import ScenarioWarning

    with pytest.warns(ScenarioWarning, match="samples: 4 base samples give sobol indices"):
        sensitivity(experiment(), samples=4, out=tmp_path / "a", executor="serial",
                    progress=False, plot=False)
    import warnings

    with warnings.catch_warnings():
        warnings.simplefilter("error", ScenarioWarning)
        sensitivity(experiment(), samples=64, out=tmp_path / "b", executor="serial",
                    progress=False, plot=False)


def test_help_names_the_folder_sensitivity_writes(capsys):
    with pytest.raises(SystemExit):
        cli_main(["sensitivity", "--help"])
    assert "results/<experiment name>_<method>" in " ".join(capsys.readouterr().out.split())
