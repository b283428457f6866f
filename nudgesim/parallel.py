"""Run many independent jobs on one of three executors, with identical results on each.

Results never depend on the executor because every job carries its own seed (see rng.py);
the executor only decides where the job runs. Order of the returned list = order of items.

Worker processes end with the process that started them, however it ends (Ctrl-C, an
exception, kill -9): pool workers watch a pipe only their parent holds open (the kernel
closes it when the parent dies, even by SIGKILL), and Dask's own worker processes do the
same. A Dask scheduler that does not answer, answers but is not Dask, or has no workers
for too long ends the map with :class:`~nudgesim.errors.ResourceError` after a time-out.
A job whose Dask workers all died while running it (a worker's memory limit, say) is a
ResourceError too, or, given `on_lost`, that job's own result, so the others go on.
Data every job needs (`shared`) goes to a Dask cluster once, not once per job.
"""

from __future__ import annotations

import asyncio
import functools
import logging
import math
import multiprocessing
import os
import re
import signal
import threading
import time
import warnings
from collections.abc import Callable, Iterable, Iterator
from concurrent.futures import ProcessPoolExecutor, as_completed
from concurrent.futures.process import BrokenProcessPool
from dataclasses import dataclass
from typing import Any, Literal

from .errors import ResourceError, UsageError

Executor = Literal["serial", "processes", "dask"]
EXECUTORS = ("serial", "processes", "dask")

DASK_TIMEOUT_ENV = "NUDGESIM_DASK_TIMEOUT"
DASK_TIMEOUT = 30.0
"""Seconds to wait for a Dask scheduler to answer, and for a cluster with no workers to get
one, before giving up (assumption: Dask's own connect time-out; a scheduler or worker
that has not come up in 30 s is usually not coming)."""
_WORKER_CHECK_EVERY = 1.0  # seconds between worker counts while no result arrives
_EXIT_ORPHANED = 70  # exit status of a pool worker whose parent has gone (EX_SOFTWARE)


def default_workers() -> int:
    return max(
        1, len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count() or 1
    )


def resolve_dask_timeout(value: float | None = None) -> float:
    """The Dask time-out in seconds: `value`, else $NUDGESIM_DASK_TIMEOUT, else 30 s."""
    source = "--dask-timeout"
    if value is None:
        raw = os.environ.get(DASK_TIMEOUT_ENV, "").strip()
        if not raw:
            return DASK_TIMEOUT
        source = DASK_TIMEOUT_ENV
        try:
            value = float(raw)
        except ValueError:
            raise UsageError(
                f"{source}: {raw!r} is not a number; allowed: seconds > 0, e.g. 60"
            ) from None
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise UsageError(f"{source}: {value!r} is not a number; allowed: seconds > 0, e.g. 60")
    if not (math.isfinite(value) and value > 0):
        raise UsageError(f"{source}: {value:g} is not allowed; allowed: seconds > 0, e.g. 60")
    return float(value)


@dataclass(frozen=True)
class RunOptions:
    """Where runs execute; never what they return (every job carries its own seed).

    executor: "serial" (in this process), "processes" (local process pool, default all
    cores) or "dask" (a distributed Client at `scheduler` like tcp://host:8786, or a
    LocalCluster on loopback with `workers` single-threaded workers when None; a
    scheduler implies "dask"). dask_timeout: seconds to wait for the scheduler to answer
    and for a cluster without workers to get one (default $NUDGESIM_DASK_TIMEOUT, else 30).
    """

    executor: Executor = "processes"
    workers: int | None = None
    scheduler: str | None = None
    dask_timeout: float | None = None

    def __post_init__(self) -> None:
        if self.scheduler is not None and self.executor != "dask":
            object.__setattr__(self, "executor", "dask")
        if self.executor not in EXECUTORS:
            raise UsageError(
                f"executor: {self.executor!r} is not allowed; allowed: {', '.join(EXECUTORS)}"
            )
        if self.workers is not None and (isinstance(self.workers, bool) or self.workers < 1):
            raise UsageError(f"workers: must be >= 1, got {self.workers}")

    @classmethod
    def of(cls, options: RunOptions | str | None = None, **loose: Any) -> RunOptions:
        """RunOptions from RunOptions, an executor name, or loose keyword options (the
        public functions' executor=/workers=/scheduler=/dask_timeout=); None = defaults."""
        if isinstance(options, RunOptions):
            if any(v is not None for v in loose.values()):
                raise TypeError("give RunOptions or loose executor options, not both")
            return options
        if options is not None:
            loose["executor"] = options
        return cls(**{k: v for k, v in loose.items() if v is not None})


