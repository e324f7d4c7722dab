"""Calls to providers whose wire the gateway translates (Bedrock's Converse, Gemini's
generateContent; Azure OpenAI's chat completions for a caller of Anthropic's API), for
callers of either API: an OpenAI chat completion or embedding request, or an Anthropic
message, goes out in the provider's shape, and its answer, stream or error comes back
in the caller's. The pack's rules run on the caller's
shape on both sides (`gateway.http.calls`), so every field of the translated traffic
passes them; nothing here decides anything.

A stream is translated event by event (`gateway.upstream.steps`), never gathered
first; a whole answer is read (up to MAX_TRANSLATED) and written back at once.
"""

from __future__ import annotations

import base64
import struct
from collections.abc import AsyncIterator, Awaitable, Callable, Mapping
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from cordon import jsoncodec
from cordon.errors import (
    HttpClientError,
    PackError,
    ResponseTooLargeError,
    UpstreamError,
    UpstreamTooLargeError,
)
from gateway.upstream import bedrock, gemini, httpclient, messages, openai_chat
from gateway.upstream.providers import AZURE, BEDROCK, GEMINI, SERVICE_ACCOUNT, Target
from gateway.upstream.response import UpstreamResponse
from gateway.upstream.steps import ChatChunks, MessageEvents, Step, Writer

if TYPE_CHECKING:  # loaded on a service account's first call: most replicas use none
    from gateway.upstream.google_auth import ServiceAccountTokens

__all__ = ["MAX_TRANSLATED", "Streamed", "Translator", "Whole", "credential_urls"]

MAX_TRANSLATED = 16 * 1024 * 1024  # a translated answer is read whole first
MAX_STREAMED = 64 * 1024 * 1024  # a translated stream, as the provider sends it
MAX_TEXTS = 2048  # texts in one embeddings call, as OpenAI's own API allows

Post = Callable[[Target, str, bytes, Mapping[str, str]], Awaitable[httpclient.Response]]
Auth = Callable[[Target, Mapping[str, str]], dict[str, str]]  # an OpenAI-wire target's headers
TRACE_HEADERS = ("traceparent", "tracestate")  # W3C trace context travels on


class Whole(UpstreamResponse):
    """A provider's answer already read and put in the caller's API shape: the same
    surface as `UpstreamResponse`."""

    def __init__(self, status: int, body: bytes, retry_after: str | None = None) -> None:
        self.status = status  # no connection behind it
        self.headers = {"content-type": "application/json"}
        if retry_after is not None:  # the provider's, for the caller and the breaker's rest
            self.headers["retry-after"] = retry_after
        self._body = body

    async def read(self, limit: int | None = None) -> bytes:
        if limit is not None and len(self._body) > limit:
            raise UpstreamTooLargeError(f"provider answer exceeds {limit} bytes")
        return self._body

    async def chunks(self) -> AsyncIterator[bytes]:
        yield self._body

    def close(self) -> None:
        return None

    def release(self) -> None:
        return None


class Streamed(UpstreamResponse):
    """A provider's stream, written in the caller's stream shape step by step."""

    def __init__(
        self,
        response: httpclient.Response,
        read: Callable[[AsyncIterator[bytes]], AsyncIterator[Step]],
        writer: Writer,
    ) -> None:
        super().__init__(response)
        self.headers = {"content-type": "text/event-stream"}
        self._read, self._writer = read, writer

    async def chunks(self) -> AsyncIterator[bytes]:
        async for step in self._read(self._received()):
            yield self._writer.write(step)

    async def _received(self) -> AsyncIterator[bytes]:
        """The provider's bytes, capped: events the translation passes over write
        nothing, so the caller's stream limit alone would never stop them."""
        total = 0
        async for chunk in super().chunks():
            total += len(chunk)
            if total > MAX_STREAMED:
                raise UpstreamError(f"the provider's stream exceeded {MAX_STREAMED} bytes")
            yield chunk


@dataclass(frozen=True)
class Caller:
    """How the caller speaks: its request as a chat request, a chat completion in its
    shape, its stream writer, and its error body."""

    chat: Callable[[dict[str, Any]], dict[str, Any]]
    answer: Callable[[dict[str, Any]], dict[str, Any]]
    writer: Callable[[str], Writer]
    error: Callable[[int, str], bytes]


def openai_error(status: int, message: str) -> bytes:
    kind = "invalid_request_error" if status < 500 else "api_error"
    return jsoncodec.dumps(
        {"error": {"message": message, "type": kind, "param": None, "code": None}}
    )


def anthropic_error(status: int, message: str) -> bytes:
    kind = "invalid_request_error" if status < 500 else "api_error"
    return jsoncodec.dumps({"type": "error", "error": {"type": kind, "message": message}})


CALLERS = {
    "/chat/completions": Caller(lambda chat: chat, lambda done: done, ChatChunks, openai_error),
    "/messages": Caller(messages.to_chat, messages.from_completion, MessageEvents, anthropic_error),
}


