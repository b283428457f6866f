"""Command line: `nudgesim run | validate | sweep | sensitivity | viz | bench | plan | report`.

Bad input exits with code 2 and one clear message, never a traceback. Subcommands with
their own options live in their modules (`main(argv) -> int`) and are imported only when
used, so `nudgesim run` never pays for Mesa, solara or Dask.
"""

# The command line uses the library; no library module imports nudgesim.cli.

from __future__ import annotations

import argparse
import gc
import importlib
import os
import sys
import warnings
from contextlib import contextmanager
from typing import TYPE_CHECKING

from ..errors import UsageError, UserError

if TYPE_CHECKING:
    from collections.abc import Callable, Iterator
    from types import FrameType

    from ..scenario import Scenario

# Nothing heavier than the standard library is imported above: `main` starts the drawing
# helper of `nudgesim run` (plots.start_worker) first, so that the helper's matplotlib
# import overlaps this process's imports (scenario models, engine) and simulation.


def parse_args(parser: argparse.ArgumentParser, argv: list[str] | None) -> argparse.Namespace:
    """parser.parse_args, with bad arguments turned into a UsageError (exit code 2 through
    main) instead of a bare exit; --help still prints and exits 0 as usual."""
    try:
        return parser.parse_args(argv)
    except SystemExit as err:
        if err.code in (0, None):
            raise
        raise UsageError(f"bad arguments for '{parser.prog}' (see {parser.prog} --help)") from None


def load_scenario(path: str, seed: int | None = None, steps: int | None = None) -> Scenario:
    """A scenario file with the command line's --seed / --steps applied (validated again)."""
    from ..scenario import Scenario

    sc = Scenario.from_toml(path)
    changes = {k: v for k, v in (("seed", seed), ("steps", steps)) if v is not None}
    return sc.replace(**changes) if changes else sc


@contextmanager
def _environment_kept(*names: str):
    """Options passed to every run through the environment (--max-memory, --dask-timeout)
    last as long as the command: main() may be called again in the same process."""
    before = {name: os.environ.get(name) for name in names}
    try:
        yield
    finally:
        for name, value in before.items():
            if value is None:
                os.environ.pop(name, None)
            else:
                os.environ[name] = value


def build_parser() -> argparse.ArgumentParser:
    from .. import limits
    from . import run as run_command

    p = argparse.ArgumentParser(prog="nudgesim", description=__doc__)
    sub = p.add_subparsers(dest="command", required=True)

    run = sub.add_parser("run", help="simulate a scenario and write tables, summary and plot")
    run.add_argument("scenario", nargs="?", default=None,
                     help="scenario TOML (default: the borough.toml nudgesim ships)")
    run.add_argument("--out", help="output folder (default results/<scenario name>)")
    run.add_argument("--seed", type=int, help="override the scenario's seed")
    run.add_argument("--steps", type=int, help="override the number of steps")
    run.add_argument("--no-plot", action="store_true", help="skip adoption.png")
    run.add_argument("--no-counterfactual", action="store_true",
                     help="skip the no-campaign twin (same seed, no nudges) that the "
                          "campaign's effect is measured against")
    run.add_argument("--residents", action="store_true",
                     help="also write residents.parquet: one row per resident (id, ward, "
                          "region, adopted at the end), in row groups")
    limits.add_memory_option(run)
    run.set_defaults(func=run_command.cmd_run)

    val = sub.add_parser(
        "validate", help="check a scenario (and the files it names) and explain any problem"
    )
    val.add_argument("scenario")
    val.add_argument("--menu", help="also check every option of this planning menu TOML")
    val.add_argument("--no-build", action="store_true",
                     help="check the scenario, its ward table and the memory estimate without "
                          "building residents and ties (seconds at national scale; the files "
                          "a build reads, and the nudges' targets, are then not checked)")
    limits.add_memory_option(val)
    val.set_defaults(func=run_command.cmd_validate)

    for name, help_text in DELEGATED.items():
        d = sub.add_parser(name, help=help_text, add_help=False)
        d.add_argument("rest", nargs=argparse.REMAINDER)
        d.set_defaults(func=_delegate(name))
    return p


