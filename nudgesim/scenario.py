"""Scenario: everything a run needs, validated once at the boundary.

A scenario is a pydantic model read from (and written back to) TOML. Every default below
carries its source or the word "assumption" in its description; the README's model
description repeats them. Bad input raises `ScenarioError` whose message names the
field, the bad value and what is allowed, so the CLI can print it without a traceback.
"""

from __future__ import annotations

import numbers
import re
import tomllib
import types
import typing
import warnings
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any, Literal, Union

import numpy as np
import tomli_w
from pydantic import (
    BaseModel,
    BeforeValidator,
    Field,
    PrivateAttr,
    ValidationError,
    ValidationInfo,
    field_validator,
    model_validator,
)

from .errors import ScenarioError
from .files import file_version
from .network import (
    BarabasiAlbert,
    Complete,
    ErdosRenyi,
    GraphFile,
    NetworkBase,
    WardClustered,
    WardKernel,
    WattsStrogatz,
)
from .nudges import (
    Ambassadors,
    Canvassing,
    CommunityPartnership,
    Default,
    Incentive,
    Information,
    NormFeedback,
    NudgeBase,
    Pledge,
    Reminder,
    Targeting,
    check_nudge_wards,
)
from .registry import GRAPHS, NUDGES, RULES
from .rules import BassRule, IndependentCascadeRule, LogisticRule, RuleBase, ThresholdRule
from .spec import (
    CONTROL,
    TRAIT_RANGES,
    WEIGHT_RANGE,
    Beta,
    Distribution,
    Fixed,
    HalfLife,
    NonNegative,
    Normal,
    Probability,
    ScenarioWarning,
    Spec,
    Uniform,
    check_support,
    control_character,
    describe_range,
    parse_path,
)

# The spec classes live beside their behaviour (spec.py, rules.py, nudges.py,
# network.py); they are re-exported here, where a scenario's reader looks for them.
__all__ = [
    "CONTROL", "MAX_SEED", "MAX_STEPS", "NUDGE_KINDS", "TOO_DEEP", "TRAIT_RANGES",
    "WEIGHT_RANGE", "Ambassadors", "BarabasiAlbert", "BassRule", "Beta", "Canvassing",
    "CommunityPartnership", "Complete", "Default", "Distribution", "ErdosRenyi", "Fixed",
    "GeographySpec", "GraphFile", "HalfLife", "ImpactSpec", "Incentive", "IndependentCascadeRule",
    "Information", "LogisticRule", "NetworkBase", "NetworkSpec", "NonNegative",
    "NormFeedback", "Normal", "NudgeBase", "NudgeSpec", "Pledge", "PopulationSpec",
    "Probability", "Reminder", "RuleBase", "RuleSpec", "Scenario", "ScenarioError",
    "ScenarioWarning", "Spec", "Targeting", "ThresholdRule", "UncertaintySpec", "Uniform",
    "WardClustered", "WardSpec", "WattsStrogatz", "check_nudge_wards", "check_support",
    "control_character", "describe_range", "error_lines", "explain", "load_toml_text",
    "lookup", "plain", "read_ward_table", "WARD_COLUMN_HINTS", "ward_table_columns", "with_mean",
]

#: Longest run a scenario may ask for. Every step adds a row per ward to the records and
#: a column to the contact-stamp book, and 100,000 weekly steps are already ~1,900 years:
#: larger values are typos (or 2**63 - 1), not campaigns.
MAX_STEPS = 100_000
#: Largest seed: seeds are stored as signed 64-bit integers in result tables.
MAX_SEED = 2**63 - 1

# ---------------------------------------------------------------------------------------
# Population
# ---------------------------------------------------------------------------------------


#: Traits a ward may set the mean of (`<trait>_mean` in a ward table or an inline ward):
#: threshold is left out, since the rule's own threshold distribution replaces it.
WARD_TRAITS = ("attitude", "habit", "cost", "susceptibility")


class WardSpec(Spec):
    """A neighbourhood: its name, number of residents, baseline adoption and, optionally,
    the mean of some traits in it (the population's distribution, moved to that mean)."""

    name: str
    size: Annotated[int, Field(ge=1)] | None = Field(
        None, description="residents in the ward; None splits population.size evenly"
    )
    baseline: Probability | None = Field(
        None, description="share of the ward adopting at step 0 (overrides initial_adopters)"
    )
    attitude_mean: float | None = Field(
        None, description="mean attitude in the ward (z-score); None: the population's"
    )
    habit_mean: float | None = Field(
        None, description="mean initial habit in the ward, in [0, 1]; None: the population's"
    )
    cost_mean: float | None = Field(
        None, description="mean perceived cost in the ward, in [0, 1]; None: the population's"
    )
    susceptibility_mean: float | None = Field(
        None, description="mean susceptibility in the ward, >= 0; None: the population's"
    )
    region: str | None = Field(
        None, description="the region the ward belongs to (text): a run then also writes "
        "by_region.parquet and names the lowest region; every ward has one or none does"
    )

    @field_validator("region", mode="after")
    @classmethod
    def _region_named(cls, region: str | None) -> str | None:
        if region is not None and not region.strip():
            raise ValueError("empty; allowed: a region name, or no region for every ward")
        return None if region is None else region.strip()

    def trait_means(self) -> dict[str, float]:
        """The trait means this ward sets, by trait name."""
        return {t: m for t in WARD_TRAITS if (m := getattr(self, f"{t}_mean")) is not None}


