"""nudgesim: simulate how residents of a town respond to environmental nudges.

Data flows one way: Scenario → Population + Network → Engine (with Nudges) → Result.
"""

from .engine import Engine, simulate
from .experiment import Experiment
from .network import Network, NetworkError
from .planning import calibrate, compare, plan, trial
from .population import Population
from .result import Result
from .scenario import Scenario, ScenarioError
from .sensitivity import sensitivity

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

_MESA_NAMES = ("NudgeModel", "Resident")


def __getattr__(name: str):
    """Import the Mesa view only when asked for: ``ns.simulate`` never loads Mesa."""
    if name in _MESA_NAMES:
        from . import model

        return getattr(model, name)
    raise AttributeError(f"module 'nudgesim' has no attribute {name!r}")
