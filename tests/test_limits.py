"""Size before allocation: the memory estimate bounds a measured peak, and a scenario that
cannot fit is refused at once, before anything is built."""

import json
import subprocess
import sys
import textwrap
import time

import pytest

from nudgesim import Scenario, limits
from nudgesim.errors import ResourceError, UsageError
from nudgesim.limits import (
    check_memory,
    estimate_memory,
    expected_tie_ends,
    format_bytes,
    parse_size,
)


@pytest.mark.parametrize(
    "text, size",
    [("8G", 8_000_000_000), ("500 MB", 500_000_000), ("1.5GiB", 1.5 * 2**30), ("2k", 2000),
     ("123456", 123456), (4096, 4096), ("1T", 10**12)],
)
def test_sizes_are_read_with_units(text, size):
    assert parse_size(text) == int(size)


@pytest.mark.parametrize("text", ["", "lots", "-1G", "0", "nanG", "1e999", "8X"])
def test_a_bad_size_is_a_usage_error_naming_the_option(text):
    with pytest.raises(UsageError, match="--max-memory"):
        parse_size(text)


def _scenario(n, network, steps=52, wards=1):
    return Scenario.from_dict(
        {"steps": steps, "population": {"size": n, "wards": wards}, "network": network}
    )


@pytest.mark.parametrize(
    "network, ends",
    [
        ({"kind": "watts_strogatz", "k": 10}, 10_000),
        ({"kind": "erdos_renyi", "mean_degree": 6.0}, 6_000),
        ({"kind": "barabasi_albert", "m": 3}, 2 * 3 * 997),
        ({"kind": "complete"}, 1000 * 999),
        ({"kind": "ward_clustered", "mean_degree_in": 8.0, "mean_degree_out": 2.0}, 10_000),
    ],
)
def test_expected_tie_ends_follow_each_generator(network, ends):
    sc = _scenario(1000, network, wards=4)
    assert expected_tie_ends(sc, 1000) == ends


def test_ward_clustered_with_probabilities_counts_pairs_inside_and_across_wards():
    sc = _scenario(100, {"kind": "ward_clustered", "p_in": 0.5, "p_out": 0.1}, wards=2)
    inside = 2 * 50 * 49  # ordered pairs within the two wards
    across = 100 * 100 - 2 * 50 * 50
    assert expected_tie_ends(sc, 100) == pytest.approx(0.5 * inside + 0.1 * across, abs=1)


