"""Where files go: safe folder names, the user's umask, whole-folder swaps, folder locks."""

from __future__ import annotations

import json
import os
import random
import signal
import subprocess
import sys
import textwrap
import threading
import time
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from nudgesim import files
from nudgesim.cli import main as cli_main
from nudgesim.engine import simulate
from nudgesim.errors import ScenarioError, UsageError
from nudgesim.scenario import Scenario

SMALL = """
name = "tiny"
seed = 1
steps = 6
initial_adopters = 0.2
[population]
size = 120
wards = 2
[network]
kind = "watts_strogatz"
k = 4
p = 0.1
[[nudges]]
kind = "information"
label = "leaflet"
reach = 0.5
cost_per_contact = 0.35
"""
RUN_FILES = {
    "timeseries.parquet",
    "timeseries.csv",
    "by_ward.parquet",
    "summary.json",
    "scenario.toml",
}


def small(seed: int = 1) -> Scenario:
    return Scenario.from_toml_str(SMALL).replace(seed=seed)


@pytest.fixture(scope="module")
def two_runs():
    return simulate(small(1)), simulate(small(2))


def temporaries(parent: Path, name: str) -> list[str]:
    return sorted(p.name for p in parent.iterdir() if p.name.startswith(f".{name}."))


def dead_pid() -> int:
    proc = subprocess.Popen([sys.executable, "-c", "pass"])
    proc.wait()
    return proc.pid


# -- safe names ----------------------------------------------------------------------------


@pytest.mark.parametrize(
    "name, folder",
    [
        ("borough", "borough"),
        ("../../evil", "evil"),
        ("/tmp/x", "tmp_x"),
        ("..\\..\\win", "win"),
        ("x\x00y", "x_y"),
        ("a\nb\tc\x1b[31m", "a_b_c_31m"),
        ("East Ward  2024", "East_Ward_2024"),
        ("Zürich-süd.v2", "Zürich-süd.v2"),
        ("\uff0e\uff0e\uff0fetc", "etc"),  # full-width "../" is still "../"
        (".hidden", "hidden"),
        ("trailing.", "trailing"),
        ("x" * 300, "x" * files.NAME_MAX_CHARS),
    ],
)
def test_a_name_becomes_one_safe_folder_name(name, folder):
    assert files.safe_name(name) == folder
    assert files.output_dir(name) == Path("results") / folder
    assert files.safe_name(folder) == folder  # idempotent


@pytest.mark.parametrize("name", ["", ".", "..", "/", "../..", "\x00", "   ", "._-", "\\"])
def test_a_name_with_nothing_usable_is_refused(name):
    with pytest.raises(ScenarioError, match=r"^name: .* has no letters or digits"):
        files.output_dir(name)


def test_a_name_must_be_text():
    with pytest.raises(ScenarioError, match="^name: 5 is not allowed; give a text name"):
        files.safe_name(5)


@settings(max_examples=300, deadline=None)
@given(st.text(max_size=40))
def test_no_name_leads_outside_results(name):
    try:
        out = files.output_dir(name, root="/r/results")
    except ScenarioError:
        return
    assert out.parent == Path("/r/results")
    assert Path(os.path.normpath(out)) == out and not out.name.startswith(".")
    assert "/" not in out.name and "\\" not in out.name and out.name.isprintable()


def test_an_explicit_out_is_used_as_given():
    assert files.output_dir("../../evil", out="../mine") == Path("../mine")
    assert files.output_dir("", out="/abs/place") == Path("/abs/place")


# -- modes ---------------------------------------------------------------------------------


@pytest.mark.parametrize("mask", [0o022, 0o027, 0o077])
def test_every_output_follows_the_umask(tmp_path, two_runs, mask):
    old = os.umask(mask)
    try:
        assert files.current_umask() == mask
        files.write_atomic(tmp_path / "a.txt", "x")
        files.write_atomic(tmp_path / "b.bin", b"x")
        files.write_parquet_atomic(pd.DataFrame({"a": [1]}), tmp_path / "c.parquet")
        import matplotlib.pyplot as plt

        files.save_figure(plt.figure(), tmp_path / "d.png")
        run = two_runs[0].save(tmp_path / "run")
    finally:
        os.umask(old)
    want = 0o666 & ~mask
    for p in [*tmp_path.glob("*.*"), *run.iterdir()]:
        assert p.stat().st_mode & 0o777 == want, p
    assert run.stat().st_mode & 0o777 == 0o777 & ~mask
    assert "adoption.png" in {p.name for p in run.iterdir()}
    assert not [p for p in tmp_path.iterdir() if p.name.startswith(".")]


