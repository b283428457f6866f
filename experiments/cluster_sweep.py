"""A sweep of national runs on a Dask cluster started as separate processes; measures memory.

Starts `dask scheduler` and one `dask worker --nworkers 1 --nthreads 1 --memory-limit M`
on free loopback ports (as one would on several machines), writes a national scenario of
N households (nudgesim.bench.national_scenario, the borough's campaign scaled up) and an
experiment of R replicates into --out, runs `nudgesim sweep --scheduler tcp://...` and
samples the worker process's resident memory every 0.1 s. Prints (and writes
cluster_sweep.json) the worker's peak RSS (and VmHWM), the wall time of each run and of the
sweep. Every process it starts is ended when it ends, however it ends.

    flock /tmp/nudgesim-heavy.lock .venv/bin/python experiments/cluster_sweep.py \\
        --households 1e7 --steps 20 --replicates 2 --memory-limit 8GB
"""

from __future__ import annotations

import argparse
import json
import os
import signal
import socket
import subprocess
import sys
import threading
import time
from pathlib import Path

import psutil

BIN = Path(sys.executable).parent


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def start(cmd: list[str], log: Path) -> subprocess.Popen:
    """A process in its own session, so that stopping it stops its children (the nanny's
    worker) too."""
    return subprocess.Popen(cmd, stdout=log.open("wb"), stderr=subprocess.STDOUT,
                            start_new_session=True)


def stop(proc: subprocess.Popen) -> None:
    if proc.poll() is None:
        try:
            os.killpg(proc.pid, signal.SIGTERM)
            proc.wait(10)
        except (ProcessLookupError, subprocess.TimeoutExpired):
            pass
    try:
        os.killpg(proc.pid, signal.SIGKILL)
    except ProcessLookupError:
        pass
    proc.wait()


def vm_hwm(pid: int) -> int:
    """Peak resident memory (VmHWM) of a live process in bytes; 0 when unreadable."""
    try:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) * 1024
    except OSError:
        pass
    return 0


class Sampler(threading.Thread):
    """Peak RSS (and VmHWM) of the worker processes under a `dask worker` (its nanny's
    children), sampled every 0.1 s."""

    def __init__(self, nanny: subprocess.Popen):
        super().__init__(daemon=True)
        self.nanny = psutil.Process(nanny.pid)
        self.peak_rss = 0
        self.peak_hwm = 0
        self.trace: list[tuple[float, int]] = []  # (seconds since start, RSS of the workers)
        self.done = threading.Event()

    def run(self) -> None:
        t0 = time.perf_counter()
        while not self.done.is_set():
            try:
                kids = self.nanny.children(recursive=True)
            except psutil.NoSuchProcess:
                return
            rss = 0
            for p in kids:
                try:
                    rss += p.memory_info().rss
                except psutil.NoSuchProcess:
                    continue
                self.peak_hwm = max(self.peak_hwm, vm_hwm(p.pid))
            self.peak_rss = max(self.peak_rss, rss)
            self.trace.append((round(time.perf_counter() - t0, 2), rss))
            time.sleep(0.1)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--households", type=float, default=1e7)
    ap.add_argument("--steps", type=int, default=20, help="weeks per run (default 20: "
                    "every nudge of the borough's campaign has started by then)")
    ap.add_argument("--replicates", type=int, default=2)
    ap.add_argument("--memory-limit", default="8GB")
    ap.add_argument("--out", type=Path, default=Path("results/cluster_sweep"))
    args = ap.parse_args(argv)

    from nudgesim.bench import national_scenario
    from nudgesim.files import write_atomic
    from nudgesim.limits import estimate_memory

    n = int(args.households)
    out = args.out.resolve()
    out.mkdir(parents=True, exist_ok=True)
    sc = national_scenario(n, steps=52).replace(steps=args.steps)
    write_atomic(out / "national.toml", sc.to_toml())
    write_atomic(out / "sweep.toml", f'name = "national-sweep"\nscenario = "national.toml"\n'
                                     f"replicates = {args.replicates}\n")
    port = free_port()
    address = f"tcp://127.0.0.1:{port}"
    procs: list[subprocess.Popen] = []
    try:
        procs.append(start([str(BIN / "dask"), "scheduler", "--host", "127.0.0.1", "--port",
                            str(port), "--no-dashboard"], out / "scheduler.log"))
        procs.append(start([str(BIN / "dask"), "worker", address, "--nworkers", "1",
                            "--nthreads", "1", "--memory-limit", args.memory_limit,
                            "--no-dashboard", "--local-directory", str(out / "worker")],
                           out / "worker.log"))
        sampler = Sampler(procs[1])
        sampler.start()
        t0 = time.perf_counter()
        sweep = subprocess.run(
            [str(BIN / "nudgesim"), "sweep", str(out / "sweep.toml"), "--scheduler", address,
             "--out", str(out / "results"), "--no-progress"], check=False)
        wall = time.perf_counter() - t0
        sampler.done.set()
        sampler.join()
    finally:
        for proc in reversed(procs):
            stop(proc)
    if sweep.returncode != 0:
        print(f"sweep failed (exit {sweep.returncode}); see {out}/worker.log", file=sys.stderr)
        return sweep.returncode
    import pandas as pd

    runs = pd.read_parquet(out / "results" / "runs.parquet")
    elapsed = [float(pd.read_parquet(out / "results" / "runs" / f"{rid}.parquet")
                     ["elapsed_s"].iloc[0]) for rid in runs["run_id"]]
    report = {
        "households": n, "steps": args.steps, "replicates": args.replicates,
        "memory_limit": args.memory_limit, "status": runs["status"].tolist(),
        "run_s": [round(x, 1) for x in elapsed], "sweep_wall_s": round(wall, 1),
        "worker_peak_rss_gb": round(sampler.peak_rss / 1e9, 2),
        "worker_vmhwm_gb": round(sampler.peak_hwm / 1e9, 2),
        "estimate_gb": round(estimate_memory(sc).total / 1e9, 2),
        "load_1min": os.getloadavg()[0],
        "git_commit": json.loads((out / "results" / "manifest.json").read_text())["git_commit"],
    }
    write_atomic(out / "cluster_sweep.json", json.dumps(report, indent=2) + "\n")
    write_atomic(out / "worker_rss.csv", "seconds,rss_bytes\n" + "".join(
        f"{t},{rss}\n" for t, rss in sampler.trace))
    print(json.dumps(report, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
