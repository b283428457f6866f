"""Imported by the process-pool's fork server before it forks sweep workers.

Why: the first call of any compiled kernel in a process spends ~0.3 s setting up numba's
typing and target contexts, and every worker would pay it on its first run. Calling one
small single-threaded kernel here does it once; the forked workers inherit the result.
No parallel kernel runs here: OpenMP threads must not exist in a process that forks.
"""

from __future__ import annotations

import numpy as np

from . import engine as _engine  # noqa: F401  (the import the workers need anyway)
from . import kernels

if kernels.AVAILABLE:
    kernels._uniforms(np.zeros(1, dtype=np.int64), np.uint64(0), np.zeros(1))
