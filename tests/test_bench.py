"""`nudgesim bench --quick` runs every contender at a tiny size and writes its table.
No timing assertions: speed is shown by the benchmark, never tested."""

from __future__ import annotations

import json
import re

import numpy as np
import pytest

from nudgesim import kernels
from nudgesim.bench import bench_main, kernels_target, vector_width
from nudgesim.errors import UsageError


def test_quick_bench_writes_the_table(tmp_path):
    assert bench_main(["--quick", "--out", str(tmp_path)]) == 0
    text = (tmp_path / "benchmark.md").read_text()
    for contender in ("engine", "ties", "weighted", "fractional", "cascade", "numpy", "agents",
                      "mesa", "scipy", "floor"):
        assert f"| {contender} | 2,000 |" in text
    assert "bytes / resident" in text and "## Machine" in text and "Reproduce:" in text
    assert "Engine step ÷ memory floor, paired" in text
    assert ("`ties`, `weighted`, `fractional` and `cascade` step ÷ scipy's `A @ x` on the "
            "same ties, paired") in text
    data = json.loads((tmp_path / "benchmark.json").read_text())
    for name in ("ties", "weighted", "fractional", "cascade"):
        paired = next(r for r in data["rows"] if r["contender"] == name)["extra"]["paired_scipy_ratio"]
        assert paired["pairs"] == 6 and 0 < paired["min"] <= paired["median"] <= paired["max"]
    for name in ("weighted", "fractional"):  # float sums kept: rows summed, every row's step
        extra = next(r for r in data["rows"] if r["contender"] == name)["extra"]
        assert 0 <= extra["rows_summed_share"] <= 1 and extra["every_row_sec_per_step"] > 0
    assert "float tie sums kept, a row summed again when a neighbour changed (" in text
    assert {r["contender"] for r in data["rows"]} == {
        "engine", "ties", "weighted", "fractional", "cascade", "numpy", "agents", "mesa", "scipy",
        "floor"}
    assert all(r["sec_per_step"] > 0 for r in data["rows"])


def test_bad_options_name_the_field(tmp_path):
    from nudgesim.cli import UsageError

    with pytest.raises(UsageError, match="--contenders"):
        bench_main(["--contenders", "engine,fortran", "--out", str(tmp_path)])
    with pytest.raises(UsageError, match="--sizes"):
        bench_main(["--sizes", "10,abc", "--out", str(tmp_path)])


def test_first_run_times_the_whole_command_on_an_empty_cache(tmp_path):
    town = tmp_path / "town.toml"
    town.write_text('name = "town"\nsteps = 4\n[population]\nsize = 300\n')
    out = tmp_path / "bench"
    assert bench_main(["--first-run", "--quick", "--scenario", str(town), "--out", str(out)]) == 0
    text = (out / "first_run.md").read_text()
    assert "| first, empty kernel cache |" in text and "numba imported by the command: False; pandas: False" in text
    assert "nudgesim.cli" in text and "vector_width" in text and "python_loop_seconds" in text
    data = json.loads((out / "first_run.json").read_text())["first_run"]
    assert data["cold_seconds"] > 0 and len(data["warm_seconds"]) == 1
    with pytest.raises(UsageError, match="--scenario"):
        bench_main(["--first-run", "--scenario", str(tmp_path / "nope.toml")])


@pytest.mark.skipif(not kernels.AVAILABLE, reason="numba not installed or disabled")
def test_contended_runs_each_load_and_stops_its_competitors(tmp_path):
    assert bench_main(["--contended", "--quick", "--sizes", "60000", "--loads", "quiet,busy",
                       "--out", str(tmp_path)]) == 0
    data = json.loads((tmp_path / "contended.json").read_text())
    assert [r["load"] for r in data["rows"]] == ["quiet", "busy"]
    for r in data["rows"]:
        assert set(r["seconds"]) >= {"numpy", "default", "1"}
        assert all(v > 0 for v in r["seconds"].values())
    assert "default ÷ numpy" in (tmp_path / "contended.md").read_text()
    with pytest.raises(UsageError, match="--loads"):
        bench_main(["--contended", "--loads", "quiet,earthquake", "--out", str(tmp_path)])


@pytest.mark.parametrize(("flags", "expected"), [
    ("fpu sse2 avx avx2 fma avx512f avx512bw avx512vl", "AVX-512, 512-bit (avx512f, bw, vl)"),
    ("fpu sse2 avx avx2 fma", "AVX2, 256-bit (no AVX-512)"),
    ("fpu sse2", "SSE or narrower, 128-bit"),
])
def test_vector_width_names_the_widest_instruction_set(flags, expected):
    assert vector_width(f"processor\t: 0\nflags\t\t: {flags}\n") == expected


