"""Start-up stays light: each command imports only what it needs (checked in fresh
processes, since this test process has imported everything already), and `nudgesim run`
draws adoption.png in a helper process (nudgesim.plots.start_worker) that gives the same
PNG, byte for byte, as drawing it here, and falls back to drawing here when it fails; no
helper outlives its command (main([...]) from Python, SIGTERM, SIGKILL, Ctrl-C), and none
imports modules from the user's working folder."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time

import numpy as np
import pytest

from nudgesim import plots
from nudgesim.cli import UNUSED_NUMPY, _draws_run_figure

HEAVY = ("numba", "networkx", "scipy.sparse", "matplotlib", "pandas", "mesa")
# what `import nudgesim.cli` must not load either: the command line starts the drawing
# helper before these imports, so that the helper's start overlaps them
SCENARIO_MODELS = ("numpy", "pydantic", "nudgesim.scenario")
TWO_CPUS = len(os.sched_getaffinity(0)) >= 2 if hasattr(os, "sched_getaffinity") else False
TOWN = 'name = "town"\nsteps = 4\n[population]\nsize = 300\n'


def _modules_after(code: str, cwd, **env_extra: str) -> set[str]:
    env = {k: v for k, v in os.environ.items() if k not in ("NUDGESIM_NUMBA", plots.WORKER_ENV)}
    env.update(env_extra)
    out = subprocess.run([sys.executable, "-c", code + "\nimport sys\nprint(' '.join(sys.modules))"],
                         env=env, capture_output=True, text=True, check=True, cwd=cwd)
    return set(out.stdout.split())


@pytest.mark.parametrize("module", ["nudgesim", "nudgesim.cli", "nudgesim.plots"])
def test_importing_loads_no_heavy_library(module, tmp_path):
    loaded = _modules_after(f"import {module}", tmp_path)
    assert not loaded & set(HEAVY + SCENARIO_MODELS), loaded & set(HEAVY + SCENARIO_MODELS)


def test_the_public_names_still_resolve(tmp_path):
    code = ("import nudgesim as ns\n"
            "assert callable(ns.simulate) and callable(ns.sensitivity)\n"
            "import nudgesim.sensitivity\n"
            "assert callable(ns.sensitivity)  # the function, not the submodule\n"
            "assert ns.Engine and ns.Experiment and ns.Network and ns.Result and ns.Population\n"
            "from nudgesim import Scenario, ScenarioError\n"
            "from nudgesim.scenario import Scenario as S, ScenarioError as E\n"
            "assert Scenario is S and ScenarioError is E\n")
    _modules_after(code, tmp_path)


def test_a_small_run_with_its_plot_needs_neither_numba_nor_pyplot_nor_pandas(tmp_path):
    """The run's tables stay numpy columns (Result.timeseries_columns) and go to disk by
    pyarrow and a CSV writer of our own: pandas' import (0.49-0.67 s measured) is not paid."""
    (tmp_path / "town.toml").write_text(TOWN)
    code = ("from nudgesim.cli import main\n"
            "assert main(['run', 'town.toml', '--out', 'out']) == 0\n")
    loaded = _modules_after(code, tmp_path, **{plots.WORKER_ENV: "0"})
    assert (tmp_path / "out" / "adoption.png").stat().st_size > 1000
    assert "numba" not in loaded and "matplotlib.pyplot" not in loaded
    assert "pandas" not in loaded and "pyarrow.parquet" in loaded
    assert "matplotlib.figure" in loaded  # drawn here: the helper was switched off
    assert "scipy.sparse" not in loaded  # a small graph's products need no scipy (RowProduct)


@pytest.mark.skipif(not TWO_CPUS, reason="the helper runs only with two CPUs or more")
def test_the_helper_draws_the_same_png_and_the_run_never_imports_matplotlib(tmp_path):
    (tmp_path / "town.toml").write_text(TOWN)
    code = ("from nudgesim.cli import main\n"
            "assert main(['run', 'town.toml', '--out', '{out}']) == 0\n")
    here = _modules_after(code.format(out="here"), tmp_path, **{plots.WORKER_ENV: "0"})
    helped = _modules_after(code.format(out="helped"), tmp_path)
    assert "matplotlib.figure" in here
    assert not {m for m in helped if m.split(".")[0] == "matplotlib"}  # drawn by the helper
    for name in ("adoption.png", "timeseries.csv", "summary.json"):
        assert (tmp_path / "helped" / name).read_bytes() == (tmp_path / "here" / name).read_bytes()


