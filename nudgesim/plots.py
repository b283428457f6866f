"""Figures of a run: the adoption curve with nudge windows shaded, cost and impact below.

Drawing is split in two: `figure_data` reads a run into plain numbers and strings, and
`draw_figure` turns those into a matplotlib Figure. The split lets `nudgesim run` draw in a
helper process (`start_worker`) that imports matplotlib on another core while the run
imports its own libraries and simulates: that import alone costs about as much as the
borough's whole simulation (~0.45 s), and none of it depends on the results. The figure's
layout does not depend on them either (`figure_layout`: the nudge rows and labels come
from the scenario), so the helper draws that too before the results arrive.
The helper draws exactly what this process would draw (same code, same data), and any
failure of the helper falls back to drawing here. Its price: a second Python process,
~66 MB resident once matplotlib is imported (measured), for the length of the run.

It never outlives the run: its starter stops it on every way out (`stop_worker`); it
watches its stdin from a thread started before any heavy import and exits when the pipe
closes (the parent finished, gave up or died); on Linux the kernel also kills it when
the parent dies (PR_SET_PDEATHSIG). It is started with `python -P` and loads nudgesim by
location, so nothing in the user's working folder is imported.
"""

from __future__ import annotations

import atexit
import io
import os
import pickle
import queue
import selectors
import signal
import struct
import subprocess
import sys
import threading
from collections.abc import Iterable
from typing import TYPE_CHECKING, Any, NamedTuple, Protocol

# no pathlib and no .files here (~25 ms): `nudgesim run` starts the helper as soon as this
# module is imported, and the helper imports it too, so its imports delay both
if TYPE_CHECKING:
    from pathlib import Path

    import numpy as np
    from matplotlib.axes import Axes
    from matplotlib.figure import Figure

    from .scenario import Scenario

DPI = 110  # adoption.png: 9 x 7.5 inches -> 990 x 825 pixels


class RunRecord(Protocol):
    """What `plot_run` reads from a run (a `Result` has it): plots need no Result class."""

    scenario: Scenario
    timeseries_columns: dict[str, np.ndarray]
    by_ward_columns: dict[str, np.ndarray]
    adopted: np.ndarray
    nudge_windows: list[dict[str, Any]]


def plot_text(text: object) -> str:
    """Text for a matplotlib label, shown as written: a `$` would start mathtext, which
    renders `$x^2$` as maths and fails the whole figure on `$\\foo$`."""
    return str(text).replace("$", r"\$")


def plot_run(result: RunRecord, path: str | Path) -> Path:
    """Draw `run_figure` and write it as a PNG (atomically: readers never see half a PNG);
    drawn by the helper process when `start_worker` started one, else here."""
    with start_plot(result) as pending:
        return pending.write(path)


class PendingPlot:
    """A run's figure being drawn: `start_plot` hands the data to the helper at once, so
    the helper draws while the caller writes its tables (`Result.save`); `write` then
    waits for the PNG (or draws here). Leaving the `with` block stops the helper on every
    path, so none outlives a save that failed half way."""

    def __init__(self, data: dict[str, Any], worker: _Worker | None) -> None:
        self.data = data
        self.worker = worker

    def write(self, path: str | Path) -> Path:
        worker, self.worker = self.worker, None
        png = worker.receive() if worker is not None else None
        if png is None:
            png = figure_png(self.data)
        from pathlib import Path

        from .files import write_atomic

        path = Path(path)
        write_atomic(path, png)
        return path

    def close(self) -> None:
        if self.worker is not None:
            self.worker.close()
            self.worker = None

    def __enter__(self) -> PendingPlot:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def send_layout(scenario: Scenario, twin: bool) -> None:
    """Give the helper, if one is running, the figure's layout (`figure_layout`) before
    the run: it draws that while the run simulates. The data sent later decides the
    picture: a layout that does not match it is drawn again from scratch."""
    if _WORKER is not None:
        _WORKER.send(figure_layout(scenario, twin), LAYOUT)


