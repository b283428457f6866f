"""Ward tables: `[population] wards = "wards.csv"` (or Parquet), per-ward trait means, and
the messages a council's table gets when something in it is wrong."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

import nudgesim as ns
from nudgesim.cli import main as cli
from nudgesim.population import build_population
from nudgesim.rng import Streams
from nudgesim.scenario import PopulationSpec, Scenario, read_ward_table, with_mean
from nudgesim.spec import Beta, Fixed, Normal, Uniform

TABLE = "name,households,baseline\nAbbey,120,0.2\nBrook,80,0.35\nCastle,100,\n"


def _scenario(tmp_path: Path, table: str = TABLE, name: str = "wards.csv", extra: str = "") -> Path:
    (tmp_path / name).write_text(table)
    path = tmp_path / "s.toml"
    path.write_text(f'name = "t"\nsteps = 4\n[population]\nwards = "{name}"\n{extra}')
    return path


def test_a_ward_table_is_the_inline_list(tmp_path):
    sc = Scenario.from_toml(_scenario(tmp_path))
    inline = Scenario.from_toml_str(
        'name = "t"\nsteps = 4\n[population]\nwards = [\n'
        '{ name = "Abbey", size = 120, baseline = 0.2 },\n'
        '{ name = "Brook", size = 80, baseline = 0.35 },\n{ name = "Castle", size = 100 }]\n')
    assert sc.to_dict() == inline.to_dict()  # an empty baseline cell is no baseline
    assert sc.population.ward_names() == ["Abbey", "Brook", "Castle"]
    assert sc.population.ward_sizes() == [120, 80, 100]
    a = ns.simulate(sc, counterfactual=False).by_ward
    b = ns.simulate(inline, counterfactual=False).by_ward
    pd.testing.assert_frame_equal(a, b)


def test_the_saved_scenario_holds_its_wards(tmp_path):
    """A run's scenario.toml runs without the table, and its id follows the content."""
    sc = Scenario.from_toml(_scenario(tmp_path))
    again = Scenario.from_toml_str(sc.to_toml(), base_dir=tmp_path / "elsewhere")
    assert again.to_dict() == sc.to_dict()


def test_parquet_and_relative_to_the_scenario_folder(tmp_path, monkeypatch):
    sub = tmp_path / "council"
    sub.mkdir()
    pd.read_csv(pd.io.common.StringIO(TABLE)).to_parquet(sub / "wards.parquet")
    (sub / "s.toml").write_text('[population]\nwards = "wards.parquet"\n')
    monkeypatch.chdir(tmp_path)  # not the scenario's folder
    sc = Scenario.from_toml(sub / "s.toml")
    assert sc.population.ward_sizes() == [120, 80, 100]
    assert [w.baseline for w in sc.population.wards] == [0.2, 0.35, None]


@pytest.mark.parametrize(("table", "expected"), [
    ("ward,households,participation_rate\nA,10,0.2\n",
     "unknown column 'ward' (rename it to 'name'); allowed: name, households, baseline, "
     "region, attitude_mean, habit_mean, cost_mean, susceptibility_mean"),
    ("name,baseline\nA,0.2\n", "missing column 'households'"),
    ("name,households\n", "no rows; allowed: one row per ward"),
    ("name,households,baseline\nA,10,0.2\nB,10,1.3\n",
     "row 3 (ward 'B'), column 'baseline': 1.3 is not allowed; allowed: a share in [0, 1]"),
    ("name,households,baseline\nA,10,0.2\nA,12,0.3\n",
     "row 3, column 'name': ward 'A' also on row 2; allowed: each ward once"),
    ("name,households\nA,10.5\n",
     "row 2 (ward 'A'), column 'households': 10.5 is not allowed; allowed: a whole number >= 1"),
    ("name,households\nA,\n", "row 2 (ward 'A'), column 'households': nan is not allowed"),
    ("name,households\nA,0\n", "column 'households': 0 is not allowed"),
    ("name,households,cost_mean\nA,10,inf\n",
     "row 2 (ward 'A'), column 'cost_mean': inf is not allowed; allowed: a number in [0, 1]"),
    ("name,households,attitude_mean\nA,10,abc\n",
     "column 'attitude_mean': 'abc' is not allowed; allowed: a finite number"),
    ("name,households\n,10\n", "row 2, column 'name': empty"),
])
def test_a_bad_table_is_one_line_naming_file_column_row_and_value(tmp_path, table, expected):
    path = _scenario(tmp_path, table)
    with pytest.raises(ns.ScenarioError) as err:
        Scenario.from_toml(path)
    msg = str(err.value)
    assert "\n" not in msg
    assert msg.startswith(f"{path}: population.wards: wards.csv: "), msg
    assert expected in msg, msg


