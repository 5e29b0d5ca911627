"""The command line explains itself: every command's --help (run for real) has a description, an example, and help
text for every option; metavars read as what they are; --version and user errors are one line."""

from __future__ import annotations

import argparse
import asyncio
import subprocess
import sys

import pytest
from factories import cameras_with_sessions, serving

from ingest.cli import build_config
from ingest.config import ServerConfig
from petstream.cli import build_parser

PETSTREAM = [sys.executable, "-m", "petstream.cli"]


def _commands(parser: argparse.ArgumentParser, path: tuple[str, ...] = ()) -> list[tuple[tuple[str, ...], object]]:
    """Every (command path, parser) under `parser`, with the one-line help its parent lists it with."""
    found = []
    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction):
            listed = {a.dest: a.help for a in action._choices_actions}
            for name, child in action.choices.items():
                found.append(((*path, name), child, listed.get(name)))
                found += _commands(child, (*path, name))
    return found


COMMANDS = _commands(build_parser())


def test_every_command_is_found():
    names = {" ".join(path) for path, _, _ in COMMANDS}
    assert {"serve", "camera", "demo", "golden", "compile", "train-sim", "bench", "bench inference"} <= names


@pytest.mark.parametrize("path,parser,listed", COMMANDS, ids=[" ".join(c[0]) for c in COMMANDS])
def test_help_of_every_command_explains_every_option(path, parser, listed):
    command = "petstream " + " ".join(path)
    out = subprocess.run([*PETSTREAM, *path, "--help"], capture_output=True, text=True, timeout=60)
    assert out.returncode == 0, f"{command} --help failed: {out.stderr}"
    text = out.stdout
    problems = []
    if not listed:
        problems.append(f"{command}: no one-line help in its parent's command list")
    if not parser.description:
        problems.append(f"{command}: no description")
    if "example" not in text.lower() or command not in (parser.epilog or ""):
        problems.append(f"{command}: no example in its help (epilog with a `petstream {' '.join(path)} ...` line)")
    for action in parser._actions:
        if not action.option_strings or isinstance(action, argparse._HelpAction):
            continue
        option = "/".join(action.option_strings)
        if action.help == argparse.SUPPRESS:
            continue
        if not (action.help or "").strip():
            problems.append(f"{command} {option}: no help text")
        if action.option_strings[-1] not in text:
            problems.append(f"{command} {option}: missing from --help output")
        takes_value = action.nargs != 0
        if takes_value and action.choices is None and action.metavar is None and "_" in action.dest:
            problems.append(
                f"{command} {option}: metavar {action.dest.upper()} leaks the internal name; give it one like FPS"
            )
    assert not problems, "\n".join(problems)


def test_defaults_are_shown():
    out = subprocess.run([*PETSTREAM, "camera", "--help"], capture_output=True, text=True, timeout=60)
    flat = " ".join(out.stdout.split())
    assert "server address (default: 127.0.0.1:50051)" in flat
    assert "(default: None)" not in flat
    demo = subprocess.run([*PETSTREAM, "demo", "--help"], capture_output=True, text=True, timeout=60)
    assert "(default: 90.0)" in " ".join(demo.stdout.split())
    serve = subprocess.run([*PETSTREAM, "serve", "--help"], capture_output=True, text=True, timeout=60)
    flat = " ".join(serve.stdout.split())
    assert "(default: sim-tiny)" in flat and "(default: rate)" in flat and "(default: 50051)" in flat


def test_version_is_one_line():
    out = subprocess.run([*PETSTREAM, "--version"], capture_output=True, text=True, timeout=60)
    assert out.returncode == 0
    assert out.stdout.strip().startswith("petstream ") and len(out.stdout.strip().splitlines()) == 1


@pytest.mark.parametrize(
    "argv,needle",
    [
        (["camera", "--clip", "/no/such/file.mp4"], "No such file or directory"),
        (["camera", "--target", "not an address", "--seconds", "1"], "not an address like 127.0.0.1:50051"),
        (["camera", "--rotate", "45"], "invalid choice"),
        (["camera", "--video-track", "1"], "--video-track needs --clip"),
        (["serve", "--model", "no-such-model", "--port", "0"], "no-such-model"),
        (
            ["serve", "--host", "999.1.1.1", "--insecure", "--port", "0", "--model", "tiny"],
            "cannot listen on 999.1.1.1:0",
        ),
        (["serve", "--config", "/no/such/config.json"], "No such file or directory"),
        (["demo", "--model", "no-such-model", "--seconds", "1"], "cannot load the model: model 'no-such-model'"),
        (["compile", "--model", "no-such-model", "--out", "/tmp/never"], "model 'no-such-model' is neither"),
    ],
    ids=[
        "missing-clip",
        "bad-address",
        "bad-rotation",
        "track-without-clip",
        "unknown-model",
        "bad-host",
        "no-config",
        "demo-unknown-model",
        "compile-unknown-model",
    ],
)
def test_user_errors_are_one_line_and_fail(argv, needle):
    out = subprocess.run([*PETSTREAM, *argv], capture_output=True, text=True, timeout=180)
    assert out.returncode != 0, out.stdout + out.stderr
    lines = [line for line in out.stderr.splitlines() if line.strip()]
    assert "Traceback" not in out.stderr, out.stderr
    assert needle in out.stderr, out.stderr
    errors = [line for line in lines if "usage:" not in line]
    assert len(errors) == 1, out.stderr


def test_sampling_flags_reach_the_server_config_and_the_stream(tiny_engine):
    assert build_config(build_parser().parse_args(["serve", "--sampling", "motion"])).default_sampling == "motion"
    assert build_config(build_parser().parse_args(["serve"])).default_sampling == "rate"

    async def camera(address: str) -> int:
        proc = await asyncio.create_subprocess_exec(
            *PETSTREAM, "camera", "--target", address, "--sampling", "keyframes", "--seconds", "2", "--speed", "0",
            "--width", "64", "--height", "48", "--device-id", "kf",
        )  # fmt: skip
        return await proc.wait()

    with serving(tiny_engine, ServerConfig(port=0)) as (address, server):
        (rc,), sessions = asyncio.run(cameras_with_sessions(server, [camera(address)]))
    assert rc == 0
    session = sessions["kf"]
    assert session.spec.sampling == "keyframes" and session.stats.not_decoded_by_policy > 0
