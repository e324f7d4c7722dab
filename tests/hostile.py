"""Hostile JSON, as an attacker writes it: Hypothesis strategies for documents no
encoder would produce (lone surrogates escaped or as CESU bytes, numbers beyond a
double, NaN, keys written twice, deep nesting) and for request bodies of every route
that carry them where the gateway looks: the model, the prompt, `stream`, `max_tokens`."""

from __future__ import annotations

import json
from typing import Any

from hypothesis import strategies as st

__all__ = ["ROUTES", "Obj", "hostile_values", "request_bodies", "text_of"]

# The call routes and the key each keeps its prompt under.
ROUTES = {
    "/v1/chat/completions": "messages",
    "/v1/responses": "input",
    "/v1/embeddings": "input",
    "/v1/messages": "messages",
}


class Obj(list[tuple[str, Any]]):
    """A JSON object as its pairs, in order, so a key can be written twice."""


_STRINGS = st.text(st.characters(codec=None, exclude_categories=()), max_size=12)
_SCALARS = (
    st.none()
    | st.booleans()
    | st.integers(min_value=-(2**70), max_value=2**70)
    | st.floats(allow_nan=True, allow_infinity=True)
    | st.sampled_from([10**400, 1e308 * 10, -(2**64)])
    | _STRINGS
)


def hostile_values(max_leaves: int = 20) -> st.SearchStrategy[Any]:
    keys = st.sampled_from(["a", "b", "\ud800", "content"])
    return st.recursive(
        _SCALARS,
        lambda inner: (
            st.lists(inner, max_size=4) | st.lists(st.tuples(keys, inner), max_size=4).map(Obj)
        ),
        max_leaves=max_leaves,
    )


def text_of(value: Any, ascii_only: bool = True) -> str:
    """`value` as JSON text, whatever it holds (big numbers, NaN and lone surrogates are
    written as `json` writes them; `Obj` keeps repeated keys)."""
    if isinstance(value, Obj):
        pairs = (
            json.dumps(k, ensure_ascii=ascii_only) + ":" + text_of(v, ascii_only) for k, v in value
        )
        text = "{" + ",".join(pairs) + "}"
    elif isinstance(value, list):
        text = "[" + ",".join(text_of(v, ascii_only) for v in value) + "]"
    else:
        text = json.dumps(value, ensure_ascii=ascii_only)
    return text


def _prompt(key: str) -> st.SearchStrategy[Any]:
    content = _STRINGS | hostile_values(8)
    roles = st.sampled_from(["user", "system", "assistant", "x"])
    message = st.builds(lambda role, c: Obj([("role", role), ("content", c)]), roles, content)
    return st.lists(message, min_size=1, max_size=3) if key == "messages" else content


@st.composite
def request_bodies(draw: st.DrawFn) -> tuple[str, bytes]:
    """(path, body) for one call route: mostly a request of its shape with something
    hostile somewhere, sometimes bytes that are not JSON at all, and one in five a
    request the route serves (so the well-formed path is always among those tried)."""
    path = draw(st.sampled_from(sorted(ROUTES)))
    kind = draw(st.integers(0, 9))
    if kind == 0:
        return path, draw(st.binary(max_size=64))
    if kind <= 2:
        return path, _served(path, draw(st.text(max_size=40).filter(str.strip)))
    model = draw(st.sampled_from(["mock-gpt", "mock-claude", "mock-embed", "nope"]) | _STRINGS)
    pairs = [("model", model), (ROUTES[path], draw(_prompt(ROUTES[path])))]
    if draw(st.booleans()):
        pairs.append(("stream", draw(st.booleans() | _SCALARS)))
    if path == "/v1/messages":
        pairs.append(("max_tokens", draw(st.just(16) | _SCALARS)))
    if draw(st.integers(0, 4)) == 0:  # a key written twice
        pairs.append(draw(st.sampled_from(pairs)))
    text = text_of(Obj(pairs), ascii_only=draw(st.booleans()))
    if draw(st.integers(0, 9)) == 0:
        text = text_of(Obj([("model", "mock-gpt"), ("messages", [])])).replace(
            "[]", "[" * 2000 + "]" * 2000
        )
    return path, text.encode("utf-8", "surrogatepass")


def _served(path: str, text: str) -> bytes:
    """A request `path` serves (the mock's models), with `text` as its prompt."""
    if path == "/v1/messages":
        body = {
            "model": "mock-claude",
            "max_tokens": 16,
            "messages": [{"role": "user", "content": text}],
        }
    elif path == "/v1/chat/completions":
        body = {"model": "mock-gpt", "messages": [{"role": "user", "content": text}]}
    else:
        body = {"model": "mock-embed" if path == "/v1/embeddings" else "mock-gpt", "input": text}
    return json.dumps(body).encode()