def test_missing_and_unknown_files(tmp_path):
    with pytest.raises(ns.ScenarioError, match=r"population.wards: nope.csv: file not found"):
        Scenario.from_toml_str('[population]\nwards = "nope.csv"\n', base_dir=tmp_path)
    (tmp_path / "w.xlsx").write_text("x")
    with pytest.raises(ns.ScenarioError, match=r"unknown file type '.xlsx'; allowed: .csv, .parquet"):
        Scenario.from_toml_str('[population]\nwards = "w.xlsx"\n', base_dir=tmp_path)


def test_a_size_that_disagrees_with_the_households(tmp_path):
    path = _scenario(tmp_path, extra="size = 1000\n")
    with pytest.raises(ns.ScenarioError, match=r"size \(1000\) differs from the sum of ward sizes \(300\)"):
        Scenario.from_toml(path)


def test_validate_and_run_agree_on_a_ward_table_given_as_residents(tmp_path, capsys):
    """The issue's case: a council's ward table named as population.csv is refused by
    both commands with the same message, which says where it belongs."""
    (tmp_path / "wards.csv").write_text("ward,households,participation_rate\nA,100,0.2\nB,120,0.3\n")
    path = tmp_path / "s.toml"
    path.write_text('name = "t"\nsteps = 3\n[population]\ncsv = "wards.csv"\n')
    assert cli(["validate", str(path)]) == 2
    first = capsys.readouterr().err
    assert cli(["run", str(path), "--out", str(tmp_path / "out"), "--no-plot"]) == 2
    second = capsys.readouterr().err
    assert first == second
    assert "looks like a ward table" in first and 'population.wards = "wards.csv"' in first


def test_validate_and_run_accept_a_ward_table(tmp_path, capsys):
    path = _scenario(tmp_path)
    assert cli(["validate", str(path)]) == 0
    assert "300 residents" in capsys.readouterr().out
    assert cli(["run", str(path), "--out", str(tmp_path / "out"), "--no-plot"]) == 0


# -- per-ward trait means ------------------------------------------------------------------


def test_with_mean_moves_each_distribution_to_its_mean():
    assert with_mean(Fixed(value=0.3), 0.5) == Fixed(value=0.5)
    assert with_mean(Normal(mean=0, sd=1, low=-3, high=3), 0.7) == Normal(mean=0.7, sd=1, low=-3, high=3)
    b = with_mean(Beta(a=2, b=2), 0.25)  # same concentration a + b = 4
    assert (b.a, b.b) == pytest.approx((1.0, 3.0))
    u = with_mean(Uniform(low=0.5, high=1.5), 1.2)
    assert (u.low, u.high) == pytest.approx((0.7, 1.7))
    with pytest.raises(ValueError, match="open interval"):
        with_mean(Beta(a=2, b=2), 1.0)


def test_ward_means_set_the_wards_distributions():
    """Two wards of 4,000: sample means within 0.05 of the written means (the standard
    error is 1/sqrt(4000) = 0.016 for attitude and 0.004 for a Beta(a+b=4) cost)."""
    spec = PopulationSpec(wards=[
        {"name": "Low", "size": 4000, "attitude_mean": -1.0, "cost_mean": 0.7},
        {"name": "High", "size": 4000, "attitude_mean": 1.0, "cost_mean": 0.3},
    ])
    pop = build_population(spec, Streams(3))
    for w, (att, cost) in enumerate([(-1.0, 0.7), (1.0, 0.3)]):
        assert pop.attitude[pop.ward == w].mean() == pytest.approx(att, abs=0.05)
        assert pop.cost[pop.ward == w].mean() == pytest.approx(cost, abs=0.05)
    # the other traits keep their one draw of n: bit-identical to wards without means
    plain = build_population(PopulationSpec(wards=[
        {"name": "Low", "size": 4000}, {"name": "High", "size": 4000}]), Streams(3))
    np.testing.assert_array_equal(pop.susceptibility, plain.susceptibility)
    np.testing.assert_array_equal(pop.habit, plain.habit)


def test_a_ward_mean_only_changes_its_own_ward():
    base = [{"name": "A", "size": 50}, {"name": "B", "size": 50}]
    pop = build_population(PopulationSpec(wards=base), Streams(1))
    moved = build_population(PopulationSpec(wards=[base[0], {**base[1], "attitude_mean": 0.0}]),
                             Streams(1))
    # ward B at the population's own mean: drawn ward by ward from the same stream
    np.testing.assert_array_equal(pop.attitude, moved.attitude)