def with_mean(dist: Any, mean: float) -> Any:
    """The distribution `dist` moved to have centre `mean`, keeping its spread and bounds:
    a normal's mean, a beta's a/(a+b) at the same concentration a+b, a uniform shifted,
    a fixed value replaced. Raises ValueError when `mean` is outside what it can reach."""
    if isinstance(dist, Fixed):
        return Fixed(value=mean)
    if isinstance(dist, Normal):
        lo, hi = dist.low, dist.high
        if (lo is not None and mean < lo) or (hi is not None and mean > hi):
            raise ValueError(f"outside the distribution's bounds {describe_range(lo, hi)}")
        return dist.model_copy(update={"mean": mean})
    if isinstance(dist, Beta):
        if not dist.low < mean < dist.high:
            raise ValueError(f"outside the open interval ({dist.low:g}, {dist.high:g}) of the "
                             "beta distribution")
        share = (mean - dist.low) / (dist.high - dist.low)
        total = dist.a + dist.b
        return dist.model_copy(update={"a": share * total, "b": (1.0 - share) * total})
    if isinstance(dist, Uniform):
        shift = mean - 0.5 * (dist.low + dist.high)
        return dist.model_copy(update={"low": dist.low + shift, "high": dist.high + shift})
    raise TypeError(f"no ward mean for distribution {dist!r}")


#: Columns of a ward table (`population.wards = "wards.csv"`), beside `<trait>_mean`.
WARD_TABLE_COLUMNS = ("name", "households", "baseline", "region")
#: Column names a council's table often has, and the one this reader expects instead.
WARD_COLUMN_HINTS = {
    "ward": "name", "ward_name": "name", "participation_rate": "baseline",
    "participation": "baseline", "size": "households", "residents": "households",
}
_WARD_TABLES: dict[tuple[str, int, int], list[dict[str, Any]]] = {}


def ward_table_columns() -> list[str]:
    """Every column a ward table may have."""
    return [*WARD_TABLE_COLUMNS, *(f"{t}_mean" for t in WARD_TRAITS)]


def read_ward_table(path: str | Path, base_dir: Path | None = None) -> list[dict[str, Any]]:
    """The wards of a ward table (CSV or Parquet, one row per ward) as inline ward dicts,
    checked at the boundary: every problem is one ScenarioError naming the file, column,
    row and ward, the value and what is allowed. Cached per file (path, size, mtime)."""
    p = Path(path).expanduser()
    if not p.is_absolute():
        p = (base_dir or Path.cwd()) / p
    where = f"population.wards: {path}"
    key = file_version(p, where, "a CSV or Parquet ward table, relative to the scenario "
                       "file's folder")
    if key not in _WARD_TABLES:
        _WARD_TABLES[key] = _ward_rows(_read_table(p, where), where)
    return [dict(row) for row in _WARD_TABLES[key]]


def _read_table(p: Path, where: str) -> Any:
    import pandas as pd

    suffix = p.suffix.lower()
    if suffix not in (".csv", ".parquet", ".pq"):
        raise ScenarioError(f"{where}: unknown file type {p.suffix!r}; allowed: .csv, .parquet")
    try:
        if suffix == ".csv":
            return pd.read_csv(p, dtype={"name": str, "region": str}, keep_default_na=False,
                               na_values=[""])
        return pd.read_parquet(p)
    except Exception as err:  # pandas/pyarrow raise many kinds; all mean "not readable"
        raise ScenarioError(f"{where}: cannot read it: {' '.join(str(err).split())}") from None


