"""How commands report failure: a one-line message on stderr and a documented exit code."""

from __future__ import annotations

from typing import NoReturn

import click

EXIT_CHECK_FAILED = 1  # the command ran and found a problem (a bad block, a diverging chain)
EXIT_USAGE = 2  # bad usage or configuration; click uses 2 for usage errors too


def fail(message: str, code: int = EXIT_USAGE) -> NoReturn:
    """Print *message* as an error and exit with *code*."""
    click.echo(f"error: {message}", err=True)
    raise SystemExit(code)