def test_a_ward_mean_the_distribution_cannot_reach(tmp_path):
    path = _scenario(tmp_path, "name,households,cost_mean\nA,10,0.5\nB,10,1.0\n",
                     extra='cost = { dist = "beta", a = 2.0, b = 2.0 }\n')
    with pytest.raises(ns.ScenarioError, match=r"population.wards\[B\].cost_mean: 1 is not "
                                               r"allowed with population.cost = beta"):
        Scenario.from_toml(path)


def test_read_ward_table_is_cached_and_follows_edits(tmp_path):
    p = tmp_path / "w.csv"
    p.write_text("name,households\nA,10\n")
    assert read_ward_table(p) == [{"name": "A", "size": 10}]
    p.write_text("name,households\nA,10\nBee,20\n")
    assert [r["name"] for r in read_ward_table(p)] == ["A", "Bee"]


# -- nudgesim init -------------------------------------------------------------------------


def test_init_writes_a_scenario_that_loads_and_never_overwrites(tmp_path, capsys):
    from nudgesim import scenarios

    shipped = scenarios.folder() / "borough_geo"
    out = tmp_path / "plans" / "ours.toml"
    out.parent.mkdir()
    argv = ["init", "--wards", str(shipped / "wards.csv"), "--boundaries",
            str(shipped / "wards.geojson"), "--out", str(out)]
    assert cli(argv) == 0
    sc = Scenario.from_toml(out)
    assert sc.name == "ours" and len(sc.population.ward_names()) == 24
    assert sc.network.cross == "adjacent" and sc.geography is not None
    text = out.read_text()
    assert 'wards = "' in text and not Path(text.split('wards = "')[1].split('"')[0]).is_absolute()
    capsys.readouterr()
    out.write_text("# the council's edits\n")
    assert cli(argv) == 2
    assert "--out: " in capsys.readouterr().err and out.read_text() == "# the council's edits\n"
    assert cli([*argv, "--force"]) == 0
    assert Scenario.from_toml(out).name == "ours"


def test_init_without_boundaries_and_with_a_bad_table(tmp_path, capsys):
    (tmp_path / "w.csv").write_text(TABLE)
    out = tmp_path / "s.toml"
    assert cli(["init", "--wards", str(tmp_path / "w.csv"), "--out", str(out)]) == 0
    sc = Scenario.from_toml(out)
    assert sc.network.cross == "uniform" and sc.geography is None
    (tmp_path / "bad.csv").write_text("name,households,baseline\nA,10,2\n")
    bad = tmp_path / "bad.toml"
    assert cli(["init", "--wards", str(tmp_path / "bad.csv"), "--out", str(bad)]) == 2
    assert "column 'baseline': 2 is not allowed" in capsys.readouterr().err
    assert not bad.exists()
    assert cli(["init", "--wards", str(tmp_path / "w.csv"), "--out", str(tmp_path / "x.txt")]) == 2


# ---------------------------------------------------------------------------------------
# Regions (issue 16): an optional `region` column; by_region.parquet and the lowest region
# ---------------------------------------------------------------------------------------

REGIONS = ("name,households,baseline,region\nAbbey,120,0.2,North\nBrook,80,0.35, South \n"
           "Castle,100,0.1,North\n")


def test_regions_sum_their_wards_step_by_step(tmp_path):
    """by_region is by_ward summed over each region's wards, exactly; rates are the sums'
    ratio (not a mean of ward rates); regions keep the table's order; names are stripped."""
    sc = Scenario.from_toml(_scenario(tmp_path, REGIONS))
    assert sc.population.ward_regions() == ["North", "South", "North"]
    res = ns.simulate(sc, counterfactual=True)
    reg, bw = res.by_region, res.by_ward
    assert list(reg.columns) == ["step", "region", "wards", "residents", "adopters",
                                 "adoption_rate", "counterfactual_adopters",
                                 "counterfactual_rate"]
    assert list(reg["region"].iloc[:2]) == ["North", "South"]
    assert len(reg) == 2 * (sc.steps + 1)
    for step in range(sc.steps + 1):
        w = bw[bw["step"] == step].set_index("ward")
        r = reg[reg["step"] == step].set_index("region")
        north = w.loc[["Abbey", "Castle"]]
        assert r.loc["North", "adopters"] == north["adopters"].sum()
        assert r.loc["North", "counterfactual_adopters"] == north["counterfactual_adopters"].sum()
        assert r.loc["North", "residents"] == 220 and r.loc["North", "wards"] == 2
        assert r.loc["South", "adopters"] == w.loc["Brook", "adopters"]
        assert r.loc["North", "adoption_rate"] == north["adopters"].sum() / 220
    last = reg[reg["step"] == sc.steps].set_index("region")["adoption_rate"]
    s = res.summary
    assert s["lowest_region"] == last.idxmin()
    assert s["lowest_region_adoption"] == last.min()
    assert tuple(s) == ns.Result.SUMMARY_KEYS