def imap_unordered(
    fn: Callable[..., Any],
    items: Iterable[Any],
    options: RunOptions | str | None = None,
    *,
    shared: Any = None,
    on_lost: Callable[[Any, str], Any] | None = None,
    **loose: Any,
) -> Iterator[tuple[int, Any]]:
    """Yield (index, fn(item)) as jobs finish. `fn` must be a picklable top-level function.

    options: a :class:`RunOptions` (or an executor name, or executor=/workers=/scheduler=/
    dask_timeout= keywords). shared: when not None, jobs run fn(item, shared=shared); a Dask
    cluster receives it once, not once per job. on_lost(item, message): the
    result of a job whose Dask workers all died running it (default: ResourceError).
    """
    opts = RunOptions.of(options, **loose)
    items = list(items)
    executor, workers, scheduler = opts.executor, opts.workers, opts.scheduler
    if shared is not None and executor != "dask":
        fn = functools.partial(fn, shared=shared)
    if executor == "serial" or (executor == "processes" and (workers == 1 or len(items) <= 1)):
        for i, item in enumerate(items):
            yield i, fn(item)
        return
    if executor == "processes":
        yield from pool_imap(fn, items, workers or default_workers())
        return
    timeout = resolve_dask_timeout(opts.dask_timeout)
    yield from _dask_imap(fn, items, workers, scheduler, timeout, shared, on_lost)


# ---------------------------------------------------------------------------------------
# Local process pool
# ---------------------------------------------------------------------------------------


def pool_imap(fn: Callable[[Any], Any], items: list[Any], workers: int) -> Iterator[tuple[int, Any]]:
    """(index, fn(item)) from a local pool of `workers` processes, even for one worker.

    The workers exit as soon as this generator ends early (an exception, Ctrl-C, close())
    or this process dies: without that, a killed sweep left its workers, the fork server
    that waits for them and the resource tracker that waits for all three running.
    """
    # forkserver, not fork: the parent may hold threads (pyarrow, tqdm, numba's OpenMP
    # team) whose locks a forked child would inherit mid-use and deadlock on
    ctx = multiprocessing.get_context("forkserver")
    # import once, and warm numba up once (~0.3 s), in the fork server, not per worker
    ctx.set_forkserver_preload(["nudgesim.warm"])
    fn = functools.partial(_with_threads, fn, _threads_each(workers))
    # only this process holds `alive`; each worker gets a copy of `watch` and exits when
    # it reads end-of-file, i.e. when `alive` is closed here or by the kernel at our death
    watch, alive = ctx.Pipe(duplex=False)
    pool = ProcessPoolExecutor(
        max_workers=workers, mp_context=ctx, initializer=_watch_parent, initargs=(watch,)
    )
    finished = False
    try:
        futures = {pool.submit(fn, item): i for i, item in enumerate(items)}
        for fut in as_completed(futures):
            try:
                value = fut.result()
            except BrokenProcessPool:
                raise ResourceError(
                    "processes: a worker process died while running a job (killed, or out "
                    "of memory?); use fewer --workers or a smaller scenario"
                ) from None
            yield futures.pop(fut), value
        finished = True
    finally:
        if not finished:
            alive.close()  # stop the workers now, mid-job: an interrupted map ends at once
        pool.shutdown(wait=True, cancel_futures=True)
        alive.close()
        watch.close()


