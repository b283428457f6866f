"""Start-up stays light: each command imports only what it needs (checked in fresh
processes, since this test process has imported everything already)."""

from __future__ import annotations

import os
import subprocess
import sys

import pytest

HEAVY = ("numba", "networkx", "scipy.sparse", "matplotlib", "pandas", "mesa")


def _modules_after(code: str, cwd) -> set[str]:
    env = {k: v for k, v in os.environ.items() if k != "NUDGESIM_NUMBA"}
    out = subprocess.run([sys.executable, "-c", code + "\nimport sys\nprint(' '.join(sys.modules))"],
                         env=env, capture_output=True, text=True, check=True, cwd=cwd)
    return set(out.stdout.split())


@pytest.mark.parametrize("module", ["nudgesim", "nudgesim.cli"])
def test_importing_loads_no_heavy_library(module, tmp_path):
    loaded = _modules_after(f"import {module}", tmp_path)
    assert not loaded & set(HEAVY)


def test_the_public_names_still_resolve(tmp_path):
    code = ("import nudgesim as ns\n"
            "assert callable(ns.simulate) and callable(ns.sensitivity)\n"
            "import nudgesim.sensitivity\n"
            "assert callable(ns.sensitivity)  # the function, not the submodule\n"
            "assert ns.Engine and ns.Experiment and ns.Network and ns.Result and ns.Population\n")
    _modules_after(code, tmp_path)


def test_a_small_run_with_its_plot_needs_neither_numba_nor_pyplot(tmp_path):
    (tmp_path / "town.toml").write_text('name = "town"\nsteps = 4\n[population]\nsize = 300\n')
    code = ("from nudgesim.cli import main\n"
            "assert main(['run', 'town.toml', '--out', 'out']) == 0\n")
    loaded = _modules_after(code, tmp_path)
    assert (tmp_path / "out" / "adoption.png").stat().st_size > 1000
    assert "numba" not in loaded and "matplotlib.pyplot" not in loaded
