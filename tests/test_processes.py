"""Process lifetimes and cluster time-outs: nothing outlives `nudgesim viz` or `nudgesim
sweep` (SIGTERM, Ctrl-C, kill -9), viz answers only its own Host names, and a Dask scheduler
that is closed, not Dask, or without workers ends the map with a message, not a hang.

Every process is started in its own session and killed as a group at the end, so a failing
test leaves nothing behind either. Loopback addresses only.
"""

from __future__ import annotations

import contextlib
import functools
import http.client
import logging
import os
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

import psutil
import pytest

from nudgesim import parallel
from nudgesim.errors import ResourceError, UsageError

ROOT = Path(__file__).resolve().parents[1]
SCENARIO = """
name = "slow"
seed = 5
steps = 200
initial_adopters = 0.2
[population]
size = 2000
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
"""
# 500 runs of ~0.1 s: minutes in all, so every kill below lands mid-sweep
EXPERIMENT = """
name = "slow"
scenario = "slow.toml"
replicates = 50
seed = 3
[levers]
"nudges[leaflet].reach" = { low = 0.1, high = 0.9, levels = 10 }
"""
GONE_WITHIN = 10.0  # seconds: the bound for "no process left"


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def living(procs: list[psutil.Process]) -> list[psutil.Process]:
    """Those still running (a zombie has ended; only its parent has not reaped it yet)."""
    out = []
    for p in procs:
        with contextlib.suppress(psutil.NoSuchProcess):
            if p.is_running() and p.status() != psutil.STATUS_ZOMBIE:
                out.append(p)
    return out


def wait_gone(procs: list[psutil.Process], timeout: float = GONE_WITHIN) -> list[str]:
    deadline = time.monotonic() + timeout
    while (alive := living(procs)) and time.monotonic() < deadline:
        time.sleep(0.1)
    return [f"{p.pid}: {' '.join(p.cmdline())[:120]}" for p in living(alive)]


@contextlib.contextmanager
def started(cmd: list[str], log: Path, **kwargs):
    """Popen in a new session (its own process group); the whole group is killed at the
    end, whatever the test did, so orphans cannot leak into the next test."""
    with open(log, "w") as out:
        proc = subprocess.Popen(cmd, stdout=out, stderr=subprocess.STDOUT, cwd=ROOT,
                                start_new_session=True, **kwargs)
    try:
        yield proc
    finally:
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.killpg(proc.pid, signal.SIGKILL)
        proc.wait()


def wait_until(condition, timeout: float, proc: subprocess.Popen, log: Path) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        if proc.poll() is not None:
            pytest.fail(f"exited early with {proc.returncode}:\n{log.read_text()[-3000:]}")
        if time.monotonic() > deadline:
            pytest.fail(f"not ready after {timeout} s:\n{log.read_text()[-3000:]}")
        time.sleep(0.2)


# -- nudgesim viz --------------------------------------------------------------------------


def status_for(port: int, host_header: str | None) -> int:
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=10)
    try:
        conn.request("GET", "/", headers={} if host_header is None else {"Host": host_header})
        return conn.getresponse().status
    finally:
        conn.close()


def answers(port: int) -> bool:
    try:
        return status_for(port, None) == 200
    except OSError:
        return False


def port_closed(port: int) -> bool:
    with socket.socket() as s:
        s.settimeout(2)
        return s.connect_ex(("127.0.0.1", port)) != 0


@pytest.mark.parametrize("sig", [signal.SIGTERM, signal.SIGINT, signal.SIGKILL],
                         ids=["SIGTERM", "SIGINT", "SIGKILL"])
def test_viz_answers_only_its_host_names_and_stops_with_everything_on_a_signal(tmp_path, sig):
    port, log = free_port(), tmp_path / "viz.log"
    scenario = ROOT / "experiments" / "scenarios" / "small_town.toml"
    cmd = [sys.executable, "-m", "nudgesim.cli", "viz", str(scenario), "--port", str(port)]
    with started(cmd, log) as proc:
        wait_until(lambda: answers(port), 120, proc, log)
        if sig == signal.SIGTERM:  # the Host check, once (the server is slow to start)
            for good in (f"127.0.0.1:{port}", f"localhost:{port}", f"[::1]:{port}",
                         f"LOCALHOST:{port}"):
                assert status_for(port, good) == 200, good
            for bad in ("evil.example.com", f"evil.example.com:{port}", f"127.0.0.1.nip.io:{port}",
                        "127.0.0.1", f"localhost:{port + 1}", ""):
                assert status_for(port, bad) == 400, bad
        family = psutil.Process(proc.pid).children(recursive=True)
        os.kill(proc.pid, sig)
        proc.wait(timeout=GONE_WITHIN)
        assert wait_gone(family) == []
        assert port_closed(port), "something still listens on the port"
        assert "Traceback" not in log.read_text(), log.read_text()