def _ward_rows(table: Any, where: str) -> list[dict[str, Any]]:
    """Rows of a ward table as WardSpec dicts; the first problem found, as one line."""
    columns = [str(c) for c in table.columns]
    allowed = ward_table_columns()
    for col in columns:
        if col not in allowed:
            hint = (f" (rename it to {WARD_COLUMN_HINTS[col]!r})"
                    if col in WARD_COLUMN_HINTS else "")
            raise ScenarioError(f"{where}: unknown column {col!r}{hint}; allowed: "
                                f"{', '.join(allowed)}")
    for col in ("name", "households"):
        if col not in columns:
            raise ScenarioError(f"{where}: missing column {col!r}; required: name, households "
                                f"(optional: {', '.join(allowed[2:])})")
    if len(table) == 0:
        raise ScenarioError(f"{where}: no rows; allowed: one row per ward")
    rows: list[dict[str, Any]] = []
    seen: dict[str, int] = {}
    for i, rec in enumerate(table.to_dict("records")):
        row_no = i + 2  # the header is line 1 of a CSV
        raw_name = rec["name"]
        name = "" if raw_name is None or raw_name != raw_name else str(raw_name).strip()
        at = f"{where}: row {row_no}"
        if not name:
            raise ScenarioError(f"{at}, column 'name': empty; allowed: a ward name")
        if name in seen:
            raise ScenarioError(f"{at}, column 'name': ward {name!r} also on row {seen[name]}; "
                                "allowed: each ward once")
        seen[name] = row_no
        at = f"{where}: row {row_no} (ward {name!r})"
        row: dict[str, Any] = {"name": name}
        for col in columns:
            if col == "name":
                continue
            value = rec[col]
            if col == "region":  # text; a ward without one would drop out of its region
                if isinstance(value, numbers.Integral) and not isinstance(value, bool):
                    value = str(int(value))  # a Parquet column of region codes: as a CSV's
                if not isinstance(value, str) or not value.strip():
                    blank = value is None or value != value or (isinstance(value, str)
                                                                 and not value.strip())
                    shown = "empty" if blank else plain(value)
                    raise ScenarioError(f"{at}, column 'region': {shown} is not allowed; "
                                        "allowed: a region name for every ward (or no "
                                        "region column)")
                row["region"] = value.strip()
                continue
            what = ("a whole number >= 1" if col == "households" else
                    "a share in [0, 1]" if col == "baseline" else _mean_range(col))
            try:
                x = float(value)
            except (TypeError, ValueError):
                raise ScenarioError(f"{at}, column {col!r}: {plain(value)} is not allowed; "
                                    f"allowed: {what}") from None
            if x != x and col != "households":  # an empty cell: this ward keeps the default
                continue
            lo, hi = ((1.0, None) if col == "households" else (0.0, 1.0) if col == "baseline"
                      else TRAIT_RANGES[col.removesuffix("_mean")])
            if (not np.isfinite(x) or (lo is not None and x < lo) or (hi is not None and x > hi)
                    or (col == "households" and x != int(x))):
                raise ScenarioError(f"{at}, column {col!r}: {plain(value)} is not allowed; "
                                    f"allowed: {what}")
            row["size" if col == "households" else col] = int(x) if col == "households" else x
        rows.append(row)
    return rows


def _mean_range(column: str) -> str:
    lo, hi = TRAIT_RANGES[column.removesuffix("_mean")]
    return "a finite number" if lo is None and hi is None else f"a number in {describe_range(lo, hi)}"


def _ward_file(value: Any, info: ValidationInfo) -> Any:
    """`wards = "wards.csv"`: the table's rows, read relative to the scenario's folder (the
    validation context's base_dir), become the inline list; a saved scenario then holds its
    wards, so its run id follows the table's content and it runs without the file."""
    if isinstance(value, (str, Path)):
        base = (info.context or {}).get("base_dir")
        try:
            return read_ward_table(value, base)
        except ScenarioError as err:  # the validation error's path names the field
            raise ValueError(str(err).removeprefix("population.wards: ")) from None
    return value


class PopulationSpec(Spec):
    """Residents: how many, in which wards, and the distributions of their traits."""

    size: Annotated[int, Field(ge=1)] | None = Field(
        None, description="number of residents (households); taken from csv/graph when None"
    )
    wards: Annotated[
        Annotated[int, Field(ge=1)] | list[WardSpec], BeforeValidator(_ward_file)
    ] = Field(
        1,
        description="a ward count (equal sizes), a list of wards with names and sizes, or a "
        "ward table file (CSV/Parquet: name, households, baseline, region, <trait>_mean) "
        "relative to "
        "the scenario file",
    )
    csv: str | None = Field(
        None,
        description="CSV with one row per resident; columns among attitude, habit, cost, "
        "susceptibility, threshold, ward override the distributions",
    )
    attitude: Distribution = Field(
        default_factory=lambda: Normal(mean=0.0, sd=1.0, low=-3.0, high=3.0),
        description="standardised attitude toward the behaviour (z-score; assumption)",
    )
    habit: Distribution = Field(
        default_factory=lambda: Fixed(value=0.0),
        description="initial habit strength in [0, 1] (assumption: nobody starts habitual)",
    )
    cost: Distribution = Field(
        default_factory=lambda: Beta(a=2.0, b=2.0, low=0.0, high=1.0),
        description="perceived cost/effort in [0, 1] (assumption)",
    )
    susceptibility: Distribution = Field(
        default_factory=lambda: Uniform(low=0.5, high=1.5),
        description="multiplier of social influence, mean 1 (assumption)",
    )
    threshold: Distribution = Field(
        default_factory=lambda: Uniform(low=0.1, high=0.5),
        description="adoption threshold for the threshold rule (assumption)",
    )

    @field_validator(*TRAIT_RANGES, mode="after")
    @classmethod
    def _in_range(cls, dist: Any, info: ValidationInfo) -> Any:
        assert info.field_name is not None  # a field validator is always given its field
        return check_support(dist, TRAIT_RANGES[info.field_name])

    @model_validator(mode="after")
    def _sizes_agree(self) -> PopulationSpec:
        if isinstance(self.wards, list):
            names = [w.name for w in self.wards]
            if len(set(names)) != len(names):
                raise ValueError(f".wards: ward names must be unique, got {names}")
            sizes = self.ward_sizes()
            if sizes is not None:
                total = sum(sizes)
                if self.size is not None and self.size != total:
                    raise ValueError(
                        f"size ({self.size}) differs from the sum of ward sizes ({total}); "
                        "give one or make them agree"
                    )
            elif any(w.size is not None for w in self.wards):
                raise ValueError(".wards: give a size for every ward or for none")
            missing = [w.name for w in self.wards if w.region is None]
            if missing and len(missing) < len(self.wards):
                raise ValueError(f".wards[{missing[0]}].region: missing; allowed: a region "
                                 "for every ward or for none")
            for w in self.wards:
                for trait, mean in w.trait_means().items():
                    try:
                        check_support(with_mean(getattr(self, trait), mean), TRAIT_RANGES[trait])
                    except ValueError as err:
                        raise ValueError(
                            f".wards[{w.name}].{trait}_mean: {mean:g} is not allowed with "
                            f"population.{trait} = {getattr(self, trait).dist}: {err}"
                        ) from None
        return self

    def ward_sizes(self) -> list[int] | None:
        """The ward sizes the scenario writes: a list when every ward has one (also for an
        empty list of wards), None when wards are a count or unsized."""
        if not isinstance(self.wards, list):
            return None
        sizes = [w.size for w in self.wards if w.size is not None]
        return sizes if len(sizes) == len(self.wards) else None

    def ward_names(self) -> list[str]:
        if isinstance(self.wards, list):
            return [w.name for w in self.wards]
        return [f"W{i + 1:02d}" for i in range(self.wards)]

    def ward_regions(self) -> list[str] | None:
        """Each ward's region, in ward order, or None when the wards have no regions."""
        if isinstance(self.wards, list) and self.wards and self.wards[0].region is not None:
            return [str(w.region) for w in self.wards]
        return None


