"""Campaign planning: compare variants, emulate trials, calibrate, and plan a budget.

Everything here turns many seeded runs into decisions, so two habits hold throughout:

* **Common random numbers.** Replicate r of every variant runs with the same seed
  (:func:`~nudgesim.planning.stats.paired_seeds`), so differences are paired and their
  intervals far narrower than unpaired ones.
* **Runs go through** :mod:`nudgesim.runs`, the pipeline experiments use too, so the
  executor ("processes" by default, "serial" or "dask") changes where runs happen, never
  what they return, and "better" comes from :mod:`nudgesim.outcomes`.

One module per question: :mod:`.comparison`, :mod:`.trials`, :mod:`.calibration` and
:mod:`.budget` (the budget planner and its menus); :mod:`.stats` holds what they share.
Decisions under uncertainty: :mod:`.ensemble` runs every option on the same parameter
draws (``draws=`` / ``posterior=`` of compare and plan), :mod:`.decision` is the
arithmetic (p_best, regret, EVPI, EVPPI) and :mod:`.figures` draws it.
(The modules are not named after the functions, so `nudgesim.planning.compare` stays the
function.) No Mesa or solara here: planning runs headless.
"""

from ..runs import set_path
from .budget import TARGETS, Menu, MenuItem, Plan, Target, format_table, plan
from .calibration import Calibration, ObservedSeries, TrialEffect, calibrate
from .comparison import COMPARISON_FILES, PLAN_FILES, Comparison, compare
from .stats import pareto
from .trials import Trial, trial, with_nudge

__all__ = [
    "COMPARISON_FILES", "PLAN_FILES", "TARGETS", "Calibration", "Comparison", "Menu",
    "MenuItem", "ObservedSeries", "Plan", "Target", "Trial", "TrialEffect", "calibrate",
    "compare", "format_table", "pareto", "plan", "set_path", "trial", "with_nudge",
]
