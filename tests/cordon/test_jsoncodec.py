"""The one JSON reader: what it accepts, the record codec encodes; what it refuses is an
`UnreadableJSONError` (a ValueError), never another exception."""

from __future__ import annotations

import json
from typing import Any

import msgpack
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from cordon import jsoncodec
from cordon.errors import UnreadableJSONError
from tests.hostile import hostile_values, text_of

REFUSED = {
    "nesting beyond the stack": b'{"messages":' + b"[" * 100_000 + b"]" * 100_000 + b"}",
    "nesting beyond the limit asked": b'{"a":' + b"[" * 65 + b"]" * 65 + b"}",
    "escaped lone high surrogate": b'{"content":"x\\ud800y"}',
    "escaped lone low surrogate": b'{"model":"mock\\udc00"}',
    "surrogate as CESU bytes": b'{"content":"x\xed\xa0\x80y"}',
    "invalid UTF-8": b'{"content":"\xff"}',
    "integer beyond a double": b'{"content":1' + b"0" * 400 + b"}",
    "float beyond a double": b'{"content":1e400}',
    "NaN": b'{"content":NaN}',
    "repeated key": b'{"content":"a","content":"b"}',
    "repeated key, nested": b'{"m":[{"role":"user","content":"a","role":"system"}]}',
    "repeated key, spelled with an escape": b'{"a":1,"\\u0061":2}',
    "repeated key, around colons in strings": b'{"u":"http://x","t":"12:30","u":"y"}',
    "repeated key, spaced from its colon": b'{"a":"x:y","a" :2}',
    "repeated key, after a newline": b'{"a":"x:y",\n"a"\n:2}',
}


@pytest.mark.parametrize("body", REFUSED.values(), ids=REFUSED.keys())
def test_what_the_rest_of_the_pipeline_could_not_handle_is_refused(body: bytes) -> None:
    with pytest.raises(UnreadableJSONError):
        jsoncodec.loads(body, max_depth=64)


def test_refusals_are_value_errors_for_callers_that_read_provider_text() -> None:
    assert issubclass(UnreadableJSONError, ValueError)


def test_ordinary_json_reads_as_before() -> None:
    body = b'{"u":"http://x:1","t":"12:30","k":{"q":"\\":"},"n":[1,2.5,null,true]}'
    assert jsoncodec.loads(body) == json.loads(body)
    assert jsoncodec.loads('{"a": "\\ud83d\\ude00"}') == {"a": "\U0001f600"}  # a real pair
    assert jsoncodec.loads(b"[" * 64 + b"]" * 64, max_depth=64) is not None


@settings(max_examples=400, deadline=None)
@given(hostile_values(), st.booleans())
def test_whatever_the_reader_accepts_the_record_codec_encodes(value: Any, ascii: bool) -> None:
    text = text_of(value, ascii).encode("utf-8", "surrogatepass")
    try:
        parsed = jsoncodec.loads(text)
    except UnreadableJSONError:
        return
    record = {"content": {"prompt": parsed}, "model": parsed if isinstance(parsed, str) else ""}
    assert msgpack.unpackb(msgpack.packb(record)) == record


_KEYS = st.sampled_from(["a", "b", "c", "d"])
_TEXT = st.text(alphabet=st.sampled_from(list('ab: "\\')), max_size=6)
_COLONS = st.sampled_from([":", " :", ": ", "\n:"])


@settings(max_examples=300, deadline=None)
@given(st.lists(st.tuples(_KEYS, _TEXT, _COLONS), min_size=1, max_size=6))
def test_a_repeated_key_is_refused_however_the_text_is_spaced(
    members: list[tuple[str, str, str]],
) -> None:
    """The count of keys written (colons outside strings, whatever the spacing and
    escapes) refuses a repeated key and nothing else."""
    text = "{" + ",".join(f"{json.dumps(k)}{colon}{json.dumps(v)}" for k, v, colon in members) + "}"
    repeated = len({key for key, _, _ in members}) < len(members)
    if repeated:
        with pytest.raises(UnreadableJSONError):
            jsoncodec.loads(text.encode())
    else:
        assert jsoncodec.loads(text.encode()) == json.loads(text)