def test_write_atomic_replaces_and_leaves_nothing_behind(tmp_path):
    files.write_atomic(tmp_path / "x" / "a.txt", "one")
    files.write_atomic(tmp_path / "x" / "a.txt", "twö")
    assert (tmp_path / "x" / "a.txt").read_text(encoding="utf-8") == "twö"
    assert os.listdir(tmp_path / "x") == ["a.txt"]


def test_a_pipe_is_written_into_not_replaced(tmp_path):
    """A named pipe (like /dev/null or /dev/stdout) is written into: replacing it with a
    finished file would destroy it for every other program (a figure saved to os.devnull
    as root once turned /dev/null into a plain file)."""
    import stat

    fifo = tmp_path / "pipe"
    os.mkfifo(fifo)
    got = []
    reader = threading.Thread(target=lambda: got.append(fifo.read_bytes()), daemon=True)
    reader.start()
    files.write_atomic(fifo, b"a figure")
    reader.join(10)
    assert got == [b"a figure"] and stat.S_ISFIFO(fifo.lstat().st_mode)
    assert os.listdir(tmp_path) == ["pipe"]  # no temporary beside it


@pytest.mark.skipif(os.geteuid() != 0, reason="making a device node needs root")
def test_a_null_device_stays_a_device(tmp_path):
    import stat

    null = tmp_path / "null"
    os.mknod(null, 0o666 | stat.S_IFCHR, os.makedev(1, 3))  # the kernel's /dev/null
    files.write_atomic(null, "discarded")
    with files.atomic_path(null) as where:
        pd.DataFrame({"a": [1]}).to_parquet(where)
    assert stat.S_ISCHR(null.lstat().st_mode) and null.stat().st_rdev == os.makedev(1, 3)
    assert stat.S_ISCHR(os.stat(os.devnull).st_mode)


def test_a_socket_is_refused_not_replaced(tmp_path):
    import socket
    import stat

    where = tmp_path / "s"
    with socket.socket(socket.AF_UNIX) as sock:
        sock.bind(str(where))
        with pytest.raises(UsageError, match="block device or socket, not a file"):
            files.write_atomic(where, "x")
        assert stat.S_ISSOCK(where.lstat().st_mode)


# -- one run per folder --------------------------------------------------------------------


def check_run(folder: Path, seed: int, plot: bool) -> None:
    """`folder` holds exactly one complete run of seed `seed`."""
    names = {p.name for p in folder.iterdir()}
    assert names == RUN_FILES | ({"adoption.png"} if plot else set()), names
    summary = json.loads((folder / "summary.json").read_text())
    ts = pd.read_csv(folder / "timeseries.csv")
    assert summary["seed"] == seed
    assert Scenario.from_toml(folder / "scenario.toml").seed == seed
    assert summary["final_adopters"] == int(ts["adopters"].iloc[-1])
    pd.testing.assert_frame_equal(pd.read_parquet(folder / "timeseries.parquet"), ts)


def test_a_rerun_without_plot_leaves_no_old_plot(tmp_path, two_runs):
    a, b = two_runs
    out = tmp_path / "r"
    a.save(out)
    check_run(out, 1, plot=True)
    b.save(out, plot=False)
    check_run(out, 2, plot=False)
    assert temporaries(tmp_path, "r") == []


def test_without_the_atomic_exchange_the_two_renames_give_the_same(tmp_path, two_runs, monkeypatch):
    monkeypatch.setattr(files, "_exchange", lambda a, b: False)
    a, b = two_runs
    out = tmp_path / "r"
    a.save(out)
    b.save(out, plot=False)
    check_run(out, 2, plot=False)
    assert temporaries(tmp_path, "r") == []


def test_the_exchange_is_used_on_linux(tmp_path, two_runs, monkeypatch):
    if not sys.platform.startswith("linux"):
        pytest.skip("renameat2 is Linux only")
    calls = []
    real = files._exchange
    monkeypatch.setattr(files, "_exchange", lambda a, b: calls.append(1) or real(a, b))
    a, b = two_runs
    a.save(tmp_path / "r")
    b.save(tmp_path / "r", plot=False)
    assert calls == [1]
    check_run(tmp_path / "r", 2, plot=False)


def test_stale_temporaries_are_cleaned_and_live_ones_kept(tmp_path, two_runs):
    host, dead = files._HOST, dead_pid()
    stale = [f".r.tmp-{host}-{dead}-0123abcd", f".r.old-{host}-{dead}-89abcdef"]
    live = [
        f".r.tmp-{host}-{os.getppid()}-00000000",  # a live process's save in progress
        f".r.tmp-ffffffff-{dead}-00000000",  # another machine's (shared disk)
        ".rr.tmp-00000000-1-00000000",  # another folder's
    ]
    for name in stale + live:
        (tmp_path / name).mkdir()
        (tmp_path / name / "summary.json").write_text("{}")
    two_runs[0].save(tmp_path / "r")
    left = {p.name for p in tmp_path.iterdir()}
    assert left == {"r", *live}