@pytest.mark.skipif(not kernels.AVAILABLE, reason="numba not installed or disabled")
def test_kernels_target_says_when_numba_was_told_another_cpu(monkeypatch):
    # numba reads NUMBA_CPU_NAME / NUMBA_CPU_FEATURES at import: patch its config as they would
    from numba.core import config

    host = kernels_target()
    assert host.endswith("(this CPU)")
    monkeypatch.setattr(config, "CPU_NAME", "haswell")
    monkeypatch.setattr(config, "CPU_FEATURES", "+avx,+avx2,+fma,+sse4.2")
    monkeypatch.setenv("NUMBA_CPU_NAME", "haswell")
    assert kernels_target() == ("haswell, AVX2, 256-bit (no AVX-512) (set by NUMBA_CPU_NAME / "
                                "NUMBA_CPU_FEATURES, not this CPU's own)")


@pytest.mark.skipif(not kernels.AVAILABLE, reason="numba not installed or disabled")
def test_the_machine_section_names_the_decide_block_and_the_l2_it_comes_from(monkeypatch):
    from nudgesim import bench

    monkeypatch.setattr(bench, "python_loop_seconds", lambda: 0.0)
    monkeypatch.setattr(kernels, "block", lambda: 4096)
    monkeypatch.setattr(kernels, "l2_bytes", lambda: 512 * 1024)
    assert bench.machine()["decide_block"] == "4,096 residents (L2 512 KB a thread)"
    monkeypatch.setattr(kernels, "l2_bytes", lambda: 0)
    assert bench.machine()["decide_block"] == "4,096 residents (L2 size unknown)"


@pytest.mark.skipif(not kernels.AVAILABLE, reason="numba not installed or disabled")
def test_the_floor_reads_on_the_threads_the_engine_would_get(monkeypatch):
    # on a busy machine a read on every thread waits for the one that lost its core while
    # the engine runs one: the floor takes the engine's thread count, whatever the load
    from types import SimpleNamespace

    from nudgesim.bench import _Floor

    kernels.load()
    monkeypatch.setattr(kernels, "ADAPTIVE_THREADS", True)
    monkeypatch.setattr(kernels, "affinity", lambda: {0, 1})
    monkeypatch.setattr(kernels, "_QUOTA", [None])
    n = 10**6  # the size decides the team (PARALLEL_MIN_N); the arrays can stay small
    indptr = np.arange(0, 4001, 4, dtype=np.int64)
    net = SimpleNamespace(indptr=indptr, indices=np.zeros(4000, dtype=np.int32))
    eng = SimpleNamespace(n=n, network=net, adopted=np.zeros(1000, dtype=bool))
    full = min(2, kernels.numba.get_num_threads())
    for others, expected in ((0.0, full), (1.0, 1)):
        monkeypatch.setattr(kernels, "_METER", lambda cpus, o=others: o)
        floor = _Floor(eng)  # type: ignore[arg-type]
        assert floor.cold() > 0
        assert floor.threads == [expected, expected]


def test_national_scenario_scales_the_borough_ward_by_ward():
    from nudgesim.bench import national_scenario

    sc = national_scenario(100_000, steps=52, ward_size=2_000)
    wards = sc.population.wards
    assert sc.population.size == 100_000 and len(wards) == 50
    assert [w.name for w in wards[:2]] == ["Abbey Fields 1", "Brook Green 1"]
    assert wards[24].name == "Abbey Fields 2" and wards[24].baseline == wards[0].baseline
    by_kind = {n.kind: n for n in sc.nudges}
    # Dockside, Gasworks, Tannery are wards 3, 6, 19 of 24: copies at k and k + 24 (< 50)
    assert sorted(by_kind["community_partnership"].wards) == [
        "Dockside 1", "Dockside 2", "Gasworks 1", "Gasworks 2", "Tannery 1", "Tannery 2"]
    assert by_kind["ambassadors"].targeting.count == 1_000  # 200 per 20,000 households
    assert len(by_kind["default"].targeting.wards) == 8  # 4 borough wards x 2 copies


def test_scale_measures_a_small_size_and_records_a_refused_one(tmp_path):
    # 10^7 households need a few GB by the estimate: refused under a 1 GB limit, not raised
    assert bench_main(["--scale", "--scale-sizes", "2e4,1e7", "--scale-steps", "2",
                       "--scale-scores", "degree,kcore", "--max-memory", "1G",
                       "--out", str(tmp_path)]) == 0
    text = (tmp_path / "scale.md").read_text()
    assert ("| households | wards | tie ends | estimate GB | status | set-up s | graph s | steps "
            "| median step | steps total s | × floor | paired | peak GB | load before → after |"
            ) in text
    assert "| 20,000 | 2 |" in text and "| 10,000,000 | 1,250 | – |" in text
    assert re.search(r"refused: needs [0-9.]+ GB \(estimate\), limit 1\.0 GB \(--max-memory\)",
                     text)
    data = json.loads((tmp_path / "scale.json").read_text())
    small, big = data["rows"]
    assert small["status"] == "measured" and len(small["step_seconds"]) == 2
    stages = [s["stage"] for s in small["stages"]]
    assert stages == ["scenario", "traits and wards", "graph", "initial adopters",
                      "engine set-up", "score: degree", "score: kcore", "2 steps",
                      "result tables"]
    assert all(s["seconds"] >= 0 and s["peak"] > 0 for s in small["stages"])
    assert small["tie_ends"] > 0 and small["peak"] >= small["rss_start"]
    # the row's peak is the run's: scores timed on their own are left to their stage rows
    assert small["peak"] == max(s["peak"] for s in small["stages"]
                                if not s["stage"].startswith("score:"))
    assert big["status"].startswith("refused") and "stages" not in big
    assert big["estimate"] > 10**9