@dataclass(frozen=True)
class Wire:
    """A translated provider: its name, its request and answer translations, where a
    call goes, and how its stream reads as steps."""

    name: str
    request: Callable[[dict[str, Any]], dict[str, Any]]
    answer: Callable[[dict[str, Any], str], dict[str, Any]]
    url: Callable[[Target, str, bool], str]
    steps: Callable[[AsyncIterator[bytes]], AsyncIterator[Step]]


WIRES = {
    BEDROCK: Wire(
        "Bedrock",
        bedrock.to_converse,
        bedrock.from_converse,
        lambda target, model, stream: bedrock.url(target.base_url, model, stream),
        bedrock.steps,
    ),
    GEMINI: Wire(
        "Gemini",
        gemini.to_gemini,
        gemini.from_gemini,
        lambda target, model, stream: gemini.url(target.base_url, model, stream),
        gemini.steps,
    ),
    AZURE: Wire(
        "Azure OpenAI",
        openai_chat.request,
        openai_chat.answer,
        lambda target, model, stream: target.url("/chat/completions", model),
        openai_chat.steps,
    ),
}


class Translator:
    def __init__(self, post: Post, http: httpclient.HttpClient, auth: Auth) -> None:
        self._post, self._http, self._auth = post, http, auth
        self._tokens: ServiceAccountTokens | None = None

    async def open(
        self,
        target: Target,
        path: str,
        body: bytes,
        model: str,
        passthrough: Mapping[str, str],
    ) -> UpstreamResponse:
        wire = WIRES[target.wire]
        trace = {k: passthrough[k] for k in TRACE_HEADERS if k in passthrough}
        if path == "/embeddings":
            try:
                return await self._embed(target, wire, body, model)
            except (AttributeError, KeyError, TypeError, ValueError, struct.error):
                message = f"{wire.name}'s embedding answer could not be read"
                return Whole(502, openai_error(502, message))
        caller = CALLERS.get(path)
        if caller is None:
            served = "chat completions, Anthropic messages and embeddings"
            return Whole(400, openai_error(400, f"{wire.name} targets serve {served} only"))
        try:
            chat = caller.chat(jsoncodec.loads(body))
            data = jsoncodec.dumps(wire.request(chat))
        except UpstreamError as exc:
            return Whole(400, caller.error(400, str(exc)))
        except (AttributeError, KeyError, TypeError, ValueError):  # a shape the API's own
            message = f"the request could not be translated for {wire.name}"  # check let by
            return Whole(400, caller.error(400, message))
        stream = bool(chat.get("stream"))
        where = wire.url(target, model, stream)
        headers = await self._headers(target, where, data)
        response = await self._post(target, where, data, headers | trace)
        if response.status != 200:
            return await _refused(response, wire, caller.error)
        if stream:
            return Streamed(response, wire.steps, caller.writer(model))
        try:
            answer = jsoncodec.loads(await _read(response))
            return Whole(200, jsoncodec.dumps(caller.answer(wire.answer(answer, model))))
        except (AttributeError, KeyError, TypeError, ValueError, UpstreamError):
            # not JSON, or not the shape the provider documents: nothing is released
            message = f"{wire.name}'s answer could not be read; nothing was released"
            return Whole(502, caller.error(502, message))

    async def _headers(self, target: Target, where: str, data: bytes) -> dict[str, str]:
        """The provider's credentials: a SigV4 signature (Bedrock), a service account's
        token or an API key (Gemini), Azure's own."""
        if target.wire == BEDROCK:
            try:
                return bedrock.sign(where, data, target.api_key, target.region or "")
            except PackError as exc:  # a key pair rotated into one that cannot be used
                raise UpstreamError(f"{target.id}: {exc}") from exc
        if target.wire == AZURE:
            return self._auth(target, {})
        headers = {"content-type": "application/json"}
        if target.auth == SERVICE_ACCOUNT:
            headers["authorization"] = f"Bearer {await self._token(target)}"
        else:
            headers["x-goog-api-key"] = target.api_key
        return headers

    async def _token(self, target: Target) -> str:
        if self._tokens is None:
            from gateway.upstream.google_auth import ServiceAccountTokens

            self._tokens = ServiceAccountTokens(self._http)
        try:
            return await self._tokens.token(target.api_key)
        except PackError as exc:  # a key rotated into one that cannot be used
            raise UpstreamError(f"{target.id}: {exc}") from exc

    async def _embed(self, target: Target, wire: Wire, body: bytes, model: str) -> Whole:
        """An OpenAI embeddings request through Bedrock's InvokeModel (one call per
        text) or Gemini's `batchEmbedContents` (one call)."""
        request = jsoncodec.loads(body)
        given = request.get("input")
        texts = [given] if isinstance(given, str) else given
        if not isinstance(texts, list) or not all(isinstance(t, str) for t in texts):
            message = f"{wire.name} embeddings take text input (a string or a list of them)"
            return Whole(400, openai_error(400, message))
        if len(texts) > MAX_TEXTS:
            message = f"{wire.name} embeddings take at most {MAX_TEXTS} texts a call"
            return Whole(400, openai_error(400, message))
        vectors: list[list[float]] = []
        tokens = 0
        if target.wire == BEDROCK:
            where = bedrock.embed_url(target.base_url, model)
            for text in texts:
                answer = await self._call(target, wire, where, bedrock.embed_request(model, text))
                if isinstance(answer, Whole):
                    return answer
                vector, counted = bedrock.embedding_of(answer)
                vectors.append(vector)
                tokens += counted or 0
        else:
            vertex = target.auth == SERVICE_ACCOUNT
            where = gemini.embed_url(target.base_url, model, vertex)
            asked = gemini.embed_request(model, texts, vertex)
            answer = await self._call(target, wire, where, asked)
            if isinstance(answer, Whole):
                return answer
            vectors, counted = gemini.embeddings_of(answer)
            tokens = counted or 0
        try:
            data = [
                {"object": "embedding", "index": i, "embedding": _vector(v, request)}
                for i, v in enumerate(vectors)
            ]
        except (TypeError, ValueError, struct.error):
            message = f"{wire.name}'s embedding was not a list of numbers"
            return Whole(502, openai_error(502, message))
        usage = {"prompt_tokens": tokens, "total_tokens": tokens}
        listed = {"object": "list", "data": data, "model": model, "usage": usage}
        return Whole(200, jsoncodec.dumps(listed))

    async def _call(
        self, target: Target, wire: Wire, where: str, request: dict[str, Any]
    ) -> dict[str, Any] | Whole:
        """One whole call: the provider's JSON answer, or the caller's error answer."""
        data = jsoncodec.dumps(request)
        response = await self._post(target, where, data, await self._headers(target, where, data))
        if response.status != 200:
            return await _refused(response, wire, openai_error)
        raw = await _read(response)
        try:
            answer = jsoncodec.loads(raw)
        except ValueError:
            answer = None
        if not isinstance(answer, dict):
            return Whole(502, openai_error(502, f"{wire.name}'s answer was not a JSON object"))
        return answer


