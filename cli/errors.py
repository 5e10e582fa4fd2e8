"""How commands report failure (a one-line message, a documented exit code), and the shared
reading of a passphrase from the environment."""

from __future__ import annotations

import os
from typing import NoReturn

import click

EXIT_CHECK_FAILED = 1  # the command ran and found a problem (a bad block, a diverging chain)
EXIT_USAGE = 2  # bad usage or configuration; click uses 2 for usage errors too


def fail(message: str, code: int = EXIT_USAGE) -> NoReturn:
    """Print *message* as an error and exit with *code*."""
    click.echo(f"error: {message}", err=True)
    raise SystemExit(code)


def passphrase_from_env(env: str) -> bytes | None:
    """The passphrase in environment variable *env* ("" for none); fails if it is unset."""
    if not env:
        return None
    value = os.environ.get(env)
    if not value:
        fail(f"--passphrase-env names {env}, which is not set or empty")
    return value.encode()
