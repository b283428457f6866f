"""One run pipeline for experiments, sensitivity and planning.

Everything that turns a scenario into many seeded runs goes through here, so the rules
that make results comparable exist once:

* **One job type.** A :class:`Job` is a scenario as plain data (its replicate seed
  included), the folder its relative file names are read from, and a *measure*: the
  top-level function that runs the scenario and reduces it to what the caller needs
  (:func:`summary` by default). Jobs pickle, so every executor can run them.
* **One seed rule.** Replicate r of every design point or variant runs with
  :func:`replicate_seed` (child r of the base seed's ``SeedSequence``): common random
  numbers, so differences between points are not blurred by independent noise.
* **One path grammar.** :func:`set_path` writes ``nudges[leaflet].reach``,
  ``nudges[2].reach`` or ``nudges.2.reach`` into a scenario dict.
* **One executor entry.** :func:`iter_jobs` / :func:`run_jobs` over
  :func:`nudgesim.parallel.imap_unordered` with one :class:`~nudgesim.parallel.RunOptions`.
* **Files travel with the jobs.** For a Dask scheduler (possibly other machines, with no
  disk in common) the files a scenario names are read here once (:func:`pack_jobs`), sent
  to the cluster once, and written by each worker into its own folder, where the run reads
  them. A ward table needs nothing: it is part of the scenario once validated.

:func:`run_job` never raises: a failed run is recorded with its error, so one bad run
cannot stop a sweep; callers that must stop (planning) call :func:`raise_first_error`.
"""

from __future__ import annotations

import copy
import hashlib
import importlib
import json
import os
import shutil
import tempfile
import time
import traceback
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from dataclasses import replace as dataclass_replace
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from .errors import ResourceError, ScenarioError, UserError
from .parallel import RunOptions, imap_unordered
from .spec import parse_path

if TYPE_CHECKING:
    from .scenario import Scenario

# ---------------------------------------------------------------------------------------
# Seeds and run ids
# ---------------------------------------------------------------------------------------


def replicate_seed(seed: int, replicate: int) -> int:
    """Seed of replicate r: child r of the base seed's SeedSequence, the same at every
    design point and for every variant (common random numbers)."""
    ss = np.random.SeedSequence(int(seed), spawn_key=(int(replicate),))
    return int(ss.generate_state(1, np.uint64)[0] >> np.uint64(1))  # < 2**63 fits TOML ints


def replicate_seeds(seed: int, replicates: int) -> list[int]:
    """Seeds of replicates 0..replicates-1 (see :func:`replicate_seed`)."""
    return [replicate_seed(seed, r) for r in range(int(replicates))]


def run_id(scenario: dict[str, Any], extra: dict[str, Any]) -> str:
    """Stable id of a run: hash of the fully resolved scenario (seed included) and outputs."""
    text = json.dumps(
        {"scenario": scenario, **extra}, sort_keys=True, separators=(",", ":"), default=str
    )
    return hashlib.sha256(text.encode("utf-8")).hexdigest()[:20]


# ---------------------------------------------------------------------------------------
# Paths into a scenario: "nudges[peer ambassadors].targeting.count", "nudges.2.reach"
# ---------------------------------------------------------------------------------------

def _list_item(items: list, sel: str | int, where: str) -> int:
    """Index of the list item a selector names."""
    if isinstance(sel, int):
        if not 0 <= sel < len(items):
            raise ScenarioError(
                f"{where}: index [{sel}] is out of range; the list has {len(items)} items"
            )
        return sel
    for key in ("label", "name"):
        hits = [i for i, it in enumerate(items) if isinstance(it, dict) and it.get(key) == sel]
        if len(hits) == 1:
            return hits[0]
    hits = [i for i, it in enumerate(items) if isinstance(it, dict) and it.get("kind") == sel]
    if len(hits) == 1:
        return hits[0]
    names = [
        it.get("label") or it.get("name") or it.get("kind") for it in items if isinstance(it, dict)
    ]
    what = "several items have" if len(hits) > 1 else "no item has"
    raise ScenarioError(f"{where}: {what} label/name/kind {sel!r}; allowed: {names}")