def start_plot(result: RunRecord) -> PendingPlot:
    """Start drawing `run_figure(result)`: sent to the helper process now when one is
    running (one figure per helper), else drawn by `PendingPlot.write`."""
    global _WORKER
    data = figure_data(result)
    worker, _WORKER = _WORKER, None
    if worker is not None and not worker.send(data):
        worker = None
    return PendingPlot(data, worker)


def run_figure(result: RunRecord) -> Figure:
    """The run's figure (see `draw_figure`)."""
    return draw_figure(figure_data(result))


def figure_png(data: dict[str, Any], started: StartedFigure | None = None) -> bytes:
    """`draw_figure(data)` as PNG bytes, finished on `started` when that is a
    `start_figure` of the same layout (the helper's head start): the same bytes either way."""
    if started is not None and started.layout == layout_of(data):
        fig = finish_figure(started, data)
    else:
        fig = draw_figure(data)
    from matplotlib.backends.backend_agg import FigureCanvasAgg

    canvas = fig.canvas
    assert isinstance(canvas, FigureCanvasAgg)  # start_figure's own canvas
    png = io.BytesIO()
    # the canvas's own writer, not fig.savefig: the same bytes (tested), without
    # savefig's own work around the drawing (0.05-0.1 s, measured)
    canvas.print_png(png)
    return png.getvalue()


def figure_layout(scenario: Scenario, twin: bool) -> dict[str, Any]:
    """The part of `figure_data` the scenario alone decides (`layout_of`): the nudge rows,
    the axis labels, whether the no-campaign twin is drawn. `nudgesim run` sends it to the
    helper as soon as the scenario is read (`send_layout`), and the helper builds that
    much of the figure while the run still simulates."""
    return {
        "windows": _window_rows(nd.window(scenario.steps) for nd in scenario.nudges),
        "twin": twin,
        **_axis_labels(scenario),
    }


def _axis_labels(scenario: Scenario) -> dict[str, str]:
    return {"xlabel": plot_text(f"step ({scenario.step_unit})"),
            "impact_label": plot_text(f"cumulative impact\n({scenario.impact.unit})")}


def layout_of(data: dict[str, Any]) -> dict[str, Any]:
    """The layout part of a `figure_data` (see `figure_layout`)."""
    return {"windows": data["windows"], "twin": data["twin_rate"] is not None,
            "xlabel": data["xlabel"], "impact_label": data["impact_label"]}


def _window_rows(windows: Iterable[dict[str, Any]]) -> list[dict[str, Any]]:
    return [{"name": plot_text(w["name"]), "start": w["start"], "stop": w["stop"],
             "contacts": list(w["contacts"])} for w in windows]


def figure_data(result: RunRecord) -> dict[str, Any]:
    """Everything `draw_figure` shows, as numpy arrays, numbers and strings: no pandas and
    no Result, so another process can draw it from a pickle. The ward range is the min and
    max adoption rate across wards at each step; `twin_*` are None without the no-campaign
    twin (`counterfactual_*` columns of a run from simulate(counterfactual=True))."""
    import numpy as np

    ts, wards, sc = result.timeseries_columns, result.by_ward_columns, result.scenario
    steps, at = np.unique(wards["step"], return_inverse=True)
    low = np.full(len(steps), np.inf)
    high = np.full(len(steps), -np.inf)
    np.minimum.at(low, at, wards["adoption_rate"])
    np.maximum.at(high, at, wards["adoption_rate"])
    twin = "counterfactual_rate" in ts
    n_steps = len(ts["step"]) - 1
    peak = float(high.max())
    if twin:
        peak = max(peak, float(ts["counterfactual_rate"].max()))
    return {
        "windows": _window_rows(result.nudge_windows),
        "step": np.asarray(ts["step"]),
        "rate": np.asarray(ts["adoption_rate"]),
        "cost": np.asarray(ts["cost"]),
        "impact": np.asarray(ts["impact"]),
        "twin_rate": np.asarray(ts["counterfactual_rate"]) if twin else None,
        "twin_impact": np.asarray(ts["counterfactual_impact"]) if twin else None,
        "ward_range": (steps, low, high) if len(set(wards["ward"])) > 1 else None,
        "peak": peak,
        "title": plot_text(f"{sc.name}: {len(result.adopted):,} residents over {n_steps} "
                           f"{sc.step_unit}s (seed {sc.seed}); dashed = a nudge starts"),
        **_axis_labels(sc),
    }


