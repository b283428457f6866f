"""Which engine a run takes and how many threads the kernels use, as functions of the
run's size, numba's cache, the CPUs, the cgroup quota and the load (all faked here)."""

from __future__ import annotations

import os
import subprocess
import sys

import pytest

from nudgesim import kernels
from nudgesim.kernels import choose_backend, choose_threads


def _never() -> bool:
    raise AssertionError("the cache was looked at although the answer did not need it")


def backend(n, steps, *, setting=None, available=True, loaded=False, warm=_never):
    return choose_backend(n, steps, setting=setting, available=available, loaded=loaded,
                          warm=warm)


def test_the_borough_takes_numpy_without_looking_at_the_cache():
    b = backend(20_000, 52)  # 1.04e6 resident-steps: numpy ~0.2 s < loading the kernels
    assert not b.compiled and "quicker than loading" in b.reason


def test_a_large_run_takes_the_cached_kernels():
    assert backend(200_000, 52, warm=lambda: True).compiled


def test_a_cold_cache_takes_numpy_unless_the_run_outlasts_compiling():
    cold = lambda: False  # noqa: E731
    # 10^6 residents x 52 steps: numpy ~10 s, shorter than compiling
    assert not backend(10**6, 52, warm=cold).compiled
    # the same town over 1,000 steps: numpy ~200 s, compiling pays
    assert backend(10**6, 1_000, warm=cold).compiled
    assert "cold kernel cache" in backend(10**6, 52, warm=cold).reason


def test_loaded_kernels_cost_nothing_more():
    assert backend(2_000, 10, loaded=True).compiled


def test_the_setting_decides_outright():
    assert backend(10, 1, setting=True).compiled  # NUDGESIM_NUMBA=1 forces the kernels
    assert not backend(10**7, 10**4, setting=False, available=False).compiled
    assert backend(10**7, 10**4, setting=False, available=False).reason == "NUDGESIM_NUMBA=0"
    assert not backend(10**7, 10**4, available=False).compiled  # numba not installed


def test_the_threshold_is_where_the_cost_model_says():
    # warm cache: the kernels win once n·steps·(NUMPY_NS - KERNEL_NS) > LOAD_SECONDS
    edge = kernels.LOAD_SECONDS / ((kernels.NUMPY_NS - kernels.KERNEL_NS) * 1e-9)
    assert not backend(int(edge * 0.9), 1, warm=lambda: True).compiled
    assert backend(int(edge * 1.1), 1, warm=lambda: True).compiled


@pytest.mark.parametrize(("n", "cap", "cpus", "quota", "others", "expected"), [
    (10_000, 8, 8, None, 0.0, 1),  # small: one thread whatever the machine
    (10**6, 2, 2, None, 0.0, 2),  # idle 2-core machine: both cores
    (10**6, 2, 2, None, 1.0, 1),  # one core busy elsewhere: one thread, no straggler
    (10**6, 2, 2, None, 0.3, 1),  # the other core partly busy: still one
    (10**6, 2, 2, None, 0.2, 2),  # a little background work is tolerated (SLACK)
    (10**6, 2, 2, None, 2.0, 1),  # both busy: never fewer than one
    (10**6, 8, 8, None, 3.0, 5),  # eight cores, three busy
    (10**6, 8, 2, None, 0.0, 2),  # affinity: two CPUs of eight
    (10**6, 8, 8, 1.5, 0.0, 1),  # cgroup quota of 1.5 CPUs
    (10**6, 8, 8, 4.0, 0.0, 4),
    (10**6, 3, 8, None, 0.0, 3),  # threads(3) or numba's own setting caps it
])
def test_thread_choice(n, cap, cpus, quota, others, expected):
    assert choose_threads(n, cap, cpus, quota, others) == expected