# -- nudgesim sweep ------------------------------------------------------------------------


def sweep(tmp_path: Path, *options: str) -> tuple[list[str], Path]:
    (tmp_path / "slow.toml").write_text(SCENARIO)
    (tmp_path / "exp.toml").write_text(EXPERIMENT)
    out = tmp_path / "out"
    cmd = [sys.executable, "-m", "nudgesim.cli", "sweep", str(tmp_path / "exp.toml"),
           "--out", str(out), "--workers", "2", "--no-progress", *options]
    return cmd, out / "runs"


def running_sweep_family(proc: subprocess.Popen, store: Path, log: Path, least: int):
    """The sweep's descendants once it has stored a few runs (its workers are busy)."""
    wait_until(lambda: len(list(store.glob("*.parquet"))) >= 2, 120, proc, log)
    family = psutil.Process(proc.pid).children(recursive=True)
    assert len(family) >= least, [" ".join(p.cmdline())[:100] for p in family]
    return family


@pytest.mark.parametrize(
    "executor, least",
    [("processes", 4),  # fork server, two workers, resource tracker
     ("dask", 3)],      # two Dask worker processes, resource tracker
)
def test_kill_9_of_a_sweep_leaves_no_process(tmp_path, executor, least):
    cmd, store = sweep(tmp_path, "--executor", executor)
    log = tmp_path / "sweep.log"
    with started(cmd, log) as proc:
        family = running_sweep_family(proc, store, log, least)
        os.kill(proc.pid, signal.SIGKILL)  # the sweep alone, not its process group
        proc.wait(timeout=5)
        assert wait_gone(family) == []
    assert 2 <= len(list(store.glob("*.parquet"))) < 500, "the kill should land mid-sweep"


@pytest.mark.parametrize(
    "executor, group, least",
    [("processes", False, 4),  # SIGINT to the sweep alone: it must stop its workers itself
     ("processes", True, 4),   # Ctrl-C in a terminal: SIGINT to the whole process group
     ("dask", True, 3)],
)
def test_ctrl_c_stops_a_sweep_and_its_workers_at_once(tmp_path, executor, group, least):
    cmd, store = sweep(tmp_path, "--executor", executor)
    log = tmp_path / "sweep.log"
    with started(cmd, log) as proc:
        family = running_sweep_family(proc, store, log, least)
        t0 = time.monotonic()
        if group:
            os.killpg(proc.pid, signal.SIGINT)
        else:
            os.kill(proc.pid, signal.SIGINT)
        assert proc.wait(timeout=GONE_WITHIN) == 130
        assert wait_gone(family) == []
        assert time.monotonic() - t0 < GONE_WITHIN
    text = log.read_text()
    assert "nudgesim: interrupted" in text, text
    assert "Traceback" not in text and "KeyboardInterrupt" not in text, text
    assert "leaked" not in text, text  # the workers unlinked their semaphores


# -- the process pool, in this process -----------------------------------------------------


def pool_workers() -> list[psutil.Process]:
    """Children of this process's fork server: the pool's workers."""
    me = psutil.Process()
    servers = [p for p in me.children() if "forkserver" in " ".join(p.cmdline())]
    return [w for s in servers for w in s.children()]


@pytest.mark.parametrize("how", ["close", "interrupt"])
def test_a_pool_map_ended_early_stops_its_running_workers(how):
    jobs = parallel.pool_imap(time.sleep, [0.0, 30.0, 30.0, 30.0, 30.0], 2)
    assert next(jobs) == (0, None)
    workers = pool_workers()
    assert len(workers) == 2
    t0 = time.monotonic()
    if how == "close":
        jobs.close()
    else:
        with pytest.raises(KeyboardInterrupt):
            jobs.throw(KeyboardInterrupt)
    assert time.monotonic() - t0 < 5, "waited for the 30 s jobs"
    assert wait_gone(workers, 5) == []


def test_a_pool_worker_that_dies_is_a_resource_error():
    jobs = parallel.pool_imap(time.sleep, [0.0, 30.0, 30.0, 30.0], 2)
    assert next(jobs) == (0, None)
    workers = pool_workers()
    workers[0].kill()
    with pytest.raises(ResourceError, match="^processes: a worker process died"):
        next(jobs)
    assert wait_gone(workers, 5) == []


