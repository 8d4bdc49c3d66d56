"""One exit-code table for every ``edgepilot`` command (documented in the README).

====  ==============================================================================
code  meaning
====  ==============================================================================
0     success
1     the command ran and what it checks failed or could not be done: a bundle
      refused, the parity gate failed, a host could not be flashed, a server did not
      answer
2     usage error: a bad option or argument, or an input file that is missing or
      invalid (the message names the file and the field); nothing was done
130   interrupted (Ctrl-C)
====  ==============================================================================

Both errors print exactly one line, ``error: <message>``, on stderr; so do the usage
errors the command-line parser finds itself (an unknown option, a value out of its
range: see :class:`edgepilot.cli.RootGroup`).
"""

from __future__ import annotations

from typing import NoReturn

import typer

EXIT_OK = 0
EXIT_FAILED = 1
EXIT_USAGE = 2
EXIT_INTERRUPTED = 130


def one_line(message: str) -> str:
    return " ".join(str(message).split())


def usage_error(message: str) -> NoReturn:
    """Bad input: print ``error: message`` and exit 2."""
    typer.echo(f"error: {one_line(message)}", err=True)
    raise typer.Exit(EXIT_USAGE)


def failed(message: str) -> NoReturn:
    """The operation failed: print ``error: message`` and exit 1."""
    typer.echo(f"error: {one_line(message)}", err=True)
    raise typer.Exit(EXIT_FAILED)