def test_cgroup_quota_v2_and_v1(tmp_path):
    member = tmp_path / "cgroup"
    member.write_text("0::/user/job\n")
    (tmp_path / "user" / "job").mkdir(parents=True)
    (tmp_path / "user" / "job" / "cpu.max").write_text("150000 100000\n")
    (tmp_path / "user" / "cpu.max").write_text("max 100000\n")
    assert kernels.cgroup_quota(tmp_path, member) == 1.5
    (tmp_path / "user" / "job" / "cpu.max").write_text("max 100000\n")
    assert kernels.cgroup_quota(tmp_path, member) is None
    member.write_text("4:cpu,cpuacct:/batch\n")
    v1 = tmp_path / "cpu,cpuacct" / "batch"
    v1.mkdir(parents=True)
    (v1 / "cpu.cfs_quota_us").write_text("200000\n")
    (v1 / "cpu.cfs_period_us").write_text("100000\n")
    assert kernels.cgroup_quota(tmp_path, member) == 2.0
    assert kernels.cgroup_quota(tmp_path, tmp_path / "missing") is None


def test_load_meter_counts_other_processes_only():
    clock, own, busy = [100.0], [5.0], [50.0]
    meter = kernels._LoadMeter(clock=lambda: clock[0], own=lambda: own[0],
                               busy=lambda cpus: busy[0], instant=lambda cpus: 1.7)
    cpus = {0, 1}
    assert meter(cpus) == 1.7  # no window yet: the instant estimate
    clock[0] += 1.0
    own[0] += 1.2  # our threads used 1.2 CPU-seconds of the 1.9 spent on our CPUs
    busy[0] += 1.9
    assert meter(cpus) == pytest.approx(0.7)
    clock[0] += kernels.LOAD_WINDOW / 2
    busy[0] += 10.0
    assert meter(cpus) == pytest.approx(0.7)  # within a window: the last figure
    clock[0] += 60.0  # a long pause: the old window says nothing about now
    assert meter(cpus) == 1.7


def test_thread_count_follows_the_load(monkeypatch):
    kernels.load()
    monkeypatch.setattr(kernels, "ADAPTIVE_THREADS", True)
    monkeypatch.setattr(kernels, "affinity", lambda: {0, 1})
    monkeypatch.setattr(kernels, "_QUOTA", [None])
    monkeypatch.setattr(kernels.numba, "get_num_threads", lambda: 2)
    for others, expected in ((0.0, 2), (1.0, 1)):
        monkeypatch.setattr(kernels, "_METER", lambda cpus, o=others: o)
        assert kernels.thread_count(10**6) == expected
        with kernels.threads(1):
            assert kernels.thread_count(10**6) == 1


def test_the_cache_is_warm_only_for_this_file_numba_and_cpu(tmp_path, monkeypatch):
    monkeypatch.setenv("NUMBA_CACHE_DIR", str(tmp_path))
    where = kernels.cache_dir()
    assert str(where).startswith(str(tmp_path))
    assert not kernels.cache_is_warm()  # empty
    kernels._mark_warm()
    assert not kernels.cache_is_warm()  # marked, but numba's index is not there
    tag = f"{sys.version_info[0]}{sys.version_info[1]}"
    (where / f"kernels._decide-600.py{tag}.nbi").write_bytes(b"")
    assert kernels.cache_is_warm()
    (where / kernels.MARKER).write_text(kernels.cache_key().replace("numba", "numba 0.1"))
    assert not kernels.cache_is_warm()  # another numba (or kernels.py, or CPU)


def test_numpy_runs_never_import_numba_and_set_no_environment(tmp_path):
    code = (
        "import os, sys\n"
        "before = dict(os.environ)\n"
        "import nudgesim as ns\n"
        "from nudgesim import kernels\n"
        "eng = ns.Engine(ns.Scenario.from_dict({'steps': 5, 'population': {'size': 500}}))\n"
        "eng.run()\n"
        "print(eng.backend.compiled, 'numba' in sys.modules)\n"
        "kernels.load()\n"
        "print(dict(os.environ) == before)\n"
    )
    env = {k: v for k, v in os.environ.items() if k not in ("NUDGESIM_NUMBA", "GOMP_SPINCOUNT")}
    out = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True,
                         check=True, cwd=tmp_path)
    assert out.stdout.split() == ["False", "False", "True"]