# subcommand -> module with main(argv: list[str]) -> int
DELEGATED_MODULES = {
    "sweep": "nudgesim.cli.sweep",
    "sensitivity": "nudgesim.cli.sensitivity",
    "viz": "nudgesim.cli.viz",
    "bench": "nudgesim.bench",
    "plan": "nudgesim.cli.plan",
    "report": "nudgesim.cli.report",
    "evidence": "nudgesim.cli.evidence",
    "priors": "nudgesim.cli.priors",
    "init": "nudgesim.cli.init",
}
DELEGATED = {
    "sweep": "run an experiment (design x replicates) on serial, process or Dask executors",
    "sensitivity": "Sobol or Morris sensitivity indices of an outcome (SALib)",
    "viz": "serve the browser visualisation (Mesa SolaraViz) on 127.0.0.1",
    "bench": "benchmark the engine against Mesa and a bare sparse product",
    "plan": "search nudge portfolios that fit a budget",
    "report": "write an HTML/Markdown report of a results folder",
    "evidence": "replicate the published nudge trials in silico (replication.csv, forest plot)",
    "priors": "the priors of the model's parameters; --refit, --loo (leave-one-out check)",
    "init": "write a starting scenario from a council's ward table (and boundaries)",
}


def _delegate(name: str):
    def run(args: argparse.Namespace) -> int:
        try:
            module = importlib.import_module(DELEGATED_MODULES[name])
        except ModuleNotFoundError as err:
            if err.name and err.name.startswith("nudgesim"):
                raise UsageError(f"'nudgesim {name}' is not available in this version") from None
            raise
        return module.main(args.rest)

    return run


def _show_warning(message, category, filename, lineno, file=None, line=None) -> None:
    """Scenario warnings as one line for people; other warnings keep their usual form."""
    from ..spec import ScenarioWarning

    if issubclass(category, ScenarioWarning):
        print(f"nudgesim: warning: {message}", file=sys.stderr)
    else:
        _DEFAULT_SHOW(message, category, filename, lineno, file, line)


_DEFAULT_SHOW = warnings.showwarning


def _draws_run_figure(argv: list[str]) -> bool:
    """Whether `argv` is a `nudgesim run` that will draw adoption.png: read from the words
    before parsing, so the drawing helper starts before the parser's imports. A guess wrong
    either way costs only time (an idle helper, or a drawing here)."""
    return bool(argv) and argv[0] == "run" and not any(
        a in ("-h", "--help") or (len(a) > 4 and "--no-plot".startswith(a)) for a in argv[1:]
    )


# What a command imports first (its own first lines do the same): imported in main, with
# the garbage collector paused (_imports_uncollected)
PRELOAD = {"run": ("nudgesim.engine", "nudgesim.result"), "validate": ("nudgesim.engine",)}

# numpy subpackages that scipy.sparse loads without using them (scipy's vendored
# array_api_compat runs `from numpy import *`), and that no command uses either
UNUSED_NUMPY = ("numpy.f2py", "numpy.testing", "numpy.polynomial")


def _defer_unused_numpy() -> None:
    """Make UNUSED_NUMPY lazy modules (importlib.util.LazyLoader): each is loaded in full on
    its first attribute use, so code that uses one sees no difference, but the `import *`
    no longer runs them. Measured: `import scipy.sparse` took 0.17-0.21 s instead of
    0.33-0.38 s. Only when the command is the whole process (main(argv=None)): a Python
    session calling main([...]) keeps its numpy as it was."""
    import importlib.util

    import numpy

    for name in UNUSED_NUMPY:
        if name in sys.modules:
            continue
        spec = importlib.util.find_spec(name)
        if spec is None or spec.loader is None:
            continue
        spec.loader = importlib.util.LazyLoader(spec.loader)
        module = importlib.util.module_from_spec(spec)
        sys.modules[name] = module
        spec.loader.exec_module(module)
        setattr(numpy, name.rpartition(".")[2], module)


