"""nudgesim: simulate how residents of a town respond to environmental nudges.

Data flows one way: Scenario → Population + Network → Engine (with Nudges) → Result.
"""

from .engine import Engine, simulate
from .experiment import Experiment
from .network import Network, NetworkError
from .population import Population
from .result import Result
from .scenario import Scenario, ScenarioError
from .sensitivity import sensitivity  # after the submodule import, the name is the function

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
    "plan",
    "sensitivity",
    "simulate",
    "trial",
]
__version__ = "0.1.0"

# Imported on first use: `ns.simulate` never loads Mesa or solara, and a sweep's worker
# processes do not pay for planning's scipy.stats import (a third of the start-up time).
_LAZY = {
    "NudgeModel": "model",
    "Resident": "model",
    "compare": "planning",
    "trial": "planning",
    "calibrate": "planning",
    "plan": "planning",
}


def __getattr__(name: str):
    if name in _LAZY:
        import importlib

        return getattr(importlib.import_module(f".{_LAZY[name]}", __name__), name)
    raise AttributeError(f"module 'nudgesim' has no attribute {name!r}")
