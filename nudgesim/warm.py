"""Imported by the process-pool's fork server before it forks sweep workers.

Why: every worker needs the engine and the libraries it imports (numpy, pandas, pydantic's
models); importing them once here, rather than in each worker, saves each worker that
start-up. Numba is not loaded here: most sweep runs are small enough for the numpy engine
(kernels.choose_backend), and a worker whose run wants the kernels loads them itself.
No OpenMP thread may exist in a process that forks, which is one more reason to leave
the kernels alone here.
"""

from __future__ import annotations

from . import engine as _engine  # noqa: F401  (the import the workers need anyway)
from . import result as _result  # noqa: F401