@pytest.mark.skipif(not kernels.AVAILABLE, reason="numba not installed or disabled")
def test_scale_reads_the_floor_after_every_step_and_keeps_it_off_the_steps_memory(
        monkeypatch):
    # each step is paired with the floor read straight after it; the floor's buffers (a
    # flush buffer made 1 GB here) are not the run's memory
    from nudgesim import bench
    from nudgesim.bench import scale_one

    monkeypatch.setattr(kernels, "ENABLED", True)  # the floor is the compiled path's
    monkeypatch.setattr(bench, "_last_level_cache_bytes", lambda: 2**28)
    row = scale_one(20_000, 3, scores=())
    assert row["compiled"] and len(row["floor_each"]) == 3
    ratios = np.array(row["step_seconds"]) / np.array(row["floor_each"])
    assert row["x_floor_paired"] == {"median": np.median(ratios), "min": ratios.min(),
                                     "max": ratios.max(), "pairs": 3}
    assert row["floor_seconds"] == np.median(row["floor_each"])
    steps = next(s for s in row["stages"] if s["stage"] == "3 steps")
    assert 0 < steps["peak"] < 2**30 and steps["rss_after"] < 2**30


def test_scale_compiles_the_kernels_before_any_size_on_a_cold_cache(monkeypatch):
    # else the first size runs on numpy and the next times the compiling as its set-up
    from nudgesim import bench, engine

    compiled: list[int] = []
    monkeypatch.setattr(kernels, "AVAILABLE", True)
    monkeypatch.setattr(kernels, "cache_is_warm", lambda steps=3: steps != 52)
    monkeypatch.setattr(engine, "warm_up", lambda steps=3: compiled.append(steps) or 31.0)
    assert bench._warm_for_scale([52, 52, 200]) == (
        "compiled first, 31.0 s (numba's cache was cold)")
    assert compiled == [52]
    monkeypatch.setattr(kernels, "cache_is_warm", lambda steps=3: True)
    assert bench._warm_for_scale([52]) == "numba's cache warm" and compiled == [52]
    monkeypatch.setattr(kernels, "AVAILABLE", False)
    assert bench._warm_for_scale([52]).startswith("none (numba not installed")


def test_scale_options_name_the_field(tmp_path):
    for argv, field in ((["--scale-sizes", "1e6,lots"], "--scale-sizes"),
                        (["--scale-sizes", "50"], "--scale-sizes"),
                        (["--scale-sizes", "1e4,2e4", "--scale-steps", "2,3,4"], "--scale-steps"),
                        (["--scale-scores", "degree,pagerank"], "--scale-scores"),
                        (["--max-memory", "plenty"], "--max-memory")):
        with pytest.raises(UsageError, match=field):
            bench_main(["--scale", *argv, "--out", str(tmp_path)])


@pytest.mark.parametrize("method, label", [("fast_louvain", "fast Louvain, compiled"),
                                           ("auto", "Leiden, igraph")])
def test_scale_times_communities_at_any_size_and_names_the_method(method, label):
    """No size is skipped any more; the stage says which method ran (auto: Leiden at
    20,000 households, fast Louvain above 100,000)."""
    from nudgesim.bench import scale_one

    row = scale_one(20_000, 1, scores=("community",), community_method=method)
    assert [s["stage"] for s in row["stages"]][5] == f"score: community ({label})"
    assert row["skipped"] == {}


def test_scale_records_a_community_method_the_limit_refuses(monkeypatch):
    """As a run's memory check would refuse it, --scale does not time a community method
    that cannot fit the limit: the row says so instead of the process running out."""
    from nudgesim import limits
    from nudgesim.bench import _memory_status, scale_one

    monkeypatch.setenv(limits.ENV_MAX_MEMORY, str(_memory_status()["VmRSS"] + 10_000))
    row = scale_one(20_000, 1, scores=("community",), community_method="leiden")
    assert not any(s["stage"].startswith("score: community") for s in row["stages"])
    assert row["skipped"]["community"].startswith("(Leiden, igraph) not timed: it needs ~")


def test_scale_community_method_is_checked(tmp_path):
    with pytest.raises(UsageError, match="--scale-community-method: 'louvain'; allowed: auto"):
        bench_main(["--scale", "--scale-community-method", "louvain", "--out", str(tmp_path)])
