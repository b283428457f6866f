"""Experiments: paths into scenarios, designs, common random numbers, executors, the store."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from scipy import stats

from nudgesim.cli import main as cli_main
from nudgesim.experiment import Experiment, Factor, parse_path, replicate_seed, set_path
from nudgesim.scenario import Scenario, ScenarioError

ROOT = Path(__file__).parents[1]

SMALL = """
name = "small"
seed = 5
steps = 12
initial_adopters = 0.2
[population]
size = 300
wards = 3
[network]
kind = "watts_strogatz"
k = 6
p = 0.1
[rule]
kind = "logistic"
adopt_intercept = -4.0
[[nudges]]
kind = "information"
label = "leaflet"
reach = 0.5
cost_per_contact = 0.35
[[nudges]]
kind = "reminder"
start = 2
every = 2
cost_per_contact = 0.04
"""


def small() -> Scenario:
    return Scenario.from_toml_str(SMALL)


def boom_if_full_reach(res) -> dict[str, float]:
    """A measure that fails on purpose at one design point (top level: picklable)."""
    if res.scenario.nudges[0].reach == 1.0:
        raise RuntimeError("boom at full reach")
    return {"contacts_per_resident": float(res.timeseries["contacts"].sum() / len(res.adopted))}


# -- paths ---------------------------------------------------------------------------------


def test_parse_path_keys_indices_and_labels():
    assert parse_path("nudges[peer ambassadors].targeting.count") == [
        ("key", "nudges"),
        ("item", "peer ambassadors"),
        ("key", "targeting"),
        ("key", "count"),
    ]
    assert parse_path("nudges[2].reach") == [("key", "nudges"), ("item", 2), ("key", "reach")]
    for bad in ("", "a..b", "a.", ".a", "a.[1]", "a b]"):
        with pytest.raises(ScenarioError):
            parse_path(bad)


def test_set_path_by_label_index_kind_and_missing_tables():
    d = small().to_dict()
    set_path(d, "nudges[leaflet].reach", 0.9)
    set_path(d, "nudges[1].every", 3)
    set_path(d, "nudges[reminder].end", 10)  # a kind used by one nudge only; end was absent
    set_path(d, "rule.adopt_norm", 4.0)
    assert d["nudges"][0]["reach"] == 0.9 and d["nudges"][1]["every"] == 3
    assert d["nudges"][1]["end"] == 10 and d["rule"]["adopt_norm"] == 4.0
    with pytest.raises(ScenarioError, match=r"no item has label/name/kind 'leaflt'.*leaflet"):
        set_path(d, "nudges[leaflt].reach", 0.5)
    with pytest.raises(ScenarioError, match="out of range"):
        set_path(d, "nudges[7].reach", 0.5)
    with pytest.raises(ScenarioError, match="selects from a list"):
        set_path(d, "rule[0].p", 0.5)


# -- factors and designs -------------------------------------------------------------------


def test_factor_specs_and_errors():
    f = Factor.parse("x", {"low": 1, "high": 5, "levels": 5, "integer": True}, "lever")
    assert f.grid_values() == [1, 2, 3, 4, 5]
    assert [f.from_unit(u) for u in (0.0, 0.19, 0.2, 0.999, 1.0)] == [1, 1, 2, 5, 5]
    c = Factor.parse(
        "x", {"values": [[], [{"kind": "pledge"}]], "labels": ["none", "pledge"]}, "lever"
    )
    assert [c.cell(v) for v in c.values] == ["none", "pledge"]
    assert Factor.parse("x", [{"a": 1}], "lever").cell({"a": 1}) == '{"a":1}'
    for bad, msg in (
        (0.3, "list of values"),
        ({"low": 2, "high": 1}, "greater than"),
        ({"lo": 1}, "not allowed"),
        ([], "empty"),
        ({"values": [1, 2], "labels": ["a"]}, "2 distinct labels"),
    ):
        with pytest.raises(ScenarioError, match=msg):
            Factor.parse("x", bad, "uncertainty")
    with pytest.raises(ScenarioError, match="needs 'levels'"):
        Factor.parse("x", {"low": 0, "high": 1}, "lever").grid_values()


@given(u=st.floats(0, 1), low=st.floats(-100, 100), width=st.floats(1e-3, 100), k=st.integers(1, 7))
@settings(max_examples=200, deadline=None)
def test_from_unit_stays_inside_the_range_and_choices(u, low, width, k):
    r = Factor("x", "lever", low=low, high=low + width)
    assert low <= r.from_unit(u) <= low + width
    i = Factor("x", "lever", low=low, high=low + width + 1, integer=True)
    assert isinstance(i.from_unit(u), int) and low <= i.from_unit(u) <= low + width + 1
    c = Factor("x", "lever", values=tuple(range(k)))
    assert c.from_unit(u) in range(k)


def test_designs_have_the_documented_sizes_and_stay_in_range():
    lev = {"nudges[leaflet].reach": {"low": 0.1, "high": 0.9}}
    unc = {"rule.adopt_norm": {"low": 2.0, "high": 4.0}, "network.p": [0.0, 0.1, 0.5]}
    grid = Experiment(small(), {"nudges[leaflet].reach": [0.2, 0.8]}, {"network.p": [0.0, 0.5]})
    assert len(grid.points()) == 4
    for design, n, size in (("lhs", 10, 10), ("sobol", 8, 8 * (3 + 2)), ("morris", 4, 4 * (3 + 1))):
        exp = Experiment(small(), lev, unc, design=design, samples=n, seed=1)
        pts = exp.points()
        assert len(pts) == size
        assert all(
            0.1 <= p["nudges[leaflet].reach"] <= 0.9 and p["network.p"] in (0.0, 0.1, 0.5)
            for p in pts
        )
        assert len(exp.scenarios()) == size
    lhs = np.array(
        [[p["rule.adopt_norm"]] for p in Experiment(small(), lev, unc, "lhs", 10, seed=1).points()]
    )
    # Latin hypercube: exactly one sample in each of the 10 equal strata
    assert sorted(np.floor((lhs[:, 0] - 2.0) / 0.2).astype(int).clip(max=9)) == list(range(10))
    with pytest.raises(ScenarioError, match="not a power of 2.*try 8 or 16"):
        Experiment(small(), lev, unc, design="sobol", samples=10)


def test_every_point_is_validated_before_any_run(tmp_path):
    exp = Experiment(small(), {"nudges[leaflet].reach": [0.5, 1.5]})
    with pytest.raises(
        ScenarioError, match=r"(?s)design point 1 \(nudges\[leaflet\]\.reach = 1\.5\).*reach"
    ):
        exp.run(out=tmp_path, executor="serial")
    assert not (tmp_path / "runs").exists()
    with pytest.raises(ScenarioError, match="unknown field"):
        Experiment(small(), {"rule.adopt_nrm": [1.0]}).scenarios()
    with pytest.raises(ScenarioError, match="design: 'full'"):
        Experiment(small(), design="full")


# -- common random numbers, tables, summary ------------------------------------------------


def test_replicate_seeds_are_shared_across_points_and_differ_across_replicates(tmp_path):
    assert (
        replicate_seed(3, 0) == replicate_seed(3, 0) != replicate_seed(3, 1) != replicate_seed(4, 1)
    )
    # the leaflet's price changes cost only: with common random numbers every other outcome
    # of replicate r is identical across the points
    exp = Experiment(
        small(), {"nudges[leaflet].cost_per_contact": [0.1, 0.5, 2.0]}, replicates=3, seed=9
    )
    runs = exp.run(out=tmp_path, executor="serial", progress=False).runs
    assert runs.groupby("replicate")["seed"].nunique().eq(1).all()
    assert runs.groupby("replicate")["final_adoption"].nunique().eq(1).all()
    assert runs.groupby("replicate")["total_cost"].nunique().eq(3).all()
    assert runs["final_adoption"].nunique() > 1  # replicates do differ


def test_campaign_outcomes_run_the_twin_only_when_named(tmp_path):
    # naming a campaign_extra_* outcome runs the no-campaign twin; otherwise the columns
    # are absent (not empty) and run ids are those of a plain run
    from nudgesim.engine import simulate

    named = Experiment(small(), {"nudges[leaflet].reach": [0.2, 0.8]}, replicates=2, seed=5,
                       outcomes=["final_adoption", "campaign_extra_adopters"])
    runs = named.run(out=tmp_path / "a", executor="serial", progress=False).runs
    for _, row in runs.iterrows():
        sc = named.scenarios()[int(row["point"])].replace(seed=int(row["seed"]))
        expected = simulate(sc, counterfactual=True).summary["campaign_extra_adopters"]
        assert row["campaign_extra_adopters"] == expected
    plain = Experiment(small(), {"nudges[leaflet].reach": [0.2, 0.8]}, replicates=2, seed=5)
    plain_runs = plain.run(out=tmp_path / "b", executor="serial", progress=False).runs
    assert "campaign_extra_adopters" not in plain_runs.columns
    assert set(plain_runs["run_id"]).isdisjoint(runs["run_id"])
    assert (plain_runs["final_adoption"].to_numpy() == runs["final_adoption"].to_numpy()).all()


def test_tables_summary_and_manifest(tmp_path):
    exp = Experiment(
        small(),
        {"nudges[leaflet].reach": [0.2, 0.8]},
        {"network.p": [0.0, 0.3]},
        replicates=4,
        seed=1,
        outcomes=["final_adoption", "total_cost"],
        per_step=["adoption_rate"],
        name="tiny",
    )
    res = exp.run(out=tmp_path, executor="serial", progress=False)
    runs = pd.read_parquet(tmp_path / "runs.parquet")
    pd.testing.assert_frame_equal(runs, res.runs)
    assert len(runs) == 4 * 4 * 13  # points x replicates x (steps + 1)
    assert list(runs.columns[:7]) == [
        "point",
        "nudges[leaflet].reach",
        "network.p",
        "replicate",
        "seed",
        "run_id",
        "step",
    ]
    assert {"adoption_rate", "final_adoption", "total_cost", "status", "error"} <= set(runs.columns)
    summary = pd.read_parquet(tmp_path / "summary.parquet")
    assert len(summary) == 4 * 13 and (summary["n_runs"] == 4).all()
    last = runs[(runs["point"] == 2) & (runs["step"] == 12)]["final_adoption"].to_numpy()
    row = summary[(summary["point"] == 2) & (summary["step"] == 12)].iloc[0]
    half = stats.t.ppf(0.975, 3) * last.std(ddof=1) / 2.0
    assert row["final_adoption_mean"] == pytest.approx(last.mean(), rel=1e-12)
    assert row["final_adoption_ci_low"] == pytest.approx(last.mean() - half, rel=1e-12)
    assert row["final_adoption_ci_high"] == pytest.approx(last.mean() + half, rel=1e-12)
    m = json.loads((tmp_path / "manifest.json").read_text())
    assert m["design"]["points"] == 4 and m["seeds"] == exp.seeds()
    assert m["runs"] == {
        "total": 16,
        "unique": 16,
        "computed_now": 16,
        "reused_from_store": 0,
        "errors": 0,
    }
    assert {"numpy", "pandas", "SALib", "python"} <= set(m["versions"])
    assert "git_commit" in m and m["timings"]["wall_s"] > 0
    with pytest.raises(ScenarioError, match="outcomes: unknown outcome\\(s\\) \\['nope'\\]"):
        exp.replace(outcomes=["nope"])  # refused before any run


def test_a_failing_run_is_recorded_and_the_sweep_goes_on(tmp_path):
    exp = Experiment(
        small(), {"nudges[leaflet].reach": [0.5, 1.0]}, replicates=2, measure=boom_if_full_reach
    )
    res = exp.run(out=tmp_path, executor="processes", workers=2, progress=False)
    bad = res.runs[res.runs["status"] == "error"]
    assert len(bad) == 2 and (bad["point"] == 1).all()
    assert bad["error"].str.contains("RuntimeError: boom at full reach").all()
    assert (res.runs.loc[res.runs["point"] == 0, "status"] == "ok").all()
    assert res.runs.loc[res.runs["point"] == 0, "contacts_per_resident"].notna().all()
    assert res.summary.set_index("point").loc[1, "n_errors"] == 2
    assert res.manifest["runs"]["errors"] == 2
    again = exp.run(out=tmp_path, executor="serial", progress=False)  # not retried by default
    assert again.manifest["runs"]["computed_now"] == 0
    retried = exp.run(out=tmp_path, executor="serial", progress=False, retry_errors=True)
    assert retried.manifest["runs"]["computed_now"] == 2


# -- executors -----------------------------------------------------------------------------


def test_serial_processes_and_dask_give_identical_tables(tmp_path):
    exp = Experiment(
        small(),
        {"nudges[leaflet].reach": [0.2, 0.9]},
        {"rule.adopt_norm": {"low": 2.0, "high": 4.0}},
        design="lhs",
        samples=3,
        replicates=2,
        seed=11,
        per_step=["adopters"],
    )
    serial = exp.run(out=tmp_path / "serial", executor="serial", progress=False)
    procs = exp.run(out=tmp_path / "procs", executor="processes", workers=2, progress=False)
    dask = exp.run(out=tmp_path / "dask", executor="dask", workers=2, progress=False)
    for other in (procs, dask):
        pd.testing.assert_frame_equal(serial.runs, other.runs, check_exact=True)
        pd.testing.assert_frame_equal(serial.summary, other.summary, check_exact=True)
    for name in ("runs.parquet", "summary.parquet"):
        a = pd.read_parquet(tmp_path / "serial" / name)
        pd.testing.assert_frame_equal(
            a, pd.read_parquet(tmp_path / "dask" / name), check_exact=True
        )


# -- resume after kill -9 and the command line ---------------------------------------------


def test_resume_after_sigkill_loses_nothing_and_redoes_nothing(tmp_path):
    (tmp_path / "small.toml").write_text(SMALL.replace("steps = 12", "steps = 40"))
    (tmp_path / "exp.toml").write_text(
        'name = "resume"\nscenario = "small.toml"\nreplicates = 6\nseed = 3\n'
        '[levers]\n"nudges[leaflet].reach" = { low = 0.1, high = 0.9, levels = 10 }\n'
    )
    out = tmp_path / "out"
    cmd = [
        sys.executable,
        "-m",
        "nudgesim.cli",
        "sweep",
        str(tmp_path / "exp.toml"),
        "--out",
        str(out),
        "--executor",
        "serial",
        "--no-progress",
    ]
    proc = subprocess.Popen(
        cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, start_new_session=True
    )
    store = out / "runs"
    deadline = time.time() + 60
    while time.time() < deadline and len(list(store.glob("*.parquet"))) < 8:
        time.sleep(0.02)
    os.killpg(proc.pid, signal.SIGKILL)
    proc.wait()
    first = {p.name: p.stat().st_mtime_ns for p in store.glob("*.parquet")}
    assert 8 <= len(first) < 60, "the sweep should be killed mid-way"
    assert not (out / "runs.parquet").exists()
    done = subprocess.run(cmd, capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr
    runs = pd.read_parquet(out / "runs.parquet")
    assert len(runs) == 60 and not runs.duplicated(["point", "replicate"]).any()
    assert runs["run_id"].nunique() == 60 and (runs["status"] == "ok").all()
    after = {p.name: p.stat().st_mtime_ns for p in store.glob("*.parquet")}
    assert len(after) == 60 and all(after[k] == v for k, v in first.items())  # not recomputed
    m = json.loads((out / "manifest.json").read_text())
    assert m["runs"]["reused_from_store"] == len(first)
    assert m["runs"]["computed_now"] == 60 - len(first)
    # the same sweep run in one go gives the same table
    whole = Experiment.from_toml(tmp_path / "exp.toml").run(
        out=tmp_path / "whole", executor="serial", progress=False
    )
    pd.testing.assert_frame_equal(runs, whole.runs, check_exact=True)


def test_cli_sweep_and_bad_input(tmp_path, capsys):
    (tmp_path / "small.toml").write_text(SMALL)
    exp = tmp_path / "exp.toml"
    exp.write_text('scenario = "small.toml"\n[levers]\n"nudges[leaflet].reach" = [0.3, 0.6]\n')
    assert cli_main(["sweep", str(exp), "--dry-run"]) == 0
    assert "2 points x 1 replicates = 2 runs" in capsys.readouterr().out
    assert (
        cli_main(
            [
                "sweep",
                str(exp),
                "--out",
                str(tmp_path / "o"),
                "--executor",
                "serial",
                "--replicates",
                "2",
                "--no-progress",
            ]
        )
        == 0
    )
    assert "4 runs (4 computed now" in capsys.readouterr().out
    assert len(pd.read_parquet(tmp_path / "o" / "runs.parquet")) == 4
    bad = tmp_path / "bad.toml"
    for text, msg in (
        ('scenario = "small.toml"\n[levers]\n"nudges[flyer].reach" = [0.3]\n', "'flyer'"),
        (
            'scenario = "small.toml"\ndesign = "sobol"\nsamples = 6\n[levers]\n"network.p" = {low=0, high=1}\n',
            "power of 2",
        ),
        ('scenario = "nope.toml"\n', "scenario file not found"),
        ('scenario = "small.toml"\nreplicate = 3\n', "unknown field(s) ['replicate']"),
    ):
        bad.write_text(text)
        assert (
            cli_main(["sweep", str(bad), "--executor", "serial", "--out", str(tmp_path / "b")]) == 2
        )
        assert msg in capsys.readouterr().err


def test_example_sweeps_are_valid():
    for path in sorted((ROOT / "experiments" / "sweeps").glob("*.toml")):
        exp = Experiment.from_toml(path)
        assert exp.tasks(), path


# -- experiment files: finite numbers, safe names, one sweep per folder --------------------

LEVER = '[levers]\n"nudges[leaflet].reach" = [0.3, 0.6]\n'


@pytest.mark.parametrize(
    "text, first_line",
    [
        ('[levers]\n"nudges[leaflet].reach" = [0.3, nan]\n',
         'levers."nudges[leaflet].reach"[1]: nan is not allowed; give a finite number'),
        ('[levers]\n"nudges[leaflet].reach" = {values = [inf], labels = ["x"]}\n',
         'levers."nudges[leaflet].reach".values[0]: inf is not allowed'),
        ('design = "lhs"\nsamples = 4\n[uncertainties]\n"network.p" = {low = 0.0, high = nan}\n',
         'uncertainties."network.p".high: nan is not allowed'),
        ('design = "lhs"\nsamples = 4\n[uncertainties]\n"network.p" = {low = -inf, high = 1.0}\n',
         'uncertainties."network.p".low: -inf is not allowed'),
        ('[levers]\n"nudges[leaflet]" = [{kind = "information", reach = nan}]\n',
         'levers."nudges[leaflet]"[0].reach: nan is not allowed'),
        ('name = "../.."\n' + LEVER, "name: '../..' has no letters or digits"),
        ('name = ""\n' + LEVER, "name: '' has no letters or digits"),
        ("name = 5\n" + LEVER, "name: 5 is not allowed; give a text name"),
        ("replicates = true\n" + LEVER, "replicates: True is not allowed; give an integer >= 1"),
        ("replicates = 2.0\n" + LEVER, "replicates: 2.0 is not allowed; give an integer >= 1"),
        ("seed = -1\n" + LEVER, "seed: -1 is not allowed; give an integer >= 0"),
        ("replicates = 9223372036854775807\n" + LEVER,
         "design: 2 points x 9,223,372,036,854,775,807 replicates"),
        ('[levers]\n"network.p" = {low = 0.0, high = 1.0, levels = 100000000000}\n',
         'levers."network.p".levels: 100000000000 is not allowed; at most 1,000,000'),
        ('design = "sobol"\nsamples = 1099511627776\n[levers]\n"network.p" = {low=0, high=1}\n',
         "design: 3,298,534,883,328 points"),
        ('[levers]\n"network.p" = {low = 0.0, high = 1.0, levels = 3, integer = "yes"}\n',
         "integer: 'yes' is not allowed; true or false"),
        ('[levers]\n"network.p" = {values = "0.1"}\n',
         "values: '0.1'; give a list"),
        ('design = 3\n' + LEVER, "design: 3 is not allowed; allowed: grid"),
        ('outcomes = "final_adoption"\n' + LEVER, "outcomes: 'final_adoption' is not allowed"),
        ('[levers]\n"network.p" = ' + "[" * 40 + "0.1" + "]" * 40 + "\n",
         "nested more than 32 levels deep"),
        ('[levers]\n"network.p" = ' + "[" * 5000 + "]" * 5000 + "\n", "nesting too deep"),
    ],
)  # fmt: skip
def test_bad_experiment_files_get_one_clear_line(tmp_path, capsys, text, first_line):
    (tmp_path / "small.toml").write_text(SMALL)
    bad = tmp_path / "bad.toml"
    bad.write_text('scenario = "small.toml"\n' + text)
    with pytest.raises(ScenarioError) as err:
        Experiment.from_toml(bad)
    assert first_line in str(err.value)
    assert cli_main(["sweep", str(bad), "--dry-run"]) == 2
    out = capsys.readouterr().err
    assert out.startswith(f"nudgesim: error: {bad}: ") and out.count("\n") == 1
    assert first_line in out and "Traceback" not in out


def test_an_experiment_name_becomes_one_folder_under_results(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    for name, folder in (("../../evil", "evil"), ("/tmp/x", "tmp_x"), ("a b\x00c", "a_b_c")):
        exp = Experiment(small(), {"nudges[leaflet].reach": [0.4]}, name=name)
        assert exp.name == folder
        res = exp.run(executor="serial", progress=False)
        assert res.out == Path("results") / folder and (res.out / "runs.parquet").exists()
        assert json.loads((res.out / "manifest.json").read_text())["experiment"] == folder
    assert sorted(p.name for p in tmp_path.iterdir()) == ["results"]
    assert sorted(p.name for p in (tmp_path / "results").iterdir()) == ["a_b_c", "evil", "tmp_x"]
    for name in ("", "..", "/"):
        with pytest.raises(ScenarioError, match="^name: .* has no letters or digits"):
            Experiment(small(), name=name)


def test_sweep_out_naming_a_file_exits_2(tmp_path, capsys):
    (tmp_path / "small.toml").write_text(SMALL)
    (tmp_path / "exp.toml").write_text('scenario = "small.toml"\n' + LEVER)
    (tmp_path / "f").write_text("mine")
    argv = ["sweep", str(tmp_path / "exp.toml"), "--executor", "serial", "--no-progress"]
    assert cli_main([*argv, "--out", str(tmp_path / "f")]) == 2
    assert (
        capsys.readouterr().err
        == f"nudgesim: error: --out: {tmp_path / 'f'} is a file; give a folder\n"
    )


def test_a_second_sweep_into_a_busy_folder_exits_2_and_touches_nothing(tmp_path, capsys):
    """Two processes: a running sweep holds the folder; a second one exits 2 at once naming
    the folder and the holder's pid, and deletes none of its temporaries; once the first is
    killed with SIGKILL, no stale lock remains and the sweep resumes."""
    (tmp_path / "small.toml").write_text(SMALL.replace("steps = 12", "steps = 40"))
    exp = tmp_path / "exp.toml"
    exp.write_text(
        'name = "busy"\nscenario = "small.toml"\nreplicates = 6\nseed = 3\n'
        '[levers]\n"nudges[leaflet].reach" = { low = 0.1, high = 0.9, levels = 10 }\n'
    )
    out = tmp_path / "out"
    argv = ["sweep", str(exp), "--out", str(out), "--executor", "serial", "--no-progress"]
    first = subprocess.Popen(
        [sys.executable, "-m", "nudgesim.cli", *argv],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        env={**os.environ, "NUDGESIM_NUMBA": "0"},
    )
    try:
        deadline = time.time() + 60
        while time.time() < deadline and len(list((out / "runs").glob("*.parquet"))) < 2:
            time.sleep(0.02)
        assert first.poll() is None, "the first sweep should still be running"
        writing = out / "runs" / ".abc.parquet.x1y2z3.tmp"  # as if the first were writing it
        writing.write_bytes(b"half")
        t0 = time.perf_counter()
        assert cli_main(argv) == 2
        assert time.perf_counter() - t0 < 10  # at once, not after computing anything
        err = capsys.readouterr().err
        assert err.startswith(f"nudgesim: error: --out: {out} is in use by another nudgesim")
        assert f"(pid {first.pid})" in err and err.count("\n") == 1
        assert writing.exists()
    finally:
        first.kill()
        first.communicate()
    assert cli_main(argv) == 0
    assert not writing.exists()  # cleaned by the next sweep, under the lock
    m = json.loads((out / "manifest.json").read_text())
    assert m["runs"]["total"] == 60 and m["runs"]["reused_from_store"] >= 2
    assert m["runs"]["computed_now"] + m["runs"]["reused_from_store"] == 60


def test_a_sweep_with_wait_runs_after_the_holder_lets_go(tmp_path, capsys):
    import threading

    from nudgesim import files

    (tmp_path / "small.toml").write_text(SMALL)
    exp = tmp_path / "exp.toml"
    exp.write_text('scenario = "small.toml"\n' + LEVER)
    out = tmp_path / "out"
    held, release = threading.Event(), threading.Event()

    def holder():
        with files.lock_folder(out):
            held.set()
            release.wait(20)

    t = threading.Thread(target=holder)
    t.start()
    held.wait(10)
    threading.Timer(0.5, release.set).start()
    argv = ["sweep", str(exp), "--out", str(out), "--executor", "serial", "--no-progress"]
    assert cli_main([*argv, "--wait"]) == 0
    t.join()
    captured = capsys.readouterr()
    assert f"{out} is in use by pid {os.getpid()}; waiting for it" in captured.err
    assert "2 runs (2 computed now" in captured.out


def test_summary_keys_are_the_outcomes_an_experiment_may_name():
    from nudgesim import Result, simulate

    res = simulate(Scenario.from_dict({"steps": 2, "population": {"size": 50}}))
    assert tuple(res.summary) == Result.SUMMARY_KEYS


def test_a_sweep_to_a_closed_scheduler_port_exits_2_within_its_time_out(tmp_path, capsys):
    import socket

    with socket.socket() as s:  # a port that was free a moment ago: nobody listens there
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    (tmp_path / "e.toml").write_text('name = "x"\n[scenario]\nsteps = 2\n')
    t0 = time.perf_counter()
    code = cli_main(["sweep", str(tmp_path / "e.toml"), "--out", str(tmp_path / "o"),
                     "--scheduler", f"tcp://127.0.0.1:{port}", "--dask-timeout", "2"])
    err = capsys.readouterr().err
    assert code == 2 and err.startswith("nudgesim: error: --scheduler") and "Traceback" not in err
    assert time.perf_counter() - t0 < 20
    assert cli_main(["sweep", str(tmp_path / "e.toml"), "--dask-timeout", "nan"]) == 2


# -- the report of a sweep folder ------------------------------------------------------


def test_sweep_report_has_the_design_a_row_per_point_with_intervals_and_figures(tmp_path):
    from nudgesim.document import pct
    from nudgesim.sweep_report import sweep_doc

    exp = Experiment(small(), levers={"nudges[leaflet].reach": {
                         "values": [0.2, 0.9], "labels": ["<b>low</b> & co", "high"]}},
                     uncertainties={"rule.adopt_norm": [2.0, 3.0]}, replicates=3,
                     outcomes=["final_adoption", "total_cost"], name="town")
    res = exp.run(out=tmp_path / "sw", executor="serial", progress=False)
    doc = sweep_doc(tmp_path / "sw")
    md, html = doc.markdown(), doc.html()
    # point 2 by hand: mean of three replicates, Student-t 95% interval of the mean
    x = res.runs.loc[res.runs["point"] == 2, "final_adoption"].to_numpy()
    half = stats.t.ppf(0.975, 2) * x.std(ddof=1) / np.sqrt(3)
    cell = f"{pct(x.mean())} [{pct(x.mean() - half)}, {pct(x.mean() + half)}]"
    table = next(b for b in doc.blocks if b["kind"] == "table" and len(b["rows"]) == 4)
    row = ["".join(s.text for s in c) for c in table["rows"][2]]
    assert row[:4] == ["2", "high", "2", "3"] and row[4] == cell
    assert "".join(s.text for s in table["header"][4]) == "final_adoption (%)"
    assert "simulation only" in md and "Student-t" in md
    assert "&lt;b&gt;low&lt;/b&gt; &amp; co" in html and "<b>low" not in html
    assert r"\<b\>low\</b\> \& co" in md
    pngs = sorted(p.name for p in (tmp_path / "sw").glob("report_sweep_*.png"))
    assert pngs == ["report_sweep_final_adoption.png", "report_sweep_total_cost.png"]
    assert (tmp_path / "sw" / pngs[0]).read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_sweep_report_without_named_outcomes_or_replicates_says_what_it_leaves_out(tmp_path):
    from nudgesim.sweep_report import sweep_doc

    exp = Experiment(small(), levers={"nudges[leaflet].reach": [0.2, 0.9]}, name="one")
    exp.run(out=tmp_path / "sw", executor="serial", progress=False)
    md = sweep_doc(tmp_path / "sw").markdown()
    assert "One replicate per point" in md and "[" not in md.split("| Point")[1].split("\n")[2]
    header = md.split("| Point")[1].split("\n")[0]
    assert "final\\_adoption" in header and "residents" not in header  # info: left out
    assert "Not shown" in md and "residents" in md


def test_sweep_report_of_a_folder_that_is_no_sweep_is_one_line(tmp_path):
    from nudgesim.sweep_report import sweep_doc

    with pytest.raises(ScenarioError, match="no manifest.json and summary.parquet"):
        sweep_doc(tmp_path)
    (tmp_path / "manifest.json").write_text("{not json")
    pd.DataFrame({"point": [0]}).to_parquet(tmp_path / "summary.parquet")
    with pytest.raises(ScenarioError, match="cannot read the sweep's manifest.json"):
        sweep_doc(tmp_path)


# -- the run store as one pyarrow dataset ----------------------------------------------


def test_the_run_store_reads_as_one_dataset_with_every_files_rows(tmp_path):
    import pyarrow.dataset as ds

    from nudgesim.experiment import read_store, run_store

    exp = Experiment(small(), levers={"nudges[leaflet].reach": [0.5, 1.0]}, replicates=2,
                     per_step=["adoption_rate"], measure=boom_if_full_reach, name="store")
    res = exp.run(out=tmp_path / "s", executor="serial", progress=False)
    data = run_store(tmp_path / "s")
    assert isinstance(data, ds.Dataset) and len(data.files) == 4
    # error runs' files have no outcome columns: the unified schema has them all
    assert {"final_adoption", "contacts_per_resident", "adoption_rate", "step", "status",
            "error", "elapsed_s"} <= set(data.schema.names)
    assert data.to_table(filter=ds.field("status") == "error").num_rows == 2
    frame = read_store(data)
    files = sorted((tmp_path / "s" / "runs").glob("*.parquet"))
    assert frame["run_id"].drop_duplicates().tolist() == [f.stem for f in files]
    for f in files:  # every file's rows, in its order, with nulls where it has no column
        mine = frame[frame["run_id"] == f.stem].reset_index(drop=True)
        one = pd.read_parquet(f)
        pd.testing.assert_frame_equal(mine[one.columns], one, check_dtype=False,
                                      check_exact=True)
    assert set(frame["run_id"]) == set(res.runs["run_id"])
    in_order = run_store(tmp_path / "s", res.runs["run_id"].tolist()[::-1])
    assert [Path(p).stem for p in in_order.files] == res.runs["run_id"].unique()[::-1].tolist()


def test_a_missing_run_file_and_an_empty_store_are_reported(tmp_path):
    from nudgesim.experiment import read_store, run_store

    with pytest.raises(ScenarioError, match="1 run file\\(s\\) missing, e.g. abc.parquet"):
        run_store(tmp_path, ["abc"])
    empty = read_store(run_store(tmp_path))
    assert empty.empty and list(empty.columns) == ["run_id"]


def test_cli_sweep_says_which_runs_failed_and_how_to_run_them_again(
    tmp_path, capsys, monkeypatch
):
    """A run that fails is a row; the command names the first error and --retry-errors."""
    import nudgesim.engine

    (tmp_path / "small.toml").write_text(SMALL)
    exp = tmp_path / "exp.toml"
    exp.write_text('scenario = "small.toml"\n[levers]\n"nudges[leaflet].reach" = [0.3, 0.6]\n')
    real = nudgesim.engine.simulate

    def fails_at_06(scenario, **kw):
        if scenario.nudges[0].reach == 0.6:
            raise MemoryError("no room")
        return real(scenario, **kw)

    monkeypatch.setattr(nudgesim.engine, "simulate", fails_at_06)
    argv = ["sweep", str(exp), "--out", str(tmp_path / "o"), "--executor", "serial",
            "--no-progress"]
    assert cli_main(argv) == 0
    out, err = capsys.readouterr()
    assert "2 runs (2 computed now, 0 reused, 1 errors)" in out
    assert err == ("  1 run(s) failed, e.g.: MemoryError: no room\n  their rows say why "
                   "(runs.parquet: status, error); the same command with --retry-errors "
                   "runs them again\n")
    monkeypatch.setattr(nudgesim.engine, "simulate", real)
    assert cli_main([*argv, "--retry-errors"]) == 0
    out, err = capsys.readouterr()
    assert "(1 computed now, 1 reused, 0 errors)" in out and err == ""


def test_a_lever_named_like_a_summary_number_is_one_column(tmp_path):
    """A lever on `steps` (also a number of the run summary) gave two clashing columns."""
    sc = Scenario.from_toml_str(SMALL)
    res = Experiment(sc, levers={"steps": [3, 5]}).run(out=tmp_path / "o", executor="serial",
                                                        progress=False)
    assert list(res.runs["steps"]) == [3, 5]
    assert "steps_x" not in res.runs and list(res.summary["steps"]) == [3, 5]


def test_text_and_regionless_outcomes_are_not_summarised(tmp_path):
    """With every summary key in the runs table (no outcomes named), the per-point summary
    averages numbers only: not the text outcomes (a column of None reads as numeric), nor,
    without regions, the regional ones, which are None in every run."""
    exp = Experiment(small(), {"nudges[leaflet].reach": [0.2, 0.8]}, replicates=2, seed=1)
    res = exp.run(out=tmp_path, executor="serial", progress=False)
    assert res.runs["lowest_region"].isna().all()
    cols = set(res.summary.columns)
    assert "final_adoption_mean" in cols and "lowest_ward_adoption_mean" in cols
    for name in ("lowest_region", "lowest_region_adoption", "lowest_ward", "scenario",
                 "impact_unit"):
        assert f"{name}_mean" not in cols and f"{name}_ci_low" not in cols, name
