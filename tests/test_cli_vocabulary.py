"""One command-line vocabulary and one exit-code table (README "Commands", "Exit codes").

The rules are checked on the click command tree typer builds, so a new command or
option is held to them without being listed here; bad input is checked through the
real console entry point (a subprocess), where a traceback would reach the user.
"""

from __future__ import annotations

import json
import subprocess
import sys
from collections import defaultdict

import pytest
import typer
from typer.testing import CliRunner

import edgepilot.cli
from edgepilot.cli import app
from edgepilot.cli.errors import EXIT_INTERRUPTED, EXIT_USAGE
from edgepilot.emulation.config import parse_host_port

ROOT = typer.main.get_command(app)


def _walk(cmd, path=()):
    subs = getattr(cmd, "commands", None)
    if subs:
        for name, sub in sorted(subs.items()):
            yield from _walk(sub, (*path, name))
    else:
        yield " ".join(path), cmd


COMMANDS = dict(_walk(ROOT))
OPTIONS = [(path, p) for path, cmd in [("", ROOT), *COMMANDS.items()] for p in cmd.params
           if isinstance(p, typer.core.TyperOption)]


def _longs(p):
    return [o for o in p.opts if o.startswith("--")]


def _shorts(p):
    return [o for o in p.opts if not o.startswith("--")]


def test_the_tree_is_walked():
    assert {"export", "emulate", "agent", "bundle verify", "bundle sign", "split infer", "demo", "flash"} <= set(COMMANDS)
    assert len(OPTIONS) > 100


@pytest.mark.parametrize("retired", ["--target", "--trusted-keys", "--key", "--broker-port", "--output"])
def test_retired_option_names_are_gone(retired):
    users = [path for path, p in OPTIONS if retired in p.opts + p.secondary_opts]
    assert not users, f"{retired} is still an option of: {users}"


def test_a_short_option_means_one_thing_everywhere():
    meaning = defaultdict(set)
    for _path, p in OPTIONS:
        for short in _shorts(p):
            meaning[short].add(tuple(_longs(p)))
    clashes = {s: sorted(m) for s, m in meaning.items() if len(m) > 1}
    assert not clashes
    assert meaning["-p"] == {("--profile",)} and meaning["-T"] == {("--trusted-key",)} and meaning["-o"] == {("--out",)}


def test_a_long_option_is_a_flag_everywhere_or_nowhere():
    """``edgepilot --version`` prints the version: a model version is ``--model-version``."""
    kinds = defaultdict(set)
    for _path, p in OPTIONS:
        for long in _longs(p):
            kinds[long].add(bool(p.is_flag))
    assert not [o for o, k in kinds.items() if len(k) > 1]


def test_trusted_keys_profiles_and_signing_keys_have_one_name():
    seen = defaultdict(list)
    for path, p in OPTIONS:
        if "trusted" in p.name:
            assert p.opts == ["--trusted-key", "-T"], (path, p.opts)
            seen["trusted"].append(path)
        if "profile" in p.name:
            assert p.opts == ["--profile", "-p"], (path, p.opts)
            seen["profile"].append(path)
        if p.name.endswith("key") and not p.is_flag and "trusted" not in p.name and "tls" not in p.name:
            assert _longs(p) in (["--signing-key"], ["--ssh-key"]), (path, p.opts)
            seen["key"].append(path)
    assert {"agent", "emulate", "bundle verify", "flash"} <= set(seen["trusted"])
    assert {"export", "agent", "emulate", "flash"} <= set(seen["profile"])
    assert {"export", "bundle sign"} <= set(seen["key"])
    for path in ("agent", "emulate", "bundle verify"):  # a set of keys to trust: repeatable
        (p,) = [p for c, p in OPTIONS if c == path and p.name == "trusted_key"]
        assert p.multiple, path


def test_every_broker_option_is_host_port():
    brokers = [(path, p) for path, p in OPTIONS if "--broker" in p.opts]
    assert {path for path, _ in brokers} >= {"agent", "emulate", "flash"}
    for path, p in brokers:
        assert "HOST:PORT" in (p.help or ""), path
        if p.default is not None:
            parse_host_port(p.default)
    kinds = [path for path, p in OPTIONS if "--broker-kind" in p.opts]
    assert kinds == ["emulate"]