def test_dask_sync_cancel_race_is_not_shown_after_ctrl_c(monkeypatch):
    # distributed's sync(): Ctrl-C while its loop has not yet started the coroutine makes
    # tornado log a NameError traceback (the CI once saw it after "interrupted")
    import asyncio

    from distributed.utils import LoopRunner, sync

    log = logging.getLogger("tornado.application")
    monkeypatch.setattr(log, "filters", [])  # see every record, then judge them below
    records: list[logging.LogRecord] = []
    catch = logging.Handler()
    catch.emit = records.append  # type: ignore[method-assign]
    log.addHandler(catch)
    runner = LoopRunner(asynchronous=False)
    runner.start()
    try:
        runner.loop.add_callback(time.sleep, 0.5)  # busy: sync's coroutine waits its turn
        threading.Timer(0.1, os.kill, (os.getpid(), signal.SIGINT)).start()
        with pytest.raises(KeyboardInterrupt):
            sync(runner.loop, asyncio.sleep, 10)
        time.sleep(0.8)
    finally:
        log.removeHandler(catch)
        runner.stop()
    race = [r for r in records if r.exc_info and isinstance(r.exc_info[1], NameError)]
    if not race:
        pytest.skip("this distributed no longer logs the race")
    assert not any(parallel._SyncCancelRace().filter(r) for r in race)
    parallel.quiet_sync_cancel_race()
    parallel.quiet_sync_cancel_race()  # once, however often a map starts
    assert sum(isinstance(f, parallel._SyncCancelRace) for f in log.filters) == 1
    other = logging.LogRecord("tornado.application", logging.ERROR, __file__, 1,
                              "Exception in callback %r", ("something else",),
                              (NameError, NameError("x"), None))
    assert parallel._SyncCancelRace().filter(other)  # any other error is still shown


# -- Dask: time-outs and released futures ---------------------------------------------------


def test_dask_timeout_comes_from_the_argument_or_the_environment(monkeypatch):
    monkeypatch.delenv(parallel.DASK_TIMEOUT_ENV, raising=False)
    assert parallel.resolve_dask_timeout() == parallel.DASK_TIMEOUT
    monkeypatch.setenv(parallel.DASK_TIMEOUT_ENV, "2.5")
    assert parallel.resolve_dask_timeout() == 2.5
    assert parallel.resolve_dask_timeout(7) == 7.0
    for bad in ("abc", "0", "-1", "nan", "inf"):
        monkeypatch.setenv(parallel.DASK_TIMEOUT_ENV, bad)
        with pytest.raises(UsageError, match=f"^{parallel.DASK_TIMEOUT_ENV}: .*seconds > 0"):
            parallel.resolve_dask_timeout()
    for bad in (0, -3.0, float("nan"), float("inf"), True):
        with pytest.raises(UsageError, match="^--dask-timeout: .*seconds > 0"):
            parallel.resolve_dask_timeout(bad)


def test_dask_on_a_closed_port_is_a_resource_error_after_the_timeout():
    address = f"tcp://127.0.0.1:{free_port()}"  # nothing listens there any more
    t0 = time.monotonic()
    with pytest.raises(ResourceError) as err:
        parallel.map_runs(abs, [1, 2], "dask", scheduler=address, dask_timeout=1)
    assert 1 <= time.monotonic() - t0 < 10
    first = str(err.value).splitlines()[0]
    assert first.startswith(f"--scheduler: no Dask scheduler answered at {address} within 1 s")


@contextlib.contextmanager
def fake_scheduler(reply: bytes):
    """A TCP server on loopback that accepts, sends `reply` (maybe nothing) and then says
    nothing more: a port that is something other than Dask."""
    server = socket.socket()
    server.bind(("127.0.0.1", 0))
    server.listen()
    server.settimeout(0.2)
    stop, conns = threading.Event(), []

    def serve():
        while not stop.is_set():
            try:
                conn, _ = server.accept()
            except OSError:
                continue
            conns.append(conn)
            with contextlib.suppress(OSError):
                conn.sendall(reply)

    thread = threading.Thread(target=serve, daemon=True)
    thread.start()
    try:
        yield f"tcp://127.0.0.1:{server.getsockname()[1]}"
    finally:
        stop.set()
        thread.join(5)
        for conn in conns:
            conn.close()
        server.close()


