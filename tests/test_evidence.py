"""The evidence library (data validity), its emulated trials and the published patterns."""

from __future__ import annotations

import math

import numpy as np
import pandas as pd
import pytest

import nudgesim.evidence as ev
from nudgesim.cli import main as cli_main
from nudgesim.evidence import replicate as rp
from nudgesim.evidence.library import COMPARABLE_UNITS, UNITS, EvidenceError, load


@pytest.fixture(scope="module")
def table() -> pd.DataFrame:
    return ev.trials()


def test_columns(table):
    for c in ["id", "nudge", "behaviour", "effect", "effect_lo", "effect_hi", "unit", "n",
              "weeks", "source"]:
        assert c in table.columns
    assert table["id"].is_unique and len(table) >= 25


def test_every_record_is_sourced_and_consistent(table):
    undated = table.loc[~table["source"].str.contains(r"\b(?:19|20)\d\d\b"), "id"]
    assert sorted(undated) == ["chong_peru", "recyclebank_windsor"]  # no year in our reference
    for _, r in table.iterrows():
        assert r["unit"] in UNITS and len(r["mapping"]) >= 20 and r["read_in"]
        if not math.isnan(r["effect_lo"]):
            assert r["effect_lo"] <= r["effect"] <= r["effect_hi"] and r["interval"]
        if r["comparable"]:
            assert r["unit"] in COMPARABLE_UNITS and r["nudge"] != "not comparable"


def test_comparable_records_are_exactly_the_emulated(table):
    assert sorted(table.loc[table["comparable"], "id"]) == sorted(rp.representable())


@pytest.mark.parametrize("bad, message", [
    ({"effect": 5.0, "effect_lo": 6.0, "effect_hi": 7.0, "interval": "95% CI"}, "outside"),
    ({"effect": 5.0, "unit": "furlongs"}, "unit: 'furlongs' is not allowed"),
    ({"effect": 5.0, "comparable": True, "nudge": "not comparable"}, "comparable"),
    ({"effect": 5.0, "effect_lo": 4.0}, "together"),
])
def test_bad_records_are_explained(tmp_path, bad, message):
    import tomli_w

    rec = {"id": "x2020", "nudge": "reminder", "behaviour": "b", "setting": "s",
           "persistence": "p", "source": "Someone 2020, Journal", "read_in": "paper",
           "verified": True, "comparable": False, "mapping": "a mapping of twenty chars",
           "unit": "pp"} | bad
    path = tmp_path / "t.toml"
    path.write_text(tomli_w.dumps({"trials": [rec]}))
    with pytest.raises(EvidenceError, match=message) as err:
        load(path)
    assert str(err.value).startswith(str(path))


def test_duplicate_ids_are_refused(tmp_path):
    import tomli_w

    rec = ev.library.library().trials[0].model_dump(exclude_none=True)
    path = tmp_path / "t.toml"
    path.write_text(tomli_w.dumps({"trials": [rec, rec]}))
    with pytest.raises(EvidenceError, match="appears twice"):
        load(path)


def test_unknown_record_lists_the_allowed():
    with pytest.raises(EvidenceError, match="allowed"):
        rp.emulate("nobody1999")
    with pytest.raises(EvidenceError, match="no trial emulation"):
        rp.emulate("nisa2019_overall")


def test_emulate_is_deterministic_and_draws_apply():
    a = rp.emulate("dellavigna_linos2022_at_scale", replicates=3, seed=5)
    b = rp.emulate("dellavigna_linos2022_at_scale", replicates=3, seed=5)
    assert np.array_equal(a.per_replicate, b.per_replicate) and a.simulated == b.simulated
    big = rp.emulate("dellavigna_linos2022_at_scale", {"reminder.boost": 3.0},
                     replicates=3, seed=5)
    assert big.scenario.nudges[0].boost == 3.0
    assert big.simulated > a.simulated + 1.0  # a stronger prompt moves more people


@pytest.mark.parametrize("record", rp.representable())
def test_replication_recreates_its_baseline(record):
    rep = rp.emulate(record, replicates=2, seed=0)
    assert abs(rep.control.mean() - rep.emulation.baseline) * 100 <= rp.BASELINE_TOLERANCE_PP


def test_default_emulation_matches_ebeling_lotz_closely():
    # opt_out 0.3 of 93% non-adopters: 0.7 x 0.93 = 65.1 pp expected; published 63 pp
    rep = rp.emulate("ebeling_lotz2015", replicates=3, seed=0)
    assert abs(rep.simulated - 65.1) < 2.0


@pytest.fixture(scope="module")
def patterns() -> pd.DataFrame:
    return rp.patterns(replicates=6, seed=0).set_index("pattern")


def test_boomerang_pattern(patterns):
    """Descriptive card: adopters above the shown norm participate less (interval below
    0); the injunctive card removes at least half of it; non-adopters below gain."""
    ok = patterns["reproduced"]
    assert ok["boomerang: descriptive card, adopters above the shown norm"]
    assert ok["boomerang removed: injunctive card, adopters above the shown norm"]
    assert ok["descriptive card, non-adopters below the shown norm"]
    # what the model cannot do: approval does not protect non-adopters' norms
    assert not ok["boomerang on non-adopters above the norm, injunctive card"]


def test_decay_pattern_as_the_model_gives_it(patterns):
    """nudgesim's effect is sustained at the end, but does NOT decay after it nor sag
    between contacts: the docs report this as a pattern the model cannot produce."""
    row = patterns.loc["effect sustained at the end of a campaign"]
    assert row["reproduced"] and row["simulated_lo"] > 0.5
    decay = patterns.loc["decay after the end"]
    assert not decay["reproduced"] and decay["simulated"] > 0.9
    assert not patterns.loc["backsliding between contacts", "reproduced"]


def test_cli_writes_the_files(tmp_path, capsys):
    out = tmp_path / "ev"
    assert cli_main(["evidence", "--out", str(out), "--replicates", "2",
                     "--executor", "serial"]) == 0
    table = pd.read_csv(out / "replication.csv")
    for c in ["id", "published", "published_lo", "published_hi", "simulated",
              "simulated_lo", "simulated_hi", "within", "reason"]:
        assert c in table.columns
    assert len(table) == len(ev.trials())
    assert (out / "replication.png").stat().st_size > 1000 and (out / "patterns.csv").exists()
    assert (table.loc[table["n_emulated"].isna(), "reason"].str.len() > 10).all()


@pytest.mark.parametrize("argv", [["--replicates", "1"], ["--evidence", "wishful"],
                                  ["--draws", "-1"]])
def test_cli_bad_input(tmp_path, capsys, argv):
    assert cli_main(["evidence", "--out", str(tmp_path / "x"), *argv]) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith("nudgesim: error:") and "\n" not in err
