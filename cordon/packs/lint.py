"""Check a pack document against the shipped JSON Schema and the gateway's own rules.

Every problem is reported as `file:line: path: message`, never as a traceback, so a
policy owner can fix a pack from the message alone. Used by `cordon policy lint`,
`sign` and `publish`; the gateway itself re-checks what it enforces when it
activates a pack, without loading jsonschema.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from importlib import resources
from pathlib import Path
from typing import Any

import yaml

from cordon import packs
from cordon.errors import DocumentError, PackError, UnreadablePackError
from cordon.packs import config_file


@dataclass(frozen=True)
class Problem:
    file: str
    line: int | None
    path: str
    message: str

    def __str__(self) -> str:
        where = f"{self.file}:{self.line}" if self.line else self.file
        return f"{where}: {self.path}: {self.message}" if self.path else f"{where}: {self.message}"


def schema() -> dict[str, Any]:
    text = resources.files("cordon.packs").joinpath("schema/pack.schema.json").read_text()
    loaded: dict[str, Any] = json.loads(text)
    return loaded


def load(path: Path) -> tuple[Any, yaml.Node | None]:
    """The document and its YAML node tree (for line numbers); PackError if unreadable."""
    try:
        text = path.read_text()
    except OSError as exc:
        raise UnreadablePackError(f"cannot read: {exc.strerror}") from exc
    try:
        return yaml.safe_load(text), yaml.compose(text, Loader=yaml.SafeLoader)
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        problem = f"not valid YAML: {getattr(exc, 'problem', None) or exc}"
        raise UnreadablePackError(problem, mark.line + 1 if mark is not None else None) from exc


def _line(node: yaml.Node | None, path: list[str | int]) -> int | None:
    """The line of the YAML node at `path`, or of the nearest ancestor that exists."""
    line = node.start_mark.line + 1 if node is not None else None
    for step in path:
        if isinstance(node, yaml.MappingNode):
            node = next((v for k, v in node.value if k.value == step), None)
        elif (
            isinstance(node, yaml.SequenceNode) and isinstance(step, int) and step < len(node.value)
        ):
            node = node.value[step]
        else:
            node = None
        if node is None:
            break
        line = node.start_mark.line + 1
    return line


def _dotted(path: list[str | int]) -> str:
    out = ""
    for step in path:
        out += f"[{step}]" if isinstance(step, int) else (f".{step}" if out else str(step))
    return out


def check(document: Any, file: str, tree: yaml.Node | None = None) -> list[Problem]:
    """Schema problems first; if there are none, what the gateway itself would refuse.

    A configuration file (a `gateway:` block, or a pack without `pack:`, as the seeds
    print them) has its block checked as the sidecar checks it at start-up, and its
    pack named after the file; a file holding only a block is a fragment."""
    if isinstance(document, dict) and ("gateway" in document or "pack" not in document):
        try:
            gateway, document = config_file.split(document, file)
            config_file.check_gateway(gateway)
        except DocumentError as exc:
            return [Problem(file, _line(tree, list(exc.path)), _dotted(list(exc.path)), str(exc))]
        if not document:
            return []  # a fragment: only settings, merged into a configuration file
    return _check_pack(document, file, tree)


def _check_pack(document: Any, file: str, tree: yaml.Node | None) -> list[Problem]:
    import jsonschema

    validator = jsonschema.Draft202012Validator(schema())
    errors = [_deepest(e) for e in validator.iter_errors(document)]
    problems = [
        Problem(
            file, _line(tree, list(e.absolute_path)), _dotted(list(e.absolute_path)), _message(e)
        )
        for e in sorted(errors, key=lambda e: list(map(str, e.absolute_path)))
    ]
    if problems:
        return problems
    try:
        packs.parse_document(document)
    except PackError as exc:
        path = list(exc.path) if isinstance(exc, DocumentError) else []
        return [Problem(file, _line(tree, path), _dotted(path), str(exc))]
    return []


def _deepest(error: Any) -> Any:
    """For oneOf/anyOf, the alternative's error that got furthest into the document."""
    while error.context:
        error = max(error.context, key=lambda e: len(list(e.absolute_path)))
    return error


def _message(error: Any) -> str:
    if error.validator == "additionalProperties":
        return str(error.message).replace("Additional properties are not allowed", "unknown key")
    return str(error.message)


def check_file(path: Path) -> tuple[Any, list[Problem]]:
    try:
        document, tree = load(path)
    except UnreadablePackError as exc:
        return None, [Problem(str(path), exc.line, "", str(exc))]
    return document, check(document, str(path), tree)
