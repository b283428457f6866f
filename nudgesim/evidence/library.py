"""The evidence library: published nudge trials and syntheses as validated data.

The records live in ``trials.toml`` beside this module (package data, so an installed
nudgesim has them). Each says what was found, in which unit, with what uncertainty, where
it was read, and how it maps onto nudgesim's nudge kinds and its outcome (participation)
— or why it does not. :func:`trials` is the table; :mod:`.replicate` emulates the
comparable records in silico.
"""

from __future__ import annotations

import re
from functools import lru_cache
from importlib import resources
from pathlib import Path
from typing import Annotated, Any

import pandas as pd
from pydantic import Field, ValidationError, field_validator, model_validator

from ..errors import UserError
from ..registry import NUDGES
from ..spec import Probability, Spec

#: Units a record may use. Only the first three describe participation and can be
#: compared with an emulated trial; the others are kept in their own unit.
COMPARABLE_UNITS = {
    "pp": "percentage points of participation (treated minus control)",
    "relative %": "percent change of the participation share over the control arm",
    "share of effect left": "effect a year after the nudge stopped / effect when it stopped",
}
OTHER_UNITS = {
    "% energy": "percent change in energy use (negative = saving)",
    "kWh/day": "change in electricity use per household and day",
    "L/day": "change in water use per household and day",
    "d": "standardised mean difference over mixed outcomes",
    "none": "no size: the result is qualitative or its size is unverified",
}
UNITS = COMPARABLE_UNITS | OTHER_UNITS
NOT_COMPARABLE = "not comparable"
_ID = re.compile(r"[a-z][a-z0-9_]*")

#: The columns of :func:`trials`, in order.
COLUMNS = [
    "id", "nudge", "behaviour", "effect", "effect_lo", "effect_hi", "se", "interval", "unit",
    "n", "weeks", "baseline", "setting", "persistence", "source", "read_in", "verified",
    "comparable", "mapping", "notes",
]


class EvidenceError(UserError):
    """An evidence file (the shipped library or a user's own) that cannot be read."""


class TrialRecord(Spec):
    """One published trial or synthesis, with its uncertainty and its mapping."""

    id: str = Field(description="short unique name: first author, year, arm")
    nudge: str = Field(description=f"a nudgesim nudge kind, or {NOT_COMPARABLE!r}")
    behaviour: str
    setting: str
    baseline: Probability | None = Field(
        None, description="participation share of the control arm (or before), if reported"
    )
    effect: float | None = Field(None, description="the published effect, in `unit`")
    effect_lo: float | None = None
    effect_hi: float | None = None
    se: Annotated[float, Field(gt=0)] | None = Field(None, description="standard error")
    interval: str | None = Field(
        None, description="what effect_lo..effect_hi is: a confidence interval or a range"
    )
    unit: str
    n: Annotated[int, Field(ge=1)] | None = Field(None, description="households or people")
    weeks: Annotated[float, Field(ge=0)] | None = Field(None, description="duration")
    persistence: str = Field(description="what happened after the end, as reported")
    source: str = Field(min_length=8, description="authors, year, journal")
    read_in: str = Field(min_length=4, description="paper, summary, abstract, ...")
    verified: bool = Field(description="false: no source we could read confirmed the size")
    comparable: bool = Field(description="nudgesim emulates it and measures the same quantity")
    mapping: str = Field(min_length=20, description="how it maps onto nudgesim, or why not")
    notes: str = ""

    @field_validator("id")
    @classmethod
    def _id(cls, value: str) -> str:
        if not _ID.fullmatch(value):
            raise ValueError(
                f"{value!r} is not allowed; allowed: lower-case letters, digits and '_', "
                "starting with a letter")
        return value

    @field_validator("nudge")
    @classmethod
    def _nudge(cls, value: str) -> str:
        allowed = [*NUDGES.names(), NOT_COMPARABLE]
        if value not in allowed:
            raise ValueError(f"{value!r} is not allowed; allowed: {allowed}")
        return value

    @field_validator("unit")
    @classmethod
    def _unit(cls, value: str) -> str:
        if value not in UNITS:
            raise ValueError(f"{value!r} is not allowed; allowed: {list(UNITS)}")
        return value

    @model_validator(mode="after")
    def _consistent(self) -> TrialRecord:
        if (self.effect_lo is None) != (self.effect_hi is None):
            raise ValueError("effect_lo: give effect_lo and effect_hi together, or neither")
        if self.effect_lo is not None:
            if self.effect is None:
                raise ValueError("effect: an interval needs its effect")
            assert self.effect_hi is not None
            if not self.effect_lo <= self.effect <= self.effect_hi:
                raise ValueError(
                    f"effect: {self.effect} is outside effect_lo..effect_hi "
                    f"({self.effect_lo}..{self.effect_hi}); allowed: lo <= effect <= hi")
            if not self.interval:
                raise ValueError("interval: say what effect_lo..effect_hi is (a confidence "
                                 "interval or a range of estimates)")
        if (self.unit == "none") != (self.effect is None):
            raise ValueError(
                f"unit: {self.unit!r} with effect {self.effect}; allowed: unit 'none' exactly "
                "when the record has no effect size")
        if self.comparable:
            if self.nudge == NOT_COMPARABLE:
                raise ValueError("comparable: true needs a nudge kind, not 'not comparable'")
            if self.unit not in COMPARABLE_UNITS:
                raise ValueError(f"comparable: true needs a participation unit "
                                 f"{list(COMPARABLE_UNITS)}, got {self.unit!r}")
        return self