# ---------------------------------------------------------------------------------------
# The registered kinds: the unions follow the registries (registry.py)
# ---------------------------------------------------------------------------------------

if TYPE_CHECKING:
    # The tables are open, so statically a spec is any member of its family; at run time
    # each name is the tagged union of the kinds registered so far (_rebuild keeps it so).
    type NetworkSpec = NetworkBase
    type RuleSpec = RuleBase
    type NudgeSpec = NudgeBase
else:
    NetworkSpec = GRAPHS.union()
    RuleSpec = RULES.union()
    NudgeSpec = NUDGES.union()
NUDGE_KINDS: list[str] = NUDGES.names()


# ---------------------------------------------------------------------------------------
# Impact and the scenario itself
# ---------------------------------------------------------------------------------------


class ImpactSpec(Spec):
    """Environmental impact of one adopting household per step."""

    per_adopter_step: NonNegative = Field(
        0.0015,
        description="impact per adopter per step (assumption: ~1.5 kg food waste "
        "separated per household per week)",
    )
    unit: str = Field("t food waste diverted", description="unit of per_adopter_step")


class UncertaintySpec(Spec):
    """What the scenario leaves uncertain: the evidence level its parameter priors are read
    at (nudgesim.evidence.priors) and the parameters it pins to the values written here.
    Runs of one scenario never read it; ensembles and predictions do."""

    evidence: Literal["at_scale", "published"] = Field(
        "at_scale",
        description="'at_scale': nudge effects shrunk toward nudge-unit results "
        "(DellaVigna & Linos 2022, Econometrica 90:81) and bias-corrected syntheses; "
        "'published': fitted to the published trials as reported",
    )
    pin: list[str] = Field(
        default_factory=list,
        description="parameters kept at this scenario's values instead of drawn from their "
        "priors: 'rule.<field>', '<nudge kind>.<field>' or a path such as "
        "'nudges[leaflet].reach'",
    )


class GeographySpec(Spec):
    """Where the wards are: a boundaries file whose features are the scenario's wards."""

    boundaries: str = Field(
        description="ward boundaries (GeoJSON, GeoPackage, shapefile: any file GDAL reads), "
        "relative to the scenario file; one feature per ward"
    )
    name_field: str = Field("name", description="the file's attribute holding ward names")


def _check_initial_adopters(value: Any) -> Any:
    """One clear message for the three accepted shapes instead of one per union member."""
    if value is None or isinstance(value, list):
        return value
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise ValueError(
            f"{value!r} is not allowed: give a fraction in [0, 1] (float), a count (int) "
            "or a list of resident ids"
        )
    if isinstance(value, int) and value < 0:
        raise ValueError(f"a count must be >= 0, got {value}")
    if isinstance(value, float) and not 0.0 <= value <= 1.0:
        raise ValueError(f"a fraction must be in [0, 1], got {value} (write an int for a count)")
    return value


