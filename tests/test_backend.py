"""Which engine a run takes and how many threads the kernels use, as functions of the
run's size, numba's cache, the CPUs, the cgroup quota and the load (all faked here)."""

from __future__ import annotations

import os
import subprocess
import sys
import threading
import time

import numpy as np
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


def _stat(tmp_path, per_cpu_busy_seconds, idle=1000):
    """A synthetic /proc/stat: each CPU's busy seconds split over user, system and irq."""
    t = kernels._TICK
    lines = ["cpu  0 0 0 0 0 0 0 0 0 0"]
    for i, sec in enumerate(per_cpu_busy_seconds):
        ticks = round(sec * t)
        user, system = ticks // 2, ticks // 4
        irq = ticks - user - system
        lines.append(f"cpu{i} {user} 0 {system} {idle * t} 7 {irq} 0 0 0 0")
    path = tmp_path / "stat"
    path.write_text("\n".join(lines + ["intr 12345", "ctxt 678"]) + "\n")
    return path


def test_busy_seconds_reads_our_cpus_from_proc_stat(tmp_path):
    path = _stat(tmp_path, [3.0, 5.0, 11.0])
    assert kernels._busy_seconds({0, 1, 2}, path) == pytest.approx(19.0)
    assert kernels._busy_seconds({0, 2}, path) == pytest.approx(14.0)  # affinity: ours only
    assert kernels._busy_seconds({0}, tmp_path / "missing") is None


def test_load_meter_subtracts_this_processes_own_cpu_time(tmp_path):
    """Synthetic /proc/stat and process CPU time: what this process did in a window is not
    load; what the rest of the machine did is."""
    clock, own, per_cpu = [100.0], [5.0], [50.0, 40.0]
    meter = kernels._LoadMeter(clock=lambda: clock[0], own=lambda: own[0],
                               busy=lambda cpus: kernels._busy_seconds(cpus, _stat(tmp_path,
                                                                                   per_cpu)),
                               runnable=lambda cpus: 0.0)
    cpus = {0, 1}
    meter.start(cpus)
    # a second of our own work on both cores (a graph build, then a two-thread kernel)
    clock[0] += 1.0
    own[0] += 1.8
    per_cpu[0] += 0.9
    per_cpu[1] += 0.9
    assert meter(cpus) == pytest.approx(0.0)
    assert choose_threads(10**6, 2, 2, None, meter(cpus)) == 2
    # the next second: we ran one thread, another process took the other core
    clock[0] += 1.0
    own[0] += 1.0
    per_cpu[0] += 1.0
    per_cpu[1] += 1.0
    assert meter(cpus) == pytest.approx(1.0)
    assert choose_threads(10**6, 2, 2, None, meter(cpus)) == 1
    # within a window: the last figure, whatever happens meanwhile
    clock[0] += kernels.LOAD_WINDOW / 2
    per_cpu[0] += 10.0
    assert meter(cpus) == pytest.approx(1.0)


def test_load_meter_after_a_long_pause_and_without_a_window(tmp_path):
    clock, own, busy, now = [0.0], [0.0], [0.0], [0.6]
    meter = kernels._LoadMeter(clock=lambda: clock[0], own=lambda: own[0],
                               busy=lambda cpus: busy[0], runnable=lambda cpus: now[0])
    cpus = {0, 1}
    assert meter(cpus) == 0.6  # no window yet: other processes' runnable threads now
    clock[0] += 60.0  # a minute: 30 s of ours, 12 s of others' on average
    own[0] += 30.0
    busy[0] += 42.0
    assert meter(cpus) == pytest.approx(0.6)  # stale: the larger of 0.2 and the snapshot
    now[0] = 0.0
    clock[0] += 60.0
    own[0] += 60.0  # a busy minute of our own, none of others'
    busy[0] += 60.0
    assert meter(cpus) == pytest.approx(0.0)
    assert meter({0}) == 0.0  # other CPUs than the window's: the snapshot again
    meter.busy_time = lambda cpus: None  # no /proc/stat
    clock[0] += 1.0
    assert meter(cpus) == 0.0


