"""The national scenario (issue 16): experiments/make_national.py's files, a tiny version of
them run end to end, and residents.parquet written in row groups only when asked."""

from __future__ import annotations

import importlib.util
import math
import tracemalloc
from pathlib import Path

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

import nudgesim as ns
from nudgesim.cli import build_parser
from nudgesim.cli import main as cli
from nudgesim.cli.run import cmd_run
from nudgesim.errors import UsageError
from nudgesim.population import ward_blocks
from nudgesim.result import Result

ROOT = Path(__file__).resolve().parent.parent
SHIPPED = ROOT / "experiments" / "scenarios" / "national"


def _script():
    spec = importlib.util.spec_from_file_location("make_national",
                                                  ROOT / "experiments" / "make_national.py")
    assert spec is not None and spec.loader is not None
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


@pytest.fixture(scope="module")
def make():
    return _script()


@pytest.fixture(scope="module")
def tiny(make, tmp_path_factory):
    out = tmp_path_factory.mktemp("national")
    make.main(["--households", "20000", "--wards", "40", "--out", str(out)])
    return out / "national.toml"


def test_region_totals_are_the_census_total_split_by_region(make):
    """Wales is its census share exactly; England's regions add up to the rest."""
    regions = make.region_households()
    assert sum(regions.values()) == 24_782_800 == make.ENGLAND + make.WALES
    assert regions["Wales"] == 1_347_100
    assert len(regions) == 10
    for name, millions in make.ENGLISH_REGIONS_M.items():  # shares kept within rounding
        assert abs(regions[name] / make.ENGLAND - millions / sum(
            make.ENGLISH_REGIONS_M.values())) < 1e-6


def test_the_shipped_files_are_what_the_script_writes(make, tmp_path):
    """The committed scenario is the script's output (seeded: same options, same bytes)."""
    make.main(["--out", str(tmp_path)])
    for name in ("national.toml", "wards.csv"):
        assert (tmp_path / name).read_bytes() == (SHIPPED / name).read_bytes(), name
    table = pd.read_csv(SHIPPED / "wards.csv")
    assert len(table) == 3_100 and table["households"].sum() == 24_782_800
    assert table["households"].min() >= 1 and table["name"].is_unique
    by_region = table.groupby("region", sort=False)["households"].sum().to_dict()
    assert by_region == make.region_households()


def test_the_shipped_scenario_loads_quickly_with_its_regions():
    sc = ns.Scenario.from_toml(SHIPPED / "national.toml")
    assert sum(sc.population.ward_sizes()) == 24_782_800
    assert len(set(sc.population.ward_regions())) == 10
    ambassadors = next(n for n in sc.nudges if n.kind == "ambassadors")
    assert ambassadors.targeting.count == round(200 * 24_782_800 / 20_000)  # 1% as the borough


def test_a_tiny_national_scenario_validates_and_runs(tiny, tmp_path, capsys):
    assert cli(["validate", str(tiny)]) == 0
    assert "20,000 residents" in capsys.readouterr().out
    out = tmp_path / "run"
    assert cli(["run", str(tiny), "--no-plot", "--out", str(out)]) == 0
    printed = capsys.readouterr().out
    assert "lowest region" in printed and "by_region.parquet" in printed
    assert not (out / "residents.parquet").exists()  # nothing per resident unless asked
    regions = pd.read_parquet(out / "by_region.parquet")
    assert regions["region"].nunique() == 10
    assert set(regions.groupby("step")["residents"].sum()) == {20_000}
    wards = pd.read_parquet(out / "by_ward.parquet")
    assert (regions.groupby("step")["adopters"].sum().to_numpy()
            == wards.groupby("step")["adopters"].sum().to_numpy()).all()


def test_run_writes_residents_when_asked(tiny, tmp_path, capsys):
    args = build_parser().parse_args(["run", str(tiny), "--no-plot", "--residents",
                                      "--out", str(tmp_path / "run")])
    assert cmd_run(args) == 0
    assert "residents.parquet" in capsys.readouterr().out
    table = pd.read_parquet(tmp_path / "run" / "residents.parquet")
    assert len(table) == 20_000
    assert list(table.columns) == ["resident", "ward", "region", "adopted",
                                   "counterfactual_adopted"]
    # each resident's row agrees with the run's own ward records at the end
    wards = pd.read_parquet(tmp_path / "run" / "by_ward.parquet")
    last = wards[wards["step"] == wards["step"].max()].set_index("ward")
    counts = table.groupby("ward", observed=True)[["adopted", "counterfactual_adopted"]].sum()
    assert (counts["adopted"] == last["adopters"].reindex(counts.index)).all()
    assert (counts["counterfactual_adopted"]
            == last["counterfactual_adopters"].reindex(counts.index)).all()
    assert (table.groupby("ward", observed=True).size()
            == last["residents"].reindex(counts.index)).all()


