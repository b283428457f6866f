"""The layers point one way: read from the source, not from memory.

Every import in nudgesim (module level, inside functions and under TYPE_CHECKING alike)
is an edge of one graph. The tests assert that the graph has no cycle, that nothing but
the command line imports the command line, and that no module reads another module's
underscored names.
"""

from __future__ import annotations

import ast
from collections import defaultdict
from pathlib import Path

PACKAGE = Path(__file__).parents[1] / "nudgesim"


def modules() -> dict[str, Path]:
    out = {}
    for path in sorted(PACKAGE.rglob("*.py")):
        rel = path.relative_to(PACKAGE.parent).with_suffix("")
        parts = list(rel.parts)
        if parts[-1] == "__init__":
            parts = parts[:-1]
        out[".".join(parts)] = path
    return out


def _resolve(module: str, node: ast.ImportFrom, is_package: bool) -> str:
    if node.level == 0:
        return node.module or ""
    base = module.split(".")
    base = base if is_package else base[:-1]
    base = base[: len(base) - (node.level - 1)]
    return ".".join(base + ([node.module] if node.module else []))


def imports() -> dict[str, list[tuple[str, str | None, int]]]:
    """module -> [(imported nudgesim module, imported name or None, line)]."""
    mods = modules()
    out: dict[str, list[tuple[str, str | None, int]]] = defaultdict(list)
    for name, path in mods.items():
        tree = ast.parse(path.read_text(), str(path))
        is_package = path.name == "__init__.py"
        for node in ast.walk(tree):
            if isinstance(node, ast.Import):
                for alias in node.names:
                    if alias.name.startswith("nudgesim"):
                        out[name].append((alias.name, None, node.lineno))
            elif isinstance(node, ast.ImportFrom):
                target = _resolve(name, node, is_package)
                if not target.startswith("nudgesim"):
                    continue
                for alias in node.names:
                    sub = f"{target}.{alias.name}"
                    if sub in mods:  # `from . import kernels` imports the module kernels
                        out[name].append((sub, None, node.lineno))
                    else:
                        out[name].append((target, alias.name, node.lineno))
    return out


def graph() -> dict[str, set[str]]:
    mods = modules()
    edges: dict[str, set[str]] = {m: set() for m in mods}
    for src, items in imports().items():
        for target, _, _ in items:
            # importing a.b.c also runs a.b's __init__; the package itself is no cycle
            if target in mods and target != src and not src.startswith(target + "."):
                edges[src].add(target)
    return edges