def test_runnable_snapshot_leaves_out_our_own_threads_and_the_load_average(tmp_path):
    # the load average says 1.9 (our own recent work); of 3 runnable threads, 2 are ours
    loadavg = tmp_path / "loadavg"
    loadavg.write_text("1.90 1.50 1.20 3/200 4242\n")
    tasks = tmp_path / "task"
    for tid, state in ((11, "R"), (12, "R"), (13, "S")):
        (tasks / str(tid)).mkdir(parents=True)
        (tasks / str(tid) / "stat").write_text(f"{tid} (py thon) {state} 1 2 3 4 5\n")
    assert kernels._runnable_others({0, 1}, loadavg, tasks, ncpu=2) == 1.0
    assert kernels._runnable_others({0}, loadavg, tasks, ncpu=2) == 0.5  # half the machine
    loadavg.write_text("1.90 1.50 1.20 2/200 4242\n")
    assert kernels._runnable_others({0, 1}, loadavg, tasks, ncpu=2) == 0.0
    assert kernels._runnable_others({0, 1}, tmp_path / "missing", tasks, ncpu=2) == 0.0


def _spin(seconds: float) -> None:
    end = time.perf_counter() + seconds
    x = 0
    while time.perf_counter() < end:
        x += 1


@pytest.mark.skipif(kernels._busy_seconds(kernels.affinity()) is None, reason="no /proc/stat")
def test_a_busy_thread_of_this_process_is_not_other_load_live():
    """Live: a busy loop in a thread of this process for 0.6 s. The meter's figure for the
    window is the machine's busy time on our CPUs minus ours, so the loop (~1 core) is
    absent from it, and the thread choice is the one the other processes alone imply.
    Tolerance 0.1 core: /proc/stat counts in 10 ms ticks."""
    cpus = kernels.affinity()
    meter = kernels._LoadMeter()
    meter.start(cpus)
    t0, b0, o0 = time.monotonic(), kernels._busy_seconds(cpus), time.process_time()
    worker = threading.Thread(target=_spin, args=(0.6,))
    worker.start()
    worker.join()
    others = meter(cpus)
    t1, b1, o1 = time.monotonic(), kernels._busy_seconds(cpus), time.process_time()
    assert b0 is not None and b1 is not None
    mine, everyone = (o1 - o0) / (t1 - t0), (b1 - b0) / (t1 - t0)
    assert mine > 0.2  # the loop really ran (~1 core, less on a busy machine)
    assert others == pytest.approx(max(0.0, everyone - mine), abs=0.1)
    assert others <= max(0.0, everyone - mine) + 0.1 < everyone  # our own work is not counted
    n, cap = 10**6, len(cpus)
    assert choose_threads(n, cap, len(cpus), None, others) >= choose_threads(
        n, cap, len(cpus), None, everyone - mine + 0.1)
    if everyone - mine < 0.5:  # the rest of the machine was quiet: every CPU is ours
        assert choose_threads(n, cap, len(cpus), None, others) == len(cpus)


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


def test_each_stamp_type_is_warmed_and_marked_on_its_own(tmp_path, monkeypatch):
    # runs shorter than 127 steps keep int8 stamps, longer ones int16 (then int32): each
    # a compiled variant that warm_up(steps=...) compiles and marks for runs like it
    assert [kernels.stamp_dtype(s) for s in (1, 126, 127, 32766, 32767)] == [
        np.int8, np.int8, np.int16, np.int16, np.int32]
    monkeypatch.setenv("NUMBA_CACHE_DIR", str(tmp_path))
    where = kernels.cache_dir()
    tag = f"{sys.version_info[0]}{sys.version_info[1]}"
    where.mkdir(parents=True, exist_ok=True)
    (where / f"kernels._decide-600.py{tag}.nbi").write_bytes(b"")
    kernels._mark_warm(200)
    assert kernels.cache_is_warm(127) and kernels.cache_is_warm(32766)
    assert not kernels.cache_is_warm() and not kernels.cache_is_warm(52)
    assert not kernels.cache_is_warm(40_000)
    kernels._mark_warm()
    assert kernels.cache_is_warm(52) and kernels.cache_is_warm(126)
    assert [kernels._variant_steps(s) for s in (52, 200, 40_000)] == [3, 127, 32767]


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
