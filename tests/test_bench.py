"""`nudgesim bench --quick` runs every contender at a tiny size and writes its table.
No timing assertions: speed is shown by the benchmark, never tested."""

from __future__ import annotations

import json

import pytest

from nudgesim.bench import bench_main


def test_quick_bench_writes_the_table(tmp_path):
    assert bench_main(["--quick", "--out", str(tmp_path)]) == 0
    text = (tmp_path / "benchmark.md").read_text()
    for contender in ("engine", "ties", "numpy", "agents", "mesa", "scipy", "floor"):
        assert f"| {contender} | 2,000 |" in text
    assert "bytes / resident" in text and "## Machine" in text and "Reproduce:" in text
    assert "Engine step ÷ memory floor, paired" in text
    data = json.loads((tmp_path / "benchmark.json").read_text())
    assert {r["contender"] for r in data["rows"]} == {"engine", "ties", "numpy", "agents", "mesa",
                                                      "scipy", "floor"}
    assert all(r["sec_per_step"] > 0 for r in data["rows"])


def test_bad_options_name_the_field(tmp_path):
    from nudgesim.cli import UsageError

    with pytest.raises(UsageError, match="--contenders"):
        bench_main(["--contenders", "engine,fortran", "--out", str(tmp_path)])
    with pytest.raises(UsageError, match="--sizes"):
        bench_main(["--sizes", "10,abc", "--out", str(tmp_path)])