def set_path(
    data: dict[str, Any],
    path: str,
    value: Any,
    *,
    create_missing: bool = True,
    what: str = "factor path",
) -> None:
    """Set a copy of ``value`` at ``path`` inside a scenario dict, in place.

    create_missing: make missing tables on the way (an experiment may set a field the
    base scenario leaves at its default); False: every part before the last must exist
    (calibration and menus, where a missing part is a typo). `what` starts the messages.
    """
    parts = parse_path(path, what)
    where = f"{what} {path!r}"
    node: Any = data
    for i, (kind, part) in enumerate(parts):
        last = i == len(parts) - 1
        if kind == "key" and isinstance(node, list) and isinstance(part, str) and part.isdigit():
            kind, part = "item", int(part)  # nudges.2 is nudges[2]
        if kind == "key":
            if not isinstance(node, dict):
                raise ScenarioError(f"{where}: {part!r} is not a table here")
            if last:
                node[part] = copy.deepcopy(value)
                return
            if node.get(part) is None:
                if not create_missing:
                    so_far = _shown(parts[: i + 1])
                    raise ScenarioError(
                        f"{where}: has no part {so_far!r}; allowed here: "
                        f"{sorted(map(str, node)) or 'nothing'}"
                    )
                node[part] = [] if parts[i + 1][0] == "item" else {}
            node = node[part]
        else:
            if not isinstance(node, list):
                raise ScenarioError(f"{where}: [{part}] selects from a list, but this is not one")
            j = _list_item(node, part, where)
            if last:
                node[j] = copy.deepcopy(value)
                return
            node = node[j]


def _shown(parts: Sequence[tuple[str, str | int]]) -> str:
    out = ""
    for kind, part in parts:
        out += f"[{part}]" if kind == "item" else (f".{part}" if out else str(part))
    return out


# ---------------------------------------------------------------------------------------
# Jobs and measures
# ---------------------------------------------------------------------------------------


def summary(scenario: Scenario, options: Mapping[str, Any]) -> dict[str, Any]:
    """The default measure: ``Result.summary``, plus what the options ask for.

    options: ``per_step`` (timeseries columns, with ``step``), ``wards`` (final adoption
    per ward), ``measure`` (a picklable function of the Result whose dict joins the
    summary: an experiment's user outcomes), ``counterfactual`` (also run the no-campaign
    twin, for the ``campaign_extra_*`` outcomes; without it they are left out rather than
    reported as empty columns).
    """
    from .engine import simulate
    from .result import Result

    twin = bool(options.get("counterfactual"))
    res = simulate(scenario, counterfactual=twin)
    out = dict(res.summary)
    if not twin:
        for key in Result.CAMPAIGN_KEYS:
            out.pop(key, None)
    if options.get("measure") is not None:
        out.update(options["measure"](res))
    ts = res.timeseries_columns  # columns, not DataFrames: a sweep's runs need no pandas
    steps = {c: ts[c].tolist() for c in options.get("per_step", ())}
    if steps:
        steps["step"] = ts["step"].tolist()
    value: dict[str, Any] = {"summary": out, "steps": steps}
    if options.get("wards"):
        wards = res.by_ward_columns
        last = wards["step"] == ts["step"][-1]
        value["curve"] = ts["adoption_rate"].copy()
        value["wards"] = [str(w) for w in wards["ward"][last]]
        value["ward_rates"] = wards["adoption_rate"][last]
    return value


def rates_at(scenario: Scenario, options: Mapping[str, Any]) -> np.ndarray:
    """Adoption rate at the steps ``options["steps"]`` (calibration's measure)."""
    from .engine import Engine

    engine = Engine(scenario)
    rates = [engine.adoption_rate()]
    while engine.t < engine.steps:
        engine.step()
        rates.append(engine.adoption_rate())
    return np.asarray(rates)[np.asarray(options["steps"], dtype=np.int64)]


Measure = Callable[["Scenario", Mapping[str, Any]], Any]