def test_a_kill_between_the_two_renames_is_repaired_by_the_next_save(
    tmp_path, two_runs, monkeypatch
):
    """Without the exchange, a kill between the renames leaves no folder but both complete
    copies as temporaries; the next save writes the folder and removes them."""
    a, b = two_runs
    out = tmp_path / "r"
    a.save(out)
    dead = dead_pid()
    old = tmp_path / f".r.old-{files._HOST}-{dead}-00000001"
    new = tmp_path / f".r.tmp-{files._HOST}-{dead}-00000002"
    os.rename(out, old)
    b.save(new, plot=False)
    a.save(out)
    check_run(out, 1, plot=True)
    assert temporaries(tmp_path, "r") == []


def test_out_naming_a_file_is_refused(tmp_path, two_runs, capsys):
    (tmp_path / "f").write_text("mine")
    for out in (tmp_path / "f", tmp_path / "f" / "sub"):
        with pytest.raises(UsageError, match=r"^--out: .*f is a file; give a folder$"):
            two_runs[0].save(out)
    scenario = tmp_path / "s.toml"
    scenario.write_text(SMALL)
    assert cli_main(["run", str(scenario), "--out", str(tmp_path / "f"), "--no-plot"]) == 2
    err = capsys.readouterr().err
    assert err.startswith(f"nudgesim: error: --out: {tmp_path / 'f'} is a")
    assert err.count("\n") == 1 and "file" in err
    assert (tmp_path / "f").read_text() == "mine"


def test_a_folder_of_other_files_is_never_replaced(tmp_path, two_runs):
    a, b = two_runs
    mine = tmp_path / "mine"
    mine.mkdir()
    (mine / "notes.txt").write_text("precious")
    with pytest.raises(
        UsageError,
        match=r"is not a nudgesim run folder \(has no summary.json, "
        r"holds notes.txt\); replacing it would delete its files",
    ):
        a.save(mine)
    assert os.listdir(mine) == ["notes.txt"]
    run = tmp_path / "run"
    a.save(run)
    (run / "extra.csv").write_text("1")
    with pytest.raises(UsageError, match=r"\(holds extra.csv\)"):
        b.save(run)
    check_run_files = {p.name for p in run.iterdir()}
    assert "extra.csv" in check_run_files and temporaries(tmp_path, "run") == []
    # an empty folder, and a run with its report beside it, are replaced
    (tmp_path / "empty").mkdir()
    a.save(tmp_path / "empty")
    (run / "extra.csv").unlink()
    (run / "report.html").write_text("<p>old</p>")
    b.save(run, plot=False)
    check_run(run, 2, plot=False)


def test_the_checks_can_be_made_before_a_run_is_spent(tmp_path):
    from nudgesim.result import check_run_folder

    (tmp_path / "f").write_text("x")
    (tmp_path / "mine").mkdir()
    (tmp_path / "mine" / "notes.txt").write_text("x")
    with pytest.raises(UsageError, match="f is a file"):
        check_run_folder(tmp_path / "f" / "sub")
    with pytest.raises(UsageError, match="not a nudgesim run folder"):
        check_run_folder(tmp_path / "mine")
    assert check_run_folder(tmp_path / "new" / "run") == tmp_path / "new" / "run"
    assert sorted(os.listdir(tmp_path)) == ["f", "mine"]  # nothing written


def test_the_working_folder_is_never_replaced(tmp_path, two_runs, monkeypatch):
    monkeypatch.chdir(tmp_path)
    for out in (".", "..", "/"):
        with pytest.raises(UsageError, match="is the working folder or holds it"):
            two_runs[0].save(out)


def test_a_symlinked_folder_keeps_its_link(tmp_path, two_runs):
    a, b = two_runs
    target = tmp_path / "store" / "r"
    a.save(target)
    link = tmp_path / "link"
    link.symlink_to(target)
    b.save(link, plot=False)
    assert link.is_symlink()
    check_run(link, 2, plot=False)
    assert temporaries(tmp_path / "store", "r") == []


# -- kill -9 during save -------------------------------------------------------------------

