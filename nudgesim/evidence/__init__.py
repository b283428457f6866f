"""Published evidence on nudges, as data, and its in-silico replication.

:func:`trials` is the evidence library (``trials.toml``: one record per trial or
synthesis, with its source and how it maps onto nudgesim); :mod:`.replicate` emulates
each comparable record as a randomised trial inside nudgesim and checks the published
patterns (the norm boomerang, the decay after a campaign ends).
"""

from .library import COMPARABLE_UNITS, UNITS, EvidenceError, Library, TrialRecord, load, trials

__all__ = ["COMPARABLE_UNITS", "UNITS", "EvidenceError", "Library", "TrialRecord", "load",
           "trials"]
