"""The ``edgepilot`` command line.

Each module in :mod:`edgepilot.cli.commands` contributes its commands through a
``register(app)`` function; modules are discovered, so adding a command group never
touches this file. Command modules import their heavy dependencies (torch, onnx)
inside the command bodies, so ``edgepilot --help`` and the device-side commands work
on a board where only the base install is present.

Errors and exit codes follow :mod:`edgepilot.cli.errors` for every command:
:class:`RootGroup` turns the parser's own usage errors into one ``error:`` line (exit 2)
and Ctrl-C into exit 130, without a traceback.
"""

from __future__ import annotations

import importlib
import inspect
import pkgutil
import sys
from typing import Any, Optional

import typer
import typer.core

from edgepilot import __version__
from edgepilot.cli import commands
from edgepilot.cli.errors import EXIT_INTERRUPTED, EXIT_OK, one_line

# click's base exception, wherever this typer takes click from (typer >= 0.2x vendors it)
_ClickException = next(c for c in typer.BadParameter.__mro__ if c.__name__ == "ClickException")


class RootGroup(typer.core.TyperGroup):
    """The ``edgepilot`` group: every usage error the parser finds (unknown option,
    missing argument, value out of range) prints one ``error:`` line and exits 2 like
    :func:`~edgepilot.cli.errors.usage_error`; Ctrl-C exits 130 without a traceback."""

    def main(self, args: Optional[Any] = None, prog_name: Optional[str] = None, complete_var: Optional[str] = None,
             standalone_mode: bool = True, **extra: Any) -> Any:
        try:
            rv = super().main(args, prog_name, complete_var, standalone_mode=False, **extra)
            code = rv if isinstance(rv, int) and not isinstance(rv, bool) else EXIT_OK  # an Exit's code
        except _ClickException as err:
            message = one_line(err.format_message())
            if message:  # empty: a group called without a command has printed its help
                ctx = getattr(err, "ctx", None)
                where = f"{ctx.command_path}: " if ctx is not None else ""
                hint = f" (see '{ctx.command_path} --help')" if ctx is not None and err.exit_code == 2 else ""
                typer.echo(f"error: {where}{message}{hint}", err=True)
            code = err.exit_code
        except (typer.Abort, KeyboardInterrupt):  # typer < 0.2x turns Ctrl-C into Abort
            code = EXIT_INTERRUPTED
        if standalone_mode:
            sys.exit(code)
        return code


app = typer.Typer(
    cls=RootGroup,
    name="edgepilot",
    help="Edge-device deployment toolkit: simulate, train, export, serve and run offloading policies.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
)


def _version(value: bool) -> None:
    if value:
        typer.echo(f"edgepilot {__version__}")
        raise typer.Exit()


@app.callback()
def _root(
    version: bool = typer.Option(False, "--version", callback=_version, is_eager=True, help="Print the version and exit."),
) -> None:
    """edgepilot command line."""


def _register_all() -> None:
    for info in sorted(pkgutil.iter_modules(commands.__path__), key=lambda m: m.name):
        if info.name.startswith("_"):
            continue
        module = importlib.import_module(f"{commands.__name__}.{info.name}")
        module.register(app)
    _one_line_short_help(app)


def _one_line_short_help(group: typer.Typer) -> None:
    """A command list shows each command's first docstring paragraph with its hard line
    breaks kept; give every command (sub-groups included) that paragraph as one line for
    rich to wrap."""
    for cmd in group.registered_commands:
        if cmd.short_help is None and cmd.callback is not None:
            doc = cmd.help or inspect.getdoc(cmd.callback) or ""
            cmd.short_help = " ".join(doc.split("\n\n")[0].split()) or None
    for sub in group.registered_groups:
        if sub.typer_instance is not None:
            _one_line_short_help(sub.typer_instance)


_register_all()


def main() -> None:  # console-script entry point
    try:
        app()
    except KeyboardInterrupt:  # outside a command, e.g. while a command module imports
        sys.exit(EXIT_INTERRUPTED)


if __name__ == "__main__":
    main()
