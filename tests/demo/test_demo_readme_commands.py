"""Every `midas ...` and `make ...` command the README shows exists: each `midas` command path
answers `--help`, its options and arguments parse as written, and each make target has a rule."""

from __future__ import annotations

import re
import shlex
import subprocess

import typer

from midas.cli import app, main

_ENV_ASSIGNMENT = re.compile(r"^[A-Z_][A-Z0-9_]*=\S*$")
_REDIRECTION = re.compile(r"^(\d?>>?|<|&>)")


def readme_commands(text: str) -> list[list[str]]:
    """The command lines of the README's code blocks, as argument lists starting with midas or make."""
    commands: list[list[str]] = []
    in_block = False
    for line in text.splitlines():
        if line.strip().startswith("```"):
            in_block = not in_block
            continue
        if not in_block:
            continue
        for part in re.split(r"\s*(?:&&|\|\||;|\|)\s*", line.strip().removeprefix("$ ")):
            try:
                words = shlex.split(part, comments=True)
            except ValueError:
                continue
            cut = [i for i, w in enumerate(words) if _REDIRECTION.match(w)]
            words = words[:cut[0]] if cut else words          # `> out.csv` belongs to the shell
            while words and _ENV_ASSIGNMENT.match(words[0]):
                words = words[1:]
            if words and words[0] in (".venv/bin/midas", "$(BIN)/midas"):
                words[0] = "midas"
            if words and words[0] in ("midas", "make"):
                commands.append(words)
    return commands


def resolve(words: list[str]):
    """(command path, command object, remaining arguments) of `midas ...` words. (Typer 0.29 carries
    its own copy of click, so groups are recognised by their `commands`, not by class.)"""
    command = typer.main.get_command(app)
    path: list[str] = []
    rest = words[1:]
    while rest and isinstance(getattr(command, "commands", None), dict) and rest[0] in command.commands:
        command = command.commands[rest[0]]
        path.append(rest.pop(0))
    return path, command, rest


def test_readme_parsing_finds_the_commands():
    text = ("x\n```bash\nmake demo   # run it\nDEMO_DATA_DIR=d make demo-real\nmidas doctor && midas inspect\n"
            "$ .venv/bin/midas query \"SELECT 1 -- x\" > out.csv 2>&1\n```\nmidas notacommand outside a block\n")
    assert readme_commands(text) == [["make", "demo"], ["make", "demo-real"], ["midas", "doctor"],
                                     ["midas", "inspect"], ["midas", "query", "SELECT 1 -- x"]]


def test_every_readme_command_exists(repo_root, capsys):
    commands = readme_commands((repo_root / "README.md").read_text(encoding="utf-8"))
    midas_commands = [c for c in commands if c[0] == "midas"]
    make_targets = sorted({c[1] for c in commands if c[0] == "make" and len(c) > 1 and not c[1].startswith("-")})
    # the demo section's own commands are among them
    assert ["midas", "doctor"] in midas_commands and ["make", "demo-real"] in commands
    assert {"demo", "demo-real"} <= set(make_targets)

    missing, bad_args, helped = [], [], set()
    for words in midas_commands:
        path, command, rest = resolve(words)
        if not path:
            missing.append(" ".join(words))
            continue
        if tuple(path) not in helped:
            assert main([*path, "--help"]) == 0, f"`midas {' '.join(path)} --help` failed"
            helped.add(tuple(path))
        if rest == ["--help"]:
            continue
        try:
            command.make_context(" ".join(["midas", *path]), list(rest), resilient_parsing=False)
        except Exception as e:      # the CLI framework's usage errors (unknown option, missing argument)
            if not hasattr(e, "format_message"):
                raise
            bad_args.append(f"{' '.join(words)}: {e.format_message()}")
    capsys.readouterr()
    assert missing == [], f"README shows midas commands that do not exist: {missing}"
    assert bad_args == [], f"README shows options or arguments the commands reject: {bad_args}"

    for target in make_targets:
        proc = subprocess.run(["make", "-n", target], cwd=repo_root, capture_output=True, text=True, timeout=60)
        assert proc.returncode == 0 and "No rule to make target" not in proc.stderr, \
            f"README shows `make {target}`, which the Makefile lacks: {proc.stderr.strip()}"
