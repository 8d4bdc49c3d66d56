"""Every `edgepilot` command has help text, and command lists show it as wrapped prose."""

from __future__ import annotations

import pytest
import typer
from typer.testing import CliRunner

from edgepilot.cli import app

runner = CliRunner()


def _commands(group: typer.Typer, prefix: tuple[str, ...] = ()):
    for cmd in group.registered_commands:
        yield (*prefix, cmd.name or cmd.callback.__name__.replace("_", "-")), cmd
    for sub in group.registered_groups:
        yield from _commands(sub.typer_instance, (*prefix, sub.name))


COMMANDS = list(_commands(app))


def test_every_group_is_walked():
    names = {path for path, _ in COMMANDS}
    assert ("export",) in names and ("split", "train") in names and ("bundle", "verify") in names
    assert len(names) == len(COMMANDS) >= 20


@pytest.mark.parametrize("path,cmd", COMMANDS, ids=[" ".join(p) for p, _ in COMMANDS])
def test_command_has_one_line_short_help_and_its_help_runs(path, cmd):
    assert cmd.short_help and "\n" not in cmd.short_help, f"{' '.join(path)}: {cmd.short_help!r}"
    result = runner.invoke(app, [*path, "--help"], env={"COLUMNS": "100"})
    assert result.exit_code == 0, result.output
    assert " ".join(cmd.short_help.split()[:4]) in " ".join(result.output.split())


def test_command_list_wraps_the_first_paragraph():
    """`split train`'s docstring breaks its first line after "only),"; the list must not."""
    result = runner.invoke(app, ["split", "--help"], env={"COLUMNS": "80"})
    assert result.exit_code == 0
    row = next(line for line in result.output.splitlines() if "(validation split only)," in line)
    assert "export each" in row, result.output