def _skip_pydantic_plugins() -> None:
    """Run this command without pydantic plugins unless PYDANTIC_DISABLE_PLUGINS is set
    (set it empty to keep them): before building its first model, pydantic otherwise
    imports importlib.metadata and reads the entry points of every installed package to
    find plugins, which nudgesim's models never use. Measured: `import nudgesim.scenario`
    0.06-0.08 s faster (medians of 12, alternating). Only when the command is the whole
    process (main(argv=None)); its child processes inherit the setting."""
    os.environ.setdefault("PYDANTIC_DISABLE_PLUGINS", "__all__")


@contextmanager
def _imports_uncollected(own_process: bool):
    """The garbage collector paused while a command's libraries are imported and, when the
    command is the whole process (`nudgesim ...`, not main([...]) called from Python), what
    they created frozen afterwards (gc.freeze: later collections skip those objects).
    Why: imports create ~10^5 objects that live as long as the process and are never
    garbage; a running collector walks them again in each older-generation pass, and once
    more at exit (measured: ~0.3 s CPU of the borough's `nudgesim run`)."""
    enabled = gc.isenabled()
    gc.disable()
    try:
        yield
    finally:
        if own_process:
            gc.freeze()
        if enabled:
            gc.enable()


@contextmanager
def _signals_as_exceptions(own_process: bool) -> Iterator[list[int]]:
    """When the command is the whole process (and `run` or `validate`): SIGTERM (and SIGHUP, a
    closed terminal) raise SystemExit(128 + signal) instead of ending the process on the
    spot, so that `main`'s cleanup runs (half-written files removed, the drawing helper
    reaped), and SIGINT raises KeyboardInterrupt as Python's own handler does. Yields the
    signals received, so that `main` knows an interrupt when a library has turned its
    exception into an error of its own (pydantic-core does: a Ctrl-C while it builds a
    validator comes up as a SchemaError). The previous handlers come back afterwards (SIGINT's
    only if still ours: _status_keeper may have set its own). A host process calling
    main([...]) keeps its own.
    The SIGTERM handler also kills the drawing helper itself, and the exit is raised again
    at the end if it was lost: Python ignores an exception raised while a weakref callback
    or destructor runs (measured: 1 in ~10 early SIGTERMs landed there)."""
    import signal

    received: list[int] = []

    def stop(signum: int, frame: object) -> None:
        received.append(signum)
        plots = sys.modules.get(f"{__package__.rpartition('.')[0]}.plots")
        if plots is not None:
            plots.stop_worker(reap=False)
        raise SystemExit(128 + signum)

    def interrupt(signum: int, frame: FrameType | None) -> None:
        received.append(signum)
        signal.default_int_handler(signum, frame)

    handlers = {"SIGTERM": stop, "SIGHUP": stop, "SIGINT": interrupt}
    previous: dict[int, tuple[object, object]] = {}
    if own_process:
        for name, handler in handlers.items():
            number = getattr(signal, name, None)
            if number is None:
                continue
            try:
                previous[number] = (signal.signal(number, handler), handler)
            except ValueError:  # not the main thread: signals stay as they are
                break
    try:
        yield received
    finally:
        for number, (before, ours) in previous.items():
            if signal.getsignal(number) is ours:
                signal.signal(number, signal.SIG_DFL if before is None else before)  # type: ignore[arg-type]
    exits = [signum for signum in received if signum != signal.SIGINT]
    if exits:  # only reached when the handler's SystemExit was lost
        raise SystemExit(128 + exits[0])


