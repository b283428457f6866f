"""Run many independent jobs on one of three executors, with identical results on each.

Results never depend on the executor because every job carries its own seed (see rng.py);
the executor only decides where the job runs. Order of the returned list = order of items.
"""

from __future__ import annotations

import functools
import multiprocessing
import os
from collections.abc import Callable, Iterable, Iterator
from concurrent.futures import ProcessPoolExecutor, as_completed
from typing import Any, Literal

Executor = Literal["serial", "processes", "dask"]
EXECUTORS = ("serial", "processes", "dask")


def default_workers() -> int:
    return max(
        1, len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count() or 1
    )


def imap_unordered(
    fn: Callable[[Any], Any],
    items: Iterable[Any],
    executor: Executor = "processes",
    workers: int | None = None,
    scheduler: str | None = None,
) -> Iterator[tuple[int, Any]]:
    """Yield (index, fn(item)) as jobs finish. `fn` must be a picklable top-level function.

    executor: "serial" (in this process), "processes" (local process pool, default all
    cores) or "dask" (a distributed Client at `scheduler` like tcp://host:8786, or a
    LocalCluster on loopback with `workers` single-threaded workers when None).
    """
    items = list(items)
    if executor not in EXECUTORS:
        raise ValueError(f"executor: {executor!r} is not allowed; allowed: {', '.join(EXECUTORS)}")
    if executor == "serial" or (executor == "processes" and (workers == 1 or len(items) <= 1)):
        for i, item in enumerate(items):
            yield i, fn(item)
        return
    if executor == "processes":
        yield from pool_imap(fn, items, workers or default_workers())
        return
    from dask.distributed import Client, LocalCluster
    from dask.distributed import as_completed as dask_completed

    cluster = None
    if scheduler is None:
        fn = functools.partial(_with_threads, fn, _threads_each(workers or default_workers()))
        cluster = LocalCluster(
            n_workers=workers or default_workers(),
            threads_per_worker=1,
            processes=True,
            host="127.0.0.1",
            dashboard_address=None,
        )
    client = Client(scheduler or cluster)
    try:
        futures = client.map(fn, items, pure=False)
        index = {f.key: i for i, f in enumerate(futures)}
        for fut in dask_completed(futures):
            yield index[fut.key], fut.result()
    finally:
        client.close()
        if cluster is not None:
            cluster.close()


def pool_imap(fn: Callable[[Any], Any], items: list[Any], workers: int) -> Iterator[tuple[int, Any]]:
    """(index, fn(item)) from a local pool of `workers` processes, even for one worker."""
    # forkserver, not fork: the parent may hold threads (pyarrow, tqdm, numba's OpenMP
    # team) whose locks a forked child would inherit mid-use and deadlock on
    ctx = multiprocessing.get_context("forkserver")
    # import once, and warm numba up once (~0.3 s), in the fork server, not per worker
    ctx.set_forkserver_preload(["nudgesim.warm"])
    fn = functools.partial(_with_threads, fn, _threads_each(workers))
    with ProcessPoolExecutor(max_workers=workers, mp_context=ctx) as pool:
        futures = {pool.submit(fn, item): i for i, item in enumerate(items)}
        for fut in as_completed(futures):
            yield futures[fut], fut.result()


def _threads_each(workers: int) -> int:
    return max(1, default_workers() // workers)


def _with_threads(fn: Callable[[Any], Any], threads: int, item: Any) -> Any:
    """fn(item) with the compiled kernels on `threads` threads: workers that share this
    machine share its cores, rather than each running a thread per core (two processes
    of two threads on two cores fight over them). Results do not depend on it."""
    from . import kernels

    with kernels.threads(threads):
        return fn(item)


def map_runs(
    fn: Callable[[Any], Any],
    items: Iterable[Any],
    executor: Executor = "processes",
    workers: int | None = None,
    scheduler: str | None = None,
) -> list[Any]:
    """fn over items on the chosen executor; results in the order of `items`."""
    items = list(items)
    out: list[Any] = [None] * len(items)
    for i, value in imap_unordered(fn, items, executor, workers, scheduler):
        out[i] = value
    return out
