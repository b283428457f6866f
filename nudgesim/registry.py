"""Registries of the kinds a scenario may name: decision rules, nudges and graphs.

Each kind has one entry in one table: its spec class (the pydantic model a scenario file
fills in, with a `kind` literal) and its behaviour. The scenario's tagged unions
(`rule`, `nudges`, `network`) are built from these tables, so registering a kind is all it
takes for `kind = "..."` to validate, serialise and run (`docs/contributing.md`).

This module imports nothing from nudgesim: the modules that own the kinds (rules.py,
nudges.py, network.py) register into it, and scenario.py listens for new kinds to rebuild
its model.
"""

from __future__ import annotations

import inspect
from collections.abc import Callable, Iterator
from typing import Annotated, Any, Protocol

from pydantic import BaseModel, Field


class Entry(Protocol):
    """What every registry entry has: its spec class, whose `kind` default names it."""

    spec: type[BaseModel]


class RegistryError(ValueError):
    """A kind registered twice, or a spec class without a `kind` literal (a programming
    error in the code that registers it, not a user's input)."""


def kind_of(spec: type[BaseModel]) -> str:
    """The kind a spec class declares: the default of its `kind` field."""
    field = spec.model_fields.get("kind")
    if field is None or not isinstance(field.default, str):
        raise RegistryError(f"{spec.__name__} needs a field `kind: Literal[...] = \"...\"`")
    return field.default


class Registry[E: Entry]:
    """kind → entry, in registration order (the order of `names()` and of the union)."""

    def __init__(self, what: str) -> None:
        self.what = what
        self._entries: dict[str, E] = {}
        self._listeners: list[Callable[[], None]] = []

    def register(self, entry: E) -> E:
        """Add a kind; the scenario model is rebuilt so it accepts the kind at once.
        Returns the entry, so it can be used as a class decorator."""
        kind = kind_of(entry.spec)
        if kind in self._entries:
            raise RegistryError(f"{self.what} kind {kind!r} is already registered")
        if not entry.spec.__pydantic_complete__:
            # a spec whose annotations pydantic could not resolve where it was defined
            # (code run by exec, a class inside a function): resolve them in the caller's
            # names now, or rebuilding the scenario model would fail on them
            frame = inspect.currentframe()  # None only on Pythons without frames
            caller = frame.f_back if frame is not None else None
            names = {**caller.f_globals, **caller.f_locals} if caller is not None else {}
            entry.spec.model_rebuild(_types_namespace=names)
        self._entries[kind] = entry
        for listener in self._listeners:
            listener()
        return entry

    def unregister(self, kind: str) -> E:
        """Remove a kind (tests that add a toy kind take it out again)."""
        entry = self._entries.pop(kind)
        for listener in self._listeners:
            listener()
        return entry

    def on_change(self, listener: Callable[[], None]) -> None:
        """Call `listener` after every register/unregister (scenario.py rebuilds its model)."""
        self._listeners.append(listener)

    def __getitem__(self, kind: str) -> E:
        return self._entries[kind]

    def __contains__(self, kind: object) -> bool:
        return kind in self._entries

    def __iter__(self) -> Iterator[str]:
        return iter(self._entries)

    def __len__(self) -> int:
        return len(self._entries)

    def names(self) -> list[str]:
        return list(self._entries)

    def entries(self) -> list[E]:
        return list(self._entries.values())

    def union(self) -> Any:
        """The spec classes as a pydantic tagged union on `kind`."""
        specs = [e.spec for e in self._entries.values()]
        if not specs:
            raise RegistryError(f"no {self.what} kind is registered")
        if len(specs) == 1:  # a discriminator needs a union; one member is the model itself
            return specs[0]
        members: Any = specs[0]  # a types.UnionType from here on: A | B | ...
        for spec in specs[1:]:
            members = members | spec
        return Annotated[members, Field(discriminator="kind")]


RULES: Registry[Any] = Registry("rule")
"""Decision rules (rules.py): entries are `rules.Rule` objects."""
NUDGES: Registry[Any] = Registry("nudge")
"""Nudge kinds (nudges.py): entries are `nudges.NudgeKind` objects."""
GRAPHS: Registry[Any] = Registry("network")
"""Generated graph kinds and graph files (network.py): entries are `network.GraphKind`."""