def _edgepilot(*args, cwd=None):
    return subprocess.run([sys.executable, "-m", "edgepilot", *map(str, args)], capture_output=True, text=True,
                          timeout=120, cwd=cwd)


BAD_INPUT = [
    (("export", "missing.pt", "--profile", "laptop"), "checkpoint not found"),
    (("export", "missing.pt", "--target", "laptop"), "No such option: --target"),
    (("bundle", "verify", "missing.bundle", "-T", "missing.pub"), "bundle not found"),
    (("bundle", "sign", "missing.bundle", "--signing-key", "missing.key"), "missing.bundle"),
    (("emulate", "--edges", "99"), "--edges"),
    (("emulate", "--broker-kind", "external"), "--broker"),
    (("emulate", "--rounds", "many"), "--rounds"),
    (("emulate", "--set", "rounds"), "KEY=VALUE"),
    (("agent", "--ue-id", "ue-1", "--edge-id", "0", "--broker", "broker.lan"), "--broker"),
    (("simulate", "--policy", "clever"), "--policy"),
    (("scenario", "show", "fig99"), "fig99"),
    (("evaluate-round", "missing.json"), "missing.json"),
    (("serve", "--tls-cert", "cert.pem"), "--tls-key"),
    (("split", "bench", "--qualities", "0"), "--qualities"),
]


@pytest.mark.parametrize("args,fragment", BAD_INPUT, ids=[" ".join(a[:3]) for a, _ in BAD_INPUT])
def test_bad_input_exits_2_with_one_error_line(tmp_path, args, fragment):
    proc = _edgepilot(*args, cwd=tmp_path)
    assert proc.returncode == EXIT_USAGE, proc.stderr[-2000:]
    lines = proc.stderr.splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: ") and fragment in lines[0], proc.stderr
    assert "Traceback" not in proc.stdout + proc.stderr


def test_too_many_edge_servers_is_one_line_naming_the_option_and_its_bound(tmp_path):
    proc = _edgepilot("emulate", "--ues", "99", "--edges", "99", cwd=tmp_path)
    assert proc.returncode == EXIT_USAGE
    assert proc.stderr.splitlines() == ["error: --edges: Input should be less than or equal to 64 (got 99)"]
    assert not (tmp_path / "runs").exists()  # nothing was done


def test_bare_emulate_runs_the_shipped_dtac_policy(tmp_path):
    """No --bundle, no --trusted-key: the shipped DTAC bundle, signed on the spot."""
    proc = _edgepilot("emulate", "--ues", "2", "--rounds", "1", "--edges", "1", "--agent-procs", "0",
                      "--set", "plot=false", cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr[-3000:]
    summary = json.loads((tmp_path / "runs" / "emulate" / "summary.json").read_text())
    assert summary["config"]["policy"] == "dtac"
    assert summary["config"]["bundle"] == "runs/emulate/policy/dtac-laptop.bundle"  # what ran, signed here
    assert summary["rounds"] == 1 and summary["ues"] == 2 and summary["lost_decisions"] == 0
    assert (tmp_path / "runs" / "emulate" / "policy" / "dtac-laptop.bundle").is_file()
    assert "signing the shipped DTAC bundle" in proc.stderr


def test_ctrl_c_exits_130_without_a_traceback(monkeypatch):
    import edgepilot.hardware.profiles as profiles

    def interrupted(*a, **k):
        raise KeyboardInterrupt

    monkeypatch.setattr(profiles, "list_profiles", interrupted)
    res = CliRunner().invoke(app, ["profiles", "list"])
    assert res.exit_code == EXIT_INTERRUPTED and "Traceback" not in res.output
    # interrupted outside any command (while the command modules import): the entry point
    monkeypatch.setattr(edgepilot.cli, "app", interrupted)
    with pytest.raises(SystemExit) as exit_:
        edgepilot.cli.main()
    assert exit_.value.code == EXIT_INTERRUPTED
