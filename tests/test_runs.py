"""The one run pipeline: jobs, the seed rule, the path grammar, the executor entry."""

from __future__ import annotations

import numpy as np
import pytest

import nudgesim as ns
from nudgesim import experiment, planning, runs
from nudgesim.engine import Engine
from nudgesim.errors import UsageError
from nudgesim.parallel import RunOptions, map_runs
from nudgesim.planning.stats import paired_seeds
from nudgesim.scenario import ScenarioError


def tiny(**fields) -> ns.Scenario:
    base = {"name": "tiny", "seed": 3, "steps": 6, "population": {"size": 200, "wards": 3},
            "initial_adopters": 0.2,
            "nudges": [{"kind": "reminder", "label": "text", "every": 2, "boost": 1.0}]}
    return ns.Scenario.from_dict(base | fields)


# --------------------------------------------------------------------------- seeds


def test_one_replicate_seed_rule_for_experiments_and_planning():
    ss = np.random.SeedSequence(11, spawn_key=(2,))
    assert runs.replicate_seed(11, 2) == int(ss.generate_state(1, np.uint64)[0] >> np.uint64(1))
    assert experiment.replicate_seed is runs.replicate_seed
    assert runs.replicate_seeds(11, 3) == [runs.replicate_seed(11, r) for r in range(3)]
    assert paired_seeds(tiny(seed=11), 3) == runs.replicate_seeds(11, 3)
    with pytest.raises(ScenarioError, match="replicates: 1 is too few"):
        paired_seeds(tiny(), 1)


def test_planning_runs_replicate_r_with_the_common_seed():
    sc = tiny()
    variant = sc.replace(nudges=[])
    comp = ns.compare(sc, {"none": variant}, replicates=2, executor="serial")
    assert comp.runs["seed"].tolist() == runs.replicate_seeds(sc.seed, 2) * 2


# --------------------------------------------------------------------------- set_path


def test_set_path_takes_labels_kinds_and_both_index_spellings():
    d = {"nudges": [{"kind": "reminder", "label": "text"}, {"kind": "information"}],
         "population": {"wards": [{"name": "North"}]}}
    runs.set_path(d, "nudges[text].every", 3)
    runs.set_path(d, "nudges[information].reach", 0.5)  # a kind used by one nudge only
    runs.set_path(d, "nudges[1].start", 2)
    runs.set_path(d, "nudges.0.boost", 1.5)
    runs.set_path(d, "population.wards[North].baseline", 0.3)
    assert d["nudges"] == [{"kind": "reminder", "label": "text", "every": 3, "boost": 1.5},
                           {"kind": "information", "reach": 0.5, "start": 2}]
    assert d["population"]["wards"][0]["baseline"] == 0.3
    with pytest.raises(ScenarioError, match=r"index \[5\] is out of range"):
        runs.set_path(d, "nudges.5.boost", 1.0)
    assert experiment.set_path is runs.set_path and planning.set_path is runs.set_path


def test_set_path_makes_missing_tables_only_when_asked():
    d: dict = {"rule": {}}
    runs.set_path(d, "network.mean_degree_in", 4.0)
    assert d["network"] == {"mean_degree_in": 4.0}
    with pytest.raises(ScenarioError, match=r"^parameters: 'targeting\.count': has no part "
                                            r"'targeting'; allowed here: \['kind'\]"):
        runs.set_path({"kind": "default"}, "targeting.count", 3, create_missing=False,
                      what="parameters:")
    value = [1, 2]
    runs.set_path(d, "rule.list", value)
    value.append(3)
    assert d["rule"]["list"] == [1, 2]  # a copy: later changes to the value do not leak in


def test_a_digit_key_in_a_table_stays_a_key():
    d = {"wards": {"2": {"baseline": 0.1}}}
    runs.set_path(d, "wards.2.baseline", 0.4)
    assert d == {"wards": {"2": {"baseline": 0.4}}}


# --------------------------------------------------------------------------- jobs


def test_job_of_replaces_the_seed_and_builds_the_scenario_back():
    job = runs.Job.of(tiny(), 99, steps=[0, 2])
    assert job.scenario["seed"] == 99 and job.build().seed == 99
    assert job.build().to_dict() == tiny(seed=99).to_dict()
    assert job.measure is runs.summary and dict(job.options) == {"steps": [0, 2]}


