"""The README's `lvm` command lines parse: every command and option it shows exists and takes the values it is
given (choices included), so the README cannot drift from the command line unnoticed. (The commands that do real
work are run by the tests of their own subject and by `make e2e`; this reads every one of them.)"""

import re
import shlex

import pytest
import typer
from conftest import ROOT

from flows.cli import app


def readme_commands() -> list[list[str]]:
    lines = []
    for line in (ROOT / "README.md").read_text().splitlines():
        m = re.match(r"\s*\.venv/bin/lvm (.*)", line)
        if not m:
            continue
        text = m.group(1).split("  #")[0].split(" # ")[0].strip()
        for part in text.split(" | "):  # "registry ls | show production | promote v3": several commands on one line
            words = shlex.split(part)
            if lines and words and words[0] not in ROOT_COMMANDS:
                words = [lines[-1][0], *words]  # "show production" continues "registry ..."
            lines.append(words)
    return lines


ROOT_COMMANDS = set(typer.main.get_command(app).commands)


@pytest.mark.parametrize("words", readme_commands(), ids=lambda w: " ".join(w)[:60])
def test_every_lvm_command_in_the_readme_parses(words):
    cmd, rest = typer.main.get_command(app), list(words)
    while hasattr(cmd, "commands"):  # a group (typer vendors its own click: no isinstance with click.Group)
        assert rest and rest[0] in cmd.commands, f"no command {rest[:1]} in {sorted(cmd.commands)}"
        cmd, rest = cmd.commands[rest[0]], rest[1:]
    cmd.make_context(cmd.name, rest)  # raises for an unknown option, a wrong choice or a missing required value


def test_the_readme_shows_the_commands_of_the_loop():
    shown = {" ".join(w[:2]) for w in readme_commands()}
    assert {"run", "registry register", "train --data", "diagnose data/runs/<run-name>"} & shown
    assert len(readme_commands()) >= 15