def test_without_regions_nothing_changes(tmp_path):
    """No region column: no by_region table or file, and the summary's usual keys, the
    region ones None."""
    res = ns.simulate(Scenario.from_toml(_scenario(tmp_path)), counterfactual=True)
    assert res.by_region is None
    assert tuple(res.summary) == ns.Result.SUMMARY_KEYS
    assert all(res.summary[k] is None for k in ns.Result.REGION_KEYS)
    out = res.save(tmp_path / "run", plot=False)
    assert not (out / "by_region.parquet").exists()
    saved = json.loads((out / "summary.json").read_text())
    assert saved["lowest_region"] is None and saved["lowest_region_adoption"] is None


def test_a_sweep_can_name_the_lowest_region(tmp_path):
    """lowest_region_adoption is a registered outcome: a sweep reports it per run; naming
    it without regions is refused up front."""
    from nudgesim.experiment import Experiment
    from nudgesim.outcomes import OUTCOMES

    assert OUTCOMES["lowest_region_adoption"].direction == "maximize"
    sc = Scenario.from_toml(_scenario(tmp_path, REGIONS))
    exp = Experiment(sc, {"steps": [2, 4]}, outcomes=["lowest_region_adoption"])
    table = exp.run(tmp_path / "sweep", executor="serial", progress=False).runs
    assert len(table) == 2 and table["lowest_region_adoption"].between(0, 1).all()
    plain = Scenario.from_toml(_scenario(tmp_path))
    with pytest.raises(ns.ScenarioError, match=r"outcomes: \['lowest_region_adoption'\] "
                                                r"need wards with regions"):
        Experiment(plain, {"steps": [2, 4]}, outcomes=["lowest_region_adoption"])


def test_a_run_with_regions_writes_by_region(tmp_path):
    res = ns.simulate(Scenario.from_toml(_scenario(tmp_path, REGIONS)))
    out = res.save(tmp_path / "run", plot=False)
    pd.testing.assert_frame_equal(pd.read_parquet(out / "by_region.parquet"), res.by_region)
    again = Scenario.from_toml(out / "scenario.toml")  # the saved scenario keeps regions
    assert again.population.ward_regions() == ["North", "South", "North"]


@pytest.mark.parametrize("cell", ["", "   "])
def test_an_empty_region_cell_is_refused_naming_the_row(tmp_path, cell):
    """A ward without a region would drop out of its region's totals: refused, not
    guessed; drop the column to run without regions."""
    (tmp_path / "w.csv").write_text(REGIONS.replace(" South ", cell))
    with pytest.raises(ns.ScenarioError, match=r"row 3 \(ward 'Brook'\), column 'region': "
                       r"empty is not allowed; allowed: a region name for every ward"):
        read_ward_table(tmp_path / "w.csv")


def test_inline_wards_need_a_region_for_every_ward_or_none():
    with pytest.raises(ns.ScenarioError, match=r"wards\[B\]\.region: missing"):
        Scenario.from_toml_str('[population]\nwards = [{ name = "A", region = "N" }, '
                               '{ name = "B" }]\n')
    with pytest.raises(ns.ScenarioError, match=r"region"):
        Scenario.from_toml_str('[population]\nwards = [{ name = "A", region = " " }]\n')


def test_whole_number_region_codes_in_parquet_are_text_and_fractions_are_refused(tmp_path):
    pd.DataFrame({"name": ["A", "B"], "households": [10, 5], "region": [3, 12]}).to_parquet(
        tmp_path / "w.parquet")
    assert [r["region"] for r in read_ward_table(tmp_path / "w.parquet")] == ["3", "12"]
    pd.DataFrame({"name": ["A"], "households": [10], "region": [3.5]}).to_parquet(
        tmp_path / "f.parquet")
    with pytest.raises(ns.ScenarioError, match=r"column 'region': 3.5 is not allowed"):
        read_ward_table(tmp_path / "f.parquet")


def test_a_region_in_a_csv_may_look_like_a_number(tmp_path):
    (tmp_path / "w.csv").write_text("name,households,region\nA,10,01\nB,5,E12000007\n")
    assert [r["region"] for r in read_ward_table(tmp_path / "w.csv")] == ["01", "E12000007"]