class Scenario(Spec):
    """One simulated campaign: who lives in the borough, how they are tied, how they decide,
    which nudges they receive, and for how long."""

    name: str = "scenario"
    description: str = ""
    seed: Annotated[int, Field(ge=0, le=MAX_SEED)] = 0
    steps: Annotated[int, Field(ge=1, le=MAX_STEPS)] = Field(
        52, description=f"number of steps to simulate (at most {MAX_STEPS:,})"
    )
    step_unit: str = "week"
    population: PopulationSpec = Field(default_factory=lambda: PopulationSpec(size=1000))
    network: NetworkSpec = Field(default_factory=WattsStrogatz)
    rule: RuleSpec = Field(default_factory=LogisticRule)
    initial_adopters: Annotated[
        int | float | list[int | str] | None, BeforeValidator(_check_initial_adopters)
    ] = Field(
        None,
        description="a fraction (float), a count (int) or a list of resident ids; "
        "None uses ward baselines or nobody",
    )
    nudges: list[NudgeSpec] = Field(default_factory=list)
    impact: ImpactSpec = Field(default_factory=ImpactSpec)
    uncertainty: UncertaintySpec = Field(
        default_factory=UncertaintySpec,
        description="evidence level of the parameter priors and the parameters pinned",
    )
    geography: GeographySpec | None = Field(
        None, description="ward boundaries: maps, and cross-ward ties by adjacency or distance"
    )

    _base_dir: Path = PrivateAttr(default_factory=Path.cwd)

    @model_validator(mode="after")
    def _consistent(self) -> Scenario:
        for i, n in enumerate(self.nudges):
            if n.start > self.steps:
                raise ValueError(
                    f"nudges[{i}].start: {n.start} is after the last step ({self.steps}); "
                    f"allowed: 1..{self.steps}"
                )
        if self.network.kind != "file" and self.population.csv is None:
            # wards from a csv or graph are checked when they are read (make_nudge)
            for i, n in enumerate(self.nudges):
                check_nudge_wards(n, i, self.population.ward_names())
        if (
            isinstance(self.population.wards, list)
            and any(w.baseline is not None for w in self.population.wards)
            and self.initial_adopters is not None
        ):
            raise ValueError(
                "initial_adopters: not allowed together with ward baselines; allowed: one of them"
            )
        cross = getattr(self.network, "cross", "uniform")
        if cross != "uniform" and self.geography is None:
            raise ValueError(
                f"network.cross: {cross!r} needs ward boundaries; allowed: a [geography] "
                "table (boundaries = \"wards.geojson\") or cross = \"uniform\""
            )
        for i, name in enumerate(self.uncertainty.pin):
            # the form only: the no-campaign twin, a menu's options and an ensemble's
            # renamed nudges keep the pins of a scenario whose nudges they change
            if (problem := self.parameter_problem(name, present=False)) is not None:
                raise ValueError(f"uncertainty.pin[{i}]: {name!r} {problem}")
        return self

    def parameter_problem(self, name: str, present: bool = True) -> str | None:
        """Why `name` is not a parameter of this scenario (None: it is one), in the grammar
        priors, posteriors and ensembles share: 'rule.<field>' (a field of this rule),
        '<nudge kind>.<field>' (a field of a kind this scenario has) or a path into the
        scenario (lookup). present=False checks the form only: a known kind's field, or a
        path that parses, whether or not this scenario has that nudge."""
        head, dot, field = name.partition(".")
        if head == "rule" and dot and "[" not in field and "." not in field:
            fields = [f for f in type(self.rule).model_fields if f != "kind"]
            if field not in fields:
                return f"is not a field of rule {self.rule.kind!r}; allowed: {fields}"
            return None
        if head in NUDGE_KINDS and dot and "[" not in field and "." not in field:
            kinds = sorted({n.kind for n in self.nudges})
            if present and head not in kinds:
                return f"names nudge kind {head!r}, which this scenario has no nudge of; " \
                       f"allowed kinds: {kinds}"
            fields = [f for f in NUDGES[head].spec.model_fields if f != "kind"]
            if field not in fields:
                return f"is not a field of {head!r} nudges; allowed: {fields}"
            return None
        try:
            if present:
                lookup(self.to_dict(), name)
            else:
                first = parse_path(name, "parameter")[0][1]
                if first not in type(self).model_fields:
                    return (f"is not a parameter of a scenario ({first!r} is not a scenario "
                            f"table; allowed: {sorted(type(self).model_fields)})")
        except ScenarioError as err:
            return f"is not a parameter of this scenario ({err})"
        return None

    # -- paths -------------------------------------------------------------------------
    @property
    def base_dir(self) -> Path:
        """Folder that relative paths (graph file, residents CSV) are resolved against."""
        return self._base_dir

    def resolve(self, path: str) -> Path:
        p = Path(path).expanduser()
        return p if p.is_absolute() else self._base_dir / p

    # -- TOML in and out ---------------------------------------------------------------
    @classmethod
    def from_dict(cls, data: dict[str, Any], base_dir: Path | None = None) -> Scenario:
        try:
            sc = cls.model_validate(data, context={"base_dir": base_dir})
        except ValidationError as err:
            raise ScenarioError(explain(err)) from None
        except RecursionError:
            raise ScenarioError(f"scenario: {TOO_DEEP}") from None
        sc._base_dir = Path(base_dir) if base_dir is not None else Path.cwd()
        if sc.geography is not None:
            sc._attach_geography()
        return sc

    def _attach_geography(self) -> None:
        """Read the boundaries now (validate and run then see the same problems, before any
        step) and give a ward-clustered network its cross-ward kernel."""
        from . import geography

        gdf = geography.load_boundaries(self)
        cross = getattr(self.network, "cross", "uniform")
        if isinstance(self.network, WardClustered) and cross != "uniform":
            kernel = geography.cross_kernel(gdf, cross, self.network.distance_scale)
            self.network._ward_kernel = WardKernel(kernel)

    @classmethod
    def from_toml_str(cls, text: str, base_dir: Path | None = None) -> Scenario:
        return cls.from_dict(load_toml_text(text), base_dir)

    @classmethod
    def from_toml(cls, path: str | Path) -> Scenario:
        path = Path(path)
        try:
            text = path.read_text(encoding="utf-8")
        except FileNotFoundError:
            raise ScenarioError(f"scenario file not found: {path}") from None
        except (OSError, UnicodeDecodeError) as err:
            raise ScenarioError(f"cannot read scenario file {path}: {err}") from None
        try:
            return cls.from_toml_str(text, base_dir=path.resolve().parent)
        except ScenarioError as err:
            raise ScenarioError(f"{path}: {err}") from None

    def to_dict(self) -> dict[str, Any]:
        """Plain data that round-trips through TOML: unset (None) fields are left out, and a
        half-life of None is written as "none" (its serializer) so it survives the trip.
        An `[uncertainty]` table at its defaults is left out too: runs never read it, and
        run ids (hashes of this dict) stay what they were before the table existed."""
        data = _drop_none(self.model_dump(mode="json"))
        if data.get("uncertainty") == _drop_none(UncertaintySpec().model_dump(mode="json")):
            del data["uncertainty"]
        return data

    def to_toml(self) -> str:
        return tomli_w.dumps(self.to_dict())

    #: the fields that name files, read relative to the scenario's folder
    FILE_FIELDS: typing.ClassVar[tuple[tuple[str, str], ...]] = (
        ("population", "csv"), ("network", "path"), ("geography", "boundaries"))

    def named_files(self) -> list[tuple[str, str]]:
        """(table, key) of each FILE_FIELDS entry this scenario sets: the files it reads."""
        data = self.to_dict()
        return [(table, key) for table, key in self.FILE_FIELDS
                if isinstance(data.get(table), dict) and isinstance(data[table].get(key), str)]

    def to_toml_as_run(self) -> str:
        """TOML for a results folder ("the scenario as run"): the files it names are written
        as absolute paths, so the copy loads from its new folder (`nudgesim report`, a
        re-run) as long as those files stay where they were."""
        data = self.to_dict()
        for table, key in self.named_files():
            data[table][key] = str(self.resolve(data[table][key]).resolve())
        return tomli_w.dumps(data)

    def replace(self, **changes: Any) -> Scenario:
        """A validated copy with top-level fields changed (keeps the base folder).

        A shorter horizon (`steps`) drops the nudges that would start after it, with one
        warning naming them: `nudgesim run --steps 10` on a campaign whose last nudge starts
        in week 13 runs the first ten weeks of it. Nudges passed in `changes` are kept as
        given (a nudge written after the horizon is still an error)."""
        data = self.to_dict() | changes
        steps = changes.get("steps")
        if isinstance(steps, int) and "nudges" not in changes:
            late = [n for n in self.nudges if n.start > steps]
            if late:
                data["nudges"] = [d for d, n in zip(data["nudges"], self.nudges) if n.start <= steps]
                names = ", ".join(f"{n.name!r} (starts at {n.start})" for n in late)
                warnings.warn(
                    f"steps: {steps} ends before {names}; "
                    f"{'it is' if len(late) == 1 else 'they are'} left out of this run",
                    ScenarioWarning,
                    stacklevel=2,
                )
        return Scenario.from_dict(data, self._base_dir)