def _status_keeper(own_process: bool) -> Callable[[int], None]:
    """keep(status), for once the command has its answer (files written, result printed):
    from then to the process's end a Ctrl-C ends it with that exit status, not by SIGINT
    with no word. Only when the command is the whole process.

    Why: Ctrl-C'd at random in their last 0.4 s, 2 runs in 60 printed "wrote" and then
    died of SIGINT during the interpreter's shutdown (exit -2, nothing on stderr), so a
    script would take a finished run for a failed one. Through the exit functions a
    Ctrl-C exits at once with the status, so a hung one can still be left; after them, in
    the teardown where Python resets its own handlers to the default, it is ignored (an
    exit function registered before the command's imports register theirs, so it runs
    after them)."""
    import atexit
    import signal

    kept: list[int] = []

    def keep(status: int) -> None:
        def now(signum: int, frame: object) -> None:
            for stream in (sys.stdout, sys.stderr):
                try:
                    stream.flush()
                except (OSError, ValueError):  # closed, or its reader gone
                    pass
            os._exit(status)

        if own_process:
            signal.signal(signal.SIGINT, now)
            kept.append(status)

    def ignore_from_here() -> None:
        if kept:
            signal.signal(signal.SIGINT, signal.SIG_IGN)

    if own_process:
        atexit.register(ignore_from_here)
    return keep


def main(argv: list[str] | None = None) -> int:
    """The `nudgesim` command; `argv` None reads the process's own command line (and then
    treats the process as the command's own: see _imports_uncollected and
    _signals_as_exceptions). Everything after reading argv runs inside one try, so Ctrl-C
    at any moment says "interrupted" (exit 130) until the command has its answer, which a
    later Ctrl-C no longer changes (_status_keeper); and a drawing helper started here is
    stopped on every way out: no child process outlives the command."""
    own_process = argv is None
    argv = sys.argv[1:] if argv is None else list(argv)
    stop_helper = None
    status: int | None = None  # the command's answer, once it has one
    # the subcommands in their own modules (viz, sweep, ...) keep their own signal handling
    whole = own_process and not (argv and argv[0] in DELEGATED)
    keep_status = _status_keeper(whole)
    with _signals_as_exceptions(whole) as signals:
        try:
            if _draws_run_figure(argv):
                from .. import plots

                if plots.start_worker():
                    stop_helper = plots.stop_worker
            if own_process:
                _skip_pydantic_plugins()
            with _imports_uncollected(own_process):
                from .. import limits
                from ..spec import ScenarioWarning

                if argv and argv[0] in DELEGATED:  # pass everything, --help included
                    args = argparse.Namespace(rest=argv[1:], func=_delegate(argv[0]))
                else:
                    args = build_parser().parse_args(argv)
                    if own_process and args.command in PRELOAD:
                        _defer_unused_numpy()
                    for module in PRELOAD.get(args.command, ()):
                        importlib.import_module(module)
            with (warnings.catch_warnings(),
                  _environment_kept(limits.ENV_MAX_MEMORY, "NUDGESIM_DASK_TIMEOUT")):
                warnings.showwarning = _show_warning
                warnings.simplefilter("default", ScenarioWarning)  # once per place and message
                status = args.func(args)
                return status
        except UserError as err:
            print(f"nudgesim: error: {err}", file=sys.stderr)
            status = 2
            return status
        except BrokenPipeError:  # e.g. `nudgesim run | head`: the reader left, nothing is wrong
            sys.stderr.close()
            status = 0
            return status
        except (KeyboardInterrupt, Exception) as err:
            if not isinstance(err, KeyboardInterrupt):
                # an error after a signal: the signal's exception, which a library turned
                # into an error of its own on the way up; any other error is raised as is
                import signal

                if not signals:
                    raise
                if signals[-1] != signal.SIGINT:
                    raise SystemExit(128 + signals[-1]) from None
            print("nudgesim: interrupted", file=sys.stderr)
            status = 130
            return status
        finally:
            if status is not None:
                keep_status(status)
            if stop_helper is not None:  # still running if the run never drew its figure
                stop_helper()
            if own_process:  # the process ends next: its exit need not walk what is left
                gc.freeze()
