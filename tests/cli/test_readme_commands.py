"""Every `casebook fit|validate|test|predict` command the README shows parses against today's
CLI (`--print_config`: options, types, Literal choices and config files are checked, nothing is
built or run), so the README cannot drift from the command line again; and every test the README
cites (its claims tables: faults, checklist switches) exists."""

import contextlib
import io
import re
import shlex
from pathlib import Path

import pytest

from casebook.cli import CasebookCLI

REPO = Path(__file__).resolve().parents[2]
SUBCOMMANDS = ("fit", "validate", "test", "predict")


def readme_commands() -> list[str]:
    """`casebook <subcommand> ...` lines inside the README's code blocks, comments removed."""
    commands, in_block = [], False
    text = (REPO / "README.md").read_text().replace("\\\n", " ")  # shell line continuations
    for line in text.splitlines():
        if line.startswith("```"):
            in_block = not in_block
            continue
        line = re.sub(r"\s+#.*$", "", line.strip())
        words = line.split()
        command = len(words) > 1 and words[0] == "casebook" and words[1] in SUBCOMMANDS
        placeholder = "<" in line or "..." in line  # a value the user fills in
        if in_block and command and not placeholder:
            commands.append(line)
    return commands


COMMANDS = readme_commands()


def test_the_readme_shows_commands_of_every_task():
    configs = {m for c in COMMANDS for m in re.findall(r"configs/(\w+)\.yaml", c)}
    assert {"ppo_trader", "speech_teacher", "step_aligner"} <= configs, configs


@pytest.mark.parametrize("command", COMMANDS)
def test_a_readme_command_parses(command, monkeypatch, tmp_path):
    monkeypatch.chdir(REPO)
    monkeypatch.setenv("CASEBOOK_CACHE", str(tmp_path / "cache"))
    args = shlex.split(command)[1:]
    out = io.StringIO()
    with contextlib.redirect_stdout(out), pytest.raises(SystemExit) as exit:
        CasebookCLI(args=[*args, "--print_config"])
    assert exit.value.code in (0, None), out.getvalue()[-2000:]
    assert "class_path" in out.getvalue()  # the resolved config was printed


def cited_tests() -> list[str]:
    """The `tests/...` the README cites: a file or a glob, `::test_name` optional."""
    return sorted(set(re.findall(r"`(tests/[^`\s]+)`", (REPO / "README.md").read_text())))


def test_the_readme_cites_tests():
    assert any("::" in cited for cited in cited_tests())


@pytest.mark.parametrize("cited", cited_tests())
def test_every_test_the_readme_cites_exists(cited):
    pattern, _, name = cited.partition("::")
    files = sorted(path for path in REPO.glob(pattern) if path.suffix == ".py")
    assert files, f"the README cites {pattern}: no such test file"
    if name:
        defined = re.compile(rf"^def {re.escape(name)}\(", re.M)
        assert any(defined.search(path.read_text()) for path in files), (
            f"the README cites {cited}: no such test in {pattern}"
        )