def draw_figure(data: dict[str, Any]) -> Figure:
    """Three panels sharing the time axis: adoption (borough line, ward range, nudge starts),
    one shaded bar per nudge window with its contact days, and cumulative cost and impact.
    Windows get their own rows because overlapping shading over the curve is unreadable.
    A run with its no-campaign twin also draws the twin's adoption and impact, dotted: the
    gap between the lines is what the campaign added.

    Matplotlib's object API, not pyplot: a figure drawn straight onto an Agg canvas needs no
    backend selection and no global figure registry to close, and skips importing pyplot.
    Headless by construction: sweeps and CI have no screen. Drawn in two parts, the layout
    (`start_figure`) and the results (`finish_figure`), so the helper can do the first
    while the run simulates."""
    return finish_figure(start_figure(layout_of(data)), data)


class StartedFigure(NamedTuple):
    """A figure with its layout drawn and no results yet (`start_figure`)."""

    layout: dict[str, Any]
    fig: Figure
    top: Axes
    mid: Axes
    bottom: Axes
    right: Axes


def start_figure(layout: dict[str, Any]) -> StartedFigure:
    """The figure's panels, nudge rows and labels: everything a `figure_layout` decides."""
    import matplotlib
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure
    from matplotlib.ticker import FuncFormatter

    windows = layout["windows"]
    fig = Figure(figsize=(9, 7.5), dpi=DPI)  # drawn at the PNG's dpi: no re-layout to save
    FigureCanvasAgg(fig)
    top, mid, bottom = fig.subplots(
        3, 1, sharex=True,
        gridspec_kw={"height_ratios": [3, 0.25 + 0.3 * max(len(windows), 1), 2]},
    )
    colours = matplotlib.colormaps["tab10"]
    for i, w in enumerate(windows):
        top.axvline(w["start"] - 0.5, color=colours(i % 10), lw=1, ls="--", alpha=0.8)
        mid.barh(i, w["stop"] - w["start"], left=w["start"] - 0.5, height=0.6,
                 color=colours(i % 10), alpha=0.35)
        mid.plot(w["contacts"], [i] * len(w["contacts"]), "|", color=colours(i % 10), ms=9, mew=2)
    mid.set_yticks(range(len(windows)), [w["name"] for w in windows], fontsize=8)
    mid.set_ylim(max(len(windows), 1) - 0.5, -0.5)
    mid.set_ylabel("nudges\n(| = contact)", fontsize=8)
    mid.grid(axis="x", alpha=0.3)
    top.set_ylabel("households adopting (%)")
    top.grid(alpha=0.3)
    bottom.set_ylabel("cumulative cost (£)", color="tab:red")
    bottom.yaxis.set_major_formatter(FuncFormatter(lambda v, _: f"£{v:,.0f}"))
    bottom.set_xlabel(layout["xlabel"])
    bottom.grid(alpha=0.3)
    right = bottom.twinx()
    right.set_ylabel(layout["impact_label"], color="tab:green", fontsize=9)
    return StartedFigure(layout, fig, top, mid, bottom, right)


