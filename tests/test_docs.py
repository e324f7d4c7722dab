"""The docs' promises point at tests that exist, and docs/deploy.md's steps are commands
and paths that exist: a platform engineer following it meets no renamed flag or file."""

from __future__ import annotations

import ast
import re
import shlex
from pathlib import Path

import pytest

from cordon_cli import build_parser

ROOT = Path(__file__).resolve().parent.parent
DOCS = sorted([ROOT / "README.md", *(ROOT / "docs").rglob("*.md")])
DEPLOY = ROOT / "docs" / "deploy.md"
TEST_REFERENCE = re.compile(r"tests/[\w/]+\.py(?:::\w+)?")
SHELL_VALUES = {"$R": "eu-west", "$place": "central"}


def _test_names(path: Path) -> set[str]:
    tree = ast.parse(path.read_text())
    return {n.name for n in ast.walk(tree) if isinstance(n, ast.FunctionDef | ast.AsyncFunctionDef)}


@pytest.mark.parametrize("doc", DOCS, ids=lambda p: str(p.relative_to(ROOT)))
def test_every_test_a_doc_names_exists(doc: Path) -> None:
    for reference in TEST_REFERENCE.findall(doc.read_text()):
        file, _, name = reference.partition("::")
        assert (ROOT / file).is_file(), reference
        if name:
            assert name in _test_names(ROOT / file), reference


def _shell_commands(text: str) -> list[str]:
    """Each command of the ```sh blocks, continuation lines joined, heredocs left out."""
    commands: list[str] = []
    for block in re.findall(r"```sh\n(.*?)```", text, re.DOTALL):
        block = re.sub(r"<<'EOF'\n.*?\nEOF\n", "\n", block, flags=re.DOTALL)
        for line in block.replace("\\\n", " ").splitlines():
            line = line.split(" #")[0].strip()
            if line and not line.startswith("#"):
                for name, value in SHELL_VALUES.items():
                    line = line.replace(name, value)
                commands.append(line)
    return commands


def test_every_cordon_command_in_the_deploy_guide_parses() -> None:
    cordon = [c for c in _shell_commands(DEPLOY.read_text()) if "cordon " in c]
    assert len(cordon) >= 10
    for command in cordon:
        words = shlex.split(command[command.index("cordon ") :].split(" > ")[0])
        try:
            build_parser().parse_args(words[1:])
        except SystemExit:
            pytest.fail(f"`{command}` is not a command cordon takes")


def test_every_repository_path_in_the_deploy_guide_exists() -> None:
    text = DEPLOY.read_text()
    paths = set(re.findall(r"\b((?:deploy|terraform|docs|tests)/[\w./<>-]*[\w>])", text))
    assert len(paths) >= 15
    for path in paths:
        if "<" in path:  # a pattern such as overlays/<place>/config: some place has it
            pattern = re.sub(r"<[^>]+>", "*", path)
            assert list(ROOT.glob(pattern)), path
        else:
            assert (ROOT / path).exists(), path
