"""nudgesim: simulate how residents of a town respond to environmental nudges.

Data flows one way: Scenario → Population + Network → Engine (with Nudges) → Result.
"""

import importlib
import sys
import types

from .errors import ScenarioError

__all__ = [
    "Engine",
    "Experiment",
    "Network",
    "NetworkError",
    "NudgeModel",
    "Population",
    "Resident",
    "Result",
    "Scenario",
    "ScenarioError",
    "calibrate",
    "compare",
    "evidence",
    "plan",
    "predict_trial",
    "sensitivity",
    "simulate",
    "trial",
]
__version__ = "0.1.0"

# Imported on first use, so each command loads only what it needs: `nudgesim run` never
# loads Mesa, solara, Dask or planning's scipy.stats, and `import nudgesim.cli` loads
# neither the engine (pandas, networkx, scipy.sparse) nor numba (see kernels.py), nor even
# the scenario models (pydantic, numpy): the command line starts its drawing helper
# (plots.start_worker) before those imports, so the helper's start overlaps them.
_LAZY = {
    "Scenario": "scenario",
    "Engine": "engine",
    "simulate": "engine",
    "Experiment": "experiment",
    "Network": "network",
    "NetworkError": "network",
    "Population": "population",
    "Result": "result",
    "sensitivity": "sensitivity",
    "NudgeModel": "model",
    "Resident": "model",
    "compare": "planning",
    "trial": "planning",
    "calibrate": "planning",
    "plan": "planning",
    "predict_trial": "evidence.predict",
}


# subpackages reached as attributes (`ns.evidence.trials()`), imported on first use too
_SUBPACKAGES = {"evidence"}


def __getattr__(name: str):
    if name in _SUBPACKAGES:
        return importlib.import_module(f".{name}", __name__)
    if name in _LAZY:
        value = getattr(importlib.import_module(f".{_LAZY[name]}", __name__), name)
        globals()[name] = value
        return value
    raise AttributeError(f"module 'nudgesim' has no attribute {name!r}")


def __dir__() -> list[str]:
    return sorted(set(globals()) | set(__all__))


class _Package(types.ModuleType):
    """`nudgesim.sensitivity` is the function, as the API promises, even after the
    submodule of the same name is imported (which would otherwise rebind the name to
    the module)."""

    def __setattr__(self, name: str, value) -> None:
        if name == "sensitivity" and isinstance(value, types.ModuleType):
            return
        super().__setattr__(name, value)


sys.modules[__name__].__class__ = _Package
