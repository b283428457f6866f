"""The building blocks of scenario specs: the strict base model, shared field types and
trait distributions.

Every spec (the scenario, its population, rules, nudges and graphs, and planning's menus)
subclasses `Spec`, so unknown fields, non-finite numbers and control characters are
refused everywhere by one rule. The kinds' own modules (rules.py, nudges.py, network.py)
build their specs from these pieces; scenario.py assembles them.
"""

from __future__ import annotations

import math
import re
from typing import Annotated, Any, Literal

import numpy as np
from pydantic import (
    BaseModel,
    BeforeValidator,
    ConfigDict,
    Field,
    PlainSerializer,
    ValidationInfo,
    field_validator,
    model_validator,
)

from .errors import ScenarioError

#: Control characters (NUL, escape, ...) have no place in names, labels, units or paths:
#: they break file names and terminals. Free text (description) may hold tabs and newlines.
CONTROL = re.compile(r"[\x00-\x1f\x7f-\x9f]")
_CONTROL_IN_TEXT = re.compile(r"[\x00-\x08\x0b-\x1f\x7f-\x9f]")
_FREE_TEXT = {"description", "source"}


def control_character(value: Any, pattern: re.Pattern, where: str = "") -> tuple | None:
    """(path inside the value, character) of the first control character in a text, or in the
    texts (keys too) of lists and dicts; None when there is none."""
    if isinstance(value, str):
        found = pattern.search(value)
        return (where, found.group()) if found else None
    items: list = []
    if isinstance(value, dict):
        items = [(f"{where}.{k}", k) for k in value] + [(f"{where}.{k}", v) for k, v in value.items()]
    elif isinstance(value, list):
        items = [(f"{where}[{i}]", v) for i, v in enumerate(value)]
    for inner, item in items:
        if (bad := control_character(item, pattern, inner)) is not None:
            return bad
    return None


class ScenarioWarning(UserWarning):
    """Input that runs but probably does not say what the user meant (e.g. two sources of
    one trait, where the documented precedence picks one)."""


class Spec(BaseModel):
    """Base of every scenario part (and of menus): unknown fields are errors (they are usually
    typos), every float must be finite (NaN or infinity would run and report nonsense) and
    no text may hold control characters. Set here once so that no field can forget it."""

    model_config = ConfigDict(extra="forbid", validate_assignment=True, allow_inf_nan=False)

    @field_validator("*", mode="after", check_fields=False)
    @classmethod
    def _printable(cls, value: Any, info: ValidationInfo) -> Any:
        pattern = _CONTROL_IN_TEXT if info.field_name in _FREE_TEXT else CONTROL
        if (bad := control_character(value, pattern)) is not None:
            where, char = bad  # where: the path inside the field ('.reach[0]'), may be ''
            raise ValueError(
                f"{where}: control character {char!r} is not allowed; allowed: printable text"
            )
        return value


Probability = Annotated[float, Field(ge=0.0, le=1.0)]
NonNegative = Annotated[float, Field(ge=0.0)]
# Steps for an effect to halve; "none" (TOML has no null) = no decay while the nudge is active
HalfLife = Annotated[
    Annotated[float, Field(gt=0)] | None,
    BeforeValidator(lambda v: None if v == "none" else v),
    PlainSerializer(lambda v: "none" if v is None else v),
]

# ---------------------------------------------------------------------------------------
# Distributions of resident traits and tie weights
# ---------------------------------------------------------------------------------------


class Fixed(Spec):
    """Every resident gets the same value."""

    dist: Literal["fixed"] = "fixed"
    value: float

    def support(self) -> tuple[float, float]:
        return self.value, self.value

    def sample(self, rng: np.random.Generator, size: int) -> np.ndarray:
        return np.full(size, self.value, dtype=np.float64)


class Uniform(Spec):
    """Uniform on [low, high)."""

    dist: Literal["uniform"] = "uniform"
    low: float = 0.0
    high: float = 1.0

    @model_validator(mode="after")
    def _ordered(self) -> Uniform:
        if self.high < self.low:
            raise ValueError(f".high: {self.high} is below low ({self.low}); allowed: >= low")
        return self

    def support(self) -> tuple[float, float]:
        return self.low, self.high

    def sample(self, rng: np.random.Generator, size: int) -> np.ndarray:
        return rng.uniform(self.low, self.high, size)


class Normal(Spec):
    """Normal(mean, sd) clipped to [low, high] (clipping, not truncation: simple and stated).

    A bound left out means unbounded on that side: infinity is not a number users may write
    (every float is finite), so "no bound" is the absence of one.
    """

    dist: Literal["normal"] = "normal"
    mean: float = 0.0
    sd: NonNegative = 1.0
    low: float | None = Field(None, description="lower clip; none = unbounded")
    high: float | None = Field(None, description="upper clip; none = unbounded")

    @model_validator(mode="after")
    def _ordered(self) -> Normal:
        if self.low is not None and self.high is not None and self.high < self.low:
            raise ValueError(f".high: {self.high} is below low ({self.low}); allowed: >= low")
        return self

    def support(self) -> tuple[float, float]:
        lo = -math.inf if self.low is None else self.low
        hi = math.inf if self.high is None else self.high
        if self.sd == 0.0:  # every draw is the mean, clipped
            return min(max(self.mean, lo), hi), min(max(self.mean, lo), hi)
        return lo, hi

    def sample(self, rng: np.random.Generator, size: int) -> np.ndarray:
        lo = -np.inf if self.low is None else self.low
        hi = np.inf if self.high is None else self.high
        return np.clip(rng.normal(self.mean, self.sd, size), lo, hi)


