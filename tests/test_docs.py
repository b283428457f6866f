"""Every code block in the README and docs/ works as written, and every link resolves.

Python blocks of one page run in order in one namespace (a page reads like a session),
from a scratch folder that sees the repository's `experiments/` and writes its results
there. TOML blocks are read as what they show (scenario, experiment or menu) and
validated. Shell blocks: every `nudgesim` command names a real subcommand and only
options that subcommand's --help lists. Relative links (and images) of every page point
at files that exist: `mkdocs build --strict` (in .ci/run) checks links between docs
pages, but not the README's, which GitHub shows and mkdocs never reads.
"""

from __future__ import annotations

import contextlib
import io
import os
import re
import shlex
from pathlib import Path

import pytest

ROOT = Path(__file__).parents[1]
PAGES = [ROOT / "README.md", *sorted((ROOT / "docs").rglob("*.md"))]
FENCE = re.compile(r"^```(\w*)[^\n]*\n(.*?)^```", re.MULTILINE | re.DOTALL)


def blocks(page: Path, language: str) -> list[str]:
    return [body for lang, body in FENCE.findall(page.read_text()) if lang == language]


def _pages_with(language: str) -> list[Path]:
    return [p for p in PAGES if p.exists() and blocks(p, language)]


@pytest.fixture
def scratch(tmp_path, monkeypatch):
    (tmp_path / "experiments").symlink_to(ROOT / "experiments")
    monkeypatch.chdir(tmp_path)
    return tmp_path


@pytest.mark.parametrize("page", _pages_with("python"), ids=lambda p: str(p.relative_to(ROOT)))
def test_python_blocks_run(page, scratch):
    namespace: dict = {"__name__": "__docs__"}
    for i, code in enumerate(blocks(page, "python")):
        with contextlib.redirect_stdout(io.StringIO()):
            try:
                exec(compile(code, f"{page.name}[python block {i}]", "exec"), namespace)
            except Exception as err:
                raise AssertionError(f"{page.name}, python block {i} failed:\n{code}") from err


def _toml_kind(data: dict) -> str:
    if "items" in data:
        return "menu"
    if "levers" in data or "uncertainties" in data or "design" in data:
        return "experiment"
    return "scenario"


@pytest.mark.parametrize("page", _pages_with("toml"), ids=lambda p: str(p.relative_to(ROOT)))
def test_toml_blocks_are_valid(page, scratch):
    import tomllib

    import nudgesim as ns
    from nudgesim.experiment import Experiment
    from nudgesim.planning import Menu

    for text in blocks(page, "toml"):
        data = tomllib.loads(text)
        kind = _toml_kind(data)
        if kind == "menu":
            Menu.from_dict(data)
        elif kind == "experiment":
            # written as if it lived in experiments/sweeps/, as the shipped ones do
            Experiment.from_dict(data, base_dir=ROOT / "experiments" / "sweeps")
        else:
            ns.Scenario.from_dict(data)


def _commands(text: str) -> list[list[str]]:
    """`nudgesim ...` command lines of a shell block, comments and continuations joined."""
    joined = re.sub(r"\\\n\s*", " ", text)
    out = []
    for line in joined.splitlines():
        line = line.split(" #")[0].strip().removeprefix("$ ")
        words = shlex.split(line) if line else []
        if words and words[0].endswith("nudgesim"):
            out.append(words[1:])
    return out


def _help(sub: str) -> str:
    from nudgesim.cli import main

    buf = io.StringIO()
    with contextlib.redirect_stdout(buf), pytest.raises(SystemExit):
        main([sub, "--help"])
    return buf.getvalue()


@pytest.mark.parametrize("page", [p for p in PAGES if p.exists()], ids=lambda p: str(p.relative_to(ROOT)))
def test_shell_commands_name_real_options(page):
    helps: dict[str, str] = {}
    checked = 0
    for lang in ("bash", "console", ""):
        for text in blocks(page, lang):
            for words in _commands(text):
                if not words:
                    continue
                sub = words[0]
                if sub not in helps:
                    helps[sub] = _help(sub)
                for opt in (w.split("=")[0] for w in words[1:] if w.startswith("--")):
                    assert re.search(rf"(?<![\w-]){re.escape(opt)}(?![\w-])", helps[sub]), (
                        f"{page.name}: `nudgesim {' '.join(words)}`: {opt} is not an option "
                        f"of `nudgesim {sub}`"
                    )
                checked += 1
    assert checked or page.name != "README.md"


def test_pages_are_found_and_have_code():
    assert blocks(ROOT / "README.md", "python") and blocks(ROOT / "README.md", "bash")
    assert any(blocks(p, "toml") for p in PAGES[1:])
    assert os.path.isdir(ROOT / "experiments")


LINK = re.compile(r"!?\[[^\]]*\]\(([^)\s]+)(?:\s+\"[^\"]*\")?\)")


def relative_links(text: str) -> list[str]:
    """Targets of the Markdown links and images outside code, without their #anchor."""
    prose = re.sub(r"`[^`\n]*`", "", FENCE.sub("", text))
    out = []
    for target in LINK.findall(prose):
        if re.match(r"[a-z][a-z0-9+.-]*:", target) or target.startswith("#"):
            continue  # a URL (https:, mailto:) or an anchor on the same page
        out.append(target.split("#")[0])
    return out


def test_relative_links_finds_links_outside_code_only():
    text = "[a](docs/x.md#s) ![b](fig.png) [c](https://x.org) [d](#top)\n`[e](no.md)`\n"
    assert relative_links(text + "```\n[f](no.md)\n```\n") == ["docs/x.md", "fig.png"]


@pytest.mark.parametrize("page", [p for p in PAGES if p.exists()], ids=lambda p: str(p.relative_to(ROOT)))
def test_relative_links_resolve(page):
    missing = [t for t in relative_links(page.read_text()) if not (page.parent / t).exists()]
    assert not missing, f"{page.relative_to(ROOT)} links to missing files: {missing}"


def test_readme_is_a_front_page():
    """The README stays short: the rest of the documentation lives in docs/."""
    text = (ROOT / "README.md").read_text()
    assert len(text.splitlines()) <= 250
    assert "docs/index.md" in relative_links(text)


def test_docs_figures_are_the_current_ones():
    """mkdocs serves only files under docs/, so the figures the pages show are copies of
    experiments/figures/ (where the research scripts' figures are kept): they must match."""
    figures = sorted((ROOT / "docs" / "figures").glob("*.png"))
    assert figures
    for fig in figures:
        source = ROOT / "experiments" / "figures" / fig.name
        assert source.exists(), f"docs/figures/{fig.name} has no experiments/figures/ original"
        assert fig.read_bytes() == source.read_bytes(), (
            f"docs/figures/{fig.name} differs from experiments/figures/{fig.name}: copy it again"
        )
