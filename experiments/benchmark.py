"""Benchmark the engine against numpy, Mesa and a bare scipy A @ x (see nudgesim/bench.py).

    .venv/bin/python experiments/benchmark.py                 # 10k / 100k / 1M residents
    .venv/bin/python experiments/benchmark.py --quick         # smoke run
    .venv/bin/python experiments/benchmark.py --graphs --sweep 200
"""

import sys

from nudgesim.bench import bench_main

if __name__ == "__main__":
    sys.exit(bench_main(sys.argv[1:]))
