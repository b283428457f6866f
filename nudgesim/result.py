"""Result of one run: tidy tables, a summary, and atomic saving to a folder.

A run's tables stay numpy columns (`Columns`) until someone asks for a DataFrame
(`Result.timeseries`, `Result.by_ward`): the summary, the saved files and the figure are
all made from the columns, so `nudgesim run` never imports pandas, whose import alone
took 0.49-0.67 s of a 2.2-2.9 s command (`python -X importtime`, AMD EPYC, a slow day)."""

from __future__ import annotations

import json
import math
from contextlib import nullcontext
from dataclasses import dataclass, field, replace
from functools import cached_property
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from .errors import UsageError
from .files import (
    check_replaceable,
    foreign_files,
    replace_folder,
    save_figure,
    write_atomic,
    write_csv_atomic,
    write_parquet_atomic,
)

__all__ = ["Columns", "Result", "save_figure", "write_atomic", "write_parquet_atomic"]

if TYPE_CHECKING:
    from collections.abc import Sequence

    import pandas as pd

    from .scenario import Scenario

#: A table as columns: name -> one numpy array, all of the same length, in column order.
Columns = dict[str, np.ndarray]


def frame_columns(frame: pd.DataFrame) -> Columns:
    """A DataFrame's columns as numpy arrays (strings as object arrays)."""
    return {str(c): frame[c].to_numpy() for c in frame.columns}


# what a run folder holds, and what `nudgesim report` adds to it: nothing else is ever
# deleted when a run replaces the folder
RUN_FILES = frozenset(
    {
        "timeseries.parquet",
        "timeseries.csv",
        "by_ward.parquet",
        "summary.json",
        "scenario.toml",
        "adoption.png",
        "map.png",  # only when the scenario has [geography] (nudgesim.maps)
        "by_region.parquet",  # only when the scenario's wards have regions
        "residents.parquet",  # only when asked (`nudgesim run --residents`)
    }
)

#: Rows per row group of residents.parquet: each group is built from slices of the run's
#: arrays and written before the next, so the file never needs a second copy of the
#: residents in memory (2^20 rows of a few columns: ~10 MB per group; assumption: large
#: enough for fast scans, small enough to stay far below the run's own arrays).
RESIDENT_ROW_GROUP = 1 << 20


def not_a_run_folder(folder: Path) -> str | None:
    """Why `folder` must not be replaced by a run (files.foreign_files), or None."""
    return foreign_files(folder, "summary.json", RUN_FILES, "run")


def check_run_folder(out: str | Path, what: str = "--out") -> Path:
    """Raise the UsageError that `Result.save(out)` would raise (a file, the working folder,
    a folder of other files), before a run is spent; returns `out` made absolute."""
    return check_replaceable(out, not_a_run_folder, what)


