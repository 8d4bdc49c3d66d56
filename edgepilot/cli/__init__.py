"""The ``edgepilot`` command line.

Each module in :mod:`edgepilot.cli.commands` contributes its commands through a
``register(app)`` function; modules are discovered, so adding a command group never
touches this file. Command modules import their heavy dependencies (torch, onnx)
inside the command bodies, so ``edgepilot --help`` and the device-side commands work
on a board where only the base install is present.
"""

from __future__ import annotations

import importlib
import inspect
import pkgutil

import typer

from edgepilot import __version__
from edgepilot.cli import commands

app = typer.Typer(
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
    app()


if __name__ == "__main__":
    main()