def credential_urls(target: Target) -> tuple[str, ...]:
    """Where a target's credentials send the gateway besides its base URL (a Vertex AI
    service account's `token_uri`, for the egress policy to check), its secret checked
    on the way when its pack is activated: `PackError` for a Bedrock secret that is no
    key pair, or a service-account key given as Gemini's API key (it would travel as a
    header, private key and all)."""
    if target.wire == BEDROCK and target.api_key:
        bedrock.key_pair(target.api_key)
    elif target.wire == GEMINI:
        from gateway.upstream import google_auth

        if target.auth == SERVICE_ACCOUNT:
            return (google_auth.token_uri(target.api_key),)
        if google_auth.is_service_account(target.api_key):
            raise PackError(
                f"target {target.id}: its secret is a service-account key: "
                f"set provider.auth: {SERVICE_ACCOUNT}"
            )
    return ()


def _vector(vector: list[Any], request: dict[str, Any]) -> list[float] | str:
    """A vector as the caller asked: floats, or OpenAI's `encoding_format: base64`
    (little-endian float32). A value that is no number is `TypeError`."""
    if not all(isinstance(v, int | float) and not isinstance(v, bool) for v in vector):
        raise TypeError("not a number")
    if request.get("encoding_format") == "base64":
        return base64.b64encode(struct.pack(f"<{len(vector)}f", *vector)).decode()
    return [float(v) for v in vector]


async def _refused(
    response: httpclient.Response, wire: Wire, error: Callable[[int, str], bytes]
) -> Whole:
    """A provider's error answer in the caller's shape, its `retry-after` kept."""
    raw = await _read(response)
    retry = response.headers.get("retry-after")
    return Whole(response.status, error(response.status, _message(raw, wire.name)), retry)


async def _read(response: httpclient.Response) -> bytes:
    try:
        return await response.read(MAX_TRANSLATED)
    except ResponseTooLargeError as exc:
        raise UpstreamTooLargeError(str(exc)) from exc
    except HttpClientError as exc:
        raise UpstreamError(f"provider broke off its answer: {exc}") from exc


def _message(raw: bytes, name: str) -> str:
    """A translated provider's error message (Bedrock: `message`; Gemini: `error.message`)."""
    try:
        found = jsoncodec.loads(raw)
    except ValueError:
        return f"{name} refused the call"
    if not isinstance(found, dict):
        return f"{name} refused the call"
    error = found.get("error")
    nested = error.get("message") if isinstance(error, dict) else None
    return str(found.get("message") or found.get("Message") or nested or f"{name} refused the call")