def _watch_parent(watch: Any) -> None:
    """Pool-worker initializer: leave Ctrl-C to the parent (which stops the pool), and exit
    as soon as the parent's end of `watch` closes, even while a job is running, or on
    SIGTERM (how the pool stops the other workers once one has gone)."""
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    signal.signal(signal.SIGTERM, _exit_now)
    threading.Thread(
        target=_exit_when_closed, args=(watch,), name="nudgesim-parent-watch", daemon=True
    ).start()


def _exit_when_closed(watch: Any) -> None:
    try:
        while True:
            watch.recv_bytes()
    except (EOFError, OSError):
        pass
    _exit_now()


def _exit_now(*_signal: Any) -> None:
    """End this worker at once, but first unlink the named semaphores it made (numba's
    start-up lock), as a normal exit would: else the resource tracker warns of leaks."""
    try:
        from multiprocessing import util

        util._run_finalizers(0)  # type: ignore[attr-defined]  # private: not in typeshed
    finally:
        os._exit(_EXIT_ORPHANED)


def _threads_each(workers: int) -> int:
    return max(1, default_workers() // workers)


def _with_threads(fn: Callable[..., Any], threads: int, item: Any, **kwargs: Any) -> Any:
    """fn(item) with the compiled kernels on `threads` threads: workers that share this
    machine share its cores, rather than each running a thread per core (two processes
    of two threads on two cores fight over them). Results do not depend on it."""
    from . import kernels

    with kernels.threads(threads):
        return fn(item, **kwargs)


# ---------------------------------------------------------------------------------------
# Dask
# ---------------------------------------------------------------------------------------


class _SyncCancelRace(logging.Filter):
    """Drops the one log record of a race in distributed's `sync` (seen with 2026.8): on
    Ctrl-C it schedules a `cancel` callback that reads `future` before the coroutine has
    assigned it, and tornado logs the NameError with a traceback, although there was
    nothing to cancel yet. The user pressed Ctrl-C and is told "interrupted"; that
    traceback would only alarm them. Every other record passes."""

    def filter(self, record: logging.LogRecord) -> bool:
        err = record.exc_info[1] if record.exc_info else None
        return not (isinstance(err, NameError) and "sync.<locals>.cancel" in record.getMessage())


def quiet_sync_cancel_race() -> None:
    """Install _SyncCancelRace on tornado's callback logger, once per process."""
    log = logging.getLogger("tornado.application")
    if not any(isinstance(f, _SyncCancelRace) for f in log.filters):
        log.addFilter(_SyncCancelRace())


def _dask_imap(
    fn: Callable[[Any], Any],
    items: list[Any],
    workers: int | None,
    scheduler: str | None,
    timeout: float,
    shared: Any = None,
    on_lost: Callable[[Any, str], Any] | None = None,
) -> Iterator[tuple[int, Any]]:
    """(index, fn(item)) from a Dask cluster; each future is released as soon as its
    result is here, so a worker that dies later does not make the scheduler recompute
    results the caller already has (and has stored)."""
    from dask.distributed import Client, LocalCluster
    from dask.distributed import as_completed as dask_completed

    quiet_sync_cancel_race()
    cluster = None
    if scheduler is None:
        fn = functools.partial(_with_threads, fn, _threads_each(workers or default_workers()))
        cluster = LocalCluster(
            n_workers=workers or default_workers(),
            threads_per_worker=1,
            processes=True,
            host="127.0.0.1",
            dashboard_address=None,
            preload=[__name__],  # each worker runs dask_setup below
        )
        address = cluster.scheduler_address
    else:
        address = scheduler
        probe_scheduler(address, timeout)
    try:
        client = Client(
            cluster if cluster is not None else address, timeout=timeout, set_as_default=False
        )
    except Exception as err:  # whatever the far end did, the user's address is the cause
        if cluster is not None:
            cluster.close()
        raise ResourceError(
            f"--scheduler: no Dask scheduler answered at {address} within {timeout:g} s "
            f"({_reason(err)}); check the address, or wait longer with --dask-timeout"
        ) from None
    try:
        extra: dict[str, Any] = {}
        if shared is not None:
            # a task that returns it, not scattered data: the scheduler keeps the task, so
            # when the worker holding `shared` dies (a job over its memory limit) another
            # worker recomputes it; lost scattered data would cancel every job
            with warnings.catch_warnings():  # its size is the files' size: known, wanted
                warnings.filterwarnings("ignore", "Sending large graph", UserWarning)
                extra["shared"] = client.submit(_same, shared, pure=False)
        futures = client.map(fn, items, pure=False, **extra)
        index = {f.key: i for i, f in enumerate(futures)}
        pending = dask_completed(futures, loop=client.loop)
        del futures  # `pending` holds each future until it is handed out, then nothing does
        idle_since: float | None = None  # first check that found no worker, if none since
        last_check, done = 0.0, 0
        while not pending.is_empty():
            if pending.has_ready():
                fut = next(pending)
                i = index.pop(fut.key)
                try:
                    value = _dask_result(fut, address)
                except _JobLost as lost:
                    if on_lost is None:
                        raise ResourceError(str(lost)) from None
                    value = on_lost(items[i], str(lost))
                fut.release()
                done += 1
                yield i, value
                continue
            now = time.monotonic()
            if now - last_check >= min(_WORKER_CHECK_EVERY, timeout / 4):
                last_check = now
                if _dask_workers(client) > 0:
                    idle_since = None
                elif idle_since is None:
                    idle_since = now
                elif now - idle_since >= timeout:
                    hint = (
                        "the local cluster's workers keep dying (out of memory?)"
                        if cluster is not None
                        else f"start workers (dask worker {address})"
                    )
                    raise ResourceError(
                        f"dask: no workers for {timeout:g} s at {address}; {done} of "
                        f"{len(items)} jobs finished; {hint}, or wait longer with "
                        "--dask-timeout"
                    )
            time.sleep(0.05)
    finally:
        client.close()
        if cluster is not None:
            cluster.close()


def dask_setup(worker: Any) -> None:
    """Dask's preload hook, run as each local-cluster worker starts: leave Ctrl-C to the
    map, which closes the cluster (else every worker prints a KeyboardInterrupt traceback).
    Such a worker still ends with its parent: Dask closes it when the parent's pipe does."""
    if threading.current_thread() is threading.main_thread():
        signal.signal(signal.SIGINT, signal.SIG_IGN)


def _same(value: Any) -> Any:
    return value


class _JobLost(Exception):
    """Every worker that ran this job died while running it (Dask's KilledWorker)."""


def _dask_result(fut: Any, address: str) -> Any:
    """The future's value; a cancelled one (the client lost the scheduler) is a
    ResourceError, a task that killed its workers (e.g. out of memory) a _JobLost: both
    one line, not a traceback."""
    from distributed import KilledWorker

    if fut.status == "cancelled":
        raise ResourceError(
            f"dask: lost the scheduler at {address} before every job finished; "
            "rerun to resume"
        )
    try:
        return fut.result()
    except KilledWorker as err:
        # Dask's message: "Attempted to run task '<key>' on <k> different workers, but all
        # those workers died while computing it. ..."; keep the count, drop the key
        tries = re.search(r"on (\d+) different workers", str(err))
        times = f"{tries.group(1)} times" if tries else "each time it ran"
        raise _JobLost(
            f"dask: the worker running this job died {times} at {address} (killed at "
            "its --memory-limit, or out of memory?); give each worker more memory than "
            "one run needs, and one thread (--nthreads 1)"
        ) from None


def _dask_workers(client: Any) -> int:
    try:
        return len(client.scheduler_info(n_workers=1)["workers"])
    except (OSError, TimeoutError):
        return 0


def probe_scheduler(address: str, timeout: float) -> None:
    """Raise ResourceError unless a Dask peer answers its handshake at `address` within
    `timeout` seconds. Why: dask's own connect waits for that handshake without a limit,
    so a port that accepts but never answers (or answers something else) hung a sweep."""
    from distributed.comm import parse_address, parse_host_port

    try:
        scheme, location = parse_address(address)
        if scheme in ("tcp", "tls"):
            host, port = parse_host_port(location)
    except (ValueError, TypeError):
        raise UsageError(
            f"--scheduler: {address!r} is not a Dask address; allowed: tcp://host:port"
        ) from None
    deadline = time.monotonic() + timeout
    if scheme in ("tcp", "tls"):
        _wait_for_listener(address, host, port, deadline, timeout)
    outcome: dict[str, BaseException] = {}

    def handshake() -> None:
        try:
            asyncio.run(_handshake(address, max(deadline - time.monotonic(), 0.1)))
        except BaseException as err:  # noqa: BLE001 - reported below, whatever it is
            outcome["error"] = err

    # its own thread and event loop: the caller may be inside a running loop (Jupyter)
    thread = threading.Thread(target=handshake, name="nudgesim-dask-probe", daemon=True)
    thread.start()
    thread.join(timeout + 5.0)
    err = outcome.get("error")
    if thread.is_alive() or isinstance(err, TimeoutError | asyncio.TimeoutError):
        raise ResourceError(
            f"--scheduler: something listens at {address} but gave no Dask answer within "
            f"{timeout:g} s; check the address and port, or wait longer with --dask-timeout"
        )
    if err is not None:
        reason = (str(err) if isinstance(err, _NotScheduler)
                  else _reason(err) if isinstance(err, OSError) else "not in Dask's protocol")
        raise ResourceError(
            f"--scheduler: {address} answers, but not as a Dask scheduler ({reason}); "
            "check the address and port"
        )


def _wait_for_listener(address: str, host: str, port: int, deadline: float, timeout: float) -> None:
    """Retry a plain TCP connection until `deadline` (a scheduler may still be starting)."""
    import socket

    error: OSError | None = None
    while True:
        left = deadline - time.monotonic()
        try:
            with socket.create_connection((host, port), timeout=max(min(left, 5.0), 0.05)):
                return
        except OSError as err:
            error = err
        if deadline - time.monotonic() <= 0:
            raise ResourceError(
                f"--scheduler: no Dask scheduler answered at {address} within {timeout:g} s "
                f"({_reason(error)}); start one (dask scheduler) or fix the address, or "
                "wait longer with --dask-timeout"
            )
        time.sleep(min(0.25, max(deadline - time.monotonic(), 0.0)))


async def _handshake(address: str, timeout: float) -> None:
    """Connect and ask who answers: a scheduler says so (a worker's port says "Worker")."""
    from distributed.comm import connect

    comm = await asyncio.wait_for(connect(address, timeout=timeout), timeout)
    try:
        await asyncio.wait_for(comm.write({"op": "identity", "reply": True}), timeout)
        reply = await asyncio.wait_for(comm.read(), timeout)
    finally:
        comm.abort()
    kind = reply.get("type") if isinstance(reply, dict) else None
    if kind != "Scheduler":
        raise _NotScheduler(f"it says it is a {kind}" if isinstance(kind, str) else "no identity")


class _NotScheduler(Exception):
    """A Dask peer that is not a scheduler (e.g. a worker's port)."""


def _reason(err: BaseException | None) -> str:
    if err is None:
        return "no answer"
    if isinstance(err, TimeoutError | asyncio.TimeoutError):
        return "no answer"
    text = getattr(err, "strerror", None) or (str(err).splitlines() or [""])[0]
    return text or type(err).__name__


def map_runs(
    fn: Callable[[Any], Any],
    items: Iterable[Any],
    options: RunOptions | str | None = None,
    **loose: Any,
) -> list[Any]:
    """fn over items on the chosen executor (as :func:`imap_unordered`); results in the
    order of `items`."""
    items = list(items)
    out: list[Any] = [None] * len(items)
    for i, value in imap_unordered(fn, items, options, **loose):
        out[i] = value
    return out