# A warm process that forks one saver per request, so a trial costs a save, not a Python
# start-up. A request "seed plot stop delay" asks for a save killed with SIGKILL either
# just before its `stop`-th step (a file renamed into place, the swap, the clean-up of
# the old run; an earlier kill's temporary being cleaned does not count) or `delay`
# seconds after it starts. Only this process's own children are ever killed.
SERVER = textwrap.dedent(
    """
    import os, random, shutil, signal, sys, time
    import matplotlib.pyplot
    from nudgesim import files
    from nudgesim.engine import simulate
    from nudgesim.scenario import Scenario

    base, out = Scenario.from_toml(sys.argv[1]), sys.argv[2]
    rng = random.Random(5)
    for request in sys.stdin:
        seed, plot, stop, delay = request.split()
        res = simulate(base.replace(seed=int(seed)))
        pause = rng.uniform(0.0, 0.05)
        sys.stdout.flush()
        pid = os.fork()
        if pid == 0:
            steps = 0

            def step(name, fn):
                def wrapped(*a, **k):
                    global steps
                    if steps or name != "rmtree":
                        steps += 1
                    if steps and steps == int(stop):
                        time.sleep(pause)
                        os.kill(os.getpid(), signal.SIGKILL)
                    return fn(*a, **k)
                return wrapped

            for mod, name in ((os, "replace"), (os, "rename"), (shutil, "rmtree")):
                setattr(mod, name, step(name, getattr(mod, name)))
            files._exchange = step("exchange", files._exchange)
            res.save(out, plot=plot == "1")
            print(f"saved {steps}", flush=True)
            os._exit(0)
        if float(delay) >= 0:
            time.sleep(float(delay))
            os.kill(pid, signal.SIGKILL)  # not reaped yet: the pid is still this child's
        os.waitpid(pid, 0)
        print("done", flush=True)
    """
)


def test_kill_9_during_save_leaves_the_old_run_or_the_new_one(tmp_path):
    (tmp_path / "s.toml").write_text(SMALL)
    out = tmp_path / "res" / "run"
    env = {**os.environ, "NUDGESIM_NUMBA": "0", "OPENBLAS_NUM_THREADS": "1"}
    server = subprocess.Popen(
        [sys.executable, "-c", SERVER, str(tmp_path / "s.toml"), str(out)],
        stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True, env=env,
    )  # fmt: skip

    def save(seed: int, plot: bool, stop: int = 0, delay: float = -1.0) -> list[str]:
        server.stdin.write(f"{seed} {int(plot)} {stop} {delay}\n")
        server.stdin.flush()
        lines = []
        for line in server.stdout:
            lines.append(line)
            if line == "done\n":
                return lines
        raise AssertionError(f"the server stopped: {lines}")

    rng = random.Random(11)
    try:
        assert save(1, True) == ["saved 7\n", "done\n"]  # 6 files, 1 rename
        check_run(out, 1, plot=True)
        state = (1, True)
        # a save over an old run has 8 steps with the plot (6 files, swap, clean-up), 7
        # without: kill before each of them, then at 4 random moments
        trials = [(k, k % 2 == 0, -1.0) for k in range(1, 9)]
        trials += [(0, k % 2 == 0, rng.uniform(0.0, 1.0)) for k in range(4)]
        for trial, (stop, plot, delay) in enumerate(trials):
            seed = 10 + trial
            save(seed, plot, stop, delay)
            # the folder holds the complete old run or the complete new one, nothing mixed
            seen = json.loads((out / "summary.json").read_text())["seed"]
            assert seen in (state[0], seed), (stop, delay, seen)
            state = (seed, plot) if seen == seed else state
            check_run(out, *state)
        assert state[0] != 1, "some kill should land after the swap"
        assert save(99, False)[0].startswith("saved ")
        check_run(out, 99, plot=False)
        assert temporaries(out.parent, "run") == []
    finally:
        server.stdin.close()
        server.wait(timeout=30)
        server.stdout.close()


# -- locks ---------------------------------------------------------------------------------


def test_a_held_lock_refuses_a_second_holder_naming_the_pid(tmp_path):
    with files.lock_folder(tmp_path / "sweep"):
        with pytest.raises(UsageError) as err:
            with files.lock_folder(tmp_path / "sweep"):
                pass
        msg = str(err.value)
        assert msg.startswith(f"--out: {tmp_path / 'sweep'} is in use by another nudgesim")
        assert f"(pid {os.getpid()})" in msg and "\n" not in msg
    with files.lock_folder(tmp_path / "sweep"):  # released at the end of the block
        pass