def _result(n: int, wards: int = 30, twin: bool = True, seed: int = 1) -> Result:
    """A Result made by hand (no simulation): n residents in `wards` wards of 3 regions."""
    sizes = np.full(wards, n // wards)
    sizes[: n - sizes.sum()] += 1
    sc = ns.Scenario.from_dict({"name": "fake", "steps": 1, "population": {"wards": [
        {"name": f"W{i}", "size": int(s), "region": f"R{i % 3}"} for i, s in enumerate(sizes)]}})
    rng = np.random.default_rng(seed)
    ts = pd.DataFrame({c: [0] for c in Result.LOG_COLUMNS}).assign(
        adoption_rate=0.0, cost=0.0, impact=0.0)
    by_ward = pd.DataFrame({"step": 0, "ward": [f"W{i}" for i in range(wards)],
                            "residents": sizes, "adopters": 0, "adoption_rate": 0.0})
    twin_result = None
    if twin:
        twin_result = Result.from_frames(sc, ts, by_ward, adopted=rng.random(n) < 0.2)
    return Result.from_frames(sc, ts, by_ward, adopted=rng.random(n) < 0.3,
                              counterfactual=twin_result)


@pytest.mark.parametrize(("n", "row_group"), [(1000, 1000), (1000, 64), (997, 100), (5, 1)])
def test_residents_are_written_exactly_in_row_groups(tmp_path, n, row_group):
    res = _result(n, wards=5)
    path = res.write_residents(tmp_path / "r.parquet", row_group=row_group)
    meta = pq.ParquetFile(path).metadata
    assert meta.num_row_groups == math.ceil(n / row_group)
    assert all(meta.row_group(i).num_rows == min(row_group, n - i * row_group)
               for i in range(meta.num_row_groups))
    table = pd.read_parquet(path)
    assert (table["resident"].to_numpy() == np.arange(n)).all()
    assert (table["adopted"].to_numpy() == res.adopted).all()
    assert res.counterfactual is not None
    assert (table["counterfactual_adopted"].to_numpy() == res.counterfactual.adopted).all()
    ward = ward_blocks(res.scenario.population, n)
    assert (table["ward"].astype(str).to_numpy() == np.array([f"W{w}" for w in ward])).all()
    assert (table["region"].astype(str).to_numpy()
            == np.array([f"R{w % 3}" for w in ward])).all()
    assert not list(tmp_path.glob(".r.parquet.*"))  # no temporary left behind


def test_residents_carry_ids_and_the_results_own_wards(tmp_path):
    """A Result that carries its residents' wards (Result.ward) and ids writes those."""
    res = _result(6, wards=3, twin=False)
    res.ward = np.array([2, 0, 1, 1, 0, 2], dtype=np.int32)
    res.ids = ["a", "b", "c", "d", "e", "f"]
    table = pd.read_parquet(res.write_residents(tmp_path / "r.parquet", row_group=4))
    assert table["resident"].tolist() == res.ids
    assert table["ward"].astype(str).tolist() == ["W2", "W0", "W1", "W1", "W0", "W2"]
    assert "counterfactual_adopted" not in table


def test_residents_are_never_held_twice(tmp_path):
    """Writing 3e6 residents keeps about a row group's worth of new arrays alive at a time:
    numpy's traced peak stays far under one full int64 column (24 MB), and arrow's pool
    peak (~30 MB of fixed writer buffers, whatever the size) does not grow from 3e5
    residents to 3e6, as it would by 24 MB if a whole column were built first."""
    row_group = 1 << 17
    pool = pa.default_memory_pool()
    small = _result(300_000)
    small.ward = ward_blocks(small.scenario.population, 300_000)  # as a run's Result
    small.write_residents(tmp_path / "small.parquet", row_group=row_group)
    fixed = pool.max_memory()
    res = _result(3_000_000)
    res.ward = ward_blocks(res.scenario.population, 3_000_000)
    tracemalloc.start()
    try:
        res.write_residents(tmp_path / "r.parquet", row_group=row_group)
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert peak < 4 * 2**20, peak  # a group: 1 MB of ids, 0.5 MB of ward and region codes
    assert pool.max_memory() - fixed < 4 * 2**20, pool.max_memory() - fixed
    assert pq.ParquetFile(tmp_path / "r.parquet").metadata.num_rows == 3_000_000


def test_a_save_without_residents_writes_none_and_with_them_replaces_the_folder(tmp_path):
    res = _result(100, wards=4)
    out = res.save(tmp_path / "run", plot=False)
    assert not (out / "residents.parquet").exists()
    res.save(out, plot=False, residents=True)
    assert len(pd.read_parquet(out / "residents.parquet")) == 100
    res.save(out, plot=False)  # a rerun without them leaves no old file behind
    assert not (out / "residents.parquet").exists()


def test_residents_from_a_file_without_their_wards_are_refused_in_one_line(tmp_path):
    """A Result made without its residents' wards (the engine always gives them) whose
    residents came from a graph or CSV (ids known) is refused with a UsageError, never
    written with guessed wards."""
    res = _result(6, wards=3, twin=False)
    res.ids = list("abcdef")
    with pytest.raises(UsageError, match=r"^residents.parquet: this run's residents came from a "
                       r"file"):
        res.write_residents(tmp_path / "r.parquet")
    assert not list(tmp_path.iterdir())


def test_a_run_on_a_graph_writes_its_residents_ids_and_wards(tmp_path):
    """The engine's Result carries each resident's ward, so residents read from a graph
    are written with their own ids and the wards the run used."""
    import networkx as nx

    G = nx.relabel_nodes(nx.path_graph(40), {i: f"h{i}" for i in range(40)})
    sc = ns.Scenario.from_dict({"steps": 2, "population": {"wards": [
        {"name": "North", "size": 10, "region": "A"}, {"name": "South", "size": 30,
                                                       "region": "B"}]}})
    res = ns.simulate(sc, graph=G)
    table = pd.read_parquet(res.write_residents(tmp_path / "r.parquet"))
    assert table["resident"].tolist() == [f"h{i}" for i in range(40)]
    assert table["ward"].astype(str).tolist() == ["North"] * 10 + ["South"] * 30
    assert table["region"].astype(str).tolist() == ["A"] * 10 + ["B"] * 30
    assert table["adopted"].tolist() == res.adopted.tolist()
