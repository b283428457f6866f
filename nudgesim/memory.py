"""Memory the system must back: large arrays backed ahead of use, freed memory returned.

Why a module of its own: on the machines here (virtual machines whose host backs memory
only when a page is first touched, and takes it back once it has been free a while),
first touching fresh memory cost ~3 to ~15 s a GB on one thread (800 MB: 2.2 s one
morning, 12.2 s one afternoon), and took a third of a national graph build in slow
hours. Two things help: backing big arrays on a thread of their own while the main
thread computes on the other core, and handing freed memory back so that the resident
size stays the run's.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import mmap
import threading
from typing import Any

import numpy as np

#: Arrays from this size are backed ahead of use (zeros).
TOUCH_MIN_BYTES = 64 << 20

_POPULATE_WRITE = 23  # Linux's MADV_POPULATE_WRITE (5.14 and later)
_TASK = 2 << 20  # bytes backed by one system call (see back)
_libc: Any = None


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
    when it gets there. One thread, so that the caller keeps a core of two to itself."""
    thread = threading.Thread(target=lambda: [back(a) for a in arrays], daemon=True)
    thread.start()
    return thread


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
