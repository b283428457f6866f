"""nudgesim: simulate how residents of a town respond to environmental nudges.

Data flows one way: Scenario → Population + Network → Engine (with Nudges) → Result.
"""

from .engine import Engine, simulate
from .network import Network, NetworkError
from .population import Population
from .result import Result
from .scenario import Scenario, ScenarioError

__all__ = [
    "Engine",
    "Network",
    "NetworkError",
    "Population",
    "Result",
    "Scenario",
    "ScenarioError",
    "simulate",
]
__version__ = "0.1.0"
