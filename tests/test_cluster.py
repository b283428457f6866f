"""Sweeps on a Dask cluster started as separate processes: `dask scheduler` and two
`dask worker` processes on free loopback ports, as one would start them on other machines.

The scenario's files (a ward table and a residents CSV, both relative to the scenario) live
in a temporary folder; results must equal the local executor's bit for bit; a job that
kills its worker (memory limit) is an error row and the sweep ends; the command leaves no
process behind.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import signal
import socket
import subprocess
import sys
import time
import uuid
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from nudgesim.errors import ScenarioError
from nudgesim.experiment import Experiment
from nudgesim.parallel import RunOptions, imap_unordered
from nudgesim.runs import FILES_FOLDER, Job, pack_jobs, run_job, unpack_files
from nudgesim.scenario import Scenario

BIN = Path(sys.executable).parent
TESTS = Path(__file__).resolve().parent
WORKER_MEMORY = 1_000_000_000  # bytes; the hog below passes it, a 300-household run does not
HOG_REACH = 0.8  # the design point whose runs allocate past the workers' memory limit

WARDS = "name,households,baseline\nNorth,100,0.2\nSouth,120,0.3\nEast,80,0.25\n"
SCENARIO = """name = "tiny"
seed = 3
steps = 8
[population]
wards = "data/wards.csv"
csv = "data/residents.csv"
[network]
kind = "ward_clustered"
mean_degree_in = 4.0
mean_degree_out = 1.0
[rule]
kind = "logistic"
[[nudges]]
kind = "information"
label = "leaflet"
start = 1
reach = 0.5
"""
EXPERIMENT = """name = "tiny-sweep"
scenario = "town.toml"
replicates = 2
[levers]
"nudges[leaflet].reach" = [0.3, 0.8]
"""


def write_town(folder: Path) -> Path:
    """A scenario whose ward table and residents CSV sit in data/ beside it."""
    (folder / "data").mkdir(parents=True)
    (folder / "data" / "wards.csv").write_text(WARDS)
    rng = np.random.default_rng(2)
    pd.DataFrame({"attitude": rng.normal(size=300).round(3),
                  "habit": rng.random(300).round(3)}).to_csv(folder / "data" / "residents.csv",
                                                            index=False)
    (folder / "town.toml").write_text(SCENARIO)
    (folder / "sweep.toml").write_text(EXPERIMENT)
    return folder / "sweep.toml"


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def stop(proc: subprocess.Popen) -> None:
    """End a process started in its own session, and every process in that session."""
    with contextlib.suppress(ProcessLookupError):
        os.killpg(proc.pid, signal.SIGTERM)
    try:
        proc.wait(5)
    except subprocess.TimeoutExpired:
        pass
    with contextlib.suppress(ProcessLookupError):
        os.killpg(proc.pid, signal.SIGKILL)
    proc.wait(5)


@pytest.fixture(scope="module")
def cluster(tmp_path_factory):
    """tcp://127.0.0.1:<port> of a scheduler with two single-threaded workers, each its own
    `dask worker` process (with a nanny) limited to WORKER_MEMORY. The scheduler gives up
    on a task after its second worker dies (allowed-failures 1; Dask's default is 3)."""
    from dask.distributed import Client

    root = tmp_path_factory.mktemp("cluster")
    port = free_port()
    address = f"tcp://127.0.0.1:{port}"
    env = os.environ | {"DASK_DISTRIBUTED__SCHEDULER__ALLOWED_FAILURES": "1",
                        "PYTHONPATH": os.pathsep.join([str(TESTS),
                                                       os.environ.get("PYTHONPATH", "")])}
    procs: list[subprocess.Popen] = []

    def start(name: str, *args: str) -> None:
        procs.append(subprocess.Popen([str(BIN / "dask"), *args, "--no-dashboard"],
                                      stdout=(root / f"{name}.log").open("wb"),
                                      stderr=subprocess.STDOUT, env=env,
                                      start_new_session=True))
    try:
        start("scheduler", "scheduler", "--host", "127.0.0.1", "--port", str(port))
        for k in range(2):
            start(f"worker{k}", "worker", address, "--nworkers", "1", "--nthreads", "1",
                  "--memory-limit", str(WORKER_MEMORY), "--host", "127.0.0.1",
                  "--local-directory", str(root / f"worker{k}"))
        with Client(address, timeout=30, set_as_default=False) as client:
            client.wait_for_workers(2, timeout=40)
        yield address
    finally:
        for proc in reversed(procs):
            stop(proc)


def runs_table(res) -> pd.DataFrame:
    return res.runs.drop(columns=["run_id"])


pytestmark = pytest.mark.filterwarnings("ignore:population.*overrides it:UserWarning")


def test_a_sweep_on_the_cluster_equals_the_local_one_bit_for_bit(cluster, tmp_path):
    sweep = write_town(tmp_path / "town")
    local = Experiment.from_toml(sweep).run(out=tmp_path / "local", executor="serial",
                                            progress=False)
    remote = Experiment.from_toml(sweep).run(out=tmp_path / "remote", scheduler=cluster,
                                             progress=False)
    assert len(remote.runs) == 4 and (remote.runs["status"] == "ok").all()
    assert remote.runs["final_adoption"].nunique() > 1  # the points and seeds differ
    pd.testing.assert_frame_equal(runs_table(remote), runs_table(local), check_exact=True)
    pd.testing.assert_frame_equal(remote.summary, local.summary, check_exact=True)
    assert remote.manifest["timings"]["scheduler"] == cluster


def test_the_workers_read_the_files_that_were_sent_not_this_disk(cluster, tmp_path):
    """The files are read here (pack_jobs), then moved away: the runs still read them."""
    sweep = write_town(tmp_path / "town")
    sc = Experiment.from_toml(sweep).scenario
    jobs = [Job.of(sc, seed) for seed in (1, 2)]
    expected = [run_job(j)["value"]["summary"] for j in jobs]
    packed, bundles = pack_jobs(jobs)
    assert [f[:2] for f in packed[0].files] == [("population", "csv")]
    assert len(bundles) == 1  # one file, read once for both jobs
    shutil.move(tmp_path / "town", tmp_path / "gone")
    out = dict(imap_unordered(run_job, packed, RunOptions(scheduler=cluster), shared=bundles))
    assert [out[i]["status"] for i in (0, 1)] == ["ok", "ok"], out[0]["error"]
    assert [out[i]["value"]["summary"] for i in (0, 1)] == expected


def hog(result) -> dict[str, float]:
    """An experiment measure that, at the HOG_REACH design point, takes memory 64 MB at a
    time until its worker's nanny kills it (at 95% of the limit); elsewhere it adds nothing."""
    if result.scenario.nudges[0].reach != HOG_REACH:
        return {}
    blocks = []
    for _ in range(4 * WORKER_MEMORY // 64_000_000):
        blocks.append(np.ones(8_000_000))
        time.sleep(0.01)
    return {}


def test_a_run_that_kills_its_workers_is_an_error_row_and_the_sweep_ends(cluster, tmp_path):
    sc = Scenario.from_toml(write_town(tmp_path / "town").with_name("town.toml"))
    exp = Experiment(sc, levers={"nudges[leaflet].reach": [0.3, HOG_REACH]}, measure=hog,
                     name="hog")
    t0 = time.monotonic()
    res = exp.run(out=tmp_path / "hog", scheduler=cluster, progress=False, dask_timeout=20)
    assert time.monotonic() - t0 < 40
    reach = res.runs["nudges[leaflet].reach"]
    assert dict(zip(reach, res.runs["status"], strict=True)) == {0.3: "ok", HOG_REACH: "error"}
    error = res.runs.loc[reach == HOG_REACH, "error"].iloc[0]
    assert error.startswith("ResourceError: dask: the worker running this job died 2 times at "
                            f"{cluster} (killed at its --memory-limit")
    assert res.manifest["runs"]["errors"] == 1


def test_the_sweep_command_leaves_no_process_behind(cluster, tmp_path):
    sweep = write_town(tmp_path / "town")
    marker = uuid.uuid4().hex
    done = subprocess.run(
        [str(BIN / "nudgesim"), "sweep", str(sweep), "--scheduler", cluster, "--out",
         str(tmp_path / "out"), "--no-progress"],
        env=os.environ | {"NUDGESIM_TEST_MARKER": marker}, capture_output=True, text=True,
        timeout=60)
    assert done.returncode == 0, done.stderr
    assert "4 runs (4 computed now, 0 reused, 0 errors)" in done.stdout
    left = []
    for environ in Path("/proc").glob("[0-9]*/environ"):
        with contextlib.suppress(OSError):
            if marker.encode() in environ.read_bytes():
                left.append(environ.parent.name)
    assert left == []


def test_an_unreadable_file_is_named_before_anything_runs(tmp_path):
    sweep = write_town(tmp_path / "town")
    jobs = [Job.of(Experiment.from_toml(sweep).scenario, 1)]
    (tmp_path / "town" / "data" / "residents.csv").unlink()
    with pytest.raises(ScenarioError, match=r"^population\.csv: cannot read 'data/residents\.csv'"
                       r" \(.*residents\.csv\) to send it to the cluster"):
        pack_jobs(jobs)


def test_a_packed_file_is_written_once_and_a_shapefile_travels_with_its_sidecars(
    tmp_path, monkeypatch
):
    monkeypatch.setattr("tempfile.tempdir", str(tmp_path / "tmp"))
    (tmp_path / "tmp").mkdir()
    geo = tmp_path / "geo"
    geo.mkdir()
    for suffix in (".shp", ".shx", ".dbf", ".prj"):
        (geo / f"wards{suffix}").write_bytes(suffix.encode() * 3)
    (geo / "other.dbf").write_bytes(b"not this one")
    job = Job(scenario={"geography": {"boundaries": "geo/wards.shp"}}, base_dir=str(tmp_path))
    (packed,), bundles = pack_jobs([job])
    (digest,) = bundles
    assert [name for name, _ in bundles[digest]] == ["wards.shp", "wards.dbf", "wards.prj",
                                                     "wards.shx"]
    (path,) = unpack_files(packed.files, bundles)
    assert path == tmp_path / "tmp" / FILES_FOLDER / digest / "wards.shp"
    assert sorted(p.name for p in path.parent.iterdir()) == ["wards.dbf", "wards.prj",
                                                             "wards.shp", "wards.shx"]
    assert path.with_suffix(".dbf").read_bytes() == b".dbf" * 3
    assert unpack_files(packed.files, None) == [path]  # already here: nothing to send
    shutil.rmtree(path.parent)
    with pytest.raises(Exception, match="was not sent with it"):
        unpack_files(packed.files, None)


def test_the_dask_commands_in_the_docs_are_the_ones_started_here():
    """docs/cluster.md's `dask scheduler` / `dask worker` lines use only options their
    --help lists, and the worker line the options the cluster fixture starts workers with."""
    import re
    import shlex

    text = (TESTS.parent / "docs" / "cluster.md").read_text()
    bash = re.findall(r"^```bash\n(.*?)^```", text, re.MULTILINE | re.DOTALL)
    lines = [re.sub(r"\\\n\s*", " ", block).strip() for block in bash]
    commands = [shlex.split(line) for line in lines if " dask " in f" {line}"]
    commands = [words[words.index("dask"):] for words in commands]
    assert sorted(c[1] for c in commands) == ["scheduler", "worker"]
    for words in commands:
        helped = subprocess.run([str(BIN / "dask"), words[1], "--help"], capture_output=True,
                                text=True, timeout=30).stdout
        for opt in (w for w in words if w.startswith("--")):
            assert re.search(rf"(?<![\w-]){re.escape(opt)}(?![\w-])", helped), opt
    worker = next(c for c in commands if c[1] == "worker")
    assert {"--nworkers", "--nthreads", "--memory-limit"} <= set(worker)
    assert worker[worker.index("--nthreads") + 1] == "1"