def cycles(edges: dict[str, set[str]]) -> list[list[str]]:
    """Strongly connected components with more than one module (Tarjan)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on: set[str] = set()
    found: list[list[str]] = []

    def visit(v: str) -> None:
        index[v] = low[v] = len(index)
        stack.append(v)
        on.add(v)
        for w in sorted(edges[v]):
            if w not in index:
                visit(w)
                low[v] = min(low[v], low[w])
            elif w in on:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            comp = []
            while True:
                w = stack.pop()
                on.discard(w)
                comp.append(w)
                if w == v:
                    break
            if len(comp) > 1:
                found.append(sorted(comp))

    for v in sorted(edges):
        if v not in index:
            visit(v)
    return found


def test_no_import_cycles():
    assert cycles(graph()) == []


def test_the_cycle_finder_finds_a_cycle():
    assert cycles({"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": {"a"}}) == [["a", "b", "c"]]


def test_only_the_command_line_imports_the_command_line():
    offenders = [
        f"{src} (line {line})"
        for src, items in imports().items()
        if not (src == "nudgesim.cli" or src.startswith("nudgesim.cli.")) and src != "nudgesim.__main__"
        for target, _, line in items
        if target == "nudgesim.cli" or target.startswith("nudgesim.cli.")
    ]
    assert offenders == []


def _private_reads() -> list[str]:
    """`from .x import _name` and `x._name` where x is another nudgesim module."""
    mods = modules()
    found = []
    for src, items in imports().items():
        for target, name, line in items:
            if name and name.startswith("_") and not name.startswith("__") and target != src:
                found.append(f"{src}:{line} imports {target}.{name}")
    for src, path in mods.items():
        tree = ast.parse(path.read_text(), str(path))
        aliases: dict[str, str] = {}
        for node in ast.walk(tree):
            if isinstance(node, ast.ImportFrom):
                target = _resolve(src, node, path.name == "__init__.py")
                for alias in node.names:
                    if f"{target}.{alias.name}" in mods:
                        aliases[alias.asname or alias.name] = f"{target}.{alias.name}"
            elif isinstance(node, ast.Import):
                for alias in node.names:
                    if alias.name.startswith("nudgesim") and alias.asname:
                        aliases[alias.asname] = alias.name
        for node in ast.walk(tree):
            if (
                isinstance(node, ast.Attribute)
                and node.attr.startswith("_")
                and not node.attr.startswith("__")
                and isinstance(node.value, ast.Name)
                and node.value.id in aliases
                and aliases[node.value.id] != src
            ):
                found.append(f"{src}:{node.lineno} reads {aliases[node.value.id]}.{node.attr}")
    return sorted(set(found))


def test_no_module_reads_another_modules_private_names():
    assert _private_reads() == []


def test_the_private_name_finder_sees_both_spellings(tmp_path, monkeypatch):
    pkg = tmp_path / "nudgesim"
    pkg.mkdir()
    (pkg / "__init__.py").write_text("")
    (pkg / "a.py").write_text("_secret = 1\n")
    (pkg / "b.py").write_text("from .a import _secret\nfrom . import a\nx = a._secret\n")
    monkeypatch.setattr(__import__(__name__), "PACKAGE", pkg)
    assert _private_reads() == [
        "nudgesim.b:1 imports nudgesim.a._secret",
        "nudgesim.b:3 reads nudgesim.a._secret",
    ]


#: Underscored names of *other libraries* read on purpose, each with its reason.
THIRD_PARTY_PRIVATE = {
    # a worker that exits at once must still unlink its named semaphores, as exit does
    ("nudgesim.parallel", "_run_finalizers"),
    # os._exit is the documented way for a forked child to end at once
    ("nudgesim.parallel", "_exit"),
    # ... and for the plot helper to end at once when its parent has gone (even mid-import)
    ("nudgesim.plots", "_exit"),
    # ... and for a finished command Ctrl-C'd in its exit functions (cli._status_keeper)
    ("nudgesim.cli", "_exit"),
}


def _foreign_attribute_reads() -> list[str]:
    """`obj._x` where obj is not self/cls and no `_x` is defined in the same module: a
    module reaching into another's objects (e.g. kernels reading an engine's `_counts`)."""
    found = []
    for src, path in modules().items():
        tree = ast.parse(path.read_text(), str(path))
        own = set()
        for node in ast.walk(tree):
            if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef)):
                own.add(node.name)
            elif isinstance(node, ast.Attribute) and isinstance(node.ctx, ast.Store):
                own.add(node.attr)
            elif isinstance(node, ast.Name) and isinstance(node.ctx, ast.Store):
                own.add(node.id)
            elif isinstance(node, ast.arg):
                own.add(node.arg)
            elif isinstance(node, ast.AnnAssign) and isinstance(node.target, ast.Name):
                own.add(node.target.id)
            elif isinstance(node, ast.alias):
                own.add(node.asname or node.name.split(".")[-1])
        for node in ast.walk(tree):
            if (
                isinstance(node, ast.Attribute)
                and node.attr.startswith("_")
                and not node.attr.startswith("__")
                and not (isinstance(node.value, ast.Name) and node.value.id in ("self", "cls"))
                and node.attr not in own
                and (src, node.attr) not in THIRD_PARTY_PRIVATE
            ):
                found.append(f"{src}:{node.lineno} reads .{node.attr}")
    return sorted(set(found))


def test_no_module_reaches_into_another_modules_objects():
    assert _foreign_attribute_reads() == []