class Library(Spec):
    """The whole file: a list of records with unique ids."""

    trials: list[TrialRecord] = Field(min_length=1)

    @model_validator(mode="after")
    def _unique(self) -> Library:
        seen: set[str] = set()
        for t in self.trials:
            if t.id in seen:
                raise ValueError(f"trials: id {t.id!r} appears twice; allowed: unique ids")
            seen.add(t.id)
        return self

    def get(self, record_id: str) -> TrialRecord:
        for t in self.trials:
            if t.id == record_id:
                return t
        raise EvidenceError(f"record: {record_id!r} is not in the evidence library; allowed: "
                            f"{[t.id for t in self.trials]}")

    def table(self) -> pd.DataFrame:
        rows = [t.model_dump() for t in self.trials]
        df = pd.DataFrame(rows, columns=COLUMNS)
        df["n"] = df["n"].astype("Int64")  # counts stay integers; a missing n is <NA>
        return df


def load(path: str | Path | None = None) -> Library:
    """Read and validate an evidence file (default: the shipped ``trials.toml``)."""
    import tomllib

    if path is None:
        text = resources.files(__package__).joinpath("trials.toml").read_text(encoding="utf-8")
        where = "nudgesim/evidence/trials.toml"
    else:
        try:
            text = Path(path).read_text(encoding="utf-8")
        except (OSError, UnicodeDecodeError) as err:
            raise EvidenceError(f"evidence file {path}: cannot read it: {err}") from None
        where = str(path)
    try:
        data: Any = tomllib.loads(text)
    except tomllib.TOMLDecodeError as err:
        raise EvidenceError(f"{where}: malformed TOML: {err}") from None
    try:
        return Library.model_validate(data)
    except ValidationError as err:
        from ..scenario import explain

        raise EvidenceError(f"{where}: {explain(err, Library)}") from None


@lru_cache(maxsize=1)
def library() -> Library:
    """The shipped library, read once."""
    return load()


def trials() -> pd.DataFrame:
    """Every record of the shipped library, one row each (a copy: change it freely).

    Columns: id, nudge, behaviour, effect, effect_lo, effect_hi, se, interval, unit, n,
    weeks, baseline, setting, persistence, source, read_in, verified, comparable, mapping,
    notes. Missing values (no interval, no n reported) are NaN/None, never guessed.
    """
    return library().table()