def test_python_m_nudgesim_runs_with_the_helper(tmp_path):
    (tmp_path / "town.toml").write_text(TOWN)
    done = subprocess.run([sys.executable, "-m", "nudgesim", "run", "town.toml", "--out", "o"],
                          cwd=tmp_path, capture_output=True, text=True)
    assert done.returncode == 0, done.stderr
    assert done.stderr == ""  # the helper prints nothing
    assert (tmp_path / "o" / "adoption.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


@pytest.mark.parametrize(("argv", "draws"), [
    (["run"], True), (["run", "b.toml", "--out", "x"], True), (["run", "--seed", "3"], True),
    (["run", "--no-plot"], False), (["run", "--no-p"], False), (["run", "x.toml", "-h"], False),
    (["run", "--help"], False), (["validate", "x.toml"], False), (["sweep", "run"], False),
    ([], False),
])
def test_the_helper_starts_only_for_a_run_that_draws(argv, draws):
    assert _draws_run_figure(argv) is draws


# -- the helper itself, driven from this process ------------------------------------------

def _data() -> dict:
    """A run-shaped figure with every kind of element draw_figure uses (ward range, twin
    lines, legends, £ ticks, two windows with contacts, a `$` in a name)."""
    step = np.arange(53)
    rate = 0.3 + 0.002 * step
    return {
        "windows": [{"name": plots.plot_text("leaflet $5"), "start": 4, "stop": 9,
                     "contacts": [4, 6, 8]},
                    {"name": "ambassadors", "start": 13, "stop": 40, "contacts": [13, 26]}],
        "step": step, "rate": rate, "cost": 1000.0 * step, "impact": 2.5 * step,
        "twin_rate": rate - 0.001 * step, "twin_impact": 2.0 * step,
        "ward_range": (step, rate - 0.05, rate + 0.05), "peak": float(rate[-1] + 0.05),
        "title": "a test figure: 20,000 residents over 52 weeks (seed 1)",
        "xlabel": "step (week)", "impact_label": "cumulative impact\n(t food waste diverted)",
    }


def _drawn(worker, data):
    """The helper's PNG of `data`, as start_plot and PendingPlot.write get it (None: it
    failed, timed out or was gone)."""
    return worker.receive() if worker.send(data) else None


@pytest.fixture
def worker():
    w = plots._Worker()
    yield w
    w.close()
    plots._WORKER = None


def test_the_helpers_png_is_this_processs_png(worker):
    assert _drawn(worker, _data()) == plots.figure_png(_data())
    assert worker.proc.returncode is not None  # one figure, then it is reaped


def test_a_layout_sent_ahead_gives_the_same_png(worker):
    """The helper builds the layout while the run simulates (and draws its panels while it
    waits); finishing on it gives the PNG a drawing from scratch gives."""
    data = _data()
    assert worker.send(plots.layout_of(data), plots.LAYOUT)
    assert _drawn(worker, data) == plots.figure_png(data)


def test_a_layout_that_does_not_match_the_data_is_drawn_again(worker):
    data = _data()
    other = {**plots.layout_of(data), "windows": data["windows"][:1]}
    assert worker.send(other, plots.LAYOUT)
    assert _drawn(worker, data) == plots.figure_png(data)


def test_finishing_a_started_figure_is_drawing_it_whole():
    """In this process, the ways the helper can take: finished on the bare layout, or on
    one drawn first (panel by panel as `_warm_up` does, or whole), which loads the fonts,
    makes the ticks and measures the labels before the results come.
    Drawing here keeps matplotlib's property docs (the helper alone skips them)."""
    import queue

    import matplotlib.artist
    from matplotlib.lines import Line2D

    data = _data()
    whole = plots.figure_png(data)
    assert plots.figure_png(data, plots.start_figure(plots.layout_of(data))) == whole
    started = plots.start_figure(plots.layout_of(data))
    plots._warm_up(started, queue.SimpleQueue())  # no data yet: every panel drawn once
    assert plots.figure_png(data, started) == whole
    started = plots.start_figure(plots.layout_of(data))
    started.fig.canvas.draw()
    assert plots.figure_png(data, started) == whole
    assert "linewidth" in matplotlib.artist.kwdoc(Line2D)


def test_the_png_is_what_savefig_writes():
    """figure_png writes with the canvas's print_png, skipping savefig's own work around
    the drawing: the same bytes as `fig.savefig(..., dpi=DPI)`."""
    import io

    data = _data()
    saved = io.BytesIO()
    plots.draw_figure(data).savefig(saved, format="png", dpi=plots.DPI)
    assert plots.figure_png(data) == saved.getvalue()


@pytest.mark.parametrize("twin", [True, False])
@pytest.mark.parametrize("name", ["BOROUGH", "SMALL_TOWN"])
def test_the_layout_known_before_the_run_is_the_runs(name, twin):
    """figure_layout(scenario) is what the finished run's figure_data lays out, so the
    helper's head start is used (a mismatch would only cost the time)."""
    import nudgesim as ns
    from nudgesim import scenarios

    sc = ns.Scenario.from_toml(scenarios.path(getattr(scenarios, name))).replace(steps=30)
    res = ns.simulate(sc, counterfactual=twin)
    assert plots.figure_layout(sc, twin) == plots.layout_of(plots.figure_data(res))


def test_the_run_command_sends_the_layout_before_it_simulates(tmp_path, monkeypatch):
    from nudgesim import engine
    from nudgesim.cli import main

    calls = []
    monkeypatch.setattr(plots, "send_layout", lambda sc, twin: calls.append(("layout", twin)))
    simulate = engine.simulate
    monkeypatch.setattr(engine, "simulate",
                        lambda *a, **k: calls.append(("simulate", k["counterfactual"])) or
                        simulate(*a, **k))
    (tmp_path / "town.toml").write_text(TOWN)
    monkeypatch.setenv(plots.WORKER_ENV, "0")
    assert main(["run", str(tmp_path / "town.toml"), "--out", str(tmp_path / "a")]) == 0
    assert main(["run", str(tmp_path / "town.toml"), "--out", str(tmp_path / "b"),
                 "--no-counterfactual"]) == 0
    assert main(["run", str(tmp_path / "town.toml"), "--out", str(tmp_path / "c"),
                 "--no-plot"]) == 0
    assert calls == [("layout", True), ("simulate", True), ("layout", False),
                     ("simulate", False), ("simulate", True)]


def test_a_failed_drawing_is_drawn_here(worker, tmp_path, monkeypatch):
    assert _drawn(worker, {"windows": []}) is None  # a KeyError in the helper, reported
    assert worker.proc.returncode is not None
    dead = plots._Worker()
    dead.proc.kill()
    dead.proc.wait()
    monkeypatch.setattr(plots, "_WORKER", dead)
    monkeypatch.setattr(plots, "figure_data", lambda result: _data())
    path = plots.plot_run(None, tmp_path / "a.png")  # type: ignore[arg-type]
    assert path.read_bytes() == plots.figure_png(_data())
    assert plots._WORKER is None


def test_a_helper_that_dies_after_the_layout_leaves_the_drawing_here(tmp_path, monkeypatch,
                                                                    request):
    helper = plots._Worker()
    request.addfinalizer(helper.close)
    monkeypatch.setattr(plots, "_WORKER", helper)
    monkeypatch.setattr(plots, "figure_layout", lambda sc, twin: plots.layout_of(_data()))
    plots.send_layout(None, True)  # type: ignore[arg-type]
    helper.proc.kill()
    helper.proc.wait()
    plots.send_layout(None, True)  # type: ignore[arg-type]  # a dead helper: no error
    monkeypatch.setattr(plots, "figure_data", lambda result: _data())
    path = plots.plot_run(None, tmp_path / "a.png")  # type: ignore[arg-type]
    assert path.read_bytes() == plots.figure_png(_data())
    assert plots._WORKER is None


def test_save_hands_the_helper_its_figure_before_the_tables(worker, tmp_path, monkeypatch,
                                                             request):
    """Result.save sends the figure's data first, so the helper draws while the tables are
    written; a save that fails half way still stops the helper (no child outlives it)."""
    import nudgesim as ns
    from nudgesim import result as result_mod
    from nudgesim.errors import UsageError
    from nudgesim.scenario import Scenario

    res = ns.simulate(Scenario.from_toml_str(TOWN))
    monkeypatch.setattr(plots, "_WORKER", worker)
    sent = []
    send = plots._Worker.send
    monkeypatch.setattr(plots._Worker, "send", lambda self, data: sent.append(1) or send(self, data))
    write = result_mod.write_parquet_atomic

    def tables_after_the_plot(*args, **kwargs):
        assert sent, "the tables were written before the helper had the figure"
        return write(*args, **kwargs)

    monkeypatch.setattr(result_mod, "write_parquet_atomic", tables_after_the_plot)
    res.save(tmp_path / "run")
    assert (tmp_path / "run" / "adoption.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert worker.proc.returncode is not None

    again = plots._Worker()
    request.addfinalizer(again.close)  # should the save not stop it
    monkeypatch.setattr(plots, "_WORKER", again)

    def disk_full(*args, **kwargs):
        raise OSError("no space left on device")

    monkeypatch.setattr(result_mod, "write_parquet_atomic", disk_full)
    with pytest.raises(OSError):
        res.save(tmp_path / "again")
    assert again.proc.returncode is not None and plots._WORKER is None

    refused = plots._Worker()  # a folder save refuses before anything is written
    request.addfinalizer(refused.close)
    monkeypatch.setattr(plots, "_WORKER", refused)
    (tmp_path / "mine").mkdir()
    (tmp_path / "mine" / "thesis.tex").write_text("a user's file")
    with pytest.raises(UsageError):
        res.save(tmp_path / "mine")
    assert refused.proc.returncode is not None and plots._WORKER is None


def test_a_slow_helper_is_stopped_and_the_figure_drawn_here(worker, monkeypatch):
    monkeypatch.setattr(plots, "WORKER_TIMEOUT", 0.001)  # the helper is still importing
    assert _drawn(worker, _data()) is None
    assert worker.proc.returncode is not None


def test_the_helper_is_not_started_when_it_cannot_help(monkeypatch):
    monkeypatch.setattr(plots, "_WORKER", None)
    monkeypatch.setenv(plots.WORKER_ENV, "0")
    assert plots.start_worker() is False
    monkeypatch.delenv(plots.WORKER_ENV)
    import matplotlib.figure  # noqa: F401  (already here: drawing here costs only the draw)

    assert plots.start_worker() is False and plots._WORKER is None


def test_figure_data_is_plain_data():
    """What crosses to the helper: arrays, numbers and strings, nothing of pandas."""
    import nudgesim as ns
    from nudgesim import scenarios

    town = ns.Scenario.from_toml(scenarios.path(scenarios.SMALL_TOWN))
    res = ns.simulate(town.replace(steps=30), counterfactual=True)
    data = plots.figure_data(res)
    for value in data.values():
        assert isinstance(value, (np.ndarray, list, tuple, float, str, type(None)))
    assert np.array_equal(data["rate"], res.timeseries["adoption_rate"].to_numpy())
    assert data["twin_rate"] is not None and data["ward_range"] is not None


# -- the garbage collector during a command's imports ---------------------------------------

def test_the_process_command_freezes_its_imports_and_a_call_from_python_does_not(tmp_path):
    """`nudgesim run` (main() reading the process's command line) freezes what its imports
    created, so later collections skip them; main([...]) called from Python leaves the host
    process's collector as it was (enabled, nothing frozen), and a disabled one disabled."""
    (tmp_path / "town.toml").write_text(TOWN)
    code = ("import gc, sys\nfrom nudgesim.cli import main\n"
            "before = gc.get_freeze_count()\n"
            "assert main(['run', 'town.toml', '--no-plot', '--out', 'a']) == 0\n"
            "assert gc.isenabled() and gc.get_freeze_count() == before\n"
            "gc.disable()\n"
            "assert main(['run', 'town.toml', '--no-plot', '--out', 'b']) == 0\n"
            "assert not gc.isenabled() and gc.get_freeze_count() == before\n"
            "gc.enable()\n"
            "sys.argv = ['nudgesim', 'run', 'town.toml', '--no-plot', '--out', 'c']\n"
            "assert main() == 0\n"
            "assert gc.isenabled() and gc.get_freeze_count() > before + 30_000\n")  # ~47,000 measured
    _modules_after(code, tmp_path)
    for out in "abc":
        assert (tmp_path / out / "summary.json").read_bytes() == (tmp_path / "a" / "summary.json").read_bytes()


def test_the_process_command_defers_numpys_unused_subpackages_and_they_still_work(tmp_path):
    """`nudgesim run` as the whole process leaves numpy.f2py, numpy.testing and
    numpy.polynomial unrun (lazy modules), though scipy.sparse's `from numpy import *`
    names them; on first use they load and work. main([...]) from Python defers nothing."""
    (tmp_path / "town.toml").write_text(TOWN)
    kinds = "print('KINDS', *(type(sys.modules[n]).__name__ for n in UNUSED_NUMPY))\n"
    start = "import sys\nfrom nudgesim.cli import main, UNUSED_NUMPY\n"
    scipy = "import scipy.sparse\n"  # a larger graph's run imports it (Engine.product)
    command = (start + "sys.argv = ['nudgesim', 'run', 'town.toml', '--no-plot', '--out', 'a']\n"
               "assert main() == 0\n" + scipy + kinds + "import numpy as np\n"
               "np.testing.assert_array_equal(np.polynomial.Polynomial([1, 2])([2]), [5.0])\n"
               "assert callable(np.f2py.run_main)\n" + kinds)
    called = start + "assert main(['run', 'town.toml', '--no-plot', '--out', 'b']) == 0\n" + scipy + kinds
    lines = [[line.split()[1:] for line in subprocess.run(
        [sys.executable, "-c", code], cwd=tmp_path, capture_output=True, text=True, check=True,
    ).stdout.splitlines() if line.startswith("KINDS")] for code in (command, called)]
    n = len(UNUSED_NUMPY)
    assert lines[0] == [["_LazyModule"] * n, ["module"] * n]  # then used: loaded in full
    assert lines[1] == [["module"] * n]  # from Python: as scipy left them
    assert (tmp_path / "a" / "summary.json").read_bytes() == (
        tmp_path / "b" / "summary.json").read_bytes()


def test_the_process_command_skips_pydantic_plugins_unless_told_otherwise(tmp_path):
    """`nudgesim ...` as the whole process runs with PYDANTIC_DISABLE_PLUGINS=__all__ (no
    scan of every installed package's entry points), but keeps a value the user set, even
    an empty one (plugins on); main([...]) called from Python leaves the variable alone."""
    (tmp_path / "town.toml").write_text(TOWN)
    show = "print('PLUGINS', repr(os.environ.get('PYDANTIC_DISABLE_PLUGINS')))\n"
    start = "import os, sys\nfrom nudgesim.cli import main\n"
    command = start + "sys.argv = ['nudgesim', 'validate', 'town.toml']\nassert main() == 0\n" + show
    called = start + "assert main(['validate', 'town.toml']) == 0\n" + show

    def seen(code: str, **env: str) -> str:
        environ = {k: v for k, v in os.environ.items() if k != "PYDANTIC_DISABLE_PLUGINS"}
        out = subprocess.run([sys.executable, "-c", code], cwd=tmp_path, capture_output=True,
                             text=True, check=True, env=environ | env).stdout
        return [line for line in out.splitlines() if line.startswith("PLUGINS")][0].split()[1]

    assert seen(command) == "'__all__'"
    assert seen(command, PYDANTIC_DISABLE_PLUGINS="") == "''"
    assert seen(called) == "None"


# -- no helper outlives its command ---------------------------------------------------------

PROC = os.path.isdir("/proc/self/task")
needs_helper = pytest.mark.skipif(not (TWO_CPUS and PROC),
                                  reason="a helper runs only with two CPUs; found through /proc")


def _helpers_of(pid: int) -> list[int]:
    """Live processes whose environment marks them as the drawing helper of `pid` (a
    zombie's environment reads empty): found even after the parent died and they were
    handed to another parent."""
    mark = f"{plots.HELPER_ENV}={pid}".encode()
    found = []
    for name in os.listdir("/proc"):
        if name.isdigit():
            try:
                env = open(f"/proc/{name}/environ", "rb").read()  # noqa: SIM115
            except OSError:
                continue
            if mark in env.split(b"\0"):
                found.append(int(name))
    return found


def _wait_for(condition, timeout: float) -> bool:
    end = time.monotonic() + timeout
    while time.monotonic() < end:
        if condition():
            return True
        time.sleep(0.005)
    return condition()


def _start_run(tmp_path, **popen) -> tuple[subprocess.Popen, list[int]]:
    """`nudgesim run` on a small town, and its helper once it runs (main has begun)."""
    (tmp_path / "town.toml").write_text(TOWN)
    env = {k: v for k, v in os.environ.items() if k != plots.WORKER_ENV}
    proc = subprocess.Popen([sys.executable, "-P", "-m", "nudgesim", "run", "town.toml",
                             "--out", "o"], cwd=tmp_path, env=env, stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True, **popen)
    helpers: list[int] = []
    if not _wait_for(lambda: bool(helpers.extend(_helpers_of(proc.pid)) or helpers), 20):
        proc.kill()
        proc.communicate()
        pytest.fail("the run started no drawing helper")
    return proc, helpers


@needs_helper
def test_no_helper_outlives_main_called_from_python(tmp_path):
    """A notebook, server or script calling main([...]) lives on after the command: on every
    way out (done, bad file, bad output folder, bad option, Ctrl-C) the helper main started
    is stopped and reaped, not left to the host's exit."""
    (tmp_path / "town.toml").write_text(TOWN)
    code = ("import os\nfrom nudgesim import plots\nfrom nudgesim.cli import main\n"
            "def children():\n"
            "    me = str(os.getpid())\n"
            "    for n in os.listdir('/proc'):\n"
            "        try:\n"
            "            stat = open(f'/proc/{n}/stat').read() if n.isdigit() else ''\n"
            "        except OSError:\n"
            "            continue\n"
            "        if stat and stat.rsplit(')', 1)[1].split()[1] == me:\n"
            "            yield n\n"
            "def interrupt(args):\n"
            "    raise KeyboardInterrupt\n"
            "for argv in (['run', 'town.toml', '--out', 'o'], ['run', 'missing.toml'],\n"
            "             ['run', 'town.toml', '--out', '/etc/passwd'], ['run', '--bogus'],\n"
            "             ['run', 'town.toml', '--seed', 'x']):\n"
            "    try:\n"
            "        code = main(argv)\n"
            "    except SystemExit as err:\n"
            "        code = err.code\n"
            "    print('RESULT', code, sorted(children()), plots._WORKER)\n"
            "from nudgesim.cli import run\n"
            "run.cmd_run = interrupt\n"
            "print('RESULT', main(['run', 'town.toml']), sorted(children()), plots._WORKER)\n")
    env = {k: v for k, v in os.environ.items() if k != plots.WORKER_ENV}
    done = subprocess.run([sys.executable, "-c", code], cwd=tmp_path, env=env,
                          capture_output=True, text=True, timeout=120)
    lines = [line for line in done.stdout.splitlines() if line.startswith("RESULT")]
    assert done.returncode == 0 and len(lines) == 6, done.stderr
    assert [line.split()[1] for line in lines] == ["0", "2", "2", "2", "2", "130"], lines
    assert all(line.endswith("[] None") for line in lines), lines


@needs_helper
@pytest.mark.parametrize("sig", [signal.SIGTERM, signal.SIGKILL])
def test_a_killed_run_leaves_no_helper(tmp_path, sig):
    """Killed while the helper still imports matplotlib (~0.5 s), the worst moment: after
    SIGKILL the kernel (Linux: PR_SET_PDEATHSIG) or the helper's stdin watcher ends it
    within 0.3 s, less than the import the helper would otherwise finish first. SIGTERM
    becomes SystemExit in the run, whose cleanup stops the helper (exit code 143); Python
    runs the handler between bytecodes, so a run inside one long C call (a large
    extension's load on a busy machine) takes longer: 1 s allowed."""
    proc, helpers = _start_run(tmp_path)
    os.kill(proc.pid, sig)
    allowed = 0.3 if sig == signal.SIGKILL else 1.0
    gone = _wait_for(lambda: not _helpers_of(proc.pid), allowed)
    proc.communicate(timeout=30)
    for pid in _helpers_of(proc.pid):  # do not leave one behind for the next test
        os.kill(pid, signal.SIGKILL)
    assert gone, f"helper {helpers} still running {allowed} s after the run got {sig.name}"
    assert proc.returncode == (128 + sig if sig == signal.SIGTERM else -sig)


@needs_helper
@pytest.mark.parametrize("delay", [0.0, 0.25, 0.75])
def test_ctrl_c_during_start_up_is_interrupted_not_a_traceback(tmp_path, delay):
    """Ctrl-C (SIGINT to the whole process group, as a terminal sends it) at moments after
    main has begun (its helper runs): parsing, the command's imports, the run. The answer
    is always 'nudgesim: interrupted' and exit code 130 (or a run already done, 0); and no
    helper is left. Before main begins (the interpreter's own start and `import
    nudgesim.cli`, ~50 ms) Python itself handles Ctrl-C."""
    proc, _ = _start_run(tmp_path, start_new_session=True)
    time.sleep(delay)
    os.killpg(proc.pid, signal.SIGINT)
    out, err = proc.communicate(timeout=60)
    assert "Traceback" not in err, err
    if proc.returncode == 0:  # finished before the signal came
        assert "wrote" in out
    else:  # 130; or ended by SIGINT itself, the shell's 130 too: CPython does that when
        # the interrupt went through C code that runs Python source (pyarrow's start-up)
        assert proc.returncode in (130, -signal.SIGINT), err
        assert err.strip().endswith("nudgesim: interrupted"), err
    assert _wait_for(lambda: not _helpers_of(proc.pid), 1.0)


#: a command import that gets a signal and turns its exception into an error of its own,
#: as pydantic-core does when a Ctrl-C lands while it builds a validator (SchemaError)
WRAPPING_IMPORT = """import os, signal, time
try:
    os.kill(os.getpid(), signal.{name})
    time.sleep(5)
except BaseException as err:
    raise RuntimeError(f"schema build failed: {{err!r}}") from None
"""


@pytest.mark.parametrize("sig", [signal.SIGINT, signal.SIGTERM])
def test_a_signal_a_library_wrapped_in_its_own_error_is_still_an_interrupt(tmp_path, sig):
    """The exception a signal raises can come up as another error when it passes through a
    library (pydantic-core: SchemaError). The command still answers as for the signal
    itself: 'nudgesim: interrupted' and 130 for Ctrl-C, 128 + signal for SIGTERM, and no
    traceback, instead of the library's error."""
    (tmp_path / "town.toml").write_text(TOWN)
    (tmp_path / "wrapping.py").write_text(WRAPPING_IMPORT.format(name=sig.name))
    code = ("import sys\n"
            f"sys.path.insert(0, {str(tmp_path)!r})\n"
            "from nudgesim import cli\n"
            "cli.PRELOAD['run'] = ('wrapping',)\n"
            "sys.argv = ['nudgesim', 'run', 'town.toml', '--no-plot', '--out', 'o']\n"
            "sys.exit(cli.main())\n")
    done = subprocess.run([sys.executable, "-c", code], cwd=tmp_path, capture_output=True,
                          text=True, timeout=120)
    assert "Traceback" not in done.stderr and "schema build" not in done.stderr, done.stderr
    if sig == signal.SIGINT:
        assert done.returncode == 130, done.stderr
        assert done.stderr.strip() == "nudgesim: interrupted"
    else:
        assert done.returncode == 128 + sig, done.stderr
    assert not (tmp_path / "o").exists()


def test_main_s_sigint_handler_gives_way_to_a_later_one():
    """_signals_as_exceptions puts back the SIGINT handler it found, unless someone set a
    newer one meanwhile (_status_keeper's, once the command has its answer): that one stays
    for the rest of the process."""
    from nudgesim.cli import _signals_as_exceptions

    before = signal.getsignal(signal.SIGINT)
    with _signals_as_exceptions(True):
        assert signal.getsignal(signal.SIGINT) is not before
    assert signal.getsignal(signal.SIGINT) is before

    def later(signum, frame):
        pass

    try:
        with _signals_as_exceptions(True):
            signal.signal(signal.SIGINT, later)
        assert signal.getsignal(signal.SIGINT) is later
    finally:
        signal.signal(signal.SIGINT, before)


@needs_helper
def test_the_helper_never_imports_from_the_working_folder(tmp_path):
    """Modules named like the standard library's or numpy next to a user's scenario are not
    imported by the helper (started with -P, nudgesim loaded by its own location): each
    trap leaves a file if imported. The run itself is started with -P too (as the
    `nudgesim` script is), so any trap that fires was the helper's."""
    for name in ("struct", "numpy", "pickle", "selectors", "matplotlib", "nudgesim"):
        (tmp_path / f"{name}.py").write_text(
            f"open({str(tmp_path / ('imported-' + name))!r}, 'w').close()\n")
    proc, _ = _start_run(tmp_path)
    out, err = proc.communicate(timeout=120)
    assert proc.returncode == 0, err
    assert not sorted(p.name for p in tmp_path.glob("imported-*"))
    assert (tmp_path / "o" / "adoption.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_stop_worker_stops_and_reaps_the_helper(monkeypatch):
    monkeypatch.setattr(plots, "_WORKER", plots._Worker())
    proc = plots._WORKER.proc
    plots.stop_worker()
    assert plots._WORKER is None and proc.returncode is not None
    plots.stop_worker()  # none running: nothing to do


def test_sigterm_is_an_exit_only_while_the_process_command_runs():
    from nudgesim.cli import _signals_as_exceptions

    before = signal.getsignal(signal.SIGTERM)
    with _signals_as_exceptions(False):
        assert signal.getsignal(signal.SIGTERM) is before  # main([...]): the host's own
    with pytest.raises(SystemExit) as exit_, _signals_as_exceptions(True):
        os.kill(os.getpid(), signal.SIGTERM)
        time.sleep(1)  # the handler raises at the next bytecode
    assert exit_.value.code == 128 + signal.SIGTERM
    assert signal.getsignal(signal.SIGTERM) is before


def test_a_lost_sigterm_exit_still_ends_the_command_and_kills_the_helper(monkeypatch):
    """Python drops an exception raised while a weakref callback runs ("Exception ignored
    in ..."), and a signal handler can run there: the handler has already killed the helper,
    and the exit is raised again when the command's work is done."""
    import weakref

    from nudgesim.cli import _signals_as_exceptions

    monkeypatch.setattr(plots, "_WORKER", plots._Worker())
    proc = plots._WORKER.proc

    class Thing:
        pass

    monkeypatch.setattr(sys, "unraisablehook", lambda unraisable: None)
    with pytest.raises(SystemExit) as exit_, _signals_as_exceptions(True):
        handler = signal.getsignal(signal.SIGTERM)
        thing = Thing()
        ref = weakref.ref(thing, lambda r: handler(signal.SIGTERM, None))
        del thing  # the callback runs the handler; its SystemExit is dropped here
        assert ref() is None
        assert proc.wait(timeout=5) == -signal.SIGKILL  # killed by the handler
    assert exit_.value.code == 128 + signal.SIGTERM
    plots.stop_worker()
    assert plots._WORKER is None


#: a Ctrl-C (SIGINT to itself) at the end of a process: in an exit function, or in the
#: teardown after them (a module global's __del__)
LATE_CTRL_C = {
    "an exit function": "atexit.register(lambda: os.kill(os.getpid(), signal.SIGINT))",
    "the teardown": ("class Late:\n    def __del__(self):\n"
                     "        os.kill(os.getpid(), signal.SIGINT)\nlate = Late()"),
}


@pytest.mark.parametrize("late", list(LATE_CTRL_C))
def test_a_ctrl_c_once_the_command_has_its_answer_keeps_the_answer(late):
    """The command is done (files written, "wrote" printed): a Ctrl-C in the process's
    last milliseconds must not turn it into a run killed by SIGINT (exit -2, no word).
    In an exit function it ends the process at once with the kept status (3 here); in
    the teardown after them it is ignored, and the process ends as it would have (0)."""
    code = ("import atexit, os, signal\n"
            "from nudgesim.cli import _status_keeper\n"
            "_status_keeper(True)(3)\n"
            f"{LATE_CTRL_C[late]}\n"
            "print('done', flush=True)\n")
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                          timeout=60)
    assert proc.stdout == "done\n"
    assert proc.stderr == ""
    assert proc.returncode == (3 if late == "an exit function" else 0)