@pytest.mark.parametrize(
    "n, wards, network",
    [(100_000, 8, {"kind": "watts_strogatz", "k": 12}),
     # the national scenario's graph: wards of 8,000, 8 ties inside and 2 across
     (200_000, 25, {"kind": "ward_clustered", "mean_degree_in": 8.0, "mean_degree_out": 2.0})],
    ids=["small_world", "ward_clustered"],
)
def test_measured_peak_lies_under_the_estimate_and_within_twice_of_it(n, wards, network):
    """A fresh process runs the scenario; its peak above the imported baseline (VmHWM)
    must not exceed the estimate, and the estimate must not be more than twice the peak
    (else the check would refuse runs that fit)."""
    spec = {"steps": 20, "population": {"size": n, "wards": wards}, "network": network}
    code = textwrap.dedent(
        f"""
        import json, nudgesim as ns
        ns.simulate(ns.Scenario.from_dict({{"steps": 2, "population": {{"size": 200}}}}))
        import scipy.sparse  # what a larger graph's run imports (a small one does not)
        def status(key):
            for line in open("/proc/self/status"):
                if line.startswith(key):
                    return int(line.split()[1]) * 1024
        base = status("VmRSS")
        open("/proc/self/clear_refs", "w").write("5")  # reset the peak
        spec = json.loads({json.dumps(json.dumps(spec))})
        spec["nudges"] = [{{"kind": "reminder", "every": 1}}]
        sc = ns.Scenario.from_dict(spec)
        # estimated in the process that runs it: which engine runs (and so the estimate)
        # depends on whether this process has the kernels loaded
        from nudgesim.limits import estimate_memory
        est = estimate_memory(sc).total
        ns.simulate(sc)
        print(json.dumps([status("VmHWM") - base, est]))
        """
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    peak, est = json.loads(out.stdout.strip().splitlines()[-1])
    assert peak <= est <= 2 * peak, (format_bytes(peak), format_bytes(est))


@pytest.mark.parametrize(
    "population, network, steps",
    [
        ({"size": 10**9}, {"kind": "watts_strogatz"}, 52),
        ({"size": 10**8}, {"kind": "erdos_renyi", "mean_degree": 10.0}, 52),
        ({"size": 20_000}, {"kind": "complete"}, 52),
    ],
)
def test_a_run_that_cannot_fit_is_refused_at_once_with_estimate_and_limit(
    population, network, steps
):
    sc = Scenario.from_dict({"steps": steps, "population": population, "network": network})
    t0 = time.perf_counter()
    with pytest.raises(ResourceError) as err:
        check_memory(sc, "4G")
    assert time.perf_counter() - t0 < 1.0  # nothing was built
    msg = str(err.value)
    assert msg.startswith("memory: ") and "4.0 GB limit (--max-memory)" in msg
    assert "\n" not in msg


def test_the_limit_comes_from_the_environment_when_no_option_is_given(monkeypatch):
    sc = _scenario(100_000, {"kind": "watts_strogatz", "k": 10})
    monkeypatch.setenv("NUDGESIM_MAX_MEMORY", "10M")
    with pytest.raises(ResourceError, match="NUDGESIM_MAX_MEMORY"):
        check_memory(sc)
    monkeypatch.setenv("NUDGESIM_MAX_MEMORY", "2G")
    assert check_memory(sc).total < 2e9


def test_workers_each_need_their_own_copy():
    sc = _scenario(200_000, {"kind": "watts_strogatz", "k": 10})
    one = estimate_memory(sc).total
    check_memory(sc, one + 1)
    with pytest.raises(ResourceError, match="x 4 workers"):
        check_memory(sc, one + 1, copies=4)


def test_graph_files_are_costed_by_their_size(tmp_path):
    path = tmp_path / "g.edgelist"
    path.write_text("".join(f"{i} {i + 1}\n" for i in range(10_000)))
    sc = Scenario.from_dict(
        {"population": {}, "network": {"kind": "file", "path": str(path)}}
    )
    est = estimate_memory(sc)
    assert est.parts["graph file"] == limits.GRAPH_FILE_FACTOR * path.stat().st_size


@pytest.mark.parametrize("files", ["graph", "csv"])
def test_sizes_read_from_files_are_checked_again_once_known(tmp_path, monkeypatch, files):
    """The first check knows only a graph file's or residents CSV's size: once the world is
    read, the check runs again with its real residents and ties, so what grows with them
    (the engine, a community targeting's working memory) cannot slip past the limit."""
    from nudgesim import world as worldmod
    from nudgesim.rng import Streams

    data: dict = {"steps": 2, "population": {}, "nudges": [{
        "kind": "information", "label": "x", "start": 1,
        "targeting": {"strategy": "community", "count": 5}}]}
    if files == "graph":
        path = tmp_path / "g.edgelist"
        path.write_text("".join(f"{i} {(i + 1) % 300}\n" for i in range(300)))
        data["network"] = {"kind": "file", "path": str(path)}
    else:
        path = tmp_path / "people.csv"
        path.write_text("id\n" + "".join(f"{i}\n" for i in range(300)))
        data["population"] = {"csv": str(path)}
    sc = Scenario.from_dict(data)
    calls = []
    real = limits.check_memory
    monkeypatch.setattr(limits, "check_memory",
                        lambda scenario, *a, **k: calls.append(k) or real(scenario, *a, **k))
    world = worldmod.build_world(sc, Streams(sc.seed))
    assert calls[0] == {"n": None, "tie_ends": None}
    assert calls[1] == {"n": 300, "tie_ends": int(world.network.indices.size)}
    assert estimate_memory(sc, **calls[1]).parts["communities"] > 0
    first, second = estimate_memory(sc).total, estimate_memory(sc, **calls[1]).total
    assert first < second  # a limit between the two: the files pass, the world does not
    monkeypatch.setenv(limits.ENV_MAX_MEMORY, str((first + second) // 2))
    with pytest.raises(ResourceError, match="communities"):
        worldmod.build_world(sc, Streams(sc.seed))


def test_a_sweep_is_refused_before_any_worker_starts_when_its_workers_cannot_fit(
    tmp_path, capsys
):
    from nudgesim.cli import main

    (tmp_path / "exp.toml").write_text(
        'name = "tight"\nreplicates = 2\n[scenario]\nsteps = 3\n'
        "[scenario.population]\nsize = 20000\n"
        '[levers]\n"nudges" = { values = [[], [{ kind = "reminder" }]], labels = ["no", "yes"] }\n'
    )
    argv = ["sweep", str(tmp_path / "exp.toml"), "--out", str(tmp_path / "out"),
            "--workers", "2", "--no-progress"]
    assert main([*argv, "--max-memory", "5M"]) == 2
    err = capsys.readouterr().err
    assert err.startswith("nudgesim: error: memory: 'scenario' needs ~") and "x 2 workers" in err
    assert not (tmp_path / "out").exists()
    assert main([*argv, "--max-memory", "2G", "--executor", "serial"]) == 0


@pytest.mark.parametrize("warm", [True, False])
def test_a_compiled_run_is_costed_as_the_compiled_engine(monkeypatch, warm):
    """Runs the kernels take are costed per resident as the compiled engine (75 B), plus
    the kernels (150 MB loaded, 400 MB while numba compiles them on a cold cache); runs
    the numpy engine takes keep 200 B per resident and no kernels part."""
    from nudgesim.kernels import Backend

    sc = Scenario.from_dict({"steps": 52, "population": {"size": 10**7, "wards": 1250}})
    monkeypatch.setattr(limits, "cache_is_warm", lambda steps: warm)
    monkeypatch.setattr(limits, "backend_for", lambda n, steps: Backend(True, "test"))
    est = estimate_memory(sc)
    assert est.parts["residents"] == 75 * 10**7
    assert est.parts["kernels"] == (150_000_000 if warm else 400_000_000)
    monkeypatch.setattr(limits, "backend_for", lambda n, steps: Backend(False, "test"))
    est = estimate_memory(sc)
    assert est.parts["residents"] == 200 * 10**7 and "kernels" not in est.parts


def test_the_national_scenario_fits_the_8_gb_it_was_measured_under(monkeypatch):
    """24.8 million households, 52 weeks on the compiled engine: measured peak 5.44 GB
    (docs/national.md); the estimate must neither refuse it under 8 GB nor fall below
    what it used."""
    from nudgesim import scenarios
    from nudgesim.kernels import Backend

    monkeypatch.setattr(limits, "backend_for", lambda n, steps: Backend(True, "test"))
    monkeypatch.setattr(limits, "cache_is_warm", lambda steps: True)
    sc = Scenario.from_toml(scenarios.path("national/national"))
    est = check_memory(sc, "8G").total
    assert 5.44e9 <= est <= 8e9, format_bytes(est)
