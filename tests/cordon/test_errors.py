"""The errors drawing at the top of cordon/errors.py is the code: every class, where it
hangs, and the HTTP answer each one is."""

from __future__ import annotations

import re

import cordon.errors as errors

LINE = re.compile(r"^(?P<indent>[\s│├└─]*?)(?P<name>[A-Z]\w+)\b(?P<rest>.*)$")
ANSWER = re.compile(r"\b(?P<status>[1-5]\d\d) (?P<code>[a-z_]+)\b")


def _drawing() -> list[tuple[int, str, str]]:
    """(depth, class name, rest of the line) for each class the drawing names."""
    doc = errors.__doc__ or ""
    body = doc[doc.index("    CordonError") :]
    found = []
    for line in body.splitlines():
        match = LINE.match(line[4:])
        if match and not line.strip().startswith("..."):
            found.append((len(match.group("indent")) // 4, match.group("name"), match["rest"]))
    return found


def test_the_drawing_names_every_error_under_its_parent() -> None:
    drawn = _drawing()
    assert {name for _, name, _ in drawn} == {
        name for name in errors.__all__ if issubclass(getattr(errors, name), Exception)
    }
    parents: dict[int, str] = {}
    for depth, name, _ in drawn:
        parents[depth] = name
        if depth:
            cls = getattr(errors, name)
            assert cls.__bases__[0] is getattr(errors, parents[depth - 1]), name


def test_the_drawing_states_each_classs_own_http_answer() -> None:
    for _, name, rest in _drawing():
        cls = getattr(errors, name)
        answer = ANSWER.search(rest)
        declared = "status" in vars(cls)
        assert bool(answer) == declared, f"{name}: drawing and class disagree on an answer"
        if answer:
            assert (cls.status, cls.code) == (int(answer["status"]), answer["code"]), name


def test_an_error_that_says_nothing_of_its_own_is_the_servers_fault() -> None:
    assert (errors.ConfigError.status, errors.ConfigError.code) == (500, "internal_error")
    assert errors.ForbiddenError("x").status == 403
    timed_out = errors.NoTargetAvailableError("all failed", timed_out=True)
    assert (timed_out.status, timed_out.code) == (504, "upstream_timeout")
    assert errors.NoTargetAvailableError("all failed", timed_out=False).status == 502
