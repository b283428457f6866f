"""The exceptions a user can cause, in one place that every layer may import.

The command line prints any :class:`UserError` as one line and exits with code 2; anything
else is a bug and keeps its traceback. Library modules raise these instead of importing
the command line (layers point one way: the CLI uses the library, never the reverse).
"""

from __future__ import annotations


class UserError(ValueError):
    """Bad input or an impossible request; the message is meant for the user.

    The first line names the field (or option), the bad value and what is allowed.
    """


class ScenarioError(UserError):
    """A scenario (or menu, or experiment file) that cannot be run."""


class UsageError(UserError):
    """Bad command-line arguments or options."""


class ResourceError(UserError):
    """A request this machine cannot serve: too much memory, a cluster that does not answer."""
