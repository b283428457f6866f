"""Memory the system must back: large arrays backed ahead of use, freed memory returned.

Why a module of its own: on the machines here (virtual machines whose host backs memory
only when a page is first touched, and takes it back once it has been free a while),
first touching fresh memory cost ~3 to ~15 s a GB on one thread (800 MB: 2.2 s one
morning, 12.2 s one afternoon), and took a third of a national graph build in slow
hours. Two things help: backing big arrays on a thread of their own while the main
thread computes on the other core, and handing freed memory back so that the resident
size stays the run's.

A backing thread must not hold up the main one. numpy advises huge pages
(madvise(MADV_HUGEPAGE)) for each array of 4 MB or more it allocates, and that call
waits for the write lock of the process's memory map, which the backing thread holds
(to read) while the host backs each 2 MB. So while a backing thread runs, numpy's advice
is off, for the whole process (arrays other threads make meanwhile go unadvised: their
speed may change, never their values); the arrays being backed were made, and advised,
before it started. At 2.5x10^7 households the cross-ward draws (a few large temporaries
per chunk) took 8.0-13.1 s with the advice and 1.6-3.0 s without it, and whole graph
builds, alternating with and without in ten pairs, 25.4-32.3 s (mean 29.0) against
18.5-35.8 s (mean 25.9). In slow hours the main thread then reaches the graph's arrays
while they are still being backed, and waits there instead.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import importlib
import mmap
import os
import threading
from collections.abc import Callable
from typing import Any

import numpy as np

#: Arrays from this size are backed ahead of use (zeros).
TOUCH_MIN_BYTES = 64 << 20

_POPULATE_WRITE = 23  # Linux's MADV_POPULATE_WRITE (5.14 and later)
_TASK = 2 << 20  # bytes backed by one system call (see back)
_libc: Any = None
_lock = threading.Lock()
_backing = 0  # backing threads running
_advice_before = True  # numpy's huge-page advice before the first of them started


def _c_library() -> Any:
    """The C library (False where there is none to load), loaded once."""
    global _libc
    if _libc is None:
        try:
            _libc = ctypes.CDLL(ctypes.util.find_library("c") or None, use_errno=True)
        except (OSError, TypeError):
            _libc = False
    return _libc


def _populate(start: int, length: int) -> bool:
    """madvise(MADV_POPULATE_WRITE) on one page-aligned range: False where unsupported."""
    libc = _c_library()
    madvise = getattr(libc, "madvise", None) if libc else None
    if madvise is None:
        return False
    madvise.argtypes = [ctypes.c_void_p, ctypes.c_size_t, ctypes.c_int]
    madvise.restype = ctypes.c_int
    return madvise(start, length, _POPULATE_WRITE) == 0


def back(a: np.ndarray) -> bool:
    """Have the system back the pages of the contiguous array `a` now, leaving its
    contents as they are (MADV_POPULATE_WRITE: safe while another thread writes to
    `a`). False, having done nothing more, where the system cannot (Linux before 5.14,
    other systems): pages are then backed when first written, as usual."""
    if a.nbytes == 0:
        return True
    page = mmap.PAGESIZE
    lo = a.ctypes.data // page * page
    hi = -(-(a.ctypes.data + a.nbytes) // page) * page
    return all(_populate(s, min(_TASK, hi - s)) for s in range(lo, hi, _TASK))


def back_soon(*arrays: np.ndarray) -> threading.Thread:
    """back() each array in turn on a thread of its own, while the caller goes on and
    writes to them: what the caller reaches first it backs itself, the rest is ready
    when it gets there. One thread, so that the caller keeps a core of two to itself.
    numpy's huge-page advice is off while it runs (see the module's docstring)."""
    _backing_starts()

    def work() -> None:
        try:
            for a in arrays:
                back(a)
        finally:
            _backing_ends()

    thread = threading.Thread(target=work, daemon=True)
    try:
        thread.start()
    except BaseException:
        _backing_ends()
        raise
    return thread


def _numpy_advice() -> Callable[[bool], bool] | None:
    """numpy's switch of its huge-page advice (it returns the previous setting), or
    None where this numpy has none."""
    for name in ("numpy._core.multiarray", "numpy.core.multiarray"):  # numpy 2, 1
        try:
            return getattr(importlib.import_module(name), "_set_madvise_hugepage", None)
        except ImportError:
            continue
    return None


def _backing_starts() -> None:
    global _backing, _advice_before
    with _lock:
        switch = _numpy_advice()
        if _backing == 0 and switch is not None:
            _advice_before = switch(False)
        _backing += 1


def _backing_ends() -> None:
    global _backing
    with _lock:
        _backing -= 1
        if _backing == 0:
            _advice_back()


def _advice_back() -> None:
    """numpy's advice as it was before the first backing thread started."""
    switch = _numpy_advice()
    if switch is not None:
        switch(_advice_before)


def _no_backing_in_child() -> None:
    """A forked child has none of its parent's threads, so none backing: numpy's advice
    goes back to what it was, and the count starts again from zero."""
    global _backing, _lock
    _lock = threading.Lock()  # (a parent thread may have held it at the fork)
    if _backing:
        _backing = 0
        _advice_back()


if hasattr(os, "register_at_fork"):
    os.register_at_fork(after_in_child=_no_backing_in_child)


def zeros(n: int | tuple, dtype: Any) -> np.ndarray:
    """np.zeros(n, dtype), its memory backed on another thread (back_soon) when it is
    large: numpy gives large zeroed arrays fresh pages, which the system backs on first
    touch."""
    a = np.zeros(n, dtype=dtype)
    if a.nbytes >= TOUCH_MIN_BYTES:
        back_soon(a)
    return a


def give_back() -> None:
    """Hand the memory the process has freed back to the system (glibc's malloc_trim).

    A graph build's many small temporaries (one set per ward) and its passes' chunks come
    from glibc's heap, which keeps what is freed below a block still in use: without
    this, ~3 bytes per tie end stayed resident through the whole run (measured at 2*10^6
    households, national_scenario). A no-op where the C library has no malloc_trim."""
    libc = _c_library()
    trim = getattr(libc, "malloc_trim", None) if libc else None
    if trim is not None:
        trim(0)