def _rebuild() -> None:
    """A kind was registered (or removed): point Scenario's tagged fields at the new unions
    and rebuild its validator. Setting the fields' annotations is what pydantic reads on
    a forced rebuild; rebinding the module's aliases alone would change nothing."""
    global NetworkSpec, RuleSpec, NudgeSpec
    networks, rules, nudges = GRAPHS.union(), RULES.union(), NUDGES.union()
    if not TYPE_CHECKING:  # statically the names stay the family types (above)
        NetworkSpec, RuleSpec, NudgeSpec = networks, rules, nudges
    NUDGE_KINDS[:] = NUDGES.names()
    fields = Scenario.model_fields
    fields["network"].annotation = typing.get_args(networks)[0]
    fields["rule"].annotation = typing.get_args(rules)[0]
    # a union made at run time, as a type argument: what pydantic reads, opaque to mypy
    fields["nudges"].annotation = list[nudges]  # type: ignore[valid-type]
    Scenario.model_rebuild(force=True)


for _registry in (GRAPHS, RULES, NUDGES):
    _registry.on_change(_rebuild)


def _drop_none(obj: Any) -> Any:
    if isinstance(obj, dict):
        return {k: _drop_none(v) for k, v in obj.items() if v is not None}
    if isinstance(obj, list):
        return [_drop_none(v) for v in obj]
    return obj


