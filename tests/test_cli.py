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


SMALL_TOWN = ROOT / "experiments" / "scenarios" / "small_town.toml"
MENU = ROOT / "experiments" / "menus" / "borough.toml"


def test_validate_reads_the_files_a_run_reads(tmp_path, capsys):
    (tmp_path / "people.csv").write_text("id,ward\n0,N\n1,N\n1,S\n")
    (tmp_path / "ties.edgelist").write_text("0 1\n1 2\n")
    scenario = tmp_path / "s.toml"
    scenario.write_text('[population]\ncsv = "people.csv"\n'
                        '[network]\nkind = "file"\npath = "ties.edgelist"\n')
    assert main(["validate", str(scenario)]) == 2
    err = capsys.readouterr().err
    assert err.startswith("nudgesim: error: population.csv: duplicate id(s) ['1']")
    assert len(err.strip().splitlines()) == 1 and "Traceback" not in err
    (tmp_path / "people.csv").write_text("id,ward\n0,N\n1,N\n2,S\n")
    (tmp_path / "ties.edgelist").write_text("0 1 x y z\n")
    assert main(["validate", str(scenario)]) == 2
    assert capsys.readouterr().err.startswith("nudgesim: error: network.path: ")
    (tmp_path / "ties.edgelist").write_text("0 1\n1 2\n")
    assert main(["validate", str(scenario)]) == 0
    assert "3 residents, 2 ties" in capsys.readouterr().out


def test_validate_no_build_checks_the_scenario_without_building(tmp_path, capsys,
                                                               monkeypatch):
    """--no-build: the scenario, its named files' presence and the memory estimate, and no
    residents or ties (building is most of validate's time at national scale)."""
    import nudgesim.engine

    def no_build(*args, **kwargs):
        raise AssertionError("--no-build built the world")

    monkeypatch.setattr(nudgesim.engine, "Engine", no_build)
    assert main(["validate", "--no-build", str(BOROUGH)]) == 0
    out = capsys.readouterr().out
    assert "valid as written (borough," in out and "needs ~" in out
    assert main(["validate", "--no-build", str(BOROUGH), "--max-memory", "1M"]) == 2
    assert "more than the 1.0 MB limit" in capsys.readouterr().err
    scenario = tmp_path / "s.toml"
    scenario.write_text('[network]\nkind = "file"\npath = "missing.edgelist"\n')
    assert main(["validate", "--no-build", str(scenario)]) == 2
    err = capsys.readouterr().err
    assert err.startswith("nudgesim: error: network.path: ") and "is not a file" in err
    assert len(err.strip().splitlines()) == 1
    (tmp_path / "missing.edgelist").write_text("0 1 x y z\n")  # contents: a full validate's
    assert main(["validate", "--no-build", str(scenario)]) == 0


def test_validate_checks_a_menu_without_running_it(tmp_path, capsys):
    assert main(["validate", str(BOROUGH), "--menu", str(MENU)]) == 0
    assert "valid (12 options)" in capsys.readouterr().out
    bad = tmp_path / "menu.toml"
    bad.write_text(MENU.read_text().replace("reach = [0.45, 0.9]", "reach = [0.45, 9.0]"))
    assert main(["validate", str(BOROUGH), "--menu", str(bad)]) == 2
    err = capsys.readouterr().err
    assert err.startswith(f"nudgesim: error: {bad}: items[0].levels.reach: ")


def test_precedence_warning_is_one_line(tmp_path, capsys):
    (tmp_path / "g.graphml").write_text(
        '<?xml version="1.0"?><graphml xmlns="http://graphml.graphdrawing.org/xmlns">'
        '<key id="t" for="node" attr.name="threshold" attr.type="double"/>'
        '<graph edgedefault="undirected"><node id="0"><data key="t">0.2</data></node>'
        '<node id="1"><data key="t">0.7</data></node><edge source="0" target="1"/></graph>'
        "</graphml>")
    (tmp_path / "s.toml").write_text('[population]\n[network]\nkind = "file"\npath = "g.graphml"\n'
                                     '[rule]\nkind = "threshold"\nthreshold = 0.5\n')
    for _ in range(2):  # every invocation warns, not only the first in a process
        assert main(["validate", str(tmp_path / "s.toml")]) == 0
        err = capsys.readouterr().err
        assert err == ("nudgesim: warning: rule.threshold: the graph node attribute 'threshold' "
                       "overrides it (per-resident data wins)\n")


def test_out_naming_an_existing_file_is_refused_before_running(tmp_path, capsys):
    (tmp_path / "taken").write_text("x")
    assert main(["run", str(SMALL_TOWN), "--out", str(tmp_path / "taken")]) == 2
    err = capsys.readouterr().err
    assert err.startswith("nudgesim: error: --out: ") and "Traceback" not in err
    assert (tmp_path / "taken").read_text() == "x"


def test_python_dash_m_nudgesim_is_the_command():
    proc = subprocess.run([sys.executable, "-m", "nudgesim", "validate", str(SMALL_TOWN)],
                          capture_output=True, text=True)
    assert proc.returncode == 0 and "valid" in proc.stdout
    proc = subprocess.run([sys.executable, "-m", "nudgesim", "--help"], capture_output=True,
                          text=True)
    assert proc.returncode == 0 and "validate" in proc.stdout
    bad = ROOT / "no-such-dir" / "x.toml"
    proc = subprocess.run([sys.executable, "-m", "nudgesim", "validate", str(bad)],
                          capture_output=True, text=True)
    assert proc.returncode == 2 and proc.stderr.startswith("nudgesim: error: ")
    assert "Traceback" not in proc.stderr


def test_run_without_a_scenario_runs_the_packaged_borough_from_any_folder(
        tmp_path, monkeypatch, capsys):
    monkeypatch.chdir(tmp_path)  # no experiments/ folder here, as after `pip install`
    assert main(["run", "--steps", "1", "--no-plot", "--out", str(tmp_path / "b")]) == 0
    assert capsys.readouterr().out.startswith("borough: 20,000 residents")
    summary = json.loads((tmp_path / "b" / "summary.json").read_text())
    assert summary["scenario"] == "borough" and summary["steps"] == 1


def test_the_shipped_scenarios_are_package_data_and_the_repository_links_to_them():
    from importlib import resources

    from nudgesim import scenarios

    shipped = resources.files("nudgesim.scenarios")
    assert scenarios.names() == ["borough", "small_town"]
    assert scenarios.path("borough") == Path(str(shipped / "borough.toml"))
    link = ROOT / "experiments" / "scenarios"
    assert link.is_symlink() and not Path(link.readlink()).is_absolute()  # relative, for git
    assert link.resolve() == scenarios.folder().resolve()


@pytest.mark.parametrize("command", ["run", "validate", "sweep", "sensitivity", "plan",
                                     "report", "viz", "bench"])
def test_every_command_has_help(command, capsys):
    with pytest.raises(SystemExit) as done:
        main([command, "--help"])
    assert done.value.code == 0
    assert capsys.readouterr().out.startswith(f"usage: nudgesim {command}")


def test_only_the_command_line_knows_argparse():
    """Layers point one way: the library's modules hold no command-line code."""
    package = ROOT / "nudgesim"
    library = [p for p in package.rglob("*.py") if "cli" not in p.relative_to(package).parts
               and p.name not in ("bench.py", "limits.py")]
    holders = [p.name for p in library if "argparse" in p.read_text(encoding="utf-8")]
    assert holders == []