@pytest.mark.parametrize("reply", [b"", b"HTTP/1.1 400 Bad Request\r\n\r\n" * 50,
                                   b"\x01" + b"\x00" * 7],
                         ids=["silent", "http", "half-a-frame"])
def test_dask_at_a_port_that_is_not_dask_is_a_resource_error(reply):
    with fake_scheduler(reply) as address:
        t0 = time.monotonic()
        with pytest.raises(ResourceError) as err:
            parallel.map_runs(abs, [1, 2], "dask", scheduler=address, dask_timeout=1)
        assert time.monotonic() - t0 < 10
    first = str(err.value).splitlines()[0]
    assert first.startswith("--scheduler: ") and address in first and "Dask" in first


def test_dask_address_that_is_not_an_address_is_a_usage_error():
    with pytest.raises(UsageError, match="^--scheduler: 'tcp://nohost' is not a Dask address"):
        parallel.map_runs(abs, [1], "dask", scheduler="tcp://nohost", dask_timeout=1)


@contextlib.contextmanager
def local_cluster(workers: int):
    """A Dask scheduler on loopback in this process, with `workers` in-process workers."""
    from dask.distributed import LocalCluster

    cluster = LocalCluster(n_workers=workers, processes=False, protocol="tcp",
                           host="127.0.0.1", dashboard_address=None)
    try:
        yield cluster
    finally:
        cluster.close()


@pytest.fixture
def bare_scheduler():
    with local_cluster(0) as cluster:
        yield cluster


def test_dask_at_a_worker_port_is_a_resource_error():
    with local_cluster(1) as cluster:
        worker = next(iter(cluster.scheduler.workers))
        with pytest.raises(ResourceError, match=r"^--scheduler: .* answers, but not as a Dask "
                           r"scheduler \(it says it is a Worker\)"):
            parallel.map_runs(abs, [1], "dask", scheduler=worker, dask_timeout=2)


def test_dask_without_workers_is_a_resource_error_after_the_timeout(bare_scheduler):
    address = bare_scheduler.scheduler_address
    t0 = time.monotonic()
    with pytest.raises(ResourceError) as err:
        parallel.map_runs(abs, [1, 2, 3], "dask", scheduler=address, dask_timeout=1)
    assert 1 <= time.monotonic() - t0 < 10
    assert str(err.value).startswith(f"dask: no workers for 1 s at {address}; 0 of 3 jobs")


def test_dask_whose_last_worker_dies_is_a_resource_error_after_the_timeout(
    bare_scheduler, tmp_path
):
    address = bare_scheduler.scheduler_address
    log = tmp_path / "worker.log"
    cmd = [sys.executable, "-m", "distributed.cli.dask_worker", address, "--no-nanny",
           "--nthreads", "1", "--no-dashboard", "--host", "127.0.0.1"]
    with started(cmd, log) as worker:
        wait_until(lambda: len(bare_scheduler.scheduler.workers) == 1, 60, worker, log)
        jobs = parallel.imap_unordered(time.sleep, [60.0, 60.0, 60.0], "dask",
                                       scheduler=address, dask_timeout=1.5)
        killer = threading.Timer(1.0, os.kill, (worker.pid, signal.SIGKILL))
        killer.start()
        t0 = time.monotonic()
        try:
            with pytest.raises(ResourceError, match=f"^dask: no workers for 1.5 s at {address}"):
                next(jobs)
        finally:
            killer.cancel()
        assert 2.5 <= time.monotonic() - t0 < 15


def test_dask_releases_each_result_so_a_dying_worker_recomputes_nothing(tmp_path):
    """Each job leaves a file behind; after every result is handed over, one of the two
    workers is killed. A result still referenced would be recomputed (one more file)."""
    marks = tmp_path / "marks"
    marks.mkdir()
    job = functools.partial(tempfile.mkstemp, dir=str(marks))  # job(item): one new file
    jobs = parallel.imap_unordered(job, [f".{i}" for i in range(20)], "dask", workers=2)
    try:
        got = [next(jobs) for _ in range(20)]  # all handed over; the map is still open
        assert sorted(i for i, _ in got) == list(range(20))
        me = os.getpid()
        workers = [p for p in psutil.Process().children()
                   if "spawn_main" in " ".join(p.cmdline()) and p.ppid() == me]
        assert len(workers) == 2
        time.sleep(1)  # a release is a message to the scheduler: let the last ones arrive
        workers[0].kill()
        time.sleep(3)  # time enough for the scheduler to notice and recompute
        assert len(list(marks.iterdir())) == 20
    finally:
        jobs.close()