_PATH_TOKEN = re.compile(r"([^.\[\]]+)|\[([^\]]*)\]|(\.)")


def lookup(data: Mapping[str, Any], path: str) -> Any:
    """The value at a parameter path inside a scenario dict, read only: the grammar of
    nudgesim.runs.set_path (``nudges[leaflet].reach``, ``nudges[2].reach``,
    ``nudges.2.reach``, ``population.wards[Dockside].baseline``; a bracket holds an index
    or an item's label, name or kind). A missing part raises a one-line ScenarioError."""
    node: Any = data
    pos, seen = 0, ""
    while pos < len(path):
        m = _PATH_TOKEN.match(path, pos)
        if m is None or m.end() == pos:
            raise ScenarioError(f"cannot read {path!r} at character {pos}")
        key, sel, dot = m.groups()
        pos = m.end()
        if dot:
            continue
        if key is not None and not (isinstance(node, list) and key.strip().isdigit()):
            key = key.strip()
            if not isinstance(node, Mapping) or key not in node:
                allowed = sorted(map(str, node)) if isinstance(node, Mapping) else []
                raise ScenarioError(f"no {key!r} in {seen or 'the scenario'}; allowed: {allowed}")
            node, seen = node[key], (f"{seen}.{key}" if seen else key)
            continue
        sel = (key if sel is None else sel).strip()
        if not isinstance(node, list):
            raise ScenarioError(f"{seen} is not a list, [{sel}] selects from a list")
        if sel.isdigit():
            if int(sel) >= len(node):
                raise ScenarioError(f"{seen}[{sel}] is out of range ({len(node)} items)")
            node = node[int(sel)]
        else:
            for k in ("label", "name", "kind"):  # as set_path picks an item
                hits = [it for it in node if isinstance(it, Mapping) and it.get(k) == sel]
                if len(hits) == 1:
                    node = hits[0]
                    break
            else:
                raise ScenarioError(f"no single item of {seen} has label, name or kind {sel!r}")
        seen += f"[{sel}]"
    return node


TOO_DEEP = "nesting too deep (arrays or tables inside each other); allowed: a few levels"


def load_toml_text(text: str) -> dict[str, Any]:
    """tomllib.loads with every failure as one ScenarioError line (tomllib recurses once per
    nesting level, so thousands of nested brackets end in RecursionError)."""
    try:
        return tomllib.loads(text)
    except tomllib.TOMLDecodeError as err:
        raise ScenarioError(f"malformed TOML: {err}") from None
    except RecursionError:
        raise ScenarioError(f"malformed TOML: {TOO_DEEP}") from None


# ---------------------------------------------------------------------------------------
# Explaining validation errors to people
# ---------------------------------------------------------------------------------------


def _allowed_fields(loc: tuple, root: type[BaseModel] | None = None) -> list[str]:
    """Fields allowed at the model found by following `loc` from `root` (the Scenario)."""
    model: Any = root or Scenario
    for part in loc[:-1]:
        if isinstance(part, int):
            continue
        if isinstance(model, type) and issubclass(model, BaseModel) and part in model.model_fields:
            model = model.model_fields[part].annotation
        else:
            # a discriminated-union tag such as 'pledge': pick that member
            model = _union_member(model, part)
        model = _unwrap(model)
    model = _unwrap(model)
    if isinstance(model, type) and issubclass(model, BaseModel):
        return list(model.model_fields)
    return []


def _unwrap(tp: Any) -> Any:
    """Strip Annotated / Optional / list wrappers down to a model or a union of models."""
    while True:
        origin = typing.get_origin(tp)
        if origin is Annotated:
            tp = typing.get_args(tp)[0]
        elif origin is list:
            tp = typing.get_args(tp)[0]
        elif origin in (Union, types.UnionType):
            members = [a for a in typing.get_args(tp) if a is not type(None)]
            models = [m for m in members if isinstance(_unwrap(m), type)]
            if len(members) == 1:
                tp = members[0]
            else:
                return tp if len(models) != 1 else models[0]
        else:
            return tp


def _union_member(tp: Any, tag: str) -> Any:
    for member in typing.get_args(_unwrap(tp)):
        m = _unwrap(member)
        if isinstance(m, type) and issubclass(m, BaseModel):
            for key in ("kind", "dist"):
                if key in m.model_fields and m.model_fields[key].default == tag:
                    return m
    return tp


#: Tags pydantic puts in an error's location for the members of a plain (undiscriminated)
#: union, e.g. 'constrained-int' or 'list[WardSpec]': they are not field names.
_MEMBER_TAG = re.compile(
    r"(int|float|str|bool|none|constrained-\w+|(strict|lax)-\w+|function-.*|"
    r"(list|dict|union|tuple|set)\[.*\])"
)


#: A validation error: pydantic's (an ErrorDetails) or one `_prune_unions` writes for a
#: union (it adds "order", the pydantic error it stands in for).
_Error = Mapping[str, Any]


def _is_member_tag(part: Any) -> bool:
    return isinstance(part, str) and _MEMBER_TAG.fullmatch(part) is not None


