"""Check a pack document against the shipped JSON Schema and the gateway's own rules.

Every problem is reported as `file:line: path: message`, never as a traceback, so a
policy owner can fix a pack from the message alone. Used by `cordon policy lint`,
`sign` and `publish`; the gateway itself re-checks what it enforces when it
activates a pack, without loading jsonschema.

A long-running process that checks files (a sidecar, at start and on each reload)
calls `check_apart()`: the schema is then checked in a forked child, so jsonschema and
what it builds (about 4 MB resident) never stay in the server.
"""

from __future__ import annotations

import json
import os
import sys
import warnings
from dataclasses import dataclass
from importlib import resources
from pathlib import Path
from typing import Any

import yaml

from cordon import packs
from cordon.errors import DocumentError, PackError, UnreadablePackError
from cordon.packs import config_file

_apart = False  # check the schema in a child process (check_apart)
SchemaErrors = list[tuple[list[str | int], str]]  # (path in the document, message)


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


class _NoAliases(yaml.SafeLoader):
    """YAML without aliases (`*name`): a few hundred bytes of nested aliases expand to
    billions of nodes (a "billion laughs"), and a policy file needs none."""

    def compose_node(self, parent: Any, index: Any) -> Any:
        if self.check_event(yaml.AliasEvent):
            event = self.peek_event()  # type: ignore[no-untyped-call]
            raise yaml.composer.ComposerError(
                None, None, "aliases (*name) are not accepted here", event.start_mark
            )
        return super().compose_node(parent, index)


def load(path: Path) -> tuple[Any, yaml.Node | None]:
    """The document and its YAML node tree (for line numbers); PackError if unreadable."""
    try:
        text = path.read_text()
    except OSError as exc:
        raise UnreadablePackError(f"cannot read: {exc.strerror}") from exc
    return parse_text(text)


def parse_text(text: str) -> tuple[Any, yaml.Node | None]:
    """`load`'s reading of a file's text: refused (`UnreadablePackError` with its line)
    if it is not YAML or uses aliases."""
    try:
        return yaml.load(text, Loader=_NoAliases), yaml.compose(text, Loader=_NoAliases)
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
    errors = _schema_errors(document)
    problems = [
        Problem(file, _line(tree, path), _dotted(path), message)
        for path, message in sorted(errors, key=lambda e: list(map(str, e[0])))
    ]
    if problems:
        return problems
    try:
        packs.parse_document(document)
    except PackError as exc:
        path = list(exc.path) if isinstance(exc, DocumentError) else []
        return [Problem(file, _line(tree, path), _dotted(path), str(exc))]
    return []


def check_apart() -> None:
    """From now on, check the schema in a forked child while jsonschema is not loaded
    here (a server process calls this before it checks its first file)."""
    global _apart
    _apart = True


def _schema_errors(document: Any) -> SchemaErrors:
    if _apart and "jsonschema" not in sys.modules and hasattr(os, "fork"):
        found = _schema_errors_in_child(document)
        if found is not None:
            return found
    return _schema_errors_here(document)


def _schema_errors_here(document: Any) -> SchemaErrors:
    import jsonschema

    validator = jsonschema.Draft202012Validator(schema())
    errors = [_deepest(e) for e in validator.iter_errors(document)]
    return [(list(e.absolute_path), _message(e)) for e in errors]


CHILD_TIMEOUT_S = 10.0  # a child that does not answer by then is killed, the check done here


def _schema_errors_in_child(document: Any) -> SchemaErrors | None:
    """The schema errors as a forked child finds them; None if it could not say (the
    caller then checks here): no fork (no memory, a limit), a child that hangs (a lock
    another thread held at the fork) or cannot be waited for (SIGCHLD ignored)."""
    read, write = os.pipe()
    try:
        with warnings.catch_warnings():
            # Python 3.12 warns of forking a threaded process (an application governed
            # in-process): the child only checks this one document and leaves, by _exit.
            warnings.simplefilter("ignore", DeprecationWarning)
            pid = os.fork()
    except OSError:
        os.close(read)
        os.close(write)
        return None
    if pid == 0:  # the child: answer on the pipe, then leave without running any cleanup
        code = 1
        try:
            os.close(read)
            with os.fdopen(write, "wb") as out:
                out.write(json.dumps(_schema_errors_here(document)).encode())
            code = 0
        finally:
            os._exit(code)
    os.close(write)
    data = _read_within(read, CHILD_TIMEOUT_S)
    _reap(pid, killed=data is None)
    if data is None:
        return None
    try:
        return [(list(path), str(message)) for path, message in json.loads(data)]
    except ValueError:  # the child died mid-answer
        return None


def _read_within(fd: int, timeout: float) -> bytes | None:
    """All of `fd` until EOF, or None if it does not end within `timeout` seconds."""
    import select
    import time

    deadline = time.monotonic() + timeout
    chunks: list[bytes] = []
    try:
        while True:
            left = deadline - time.monotonic()
            if left <= 0 or not select.select([fd], [], [], left)[0]:
                return None
            chunk = os.read(fd, 65536)
            if not chunk:
                return b"".join(chunks)
            chunks.append(chunk)
    finally:
        os.close(fd)


def _reap(pid: int, killed: bool) -> None:
    import signal

    try:
        if killed:
            os.kill(pid, signal.SIGKILL)
        os.waitpid(pid, 0)
    except (ChildProcessError, ProcessLookupError):  # SIGCHLD ignored: reaped already
        pass


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
        text = path.read_text()
    except OSError as exc:
        return None, [Problem(str(path), None, "", f"cannot read: {exc.strerror}")]
    return check_text(text, str(path))


def check_text(text: str, file: str) -> tuple[Any, list[Problem]]:
    """The document in `text` (read from `file`) and its problems, as `check_file`."""
    try:
        document, tree = parse_text(text)
    except UnreadablePackError as exc:
        return None, [Problem(file, exc.line, "", str(exc))]
    return document, check(document, file, tree)