def finish_figure(started: StartedFigure, data: dict[str, Any]) -> Figure:
    """`started` with the run's curves, limits, title and legends, laid out."""
    fig, top, bottom, right = started.fig, started.top, started.bottom, started.right
    step = data["step"]
    twin = data["twin_rate"] is not None
    if data["ward_range"] is not None:
        steps, low, high = data["ward_range"]
        top.fill_between(steps, 100 * low, 100 * high, color="grey", alpha=0.2, lw=0,
                         label="range across wards")
    top.plot(step, 100 * data["rate"], color="black", lw=2,
             label="whole borough, with the campaign" if twin else "whole borough")
    if twin:
        top.plot(step, 100 * data["twin_rate"], color="black", lw=1.5, ls=":",
                 label="whole borough, no campaign (same seed)")
    top.set_ylim(0, min(100.0, max(5.0, 100 * data["peak"] * 1.15)))
    top.set_title(data["title"], fontsize=10)
    top.legend(loc="upper left", fontsize=8, frameon=False)
    bottom.plot(step, data["cost"], color="tab:red", lw=2)
    right.plot(step, data["impact"], color="tab:green", lw=2, label="impact, with the campaign")
    if twin:
        right.plot(step, data["twin_impact"], color="tab:green", lw=1.5, ls=":",
                   label="impact, no campaign")
        right.legend(loc="upper left", fontsize=8, frameon=False)
    fig.tight_layout()
    return fig


# ---------------------------------------------------------------------------------------
# The drawing helper process
# ---------------------------------------------------------------------------------------

WORKER_ENV = "NUDGESIM_PLOT_WORKER"  # "0": always draw in this process
HELPER_ENV = "NUDGESIM_PLOT_HELPER_OF"  # set in the helper only: its parent's pid
WORKER_TIMEOUT = 60.0  # seconds a drawing may take before this process draws it itself
_HEADER = struct.Struct("!cQ")  # every message: its kind, its length, then a pickle
LAYOUT, DATA, ANSWER = b"L", b"D", b"A"  # to the helper: a figure_layout, then the data


def _send(stream: Any, obj: object, kind: bytes) -> None:
    body = pickle.dumps(obj, protocol=pickle.HIGHEST_PROTOCOL)
    stream.write(_HEADER.pack(kind, len(body)) + body)
    stream.flush()


def _receive(stream: Any) -> Any:
    return pickle.loads(_read_message(stream)[1])


def _read_message(stream: Any) -> tuple[bytes, bytes]:
    """One message's kind and pickle, unread: the helper's watcher reads while matplotlib
    imports."""
    head = stream.read(_HEADER.size)
    if len(head) < _HEADER.size:
        raise EOFError("the other process closed the pipe")
    kind, size = _HEADER.unpack(head)
    body = stream.read(size)
    if len(body) < size:
        raise EOFError("the other process closed the pipe")
    return kind, body


def _watch_parent(stdin: Any, inbox: queue.SimpleQueue[tuple[bytes, bytes]]) -> None:
    """The helper's stdin thread: passes on the figure's layout (if sent) and data, then
    waits for the pipe to close and ends the helper at once (os._exit, even mid-import).
    The parent closes it when it has the PNG, gives up, or dies in any way, so no helper
    outlives its run."""
    try:
        while True:
            kind, body = _read_message(stdin)
            inbox.put((kind, body))
            if kind != LAYOUT:
                break
        while stdin.read(1 << 16):  # the parent sends nothing more: this waits for EOF
            pass
    except (OSError, ValueError, EOFError):
        pass
    os._exit(0)


def _die_with_parent() -> None:
    """Linux: ask the kernel to SIGKILL this helper when its parent dies (prctl
    PR_SET_PDEATHSIG), which works even while the helper is busy in an import; then leave
    if the parent died before that (its pid, from HELPER_ENV, is no longer our parent).
    Elsewhere the stdin watcher alone ends the helper."""
    if sys.platform.startswith("linux"):
        try:
            import ctypes

            pr_set_pdeathsig = 1  # <linux/prctl.h>
            libc = ctypes.CDLL(None, use_errno=True)
            libc.prctl(pr_set_pdeathsig, ctypes.c_ulong(signal.SIGKILL), ctypes.c_ulong(0),
                       ctypes.c_ulong(0), ctypes.c_ulong(0))
        except (OSError, AttributeError):
            pass
    parent = os.environ.get(HELPER_ENV, "")
    if parent.isdigit() and os.getppid() != int(parent):
        os._exit(0)


