"""The command line: the main job end to end, and bad input as exit code 2 with no traceback."""

import json
import subprocess
import sys
from pathlib import Path

import pandas as pd
import pytest

from nudgesim.cli import main

ROOT = Path(__file__).parents[1]
BOROUGH = ROOT / "experiments" / "scenarios" / "borough.toml"


def test_run_writes_tables_summary_scenario_and_plot(tmp_path, capsys):
    assert main(["run", str(BOROUGH), "--out", str(tmp_path), "--steps", "30", "--seed", "3"]) == 0
    ts = pd.read_parquet(tmp_path / "timeseries.parquet")
    assert ts["step"].tolist() == list(range(31))
    assert pd.read_csv(tmp_path / "timeseries.csv")["adopters"].tolist() == ts["adopters"].tolist()
    assert len(pd.read_parquet(tmp_path / "by_ward.parquet")) == 31 * 24
    summary = json.loads((tmp_path / "summary.json").read_text())
    assert summary["seed"] == 3 and summary["steps"] == 30
    assert "steps = 30" in (tmp_path / "scenario.toml").read_text()
    assert (tmp_path / "adoption.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert "adoption" in capsys.readouterr().out


BAD = {
    "malformed": ("steps = [", "malformed TOML"),
    "unknown_kind": ('[[nudges]]\nkind = "hug"', "unknown kind 'hug'"),
    "probability": ('[[nudges]]\nkind = "pledge"\nuptake = 1.5', "nudges[0].uptake"),
    "negative_size": ("[population]\nsize = -5", "population.size"),
    "missing_graph": ('[network]\nkind = "file"\npath = "missing.edgelist"', "missing.edgelist"),
    "late_nudge": ('steps = 10\n[[nudges]]\nkind = "reminder"\nstart = 20', "after the last step (10)"),
}


@pytest.mark.parametrize("case", sorted(BAD))
def test_bad_input_exits_2_with_a_clear_message(case, tmp_path, capsys):
    text, expected = BAD[case]
    path = tmp_path / "bad.toml"
    path.write_text(text)
    assert main(["run", str(path), "--out", str(tmp_path / "out")]) == 2
    err = capsys.readouterr().err
    assert expected in err and "Traceback" not in err
    assert not (tmp_path / "out").exists()  # nothing half-written


def test_missing_scenario_file_and_real_entry_point(tmp_path):
    proc = subprocess.run(
        [sys.executable, "-m", "nudgesim.cli", "run", str(tmp_path / "none.toml")],
        capture_output=True, text=True,
    )
    assert proc.returncode == 2
    assert "scenario file not found" in proc.stderr and "Traceback" not in proc.stderr


def test_validate(capsys):
    assert main(["validate", str(BOROUGH)]) == 0
    assert "valid" in capsys.readouterr().out