@dataclass
class Result:
    """What a run produced. `timeseries` has one row per step (step 0 = initial state),
    `by_ward` one per step and ward; both are DataFrames made on first use from the
    columns the run keeps (`timeseries_columns`, `by_ward_columns`)."""

    LOG_COLUMNS = (
        "step",
        "adopters",
        "new_adopters",
        "lapsed",
        "ever_adopted",
        "ambassadors",
        "contacts",
        "cost_step",
        "impact_step",
    )

    #: keys of `summary` that compare the run with its no-campaign twin (None without one)
    CAMPAIGN_KEYS = (
        "counterfactual_final_adoption", "campaign_extra_adopters", "campaign_extra_impact",
        "cost_per_extra_adopter", "cost_per_extra_impact",
    )

    #: keys of `summary` that need the scenario's wards to have regions (None without)
    REGION_KEYS = ("lowest_region", "lowest_region_adoption")

    #: keys of `summary`, in order: what experiments may name as outcomes
    SUMMARY_KEYS = (
        "scenario", "seed", "residents", "ties", "steps", "initial_adoption", "final_adoption",
        "final_adopters", "adopters_gained", "peak_adoption", "peak_step", "time_to_50pct",
        "ever_adopted", "total_lapses", "total_contacts", "total_cost", "total_impact",
        "impact_unit", "cost_per_adopter_gained", "cost_per_impact", "lowest_ward",
        "lowest_ward_adoption", *REGION_KEYS, *CAMPAIGN_KEYS,
    )

    #: columns the no-campaign twin adds to `timeseries` (and the first two to `by_ward`)
    COUNTERFACTUAL_COLUMNS = ("counterfactual_adopters", "counterfactual_rate",
                              "counterfactual_impact")

    scenario: Scenario
    timeseries_columns: Columns
    by_ward_columns: Columns
    adopted: np.ndarray
    #: the residents' ids in the user's graph or residents CSV, in resident order; None
    #: when the scenario made the residents (their ids are then 0..n-1: see `ids`)
    node_ids: list[Any] | None = None
    nudge_windows: list[dict[str, Any]] = field(default_factory=list)
    n_ties: int = 0
    #: the same scenario run with no nudges on the same world and seed (engine.simulate
    #: with counterfactual=True), or None
    counterfactual: Result | None = field(default=None, repr=False)
    #: each resident's ward (an index into the wards of `by_ward`, in their order), for
    #: residents.parquet (the engine always sets it); None: taken from the scenario's
    #: ward sizes (`resident_wards`), which a residents CSV or graph file cannot give
    ward: np.ndarray | None = field(default=None, repr=False)

    @classmethod
    def from_frames(cls, scenario: Scenario, timeseries: pd.DataFrame, by_ward: pd.DataFrame,
                    **fields: Any) -> Result:
        """A Result from tables already made as DataFrames (the columns are taken from them)."""
        return cls(scenario=scenario, timeseries_columns=frame_columns(timeseries),
                   by_ward_columns=frame_columns(by_ward), **fields)

    @property
    def ids(self) -> Sequence[Any]:
        """Every resident's id, in the order of `adopted`: the graph's nodes or the residents
        CSV's ids when the run read them (`node_ids`), else 0..n-1 as a `range`, which
        costs nothing at national scale (a list of 25 million ints would take ~1 GB)."""
        return self.node_ids if self.node_ids is not None else range(len(self.adopted))

    @ids.setter
    def ids(self, ids: Sequence[Any]) -> None:
        if len(ids) != len(self.adopted):
            raise ValueError(f"ids: {len(ids)} ids for {len(self.adopted)} residents")
        self.node_ids = list(ids)

    @cached_property
    def timeseries(self) -> pd.DataFrame:
        """One row per step: the run's step log (LOG_COLUMNS), adoption_rate, and cumulative
        cost and impact; the twin's `counterfactual_*` columns when it ran. Made once from
        `timeseries_columns`, which the summary and `save` read: edit a copy, not this."""
        import pandas as pd

        return pd.DataFrame(self.timeseries_columns)

    @cached_property
    def by_ward(self) -> pd.DataFrame:
        """One row per step and ward: step, ward, residents, adopters, adoption_rate, and
        the twin's counterfactual_adopters and counterfactual_rate when it ran."""
        import pandas as pd

        return pd.DataFrame(self.by_ward_columns)

    def with_counterfactual(self, twin: Result) -> Result:
        """This run with its no-campaign twin attached: the twin's adopters, rate and
        cumulative impact become `counterfactual_*` columns of `timeseries` (adopters and
        rate also of `by_ward`), so the saved tables carry both runs side by side."""
        ts, theirs = self.timeseries_columns, twin.timeseries_columns
        if len(twin.adopted) != len(self.adopted) or not np.array_equal(theirs["step"],
                                                                         ts["step"]):
            raise ValueError("the counterfactual must have the same residents and steps")
        ts = {**ts, "counterfactual_adopters": theirs["adopters"],
              "counterfactual_rate": theirs["adoption_rate"],
              "counterfactual_impact": theirs["impact"]}
        wards, twin_wards = self.by_ward_columns, twin.by_ward_columns
        wards = {**wards, "counterfactual_adopters": twin_wards["adopters"],
                 "counterfactual_rate": twin_wards["adoption_rate"]}
        return replace(self, timeseries_columns=ts, by_ward_columns=wards, counterfactual=twin)

    @property
    def by_region(self) -> pd.DataFrame | None:
        """Adopters by region and step, summed over each region's wards (None when the
        scenario's wards have no regions): step, region, wards, residents, adopters,
        adoption_rate, and the twin's counterfactual_adopters and counterfactual_rate
        when it ran. Regions in the order they first appear in the ward list."""
        import pandas as pd

        columns = self.by_region_columns()
        return None if columns is None else pd.DataFrame(columns)

    def by_region_columns(self) -> Columns | None:
        """`by_region`'s columns (None when the wards have no regions): by_ward summed
        over each region's wards, rows by step, then region in first-appearance order."""
        regions = self.scenario.population.ward_regions()
        if regions is None:
            return None
        order = list(dict.fromkeys(regions))
        code = {r: i for i, r in enumerate(order)}
        of_ward = {w: code[r] for w, r in zip(self.scenario.population.ward_names(), regions,
                                               strict=True)}
        bw = self.by_ward_columns
        region = np.array([of_ward[w] for w in bw["ward"]], dtype=np.int64)
        steps, step_at = np.unique(bw["step"], return_inverse=True)
        cell = step_at * len(order) + region  # one per (step, region): by step, then region
        size = len(steps) * len(order)
        wards = np.bincount(cell, minlength=size)
        present = np.flatnonzero(wards)  # the (step, region) pairs that have wards

        def summed(name: str) -> np.ndarray:  # by_ward's column summed per (step, region)
            values = np.asarray(bw[name])
            total = np.bincount(cell, weights=values, minlength=size)[present]
            return total.astype(values.dtype) if values.dtype.kind in "iu" else total

        residents, adopters = summed("residents"), summed("adopters")
        people = np.maximum(residents, 1)
        table: Columns = {
            "step": steps[present // len(order)],
            "region": np.array(order, dtype=object)[present % len(order)],
            "wards": wards[present].astype(np.int64),
            "residents": residents,
            "adopters": adopters,
            "adoption_rate": adopters / people,
        }
        if "counterfactual_adopters" in bw:
            twin = summed("counterfactual_adopters")
            table["counterfactual_adopters"] = twin
            table["counterfactual_rate"] = twin / people
        return table

    @property
    def summary(self) -> dict[str, Any]:
        """Headline numbers a planner asks for first."""
        ts = self.timeseries_columns
        rate, step, adopters = ts["adoption_rate"], ts["step"], ts["adopters"]
        n = len(self.adopted)
        reached = np.flatnonzero(rate >= 0.5)
        initial, final = int(adopters[0]), int(adopters[-1])
        extra = final - initial
        total_cost = float(ts["cost"][-1])
        total_impact = float(ts["impact"][-1])
        wards = self.by_ward_columns
        last = np.flatnonzero(wards["step"] == step[-1])
        low = last[np.argmin(wards["adoption_rate"][last])] if len(last) else None
        return {
            "scenario": self.scenario.name,
            "seed": self.scenario.seed,
            "residents": n,
            "ties": self.n_ties,
            "steps": int(step[-1]),
            "initial_adoption": float(rate[0]),
            "final_adoption": float(rate[-1]),
            "final_adopters": final,
            "adopters_gained": extra,
            "peak_adoption": float(rate.max()),
            "peak_step": int(step[int(rate.argmax())]),
            "time_to_50pct": int(step[reached[0]]) if len(reached) else None,
            "ever_adopted": float(ts["ever_adopted"][-1] / max(n, 1)),
            "total_lapses": int(ts["lapsed"].sum()),
            "total_contacts": int(ts["contacts"].sum()),
            "total_cost": total_cost,
            "total_impact": total_impact,
            "impact_unit": self.scenario.impact.unit,
            "cost_per_adopter_gained": total_cost / extra if extra > 0 else None,
            "cost_per_impact": total_cost / total_impact if total_impact > 0 else None,
            "lowest_ward": None if low is None else str(wards["ward"][low]),
            "lowest_ward_adoption": None if low is None else float(wards["adoption_rate"][low]),
            **self._lowest_region(step[-1]),
            **self._campaign_effect(final, total_cost, total_impact),
        }

    def _lowest_region(self, step: int) -> dict[str, Any]:
        """The region with the lowest share taking part at the end (first of equals); None
        for both when the wards have no regions, so every summary has the same keys."""
        regions = self.by_region_columns()
        if regions is None:
            return dict.fromkeys(self.REGION_KEYS)
        last = np.flatnonzero(regions["step"] == step)
        low = last[np.argmin(regions["adoption_rate"][last])]
        return {"lowest_region": str(regions["region"][low]),
                "lowest_region_adoption": float(regions["adoption_rate"][low])}

    def _campaign_effect(self, final: int, total_cost: float,
                         total_impact: float) -> dict[str, Any]:
        """What the campaign added over its no-campaign twin (all None without one). The
        £ per extra unit is None when the campaign added nothing (or lost): no price buys
        a gain that did not happen."""
        ts = self.timeseries_columns
        if "counterfactual_adopters" not in ts:
            return dict.fromkeys(self.CAMPAIGN_KEYS)
        extra = final - int(ts["counterfactual_adopters"][-1])
        extra_impact = total_impact - float(ts["counterfactual_impact"][-1])
        return {
            "counterfactual_final_adoption": float(ts["counterfactual_rate"][-1]),
            "campaign_extra_adopters": extra,
            "campaign_extra_impact": extra_impact,
            "cost_per_extra_adopter": total_cost / extra if extra > 0 else None,
            "cost_per_extra_impact": total_cost / extra_impact if extra_impact > 0 else None,
        }

    def save(self, out_dir: str | Path, plot: bool = True, residents: bool = False) -> Path:
        """Write tables, summary, the scenario as run and (optionally) the plot, plus the
        ward maps (map.png) when the scenario has a `[geography]` table, by_region.parquet
        when its wards have regions, and residents.parquet only when `residents` is asked
        (write_residents: one row per resident, in row groups).

        The folder is written whole under a temporary name and swapped in
        (files.replace_folder): it always holds exactly one complete run, so a rerun
        without the plot leaves no old plot behind, and a kill at any moment leaves the
        old run or the new one. A folder holding anything but a run is refused
        (UsageError), never emptied.
        """
        out = Path(out_dir)
        # the plot first: a drawing helper (plots.start_worker) draws while the tables
        # are written; entered first, so a refused or failed save still stops the helper
        pending = None
        if plot:
            from .plots import start_plot

            pending = start_plot(self)
        with pending or nullcontext(), replace_folder(out, refuse=not_a_run_folder) as tmp:
            write_parquet_atomic(self.timeseries_columns, tmp / "timeseries.parquet")
            write_csv_atomic(self.timeseries_columns, tmp / "timeseries.csv")
            write_parquet_atomic(self.by_ward_columns, tmp / "by_ward.parquet")
            regions = self.by_region_columns()
            if regions is not None:
                write_parquet_atomic(regions, tmp / "by_region.parquet")
            if residents:
                self.write_residents(tmp / "residents.parquet")
            summary = json.dumps(_jsonable(self.summary), indent=2) + "\n"
            write_atomic(tmp / "summary.json", summary)
            write_atomic(tmp / "scenario.toml", self.scenario.to_toml_as_run())
            if pending is not None:
                pending.write(tmp / "adoption.png")
                if getattr(self.scenario, "geography", None) is not None:
                    from .maps import run_map  # geopandas only for a scenario with a map

                    run_map(self.scenario, self.by_ward, tmp / "map.png")
        return out

    def write_residents(self, path: str | Path, row_group: int = RESIDENT_ROW_GROUP) -> Path:
        """residents.parquet: resident (the id, else 0..n-1), ward, region (when the wards
        have regions), adopted at the end and, with the twin, counterfactual_adopted.

        Written like files.write_atomic (a temporary file beside `path`, renamed when
        complete) in row groups of `row_group` rows, each built from slices of the run's
        arrays and written before the next: ward and region are dictionary columns (an
        index per resident into the names), so no per-resident strings and no second full
        copy of any column is ever made."""
        import pyarrow as pa
        import pyarrow.parquet as pq

        from .files import atomic_path

        if row_group < 1:
            raise ValueError(f"row_group: {row_group}; allowed: a whole number >= 1")
        path = Path(path)
        n = len(self.adopted)
        ward = self.ward
        if ward is None:
            if self.node_ids is not None:  # residents from a graph or a CSV with ids
                raise UsageError("residents.parquet: this run's residents came from a file, and "
                                 "its Result does not carry their wards (Result.ward); "
                                 "allowed: a scenario whose wards place the residents")
            ward = resident_wards(self.scenario, n)
        if len(ward) != n:
            raise ValueError(f"ward: {len(ward)} residents' wards for {n} residents")
        n_wards = len(self.by_ward_columns["ward"]) // max(len(self.timeseries_columns["step"]), 1)
        names = pa.array([str(w) for w in self.by_ward_columns["ward"][:n_wards]], pa.string())
        regions = self.scenario.population.ward_regions()
        region_of = region_names = None
        if regions is not None:
            order = list(dict.fromkeys(regions))
            code = {r: i for i, r in enumerate(order)}
            region_of = np.array([code[r] for r in regions], dtype=np.int32)
            region_names = pa.array(order, pa.string())
        ids = self.node_ids
        id_type = (pa.int64() if ids is None or all(isinstance(v, (int, np.integer))
                                                  for v in ids) else pa.string())
        twin = self.counterfactual.adopted if self.counterfactual is not None else None
        fields = [pa.field("resident", id_type),
                  pa.field("ward", pa.dictionary(pa.int32(), pa.string()))]
        if region_names is not None:
            fields.append(pa.field("region", pa.dictionary(pa.int32(), pa.string())))
        fields.append(pa.field("adopted", pa.bool_()))
        if twin is not None:
            fields.append(pa.field("counterfactual_adopted", pa.bool_()))
        schema = pa.schema(fields)

        def group(lo: int, hi: int) -> pa.RecordBatch:
            w = np.asarray(ward[lo:hi], dtype=np.int32)
            if ids is None:
                rid = pa.array(np.arange(lo, hi, dtype=np.int64))
            else:
                rid = pa.array([v if id_type == pa.int64() else str(v) for v in ids[lo:hi]],
                               id_type)
            cols = [rid, pa.DictionaryArray.from_arrays(pa.array(w), names)]
            if region_of is not None:
                cols.append(pa.DictionaryArray.from_arrays(pa.array(region_of[w]),
                                                           region_names))
            cols.append(pa.array(np.asarray(self.adopted[lo:hi], dtype=bool)))
            if twin is not None:
                cols.append(pa.array(np.asarray(twin[lo:hi], dtype=bool)))
            return pa.RecordBatch.from_arrays(cols, schema=schema)

        with atomic_path(path) as tmp, pq.ParquetWriter(tmp, schema) as writer:
            for lo in range(0, n, row_group):
                writer.write_batch(group(lo, min(n, lo + row_group)), row_group_size=row_group)
        return path


def resident_wards(scenario: Scenario, n: int) -> np.ndarray:
    """Each resident's ward when the scenario itself places them (ward sizes or a size,
    in contiguous blocks: population.ward_blocks), for a Result that does not carry its
    residents' wards. A residents CSV or a graph file places them itself: refused."""
    from .network import GraphFile
    from .population import ward_blocks

    if scenario.population.csv is not None or isinstance(scenario.network, GraphFile):
        raise UsageError("residents.parquet: this run's residents came from a file, and its "
                         "Result does not carry their wards (Result.ward); allowed: a "
                         "scenario whose wards place the residents")
    return ward_blocks(scenario.population, n)


def _jsonable(d: dict[str, Any]) -> dict[str, Any]:
    return {k: (None if isinstance(v, float) and not math.isfinite(v) else v) for k, v in d.items()}