def _skip_property_docs() -> None:
    """Spare the helper what matplotlib builds at import for interactive help: each Artist
    class's `set()` signature and docstring, listing its properties (`artist.kwdoc`, run
    for each of ~100 classes as they are defined, and for the docstrings that cite them).
    Nothing drawn depends on them. Measured: importing matplotlib took 0.66 s instead of
    0.96 s (medians of 10, alternating). Only in the helper, which draws one figure and
    exits; with a matplotlib that lacks these hooks, nothing is changed."""
    import matplotlib.artist as mpl_artist

    if callable(getattr(mpl_artist, "kwdoc", None)) and hasattr(
            mpl_artist.Artist, "_update_set_signature_and_docstring"):
        mpl_artist.kwdoc = lambda artist: ""
        mpl_artist.Artist._update_set_signature_and_docstring = classmethod(lambda cls: None)


def _warm_up(started: StartedFigure, inbox: queue.SimpleQueue[Any]) -> None:
    """Draw the started figure's panels, one at a time, for as long as no data has come:
    that loads the fonts, makes the ticks and measures the fixed labels, which the final
    drawing reuses. One panel takes 0.03-0.09 s, so data that comes meanwhile waits for
    one panel at most; the whole figure at once took 0.2-0.45 s and often made it wait.
    Measured on the borough: after the data, 0.41-0.59 s instead of 0.54-0.70 s with
    no warm-up (6 runs each, alternating); the PNG is the same, byte for byte."""
    from matplotlib.backends.backend_agg import FigureCanvasAgg

    canvas = started.fig.canvas
    assert isinstance(canvas, FigureCanvasAgg)  # start_figure's own canvas
    renderer = canvas.get_renderer()
    for ax in (started.top, started.mid, started.bottom, started.right):
        if not inbox.empty():
            return
        ax.draw(renderer)


def serve() -> None:
    """The helper's main: watch stdin (before any heavy import), import matplotlib, then
    draw the one figure it is sent and answer with ("png", bytes) or ("error", message).
    A closed pipe (the run failed, was stopped or finished without a plot) ends it at once.

    A layout sent ahead of the data (`send_layout`) is built while the run simulates
    (`start_figure`, then `_warm_up`), so less is left to do when the data comes. On a
    machine with one free CPU the warm-up (0.2-0.3 s of CPU in all) competes with the run;
    with fewer than two CPUs no helper is started at all."""
    inbox: queue.SimpleQueue[tuple[bytes, bytes]] = queue.SimpleQueue()
    threading.Thread(target=_watch_parent, args=(sys.stdin.buffer, inbox), daemon=True).start()
    _die_with_parent()
    _skip_property_docs()
    import matplotlib.figure  # noqa: F401  (the import this helper exists to do early)
    from matplotlib.backends import backend_agg  # noqa: F401

    kind, body = inbox.get()
    started = None
    if kind == LAYOUT:
        try:
            started = start_figure(pickle.loads(body))
            _warm_up(started, inbox)
        except Exception:  # the data is drawn from scratch, and any error reported then
            started = None
        kind, body = inbox.get()
    try:
        answer: tuple[str, Any] = ("png", figure_png(pickle.loads(body), started))
    except Exception as err:  # reported to the parent, which draws (and raises) itself
        answer = ("error", f"{type(err).__name__}: {err}")
    try:
        _send(sys.stdout.buffer, answer, ANSWER)
    except BrokenPipeError:
        pass