def _where(loc: tuple, root: type[BaseModel] | None = None) -> str:
    """The dotted field path of an error location, without union tags: they repeat what the
    kind/dist field (or the value) already says. Tags are told from fields by following the
    models from `root`, since a tag can share a field's name ('threshold')."""
    out = ""
    model: Any = root or Scenario
    for part in loc:
        if isinstance(part, int):
            out += f"[{part}]"
            continue
        m = _unwrap(model)
        if isinstance(m, type) and issubclass(m, BaseModel) and part in m.model_fields:
            out += ("." if out else "") + part
            model = m.model_fields[part].annotation
        elif _is_member_tag(part):
            continue
        elif (member := _union_member(model, part)) is not model:
            model = member
        else:  # past the models (an unknown field, a dict key): show as written
            out += ("." if out else "") + str(part)
            model = None
    return out or "scenario"


def _wrong_type(e: _Error, depth: int) -> bool:
    """The error says the input is not of this union member's type at all."""
    kind = e["type"]
    return len(e["loc"]) == depth and (
        kind.endswith(("_type", "_parsing")) or kind in ("int_from_float", "finite_number")
    )


def _prune_unions(errors: Sequence[_Error], start: int = 0) -> list[_Error]:
    """A value that fits no member of a plain union gets one error per member; keep only the
    members whose type the value has (a list given for `wards` is judged as a list, not also
    as an int), or, when it has none of their types, one error listing what is allowed."""
    out: list[_Error] = []
    groups: dict[tuple, list[tuple[int, _Error]]] = {}
    for e in errors:
        loc = e["loc"]
        k = next((j for j in range(start, len(loc)) if _is_member_tag(loc[j])), None)
        if k is None:
            out.append(e)
        else:
            groups.setdefault(loc[:k], []).append((k, e))
    for prefix, items in groups.items():
        members: dict[Any, list[_Error]] = {}
        for k, e in items:
            members.setdefault(e["loc"][k], []).append(e)
        fitting = [es for es in members.values()
                   if not all(_wrong_type(e, len(prefix) + 1) for e in es)]
        if fitting:
            out.extend(_prune_unions([e for es in fitting for e in es], len(prefix) + 1))
        else:
            wanted = list(dict.fromkeys(
                e["msg"].removeprefix("Input should be ").split(",")[0]
                for es in members.values() for e in es))
            out.append({"loc": prefix, "type": "union_mismatch", "input": items[0][1].get("input"),
                        "msg": f"Input should be {' or '.join(wanted)}", "order": items[0][1]})
    return out


def plain(value: Any, limit: int = 60) -> str:
    """A value as the user wrote it: numpy scalars as Python numbers, long values cut."""
    if isinstance(value, np.generic):
        value = value.item()
    text = repr(value)
    return text if len(text) <= limit else text[: limit - 1] + "…"


def error_lines(err: ValidationError, root: type[BaseModel] | None = None) -> list[str]:
    """One line per distinct problem: the field, the bad value and what is allowed."""
    raw = err.errors(include_url=False)
    order = {id(e): i for i, e in enumerate(raw)}
    pruned = _prune_unions(raw)
    pruned.sort(key=lambda e: order.get(id(e.get("order", e)), 0))
    lines: list[str] = []
    for e in pruned:
        where = _where(e["loc"], root)
        value = e.get("input")
        if e["type"] == "extra_forbidden":
            allowed = _allowed_fields(e["loc"], root)
            msg = f"{where}: unknown field; allowed: {', '.join(allowed)}"
        elif e["type"] == "union_tag_invalid":
            ctx = e.get("ctx", {})
            msg = (
                f"{where}.{ctx.get('discriminator', 'kind').strip(chr(39))}: "
                f"unknown kind {ctx.get('tag')!r}; allowed: {ctx.get('expected_tags')}"
            )
        elif e["type"] == "union_tag_not_found":
            ctx = e.get("ctx", {})
            msg = f"{where}: missing {ctx.get('discriminator', 'kind')}"
        elif e["type"] == "finite_number":
            msg = f"{where}: {plain(value)} is not allowed; allowed: a finite number"
        else:
            text = e["msg"].removeprefix("Value error, ")
            complete = "got" in text or "allowed:" in text  # our own messages say it all
            shown = "" if isinstance(value, (dict, list)) or complete else f" (got {plain(value)})"
            top = where == "scenario" and ":" in text  # a model-level message names its field
            if text.startswith(":"):  # a field validator's message with no path inside it
                text = text[1:].lstrip()
            if text.startswith((".", "[")):  # ... or with one: '.reach[0]: ...'
                msg = f"{where}{text}"
            else:
                msg = text if top else f"{where}: {text}{shown}"
        if msg not in lines:
            lines.append(msg)
    return lines


def explain(err: ValidationError, root: type[BaseModel] | None = None) -> str:
    """Pydantic's errors for people: the first line is the first problem (field, bad value,
    what is allowed); any further problems follow, indented, a few at most."""
    lines = error_lines(err, root)
    more = f"\n  … and {len(lines) - 8} more" if len(lines) > 8 else ""
    return lines[0] + "".join(f"\n  {line}" for line in lines[1:8]) + more