class Beta(Spec):
    """Beta(a, b) rescaled to [low, high]: bounded traits such as thresholds or costs."""

    dist: Literal["beta"] = "beta"
    a: Annotated[float, Field(gt=0.0)] = 2.0
    b: Annotated[float, Field(gt=0.0)] = 2.0
    low: float = 0.0
    high: float = 1.0

    @model_validator(mode="after")
    def _ordered(self) -> Beta:
        if self.high < self.low:
            raise ValueError(f".high: {self.high} is below low ({self.low}); allowed: >= low")
        return self

    def support(self) -> tuple[float, float]:
        return self.low, self.high

    def sample(self, rng: np.random.Generator, size: int) -> np.ndarray:
        return self.low + (self.high - self.low) * rng.beta(self.a, self.b, size)


def _number_is_fixed(value: Any) -> Any:
    """Let users write `threshold = 0.3` for a fixed value."""
    if isinstance(value, (int, float)) and not isinstance(value, bool):
        return {"dist": "fixed", "value": float(value)}
    return value


Distribution = Annotated[
    Fixed | Uniform | Normal | Beta,
    Field(discriminator="dist"),
    BeforeValidator(_number_is_fixed),
]

#: Allowed values of each resident trait wherever it is written (a distribution under
#: [population], rule.threshold, a residents CSV column, a graph node attribute): one rule
#: per quantity. None = unbounded on that side. Habit, cost and threshold are shares;
#: susceptibility multiplies social influence (a negative one would invert it).
TRAIT_RANGES: dict[str, tuple[float | None, float | None]] = {
    "attitude": (None, None),
    "habit": (0.0, 1.0),
    "cost": (0.0, 1.0),
    "susceptibility": (0.0, None),
    "threshold": (0.0, 1.0),
}
#: Tie weights: finite and non-negative, as the network checks for graph files.
WEIGHT_RANGE: tuple[float | None, float | None] = (0.0, None)


def describe_range(lo: float | None, hi: float | None) -> str:
    """'[0, 1]', '>= 0' or 'any finite number', for messages."""
    if lo is not None and hi is not None:
        return f"[{lo:g}, {hi:g}]"
    if lo is not None:
        return f">= {lo:g}"
    if hi is not None:
        return f"<= {hi:g}"
    return "any finite number"


def check_support(dist: Any, allowed: tuple[float | None, float | None]) -> Any:
    """Refuse a distribution whose values can leave the allowed range: the same rule as for
    sampled values, applied before sampling so it holds wherever the quantity is written."""
    if dist is None:
        return dist
    lo, hi = dist.support()
    a, b = allowed
    if (a is not None and lo < a) or (b is not None and hi > b):
        shown = ", ".join(f"{k}={v}" for k, v in dist.model_dump(exclude_none=True).items()
                          if k != "dist")
        gives = (f"gives values in [{lo:g}, {hi:g}]" if math.isfinite(lo) and math.isfinite(hi)
                 else "is unbounded (give low and high to clip it)")
        raise ValueError(
            f"{dist.dist}({shown}) {gives}; allowed: values in {describe_range(a, b)}"
        )
    return dist


# Paths into a scenario (runs.set_path, scenario.lookup, parameter names)
_TOKEN = re.compile(r"([^.\[\]]+)|\[([^\]]*)\]|(\.)")


def parse_path(path: str, what: str = "factor path") -> list[tuple[str, str | int]]:
    """Split ``a.b[2].c[label with spaces]`` into ("key", name) and ("item", index or label).

    A bracket holds an index (``[0]``) or the ``label`` of a list item (a nudge's label, a
    ward's name, or a nudge kind when only one nudge has it). A key of digits only
    (``nudges.2``) is an index when it meets a list.
    """
    if not isinstance(path, str) or not path.strip():
        raise ScenarioError(f"{what} {path!r}: empty; write e.g. 'nudges[leaflet].reach'")
    parts: list[tuple[str, str | int]] = []
    pos, expect_key = 0, True
    while pos < len(path):
        m = _TOKEN.match(path, pos)
        if m is None or m.end() == pos:
            raise ScenarioError(f"{what} {path!r}: cannot read it at character {pos}")
        key, sel, dot = m.groups()
        if dot:
            if expect_key:
                raise ScenarioError(f"{what} {path!r}: empty name before '.' at {pos}")
            expect_key = True
        elif key is not None:
            if not expect_key:
                raise ScenarioError(f"{what} {path!r}: missing '.' before {key!r}")
            parts.append(("key", key.strip()))
            expect_key = False
        else:
            if expect_key:
                raise ScenarioError(f"{what} {path!r}: '[' must follow a name, not '.'")
            sel = sel.strip()
            parts.append(("item", int(sel) if re.fullmatch(r"\d+", sel) else sel))
            expect_key = False
        pos = m.end()
    if expect_key:
        raise ScenarioError(f"{what} {path!r}: must not end in '.'")
    return parts