@dataclass(frozen=True)
class Job:
    """One run: the scenario as plain data (seed included), where its files are, and the
    measure that reduces it. `measure` must be a top-level function (it is pickled by
    name); `options` are the measure's. `run_id` names the run in a store ("" if none).
    `files`: (table, key, digest, name) of each file the scenario names, once packed
    (:func:`pack_jobs`): the run then reads the packed copy, not `base_dir`."""

    scenario: dict[str, Any]
    base_dir: str
    measure: Measure = summary
    options: Mapping[str, Any] = field(default_factory=dict)
    run_id: str = ""
    files: tuple[tuple[str, str, str, str], ...] = ()

    @classmethod
    def of(cls, scenario: Scenario, seed: int, measure: Measure = summary, **options: Any) -> Job:
        """The job of `scenario` run with `seed` (its own seed is replaced)."""
        return cls(
            scenario=scenario.to_dict() | {"seed": int(seed)},
            base_dir=str(scenario.base_dir),
            measure=measure,
            options=options,
        )

    def build(self, files: Mapping[str, Sequence[tuple[str, bytes]]] | None = None) -> Scenario:
        """The scenario; with `files` (packed jobs), the files it names are this process's
        copies of them (:func:`unpack_files`)."""
        from .scenario import Scenario

        data = self.scenario
        if self.files:
            data = copy.deepcopy(data)
            for (table, key, _, _), path in zip(self.files, unpack_files(self.files, files),
                                                strict=True):
                data[table][key] = str(path)
        return Scenario.from_dict(data, Path(self.base_dir))


# ---------------------------------------------------------------------------------------
# Files for machines without this one's disk
# ---------------------------------------------------------------------------------------

Bundle = tuple[tuple[str, bytes], ...]  # (file name, content) of a file and its sidecars
FILES_FOLDER = "nudgesim-files"


def _bundle(path: Path) -> Bundle:
    """The file at `path`, and for a shapefile the files beside it with the same stem
    (.shx, .dbf, .prj, .cpg: GDAL reads them with it)."""
    paths = [path]
    if path.suffix.lower() == ".shp":
        paths += sorted(q for q in path.parent.iterdir()
                        if q.stem == path.stem and q != path and q.is_file())
    return tuple((q.name, q.read_bytes()) for q in paths)


def _digest(bundle: Bundle) -> str:
    h = hashlib.sha256()
    for name, data in bundle:
        h.update(name.encode("utf-8") + b"\0" + len(data).to_bytes(8, "little") + data)
    return h.hexdigest()[:32]


def pack_jobs(jobs: Sequence[Job]) -> tuple[list[Job], dict[str, Bundle]]:
    """Jobs that carry what their files are, and the files' contents by digest: read here,
    once per file however many jobs name it, for workers that cannot see this disk. A
    file that cannot be read is a ScenarioError naming the field and the file."""
    from .scenario import Scenario

    bundles: dict[str, Bundle] = {}
    by_path: dict[Path, tuple[str, str]] = {}
    out = []
    for job in jobs:
        if job.files:
            out.append(job)
            continue
        base = Path(job.base_dir)
        files = []
        for table, key in Scenario.FILE_FIELDS:
            value = (job.scenario.get(table) or {}).get(key)
            if not isinstance(value, str):
                continue
            path = Path(value).expanduser()
            path = (path if path.is_absolute() else base / path).resolve()
            if path not in by_path:
                try:
                    bundle = _bundle(path)
                except OSError as err:
                    raise ScenarioError(
                        f"{table}.{key}: cannot read {value!r} ({path}) to send it to the "
                        f"cluster: {err.strerror or err}; allowed: a readable file, relative "
                        "to the scenario file"
                    ) from None
                digest = _digest(bundle)
                bundles[digest] = bundle
                by_path[path] = (digest, path.name)
            digest, name = by_path[path]
            files.append((table, key, digest, name))
        out.append(dataclass_replace(job, files=tuple(files)))
    return out, bundles


def unpack_files(
    files: Sequence[tuple[str, str, str, str]],
    bundles: Mapping[str, Sequence[tuple[str, bytes]]] | None,
) -> list[Path]:
    """Where this process holds each packed file: <folder>/nudgesim-files/<digest>/<name>,
    written once per digest (into a temporary folder, then renamed: workers sharing a
    disk never read half a file). The folder is the Dask worker's own (removed with it),
    else the system's temporary folder."""
    root = _files_root() / FILES_FOLDER
    out = []
    for _, _, digest, name in files:
        folder = root / digest
        if not (folder / name).is_file():
            if bundles is None or digest not in bundles:
                raise ResourceError(f"{name}: this job's file was not sent with it; "
                                    "run packed jobs with their files (runs.iter_jobs)")
            root.mkdir(parents=True, exist_ok=True)
            tmp = Path(tempfile.mkdtemp(prefix=f".{digest}.", dir=root))
            try:
                for fname, data in bundles[digest]:
                    (tmp / fname).write_bytes(data)
                os.rename(tmp, folder)
            except OSError:
                if not (folder / name).is_file():  # not another worker's copy: a real error
                    shutil.rmtree(tmp, ignore_errors=True)
                    raise
            shutil.rmtree(tmp, ignore_errors=True)
        out.append(folder / name)
    return out