def test_waiting_for_a_lock_takes_it_when_the_holder_lets_go(tmp_path):
    held, release = threading.Event(), threading.Event()

    def holder():
        with files.lock_folder(tmp_path):
            held.set()
            release.wait(10)

    t = threading.Thread(target=holder)
    t.start()
    held.wait(10)
    waited = []
    threading.Timer(0.3, release.set).start()
    t0 = time.monotonic()
    with files.lock_folder(tmp_path, wait=True, on_wait=waited.append):
        assert time.monotonic() - t0 >= 0.25
    t.join()
    assert waited == [os.getpid()]


def test_a_killed_holder_leaves_no_stale_lock(tmp_path):
    code = (
        "import sys, time\nfrom nudgesim import files\n"
        "with files.lock_folder(sys.argv[1]):\n    print('locked', flush=True)\n"
        "    time.sleep(60)\n"
    )
    proc = subprocess.Popen(
        [sys.executable, "-c", code, str(tmp_path)], stdout=subprocess.PIPE, text=True
    )
    assert proc.stdout.readline() == "locked\n"
    with pytest.raises(UsageError, match=f"pid {proc.pid}"):
        with files.lock_folder(tmp_path):
            pass
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    proc.stdout.close()
    with files.lock_folder(tmp_path):
        assert (tmp_path / files.LOCK_NAME).read_text() == f"{os.getpid()}\n"


def test_a_lock_on_a_file_is_a_usage_error(tmp_path):
    (tmp_path / "f").write_text("x")
    with pytest.raises(UsageError, match=r"^--out: .*f is a file; give a folder$"):
        with files.lock_folder(tmp_path / "f"):
            pass


def test_a_failed_swap_keeps_the_old_run(tmp_path, two_runs, monkeypatch):
    a, b = two_runs
    out = tmp_path / "r"
    a.save(out)
    monkeypatch.setattr(files, "_exchange", lambda x, y: False)
    real = os.rename

    def rename(src, dst):
        if Path(src).name.startswith(".r.tmp-"):
            raise OSError(5, "Input/output error")
        return real(src, dst)

    monkeypatch.setattr(os, "rename", rename)
    with pytest.raises(OSError, match="Input/output error"):
        b.save(out, plot=False)
    monkeypatch.setattr(os, "rename", real)
    check_run(out, 1, plot=True)
    assert temporaries(tmp_path, "r") == []


# -- tables as numpy columns (Result keeps its tables so: no pandas on `nudgesim run`) ------


def test_columns_are_written_as_pandas_writes_the_same_frame(tmp_path):
    """csv_text is byte for byte pandas' to_csv(index=False), and the Parquet of the
    columns reads back as the same frame, for every kind of value a run's tables hold
    and a few they might (a comma, a quote, a line break, NaN, tiny and huge floats)."""
    columns = {
        "step": np.arange(6, dtype=np.int64),
        "rate": np.array([0.0, 0.1 + 0.2, 1e-05, 123456789.125, np.nan, 1 / 3]),
        "ward": np.array(["Abbey", "St Anne's", 'say "hi"', "a,b", "two\nlines", "é"],
                         dtype=object),
        "flag": np.array([True, False, True, True, False, False]),
        "big": np.array([0, -1, 2**53, 7, 8, 9], dtype=np.int64),
    }
    frame = pd.DataFrame(columns)
    assert files.csv_text(columns) == frame.to_csv(index=False)
    files.write_csv_atomic(columns, tmp_path / "t.csv")
    assert (tmp_path / "t.csv").read_text() == frame.to_csv(index=False)
    files.write_parquet_atomic(columns, tmp_path / "t.parquet")
    pd.testing.assert_frame_equal(pd.read_parquet(tmp_path / "t.parquet"), frame)
    # built from buffers: other byte orders, empty columns and None still come out right
    assert files.arrow_column(np.array([1, -2], dtype=">i8")).to_pylist() == [1, -2]
    assert files.arrow_column(np.array([], dtype=object)).to_pylist() == []
    assert files.arrow_column(np.array(["a", None], dtype=object)).to_pylist() == ["a", None]


def test_a_runs_tables_are_its_columns_and_come_back_from_frames(two_runs):
    """Result.timeseries/by_ward are the columns as DataFrames; a Result made from those
    frames (Result.from_frames) has the same columns and summary."""
    from nudgesim.result import Result

    res = two_runs[0]
    ts = res.timeseries
    assert list(ts.columns) == list(res.timeseries_columns)
    for name, column in res.timeseries_columns.items():
        assert np.array_equal(ts[name].to_numpy(), column)
    again = Result.from_frames(res.scenario, res.timeseries, res.by_ward, adopted=res.adopted,
                               n_ties=res.n_ties)
    assert again.summary == res.summary
    for name, column in res.by_ward_columns.items():
        assert np.array_equal(again.by_ward_columns[name], column)