def test_the_summary_measure_is_the_results_summary_with_curves_and_wards():
    sc = tiny()
    res = ns.simulate(sc)
    value = runs.run_job(runs.Job.of(sc, sc.seed, wards=True, per_step=["adopters"]))["value"]
    plain = {k: v for k, v in res.summary.items() if k not in ns.Result.CAMPAIGN_KEYS}
    assert value["summary"] == plain  # without the twin the campaign keys are left out
    twin = runs.run_job(runs.Job.of(sc, sc.seed, counterfactual=True))["value"]["summary"]
    assert twin == ns.simulate(sc, counterfactual=True).summary
    assert value["steps"] == {"adopters": res.timeseries["adopters"].tolist(),
                              "step": res.timeseries["step"].tolist()}
    assert np.array_equal(value["curve"], res.timeseries["adoption_rate"].to_numpy())
    last = res.by_ward[res.by_ward["step"] == sc.steps]
    assert value["wards"] == last["ward"].tolist()
    assert np.array_equal(value["ward_rates"], last["adoption_rate"].to_numpy())


def test_measures_give_the_same_floats_as_the_engine():
    """Planning used to read Engine.adoption_rate(); the pipeline reads the summary and the
    time series: the same floats, bit for bit (both are adopters / residents)."""
    sc = tiny()
    engine = Engine(sc)
    rates = [engine.adoption_rate()]
    while engine.t < engine.steps:
        engine.step()
        rates.append(engine.adoption_rate())
    steps = [0, 3, 6]
    got = runs.run_job(runs.Job.of(sc, sc.seed, runs.rates_at, steps=steps))["value"]
    assert got.tolist() == [rates[s] for s in steps]
    final = runs.run_job(runs.Job.of(sc, sc.seed))["value"]["summary"]["final_adoption"]
    assert final == rates[-1]


def fails_as_a_bug(scenario, options):
    """A measure with a bug in it (top-level, so a worker could run it too)."""
    return 1 / 0


def test_run_job_never_raises_and_raise_first_error_keeps_the_kind_of_error():
    bad = runs.Job(scenario=tiny().to_dict() | {"steps": -1}, base_dir=".")
    out = runs.run_job(bad)
    assert out["status"] == "error" and out["value"] is None
    assert "ScenarioError: steps" in out["error"]
    with pytest.raises(ScenarioError, match="^steps"):
        runs.raise_first_error([runs.run_job(runs.Job.of(tiny(), 1)), out])
    bug = runs.run_job(runs.Job.of(tiny(), 1, fails_as_a_bug))
    assert bug["status"] == "error" and "ZeroDivisionError" in bug["error"]
    with pytest.raises(runs.RunError, match="(?s)ZeroDivisionError.*Traceback"):
        runs.raise_first_error([bug])
    runs.raise_first_error([runs.run_job(runs.Job.of(tiny(), 1))])  # nothing failed: no raise


def test_run_jobs_keep_the_order_and_the_numbers_on_every_executor():
    jobs = [runs.Job.of(tiny(), s) for s in (5, 6, 7)]
    serial = runs.values(jobs, RunOptions("serial"))
    pooled = runs.values(jobs, RunOptions("processes", workers=2))
    assert [v["summary"] for v in serial] == [v["summary"] for v in pooled]
    assert [v["summary"]["seed"] for v in serial] == [5, 6, 7]


# --------------------------------------------------------------------------- options


def test_run_options_are_checked_and_a_scheduler_means_dask():
    assert RunOptions(scheduler="tcp://h:1").executor == "dask"
    with pytest.raises(UsageError, match="executor: 'cloud' is not allowed"):
        RunOptions("cloud")  # type: ignore[arg-type]
    with pytest.raises(UsageError, match="workers: must be >= 1"):
        RunOptions(workers=0)
    assert RunOptions.of("serial") == RunOptions("serial")
    assert RunOptions.of(None, workers=2) == RunOptions(workers=2)
    with pytest.raises(TypeError, match="not both"):
        RunOptions.of(RunOptions("serial"), workers=2)
    assert map_runs(abs, [-1, -2], RunOptions("serial")) == [1, 2]