# The helper's command. `-P`: no working folder on sys.path, so a `struct.py` or `numpy.py`
# next to the user's scenario is never imported (PYTHONPATH still counts, as in the parent).
# nudgesim itself is loaded from this copy's folder by location, without putting that folder
# on sys.path either (in a source checkout it is the working folder).
_BOOT = ("import gc, sys, importlib.util as u; gc.disable(); "
         "s = u.spec_from_file_location('nudgesim', {init!r}, submodule_search_locations=[{pkg!r}]); "
         "m = u.module_from_spec(s); sys.modules['nudgesim'] = m; s.loader.exec_module(m); "
         "from nudgesim.plots import serve; serve()")


class _Worker:
    """The parent's handle on one helper process: one figure, then it exits. The helper's
    environment carries HELPER_ENV = this process's pid (how it checks its parent, and how
    tests find it)."""

    def __init__(self) -> None:
        package = os.path.dirname(os.path.realpath(__file__))  # this copy of nudgesim
        # no garbage collection in the helper: it imports, draws one figure and exits, and
        # the collector's passes over matplotlib's ~10^5 new objects would only cost time
        code = _BOOT.format(init=os.path.join(package, "__init__.py"), pkg=package)
        self.proc = subprocess.Popen(
            [sys.executable, "-P", "-c", code], stdin=subprocess.PIPE, stdout=subprocess.PIPE,
            stderr=subprocess.DEVNULL, close_fds=True,
            env={**os.environ, HELPER_ENV: str(os.getpid())},
        )
        atexit.register(self.close)

    def send(self, data: dict[str, Any], kind: bytes = DATA) -> bool:
        """Hand the helper its one figure's data (or, before that, its layout); False
        (helper stopped) if it is gone."""
        try:
            assert self.proc.stdin is not None
            _send(self.proc.stdin, data, kind)
        except (OSError, ValueError):
            self.close()
            return False
        return True

    def receive(self) -> bytes | None:
        """The PNG of the data sent, or None if the helper could not draw it (then the
        caller draws it): a helper that died, failed or took over WORKER_TIMEOUT seconds.
        Its stdin stays open until the answer is read (the helper ends when it closes);
        the helper is stopped either way."""
        proc = self.proc
        try:
            assert proc.stdout is not None
            with selectors.DefaultSelector() as sel:
                sel.register(proc.stdout, selectors.EVENT_READ)
                if not sel.select(WORKER_TIMEOUT):
                    return None
            kind, value = _receive(proc.stdout)
        except (OSError, EOFError, pickle.UnpicklingError, ValueError):
            return None
        finally:
            self.close()
        return value if kind == "png" else None

    def close(self) -> None:
        """Stop the helper (if still running) and reap it."""
        proc = self.proc
        if proc.poll() is None:
            proc.kill()
        for stream in (proc.stdin, proc.stdout):
            if stream is not None:
                try:
                    stream.close()
                except OSError:
                    pass
        proc.wait()
        atexit.unregister(self.close)


_WORKER: _Worker | None = None


def start_worker() -> bool:
    """Start the drawing helper for the next `plot_run` of this process, when it saves time:
    matplotlib not yet imported here (otherwise drawing here costs only the draw), at least
    two CPUs to run on, and NUDGESIM_PLOT_WORKER not "0". True if one is running."""
    global _WORKER
    if _WORKER is not None:
        return True
    if os.environ.get(WORKER_ENV, "1") == "0" or "matplotlib.figure" in sys.modules:
        return False
    cpus = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count()
    if (cpus or 1) < 2:
        return False
    try:
        _WORKER = _Worker()
    except OSError:
        return False
    return True


def stop_worker(reap: bool = True) -> None:
    """Stop the drawing helper if one is still running (its figure never asked for): what
    the starter of a helper does when its command ends, on every path, so that no helper
    outlives it (a notebook or server calling `nudgesim.cli.main` lives on). `reap=False`
    only sends SIGKILL, which is safe inside a signal handler; a later call reaps it."""
    global _WORKER
    worker = _WORKER
    if worker is None:
        return
    if not reap:
        if worker.proc.returncode is None:
            try:
                os.kill(worker.proc.pid, signal.SIGKILL)
            except OSError:
                pass
        return
    _WORKER = None
    worker.close()