def _files_root() -> Path:
    try:
        from distributed import get_worker

        return Path(get_worker().local_directory)
    except (ImportError, ValueError):  # not inside a Dask worker
        return Path(tempfile.gettempdir())


def run_job(job: Job, shared: Mapping[str, Bundle] | None = None) -> dict[str, Any]:
    """Run one job; never raises (Exception), so one bad run cannot stop a sweep.

    shared: the packed files' contents by digest (:func:`pack_jobs`), for packed jobs.
    Returns {run_id, status ("ok" or "error"), error (one line), error_type,
    error_message, traceback, value (the measure's result, None on error), elapsed_s}.
    """
    # a process that runs jobs runs many: scipy's faster products repay their import
    # (see Engine.product), and its elapsed_s should not hold the import either
    import scipy.sparse  # noqa: F401

    t0 = time.perf_counter()
    try:
        value = job.measure(job.build(shared), job.options)
        return {
            "run_id": job.run_id,
            "status": "ok",
            "error": "",
            "error_type": "",
            "error_message": "",
            "traceback": "",
            "value": value,
            "elapsed_s": time.perf_counter() - t0,
        }
    except Exception as err:  # recorded with the run, the sweep goes on
        return {
            "run_id": job.run_id,
            "status": "error",
            "error": traceback.format_exception_only(type(err), err)[-1].strip(),
            "error_type": f"{type(err).__module__}:{type(err).__qualname__}",
            "error_message": str(err),
            "traceback": traceback.format_exc(),
            "value": None,
            "elapsed_s": time.perf_counter() - t0,
        }


class RunError(RuntimeError):
    """A run failed for a reason that is not the user's (a bug): its traceback follows."""


def raise_first_error(outcomes: Iterable[Mapping[str, Any]]) -> None:
    """Raise the first failed run's error: a user error as itself (one line at the command
    line), anything else as :class:`RunError` carrying the run's traceback."""
    for out in outcomes:
        if out["status"] == "ok":
            continue
        module, _, name = out["error_type"].partition(":")
        try:
            cls = getattr(importlib.import_module(module), name)
        except (ImportError, AttributeError):
            cls = None
        if isinstance(cls, type) and issubclass(cls, UserError):
            raise cls(out["error_message"])
        raise RunError(f"a run failed: {out['error']}\n{out['traceback']}")


def lost_job(job: Job, message: str) -> dict[str, Any]:
    """The error record of a job whose Dask workers died running it (run_job's form; its
    time is not known here, so 0)."""
    return {
        "run_id": job.run_id,
        "status": "error",
        "error": f"ResourceError: {message}",
        "error_type": f"{ResourceError.__module__}:{ResourceError.__qualname__}",
        "error_message": message,
        "traceback": "",
        "value": None,
        "elapsed_s": 0.0,
    }


def iter_jobs(
    jobs: Sequence[Job], options: RunOptions | None = None
) -> Iterator[tuple[int, dict[str, Any]]]:
    """(index, run_job(job)) as runs finish, on the executor `options` names. For a Dask
    scheduler the jobs' files are packed and sent along (the workers may not share this
    disk), and a job whose workers died running it comes back as an error record."""
    options = options or RunOptions()
    if options.scheduler is None:
        yield from imap_unordered(run_job, jobs, options, on_lost=lost_job)
        return
    packed, bundles = pack_jobs(jobs)
    yield from imap_unordered(run_job, packed, options, shared=bundles or None,
                              on_lost=lost_job)


def run_jobs(jobs: Sequence[Job], options: RunOptions | None = None) -> list[dict[str, Any]]:
    """run_job over `jobs`, results in the order of `jobs`."""
    out: list[dict[str, Any]] = [{}] * len(jobs)
    for i, res in iter_jobs(jobs, options):
        out[i] = res
    return out


def values(jobs: Sequence[Job], options: RunOptions | None = None) -> list[Any]:
    """The measures' values in the order of `jobs`; the first failed run raises."""
    outs = run_jobs(jobs, options)
    raise_first_error(outs)
    return [o["value"] for o in outs]
