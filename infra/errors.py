"""Errors that end a `vanta` command with one line for the person at the terminal, not a traceback.

`infra.cli.main` prints `vanta: <message>` and exits with `exit_code`. Raise these where the
cause is known and can be named (a server that cannot be reached, a value that cannot be used);
never put a secret in the message (`infra.logs.mask_url` for URLs).
"""

from __future__ import annotations


class UserFacingError(RuntimeError):
    """Its message is a complete one-line explanation naming the input or server at fault."""

    exit_code = 1


class Unreachable(UserFacingError):
    """A server the command needs (PostgreSQL, Redis, an RPC node) cannot be reached."""
